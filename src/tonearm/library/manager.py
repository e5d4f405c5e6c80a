"""``LibraryManager``: one object the CLI, the job engine and the server share.

It owns the database (:mod:`~tonearm.library.db`), the query cache, the repositories and the
similarity index, and is safe to use from many threads at once: repositories open a short
session per call, the cache is thread-safe, and the similarity index is an immutable snapshot
swapped under a lock. Scans and analyses invalidate what they change when they commit.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select, update

from tonearm.errors import TonearmError
from tonearm.library.analysis import AnalysisSummary, AnalysisValues, analyse_pending
from tonearm.library.cache import QueryCache
from tonearm.library.catalogue import AlbumRepository, ArtistRepository, GenreRepository
from tonearm.library.db import Database, PoolSettings, open_database
from tonearm.library.models import (
    Album,
    Artist,
    Favourite,
    Fingerprint,
    Genre,
    PlayCount,
    Playlist,
    Track,
)
from tonearm.library.paths import default_database_path
from tonearm.library.playlists import PlaylistRepository, SettingsRepository
from tonearm.library.records import display_path, path_from_db
from tonearm.library.repositories import TrackRepository
from tonearm.library.scanner import ScanProgress, ScanResult, content_hash, scan
from tonearm.library.similarity import Neighbour, SimilarityService
from tonearm.library.tags import replaygain_from_loudness, write_replaygain

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from tonearm.library.analysis import AnalysisProgress

__all__ = ["LibraryManager", "LibraryStats", "ReplayGainSummary", "default_database_path"]

CACHE_TAGS_CHANGED_BY_SCAN = ("tracks", "albums", "artists", "genres", "playlists", "favourites")


@dataclass(frozen=True, slots=True)
class ReplayGainSummary:
    """Files tagged, and ``(path, reason)`` for those that could not be."""

    written: int
    errors: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class LibraryStats:
    """Counts over the present (not missing) tracks, and the catalogue's sizes."""

    tracks: int
    albums: int
    artists: int
    genres: int
    playlists: int
    favourites: int
    total_duration_s: float
    analysed: int
    plays: int


