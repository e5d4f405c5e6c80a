"""Measuring the job engine's worker processes with psutil and ``/proc``: who, CPU, memory.

The engine names a worker process ``pid N`` (``JobEngine.ready()``, ``JobStatus.worker``):
:func:`pid_of` turns a name into a pid. :class:`CpuMeter` measures a block of work: CPU times
(user + system seconds, at psutil's resolution of a clock tick, 10 ms) of the workers, this
process and its other children; each worker's time running *or ready to run* (Linux's
``schedstat``), which a machine busy with other work does not shrink, unlike the CPU time; and
the CPU time the rest of the machine took of this process's cores, so a test can tell whether
two cores were really free. :class:`PeakRss` measures memory: the resident set size, and a
process's peak from Linux's ``VmHWM`` after a reset through ``/proc/PID/clear_refs`` (exact),
or, where that reset is refused, from sampling the RSS every few milliseconds (a lower bound).
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

__all__ = [
    "CpuMeter",
    "CpuUse",
    "PeakRss",
    "alive",
    "children",
    "cpu_seconds",
    "pid_of",
    "rss_bytes",
    "wait_gone",
]

SAMPLE_EVERY_S = 0.005
"""How often :class:`PeakRss` samples the RSS."""


def pid_of(name: str) -> int:
    """The pid in a worker process's name (``"pid 1234"``)."""
    prefix, _, number = name.partition(" ")
    assert prefix == "pid", f"not a worker process's name: {name!r}"
    assert number.isdigit(), f"not a worker process's name: {name!r}"
    return int(number)


def cpu_seconds(process: Any) -> float:
    """User + system CPU seconds a process (its own threads, not its children) has used."""
    times = process.cpu_times()
    return float(times.user + times.system)


def rss_bytes(process: Any) -> int:
    return int(process.memory_info().rss)


def alive(process: Any) -> bool:
    """Whether the process still runs (a zombie, or a new process given its pid, does not)."""
    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(processes: Iterable[Any], *, timeout_s: float) -> list[int]:
    """Wait (at most ``timeout_s``) for the processes to exit; the pids still running then."""
    waiting = list(processes)
    deadline = time.monotonic() + timeout_s
    while True:
        left = [process.pid for process in waiting if alive(process)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def children() -> list[Any]:
    """This process's live direct children, less multiprocessing's resource tracker (started
    with the first pool, it outlives them all)."""
    found = []
    for child in psutil.Process().children(recursive=False):
        try:
            if "resource_tracker" in " ".join(child.cmdline()) or not alive(child):
                continue
        except psutil.NoSuchProcess:
            continue
        found.append(child)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds used while a :class:`CpuMeter` ran, and by whom."""

    wall_s: float
    workers_s: dict[int, float]
    """Each worker process's CPU time, by pid."""
    runnable_s: dict[int, float]
    """Each worker process's time running or ready to run, waiting for a core (its threads'
    ``/proc/PID/task/TID/schedstat``; its CPU time where Linux keeps no such record): what it
    would have run with a core to itself, so a busy machine does not shrink it."""
    parent_s: float
    """This process's CPU time (the engine's threads, the test's own)."""
    helpers_s: float
    """This process's other children's (the engine's multiprocessing manager)."""
    others_s: float
    """What every other process on the machine took of the cores this process may use."""
    cores: int
    """The cores this process may use (``os.sched_getaffinity``)."""

    @property
    def all_workers_s(self) -> float:
        return sum(self.workers_s.values())

    @property
    def overhead_s(self) -> float:
        """Everything but the workers: the cost of running jobs elsewhere."""
        return self.parent_s + self.helpers_s

    @property
    def runnable_workers(self) -> float:
        """How many worker processes were running or ready to run, on average."""
        return sum(self.runnable_s.values()) / self.wall_s

    @property
    def spare_cores(self) -> float:
        """How many of this process's cores the rest of the machine left free, on average."""
        return self.cores - self.others_s / self.wall_s


@dataclasses.dataclass(frozen=True, slots=True)
class _Snapshot:
    wall: float
    workers: dict[int, float]
    runnable: dict[int, float]
    parent: float
    helpers: dict[int, float]
    machine: float
    ours: float


def _runnable_seconds(process: Any) -> float:
    """Seconds the process's live threads have run or waited to run (or its CPU time)."""
    total_ns = 0
    try:
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread gone
                on_cpu, waiting, _ = (task / "schedstat").read_text().split()
                total_ns += int(on_cpu) + int(waiting)
    except FileNotFoundError:
        return cpu_seconds(process)
    return total_ns / 1e9 if total_ns else cpu_seconds(process)


def _busy_seconds(cores: set[int]) -> float:
    """CPU seconds every process has used on ``cores`` since boot (steal included: a core the
    hypervisor took was not free either)."""
    per_core = psutil.cpu_times(percpu=True)
    return sum(
        float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)
        for core, t in enumerate(per_core)
        if core in cores
    )


