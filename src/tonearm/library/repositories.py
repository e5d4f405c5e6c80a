"""One repository per entity: list, search, paginate, get, update.

Every read goes through the :class:`~tonearm.library.cache.QueryCache` under tags naming what it
depends on (``tracks``, ``track:<id>``, ``albums``, ``playlists``, ``playlist:<id>`` ...); every
write commits first and then invalidates those tags, so a cached answer is never older than the
last write committed in this process. Counters change in the database itself
(``count = count + 1`` in one statement, an upsert on both SQLite and PostgreSQL), never by
read-modify-write. All methods return frozen records (:mod:`tonearm.library.records`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tonearm.errors import ParameterError
from tonearm.library.models import (
    Album,
    Artist,
    Favourite,
    Genre,
    PlayCount,
    Playlist,
    PlaylistEntry,
    Setting,
    Track,
    utc_now,
)
from tonearm.library.records import (
    AlbumRecord,
    ArtistRecord,
    GenreRecord,
    Page,
    PlaylistRecord,
    TrackRecord,
    path_from_db,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.orm import Session

    from tonearm.library.cache import QueryCache
    from tonearm.library.db import Database

__all__ = [
    "AlbumRepository",
    "ArtistRepository",
    "GenreRepository",
    "PlaylistRepository",
    "SettingsRepository",
    "TrackRepository",
]

MAX_PAGE = 500
TRACK_ORDER = {
    "title": (Track.title, Track.id),
    "path": (Track.path,),
    "added": (Track.added_at.desc(), Track.id.desc()),
    "duration": (Track.duration_s, Track.id),
    "loudness": (Track.integrated_lufs, Track.id),
    "id": (Track.id,),
}
"""Sort keys a caller may ask for, with a unique tie-breaker so pages never overlap."""


def _check_page(offset: int, limit: int) -> None:
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise ParameterError(f"offset must be >= 0 and limit 1..{MAX_PAGE}, got {offset}, {limit}")


def _like(query: str) -> str:
    escaped = query.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _upsert(session: Session, table: Any, values: dict[str, Any], *, key: str, set_: Any) -> None:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET ...`` on SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    session.execute(statement.on_conflict_do_update(index_elements=[key], set_=set_))


class _Repository:
    def __init__(self, db: Database, cache: QueryCache) -> None:
        self._db = db
        self._cache = cache


class TrackRepository(_Repository):
    """Tracks, with their artist, album, genre, play count and favourite flag."""

    @staticmethod
    def _select() -> Select[Any]:
        return (
            select(
                Track,
                Artist.name,
                Album.title,
                Genre.name,
                func.coalesce(PlayCount.count, 0),
                Favourite.track_id.is_not(None),
            )
            .outerjoin(Artist, Track.artist_id == Artist.id)
            .outerjoin(Album, Track.album_id == Album.id)
            .outerjoin(Genre, Track.genre_id == Genre.id)
            .outerjoin(PlayCount, PlayCount.track_id == Track.id)
            .outerjoin(Favourite, Favourite.track_id == Track.id)
        )

    @staticmethod
    def _record(row: Any) -> TrackRecord:
        track, artist, album, genre, plays, favourite = row
        return TrackRecord(
            id=track.id,
            path=path_from_db(track.path),
            title=track.title,
            artist=artist,
            album=album,
            album_id=track.album_id,
            genre=genre,
            track_number=track.track_number,
            disc_number=track.disc_number,
            year=track.year,
            duration_s=track.duration_s,
            sample_rate=track.sample_rate,
            channels=track.channels,
            bit_depth=track.bit_depth,
            codec=track.codec,
            size_bytes=track.size_bytes,
            mtime_ns=track.mtime_ns,
            content_hash=track.content_hash,
            integrated_lufs=track.integrated_lufs,
            true_peak_dbtp=track.true_peak_dbtp,
            loudness_range_lu=track.loudness_range_lu,
            analysed_at=track.analysed_at,
            missing=bool(track.missing),
            play_count=int(plays),
            favourite=bool(favourite),
        )

    def get(self, track_id: int) -> TrackRecord | None:
        """The track, or None."""

        def load() -> TrackRecord | None:
            with self._db.read() as session:
                row = session.execute(self._select().where(Track.id == track_id)).first()
                return None if row is None else self._record(row)

        return self._cache.get_or_load(("track", track_id), ("tracks", f"track:{track_id}"), load)

    def list(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        order: str = "title",
        include_missing: bool = False,
    ) -> Page[TrackRecord]:
        """A page of tracks in ``order`` (see ``TRACK_ORDER``)."""
        return self._page(None, offset=offset, limit=limit, order=order, missing=include_missing)

    def search(
        self, query: str, *, offset: int = 0, limit: int = 50, order: str = "title"
    ) -> Page[TrackRecord]:
        """Tracks whose title, artist, album or genre contains ``query`` (any case)."""
        if not query.strip():
            raise ParameterError("search needs some text")
        return self._page(query, offset=offset, limit=limit, order=order, missing=False)

    def _page(
        self, query: str | None, *, offset: int, limit: int, order: str, missing: bool
    ) -> Page[TrackRecord]:
        _check_page(offset, limit)
        if order not in TRACK_ORDER:
            raise ParameterError(f"order must be one of {', '.join(TRACK_ORDER)}, got '{order}'")

        def load() -> Page[TrackRecord]:
            statement = self._select()
            counting = select(func.count(Track.id))
            if query is not None:
                pattern = _like(query)
                match = or_(
                    func.lower(Track.title).like(pattern, escape="\\"),
                    func.lower(Artist.name).like(pattern, escape="\\"),
                    func.lower(Album.title).like(pattern, escape="\\"),
                    func.lower(Genre.name).like(pattern, escape="\\"),
                )
                statement = statement.where(match)
                counting = (
                    counting.select_from(Track)
                    .outerjoin(Artist, Track.artist_id == Artist.id)
                    .outerjoin(Album, Track.album_id == Album.id)
                    .outerjoin(Genre, Track.genre_id == Genre.id)
                    .where(match)
                )
            if not missing:
                statement = statement.where(Track.missing.is_(False))
                counting = counting.where(Track.missing.is_(False))
            statement = statement.order_by(*TRACK_ORDER[order]).offset(offset).limit(limit)
            with self._db.read() as session:
                total = int(session.execute(counting).scalar_one())
                items = tuple(self._record(row) for row in session.execute(statement))
            return Page(items, total, offset, limit)

        key = ("tracks", query, offset, limit, order, missing)
        return self._cache.get_or_load(key, ("tracks", "albums", "artists", "genres"), load)

    def count(self, *, include_missing: bool = False) -> int:
        """How many tracks the library holds."""

        def load() -> int:
            statement = select(func.count(Track.id))
            if not include_missing:
                statement = statement.where(Track.missing.is_(False))
            with self._db.read() as session:
                return int(session.execute(statement).scalar_one())

        return self._cache.get_or_load(("track-count", include_missing), ("tracks",), load)

    def update(self, track_id: int, **fields: Any) -> TrackRecord:
        """Change a track's own tag fields (title, track_number, disc_number, year)."""
        allowed = {"title", "track_number", "disc_number", "year"}
        unknown = set(fields) - allowed
        if unknown:
            raise ParameterError(f"cannot update {', '.join(sorted(unknown))} of a track")
        with self._db.write() as session:
            result = session.execute(
                update(Track)
                .where(Track.id == track_id)
                .values(**fields, updated_at=utc_now())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise ParameterError(f"no track {track_id}")
        self._cache.invalidate(f"track:{track_id}", "tracks")
        record = self.get(track_id)
        assert record is not None  # written just now
        return record

    def record_play(self, track_id: int) -> int:
        """Add one play, atomically (``count = count + 1`` in the database); the new count."""
        now = utc_now()
        with self._db.write() as session:
            if session.get(Track, track_id) is None:
                raise ParameterError(f"no track {track_id}")
            _upsert(
                session,
                PlayCount,
                {"track_id": track_id, "count": 1, "last_played_at": now},
                key="track_id",
                set_={"count": PlayCount.count + 1, "last_played_at": now},
            )
            count = session.execute(
                select(PlayCount.count).where(PlayCount.track_id == track_id)
            ).scalar_one()
        self._cache.invalidate(f"track:{track_id}")
        return int(count)

    def set_favourite(self, track_id: int, favourite: bool) -> None:
        """Mark or unmark a favourite (idempotent)."""
        with self._db.write() as session:
            if session.get(Track, track_id) is None:
                raise ParameterError(f"no track {track_id}")
            session.execute(delete(Favourite).where(Favourite.track_id == track_id))
            if favourite:
                session.add(Favourite(track_id=track_id))
        self._cache.invalidate(f"track:{track_id}", "favourites")

    def favourites(self) -> tuple[int, ...]:
        """Favourite track ids, newest first."""

        def load() -> tuple[int, ...]:
            with self._db.read() as session:
                rows = session.execute(
                    select(Favourite.track_id).order_by(
                        Favourite.added_at.desc(), Favourite.track_id
                    )
                )
                return tuple(int(row[0]) for row in rows)

        return self._cache.get_or_load(("favourites",), ("favourites", "tracks"), load)


class ArtistRepository(_Repository):
    def list(
        self, *, offset: int = 0, limit: int = 50, query: str | None = None
    ) -> Page[ArtistRecord]:
        """Artists by name, optionally those whose name contains ``query``."""
        _check_page(offset, limit)

        def load() -> Page[ArtistRecord]:
            statement = select(Artist)
            counting = select(func.count(Artist.id))
            if query:
                match = func.lower(Artist.name).like(_like(query), escape="\\")
                statement, counting = statement.where(match), counting.where(match)
            with self._db.read() as session:
                total = int(session.execute(counting).scalar_one())
                rows = session.scalars(
                    statement.order_by(Artist.name, Artist.id).offset(offset).limit(limit)
                )
                items = tuple(ArtistRecord(a.id, a.name) for a in rows)
            return Page(items, total, offset, limit)

        return self._cache.get_or_load(("artists", query, offset, limit), ("artists",), load)


class GenreRepository(_Repository):
    def list(self) -> tuple[GenreRecord, ...]:
        """Every genre, by name."""

        def load() -> tuple[GenreRecord, ...]:
            with self._db.read() as session:
                rows = session.scalars(select(Genre).order_by(Genre.name))
                return tuple(GenreRecord(g.id, g.name) for g in rows)

        return self._cache.get_or_load(("genres",), ("genres",), load)


class AlbumRepository(_Repository):
    @staticmethod
    def _select() -> Select[Any]:
        tracks = (
            select(Track.album_id, func.count(Track.id).label("n"))
            .where(Track.missing.is_(False))
            .group_by(Track.album_id)
            .subquery()
        )
        return (
            select(Album, Artist.name, Album.cover.is_not(None), func.coalesce(tracks.c.n, 0))
            .outerjoin(Artist, Album.artist_id == Artist.id)
            .outerjoin(tracks, tracks.c.album_id == Album.id)
        )

    @staticmethod
    def _record(row: Any) -> AlbumRecord:
        album, artist, has_cover, count = row
        return AlbumRecord(album.id, album.title, artist, album.year, bool(has_cover), int(count))

    def get(self, album_id: int) -> AlbumRecord | None:
        def load() -> AlbumRecord | None:
            with self._db.read() as session:
                row = session.execute(self._select().where(Album.id == album_id)).first()
                return None if row is None else self._record(row)

        return self._cache.get_or_load(("album", album_id), ("albums", "tracks"), load)

    def list(
        self, *, offset: int = 0, limit: int = 50, query: str | None = None
    ) -> Page[AlbumRecord]:
        """Albums by title, optionally those whose title contains ``query``."""
        _check_page(offset, limit)

        def load() -> Page[AlbumRecord]:
            statement = self._select()
            counting = select(func.count(Album.id))
            if query:
                match = func.lower(Album.title).like(_like(query), escape="\\")
                statement, counting = statement.where(match), counting.where(match)
            statement = statement.order_by(Album.title, Album.id).offset(offset).limit(limit)
            with self._db.read() as session:
                total = int(session.execute(counting).scalar_one())
                items = tuple(self._record(row) for row in session.execute(statement))
            return Page(items, total, offset, limit)

        return self._cache.get_or_load(("albums", query, offset, limit), ("albums", "tracks"), load)

    def cover(self, album_id: int) -> tuple[bytes, str] | None:
        """The album's cover image and its MIME type, or None (not cached: large)."""
        with self._db.read() as session:
            row = session.execute(
                select(Album.cover, Album.cover_mime).where(Album.id == album_id)
            ).first()
        if row is None or row[0] is None:
            return None
        return bytes(row[0]), str(row[1] or "application/octet-stream")


class PlaylistRepository(_Repository):
    """Playlists with ordered entries; every change is one transaction."""

    def _record(self, session: Session, playlist: Playlist) -> PlaylistRecord:
        ids = session.scalars(
            select(PlaylistEntry.track_id)
            .where(PlaylistEntry.playlist_id == playlist.id)
            .order_by(PlaylistEntry.position)
        )
        return PlaylistRecord(
            playlist.id,
            playlist.name,
            tuple(ids),
            playlist.created_at,
            playlist.updated_at,
        )

    def create(self, name: str, track_ids: Sequence[int] = ()) -> PlaylistRecord:
        if not name.strip():
            raise ParameterError("a playlist needs a name")
        with self._db.write() as session:
            if session.scalar(select(Playlist.id).where(Playlist.name == name)) is not None:
                raise ParameterError(f"a playlist named '{name}' exists already")
            playlist = Playlist(name=name)
            session.add(playlist)
            session.flush()
            self._check_tracks(session, track_ids)
            session.add_all(
                PlaylistEntry(playlist_id=playlist.id, position=i, track_id=t)
                for i, t in enumerate(track_ids)
            )
            session.flush()
            record = self._record(session, playlist)
        self._cache.invalidate("playlists")
        return record

    @staticmethod
    def _check_tracks(session: Session, track_ids: Sequence[int]) -> None:
        wanted = set(track_ids)
        if not wanted:
            return
        found = set(session.scalars(select(Track.id).where(Track.id.in_(wanted))))
        if wanted - found:
            raise ParameterError(f"no track {min(wanted - found)}")

    def get(self, playlist_id: int) -> PlaylistRecord | None:
        def load() -> PlaylistRecord | None:
            with self._db.read() as session:
                playlist = session.get(Playlist, playlist_id)
                return None if playlist is None else self._record(session, playlist)

        tags = ("playlists", f"playlist:{playlist_id}")
        return self._cache.get_or_load(("playlist", playlist_id), tags, load)

    def list(self) -> tuple[PlaylistRecord, ...]:
        def load() -> tuple[PlaylistRecord, ...]:
            with self._db.read() as session:
                playlists = session.scalars(select(Playlist).order_by(Playlist.name))
                return tuple(self._record(session, p) for p in playlists)

        return self._cache.get_or_load(("playlists",), ("playlists",), load)

    def _locked(self, session: Session, playlist_id: int) -> Playlist:
        statement = select(Playlist).where(Playlist.id == playlist_id)
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update()  # SQLite's write lock covers the file
        playlist = session.scalars(statement).first()
        if playlist is None:
            raise ParameterError(f"no playlist {playlist_id}")
        return playlist

    def _change(
        self, playlist_id: int, change: Callable[[Session, Playlist], None]
    ) -> PlaylistRecord:
        """Apply ``change`` to the locked playlist in one transaction; the new record."""
        with self._db.write() as session:
            playlist = self._locked(session, playlist_id)
            change(session, playlist)
            playlist.updated_at = utc_now()
            session.flush()
            record = self._record(session, playlist)
        self._cache.invalidate("playlists", f"playlist:{playlist_id}")
        return record

    def set_tracks(self, playlist_id: int, track_ids: Sequence[int]) -> PlaylistRecord:
        """Replace the whole order of a playlist (add, remove, move are all this)."""

        def replace(session: Session, playlist: Playlist) -> None:
            self._check_tracks(session, track_ids)
            session.execute(delete(PlaylistEntry).where(PlaylistEntry.playlist_id == playlist.id))
            session.add_all(
                PlaylistEntry(playlist_id=playlist.id, position=i, track_id=t)
                for i, t in enumerate(track_ids)
            )

        return self._change(playlist_id, replace)

    def append(self, playlist_id: int, track_ids: Sequence[int]) -> PlaylistRecord:
        """Add tracks at the end, atomically with respect to other writers."""

        def extend(session: Session, playlist: Playlist) -> None:
            self._check_tracks(session, track_ids)
            end = session.scalar(
                select(func.coalesce(func.max(PlaylistEntry.position) + 1, 0)).where(
                    PlaylistEntry.playlist_id == playlist.id
                )
            )
            session.add_all(
                PlaylistEntry(playlist_id=playlist.id, position=int(end or 0) + i, track_id=t)
                for i, t in enumerate(track_ids)
            )

        return self._change(playlist_id, extend)

    def rename(self, playlist_id: int, name: str) -> PlaylistRecord:
        if not name.strip():
            raise ParameterError("a playlist needs a name")

        def retitle(session: Session, playlist: Playlist) -> None:
            clash = session.scalar(
                select(Playlist.id).where(Playlist.name == name, Playlist.id != playlist.id)
            )
            if clash is not None:
                raise ParameterError(f"a playlist named '{name}' exists already")
            playlist.name = name

        return self._change(playlist_id, retitle)

    def delete(self, playlist_id: int) -> None:
        with self._db.write() as session:
            session.delete(self._locked(session, playlist_id))
        self._cache.invalidate("playlists", f"playlist:{playlist_id}")


class SettingsRepository(_Repository):
    """Key → JSON value."""

    def get(self, key: str, default: Any = None) -> Any:
        def load() -> str | None:
            with self._db.read() as session:
                return session.scalar(select(Setting.value).where(Setting.key == key))

        stored = self._cache.get_or_load(("setting", key), ("settings", f"setting:{key}"), load)
        return default if stored is None else json.loads(stored)

    def set(self, key: str, value: Any) -> None:
        text = json.dumps(value)
        with self._db.write() as session:
            _upsert(session, Setting, {"key": key, "value": text}, key="key", set_={"value": text})
        self._cache.invalidate(f"setting:{key}")
