"""threaded_map: order, bounded queue, errors, cancellation and timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tonearm.errors import DecodeError, ParameterError, TonearmError
from tonearm.pipeline import POLL_S, threaded_map


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-stage")]


def _wait_for_no_stage_threads(timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _stage_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _stage_threads(), "a stage thread outlived its stream"


def test_results_come_in_order_and_complete() -> None:
    results = list(threaded_map(lambda x: x * x, range(1000), name="test-stage"))
    assert results == [x * x for x in range(1000)]
    _wait_for_no_stage_threads()


def test_chained_stages_run_on_their_own_threads() -> None:
    seen: dict[str, set[str]] = {"first": set(), "second": set()}

    def tag(stage: str) -> Callable[[int], int]:
        def apply(x: int) -> int:
            seen[stage].add(threading.current_thread().name)
            return x + 1

        return apply

    first = threaded_map(tag("first"), range(50), name="test-stage-1")
    second = threaded_map(tag("second"), first, name="test-stage-2")
    assert list(second) == list(range(2, 52))
    assert seen == {"first": {"test-stage-1"}, "second": {"test-stage-2"}}
    _wait_for_no_stage_threads()


def test_the_queue_bounds_how_far_the_worker_runs_ahead() -> None:
    produced = 0

    def source() -> Iterator[int]:
        nonlocal produced
        for item in range(1000):
            produced += 1
            yield item

    stream = threaded_map(lambda x: x, source(), depth=3, name="test-stage")
    assert next(stream) == 0
    time.sleep(20 * POLL_S)  # let the worker fill its queue
    # depth queued + one taken + one computed and waiting to go in
    assert produced <= 3 + 1 + 1
    stream.close()
    _wait_for_no_stage_threads()


def test_errors_reach_the_consumer_after_the_results_before_them() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise DecodeError("'x.flac' is truncated at 2.0 s")

    stream = threaded_map(lambda x: x, source(), name="test-stage")
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(DecodeError, match="truncated"):
        next(stream)
    _wait_for_no_stage_threads()


def test_an_error_in_the_function_stops_the_stream() -> None:
    def explode(x: int) -> int:
        if x == 5:
            raise ValueError("bad block")
        return x

    with pytest.raises(ValueError, match="bad block"):
        list(threaded_map(explode, range(100), name="test-stage"))
    _wait_for_no_stage_threads()


def test_stopping_early_closes_the_source_and_ends_the_threads() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            closed.set()

    first = threaded_map(lambda x: x, source(), name="test-stage-1")
    second = threaded_map(lambda x: x, first, name="test-stage-2")
    for item in second:
        if item == 10:
            break
    second.close()
    assert closed.wait(timeout=5.0), "the source generator was never closed"
    _wait_for_no_stage_threads()


def test_a_stalled_stage_times_out_with_a_clear_error() -> None:
    release = threading.Event()

    def slow(x: int) -> int:
        release.wait(timeout=10.0)
        return x

    stream = threaded_map(slow, range(3), stall_timeout_s=0.2, name="test-stage-slow")
    started = time.monotonic()
    with pytest.raises(TonearmError, match=r"test-stage-slow.*produced nothing for 0\.2 s"):
        next(stream)
    assert time.monotonic() - started < 5.0
    release.set()
    _wait_for_no_stage_threads()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError):
        threaded_map(lambda x: x, range(3), depth=0)
    with pytest.raises(ParameterError):
        threaded_map(lambda x: x, range(3), stall_timeout_s=0.0)


def test_nothing_starts_until_the_stream_is_read() -> None:
    calls: list[int] = []
    stream = threaded_map(calls.append, range(3), name="test-stage")
    time.sleep(5 * POLL_S)
    assert calls == []
    assert not _stage_threads()
    stream.close()
