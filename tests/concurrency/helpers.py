"""Helpers for the concurrency tests: run work from many threads at once, with every wait bounded.

The names and meanings follow the concurrency test plan (``run_concurrent``,
``measure_concurrency_speedup``, ``detect_race_condition``), with three changes:

* every wait has a timeout (barrier, join), and a thread still running at the deadline is a
  ``TimeoutError`` instead of a hang;
* the threads start their work together, released by a barrier, so they really overlap;
* the speedup is a :class:`SpeedupResult`, not a tuple.

``map_concurrent`` is the per-thread-input variant the audio tests use (one item per thread, the
results in item order), and ``assert_identical`` compares results bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "Excerpt",
    "MusicFiles",
    "SpeedupResult",
    "StreamProcessor",
    "assert_identical",
    "blocks_of",
    "detect_race_condition",
    "map_concurrent",
    "measure_concurrency_speedup",
    "process_stream",
    "run_concurrent",
    "variants",
]

T = TypeVar("T")
R = TypeVar("R")

AudioArray = npt.NDArray[np.float32]

DEFAULT_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class MusicFiles:
    """The shared music fixtures (``/work/shared/fixtures/music``)."""

    root: Path
    bach_flac: Path
    joplin_flac: Path
    beethoven_mp3: Path


@dataclasses.dataclass(frozen=True, slots=True)
class Excerpt:
    """A read-only float32 ``(channels, frames)`` excerpt and its sample rate."""

    audio: AudioArray
    sample_rate: int

    def seconds(self, start_s: float, stop_s: float) -> AudioArray:
        """A read-only view of ``[start_s, stop_s)``."""
        return self.audio[:, round(start_s * self.sample_rate) : round(stop_s * self.sample_rate)]


@dataclasses.dataclass(frozen=True, slots=True)
class SpeedupResult:
    """Wall-clock times of a sequential and a parallel run of the same work."""

    speedup: float
    sequential_s: float
    parallel_s: float


def _run_threads(workers: Sequence[Callable[[], Any]], *, timeout_s: float, name: str) -> list[Any]:
    """Start one thread per worker, release them together, join within ``timeout_s``.

    Returns the results in worker order; re-raises the first exception raised (by time).
    """
    n = len(workers)
    if n < 1:
        raise ValueError("need at least one thread")
    start_line = threading.Barrier(n, timeout=timeout_s)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(index: int) -> None:
        try:
            start_line.wait()
            value = workers[index]()
        except BaseException as exc:
            with lock:
                errors.append(exc)
            start_line.abort()  # release any thread still waiting for this one
        else:
            results[index] = value

    threads = [
        threading.Thread(target=body, args=(i,), name=f"{name}-{i}", daemon=True) for i in range(n)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [thread.name for thread in threads if thread.is_alive()]
    if alive:
        raise TimeoutError(
            f"{len(alive)} of {n} threads still running after {timeout_s:g} s: {alive}"
        )
    if errors:
        # A thread that failed aborts the barrier; report the real failure, not the broken barrier.
        real = [exc for exc in errors if not isinstance(exc, threading.BrokenBarrierError)]
        raise (real or errors)[0]
    return results


def run_concurrent(
    func: Callable[..., R],
    n_threads: int = 10,
    *args: Any,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **kwargs: Any,
) -> list[R]:
    """Call ``func(*args, **kwargs)`` from ``n_threads`` threads at once.

    The threads wait at a barrier and start together. Returns one result per thread, in thread
    order. Raises ``TimeoutError`` if any thread is still running ``timeout_s`` after the start
    (the stuck threads are daemons, so they cannot keep the interpreter alive), and re-raises the
    first exception a thread raised.
    """
    return _run_threads(
        [lambda: func(*args, **kwargs)] * n_threads, timeout_s=timeout_s, name="run_concurrent"
    )


def map_concurrent(
    func: Callable[[T], R], items: Iterable[T], *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[R]:
    """``[func(item) for item in items]``, one thread per item, all started together.

    Same timeout and error rules as :func:`run_concurrent`; the results are in item order.
    """
    work = list(items)
    return _run_threads(
        [functools.partial(func, item) for item in work],
        timeout_s=timeout_s,
        name="map_concurrent",
    )


def measure_concurrency_speedup(
    sequential_func: Callable[..., Any],
    parallel_func: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> SpeedupResult:
    """Time ``sequential_func(*args, **kwargs)``, then ``parallel_func(*args, **kwargs)``.

    ``speedup`` is ``sequential_s / parallel_s`` (0.0 if the parallel run took no measurable
    time). Uses ``time.perf_counter``.
    """
    start = time.perf_counter()
    sequential_func(*args, **kwargs)
    sequential_s = time.perf_counter() - start
    start = time.perf_counter()
    parallel_func(*args, **kwargs)
    parallel_s = time.perf_counter() - start
    speedup = sequential_s / parallel_s if parallel_s > 0 else 0.0
    return SpeedupResult(speedup=speedup, sequential_s=sequential_s, parallel_s=parallel_s)


def detect_race_condition(
    func: Callable[[], Hashable],
    n_iterations: int = 1000,
    n_threads: int = 10,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bool:
    """Run ``func`` from ``n_threads`` threads, ``n_iterations`` times; True if the results vary.

    Each run's results are compared as a multiset (order does not matter), so ``func`` must
    return *hashable* values (numbers, strings, tuples, frozen dataclasses; not arrays or
    lists). A thread-safe ``func`` whose answer does not depend on timing gives the same
    multiset every run (False); a race shows as a run that differs (True). ``False`` is
    evidence, not proof: a race that never fired in these runs is not seen. ``timeout_s``
    bounds each run.
    """
    seen: set[frozenset[tuple[Hashable, int]]] = set()
    for _ in range(n_iterations):
        results = run_concurrent(func, n_threads, timeout_s=timeout_s)
        seen.add(frozenset(Counter(results).items()))
        if len(seen) > 1:
            return True
    return False


def assert_identical(actual: object, expected: object, *, path: str = "result") -> None:
    """Assert two results are bit-for-bit the same.

    Recurses through dataclasses (every field), tuples, lists and dicts. Arrays must have the
    same dtype, shape and values (NaN equal to NaN at the same place); floats must be equal
    (or both NaN).
    """
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{path}: expected an array, got {type(actual)}"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
        equal_nan = expected.dtype.kind in "fc"
        assert np.array_equal(actual, expected, equal_nan=equal_nan), f"{path}: values differ"
    elif dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        for field in dataclasses.fields(expected):
            assert_identical(
                getattr(actual, field.name),
                getattr(expected, field.name),
                path=f"{path}.{field.name}",
            )
    elif isinstance(expected, tuple | list):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        assert isinstance(actual, tuple | list)
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_identical(a, e, path=f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a dict, got {type(actual)}"
        assert actual.keys() == expected.keys(), f"{path}: keys differ"
        for key, value in expected.items():
            assert_identical(actual[key], value, path=f"{path}[{key!r}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float), f"{path}: {actual!r} is not a float"
        assert math.isnan(actual), f"{path}: {actual!r} is not NaN"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def variants(excerpt: Excerpt, count: int, *, seconds: float, seed: int = 0) -> list[AudioArray]:
    """``count`` distinct C-contiguous float32 signals cut from ``excerpt``.

    Variant ``i`` starts ``i * 0.37 s`` later (wrapping round), is scaled by ``-1.5 i`` dB, has
    its channels swapped when ``i`` is odd, and carries seeded white noise at -60 dBFS, so no two
    threads ever see the same samples.
    """
    frames = round(seconds * excerpt.sample_rate)
    total = excerpt.audio.shape[1]
    if frames > total:
        raise ValueError(f"excerpt has {total} frames, {frames} asked for")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        start = round(i * 0.37 * excerpt.sample_rate) % (total - frames + 1)
        audio = excerpt.audio[:, start : start + frames].astype(np.float64)
        if i % 2:
            audio = audio[::-1]
        audio = audio * 10.0 ** (-1.5 * i / 20.0) + 1e-3 * rng.standard_normal(audio.shape)
        out.append(np.ascontiguousarray(audio, dtype=np.float32))
    return out


def blocks_of(audio: AudioArray, block_frames: int) -> Iterator[AudioArray]:
    """Consecutive blocks (views) of ``block_frames`` frames; the last one may be shorter."""
    for start in range(0, audio.shape[1], block_frames):
        yield audio[:, start : start + block_frames]


class StreamProcessor(Protocol):
    """What :func:`process_stream` needs: a block processor that is ``latency_frames`` late."""

    @property
    def latency_frames(self) -> int: ...

    def process(self, block: AudioArray) -> AudioArray: ...


def process_stream(
    stage: StreamProcessor, audio: AudioArray, *, block_frames: int = 4096
) -> AudioArray:
    """Stream ``audio`` through a processor with ``process``/``latency_frames``.

    Feeds the blocks, then ``latency_frames`` of silence, and drops the first
    ``latency_frames`` of output: the result lines up with the input and has its length.
    """
    latency = int(stage.latency_frames)
    channels = audio.shape[0]
    parts = [stage.process(block) for block in blocks_of(audio, block_frames)]
    if latency:
        parts.append(stage.process(np.zeros((channels, latency), dtype=np.float32)))
    out = np.concatenate(parts, axis=1)
    return np.ascontiguousarray(out[:, latency:])