class LibraryManager:
    """The library: open it, scan folders, analyse, query, find similar tracks."""

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        pool: PoolSettings | None = None,
        cache_entries: int = 2048,
        cache_ttl_s: float = 60.0,
    ) -> None:
        if location is None:
            location = default_database_path()
            os.makedirs(os.path.dirname(location), exist_ok=True)
        self.db: Database = open_database(location, pool=pool)
        self.cache = QueryCache(max_entries=cache_entries, ttl_s=cache_ttl_s)
        self.tracks = TrackRepository(self.db, self.cache)
        self.albums = AlbumRepository(self.db, self.cache)
        self.artists = ArtistRepository(self.db, self.cache)
        self.genres = GenreRepository(self.db, self.cache)
        self.playlists = PlaylistRepository(self.db, self.cache)
        self.settings = SettingsRepository(self.db, self.cache)
        self.similarity = SimilarityService(self._fingerprint_rows)
        self._scan_lock = threading.Lock()

    def scan(
        self,
        roots: Sequence[str | os.PathLike[str]],
        *,
        cancel: threading.Event | None = None,
        on_progress: Callable[[ScanProgress], None] | None = None,
        batch_size: int = 200,
        progress_interval_s: float = 0.1,
    ) -> ScanResult:
        """Scan folders (one scan at a time per manager; see :func:`scanner.scan`)."""
        with self._scan_lock:
            try:
                return scan(
                    self.db,
                    roots,
                    cancel=cancel,
                    on_progress=on_progress,
                    batch_size=batch_size,
                    progress_interval_s=progress_interval_s,
                )
            finally:
                self.cache.invalidate(*CACHE_TAGS_CHANGED_BY_SCAN)
                self.similarity.invalidate()

    def analyse(
        self,
        analyse: Callable[[str], AnalysisValues],
        *,
        workers: int = 2,
        cancel: threading.Event | None = None,
        on_progress: Callable[[AnalysisProgress], None] | None = None,
        retry_failed: bool = False,
    ) -> AnalysisSummary:
        """Analyse the pending tracks with the caller's analysis function."""

        def stored(track_id: int) -> None:
            self.cache.invalidate(f"track:{track_id}")

        try:
            return analyse_pending(
                self.db,
                analyse,
                workers=workers,
                cancel=cancel,
                on_progress=on_progress,
                on_stored=stored,
                retry_failed=retry_failed,
            )
        finally:
            self.cache.invalidate("tracks")
            self.similarity.invalidate()

    def write_replaygain_tags(self, track_ids: Sequence[int] | None = None) -> ReplayGainSummary:
        """Write ReplayGain 2.0 tags (track gain and peak, -18 LUFS reference) into the files
        of analysed tracks (all of them, or ``track_ids``).

        Each file is rewritten atomically (:func:`tags.write_replaygain`); its new size, mtime
        and content hash are stored at once, so the next scan sees it as unchanged.
        """
        statement = select(Track.id, Track.path, Track.integrated_lufs, Track.true_peak_dbtp).where(
            Track.integrated_lufs.is_not(None),
            Track.true_peak_dbtp.is_not(None),
            Track.missing.is_(False),
        )
        if track_ids is not None:
            statement = statement.where(Track.id.in_(list(track_ids)))
        with self.db.read() as session:
            rows = session.execute(statement.order_by(Track.id)).all()
        written = 0
        errors: list[tuple[str, str]] = []
        for track_id, stored, lufs, peak in rows:
            path = path_from_db(stored)
            try:
                write_replaygain(path, replaygain_from_loudness(lufs, peak))
                info = os.stat(path)
                digest = content_hash(path, info.st_size)
            except (TonearmError, OSError) as exc:
                errors.append((display_path(path), str(exc)))
                continue
            with self.db.write() as session:
                session.execute(
                    update(Track)
                    .where(Track.id == track_id)
                    .values(size_bytes=info.st_size, mtime_ns=info.st_mtime_ns, content_hash=digest)
                )
            self.cache.invalidate(f"track:{track_id}")
            written += 1
        return ReplayGainSummary(written=written, errors=tuple(errors))

    def stats(self) -> LibraryStats:
        """How big the library is (cached until the next write to tracks or the catalogue)."""

        def load() -> LibraryStats:
            present = Track.missing.is_(False)
            with self.db.read() as session:
                tracks, duration, analysed = session.execute(
                    select(
                        func.count(Track.id),
                        func.coalesce(func.sum(Track.duration_s), 0.0),
                        func.count(Track.analysed_at),
                    ).where(present)
                ).one()

                def count(column: Any) -> int:
                    return int(session.scalar(select(func.count(column))) or 0)

                plays = session.scalar(select(func.coalesce(func.sum(PlayCount.count), 0)))
                return LibraryStats(
                    tracks=int(tracks),
                    albums=count(Album.id),
                    artists=count(Artist.id),
                    genres=count(Genre.id),
                    playlists=count(Playlist.id),
                    favourites=count(Favourite.track_id),
                    total_duration_s=float(duration),
                    analysed=int(analysed),
                    plays=int(plays or 0),
                )

        # plays and favourites change only "track-pages" (and the track) of what scans change
        tags = (*CACHE_TAGS_CHANGED_BY_SCAN, "track-pages")
        return self.cache.get_or_load(("stats",), tags, load)

    def similar(self, track_id: int, k: int = 10) -> list[Neighbour]:
        """The ``k`` tracks nearest to ``track_id`` by fingerprint."""
        return self.similarity.nearest(track_id, k)

    def _fingerprint_rows(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        statement = (
            select(Fingerprint.track_id, Fingerprint.vector)
            .join(Track, Track.id == Fingerprint.track_id)
            .where(Track.missing.is_(False))
            .order_by(Fingerprint.track_id)
        )
        with self.db.read() as session:
            rows = session.execute(statement).all()
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        if not rows:
            return ids, np.zeros((0, 25), dtype=np.float64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4")
        return ids, vectors.reshape(len(rows), -1).astype(np.float64)

    def close(self) -> None:
        """Close the database connections."""
        self.db.close()

    def __enter__(self) -> LibraryManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
