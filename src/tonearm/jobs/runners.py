"""Where a job's master runs: one interface (:class:`JobRunner`), three executors.

* :class:`ThreadRunner` (``executor="thread"``, the default): the engine's worker thread masters
  the file itself; the DSP releases the GIL for its numpy/scipy work.
* :class:`~tonearm.jobs.process.ProcessRunner` (``"process"``): a pool of spawned processes.
* :class:`~tonearm.jobs.dask_runner.DaskRunner` (``"dask"``): a dask.distributed cluster, a
  LocalCluster of worker processes or a running scheduler's.

The engine keeps the queue, the memory budget, the records and the result cache, and calls
:meth:`JobRunner.run` from one of its worker threads, one job per thread: the number of engine
threads bounds the jobs in flight whatever the executor. Every executor masters with
:func:`master_job`, so a job's output does not depend on where it ran (the tests compare
bytes). Progress comes back as ``(job_id, stage, frames_done, frames_total)`` calls of the
engine's sink; cancellation goes out as a flag with ``set()`` here and ``is_set()`` there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from tonearm.events import ProgressEvent
    from tonearm.jobs.engine import JobSpec

__all__ = ["CancelFlag", "JobRunner", "ProgressSink", "RunResult", "ThreadRunner", "master_job"]

ProgressSink = Callable[[str, str, int, int], None]
"""``sink(job_id, stage, frames_done, frames_total)``: a running job's progress."""


class CancelFlag(Protocol):
    def set(self) -> None: ...

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished master: its report (``MasteringReport.to_dict()``) and the worker that ran it
    (a thread name, ``pid N`` of a worker process, or a dask worker's address)."""

    report: dict[str, Any]
    worker: str


def master_job(
    spec: JobSpec,
    *,
    pipeline: bool,
    job_id: str,
    cancel: CancelFlag,
    progress: ProgressSink,
    worker: str,
) -> RunResult:
    """Master ``spec`` here (a thread, a worker process or a dask worker): the one code path
    every executor runs. ``Cancelled`` and ``TonearmError`` propagate (they pickle)."""
    from tonearm.mastering.render import master_file

    def report(event: ProgressEvent) -> None:
        progress(job_id, event.stage, event.frames_done, event.frames_total)

    result = master_file(
        spec.input_path,
        spec.output_path,
        settings=spec.settings(pipeline=pipeline),
        on_progress=report,
        cancel=cast("threading.Event", cancel),
    )
    return RunResult(result.to_dict(), worker)


class JobRunner(Protocol):
    """What the engine needs of an executor."""

    kind: str

    def ready(self, *, timeout_s: float) -> list[str] | None:
        """Wait (at most ``timeout_s``) until the workers are up; their names, or None when the
        engine's own threads are the workers."""
        ...

    def new_cancel_flag(self, job_id: str) -> CancelFlag: ...

    def run(
        self, spec: JobSpec, *, job_id: str, pipeline: bool, cancel: CancelFlag, timeout_s: float
    ) -> RunResult:
        """Master ``spec`` and return its result; raises what the master raised, or
        ``TimeoutError`` after ``timeout_s``."""
        ...

    def resize(self, workers: int) -> None:
        """Make room for ``workers`` jobs at once (the engine changes its threads to match)."""
        ...

    def shutdown(self) -> None: ...


class ThreadRunner:
    """Jobs on the engine's own worker threads."""

    kind = "thread"

    def __init__(self, *, progress: ProgressSink) -> None:
        self._progress = progress

    def ready(self, *, timeout_s: float) -> list[str] | None:
        return None

    def new_cancel_flag(self, job_id: str) -> CancelFlag:
        return threading.Event()

    def run(
        self, spec: JobSpec, *, job_id: str, pipeline: bool, cancel: CancelFlag, timeout_s: float
    ) -> RunResult:
        return master_job(
            spec,
            pipeline=pipeline,
            job_id=job_id,
            cancel=cancel,
            progress=self._progress,
            worker=threading.current_thread().name,
        )

    def resize(self, workers: int) -> None:
        pass

    def shutdown(self) -> None:
        pass


def process_name() -> str:
    """This process as a worker name: ``pid N``."""
    return f"pid {os.getpid()}"
