"""What the library hands out: frozen records, never ORM objects.

Repositories build these inside a session, so nothing a caller holds is tied to a database
connection, can lazy-load, or goes stale in a surprising way. Records are immutable and
hashable, which also makes them safe to keep in the query cache and to share between threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

if TYPE_CHECKING:
    import datetime as dt

__all__ = [
    "AlbumRecord",
    "ArtistRecord",
    "GenreRecord",
    "Page",
    "PlaylistRecord",
    "TrackRecord",
    "path_from_db",
    "path_to_db",
    "search_text_of",
]

T = TypeVar("T")

_BYTES_PREFIX = "bytes:"
"""Stored paths that are not valid UTF-8 start with this (a real absolute path starts with
``/``), followed by the percent-encoded file-system bytes."""


def path_to_db(path: str) -> str:
    """The text stored for a file-system path.

    Names that are valid UTF-8 are stored as they are. Others (which Python holds with
    surrogate escapes) are stored as ``bytes:`` + their percent-encoded bytes, so the database
    keeps valid text and :func:`path_from_db` gives back exactly the same path.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return _BYTES_PREFIX + quote_from_bytes(os.fsencode(path), safe="/")
    return path


def path_from_db(stored: str) -> str:
    """The file-system path for stored text (the inverse of :func:`path_to_db`)."""
    if stored.startswith(_BYTES_PREFIX):
        return os.fsdecode(unquote_to_bytes(stored[len(_BYTES_PREFIX) :]))
    return stored


def search_text_of(*fields: str | None) -> str:
    """The text a track is found by: its fields lower-cased, joined by `` | ``.

    Stored in ``tracks.search_text`` (indexed for substring search: FTS5 trigram on SQLite,
    ``pg_trgm`` on PostgreSQL), so a search is one indexed column, not four joined ones.
    """
    return " | ".join(field.strip().lower() for field in fields if field and field.strip())


def display_path(path: str) -> str:
    """A path as printable text (undecodable bytes shown as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class ArtistRecord:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class GenreRecord:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class AlbumRecord:
    id: int
    title: str
    artist: str | None
    year: int | None
    has_cover: bool
    track_count: int


@dataclass(frozen=True, slots=True)
class TrackRecord:
    """A track as the library knows it (see :class:`tonearm.library.models.Track`)."""

    id: int
    path: str
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
    mtime_ns: int
    content_hash: str
    integrated_lufs: float | None
    true_peak_dbtp: float | None
    loudness_range_lu: float | None
    analysed_at: dt.datetime | None
    missing: bool
    play_count: int
    favourite: bool


@dataclass(frozen=True, slots=True)
class PlaylistRecord:
    id: int
    name: str
    track_ids: tuple[int, ...]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """``items`` at ``offset`` of ``total`` matching rows (at most ``limit``).

    ``next_cursor`` continues after the last item (keyset paging, fast at any depth); None on
    the last page, or for orders without cursors. ``offset`` is -1 for a page fetched by cursor.
    ``total_exact`` is False when ``total`` is only a lower bound (a search matching more than
    ``paging.FEW_MATCHES`` tracks on SQLite: "1000+", as counting them all would be slow).
    """

    items: tuple[T, ...]
    total: int
    offset: int
    limit: int
    next_cursor: str | None = None
    total_exact: bool = True
