"""QueryCache: LRU + TTL, tag invalidation, the load/invalidate race, single-flight, thread safety.

Every test uses real threads and every wait is bounded; interleavings that matter are forced with
events (and by polling the cache's own counters), not with sleeps.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tonearm.errors import ParameterError
from tonearm.library.cache import CacheStats, QueryCache

WAIT_S = 10.0  # bound on every wait in this file


class FakeClock:
    """A clock the test sets by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """A thread-safe call counter wrapped around a loader."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        return self._fn()


class Worker:
    """Runs ``fn`` on its own thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.value = self._fn()
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = WAIT_S) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not finish in time"
        if self.error is not None:
            raise self.error
        return self.value


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def run_threads(targets: Sequence[Callable[[], None]], timeout: float = WAIT_S) -> None:
    workers = [Worker(target) for target in targets]
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.result(max(0.0, deadline - time.monotonic()))


def blocked_loader(
    value: Any, started: threading.Event, release: threading.Event
) -> Callable[[], Any]:
    def load() -> Any:
        started.set()
        assert release.wait(WAIT_S), "loader never released"
        return value

    return load


# --- single-threaded behaviour ---------------------------------------------------------------


def test_hits_and_misses_are_counted() -> None:
    cache = QueryCache()
    load = Counter(lambda: (1, 2))
    assert cache.get_or_load("k", ["t"], load) == (1, 2)
    assert cache.get_or_load("k", ["t"], load) == (1, 2)
    assert cache.get_or_load("k", ["t"], load) == (1, 2)
    assert load.calls == 1
    assert cache.stats == CacheStats(
        hits=2, misses=1, evictions=0, invalidations=0, entries=1, uncached_loads=0
    )


def test_values_are_returned_as_stored() -> None:
    cache = QueryCache()
    value: tuple[str, ...] = ("a", "b")
    first = cache.get_or_load("k", [], lambda: value)
    assert first is value
    other: tuple[str, ...] = ("a", "b")
    assert cache.get_or_load("k", [], lambda: other) is value


def test_lru_evicts_the_least_recently_used_and_a_hit_protects() -> None:
    cache = QueryCache(max_entries=2)
    cache.get_or_load("a", [], lambda: "A")
    cache.get_or_load("b", [], lambda: "B")
    assert cache.get_or_load("a", [], lambda: "A2") == "A"  # touch a: b is now the oldest
    cache.get_or_load("c", [], lambda: "C")
    assert cache.stats.evictions == 1
    assert cache.stats.entries == 2
    assert cache.get_or_load("a", [], lambda: "A3") == "A"
    assert cache.get_or_load("c", [], lambda: "C2") == "C"
    assert cache.get_or_load("b", [], lambda: "B2") == "B2"  # b was evicted


def test_ttl_expires_entries_counted_from_when_they_were_stored() -> None:
    clock = FakeClock()
    cache = QueryCache(ttl_s=10.0, clock=clock)
    load = Counter(lambda: "v")
    cache.get_or_load("k", [], load)
    clock.now = 9.5
    cache.get_or_load("k", [], load)  # a hit does not extend the TTL
    clock.now = 9.999
    cache.get_or_load("k", [], load)
    assert load.calls == 1
    clock.now = 10.0
    cache.get_or_load("k", [], load)
    assert load.calls == 2
    clock.now = 19.0
    cache.get_or_load("k", [], load)
    assert load.calls == 2  # stored again at 10.0, alive until 20.0
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.evictions, stats.entries) == (3, 2, 1, 1)


def test_invalidate_drops_exactly_the_entries_with_the_tag() -> None:
    cache = QueryCache()
    cache.get_or_load("t1", ["tracks", "track:1"], lambda: 1)
    cache.get_or_load("t2", ["tracks", "track:2"], lambda: 2)
    cache.get_or_load("all", ["tracks"], lambda: (1, 2))
    cache.get_or_load("p7", ["playlists", "playlist:7"], lambda: "p")
    assert cache.invalidate("track:1") == 1
    assert cache.invalidate("nothing") == 0
    assert cache.stats.entries == 3
    assert cache.get_or_load("t2", [], lambda: -1) == 2
    assert cache.invalidate("tracks", "track:2") == 2  # t2 carries both tags: counted once
    assert cache.stats.entries == 1
    assert cache.get_or_load("p7", [], lambda: "reloaded") == "p"
    assert cache.get_or_load("t1", ["tracks", "track:1"], lambda: 10) == 10
    assert cache.stats.invalidations == 3
    assert cache.invalidate() == 0


def test_clear_drops_everything() -> None:
    cache = QueryCache()
    for i in range(5):
        cache.get_or_load(i, [f"t:{i}"], functools.partial(int, i))
    cache.clear()
    assert cache.stats.entries == 0
    assert cache.stats.invalidations == 5
    assert cache.invalidate("t:1") == 0
    assert cache.get_or_load(1, ["t:1"], lambda: "new") == "new"


