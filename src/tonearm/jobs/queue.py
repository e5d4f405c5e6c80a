"""A bounded, thread-safe priority queue for the job engine.

:class:`PriorityJobQueue` hands out the item with the highest ``priority`` first; items of equal
priority come out in the order they were put (FIFO), because every ``put`` takes the next number of
a monotonically increasing sequence and that number breaks ties. The order is decided when an
item is taken, not when it was queued: an item put later with a higher priority comes out before
lower-priority items that were already waiting. Items never need to be comparable.

Every wait is bounded: ``put`` on a full queue waits at most ``timeout_s`` (0 = not at all) and
``get`` waits at most ``timeout_s``. :meth:`PriorityJobQueue.close` makes ``put`` fail with
:class:`QueueClosed` and wakes every waiter; getters still receive the items left, then
:class:`QueueClosed` at once, so worker threads can exit.

One :class:`threading.Condition` guards the state. Every change that could let a waiter proceed
(an item in, an item out, ``remove``, ``close``) calls ``notify_all``: getters and putters share
the condition, and waking only one could wake the wrong kind or lose a wakeup to a waiter that
is timing out at that moment. Waiters re-check their condition in a loop; nothing busy-waits.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING, Generic, TypeVar

from tonearm.errors import ParameterError, TonearmError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PriorityJobQueue", "QueueClosed", "QueueEmpty", "QueueFull", "check_timeout"]

T = TypeVar("T")


class QueueFull(TonearmError):
    """``put`` found the queue full and it stayed full for the whole ``timeout_s``."""


class QueueEmpty(TonearmError):
    """``get`` found the queue empty and it stayed empty for the whole ``timeout_s``."""


class QueueClosed(TonearmError):
    """The queue is closed: no more ``put``; ``get`` raises it once the queue is drained."""


def check_timeout(timeout_s: object, name: str = "timeout_s") -> float:
    """``timeout_s`` as a float; :class:`ParameterError` unless it is a finite number >= 0."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise ParameterError(f"{name} must be a number of seconds >= 0, not {timeout_s!r}")
    value = float(timeout_s)
    if not math.isfinite(value) or value < 0:
        raise ParameterError(f"{name} must be a finite number of seconds >= 0, not {timeout_s!r}")
    return value


def _order(entry: tuple[int, int, object]) -> tuple[int, int]:
    """The sort key of a heap entry: (-priority, sequence); never the item."""
    return entry[0], entry[1]


class PriorityJobQueue(Generic[T]):
    """At most ``max_size`` items; highest ``priority`` first, FIFO within one priority.

    All methods are thread-safe. See the module docstring for the ordering and wait guarantees.
    """

    def __init__(self, *, max_size: int) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ParameterError(f"max_size must be an integer >= 1, not {max_size!r}")
        self._max_size = max_size
        # Entries are (-priority, sequence, item): the heap's smallest entry comes out first, and
        # the unique sequence number settles every tie before the item would be compared.
        self._heap: list[tuple[int, int, T]] = []
        self._sequence = itertools.count()
        self._closed = False
        self._cond = threading.Condition(threading.Lock())

    @property
    def max_size(self) -> int:
        """The most items the queue holds."""
        return self._max_size

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        with self._cond:
            return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def put(self, item: T, *, priority: int = 0, timeout_s: float = 0.0) -> None:
        """Queue ``item``; on a full queue wait up to ``timeout_s`` seconds for room.

        Raises :class:`QueueFull` when there is still no room after ``timeout_s`` (at once when
        it is 0), :class:`QueueClosed` when the queue is closed (also while waiting).
        """
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ParameterError(f"priority must be an integer, not {priority!r}")
        timeout = check_timeout(timeout_s)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise QueueClosed("the queue is closed")
                if len(self._heap) < self._max_size:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueueFull(f"the queue is full ({self._max_size} items)")
                self._cond.wait(remaining)
            heapq.heappush(self._heap, (-priority, next(self._sequence), item))
            self._cond.notify_all()

    def get(self, *, timeout_s: float) -> T:
        """The next item; waits up to ``timeout_s`` seconds for one.

        Raises :class:`QueueEmpty` when none came within ``timeout_s``, and :class:`QueueClosed`
        at once when the queue is closed and drained.
        """
        timeout = check_timeout(timeout_s)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._heap:
                if self._closed:
                    raise QueueClosed("the queue is closed and empty")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueueEmpty(f"no item within {timeout} s")
                self._cond.wait(remaining)
            _, _, item = heapq.heappop(self._heap)
            self._cond.notify_all()
            return item

    def remove(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove the queued items for which ``predicate`` is true; them, in the order out.

        ``predicate`` runs with the queue locked: it must be quick and must not call the queue.
        If it raises, the queue is left unchanged.
        """
        with self._cond:
            keep: list[tuple[int, int, T]] = []
            removed: list[tuple[int, int, T]] = []
            for entry in self._heap:
                (removed if predicate(entry[2]) else keep).append(entry)
            if removed:
                heapq.heapify(keep)
                self._heap = keep
                self._cond.notify_all()
            return [item for _, _, item in sorted(removed, key=_order)]

    def snapshot(self) -> list[tuple[int, T]]:
        """``(priority, item)`` of every queued item, in the order they would come out."""
        with self._cond:
            entries = sorted(self._heap, key=_order)
        return [(-negated, item) for negated, _, item in entries]

    def close(self) -> None:
        """Refuse further ``put``; wake every waiter. Items already queued can still be got."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
