"""The library's tables as a typed SQLAlchemy 2 ORM.

The schema is created and changed only by the Alembic migrations in ``migrations/`` (``upgrade
head``, also on a fresh database); these classes describe it for queries, and a test checks
that the two agree. ORM objects never leave :mod:`tonearm.library`: repositories turn rows
into frozen records (:mod:`tonearm.library.records`) before a session closes.

Units are in the column names: ``duration_s``, ``size_bytes``, ``mtime_ns``,
``integrated_lufs``, ``true_peak_dbtp``, ``loudness_range_lu``. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

__all__ = [
    "Album",
    "Artist",
    "Base",
    "Favourite",
    "Fingerprint",
    "Genre",
    "JobRow",
    "PlayCount",
    "Playlist",
    "PlaylistEntry",
    "ScanRun",
    "Setting",
    "Track",
]

# constraint names that are the same on every backend (Alembic needs them to alter tables)
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> dt.datetime:
    """The current time, UTC, timezone-aware."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite stores text without one and gives back
    naive values. Values are converted to UTC on the way in and marked UTC on the way out, so a
    record read from either backend compares equal to the one written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous: pass a UTC-aware one")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with stable constraint names."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Artist(Base):
    __tablename__ = "artists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512), unique=True)


class Genre(Base):
    __tablename__ = "genres"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)


class Album(Base):
    """An album: a title under an album artist (or none), with the cover found in its files."""

    __tablename__ = "albums"
    __table_args__ = (
        UniqueConstraint("title", "artist_id"),
        Index("ix_albums_title_id", "title", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(512))
    artist_id: Mapped[int | None] = mapped_column(
        ForeignKey("artists.id", ondelete="SET NULL"), index=True
    )
    year: Mapped[int | None] = mapped_column(Integer)
    cover: Mapped[bytes | None] = mapped_column(LargeBinary)
    cover_mime: Mapped[str | None] = mapped_column(String(32))

    artist: Mapped[Artist | None] = relationship()


class Track(Base):
    """One audio file: where it is, what it says it is, what it sounds like."""

    __tablename__ = "tracks"
    __table_args__ = (
        Index("ix_tracks_title", "title"),
        Index("ix_tracks_missing_path", "missing", "path"),
        # the list orders, filtered by ``missing``, with the unique tie-breaker (keyset paging)
        Index("ix_tracks_missing_title_id", "missing", "title", "id"),
        Index("ix_tracks_missing_added_at_id", "missing", "added_at", "id"),
        Index("ix_tracks_album_id_missing", "album_id", "missing"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    """Absolute path; names that are not valid UTF-8 are stored with surrogate escapes."""
    title: Mapped[str | None] = mapped_column(String(1024))
    artist_id: Mapped[int | None] = mapped_column(
        ForeignKey("artists.id", ondelete="SET NULL"), index=True
    )
    album_id: Mapped[int | None] = mapped_column(
        ForeignKey("albums.id", ondelete="SET NULL"), index=True
    )
    genre_id: Mapped[int | None] = mapped_column(
        ForeignKey("genres.id", ondelete="SET NULL"), index=True
    )
    track_number: Mapped[int | None] = mapped_column(Integer)
    disc_number: Mapped[int | None] = mapped_column(Integer)
    year: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    bit_depth: Mapped[int | None] = mapped_column(Integer)
    codec: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    """Hex BLAKE2b of the file's size and sampled content (see ``scanner.content_hash``)."""
    integrated_lufs: Mapped[float | None] = mapped_column(Float)
    true_peak_dbtp: Mapped[float | None] = mapped_column(Float)
    loudness_range_lu: Mapped[float | None] = mapped_column(Float)
    analysed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    analysis_error: Mapped[str | None] = mapped_column(Text)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    """Lower-cased title, artist, album, album artist and genre (``records.search_text_of``)."""
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)

    artist: Mapped[Artist | None] = relationship()
    album: Mapped[Album | None] = relationship()
    genre: Mapped[Genre | None] = relationship()


class Fingerprint(Base):
    """The 25-value fingerprint of a track: float32 little-endian, in the field order of
    ``FINGERPRINT_FIELDS`` of that ``version``."""

    __tablename__ = "fingerprints"

    track_id: Mapped[int] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    computed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)


class PlayCount(Base):
    __tablename__ = "play_counts"

    track_id: Mapped[int] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_played_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Favourite(Base):
    __tablename__ = "favourites"

    track_id: Mapped[int] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)


class Playlist(Base):
    __tablename__ = "playlists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)


class PlaylistEntry(Base):
    """Position ``position`` (0-based, dense) of a playlist holds ``track_id``."""

    __tablename__ = "playlist_entries"
    __table_args__ = (UniqueConstraint("playlist_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    playlist_id: Mapped[int] = mapped_column(
        ForeignKey("playlists.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    """JSON text."""


class ScanRun(Base):
    """One run of the scanner over some folders, with what it found."""

    __tablename__ = "scan_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    roots: Mapped[str] = mapped_column(Text)
    """JSON list of the scanned folders."""
    status: Mapped[str] = mapped_column(String(16))
    """``running``, ``done``, ``cancelled`` or ``failed`` (a crashed run stays ``running``
    until the next start marks it ``failed``)."""
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    files_seen: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    moved: Mapped[int] = mapped_column(Integer, default=0)
    missing: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error_log: Mapped[str | None] = mapped_column(Text)
    """JSON list of ``[path, message]`` for the files that could not be read (capped)."""


class JobRow(Base):
    """A mastering job as the job engine last recorded it (so a restart shows its history)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    """JSON of the job's spec (input, output, target, priority ...)."""
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[str | None] = mapped_column(Text)
    """JSON of the master's report, when done."""
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    submitted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
