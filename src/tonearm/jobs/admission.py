"""Memory-bounded admission: a job starts only when its estimated peak memory fits the budget.

:func:`estimate_job_bytes` estimates one mastering job's peak memory above the process baseline
(the interpreter, numpy and scipy, ~60-80 MiB, are not part of it). :class:`MemoryBudget` hands out
:class:`Reservation` s of bytes so that the reserved total stays within ``budget_bytes``.

Admission policy (strict FIFO by arrival):

* Requests are served in the order they called :meth:`MemoryBudget.acquire`. Only the oldest
  waiting request may be admitted; a request that would fit behind it waits, so a big request
  at the head is never starved by a stream of later small ones. (The price: while the head
  waits for room, smaller requests behind it wait too, even if they would fit.)
* A request larger than the whole budget is admitted when it is at the head and nothing else is
  reserved: it runs alone, and nothing else is admitted until it is released. Otherwise it could
  never run. While it runs, ``in_use_bytes`` (and so ``peak_bytes``) exceeds ``budget_bytes``.
* A waiter that times out or is cancelled leaves the line, and the next one is re-examined.

One :class:`threading.Condition` guards the state; every release and every departure from the
line calls ``notify_all``. A ``cancel`` event cannot wake a condition, so a waiter that was given
one waits in slices of at most :data:`CANCEL_POLL_S` and checks it between slices.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING

from tonearm.errors import Cancelled, ParameterError, TonearmError
from tonearm.jobs.queue import check_timeout

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "CANCEL_POLL_S",
    "AdmissionTimeout",
    "MemoryBudget",
    "Reservation",
    "estimate_job_bytes",
]

MIB = 2**20
CANCEL_POLL_S = 0.05
"""The longest a waiter with a ``cancel`` event sleeps before looking at it again."""

_FLOAT32 = 4
_FLOAT64 = 8
_PIPELINE_STAGES = 4
_BLOCKS_PER_STAGE = (
    2 + 2
)  # queue depth 2, plus the block being worked on and the one being handed on
_TEMPORARIES = 2  # each block has about one temporary copy of its size alive
_SCRATCH_BYTES = 24 * MIB  # FIR kernels, FFT work areas and meter state
_CHUNKS_PER_SECOND = 200  # 5 ms chunks
_CHUNK_ARRAYS = 4
_SPECTRUM_BANDS = 80
_SPECTRUM_BINS = 4097  # rfft bins of an 8192-point FFT


class AdmissionTimeout(TonearmError):
    """``acquire`` could not reserve the bytes within ``timeout_s``."""


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def estimate_job_bytes(
    *,
    frames: int,
    channels: int,
    sample_rate: int,
    decode_cache_mib: int = 96,
    block_frames: int = 262144,
) -> int:
    """Estimated peak memory of one mastering job above the process baseline, in bytes.

    The sum of these terms, rounded up to a whole MiB:

    * decode cache: the decoded float32 samples, ``frames * channels * 4`` bytes, but at most
      ``decode_cache_mib`` MiB (longer files are decoded again instead of cached);
    * pipeline blocks in flight: 4 stages x (queue depth 2 + 2) blocks x ``block_frames`` x
      ``channels`` x 4 bytes, x 2 for the temporaries made while working on a block;
    * FIR and meter scratch: a fixed 24 MiB;
    * 5 ms chunk-level arrays (loudness, peak, gain): ``ceil(frames / (sample_rate * 0.005))``
      chunks x 4 float32 arrays; the only term that keeps growing with duration (~11 MiB an hour);
    * spectrum accumulator: 80 bands x ``channels`` x 4097 bins x 8 bytes (float64).

    For 3 minutes of stereo at 44.1 kHz this is about 155 MiB; beyond ~4.8 minutes of stereo the
    decode cache is capped and only the chunk arrays grow (2 hours of stereo: ~211 MiB).
    """
    _check_int(frames, "frames", 0)
    _check_int(channels, "channels", 1)
    _check_int(sample_rate, "sample_rate", 1)
    _check_int(decode_cache_mib, "decode_cache_mib", 0)
    _check_int(block_frames, "block_frames", 1)
    decode_cache = min(frames * channels * _FLOAT32, decode_cache_mib * MIB)
    blocks = (
        _PIPELINE_STAGES * _BLOCKS_PER_STAGE * block_frames * channels * _FLOAT32 * _TEMPORARIES
    )
    chunks = -(-frames * _CHUNKS_PER_SECOND // sample_rate)  # ceil without floating point
    chunk_arrays = chunks * _CHUNK_ARRAYS * _FLOAT32
    spectrum = _SPECTRUM_BANDS * channels * _SPECTRUM_BINS * _FLOAT64
    total = decode_cache + blocks + _SCRATCH_BYTES + chunk_arrays + spectrum
    return math.ceil(total / MIB) * MIB


class Reservation:
    """Bytes reserved from a :class:`MemoryBudget`; made by :meth:`MemoryBudget.acquire`.

    A context manager: leaving the ``with`` block releases it. :meth:`release` gives the bytes
    back exactly once; further calls do nothing.
    """

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self._budget = budget
        self._nbytes = nbytes
        self._released = False

    @property
    def nbytes(self) -> int:
        """The bytes reserved."""
        return self._nbytes

    @property
    def released(self) -> bool:
        """True once the bytes have been given back."""
        with self._budget._cond:
            return self._released

    def release(self) -> None:
        """Give the bytes back to the budget (once; later calls do nothing)."""
        with self._budget._cond:
            if self._released:
                return
            self._released = True
            self._budget._in_use -= self._nbytes
            self._budget._cond.notify_all()

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Reservation(nbytes={self._nbytes}, released={self._released})"


class MemoryBudget:
    """Reservations of bytes that together stay within ``budget_bytes`` (strict FIFO admission).

    Thread-safe. See the module docstring for the admission policy and the oversize rule.
    """

    def __init__(self, *, budget_bytes: int) -> None:
        self._budget = _check_int(budget_bytes, "budget_bytes", 1)
        self._in_use = 0
        self._peak = 0
        self._line: collections.deque[int] = collections.deque()  # tickets, oldest first
        self._tickets = itertools.count()
        self._cond = threading.Condition(threading.Lock())

    @property
    def budget_bytes(self) -> int:
        """The budget."""
        return self._budget

    @property
    def in_use_bytes(self) -> int:
        """The bytes reserved now."""
        with self._cond:
            return self._in_use

    @property
    def peak_bytes(self) -> int:
        """The most bytes ever reserved at once."""
        with self._cond:
            return self._peak

    @property
    def waiting(self) -> int:
        """How many ``acquire`` calls are waiting now."""
        with self._cond:
            return len(self._line)

    def _fits(self, nbytes: int) -> bool:
        return self._in_use + nbytes <= self._budget or self._in_use == 0

    def acquire(
        self, nbytes: int, *, timeout_s: float, cancel: threading.Event | None = None
    ) -> Reservation:
        """Reserve ``nbytes``, waiting in line up to ``timeout_s`` seconds for room.

        Raises :class:`AdmissionTimeout` when not admitted within ``timeout_s`` (0 = only if it
        can be admitted at once), and :class:`~tonearm.errors.Cancelled` when ``cancel`` is set
        before or while waiting (noticed within :data:`CANCEL_POLL_S`).
        """
        _check_int(nbytes, "nbytes", 0)
        timeout = check_timeout(timeout_s)
        deadline = time.monotonic() + timeout
        with self._cond:
            ticket = next(self._tickets)
            self._line.append(ticket)
            admitted = False
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("cancelled while waiting for memory")
                    if self._line[0] == ticket and self._fits(nbytes):
                        self._line.popleft()
                        self._in_use += nbytes
                        self._peak = max(self._peak, self._in_use)
                        admitted = True
                        self._cond.notify_all()  # the next in line may fit too
                        return Reservation(self, nbytes)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AdmissionTimeout(
                            f"{nbytes} bytes not admitted within {timeout} s "
                            f"({self._in_use} of {self._budget} in use)"
                        )
                    self._cond.wait(remaining if cancel is None else min(remaining, CANCEL_POLL_S))
            finally:
                if not admitted:
                    self._line.remove(ticket)
                    self._cond.notify_all()  # a new head may fit now
