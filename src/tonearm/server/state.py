"""What one running server owns, opened and closed by the app's lifespan.

:class:`ServerState` holds the library, the job engine, the WebSocket hub, the scan controller
and the rate limiter. Routes reach it through the :func:`server_state` dependency. Work that
blocks (database, files, DSP) runs in threads (``anyio.to_thread``) or on the job engine,
never on the event loop; their events reach sockets through ``Hub.publish_threadsafe``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from tonearm.jobs.engine import JobEngine, JobEvent, JobState
from tonearm.jobs.library_analysis import mastering_analysis
from tonearm.library.job_store import JobStore
from tonearm.library.manager import LibraryManager
from tonearm.server.hub import Hub
from tonearm.server.plan_cache import PlanCache

if TYPE_CHECKING:
    from tonearm.library.analysis import AnalysisProgress
    from tonearm.library.scanner import ScanProgress, ScanResult
    from tonearm.server.settings import ServerSettings

__all__ = ["RateLimiter", "ScanController", "ServerState", "server_state"]

SCAN_JOIN_S = 10.0
SCANNED_ROOTS_KEY = "server.scanned_roots"
"""Library setting: the folders a finished scan has covered (new ones are scanned on start)."""
RATE_LIMIT_CLIENTS = 10_000
"""Clients the rate limiter remembers (least recently seen forgotten first)."""


class RateLimiter:
    """A sliding one-minute window per (client, bucket): at most ``per_minute`` requests."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._lock = threading.Lock()
        self._hits: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    def check(self, client: str, bucket: str) -> None:
        """Count one request; ``HTTPException(429)`` with ``Retry-After`` when over the limit."""
        now = time.monotonic()
        key = (client, bucket)
        with self._lock:
            hits = [t for t in self._hits.pop(key, []) if now - t < 60.0]
            if len(hits) >= self._per_minute:
                self._hits[key] = hits
                retry_after = max(1, int(60.0 - (now - hits[0])) + 1)
                raise HTTPException(
                    429,
                    f"too many {bucket} requests: at most {self._per_minute} a minute",
                    headers={"Retry-After": str(retry_after)},
                )
            hits.append(now)
            self._hits[key] = hits
            while len(self._hits) > RATE_LIMIT_CLIENTS:
                self._hits.popitem(last=False)


@dataclasses.dataclass(frozen=True, slots=True)
class ScanStatus:
    state: str
    """``idle``, ``running`` (scanning), ``analysing``, ``done``, ``cancelled`` or ``failed``."""
    files_seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    missing: int = 0
    errors: int = 0
    files_per_s: float = 0.0
    elapsed_s: float = 0.0
    error: str | None = None
    analysed: int = 0
    """Tracks analysed after the scan (loudness, true peak, LRA, fingerprint)."""
    analysis_pending: int = 0


