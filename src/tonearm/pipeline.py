"""Thread stages for block streams: bounded, timed and cancellable.

:func:`threaded_map` runs ``fn`` over an iterable on its own thread and hands the results on
through a bounded queue, so consecutive stages of a render (decode + EQ, dynamics, encode +
meters) run at the same time on different cores. The DSP releases the GIL inside numpy, SciPy
and libsndfile calls, so two stages on two cores take about the time of the slower one.

Guarantees:

* **Bounded memory**: at most ``depth`` results wait in the queue, plus one in flight on each
  side.
* **Order**: results come out in the order of the input.
* **Errors**: an exception raised by the source or by ``fn`` is re-raised in the consumer, with
  its type and message, after the results produced before it.
* **Cancellation**: when the consumer stops early (``break``, an exception, ``close()``), the
  worker stops at its next result, closes its source (which closes any stage before it, and
  any file a source generator holds open) and is joined.
* **Timeouts**: every wait is bounded. A consumer waiting longer than ``stall_timeout_s`` for
  one result raises :class:`~tonearm.errors.TonearmError` at once (the stalled worker is left
  to end by itself, as a daemon thread); a worker whose consumer has gone stops within
  ``POLL_S`` of finishing its current item, and is waited for at most ``JOIN_TIMEOUT_S``.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, Final, TypeVar

from tonearm.errors import ParameterError, TonearmError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator

__all__ = ["DEFAULT_STALL_TIMEOUT_S", "POLL_S", "threaded_map"]

T = TypeVar("T")
U = TypeVar("U")

POLL_S: Final = 0.05
"""Seconds between a blocked worker's checks for cancellation."""
DEFAULT_STALL_TIMEOUT_S: Final = 300.0
"""Longest wait for one result; no block of audio takes near this, a hung stage must end."""
JOIN_TIMEOUT_S: Final = 30.0
"""Longest wait for a cancelled worker to finish the item it is computing."""

_ITEM: Final = 0
_END: Final = 1
_ERROR: Final = 2


class _Worker:
    """One thread computing ``fn(item)`` for each item of ``source`` into a bounded queue."""

    def __init__(
        self, source: Iterable[Any], fn: Callable[[Any], Any], *, depth: int, name: str
    ) -> None:
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.stalled = False
        self._thread = threading.Thread(
            target=self._run, args=(iter(source), fn), name=name, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self, items: Iterator[Any], fn: Callable[[Any], Any]) -> None:
        try:
            for item in items:
                if self._stop.is_set() or not self._offer((_ITEM, fn(item))):
                    return
            self._offer((_END, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._offer((_ERROR, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator source releases what it holds (files, earlier stages)

    def _offer(self, entry: tuple[int, Any]) -> bool:
        """Put ``entry`` in the queue unless cancelled first; True when it went in."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def take(self, timeout_s: float) -> tuple[int, Any]:
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            self.stalled = True
            raise TonearmError(
                f"processing stage '{self._thread.name}' produced nothing for {timeout_s:g} s"
            ) from None

    def cancel(self) -> None:
        """Ask the worker to stop; wait for it unless it has stalled (it then stops, as a
        daemon thread, whenever its current item ends)."""
        self._stop.set()
        if self.stalled or self._thread is threading.current_thread():
            return
        self._thread.join(timeout=JOIN_TIMEOUT_S)


def threaded_map(
    fn: Callable[[T], U],
    source: Iterable[T],
    *,
    depth: int = 2,
    name: str = "tonearm-stage",
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
) -> Generator[U, None, None]:
    """``fn`` applied to each item of ``source`` on a worker thread, as an ordered iterator.

    The worker starts on the first ``next()``. See the module docstring for the guarantees.

    Parameters
    ----------
    fn : callable
        Applied to each item on the worker thread. It must not share mutable state with the
        consumer (each stage object is used by one thread only).
    source : iterable
        Iterated on the worker thread, and closed there when the stream ends or is cancelled.
    depth : int
        Results that may wait in the queue (>= 1).
    name : str
        The worker thread's name (shown in errors).
    stall_timeout_s : float
        Longest wait for one result, seconds.
    """
    if depth < 1 or stall_timeout_s <= 0:
        raise ParameterError(
            f"depth must be >= 1 and stall_timeout_s > 0, got {depth} and {stall_timeout_s}"
        )
    return _consume(_Worker(source, fn, depth=depth, name=name), stall_timeout_s)


def _consume(worker: _Worker, stall_timeout_s: float) -> Generator[Any, None, None]:
    worker.start()
    try:
        while True:
            kind, value = worker.take(stall_timeout_s)
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        worker.cancel()
