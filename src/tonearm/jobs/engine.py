"""The job engine: a bounded priority queue of mastering jobs, run by workers under a memory budget.

A :class:`JobSpec` says what to master; :meth:`JobEngine.submit` queues it and returns its id.
Workers take the highest-priority job (first come, first served within a priority), reserve its
estimated peak memory from the :class:`~tonearm.jobs.admission.MemoryBudget` (a job that would
take the total over the budget waits), and run :func:`tonearm.mastering.render.master_file`.

* **Progress**: every change is a :class:`JobEvent` (state, stage, fraction done, ETA) handed to
  ``on_event`` and kept in the job's :class:`JobStatus`.
* **Cancellation**: a queued job is removed at once; a running one stops within one block of
  audio (a fraction of a second) and leaves no output (``master_file`` writes to a staging file
  and renames it only when verified).
* **Failures** are isolated: a job that raises is recorded as failed with its one-line error,
  and the worker goes on with the next job.
* **Records**: with a ``store`` (the library's :class:`~tonearm.library.job_store.JobStore`)
  every job and each state change is written to the library database; starting an engine marks
  the jobs a dead process left queued or running as failed.
* **Result cache**: a job whose input (path, size, modification time) and settings match a job
  that finished in this engine is served from it: the earlier output is copied (atomically) to
  the new output path, or reused when it is the same path and unchanged.

* **Executors**: the engine's worker threads run the jobs themselves (``executor="thread"``),
  or hand each to a pool of processes (``"process"``) or a dask.distributed cluster
  (``"dask"``, with ``scheduler=`` for a running one); see :mod:`tonearm.jobs.runners`. The
  number of engine threads bounds the jobs in flight, and :meth:`JobEngine.resize` changes it
  (and the pool or LocalCluster with it) while jobs run.

A job pipelines its own stages over two cores (``MasterSettings.pipeline``) only
while there are fewer workers than cores: with a worker per core, one thread per job does the
most work per second. Every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tonearm.audio_io import probe
from tonearm.errors import Cancelled, ParameterError, TonearmError
from tonearm.events import ProgressEvent
from tonearm.jobs.admission import MemoryBudget, estimate_job_bytes
from tonearm.jobs.queue import PriorityJobQueue, QueueClosed, QueueEmpty
from tonearm.jobs.runners import ThreadRunner
from tonearm.mastering.plan import MasteringPlan
from tonearm.mastering.render import MasterSettings
from tonearm.mastering.targets import resolve_target

if TYPE_CHECKING:
    from collections.abc import Callable

    from tonearm.audio_io.encode import BitDepth
    from tonearm.jobs.runners import CancelFlag, JobRunner, ProgressSink, RunResult
    from tonearm.library.job_store import JobStore

__all__ = ["EXECUTORS", "JobEngine", "JobEvent", "JobSpec", "JobState", "JobStatus"]

EXECUTORS = ("thread", "process", "dask")

POLL_S = 0.1
"""How often an idle worker looks for shutdown."""
ADMISSION_WAIT_S = 3600.0
"""The longest a job waits for memory before it fails."""
JOB_TIMEOUT_S = 6 * 3600.0
"""The longest a job may run on a process or dask worker before it is reported failed."""
STAGE_WEIGHTS = {"analyse": 0.35, "plan": 0.0, "render": 0.55, "verify": 0.10}
"""Share of a job's work in each stage, for the overall fraction and the ETA."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to master, and how: everything is plain data, so a spec pickles to any worker."""

    input_path: str
    output_path: str
    target: str = "spotify"
    lufs: float | None = None
    ceiling_dbtp: float | None = None
    bit_depth: BitDepth | None = None
    plan_json: str | None = None
    """A saved plan (``MasteringPlan.to_json()``), applied instead of planning."""
    references: tuple[str, ...] = ()
    priority: int = 0
    track_id: int | None = None
    """The library track this job masters, when it came from the library (recorded only)."""

    def settings(self, *, pipeline: bool = True) -> MasterSettings:
        """The :class:`MasterSettings` this spec asks for (``pipeline``: see there)."""
        return MasterSettings(
            pipeline=pipeline,
            target=resolve_target(self.target, lufs=self.lufs, ceiling_dbtp=self.ceiling_dbtp),
            bit_depth=self.bit_depth,
            references=self.references,
            plan=None
            if self.plan_json is None
            else MasteringPlan.from_dict(json.loads(self.plan_json)),
        )

    def cache_key(self) -> str:
        """The input file's identity (path, size, mtime) and every setting, hashed."""
        info = os.stat(self.input_path)
        fields = dataclasses.asdict(self)
        fields.pop("output_path")
        fields.pop("priority")
        fields.pop("track_id")
        fields["input"] = [os.path.abspath(self.input_path), info.st_size, info.st_mtime_ns]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A change in a job: its state, and within a running job the stage and progress."""

    job_id: str
    state: JobState
    stage: str | None = None
    fraction: float = 0.0
    eta_s: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """Where a job stands (a snapshot; the engine keeps the live one)."""

    job_id: str
    spec: JobSpec
    state: JobState
    stage: str | None = None
    fraction: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    cached: bool = False
    worker: str | None = None
    """Who ran it: a thread's name, ``pid N`` of a worker process, or a dask worker's address."""
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class _Job:
    status: JobStatus
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    remote_cancel: CancelFlag | None = None
    """The cancel flag the executor's worker sees (set with ``cancel``)."""


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _fraction(event: ProgressEvent) -> float:
    done = 0.0
    for stage, weight in STAGE_WEIGHTS.items():
        if stage == event.stage:
            return min(1.0, done + weight * event.fraction)
        done += weight
    return min(1.0, done)