def test_a_failing_load_caches_nothing() -> None:
    cache = QueryCache()

    def fail() -> int:
        raise LookupError("db down")

    with pytest.raises(LookupError, match="db down"):
        cache.get_or_load("k", ["t"], fail)
    assert cache.stats.entries == 0
    assert cache.get_or_load("k", ["t"], lambda: 5) == 5
    assert cache.stats.entries == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_entries": 0},
        {"max_entries": -3},
        {"ttl_s": 0.0},
        {"ttl_s": -1.0},
        {"ttl_s": float("nan")},
        {"load_timeout_s": 0.0},
    ],
)
def test_parameter_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        QueryCache(**kwargs)


def test_tags_must_be_strings() -> None:
    cache = QueryCache()
    with pytest.raises(ParameterError, match="not the string"):
        cache.get_or_load("k", "tracks", lambda: 1)
    with pytest.raises(ParameterError):
        cache.get_or_load("k", [1], lambda: 1)  # type: ignore[list-item]
    with pytest.raises(ParameterError):
        cache.invalidate(["tracks"])  # type: ignore[arg-type]
    assert cache.stats.entries == 0


# --- the load / invalidate race --------------------------------------------------------------


@pytest.mark.parametrize("writer", ["invalidate", "clear"])
def test_a_load_raced_by_an_invalidation_is_returned_but_not_cached(writer: str) -> None:
    cache = QueryCache()
    started, release = threading.Event(), threading.Event()
    load = blocked_loader("old", started, release)
    reader = Worker(lambda: cache.get_or_load("k", ["track:1"], load))
    assert started.wait(WAIT_S)
    # The "write" commits while the load is in flight, then invalidates.
    if writer == "invalidate":
        assert cache.invalidate("track:1") == 0  # nothing stored yet
    else:
        cache.clear()
    release.set()
    assert reader.result() == "old"  # the caller overlapped the write: it may see either
    assert cache.stats.uncached_loads == 1
    assert cache.stats.entries == 0
    again = Counter(lambda: "new")
    assert cache.get_or_load("k", ["track:1"], again) == "new"
    assert again.calls == 1
    assert cache.get_or_load("k", ["track:1"], again) == "new"
    assert again.calls == 1


def test_an_unrelated_invalidation_does_not_stop_caching() -> None:
    cache = QueryCache()
    started, release = threading.Event(), threading.Event()
    load = blocked_loader("v", started, release)
    reader = Worker(lambda: cache.get_or_load("k", ["track:1"], load))
    assert started.wait(WAIT_S)
    cache.invalidate("track:2")
    release.set()
    assert reader.result() == "v"
    assert cache.stats.uncached_loads == 0
    assert cache.get_or_load("k", ["track:1"], lambda: "reloaded") == "v"


def test_callers_after_an_invalidation_do_not_join_the_stale_load() -> None:
    cache = QueryCache()
    started, release = threading.Event(), threading.Event()
    old = Worker(lambda: cache.get_or_load("k", ["t"], blocked_loader("old", started, release)))
    assert started.wait(WAIT_S)
    cache.invalidate("t")
    # The old load is still blocked; a new caller must load fresh data, not wait for it.
    fresh = Worker(lambda: cache.get_or_load("k", ["t"], lambda: "new"))
    assert fresh.result() == "new"
    release.set()
    assert old.result() == "old"
    assert cache.get_or_load("k", ["t"], lambda: "again") == "new"  # old did not overwrite
    assert cache.stats.uncached_loads == 1


