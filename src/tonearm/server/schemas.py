"""The REST API's pydantic models (what ``/openapi.json`` describes), built from library records.

Records are frozen dataclasses inside tonearm; these models are what crosses the wire. File
paths are never sent: a track is addressed by id, and its audio by ``/api/tracks/{id}/stream``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tonearm.mastering.targets import (
    MAX_CEILING_DBTP,
    MAX_TARGET_LUFS,
    MIN_CEILING_DBTP,
    MIN_TARGET_LUFS,
    PRESETS,
)

if TYPE_CHECKING:
    from tonearm.library.records import AlbumRecord, PlaylistRecord, TrackRecord
    from tonearm.library.records import Page as LibraryPage

__all__ = [
    "Album",
    "Artist",
    "Genre",
    "Health",
    "Job",
    "JobOptions",
    "JobStateName",
    "Page",
    "PlayCount",
    "Playlist",
    "PlaylistChange",
    "PlaylistCreate",
    "Preset",
    "ScanState",
    "Similar",
    "Stats",
    "Track",
    "TrackJobRequest",
    "Version",
]

ItemT = TypeVar("ItemT")
MAX_ID = 2**31 - 1
"""The largest id a library row can have (INTEGER columns: 32 bits on PostgreSQL)."""
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A row id as a client sends it: anything else is a 422, never a query the database refuses."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(_Model):
    status: str
    version: str
    uptime_s: float
    jobs_running: int
    websocket_clients: int


class Preset(_Model):
    name: str
    lufs: float
    ceiling_dbtp: float
    description: str


class Version(_Model):
    version: str
    api: str = "1"


class Track(_Model):
    id: int
    title: str | None
    artist: str | None
    album: str | None
    album_id: int | None
    genre: str | None
    track_number: int | None
    disc_number: int | None
    year: int | None
    duration_s: float
    sample_rate: int
    channels: int
    bit_depth: int | None
    codec: str
    size_bytes: int
    file_name: str
    integrated_lufs: float | None
    true_peak_dbtp: float | None
    loudness_range_lu: float | None
    analysed_at: dt.datetime | None
    missing: bool
    play_count: int
    favourite: bool

    @classmethod
    def of(cls, record: TrackRecord) -> Track:
        fields = {name: getattr(record, name) for name in _TRACK_FIELDS}
        return cls(**fields, file_name=Path(record.path).name)

    @classmethod
    def trusted(cls, record: TrackRecord) -> Track:
        """:meth:`of` without validation: for records straight from the library, whose types
        the database already guarantees (lists of tracks are the hot path)."""
        fields = {name: getattr(record, name) for name in _TRACK_FIELDS}
        return cls.model_construct(**fields, file_name=os.path.basename(record.path))


_TRACK_FIELDS = tuple(name for name in Track.model_fields if name != "file_name")


class Page(_Model, Generic[ItemT]):
    """A page of items; ``next_cursor`` fetches the next (keyset paging, fast at any depth)."""

    items: list[ItemT]
    total: int
    total_exact: bool
    offset: int
    limit: int
    next_cursor: str | None

    @classmethod
    def of(cls, page: LibraryPage[Any], items: list[ItemT]) -> Page[ItemT]:
        """The library's page with its records turned into ``items`` (models the caller has
        built already: nothing is validated again)."""
        return cls.model_construct(
            items=items,
            total=page.total,
            total_exact=page.total_exact,
            offset=page.offset,
            limit=page.limit,
            next_cursor=page.next_cursor,
        )


class Album(_Model):
    id: int
    title: str
    artist: str | None
    year: int | None
    track_count: int
    has_cover: bool

    @classmethod
    def of(cls, record: AlbumRecord) -> Album:
        return cls(
            id=record.id,
            title=record.title,
            artist=record.artist,
            year=record.year,
            track_count=record.track_count,
            has_cover=record.has_cover,
        )


class Artist(_Model):
    id: int
    name: str


class Genre(_Model):
    id: int
    name: str


class Playlist(_Model):
    id: int
    name: str
    track_ids: list[int]
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, record: PlaylistRecord) -> Playlist:
        return cls(
            id=record.id,
            name=record.name,
            track_ids=list(record.track_ids),
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class PlaylistCreate(_Model):
    name: str = Field(min_length=1, max_length=200)
    track_ids: list[RowId] = Field(default_factory=list, max_length=10_000)


class PlaylistChange(_Model):
    """Rename, replace the entries, or append to them (any of the three)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    track_ids: list[RowId] | None = Field(default=None, max_length=10_000)
    append: list[RowId] | None = Field(default=None, max_length=10_000)


class PlayCount(_Model):
    track_id: int
    play_count: int


class Favourite(_Model):
    favourite: bool


class Similar(_Model):
    track: Track
    distance: float


class Stats(_Model):
    tracks: int
    albums: int
    artists: int
    genres: int
    playlists: int
    favourites: int
    total_duration_s: float
    analysed: int
    plays: int


class ScanState(_Model):
    state: str
    files_seen: int
    added: int
    updated: int
    unchanged: int
    moved: int
    missing: int
    errors: int
    files_per_s: float
    elapsed_s: float
    error: str | None
    analysed: int
    analysis_pending: int


class ErrorBody(_Model):
    detail: Any


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers these error codes (``{"detail": ...}``)."""
    return {code: {"model": ErrorBody} for code in codes}


JobStateName = Literal["queued", "running", "done", "failed", "cancelled"]
MAX_JOB_PRIORITY = 100


class JobOptions(_Model):
    """How to master: a preset, optionally with its loudness or ceiling overridden."""

    target: str = Field(default="spotify", max_length=32, json_schema_extra={"enum": [*PRESETS]})
    lufs: float | None = Field(default=None, ge=MIN_TARGET_LUFS, le=MAX_TARGET_LUFS)
    """Integrated loudness to reach instead of the preset's (LUFS)."""
    ceiling_dbtp: float | None = Field(default=None, ge=MIN_CEILING_DBTP, le=MAX_CEILING_DBTP)
    """True-peak ceiling instead of the preset's (dBTP)."""
    priority: int = Field(default=0, ge=-MAX_JOB_PRIORITY, le=MAX_JOB_PRIORITY)
    """Higher runs first; first come, first served within a priority."""

    @field_validator("target")
    @classmethod
    def _known_target(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in PRESETS:
            raise ValueError(f"unknown target '{value}' (choose from {', '.join(PRESETS)})")
        return name


class TrackJobRequest(JobOptions):
    """Master a library track."""

    track_id: RowId


class Job(_Model):
    """A mastering job: live from the engine, or from the library's job history."""

    id: str
    state: JobStateName
    stage: str | None
    """``analyse``, ``plan``, ``render`` or ``verify`` while running."""
    fraction: float
    eta_s: float | None
    error: str | None
    worker: str | None
    cached: bool
    """Served from the result cache (the same input and settings were mastered before)."""
    submitted_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    track_id: int | None
    input_name: str
    """The input's file name (never the server's path)."""
    output_name: str
    target: str
    lufs: float | None
    ceiling_dbtp: float | None
    priority: int
