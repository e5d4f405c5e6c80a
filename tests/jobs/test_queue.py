"""PriorityJobQueue: order, bounds, timeouts, close, remove, snapshot, many threads."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tests.jobs.threads import JOIN_S, join, start
from tonearm.errors import ParameterError, TonearmError
from tonearm.jobs.queue import PriorityJobQueue, QueueClosed, QueueEmpty, QueueFull


def drain(q: PriorityJobQueue[str]) -> list[str]:
    return [q.get(timeout_s=0) for _ in range(len(q))]


def test_highest_priority_first() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=10)
    for name, priority in [("low", -5), ("mid", 0), ("high", 7), ("mid2", 1)]:
        q.put(name, priority=priority)
    assert drain(q) == ["high", "mid2", "mid", "low"]


def test_fifo_within_one_priority() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=100)
    names = [f"job{i}" for i in range(50)]
    for name in names:
        q.put(name, priority=3)
    assert drain(q) == names


def test_later_high_priority_overtakes_earlier_low_priority() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=10)
    q.put("a", priority=0)
    q.put("b", priority=0)
    assert q.get(timeout_s=0) == "a"
    q.put("urgent", priority=1)
    q.put("c", priority=0)
    assert drain(q) == ["urgent", "b", "c"]


def test_items_need_not_be_comparable() -> None:
    q: PriorityJobQueue[dict[str, int]] = PriorityJobQueue(max_size=3)
    first, second = {"n": 1}, {"n": 2}
    q.put(first)
    q.put(second)
    assert q.get(timeout_s=0) is first
    assert q.get(timeout_s=0) is second


def test_full_queue_refuses_at_once_with_zero_timeout() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=2)
    q.put("a")
    q.put("b")
    began = time.monotonic()
    with pytest.raises(QueueFull):
        q.put("c", priority=99)
    assert time.monotonic() - began < 0.25
    assert len(q) == 2
    assert isinstance(QueueFull("x"), TonearmError)


def test_blocked_put_proceeds_when_get_frees_space() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    q.put("a")
    done = threading.Event()

    def producer() -> None:
        q.put("b", timeout_s=JOIN_S)
        done.set()

    thread = start(producer)
    assert not done.wait(0.1), "put should wait while the queue is full"
    assert q.get(timeout_s=0) == "a"
    join(thread)
    assert done.is_set()
    assert q.get(timeout_s=0) == "b"


def test_put_times_out_on_full_queue() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    q.put("a")
    began = time.monotonic()
    with pytest.raises(QueueFull):
        q.put("b", timeout_s=0.1)
    elapsed = time.monotonic() - began
    assert 0.09 <= elapsed < 1.0
    assert q.snapshot() == [(0, "a")]


def test_get_times_out_on_empty_queue() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    began = time.monotonic()
    with pytest.raises(QueueEmpty):
        q.get(timeout_s=0.1)
    assert 0.09 <= time.monotonic() - began < 1.0
    with pytest.raises(QueueEmpty):
        q.get(timeout_s=0)


def test_waiting_get_receives_a_later_put() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    got: list[str] = []
    thread = start(lambda: got.append(q.get(timeout_s=JOIN_S)))
    time.sleep(0.05)
    q.put("x")
    join(thread)
    assert got == ["x"]


def test_close_drains_then_raises_closed() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=5)
    q.put("a")
    q.put("b", priority=1)
    was_closed = q.closed
    q.close()
    q.close()  # idempotent
    assert (was_closed, q.closed) == (False, True)
    with pytest.raises(QueueClosed):
        q.put("c")
    assert q.get(timeout_s=0) == "b"
    assert q.get(timeout_s=0) == "a"
    began = time.monotonic()
    with pytest.raises(QueueClosed):
        q.get(timeout_s=JOIN_S)
    assert time.monotonic() - began < 0.25


def test_close_wakes_waiting_getters_and_putters() -> None:
    empty: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    full: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    full.put("x")
    outcomes: list[str] = []
    lock = threading.Lock()

    def getter() -> None:
        try:
            empty.get(timeout_s=JOIN_S)
        except QueueClosed:
            with lock:
                outcomes.append("get closed")

    def putter() -> None:
        try:
            full.put("y", timeout_s=JOIN_S)
        except QueueClosed:
            with lock:
                outcomes.append("put closed")

    threads = [start(getter) for _ in range(3)] + [start(putter) for _ in range(2)]
    time.sleep(0.1)
    began = time.monotonic()
    empty.close()
    full.close()
    join(*threads)
    assert time.monotonic() - began < 1.0
    assert Counter(outcomes) == {"get closed": 3, "put closed": 2}
    assert full.get(timeout_s=0) == "x"  # what was queued can still be got


def test_remove_returns_matches_in_order_and_keeps_the_rest() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=10)
    for i, priority in enumerate([0, 2, 0, 1, 2, 0]):
        q.put(f"{'x' if i % 2 else 'k'}{i}", priority=priority)
    removed = q.remove(lambda item: item.startswith("x"))
    assert removed == ["x1", "x3", "x5"]  # priorities 2, 1, 0: the order they would come out
    assert q.remove(lambda item: item == "missing") == []
    assert len(q) == 3
    assert drain(q) == ["k4", "k0", "k2"]


def test_remove_frees_room_for_a_waiting_put() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    q.put("old")
    thread = start(lambda: q.put("new", timeout_s=JOIN_S))
    time.sleep(0.05)
    assert q.remove(lambda item: item == "old") == ["old"]
    join(thread)
    assert q.snapshot() == [(0, "new")]


def test_remove_with_raising_predicate_leaves_queue_unchanged() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=5)
    q.put("a")
    q.put("b")

    def boom(item: str) -> bool:
        if item == "b":
            raise RuntimeError("boom")
        return True

    with pytest.raises(RuntimeError):
        q.remove(boom)
    assert drain(q) == ["a", "b"]


def test_snapshot_is_the_order_out() -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=10)
    for name, priority in [("a", 0), ("b", 5), ("c", 0), ("d", -1), ("e", 5)]:
        q.put(name, priority=priority)
    snapshot = q.snapshot()
    assert snapshot == [(5, "b"), (5, "e"), (0, "a"), (0, "c"), (-1, "d")]
    assert len(q) == 5  # a snapshot takes nothing
    assert drain(q) == [item for _, item in snapshot]


def test_many_producers_and_consumers_lose_and_duplicate_nothing() -> None:
    producers, consumers, total = 8, 8, 5000
    q: PriorityJobQueue[int] = PriorityJobQueue(max_size=32)
    received: list[list[int]] = [[] for _ in range(consumers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(producers + consumers, timeout=JOIN_S)

    def produce(index: int) -> None:
        try:
            barrier.wait()
            for n in range(index, total, producers):
                q.put(n, priority=n % 3, timeout_s=JOIN_S)
        except BaseException as exc:
            errors.append(exc)

    def consume(index: int) -> None:
        try:
            barrier.wait()
            while True:
                try:
                    received[index].append(q.get(timeout_s=JOIN_S))
                except QueueClosed:
                    return
        except BaseException as exc:
            errors.append(exc)

    producer_threads = [start(produce, i) for i in range(producers)]
    consumer_threads = [start(consume, i) for i in range(consumers)]
    join(*producer_threads)
    q.close()
    join(*consumer_threads)
    assert errors == []
    everything = [n for chunk in received for n in chunk]
    assert len(everything) == total
    assert sorted(everything) == list(range(total))
    assert sum(1 for chunk in received if chunk) >= 2  # the work really was shared
    assert len(q) == 0


@pytest.mark.parametrize("max_size", [0, -1, True, 1.5, "3"])
def test_bad_max_size(max_size: object) -> None:
    with pytest.raises(ParameterError):
        PriorityJobQueue(max_size=max_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout_s", [None, -0.1, float("nan"), float("inf"), "1", True])
def test_bad_timeouts(timeout_s: object) -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    with pytest.raises(ParameterError):
        q.put("a", timeout_s=timeout_s)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        q.get(timeout_s=timeout_s)  # type: ignore[arg-type]
    assert len(q) == 0


@pytest.mark.parametrize("priority", [1.0, "1", None, False])
def test_bad_priority(priority: object) -> None:
    q: PriorityJobQueue[str] = PriorityJobQueue(max_size=1)
    with pytest.raises(ParameterError):
        q.put("a", priority=priority)  # type: ignore[arg-type]
    assert len(q) == 0
