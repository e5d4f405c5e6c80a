"""The concurrency helpers and fixtures themselves: they must catch what they claim to catch."""

from __future__ import annotations

import itertools
import operator
import queue as queue_module
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.concurrency.helpers import (
    Excerpt,
    MusicFiles,
    SpeedupResult,
    assert_identical,
    detect_race_condition,
    map_concurrent,
    measure_concurrency_speedup,
    process_stream,
    run_concurrent,
    variants,
)

pytestmark = [pytest.mark.concurrency, pytest.mark.timeout(60)]


def _racy_increment(box: list[int]) -> Callable[[], int]:
    """Read-modify-write with a random pause in the middle and no lock: updates get lost.

    Returns how much the counter moved across this thread's own update: 1 when the update was
    alone, anything else when another thread's update landed in the middle.
    """

    def increment() -> int:
        before = box[0]
        time.sleep(random.random() * 1e-4)  # hand the GIL over between the read and the write
        box[0] = before + 1
        time.sleep(random.random() * 1e-4)
        return box[0] - before

    return increment


def _locked_increment(box: list[int], lock: threading.Lock) -> Callable[[], int]:
    """The same update under a lock: always exactly 1."""

    def increment() -> int:
        with lock:
            before = box[0]
            time.sleep(random.random() * 1e-5)
            box[0] = before + 1
            return box[0] - before

    return increment


class TestRunConcurrent:
    def test_returns_one_result_per_thread(self) -> None:
        assert run_concurrent(operator.add, 7, 2, 3) == [5] * 7

    def test_passes_keyword_arguments(self) -> None:
        assert run_concurrent(int, 3, "ff", base=16) == [255] * 3

    def test_threads_overlap(self) -> None:
        # Every thread must be inside func at the same moment: a barrier of 10 inside func only
        # opens if all 10 run concurrently (the helper's own start barrier released them).
        inside = threading.Barrier(10, timeout=10)
        assert sorted(run_concurrent(inside.wait, 10)) == list(range(10))  # one index per party

    def test_reraises_the_first_error(self) -> None:
        calls = itertools.count()

        def sometimes_fails() -> int:
            if next(calls) == 3:
                raise KeyError("thread failure")
            return 1

        with pytest.raises(KeyError, match="thread failure"):
            run_concurrent(sometimes_fails, 10)

    def test_times_out_instead_of_hanging(self) -> None:
        release = threading.Event()
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="still running"):
                run_concurrent(release.wait, 3, 5.0, timeout_s=0.2)
            assert time.monotonic() - started < 3.0
        finally:
            release.set()  # let the stuck daemon threads finish

    def test_map_concurrent_keeps_item_order(self) -> None:
        def slow_square(x: int) -> int:
            time.sleep(0.001 * (10 - x))  # later items finish first
            return x * x

        assert map_concurrent(slow_square, range(10)) == [x * x for x in range(10)]


class TestDetectRaceCondition:
    def test_detects_an_unsynchronised_counter(self) -> None:
        assert detect_race_condition(_racy_increment([0]), n_iterations=200)

    def test_a_locked_counter_is_not_a_race(self) -> None:
        assert not detect_race_condition(_locked_increment([0], threading.Lock()), n_iterations=30)

    def test_detects_a_varying_function(self) -> None:
        counter = itertools.count()
        assert detect_race_condition(lambda: next(counter), n_iterations=5)

    def test_a_constant_function_is_not_a_race(self) -> None:
        assert not detect_race_condition(lambda: (1, "same"), n_iterations=50)

    def test_order_of_results_does_not_matter(self) -> None:
        # Each run hands out the same multiset {0..9} in a thread-dependent order.
        lock = threading.Lock()
        counter = itertools.count()

        def ticket() -> int:
            time.sleep(random.random() * 1e-4)
            with lock:
                return next(counter) % 10

        assert not detect_race_condition(ticket, n_iterations=20)


