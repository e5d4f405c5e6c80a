"""estimate_job_bytes and MemoryBudget: figures, accounting, the budget bound, FIFO, cancel."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.jobs.threads import JOIN_S, join, start
from tonearm.errors import Cancelled, ParameterError, TonearmError
from tonearm.jobs.admission import (
    AdmissionTimeout,
    MemoryBudget,
    Reservation,
    estimate_job_bytes,
)

MIB = 2**20
SR = 44_100


def wait_until(predicate, timeout_s: float = JOIN_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def estimate_mib(seconds: float, channels: int = 2, sample_rate: int = SR) -> float:
    frames = int(seconds * sample_rate)
    return estimate_job_bytes(frames=frames, channels=channels, sample_rate=sample_rate) / MIB


# --- estimate_job_bytes ----------------------------------------------------------------------


def test_estimate_for_three_minutes_of_stereo_is_plausible() -> None:
    value = estimate_job_bytes(frames=180 * SR, channels=2, sample_rate=SR)
    assert value % MIB == 0  # rounded to whole MiB
    assert 60 <= value / MIB <= 200


def test_estimate_stops_growing_with_the_decode_cache_cap() -> None:
    cap_reached_s = 96 * MIB / (2 * 4 * SR)  # ~285 s of stereo float32
    at_cap = estimate_mib(cap_reached_s + 1)
    two_hours = estimate_mib(7200)
    # Only the 5 ms chunk arrays still grow: 16 bytes per 220.5 frames, ~11 MiB an hour.
    chunk_growth = (7200 - cap_reached_s) * 200 * 16 / MIB
    assert abs(two_hours - at_cap - chunk_growth) <= 1
    assert two_hours - at_cap < 25  # the raw samples would have grown by ~2.3 GiB
    assert two_hours < 250


def test_estimate_grows_with_channels_and_rounds_up() -> None:
    mono, stereo, surround = (estimate_mib(180, channels) for channels in (1, 2, 6))
    assert mono < stereo < surround
    assert estimate_job_bytes(frames=1, channels=1, sample_rate=SR) % MIB == 0
    assert estimate_job_bytes(frames=0, channels=1, sample_rate=SR) >= 24 * MIB


def test_estimate_follows_the_cache_and_block_settings() -> None:
    base = estimate_job_bytes(frames=3600 * SR, channels=2, sample_rate=SR)
    small_cache = estimate_job_bytes(
        frames=3600 * SR, channels=2, sample_rate=SR, decode_cache_mib=16
    )
    half_blocks = estimate_job_bytes(
        frames=3600 * SR, channels=2, sample_rate=SR, block_frames=131072
    )
    assert base - small_cache == 80 * MIB
    assert base - half_blocks == 32 * MIB  # 4 x 4 x 131072 x 2 ch x 4 B x 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frames": -1},
        {"channels": 0},
        {"sample_rate": 0},
        {"decode_cache_mib": -1},
        {"block_frames": 0},
        {"frames": 1.5},
        {"channels": True},
    ],
)
def test_estimate_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"frames": 100, "channels": 2, "sample_rate": SR, **kwargs}
    with pytest.raises(ParameterError):
        estimate_job_bytes(**arguments)  # type: ignore[arg-type]


# --- MemoryBudget -------------------------------------------------------------------------------


def test_acquire_and_release_accounting() -> None:
    budget = MemoryBudget(budget_bytes=100)
    assert (budget.budget_bytes, budget.in_use_bytes, budget.peak_bytes, budget.waiting) == (
        100,
        0,
        0,
        0,
    )
    first = budget.acquire(30, timeout_s=0)
    with budget.acquire(50, timeout_s=0) as second:
        assert isinstance(second, Reservation)
        assert second.nbytes == 50
        assert budget.in_use_bytes == 80
    assert second.released
    assert budget.in_use_bytes == 30
    assert not first.released
    first.release()
    assert budget.in_use_bytes == 0
    assert budget.peak_bytes == 80


def test_release_is_idempotent() -> None:
    budget = MemoryBudget(budget_bytes=100)
    keep = budget.acquire(40, timeout_s=0)
    with budget.acquire(60, timeout_s=0) as reservation:
        reservation.release()
        reservation.release()
    reservation.release()
    assert budget.in_use_bytes == 40
    keep.release()
    keep.release()
    assert budget.in_use_bytes == 0


def test_full_budget_times_out() -> None:
    budget = MemoryBudget(budget_bytes=100)
    held = budget.acquire(80, timeout_s=0)
    with pytest.raises(AdmissionTimeout):
        budget.acquire(30, timeout_s=0)
    began = time.monotonic()
    with pytest.raises(AdmissionTimeout):
        budget.acquire(30, timeout_s=0.1)
    assert 0.09 <= time.monotonic() - began < 1.0
    assert budget.waiting == 0
    assert budget.in_use_bytes == 80
    assert isinstance(AdmissionTimeout("x"), TonearmError)
    held.release()
    budget.acquire(30, timeout_s=0).release()


def test_waiter_is_admitted_when_room_is_freed() -> None:
    budget = MemoryBudget(budget_bytes=100)
    held = budget.acquire(70, timeout_s=0)
    got: list[Reservation] = []
    thread = start(lambda: got.append(budget.acquire(50, timeout_s=JOIN_S)))
    wait_until(lambda: budget.waiting == 1)
    assert got == []
    held.release()
    join(thread)
    assert budget.in_use_bytes == 50
    got[0].release()


def test_never_exceeds_budget_under_many_threads() -> None:
    budget_bytes, threads, rounds = 1000, 16, 40
    budget = MemoryBudget(budget_bytes=budget_bytes)
    lock = threading.Lock()
    inside = {"bytes": 0, "jobs": 0, "max_bytes": 0, "max_jobs": 0}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads, timeout=JOIN_S)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(rounds):
                size = rng.randint(1, budget_bytes // 3)
                with budget.acquire(size, timeout_s=JOIN_S):
                    with lock:
                        inside["bytes"] += size
                        inside["jobs"] += 1
                        inside["max_bytes"] = max(inside["max_bytes"], inside["bytes"])
                        inside["max_jobs"] = max(inside["max_jobs"], inside["jobs"])
                    time.sleep(rng.random() * 0.002)
                    with lock:
                        inside["bytes"] -= size
                        inside["jobs"] -= 1
        except BaseException as exc:
            errors.append(exc)

    join(*[start(worker, seed) for seed in range(threads)])
    assert errors == []
    assert inside["max_bytes"] <= budget_bytes
    assert budget.peak_bytes <= budget_bytes
    assert inside["max_jobs"] >= 2  # reservations really overlapped
    assert budget.in_use_bytes == 0
    assert budget.waiting == 0


def test_big_request_at_the_head_is_not_starved_by_later_small_ones() -> None:
    budget = MemoryBudget(budget_bytes=100)
    held = budget.acquire(60, timeout_s=0)
    order: list[str] = []
    lock = threading.Lock()
    big_may_finish = threading.Event()

    def big() -> None:
        with budget.acquire(100, timeout_s=JOIN_S):
            with lock:
                order.append("big")
            big_may_finish.wait(JOIN_S)

    def small() -> None:
        with budget.acquire(10, timeout_s=JOIN_S), lock:
            order.append("small")

    big_thread = start(big)
    wait_until(lambda: budget.waiting == 1)
    small_thread = start(small)  # 60 + 10 would fit, but the big request is first in line
    wait_until(lambda: budget.waiting == 2)
    time.sleep(0.1)
    assert order == []
    held.release()
    wait_until(lambda: order == ["big"])
    time.sleep(0.05)
    assert order == ["big"]  # 100 + 10 does not fit: small waits for big
    big_may_finish.set()
    join(big_thread, small_thread)
    assert order == ["big", "small"]
    assert budget.peak_bytes == 100


def test_head_that_times_out_lets_the_next_one_in() -> None:
    budget = MemoryBudget(budget_bytes=100)
    held = budget.acquire(60, timeout_s=0)
    outcomes: dict[str, float] = {}

    def big() -> None:
        try:
            budget.acquire(100, timeout_s=0.2)
        except AdmissionTimeout:
            outcomes["big timed out"] = time.monotonic()

    def small() -> None:
        with budget.acquire(10, timeout_s=JOIN_S):
            outcomes["small admitted"] = time.monotonic()

    began = time.monotonic()
    big_thread = start(big)
    wait_until(lambda: budget.waiting == 1)
    small_thread = start(small)
    join(big_thread, small_thread)
    assert set(outcomes) == {"big timed out", "small admitted"}
    assert outcomes["small admitted"] - began >= 0.19  # it waited behind the big request
    assert outcomes["small admitted"] - began < 1.0  # and went in once the big one gave up
    held.release()


def test_oversize_request_is_admitted_alone() -> None:
    budget = MemoryBudget(budget_bytes=100)
    held = budget.acquire(10, timeout_s=0)
    with pytest.raises(AdmissionTimeout):
        budget.acquire(500, timeout_s=0.05)  # not while anything else is reserved
    held.release()
    oversize = budget.acquire(500, timeout_s=0)
    assert budget.in_use_bytes == 500
    with pytest.raises(AdmissionTimeout):
        budget.acquire(0, timeout_s=0.05)  # nothing joins it
    oversize.release()
    assert budget.peak_bytes == 500
    budget.acquire(100, timeout_s=0).release()


def test_cancel_while_waiting_raises_cancelled_quickly() -> None:
    budget = MemoryBudget(budget_bytes=100)
    held = budget.acquire(100, timeout_s=0)
    cancel = threading.Event()
    outcome: dict[str, float] = {}

    def waiter() -> None:
        try:
            budget.acquire(50, timeout_s=JOIN_S, cancel=cancel)
        except Cancelled:
            outcome["cancelled_at"] = time.monotonic()

    thread = start(waiter)
    wait_until(lambda: budget.waiting == 1)
    cancelled_at = time.monotonic()
    cancel.set()
    join(thread)
    assert "cancelled_at" in outcome
    assert outcome["cancelled_at"] - cancelled_at < 0.5
    assert budget.waiting == 0
    assert budget.in_use_bytes == 100
    held.release()


def test_already_cancelled_is_not_admitted() -> None:
    budget = MemoryBudget(budget_bytes=100)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        budget.acquire(10, timeout_s=1, cancel=cancel)
    assert budget.in_use_bytes == 0
    assert budget.waiting == 0


@pytest.mark.parametrize("budget_bytes", [0, -5, True, 10.0])
def test_bad_budget(budget_bytes: object) -> None:
    with pytest.raises(ParameterError):
        MemoryBudget(budget_bytes=budget_bytes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nbytes", "timeout_s"),
    [(-1, 0), (1.5, 0), (True, 0), (10, None), (10, -1), (10, float("inf")), (10, float("nan"))],
)
def test_bad_acquire_arguments(nbytes: object, timeout_s: object) -> None:
    budget = MemoryBudget(budget_bytes=100)
    with pytest.raises(ParameterError):
        budget.acquire(nbytes, timeout_s=timeout_s)  # type: ignore[arg-type]
    assert budget.in_use_bytes == 0
    assert budget.waiting == 0