def test_reads_are_never_older_than_the_last_finished_write() -> None:
    """Writers commit then invalidate; a read that starts later must see that version or newer."""
    rows, writers, readers, ops = 4, 4, 4, 2500
    cache = QueryCache(max_entries=3)  # fewer slots than rows: evictions race too
    db = dict.fromkeys(range(rows), 0)
    db_lock = threading.Lock()
    done = dict.fromkeys(range(rows), 0)  # newest version whose invalidate has returned
    done_lock = threading.Lock()
    stale: list[tuple[int, int, int]] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(ops):
            row = rng.randrange(rows)
            with db_lock:  # the transaction
                db[row] += 1
                version = db[row]
            time.sleep(0)  # widen the commit -> invalidate gap
            cache.invalidate(f"row:{row}")
            with done_lock:
                done[row] = max(done[row], version)

    def load(row: int) -> int:
        with db_lock:
            version = db[row]
        time.sleep(0)  # widen the read -> store gap
        return version

    def read(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(ops):
            row = rng.randrange(rows)
            with done_lock:
                floor = done[row]
            got = cache.get_or_load(("row", row), [f"row:{row}"], functools.partial(load, row))
            if got < floor:
                stale.append((row, floor, got))

    targets = [functools.partial(write, s) for s in range(writers)]
    targets += [functools.partial(read, 100 + s) for s in range(readers)]
    run_threads(targets, timeout=60.0)
    assert stale == []
    stats = cache.stats
    assert stats.hits > 0  # the cache was really used
    assert stats.entries <= 3
    assert db == done


# --- single-flight ---------------------------------------------------------------------------


def test_concurrent_misses_share_one_load() -> None:
    cache = QueryCache()
    started, release = threading.Event(), threading.Event()
    load = Counter(blocked_loader(("value",), started, release))
    barrier = threading.Barrier(10, timeout=WAIT_S)

    def get() -> Any:
        barrier.wait()
        return cache.get_or_load("k", ["t"], load)

    workers = [Worker(get) for _ in range(10)]
    wait_until(lambda: cache.stats.misses == 10)  # all ten have missed: nine are waiting
    release.set()
    results = [worker.result() for worker in workers]
    assert load.calls == 1
    assert results == [("value",)] * 10
    assert all(result is results[0] for result in results)
    assert cache.stats.entries == 1


def test_concurrent_misses_with_a_short_real_load() -> None:
    cache = QueryCache()
    barrier = threading.Barrier(10, timeout=WAIT_S)

    def slow() -> str:
        time.sleep(0.1)
        return "v"

    load = Counter(slow)

    def get() -> Any:
        barrier.wait()
        return cache.get_or_load("k", [], load)

    workers = [Worker(get) for _ in range(10)]
    assert [worker.result() for worker in workers] == ["v"] * 10
    assert load.calls == 1
    assert cache.stats.hits + cache.stats.misses == 10


def test_a_failing_shared_load_raises_in_every_waiter_and_caches_nothing() -> None:
    cache = QueryCache()
    started, release = threading.Event(), threading.Event()

    def fail() -> str:
        started.set()
        assert release.wait(WAIT_S)
        raise RuntimeError("boom")

    load = Counter(fail)
    workers = [Worker(lambda: cache.get_or_load("k", ["t"], load)) for _ in range(10)]
    wait_until(lambda: cache.stats.misses == 10)
    release.set()
    errors = []
    for worker in workers:
        with pytest.raises(RuntimeError, match="boom") as info:
            worker.result()
        errors.append(info.value)
    assert load.calls == 1
    assert all(error is errors[0] for error in errors)  # the leader's exception, shared
    assert cache.stats.entries == 0
    assert cache.get_or_load("k", ["t"], lambda: "ok") == "ok"


def test_a_waiter_that_times_out_loads_itself() -> None:
    cache = QueryCache(load_timeout_s=0.05)
    started, release = threading.Event(), threading.Event()
    leader = Worker(lambda: cache.get_or_load("k", ["t"], blocked_loader("slow", started, release)))
    assert started.wait(WAIT_S)
    own = Counter(lambda: "own")
    waiter = Worker(lambda: cache.get_or_load("k", ["t"], own))
    assert waiter.result() == "own"  # returned while the leader is still blocked
    assert own.calls == 1
    assert leader.thread.is_alive()
    release.set()
    assert leader.result() == "slow"
    assert cache.stats.uncached_loads == 0
    assert cache.get_or_load("k", ["t"], lambda: "x") in ("own", "slow")


def test_a_load_that_reads_its_own_key_does_not_deadlock() -> None:
    cache = QueryCache()  # 30 s load timeout: a self-wait would outlast WAIT_S

    def outer() -> str:
        return "outer+" + cache.get_or_load("k", ["t"], lambda: "inner")

    worker = Worker(lambda: cache.get_or_load("k", ["t"], outer))
    assert worker.result() == "outer+inner"


# --- capacity under concurrency --------------------------------------------------------------


def test_capacity_is_never_exceeded_under_concurrent_inserts() -> None:
    limit, threads, per_thread = 16, 8, 500
    cache = QueryCache(max_entries=limit)
    seen: list[int] = []
    barrier = threading.Barrier(threads, timeout=WAIT_S)

    def insert(n: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            cache.get_or_load((n, i), [f"thread:{n}"], functools.partial(int, i))
            seen.append(cache.stats.entries)

    run_threads([functools.partial(insert, n) for n in range(threads)])
    assert max(seen) <= limit
    stats = cache.stats
    assert stats.entries == limit
    assert stats.misses == threads * per_thread
    assert stats.evictions == threads * per_thread - limit
    dropped = sum(cache.invalidate(f"thread:{n}") for n in range(threads))
    assert dropped == limit
    assert cache.stats.entries == 0


def test_two_loaders_needing_each_others_keys_do_not_wait_for_each_other() -> None:
    cache = QueryCache(load_timeout_s=20.0)
    both_started = threading.Barrier(2)

    def loader(own: str, other: str) -> Callable[[], str]:
        def load() -> str:
            both_started.wait(timeout=5)  # both flights are in progress now
            inner = cache.get_or_load(other, ("t",), lambda: f"{other}-inner")
            return f"{own}+{inner}"

        return load

    results: dict[str, str] = {}

    def run(own: str, other: str) -> None:
        results[own] = cache.get_or_load(own, ("t",), loader(own, other))

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    assert not any(thread.is_alive() for thread in threads)
    assert time.monotonic() - started < 10.0  # far under the 20 s wait a cycle would cost
    # each got its own value, built on the other key's (loaded itself, or cached meanwhile)
    assert results["a"] in {"a+b-inner", "a+b+a-inner"}
    assert results["b"] in {"b+a-inner", "b+a+b-inner"}