class ScanController:
    """One library scan at a time, in a background thread, with progress on the hub; then
    the analysis of the tracks that need it (``analysis_workers`` threads; 0: none)."""

    def __init__(
        self, library: LibraryManager, hub: Hub, roots: list[str], *, analysis_workers: int = 1
    ) -> None:
        self._library = library
        self._hub = hub
        self._roots = roots
        self._analysis_workers = analysis_workers
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self.status = ScanStatus("idle")

    def start(self) -> ScanStatus:
        """Start a scan of the library roots; False-y ``running`` state if one already runs."""
        with self._lock:
            thread = self._thread
            if thread is not None and thread.is_alive():
                if self.status.state in ("running", "analysing"):
                    return self.status
                thread.join(SCAN_JOIN_S)  # finished: only its last events are left to send
            self._cancel = threading.Event()
            self._started = time.monotonic()
            self.status = ScanStatus("running")
            self._thread = threading.Thread(target=self._run, name="tonearm-scan", daemon=True)
            self._thread.start()
            return self.status

    def unscanned_roots(self) -> list[str]:
        """Library folders no finished scan has covered yet."""
        scanned = set(self._library.settings.get(SCANNED_ROOTS_KEY, []) or [])
        return [root for root in self._roots if root not in scanned]

    def cancel(self) -> ScanStatus:
        self._cancel.set()
        return self.status

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _progress(self, event: ScanProgress) -> None:
        self.status = ScanStatus(
            "running",
            files_seen=event.files_seen,
            added=event.added,
            updated=event.updated,
            unchanged=event.unchanged,
            errors=event.errors,
            files_per_s=event.files_per_s,
            elapsed_s=time.monotonic() - self._started,
        )
        self._hub.publish_threadsafe("scan", "scan.progress", dataclasses.asdict(self.status))

    def _run(self) -> None:
        try:
            result: ScanResult = self._library.scan(
                self._roots, cancel=self._cancel, on_progress=self._progress
            )
            self.status = ScanStatus(
                "cancelled" if result.status == "cancelled" else "done",
                files_seen=result.files_seen,
                added=result.added,
                updated=result.updated,
                unchanged=result.unchanged,
                moved=result.moved,
                missing=result.missing,
                errors=len(result.errors),
                files_per_s=result.files_per_s,
                elapsed_s=result.elapsed_s,
            )
            if result.status != "cancelled":
                scanned = set(self._library.settings.get(SCANNED_ROOTS_KEY, []) or [])
                self._library.settings.set(SCANNED_ROOTS_KEY, sorted(scanned | set(self._roots)))
                self._hub.publish_threadsafe("library", "library.changed", {"reason": "scan"})
                if self._analysis_workers > 0:
                    self._analyse()
        except Exception as exc:  # reported, not raised: this is a background thread
            self.status = ScanStatus("failed", error=str(exc))
        self._hub.publish_threadsafe("scan", "scan.finished", dataclasses.asdict(self.status))
        self._hub.publish_threadsafe("library", "library.changed", {"reason": "analysis"})

    def _analyse(self) -> None:
        finished = self.status

        def progress(event: AnalysisProgress) -> None:
            self.status = dataclasses.replace(
                finished,
                state="analysing",
                analysed=event.done,
                analysis_pending=event.total - event.done,
            )
            self._hub.publish_threadsafe("scan", "scan.progress", dataclasses.asdict(self.status))

        self.status = dataclasses.replace(finished, state="analysing")
        summary = self._library.analyse(
            mastering_analysis,
            workers=self._analysis_workers,
            cancel=self._cancel,
            on_progress=progress,
        )
        self.status = dataclasses.replace(
            finished,
            state="cancelled" if summary.cancelled else finished.state,
            analysed=summary.analysed,
            analysis_pending=summary.remaining,
        )

    def join(self, timeout_s: float = SCAN_JOIN_S) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)


class ServerState:
    """The library, job engine, hub, scan and limits of one server."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.hub = Hub(settings)
        self.library = LibraryManager(settings.database)
        self.limiter = RateLimiter(settings.heavy_requests_per_minute)
        self.plans = PlanCache()
        """Mastered-stream plans (bounded LRU, one computation per key)."""
        self.scans = ScanController(
            self.library,
            self.hub,
            [str(root) for root in settings.library_roots],
            analysis_workers=settings.analysis_workers,
        )
        self.job_store = JobStore(self.library.db)
        """Every job's record, this run's and earlier runs' (the engine writes it)."""
        self.engine = JobEngine(
            workers=settings.workers,
            memory_budget_mib=settings.memory_budget_mib,
            executor=settings.executor,
            store=self.job_store,
            on_event=self._job_event,
        )
        self.started_at = time.time()

    def _job_event(self, event: JobEvent) -> None:
        """Job events (from worker threads) to the ``jobs`` topic."""
        data: dict[str, Any] = {
            "job_id": event.job_id,
            "state": event.state.value,
            "stage": event.stage,
            "fraction": round(event.fraction, 4),
            "eta_s": None if event.eta_s is None else round(event.eta_s, 2),
        }
        if event.state is JobState.DONE:
            kind = "job.finished"
        elif event.state is JobState.FAILED:
            kind, data["error"] = "job.failed", event.error
        elif event.state is JobState.CANCELLED:
            kind, data["error"] = "job.cancelled", event.error
        elif event.state is JobState.QUEUED:
            kind = "job.queued"
        else:
            kind = "job.progress"
        self.hub.publish_threadsafe("jobs", kind, data)

    def close(self) -> None:
        """Stop the scan and the engine (running jobs finish or are cancelled, as the settings
        say, within the grace period), then close the library."""
        self.scans.cancel()
        for status in self.engine.jobs():  # queued jobs never start once shutdown begins
            if status.state is JobState.QUEUED:
                self.engine.cancel(status.job_id)
        if self.settings.on_shutdown == "finish":
            with contextlib.suppress(TimeoutError):
                self.engine.wait_all(timeout_s=self.settings.shutdown_grace_s)
        # whatever still runs is cancelled: it stops within a block and leaves no file
        self.engine.shutdown(cancel=True, timeout_s=SCAN_JOIN_S)
        self.scans.join()
        self.library.close()


def server_state(request: Request) -> ServerState:
    """FastAPI dependency: the running server's state."""
    state: ServerState = request.app.state.tonearm
    return state
