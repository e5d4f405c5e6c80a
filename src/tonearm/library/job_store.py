"""Job records in the library database (the job engine writes them; ``jobs`` table).

The library does not import the job engine: records are plain values (the spec and the report
as JSON text). Each state change is one short write. On start, :meth:`JobStore.recover` marks
every job still ``queued`` or ``running`` (its process died) as ``failed``, saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from tonearm.library.models import JobRow

if TYPE_CHECKING:
    import datetime as dt

    from tonearm.library.db import Database

__all__ = ["INTERRUPTED", "JobStore", "StoredJob"]

INTERRUPTED = "interrupted: tonearm stopped before this job finished"
UNFINISHED = ("queued", "running")


@dataclass(frozen=True, slots=True)
class StoredJob:
    id: str
    spec: dict[str, Any]
    state: str
    error: str | None
    report: dict[str, Any] | None
    cached: bool
    submitted_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


def _record(row: JobRow) -> StoredJob:
    return StoredJob(
        row.id,
        json.loads(row.spec),
        row.state,
        row.error,
        None if row.report is None else json.loads(row.report),
        bool(row.cached),
        row.submitted_at,
        row.started_at,
        row.finished_at,
    )


class JobStore:
    """Read and write job records (thread-safe: one short session per call)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, job_id: str, spec: dict[str, Any], *, submitted_at: dt.datetime) -> None:
        with self._db.write() as session:
            session.add(
                JobRow(
                    id=job_id,
                    spec=json.dumps(spec),
                    state="queued",
                    cached=False,
                    submitted_at=submitted_at,
                )
            )

    def remove(self, job_id: str) -> None:
        """Forget a job that never was (the queue refused it)."""
        with self._db.write() as session:
            session.execute(delete(JobRow).where(JobRow.id == job_id))

    def set_state(
        self,
        job_id: str,
        state: str,
        *,
        error: str | None = None,
        report: dict[str, Any] | None = None,
        cached: bool = False,
        started_at: dt.datetime | None = None,
        finished_at: dt.datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "error": error, "cached": cached}
        if report is not None:
            values["report"] = json.dumps(report)
        if started_at is not None:
            values["started_at"] = started_at
        if finished_at is not None:
            values["finished_at"] = finished_at
        with self._db.write() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))

    def get(self, job_id: str) -> StoredJob | None:
        with self._db.read() as session:
            row = session.get(JobRow, job_id)
            return None if row is None else _record(row)

    def recent(self, limit: int = 100) -> list[StoredJob]:
        """The newest jobs first."""
        with self._db.read() as session:
            rows = session.scalars(
                select(JobRow).order_by(JobRow.submitted_at.desc(), JobRow.id).limit(limit)
            )
            return [_record(row) for row in rows]

    def recover(self, *, now: dt.datetime) -> int:
        """Mark jobs left queued or running by a process that died as failed; how many."""
        with self._db.write() as session:
            result = session.execute(
                update(JobRow)
                .where(JobRow.state.in_(UNFINISHED))
                .values(state="failed", error=INTERRUPTED, finished_at=now)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
