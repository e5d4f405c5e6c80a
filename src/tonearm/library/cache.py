"""In-process cache of library query results: LRU + TTL, invalidated by tag, thread-safe.

Every cached result carries *tags* naming what it was computed from (``"tracks"``,
``"track:42"``, ``"playlist:7"``). A writer commits its transaction and **then** calls
:meth:`QueryCache.invalidate` with the tags of everything it touched; the write counts as done in
this process once ``invalidate`` has returned.

Consistency guarantee: a :meth:`~QueryCache.get_or_load` call that begins after a write is done
never returns a value loaded before that write committed (provided ``load`` reads in a fresh
transaction, and the tags cover what the write touched).

Dropping the tagged entries alone would not give this. A load that started before the commit can
finish after the ``invalidate`` and would then store its old result, to be served for up to
``ttl_s`` seconds. So every load records the generation of each of its tags (and a global
generation bumped by :meth:`~QueryCache.clear`) before it starts, and its result is stored only if
none changed by the time it finishes. A result that raced an invalidation is still returned to its
own caller, whose call overlapped the write, but is not stored, and callers arriving after the
invalidation do not join that load either: they start a new one. A tag's generation is kept only
while some load depending on it is in progress, so memory stays bounded however many tags exist.

Values are returned as stored, never copied: cache only immutable values (tuples, frozen
dataclasses).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

from tonearm.errors import ParameterError

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

__all__ = ["CacheStats", "QueryCache"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made; ``entries`` is the number stored now.

    ``misses`` counts calls not served from the cache (including those that waited for another
    thread's load); ``evictions`` entries dropped for capacity or because their TTL ran out;
    ``invalidations`` entries dropped by :meth:`QueryCache.invalidate` or
    :meth:`QueryCache.clear`; ``uncached_loads`` loads whose result was not stored because an
    invalidation of one of its tags raced the load.
    """

    hits: int
    misses: int
    evictions: int
    invalidations: int
    entries: int
    uncached_loads: int


@dataclass(slots=True)
class _Entry:
    value: object
    tags: frozenset[str]
    expires_at: float  # clock seconds


class _TagWatch:
    """Generation of one tag, kept only while some load in progress depends on the tag."""

    __slots__ = ("generation", "watchers")

    def __init__(self) -> None:
        self.generation = 0
        self.watchers = 0


@dataclass(slots=True)
class _Ticket:
    """The generations a load saw when it started."""

    tags: frozenset[str]
    clear_generation: int
    seen: tuple[tuple[str, _TagWatch, int], ...]


@dataclass(slots=True)
class _Flight:
    """One load in progress that other callers missing the same key wait for."""

    ticket: _Ticket
    owner: int  # thread ident of the loading thread
    done: threading.Event
    value: object = None
    error: BaseException | None = None


def _as_tags(tags: Iterable[str]) -> frozenset[str]:
    if isinstance(tags, str):
        raise ParameterError(f"tags must be an iterable of strings, not the string {tags!r}")
    tag_list = list(tags)
    if not all(isinstance(tag, str) for tag in tag_list):
        raise ParameterError(f"tags must be strings, not {tag_list!r}")
    return frozenset(tag_list)


