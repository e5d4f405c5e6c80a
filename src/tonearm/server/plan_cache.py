"""The mastered-stream plan cache: bounded LRU, thread-safe, one computation per key.

A plan costs one analysis pass over the track (a fraction of a second to a few seconds); a
player asks for it on every range request of the mastered stream. :class:`PlanCache` keeps the
most recently used :data:`DEFAULT_MAX_PLANS` plans (a plan is a few hundred numbers), and
concurrent first requests for one key share one computation (single flight): the first caller
computes on its own thread (a route's worker thread, never the event loop), the others wait
for its result, every wait bounded. At most ``max_concurrent`` computations run at once.
Failures are not cached: the next request tries again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from tonearm.mastering.stream import StreamPlan

__all__ = ["DEFAULT_MAX_PLANS", "PLAN_TIMEOUT_S", "PlanCache", "PlanKey"]

DEFAULT_MAX_PLANS = 256
PLAN_TIMEOUT_S = 300.0
"""Longest a request waits for a plan (an hour-long track analyses in well under a minute)."""


@dataclass(frozen=True, slots=True)
class PlanKey:
    """What a plan depends on: the file's identity and state, the target (its name, loudness and
    ceiling: a preset and a custom target never share a plan) and the strength."""

    track_id: int
    content_hash: str
    size_bytes: int
    mtime_ns: int
    target: str
    lufs: float
    ceiling_dbtp: float
    strength: float


class PlanCache:
    """LRU of :class:`~tonearm.mastering.stream.StreamPlan` by :class:`PlanKey`."""

    def __init__(self, max_plans: int = DEFAULT_MAX_PLANS, *, max_concurrent: int = 2) -> None:
        if max_plans < 1 or max_concurrent < 1:
            raise ValueError("max_plans and max_concurrent must be >= 1")
        self._max = max_plans
        self._lock = threading.Lock()
        self._plans: OrderedDict[PlanKey, StreamPlan] = OrderedDict()
        self._pending: dict[PlanKey, Future[StreamPlan]] = {}
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self.computed = 0
        """Plans computed so far (a test's proof of single flight)."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._plans)

    def peek(self, key: PlanKey) -> StreamPlan | None:
        """The cached plan, if any (marks it recently used)."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def get(
        self,
        key: PlanKey,
        compute: Callable[[], StreamPlan],
        *,
        timeout_s: float = PLAN_TIMEOUT_S,
    ) -> tuple[StreamPlan, bool]:
        """The plan for ``key`` and whether it was cached; ``compute()`` it on a miss.

        Raises
        ------
        TimeoutError
            No plan within ``timeout_s`` (waiting for a slot or for another caller's result).
        Exception
            Whatever ``compute`` raised (for every caller waiting on that computation).
        """
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan, True
            future = self._pending.get(key)
            owner = future is None
            if future is None:
                future = self._pending[key] = Future()
        if not owner:
            return future.result(timeout=timeout_s), False
        try:
            if not self._slots.acquire(timeout=timeout_s):
                raise TimeoutError(f"no plan slot free within {timeout_s:g} s")
            try:
                plan = compute()
            finally:
                self._slots.release()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            future.set_exception(exc)
            raise
        with self._lock:
            self.computed += 1
            self._plans[key] = plan
            while len(self._plans) > self._max:
                self._plans.popitem(last=False)
            del self._pending[key]
        future.set_result(plan)
        return plan, False
