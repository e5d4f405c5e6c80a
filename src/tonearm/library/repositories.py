"""Tracks, and what every repository shares (see :mod:`tonearm.library.catalogue` for artists,
genres and albums, :mod:`tonearm.library.playlists` for playlists and settings).

One repository per entity: list, search, paginate, get, update.

Every read goes through the :class:`~tonearm.library.cache.QueryCache` under tags naming what it
depends on (``tracks``, ``track:<id>``, ``albums``, ``playlists``, ``playlist:<id>`` ...); every
write commits first and then invalidates those tags, so a cached answer is never older than the
last write committed in this process. Counters change in the database itself
(``count = count + 1`` in one statement, an upsert on both SQLite and PostgreSQL), never by
read-modify-write. All methods return frozen records (:mod:`tonearm.library.records`).
"""

from __future__ import annotations

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
    Track,
    utc_now,
)
from tonearm.library.paging import (
    FEW_MATCHES,
    TRACK_ORDERS,
    after_cursor,
    cursor_for,
    few_matching_ids,
    search_condition,
)
from tonearm.library.records import (
    Page,
    TrackRecord,
    path_from_db,
    search_text_of,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

    from tonearm.library.cache import QueryCache
    from tonearm.library.db import Database

__all__ = [
    "MAX_PAGE",
    "PAGE_TAGS",
    "TrackRepository",
    "refresh_search_text",
]

MAX_PAGE = 500


def _check_page(offset: int, limit: int) -> None:
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise ParameterError(f"offset must be >= 0 and limit 1..{MAX_PAGE}, got {offset}, {limit}")


def _insert(session: Session, table: Any, values: dict[str, Any]) -> Any:
    """The dialect's INSERT (SQLite's or PostgreSQL's, both with ``ON CONFLICT``)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).values(**values)


def _upsert(session: Session, table: Any, values: dict[str, Any], *, key: str, set_: Any) -> None:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET ...`` on SQLite and PostgreSQL."""
    statement = _insert(session, table, values)
    session.execute(statement.on_conflict_do_update(index_elements=[key], set_=set_))


def _insert_or_ignore(session: Session, table: Any, values: dict[str, Any]) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL."""
    session.execute(_insert(session, table, values).on_conflict_do_nothing())


PAGE_TAGS = ("tracks", "track-pages", "albums", "artists", "genres")
"""What a page of tracks depends on: rows, play counts and favourites, and the names."""


def refresh_search_text(session: Session, which: ColumnElement[bool]) -> int:
    """Recompute ``tracks.search_text`` of the tracks matching ``which``; how many changed."""
    album_artist = aliased(Artist)
    rows = session.execute(
        select(Track.id, Track.title, Artist.name, Album.title, album_artist.name, Genre.name)
        .outerjoin(Artist, Track.artist_id == Artist.id)
        .outerjoin(Album, Track.album_id == Album.id)
        .outerjoin(album_artist, Album.artist_id == album_artist.id)
        .outerjoin(Genre, Track.genre_id == Genre.id)
        .where(which)
    ).all()
    if rows:
        session.execute(
            update(Track),
            [{"id": row[0], "search_text": search_text_of(*row[1:])} for row in rows],
        )
    return len(rows)


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
            refresh_search_text(session, Track.id == track_id)
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
