"""Running mastering jobs on a dask.distributed cluster (``JobEngine(executor="dask")``).

With no scheduler address a :class:`DaskRunner` starts a ``LocalCluster`` of ``workers`` worker
processes with one thread each (a job is one task); with ``scheduler="tcp://host:8786"`` it
connects to a running cluster, whose workers must have tonearm installed and see the input and
output paths (a shared file system). dask does the placement, the transport and the worker
life cycle; tonearm adds only the job's two side channels:

* **progress**: a worker logs ``(job_id, stage, frames_done, frames_total)`` under this runner's
  topic (``Worker.log_event``: batched, no round trip); the client's topic handler feeds the
  engine.
* **cancellation**: a named ``distributed.Event`` per job, set here and polled there at most
  every :data:`CANCEL_POLL_S`, so a running job stops within a block plus that.

dask is an optional dependency (``pip install 'tonearm[dask]'``); it is imported only here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from tonearm.errors import ParameterError
from tonearm.jobs.runners import RunResult, master_job

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tonearm.jobs.engine import JobSpec
    from tonearm.jobs.runners import CancelFlag, ProgressSink

__all__ = ["DaskRunner"]

CANCEL_POLL_S = 0.1
"""A worker asks the scheduler whether its job was cancelled at most this often."""
CONNECT_TIMEOUT_S = 10.0


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """dask's settings for the worker processes started inside, less one.

    dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc hand every
    freed block of audio back to the kernel and fault it in again: mastering ran at half speed
    (measured, ``benchmarks/batch.py``). tonearm's workers keep glibc's default; their memory
    is bounded by the engine's budget instead.
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        yield


def _local_cluster(cluster_class: Any, workers: int) -> Any:
    """A LocalCluster of ``workers`` single-threaded worker processes, quiet, on free ports."""
    with _worker_environment():
        return cluster_class(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_port=0,
            silence_logs=logging.ERROR,
        )


class _PolledEvent:
    """A ``distributed.Event`` read at most every ``CANCEL_POLL_S`` (each read is a round trip
    to the scheduler); once set it stays set."""

    def __init__(self, name: str) -> None:
        from distributed import Event

        self._event = Event(name)
        self._checked = 0.0
        self._set = False

    def set(self) -> None:
        self._event.set()
        self._set = True

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now - self._checked >= CANCEL_POLL_S:
            self._checked = now
            self._set = bool(self._event.is_set())
        return self._set


def _master(spec: JobSpec, pipeline: bool, job_id: str, cancel_name: str, topic: str) -> RunResult:
    """The task a dask worker runs."""
    from distributed import get_worker

    worker = get_worker()

    def report(job: str, stage: str, done: int, total: int) -> None:
        worker.log_event(topic, [job, stage, done, total])

    return master_job(
        spec,
        pipeline=pipeline,
        job_id=job_id,
        cancel=_PolledEvent(cancel_name),
        progress=report,
        worker=str(worker.address),
    )


class DaskRunner:
    """A dask ``Client`` on a LocalCluster of its own, or on ``scheduler``'s cluster."""

    kind = "dask"

    def __init__(
        self, *, workers: int, progress: ProgressSink, scheduler: str | None = None
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ParameterError(
                "the dask executor needs dask.distributed: pip install 'tonearm[dask]'"
            ) from exc
        self._on_progress = progress
        self._topic = f"tonearm-progress-{uuid.uuid4().hex[:8]}"
        self._cluster: Any = None
        self._workers = workers
        self._resize_lock = threading.Lock()
        if scheduler is None:
            self._cluster = _local_cluster(LocalCluster, workers)
            self._client = Client(self._cluster, set_as_default=False)
        else:
            try:
                self._client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except OSError as exc:  # includes the client's TimeoutError
                raise ParameterError(f"cannot reach the dask scheduler {scheduler}: {exc}") from exc
        self._client.subscribe_topic(self._topic, self._handle_event)

    def _handle_event(self, event: tuple[float, Any]) -> None:
        """Runs on the client's event loop: one progress message from a worker."""
        with contextlib.suppress(Exception):
            job_id, stage, done, total = event[1]
            self._on_progress(str(job_id), str(stage), int(done), int(total))

    def ready(self, *, timeout_s: float) -> list[str] | None:
        """Wait for the LocalCluster's workers (a remote cluster's: at least one)."""
        wanted = self._workers if self._cluster is not None else 1
        try:
            self._client.wait_for_workers(wanted, timeout=timeout_s)
        except TimeoutError as exc:
            raise TimeoutError(f"dask workers not up after {timeout_s:g} s") from exc
        return sorted(self._client.scheduler_info(n_workers=-1)["workers"])

    def new_cancel_flag(self, job_id: str) -> CancelFlag:
        from distributed import Event

        flag: CancelFlag = Event(f"tonearm-cancel-{job_id}", client=self._client)
        return flag

    def run(
        self, spec: JobSpec, *, job_id: str, pipeline: bool, cancel: CancelFlag, timeout_s: float
    ) -> RunResult:
        name = getattr(cancel, "name", "")
        future = self._client.submit(
            _master,
            spec,
            pipeline,
            job_id,
            name,
            self._topic,
            key=f"tonearm-master-{job_id}",
            pure=False,
        )
        try:
            result: RunResult = future.result(timeout=timeout_s)
        finally:
            future.release()
            self._retire_idle()  # a surplus worker that was busy may go now
        return result

    def resize(self, workers: int) -> None:
        """Scale the LocalCluster to ``workers`` (a remote cluster is sized by its owner).

        Growing starts workers at once. Shrinking retires idle workers only (``scale`` would
        stop the newest, busy or not, and dask would run its job again elsewhere); a busy
        surplus worker goes when its job ends.
        """
        self._workers = workers
        if self._cluster is None:
            return
        if workers > len(self._cluster.worker_spec):
            with _worker_environment():
                self._cluster.scale(workers)
                self._client.wait_for_workers(workers, timeout=CONNECT_TIMEOUT_S)
        self._retire_idle()

    def _retire_idle(self) -> None:
        """Stop idle LocalCluster workers while there are more than asked for."""
        cluster = self._cluster
        if cluster is None:
            return
        with self._resize_lock:
            surplus = len(cluster.worker_spec) - self._workers
            if surplus <= 0:
                return
            busy = {address for address, keys in self._client.processing().items() if keys}
            workers = self._client.scheduler_info(n_workers=-1)["workers"]
            idle = [info["name"] for address, info in workers.items() if address not in busy]
            if idle:
                cluster.sync(cluster.scale_down, idle[:surplus])

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(self._topic)
        self._client.close(timeout=CONNECT_TIMEOUT_S)
        if self._cluster is not None:
            self._cluster.close(timeout=CONNECT_TIMEOUT_S)
