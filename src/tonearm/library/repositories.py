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

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

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
from tonearm.library.paging import (
    ALBUM_ORDER,
    FEW_MATCHES,
    TRACK_ORDERS,
    after_cursor,
    cursor_for,
    few_matching_ids,
    search_condition,
)
from tonearm.library.records import (
    AlbumRecord,
    ArtistRecord,
    GenreRecord,
    Page,
    PlaylistRecord,
    TrackRecord,
    path_from_db,
    search_text_of,
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


def _insert_or_ignore(session: Session, table: Any, values: dict[str, Any]) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(table).values(**values).on_conflict_do_nothing())


PAGE_TAGS = ("tracks", "track-pages", "albums", "artists", "genres")
"""What a page of tracks depends on: rows, play counts and favourites, and the names."""


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
        after: str | None = None,
    ) -> Page[TrackRecord]:
        """A page of tracks in ``order`` (see ``paging.TRACK_ORDERS``): at ``offset``, or
        after the ``after`` cursor of the previous page (fast at any depth)."""
        return self._page(
            None, offset=offset, limit=limit, order=order, missing=include_missing, after=after
        )

    def search(
        self,
        query: str,
        *,
        offset: int = 0,
        limit: int = 50,
        order: str = "title",
        after: str | None = None,
    ) -> Page[TrackRecord]:
        """Tracks whose title, artist, album, album artist or genre contains ``query`` (any
        case; an indexed substring search, see :mod:`tonearm.library.paging`)."""
        if not query.strip():
            raise ParameterError("search needs some text")
        return self._page(
            query, offset=offset, limit=limit, order=order, missing=False, after=after
        )

    def _page(
        self,
        query: str | None,
        *,
        offset: int,
        limit: int,
        order: str,
        missing: bool,
        after: str | None,
    ) -> Page[TrackRecord]:
        _check_page(offset, limit)
        sort = TRACK_ORDERS.get(order)
        if sort is None:
            raise ParameterError(f"order must be one of {', '.join(TRACK_ORDERS)}, got '{order}'")
        if after is not None and offset:
            raise ParameterError("give an offset or a cursor, not both")
        dialect = self._db.dialect

        def load() -> Page[TrackRecord]:
            statement = self._select()
            few: Sequence[int] | None = None
            if query is not None and dialect == "sqlite":
                with self._db.read() as session:
                    few = few_matching_ids(session, query)
            present = Track.missing.is_(False)
            if few is not None:
                statement = statement.where(Track.id.in_(few))
                # hide the filter from the (missing, title) index: else SQLite walks that
                # whole index in title order, probing the id list, instead of fetching the ids
                present = func.coalesce(Track.missing, False).is_(False)
            elif query is not None:  # many matches: find a page of them in sort order
                statement = statement.where(search_condition(dialect, query, many=True))
            if not missing:
                statement = statement.where(present)
            if after is not None:
                statement = statement.where(after_cursor(sort, after))
            statement = statement.order_by(*sort.order_by()).limit(limit)
            if after is None:
                statement = statement.offset(offset)
            cursor = None
            with self._db.read() as session:  # records are built before the session ends
                rows = session.execute(statement).all()
                items = tuple(self._record(row) for row in rows)
                if sort.keyset and len(rows) == limit:
                    last = rows[-1][0]
                    cursor = cursor_for(sort, tuple(getattr(last, c.key) for c in sort.columns))
            exact = True
            if query is None:
                total = self.count(include_missing=missing)
            elif few is not None:
                total = self._present(few)
            elif dialect == "sqlite":  # more than FEW_MATCHES: a lower bound, not a slow count
                total, exact = FEW_MATCHES + 1, False
            else:
                total = self._matches(query)
            where = -1 if after is not None else offset
            return Page(items, total, where, limit, cursor, exact)

        key = ("tracks", query, offset, limit, order, missing, after)
        return self._cache.get_or_load(key, PAGE_TAGS, load)

    def _present(self, track_ids: Sequence[int]) -> int:
        """How many of ``track_ids`` are present (not missing)."""
        if not track_ids:
            return 0
        statement = select(func.count(Track.id)).where(
            Track.id.in_(track_ids), func.coalesce(Track.missing, False).is_(False)
        )
        with self._db.read() as session:
            return int(session.execute(statement).scalar_one())

    def _matches(self, query: str) -> int:
        """How many present tracks match a search (cached like the pages)."""
        dialect = self._db.dialect

        def load() -> int:
            statement = select(func.count(Track.id)).where(
                search_condition(dialect, query), Track.missing.is_(False)
            )
            with self._db.read() as session:
                return int(session.execute(statement).scalar_one())

        tags = ("tracks", "albums", "artists", "genres")
        return self._cache.get_or_load(("search-count", query), tags, load)

    def count(self, *, include_missing: bool = False) -> int:
        """How many tracks the library holds."""

        def load() -> int:
            # all rows, less the (few) missing ones through the missing-first index: SQLite
            # counts a whole table far faster than the rows passing a filter
            everything = select(func.count()).select_from(Track)
            gone = select(func.count()).select_from(Track).where(Track.missing.is_(True))
            with self._db.read() as session:
                total = int(session.execute(everything).scalar_one())
                return total if include_missing else total - int(session.execute(gone).scalar_one())

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
            album_artist = aliased(Artist)
            title, artist, album, by, genre = session.execute(
                select(Track.title, Artist.name, Album.title, album_artist.name, Genre.name)
                .outerjoin(Artist, Track.artist_id == Artist.id)
                .outerjoin(Album, Track.album_id == Album.id)
                .outerjoin(album_artist, Album.artist_id == album_artist.id)
                .outerjoin(Genre, Track.genre_id == Genre.id)
                .where(Track.id == track_id)
            ).one()
            session.execute(
                update(Track)
                .where(Track.id == track_id)
                .values(search_text=search_text_of(title, artist, album, by, genre))
                .execution_options(synchronize_session=False)
            )
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
        self._cache.invalidate(f"track:{track_id}", "track-pages")  # pages show play counts
        return int(count)

    def set_favourite(self, track_id: int, favourite: bool) -> None:
        """Mark or unmark a favourite (idempotent)."""
        with self._db.write() as session:
            if session.get(Track, track_id) is None:
                raise ParameterError(f"no track {track_id}")
            if favourite:  # idempotent under concurrency: a second marker finds the row there
                _insert_or_ignore(session, Favourite, {"track_id": track_id, "added_at": utc_now()})
            else:
                session.execute(delete(Favourite).where(Favourite.track_id == track_id))
        self._cache.invalidate(f"track:{track_id}", "favourites", "track-pages")

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
        # counted per album on the page only (index on tracks(album_id, missing))
        tracks = (
            select(func.count(Track.id))
            .where(Track.album_id == Album.id, Track.missing.is_(False))
            .correlate(Album)
            .scalar_subquery()
        )
        return select(Album, Artist.name, Album.cover.is_not(None), tracks).outerjoin(
            Artist, Album.artist_id == Artist.id
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
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        query: str | None = None,
        after: str | None = None,
    ) -> Page[AlbumRecord]:
        """Albums by title, optionally those whose title contains ``query``; at ``offset`` or
        after the ``after`` cursor of the previous page."""
        _check_page(offset, limit)
        if after is not None and offset:
            raise ParameterError("give an offset or a cursor, not both")

        def load() -> Page[AlbumRecord]:
            statement = self._select()
            counting = select(func.count(Album.id))
            if query:
                match = func.lower(Album.title).like(_like(query), escape="\\")
                statement, counting = statement.where(match), counting.where(match)
            if after is not None:
                statement = statement.where(after_cursor(ALBUM_ORDER, after))
            else:
                statement = statement.offset(offset)
            statement = statement.order_by(*ALBUM_ORDER.order_by()).limit(limit)
            cursor = None
            with self._db.read() as session:
                total = int(session.execute(counting).scalar_one())
                rows = session.execute(statement).all()
                items = tuple(self._record(row) for row in rows)
                if len(rows) == limit:
                    cursor = cursor_for(ALBUM_ORDER, (rows[-1][0].title, rows[-1][0].id))
            return Page(items, total, -1 if after is not None else offset, limit, cursor)

        key = ("albums", query, offset, limit, after)
        return self._cache.get_or_load(key, ("albums", "tracks"), load)

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
