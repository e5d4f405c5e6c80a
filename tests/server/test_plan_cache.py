"""The plan cache: LRU bound, single flight, failures not cached, bounded waits."""

from __future__ import annotations

import threading
from typing import cast

import pytest

from tonearm.mastering.stream import StreamPlan
from tonearm.server.plan_cache import PlanCache, PlanKey


def _key(track_id: int, strength: float = 1.0) -> PlanKey:
    return PlanKey(track_id, "hash", 100, 5, "spotify", -14.0, -1.0, strength)


def _plan(tag: int) -> StreamPlan:
    return cast(StreamPlan, tag)  # the cache never looks inside a plan


def test_lru_keeps_the_most_recently_used() -> None:
    cache = PlanCache(max_plans=2)
    assert cache.get(_key(1), lambda: _plan(1)) == (_plan(1), False)
    assert cache.get(_key(2), lambda: _plan(2)) == (_plan(2), False)
    assert cache.get(_key(1), lambda: _plan(99)) == (_plan(1), True)  # 1 is now the newest
    cache.get(_key(3), lambda: _plan(3))
    assert len(cache) == 2
    assert cache.peek(_key(2)) is None  # the least recently used went
    assert cache.peek(_key(1)) == _plan(1)
    assert cache.peek(_key(1, strength=0.5)) is None
    assert cache.computed == 3


def test_concurrent_misses_share_one_computation() -> None:
    cache = PlanCache()
    release = threading.Event()
    calls: list[int] = []

    def compute() -> StreamPlan:
        calls.append(1)
        assert release.wait(10)
        return _plan(7)

    results: list[tuple[StreamPlan, bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(_key(1), compute)))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    assert [plan for plan, _ in results] == [_plan(7)] * 6
    assert cache.computed == 1


def test_failures_reach_every_waiter_and_are_not_cached() -> None:
    cache = PlanCache()
    started, release = threading.Event(), threading.Event()

    def failing() -> StreamPlan:
        started.set()
        assert release.wait(10)
        raise ValueError("cannot decode")

    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.get(_key(1), failing)
        except ValueError as exc:
            errors.append(exc)

    owner = threading.Thread(target=ask)
    owner.start()
    assert started.wait(10)
    waiter = threading.Thread(target=ask)
    waiter.start()
    release.set()
    owner.join(10)
    waiter.join(10)
    assert len(errors) == 2
    assert cache.peek(_key(1)) is None
    assert cache.get(_key(1), lambda: _plan(2)) == (_plan(2), False)  # tried again


def test_waits_are_bounded() -> None:
    cache = PlanCache(max_concurrent=1)
    started, release = threading.Event(), threading.Event()

    def slow() -> StreamPlan:
        started.set()
        assert release.wait(10)
        return _plan(1)

    owner = threading.Thread(target=lambda: cache.get(_key(1), slow))
    owner.start()
    assert started.wait(10)
    with pytest.raises(TimeoutError):
        cache.get(_key(1), slow, timeout_s=0.05)  # waiting for the same key
    with pytest.raises(TimeoutError, match="no plan slot"):
        cache.get(_key(2), lambda: _plan(2), timeout_s=0.05)  # the only slot is taken
    release.set()
    owner.join(10)
    assert cache.get(_key(2), lambda: _plan(2)) == (_plan(2), False)