def _tree_seconds(me: Any) -> float:
    """CPU seconds this process, its live descendants and its reaped children have used."""
    times = me.cpu_times()
    total = float(times.user + times.system + times.children_user + times.children_system)
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += cpu_seconds(child)
    return total


class CpuMeter:
    """``with CpuMeter(pids) as meter: ...`` then ``meter.use``: the wall time of the block,
    and the CPU time the worker processes, this process, its other children and the rest of
    the machine used inside it. The workers must outlive the block; a helper that exits inside
    it counts what it had used."""

    def __init__(self, worker_pids: Iterable[int]) -> None:
        self._me = psutil.Process()
        self._cores = os.sched_getaffinity(0)
        self._workers = {pid: psutil.Process(pid) for pid in worker_pids}
        self._helpers = [p for p in children() if p.pid not in self._workers]
        self._start: _Snapshot | None = None
        self._use: CpuUse | None = None

    def _snapshot(self) -> _Snapshot:
        helpers = {}
        for helper in self._helpers:
            with contextlib.suppress(psutil.NoSuchProcess):
                helpers[helper.pid] = cpu_seconds(helper)
        return _Snapshot(
            wall=time.perf_counter(),
            workers={pid: cpu_seconds(process) for pid, process in self._workers.items()},
            runnable={pid: _runnable_seconds(p) for pid, p in self._workers.items()},
            parent=cpu_seconds(self._me),
            helpers=helpers,
            machine=_busy_seconds(self._cores),
            ours=_tree_seconds(self._me),
        )

    def __enter__(self) -> CpuMeter:
        self._start = self._snapshot()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        start = self._start
        assert start is not None
        end = self._snapshot()
        self._use = CpuUse(
            wall_s=end.wall - start.wall,
            workers_s={pid: end.workers[pid] - start.workers[pid] for pid in end.workers},
            runnable_s={pid: end.runnable[pid] - start.runnable[pid] for pid in end.runnable},
            parent_s=end.parent - start.parent,
            helpers_s=sum(
                end.helpers[pid] - start.helpers[pid] for pid in end.helpers if pid in start.helpers
            ),
            others_s=max(0.0, (end.machine - start.machine) - (end.ours - start.ours)),
            cores=len(self._cores),
        )

    @property
    def use(self) -> CpuUse:
        assert self._use is not None, "read the use after the block"
        return self._use


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> bool:
    """Reset the process's peak RSS (``VmHWM``) to its RSS now; False where Linux refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakRss:
    """``with PeakRss(pids) as peak: ...`` then ``peak.baseline[pid]`` (the RSS at the start)
    and ``peak.peak[pid]`` (the highest RSS inside the block), in bytes; ``peak.exact`` says
    whether the peaks are Linux's own (``VmHWM``) or sampled."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._processes = {pid: psutil.Process(pid) for pid in pids}
        self.baseline: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.exact = False
        self._sampled: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            for pid, process in self._processes.items():
                try:
                    self._sampled[pid] = max(self._sampled[pid], rss_bytes(process))
                except psutil.NoSuchProcess:
                    continue

    def __enter__(self) -> PeakRss:
        resets = [_reset_peak(pid) for pid in self._processes]  # every one, not to the first
        self.exact = all(resets)
        self.baseline = {pid: rss_bytes(process) for pid, process in self._processes.items()}
        self._sampled = dict(self.baseline)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        assert not self._thread.is_alive(), "the RSS sampler did not stop"
        for pid, process in self._processes.items():
            sampled = max(self._sampled[pid], rss_bytes(process))
            hwm = _status_kib(pid, "VmHWM") * 1024 if self.exact else 0
            self.peak[pid] = max(sampled, hwm)