class QueryCache:
    """Thread-safe LRU + TTL cache of query results, invalidated by tag (see the module doc).

    ``max_entries`` bounds the number of stored results; ``ttl_s`` is how long (seconds, on
    ``clock``) a result is served after it was stored; ``load_timeout_s`` is how long (seconds) a
    caller waits for another thread already loading the same key before loading itself.
    """

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        ttl_s: float = 30.0,
        load_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ParameterError(f"max_entries must be at least 1, not {max_entries}")
        if not ttl_s > 0:
            raise ParameterError(f"ttl_s must be positive seconds, not {ttl_s}")
        if not load_timeout_s > 0:
            raise ParameterError(f"load_timeout_s must be positive seconds, not {load_timeout_s}")
        self._max_entries = max_entries
        self._ttl_s = float(ttl_s)
        self._load_timeout_s = float(load_timeout_s)
        self._clock = clock
        # One lock guards everything below; load() and waits never run under it.
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recent first
        self._keys_by_tag: dict[str, set[Hashable]] = {}
        self._watches: dict[str, _TagWatch] = {}
        self._clear_generation = 0
        self._flights: dict[Hashable, _Flight] = {}
        self._local = threading.local()  # .depth: loads this thread is inside
        self._hits = self._misses = self._evictions = 0
        self._invalidations = self._uncached_loads = 0

    def get_or_load(self, key: Hashable, tags: Iterable[str], load: Callable[[], T]) -> T:
        """Return the cached result for ``key``, or ``load()`` it and cache it under ``tags``.

        ``tags`` must depend only on ``key``. While one thread loads a key, other callers missing
        it wait (up to ``load_timeout_s``) for that result instead of loading it again; if the
        load raises an ``Exception``, every waiter gets that same exception re-raised and nothing
        is cached. A waiter that times out (or whose loader died of a ``BaseException``) loads
        itself, as does a ``load`` that requests its own key again (instead of waiting for itself)
        and any ``load`` that requests a key another thread is loading (two loaders that need
        each other's keys would otherwise wait for each other until the timeout).
        """
        tag_set = _as_tags(tags)
        me = threading.get_ident()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if self._clock() < entry.expires_at:
                    self._entries.move_to_end(key)
                    self._hits += 1
                    return cast("T", entry.value)
                self._drop(key)
                self._evictions += 1
            self._misses += 1
            flight = self._flights.get(key)
            if flight is not None and flight.owner != me and not self._stale(flight.ticket):
                leader = None
            else:
                leader = _Flight(self._watch(tag_set), me, threading.Event())
                self._flights[key] = leader
        if leader is not None:
            return self._run(key, leader.ticket, load, leader)
        assert flight is not None
        # a loader asking for a key another thread is loading loads it itself: that thread may
        # be waiting, inside its own loader, for a key this one is loading (a cycle)
        if not self._inside_load() and flight.done.wait(self._load_timeout_s):
            if flight.error is None:
                return cast("T", flight.value)
            if isinstance(flight.error, Exception):
                raise flight.error
        with self._lock:
            ticket = self._watch(tag_set)
        return self._run(key, ticket, load, None)

    def peek(self, key: Hashable, default: T) -> object | T:
        """The cached result for ``key`` if there is a fresh one, else ``default``; never loads
        or waits (an event loop can answer a hit without a thread)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() >= entry.expires_at:
                return default
            self._entries.move_to_end(key)
            self._hits += 1
            return entry.value

    def invalidate(self, *tags: str) -> int:
        """Drop every entry carrying any of ``tags``; return how many were dropped.

        Call it after the write's transaction has committed. Loads in progress that depend on one
        of ``tags`` will not store their result.
        """
        tag_set = _as_tags(tags)
        dropped = 0
        with self._lock:
            for tag in tag_set:
                watch = self._watches.get(tag)
                if watch is not None:
                    watch.generation += 1
                for key in list(self._keys_by_tag.get(tag, ())):
                    self._drop(key)
                    dropped += 1
            self._invalidations += dropped
        return dropped

    def clear(self) -> None:
        """Drop every entry; no load in progress will store its result."""
        with self._lock:
            self._clear_generation += 1
            self._invalidations += len(self._entries)
            self._entries.clear()
            self._keys_by_tag.clear()

    @property
    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                invalidations=self._invalidations,
                entries=len(self._entries),
                uncached_loads=self._uncached_loads,
            )

    def _run(
        self, key: Hashable, ticket: _Ticket, load: Callable[[], T], flight: _Flight | None
    ) -> T:
        """Call ``load()`` (lock not held), store the result unless it raced, wake the waiters."""
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            value = load()
        except BaseException as exc:
            self._local.depth -= 1
            with self._lock:
                self._unwatch(ticket)
                if flight is not None and self._flights.get(key) is flight:
                    del self._flights[key]
            if flight is not None:
                flight.error = exc
                flight.done.set()
            raise
        self._local.depth -= 1
        with self._lock:
            if self._stale(ticket):
                self._uncached_loads += 1
            else:
                self._store(key, ticket.tags, value)
            self._unwatch(ticket)
            if flight is not None and self._flights.get(key) is flight:
                del self._flights[key]
        if flight is not None:
            flight.value = value
            flight.done.set()
        return value

    def _inside_load(self) -> bool:
        return bool(getattr(self._local, "depth", 0))

    # The helpers below run with the lock held.

    def _watch(self, tags: frozenset[str]) -> _Ticket:
        seen = []
        for tag in tags:
            watch = self._watches.get(tag)
            if watch is None:
                watch = self._watches[tag] = _TagWatch()
            watch.watchers += 1
            seen.append((tag, watch, watch.generation))
        return _Ticket(tags, self._clear_generation, tuple(seen))

    def _stale(self, ticket: _Ticket) -> bool:
        return ticket.clear_generation != self._clear_generation or any(
            watch.generation != generation for _, watch, generation in ticket.seen
        )

    def _unwatch(self, ticket: _Ticket) -> None:
        for tag, watch, _ in ticket.seen:
            watch.watchers -= 1
            if watch.watchers == 0:
                del self._watches[tag]

    def _store(self, key: Hashable, tags: frozenset[str], value: object) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(value, tags, self._clock() + self._ttl_s)
        for tag in tags:
            self._keys_by_tag.setdefault(tag, set()).add(key)
        while len(self._entries) > self._max_entries:
            self._drop(next(iter(self._entries)))
            self._evictions += 1

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        for tag in entry.tags:
            keys = self._keys_by_tag[tag]
            keys.discard(key)
            if not keys:
                del self._keys_by_tag[tag]
