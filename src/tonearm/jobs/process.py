"""Running mastering jobs in worker processes (``JobEngine(executor="process")``).

Threads share one GIL: every block of audio passes through Python between the numpy calls, so
two masters on two threads do not quite reach twice one (``benchmarks/batch.py``). Processes do
not share it. A :class:`ProcessRunner` keeps a ``ProcessPoolExecutor`` (``spawn``: no fork of a
threaded parent) whose workers import the mastering engine as they start, and a
``multiprocessing`` manager whose queue carries progress back and whose events carry
cancellation in. Everything a job needs (its :class:`JobSpec`, the flags) pickles; the result
comes back as a :class:`~tonearm.jobs.runners.RunResult`.

The pool starts its workers at once (one warm-up task each), so the first jobs do not pay for
process start-up and imports; :meth:`ProcessRunner.ready` waits for them. :meth:`resize` swaps
in a pool of the new size: jobs already running finish in the old one, which then exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tonearm.errors import TonearmError
from tonearm.jobs.runners import RunResult, master_job, process_name

if TYPE_CHECKING:
    from concurrent.futures import Future

    from tonearm.jobs.engine import JobSpec
    from tonearm.jobs.runners import CancelFlag, ProgressSink

__all__ = ["ProcessRunner"]

PROGRESS_QUEUE_SIZE = 10_000
DRAIN_WAIT_S = 0.1
WARM_UP_S = 120.0
"""The longest a warm-up task waits for its siblings (one per worker process)."""
DONE_STAGE = "__done__"
"""A job's last progress message: the engine has seen all of its progress once it arrives."""
FLUSH_WAIT_S = 2.0


def _import_engine() -> None:
    """Each worker process's initializer: load the mastering engine before the first job."""
    import tonearm.jobs.engine
    import tonearm.mastering.render  # noqa: F401


def _warm_up(barrier: Any) -> str:
    """Hold this worker until every worker holds a warm-up task (so each process gets exactly
    one and all start now); this worker's name."""
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(WARM_UP_S)
    return process_name()


def _master(spec: JobSpec, pipeline: bool, job_id: str, cancel: Any, progress: Any) -> RunResult:
    """The task a worker process runs. ``cancel`` is a manager event, ``progress`` a manager
    queue of ``(job_id, stage, frames_done, frames_total)`` (dropped when full: progress is
    advisory, the result is not)."""

    def report(job: str, stage: str, done: int, total: int) -> None:
        with contextlib.suppress(queue.Full):
            progress.put_nowait((job, stage, done, total))

    try:
        return master_job(
            spec,
            pipeline=pipeline,
            job_id=job_id,
            cancel=cancel,
            progress=report,
            worker=process_name(),
        )
    finally:  # after every progress message of this job, on the same queue
        with contextlib.suppress(queue.Full):
            progress.put((job_id, DONE_STAGE, 0, 0), timeout=FLUSH_WAIT_S)


class ProcessRunner:
    """A process pool, a manager for cancel flags and progress, and a thread draining it."""

    kind = "process"

    def __init__(self, *, workers: int, progress: ProgressSink) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._manager = self._context.Manager()
        self._progress_queue = self._manager.Queue(PROGRESS_QUEUE_SIZE)
        self._lock = threading.Lock()
        self._workers = workers
        self._flushed: dict[str, threading.Event] = {}
        self._retired: list[ProcessPoolExecutor] = []
        self._pool, self._warming = self._start_pool(workers)
        self._on_progress = progress
        self._stop = threading.Event()
        self._drain = threading.Thread(
            target=self._drain_loop, name="tonearm-progress", daemon=True
        )
        self._drain.start()

    def _start_pool(self, workers: int) -> tuple[ProcessPoolExecutor, list[Future[str]]]:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=self._context, initializer=_import_engine
        )
        # a task per worker makes the pool start them all now (it spawns while none is idle)
        barrier = self._manager.Barrier(workers)
        return pool, [pool.submit(_warm_up, barrier) for _ in range(workers)]

    def ready(self, *, timeout_s: float) -> list[str] | None:
        """Wait for the current pool's warm-up tasks; the worker processes' names."""
        with self._lock:
            warming = list(self._warming)
        done, pending = wait(warming, timeout=timeout_s)
        if pending:
            raise TimeoutError(f"worker processes not up after {timeout_s:g} s")
        return sorted({future.result() for future in done})

    def new_cancel_flag(self, job_id: str) -> CancelFlag:
        """An event a worker process can see (``set()`` here, ``is_set()`` there)."""
        flag: CancelFlag = self._manager.Event()
        return flag

    def run(
        self, spec: JobSpec, *, job_id: str, pipeline: bool, cancel: CancelFlag, timeout_s: float
    ) -> RunResult:
        flushed = threading.Event()
        with self._lock:
            self._flushed[job_id] = flushed
            pool = self._pool
            future = pool.submit(_master, spec, pipeline, job_id, cancel, self._progress_queue)
        try:
            result: RunResult = future.result(timeout=timeout_s)
            flushed.wait(FLUSH_WAIT_S)  # the job's progress reaches the engine before its end
            return result
        except BrokenProcessPool:
            self._replace_broken(pool)
            raise TonearmError(
                f"the worker process mastering '{Path(spec.input_path).name}' died "
                "(killed, or out of memory)"
            ) from None
        finally:
            with self._lock:
                self._flushed.pop(job_id, None)

    def _replace_broken(self, pool: ProcessPoolExecutor) -> None:
        """A worker died: the pool refuses every job from now on, so start a new one."""
        with self._lock:
            if self._pool is not pool:  # another job's thread replaced it already
                return
            self._retired.append(pool)
            self._pool, self._warming = self._start_pool(self._workers)

    def resize(self, workers: int) -> None:
        """A pool of ``workers`` processes for the next jobs; the old one finishes its own."""
        with self._lock:
            if workers == self._workers:
                return
        pool, warming = self._start_pool(workers)
        with self._lock:
            self._workers = workers
            old, self._pool, self._warming = self._pool, pool, warming
            self._retired.append(old)
        old.shutdown(wait=False)

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id, stage, done, total = self._progress_queue.get(timeout=DRAIN_WAIT_S)
            except queue.Empty:
                continue
            except (EOFError, OSError, BrokenPipeError):  # the manager has gone: shutting down
                return
            if stage == DONE_STAGE:
                with self._lock:
                    flushed = self._flushed.get(job_id)
                if flushed is not None:
                    flushed.set()
                continue
            with contextlib.suppress(Exception):
                self._on_progress(job_id, stage, done, total)

    def shutdown(self) -> None:
        """Stop the pools (waiting for running jobs), the drain thread and the manager."""
        with self._lock:
            pools = [*self._retired, self._pool]
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._stop.set()
        self._drain.join(timeout=5.0)
        self._manager.shutdown()