def _identity(path: str | os.PathLike[str]) -> tuple[int, int]:
    """A file's (size, mtime in ns); (-1, -1) when it is not there."""
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)


def _remove_staging_files(output_path: str) -> None:
    """Remove what an unfinished master of ``output_path`` may have left: ``master_file``
    cleans up after itself, but not a worker process that was killed mid-write."""
    target = Path(output_path)
    name = glob.escape(target.name)
    # the staging file (".NAME.TOKEN.tonearm-stage.EXT") and the writer's temporary file
    # beside it (a dot before the staging file's name)
    for pattern in (f".{name}.*.tonearm-*", f"..{name}.*.tonearm-*"):
        with contextlib.suppress(OSError):
            for leftover in target.parent.glob(pattern):
                with contextlib.suppress(OSError):
                    leftover.unlink()


def _make_runner(
    executor: str, workers: int, scheduler: str | None, progress: ProgressSink
) -> JobRunner:
    if executor == "process":
        from tonearm.jobs.process import ProcessRunner

        return ProcessRunner(workers=workers, progress=progress)
    if executor == "dask":
        from tonearm.jobs.dask_runner import DaskRunner

        return DaskRunner(workers=workers, progress=progress, scheduler=scheduler)
    return ThreadRunner(progress=progress)


class JobEngine:
    """Run mastering jobs, ``workers`` at a time, under ``memory_budget_mib`` on ``executor``
    (see the module docstring). Use as a context manager, or call :meth:`shutdown`."""

    def __init__(
        self,
        *,
        workers: int = 2,
        memory_budget_mib: int = 2048,
        queue_size: int = 10_000,
        on_event: Callable[[JobEvent], None] | None = None,
        pipeline: bool | None = None,
        executor: str = "thread",
        scheduler: str | None = None,
        store: JobStore | None = None,
    ) -> None:
        if workers < 1 or memory_budget_mib < 1:
            raise ParameterError("workers and memory_budget_mib must be >= 1")
        if executor not in EXECUTORS:
            raise ParameterError(
                f"executor must be one of {', '.join(EXECUTORS)}, got '{executor}'"
            )
        if scheduler is not None and executor != "dask":
            raise ParameterError("a scheduler address needs the dask executor")
        self.executor = executor
        self._store = store
        if store is not None:
            store.recover(now=_utc(time.time()))  # a previous process's unfinished jobs
        cores = len(os.sched_getaffinity(0))
        # each job pipelines its own stages only while the workers leave cores idle
        self.pipeline = workers < cores if pipeline is None else pipeline
        self._queue: PriorityJobQueue[str] = PriorityJobQueue(max_size=queue_size)
        self.memory = MemoryBudget(budget_bytes=memory_budget_mib * 2**20)
        self._on_event = on_event
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._results: dict[str, tuple[JobStatus, tuple[int, int]]] = {}
        """Finished jobs by cache key, with their output's (size, mtime) when it was written."""
        self._runner = _make_runner(executor, workers, scheduler, self._remote_progress)
        self._wanted = 0
        self._threads: dict[int, threading.Thread] = {}
        self._start_threads(workers)

    # --- the public API -------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> str:
        """Queue a job; its id. A full queue raises ``QueueFull`` at once."""
        job_id = uuid.uuid4().hex[:12]
        job = _Job(JobStatus(job_id, spec, JobState.QUEUED, submitted_at=time.time()))
        with self._lock:
            self._jobs[job_id] = job
        if self._store is not None:
            self._store.add(
                job_id, dataclasses.asdict(spec), submitted_at=_utc(job.status.submitted_at)
            )
        try:
            self._queue.put(job_id, priority=spec.priority)
        except BaseException:  # refused (full or closed): no record of a job that never was
            with self._lock:
                del self._jobs[job_id]
            if self._store is not None:
                self._store.remove(job_id)
            raise
        self._emit(JobEvent(job_id, JobState.QUEUED))
        return job_id

    @property
    def workers(self) -> int:
        """Worker threads alive now (after :meth:`resize` down, surplus ones leave once their
        job is done)."""
        with self._lock:
            return len(self._threads)

    def ready(self, *, timeout_s: float) -> list[str]:
        """Wait (at most ``timeout_s``) until the executor's workers are up; their names."""
        names = self._runner.ready(timeout_s=timeout_s)
        if names is None:
            with self._lock:
                return sorted(thread.name for thread in self._threads.values())
        return names

    def resize(self, workers: int) -> None:
        """Run up to ``workers`` jobs at once from now on. Growing starts workers at once;
        shrinking lets each surplus worker finish the job it holds, then leave."""
        if workers < 1:
            raise ParameterError("workers must be >= 1")
        self._runner.resize(workers)
        self._start_threads(workers)

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ParameterError(f"no job {job_id}")
        return job.status

    def jobs(self) -> list[JobStatus]:
        """Every job this engine has seen, in submission order."""
        with self._lock:
            return [job.status for job in self._jobs.values()]

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it had already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ParameterError(f"no job {job_id}")
        if job.status.state.finished:
            return False
        job.cancel.set()
        if job.remote_cancel is not None:
            with contextlib.suppress(Exception):  # a gone worker has nothing left to stop
                job.remote_cancel.set()
        if self._queue.remove(lambda queued: queued == job_id):
            self._finish(job, JobState.CANCELLED, error="cancelled before it started")
        return True

    def wait(self, job_id: str, *, timeout_s: float) -> JobStatus:
        """Wait up to ``timeout_s`` for a job to finish; its status (``TimeoutError`` if not)."""
        with self._lock:
            job = self._jobs[job_id]
        if not job.finished.wait(timeout_s):
            raise TimeoutError(f"job {job_id} still {job.status.state} after {timeout_s:g} s")
        return job.status

    def wait_all(self, *, timeout_s: float) -> list[JobStatus]:
        deadline = time.monotonic() + timeout_s
        for status in self.jobs():
            self.wait(status.job_id, timeout_s=max(0.0, deadline - time.monotonic()))
        return self.jobs()

    def shutdown(self, *, cancel: bool = False, timeout_s: float = 60.0) -> None:
        """Stop taking jobs; let the queue drain (or cancel everything) and join the workers."""
        if cancel:
            for status in self.jobs():
                if not status.state.finished:
                    self.cancel(status.job_id)
        self._queue.close()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._runner.shutdown()

    def __enter__(self) -> JobEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(cancel=exc[0] is not None)

    # --- the workers ----------------------------------------------------------------------

    def _start_threads(self, workers: int) -> None:
        with self._lock:
            self._wanted = workers
            for index in range(workers):
                if index not in self._threads:  # a surplus one not yet gone stays on instead
                    thread = threading.Thread(
                        target=self._work, args=(index,), name=f"tonearm-job-{index}", daemon=True
                    )
                    self._threads[index] = thread
                    thread.start()

    def _work(self, index: int) -> None:
        while True:
            with self._lock:
                if index >= self._wanted:
                    del self._threads[index]
                    return
            try:
                job_id = self._queue.get(timeout_s=POLL_S)
            except QueueEmpty:
                continue
            except QueueClosed:
                return
            with self._lock:
                job = self._jobs[job_id]
            if job.cancel.is_set():
                self._finish(job, JobState.CANCELLED, error="cancelled before it started")
                continue
            self._run(job)

    def _run(self, job: _Job) -> None:
        spec = job.status.spec
        try:
            key = spec.cache_key()
            if self._serve_cached(job, key):
                return
            info = probe(spec.input_path)
            need = estimate_job_bytes(
                frames=info.frames, channels=info.channels, sample_rate=info.sample_rate
            )
            with self.memory.acquire(need, timeout_s=ADMISSION_WAIT_S, cancel=job.cancel):
                started = time.time()
                self._update(job, state=JobState.RUNNING, started_at=started, stage="analyse")
                if self._store is not None:
                    self._store.set_state(job.status.job_id, "running", started_at=_utc(started))

                result = self._run_on_executor(job)
            self._finish(job, JobState.DONE, report=result.report, worker=result.worker)
            with self._lock:
                self._results[key] = (
                    self._jobs[job.status.job_id].status,
                    _identity(spec.output_path),
                )
        except Cancelled:
            self._finish(job, JobState.CANCELLED, error="cancelled")
        except TonearmError as exc:
            self._finish(job, JobState.FAILED, error=str(exc))
        except OSError as exc:
            self._finish(job, JobState.FAILED, error=f"{spec.input_path}: {exc.strerror or exc}")
        except Exception as exc:  # a bug in one job must not take the worker down
            self._finish(job, JobState.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")

    def _run_on_executor(self, job: _Job) -> RunResult:
        job_id = job.status.job_id
        flag = self._runner.new_cancel_flag(job_id)
        job.remote_cancel = flag
        if job.cancel.is_set():  # cancelled while the flag was made: cancel() did not see it
            flag.set()
        return self._runner.run(
            job.status.spec,
            job_id=job_id,
            pipeline=self.pipeline,
            cancel=flag,
            timeout_s=JOB_TIMEOUT_S,
        )

    def _remote_progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        """Progress from the executor (a worker thread, or a thread draining remote events)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.status.state is not JobState.RUNNING:
            return
        self._progress(job, ProgressEvent(stage, done, total))  # type: ignore[arg-type]

    def _progress(self, job: _Job, event: ProgressEvent) -> None:
        fraction = max(job.status.fraction, _fraction(event))  # events may arrive late
        elapsed = time.time() - (job.status.started_at or time.time())
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        self._update(job, stage=event.stage, fraction=fraction, eta_s=eta)

    def _serve_cached(self, job: _Job, key: str) -> bool:
        with self._lock:
            found = self._results.get(key)
        if found is None or found[0].report is None:
            return False
        earlier, written = found
        source = Path(earlier.spec.output_path)
        target = Path(job.status.spec.output_path)
        if _identity(source) != written:  # gone, overwritten or edited since: master again
            with self._lock:
                self._results.pop(key, None)
            return False
        if source.resolve() != target.resolve():
            staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tonearm-copy")
            try:
                shutil.copyfile(source, staging)
                if _identity(source) != written:  # changed while it was copied
                    return False
                os.replace(staging, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    staging.unlink()
        assert earlier.report is not None
        output = {**earlier.report.get("output", {}), "path": str(target)}
        report = {**earlier.report, "output": output, "output_path": str(target)}
        self._finish(job, JobState.DONE, report=report, cached=True)
        return True

    # --- state ----------------------------------------------------------------------------

    def _update(self, job: _Job, **changes: Any) -> None:
        with self._lock:
            job.status = dataclasses.replace(job.status, **changes)
            status = job.status
        self._emit(
            JobEvent(status.job_id, status.state, status.stage, status.fraction, status.eta_s)
        )

    def _finish(self, job: _Job, state: JobState, **changes: Any) -> None:
        if state is not JobState.DONE and job.status.started_at is not None:
            _remove_staging_files(job.status.spec.output_path)  # before a waiter hears the end
        with self._lock:
            if job.status.state.finished:
                return
            fraction = 1.0 if state is JobState.DONE else job.status.fraction
            job.status = dataclasses.replace(
                job.status,
                state=state,
                fraction=fraction,
                eta_s=None,
                finished_at=time.time(),
                **changes,
            )
            status = job.status
        if self._store is not None:
            with contextlib.suppress(TonearmError, OSError):  # the record is not the result
                self._store.set_state(
                    status.job_id,
                    status.state.value,
                    error=status.error,
                    report=status.report,
                    cached=status.cached,
                    started_at=None if status.started_at is None else _utc(status.started_at),
                    finished_at=_utc(status.finished_at or time.time()),
                )
        job.finished.set()
        self._emit(
            JobEvent(status.job_id, state, status.stage, status.fraction, None, status.error)
        )

    def _emit(self, event: JobEvent) -> None:
        if self._on_event is not None:
            with contextlib.suppress(Exception):  # a listener's bug must not stop a job
                self._on_event(event)
