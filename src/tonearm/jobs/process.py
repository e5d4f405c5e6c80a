"""Running mastering jobs in worker processes (``JobEngine(executor="process")``).

Threads share one GIL: two masters on two threads reach about 1.2x one (measured,
``benchmarks/batch.py``), because every block passes through Python between the numpy calls.
Processes do not share it. A :class:`ProcessRunner` keeps a ``ProcessPoolExecutor`` (``spawn``:
no fork of a threaded parent) and a ``multiprocessing`` manager whose queue carries progress back
and whose events carry cancellation in. Everything a job needs (its :class:`JobSpec`, the flags)
pickles; the report comes back as its JSON-safe dict.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from tonearm.events import ProgressEvent
    from tonearm.jobs.engine import JobSpec

__all__ = ["ProcessRunner", "master_in_process"]

PROGRESS_QUEUE_SIZE = 10_000
DRAIN_WAIT_S = 0.1


def master_in_process(
    spec: JobSpec, pipeline: bool, job_id: str, cancel: Any, progress: Any
) -> dict[str, Any]:
    """Master ``spec`` in this (worker) process; the report as a dict.

    ``cancel`` is a manager event (it has ``is_set``), ``progress`` a manager queue that gets
    ``(job_id, stage, frames_done, frames_total)`` tuples (dropped when full: progress is
    advisory, the result is not).
    """
    from tonearm.mastering.render import master_file

    def report(event: ProgressEvent) -> None:
        with contextlib.suppress(queue.Full):
            progress.put_nowait((job_id, event.stage, event.frames_done, event.frames_total))

    result = master_file(
        spec.input_path,
        spec.output_path,
        settings=spec.settings(pipeline=pipeline),
        on_progress=report,
        cancel=cast("threading.Event", cancel),
    )
    return result.to_dict()


class ProcessRunner:
    """A process pool, a manager for cancel flags and progress, and a thread draining it."""

    def __init__(self, *, workers: int, on_progress: Callable[[str, str, int, int], None]) -> None:
        context = multiprocessing.get_context("spawn")
        self._manager = context.Manager()
        self._progress = self._manager.Queue(PROGRESS_QUEUE_SIZE)
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        self._on_progress = on_progress
        self._stop = threading.Event()
        self._drain = threading.Thread(
            target=self._drain_loop, name="tonearm-progress", daemon=True
        )
        self._drain.start()

    def new_cancel_flag(self) -> Any:
        """An event a worker process can see (``set()`` here, ``is_set()`` there)."""
        return self._manager.Event()

    def submit(self, spec: JobSpec, *, pipeline: bool, job_id: str, cancel: Any) -> Future[Any]:
        return self._pool.submit(master_in_process, spec, pipeline, job_id, cancel, self._progress)

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id, stage, done, total = self._progress.get(timeout=DRAIN_WAIT_S)
            except queue.Empty:
                continue
            except (EOFError, OSError, BrokenPipeError):  # the manager has gone: shutting down
                return
            with contextlib.suppress(Exception):
                self._on_progress(job_id, stage, done, total)

    def shutdown(self) -> None:
        """Stop the pool (waiting for running jobs), the drain thread and the manager."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._stop.set()
        self._drain.join(timeout=5.0)
        self._manager.shutdown()