class TestMeasureSpeedup:
    def test_result_is_a_frozen_record(self) -> None:
        result = measure_concurrency_speedup(time.sleep, time.sleep, 0.01)
        assert isinstance(result, SpeedupResult)
        assert result.sequential_s >= 0.01
        assert result.parallel_s >= 0.01
        assert result.speedup == pytest.approx(result.sequential_s / result.parallel_s)
        with pytest.raises(FrozenInstanceError):
            result.speedup = 2.0  # type: ignore[misc]

    def test_sleeping_threads_overlap(self) -> None:
        def sequential() -> None:
            for _ in range(4):
                time.sleep(0.05)

        def parallel() -> None:
            run_concurrent(time.sleep, 4, 0.05)

        assert measure_concurrency_speedup(sequential, parallel).speedup > 2.0


class TestAssertIdentical:
    def test_accepts_equal_nested_results(self) -> None:
        value = {"a": (np.arange(3.0), float("nan")), "b": [SpeedupResult(1.0, 2.0, 3.0)]}
        copy = {"a": (np.arange(3.0), float("nan")), "b": [SpeedupResult(1.0, 2.0, 3.0)]}
        assert_identical(copy, value)

    @pytest.mark.parametrize(
        ("actual", "expected"),
        [
            (np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-15])),
            (np.zeros(2, dtype=np.float32), np.zeros(2, dtype=np.float64)),
            (SpeedupResult(1.0, 2.0, 3.0), SpeedupResult(1.0, 2.0, 3.5)),
            ((1.0, 2.0), [1.0, 2.0]),
        ],
    )
    def test_rejects_any_difference(self, actual: object, expected: object) -> None:
        with pytest.raises(AssertionError):
            assert_identical(actual, expected)


class TestFixtures:
    def test_barrier_and_queue_are_bounded(
        self,
        barrier: threading.Barrier,
        queue: queue_module.Queue[object],
    ) -> None:
        assert barrier.parties == 10
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(timeout=0.01)  # alone at a barrier for 10: times out, does not hang
        assert queue.maxsize == 1000

    def test_lock_and_event(self, lock: threading.Lock, event: threading.Event) -> None:
        with lock:
            assert not lock.acquire(timeout=0.01)
        assert not event.wait(timeout=0.01)

    def test_pools_run_work(
        self, thread_pool: ThreadPoolExecutor, process_pool: ProcessPoolExecutor
    ) -> None:
        assert thread_pool.submit(pow, 2, 10).result(timeout=10) == 1024
        assert list(process_pool.map(pow, [2, 3], [3, 2], timeout=60)) == [8, 9]

    def test_audio_files_are_distinct_stereo_wavs(self, test_audio_files: list[Path]) -> None:
        assert len(test_audio_files) == 10
        first = None
        for path in test_audio_files:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            assert (rate, data.shape) == (44100, (88200, 2))
            if first is None:
                first = data
            else:
                assert not np.array_equal(data, first)

    def test_music_and_excerpt(self, music: MusicFiles, bach_excerpt: Excerpt) -> None:
        assert music.bach_flac.is_file()
        audio = bach_excerpt.audio
        assert audio.dtype == np.float32
        assert audio.shape == (2, 10 * bach_excerpt.sample_rate)
        assert audio.flags.c_contiguous
        assert not audio.flags.writeable
        assert np.abs(audio).max() > 0.05  # music, not silence

    def test_variants_are_distinct(self, bach_excerpt: Excerpt) -> None:
        signals = variants(bach_excerpt, 4, seconds=2.0)
        for i, a in enumerate(signals):
            assert a.flags.c_contiguous
            assert a.dtype == np.float32
            for b in signals[i + 1 :]:
                assert not np.array_equal(a, b)

    def test_process_stream_aligns_the_output(self, bach_excerpt: Excerpt) -> None:
        class Delay:
            latency_frames = 100

            def __init__(self) -> None:
                self._tail = np.zeros((2, 100), dtype=np.float32)

            def process(self, block: np.ndarray) -> np.ndarray:
                joined = np.concatenate((self._tail, block), axis=1)
                self._tail = joined[:, block.shape[1] :]
                return joined[:, : block.shape[1]]

        audio = bach_excerpt.seconds(0.0, 1.0)
        assert np.array_equal(process_stream(Delay(), audio, block_frames=999), audio)
