"""Loudness, true peak and fingerprint for scanned tracks, in a bounded worker pool.

The library does not import the mastering engine (the layers forbid it): the caller hands
:func:`analyse_pending` an ``analyse(path) -> AnalysisValues`` function (the CLI passes one built
on ``tonearm.mastering.analysis.analyze_file``). Work is whatever the database says is pending
(present tracks with no ``analysed_at`` and no recorded failure), so a crash or a cancel simply
leaves the rest pending for the next run: it resumes where it stopped.

At most ``workers`` analyses run at once and at most ``2 * workers`` are queued; each result is
written in its own short transaction as soon as it arrives. A file that fails is recorded
(``analysis_error``) and not retried unless asked (``retry_failed``).
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select, update

from tonearm.errors import ParameterError, TonearmError
from tonearm.library.models import Fingerprint, Track, utc_now
from tonearm.library.records import display_path, path_from_db

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from tonearm.library.db import Database

__all__ = ["AnalysisProgress", "AnalysisSummary", "AnalysisValues", "analyse_pending"]

WAIT_S = 5.0  # how often a waiting loop looks at the cancel flag
CANCEL_WAIT_S = 600.0  # the longest a cancel waits for the files being analysed to finish


@dataclass(frozen=True, slots=True)
class AnalysisValues:
    """What one analysis found (dB/LU units as named; fingerprint as plain floats)."""

    integrated_lufs: float
    true_peak_dbtp: float
    loudness_range_lu: float
    fingerprint: tuple[float, ...] | None = None
    fingerprint_version: int = 1


@dataclass(frozen=True, slots=True)
class AnalysisProgress:
    done: int
    total: int
    current_path: str
    failed: int


@dataclass(frozen=True, slots=True)
class AnalysisSummary:
    analysed: int
    failed: int
    remaining: int
    cancelled: bool
    elapsed_s: float


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _pending(db: Database, *, retry_failed: bool) -> list[tuple[int, str]]:
    statement = select(Track.id, Track.path).where(
        Track.analysed_at.is_(None), Track.missing.is_(False)
    )
    if not retry_failed:
        statement = statement.where(Track.analysis_error.is_(None))
    with db.read() as session:
        return [(int(i), path_from_db(p)) for i, p in session.execute(statement.order_by(Track.id))]


def _store(db: Database, track_id: int, values: AnalysisValues) -> None:
    with db.write() as session:
        session.execute(
            update(Track)
            .where(Track.id == track_id)
            .values(
                integrated_lufs=_finite_or_none(values.integrated_lufs),
                true_peak_dbtp=_finite_or_none(values.true_peak_dbtp),
                loudness_range_lu=_finite_or_none(values.loudness_range_lu),
                analysed_at=utc_now(),
                analysis_error=None,
            )
        )
        if values.fingerprint is not None:
            vector = np.asarray(values.fingerprint, dtype="<f4").tobytes()
            existing = session.get(Fingerprint, track_id)
            if existing is None:
                session.add(
                    Fingerprint(
                        track_id=track_id, version=values.fingerprint_version, vector=vector
                    )
                )
            else:
                existing.version = values.fingerprint_version
                existing.vector = vector
                existing.computed_at = utc_now()


def _store_failure(db: Database, track_id: int, reason: str) -> None:
    with db.write() as session:
        session.execute(
            update(Track).where(Track.id == track_id).values(analysis_error=reason[:1000])
        )


def analyse_pending(
    db: Database,
    analyse: Callable[[str], AnalysisValues],
    *,
    workers: int = 2,
    cancel: threading.Event | None = None,
    on_progress: Callable[[AnalysisProgress], None] | None = None,
    on_stored: Callable[[int], None] | None = None,
    retry_failed: bool = False,
) -> AnalysisSummary:
    """Analyse every pending track (see the module docstring)."""
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    started = time.monotonic()
    pending = _pending(db, retry_failed=retry_failed)
    total = len(pending)
    done = failed = 0
    queue = iter(pending)
    running: dict[Future[AnalysisValues], tuple[int, str]] = {}
    cancelled = False
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tonearm-analysis") as pool:

        def fill() -> None:
            while len(running) < 2 * workers:
                item = next(queue, None)
                if item is None:
                    return
                running[pool.submit(analyse, item[1])] = item

        fill()
        while running:
            if cancel is not None and cancel.is_set():
                cancelled = True
                for future in running:
                    future.cancel()
                wait(running, timeout=CANCEL_WAIT_S)  # those already running finish their file
                break
            finished, _ = wait(running, timeout=WAIT_S, return_when=FIRST_COMPLETED)
            for future in finished:
                track_id, path = running.pop(future)
                try:
                    values = future.result()
                except TonearmError as exc:
                    _store_failure(db, track_id, str(exc))
                    failed += 1
                except Exception as exc:  # one bad file must not stop the library's analysis
                    _store_failure(db, track_id, f"{type(exc).__name__}: {exc}")
                    failed += 1
                else:
                    _store(db, track_id, values)
                    done += 1
                    if on_stored is not None:
                        on_stored(track_id)
                if on_progress is not None:
                    on_progress(AnalysisProgress(done + failed, total, display_path(path), failed))
            fill()
    return AnalysisSummary(
        analysed=done,
        failed=failed,
        remaining=total - done - failed,
        cancelled=cancelled,
        elapsed_s=time.monotonic() - started,
    )
