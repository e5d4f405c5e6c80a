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

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, false, func, select, update
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
    TrackOrder,
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
    "FAVOURITE_PAGE_TAGS",
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

FAVOURITE_PAGE_TAGS = (*PAGE_TAGS, "favourites")
"""What a page of favourite tracks only depends on: which tracks are favourites, too."""

_MIN_ID, _MAX_ID = -(2**31), 2**31 - 1
"""The ids a database can hold; a filter on any other id matches nothing."""


@dataclass(frozen=True, slots=True)
class _Filters:
    """Which tracks a list or search keeps (all of them AND-ed; ``None``: any)."""

    album_id: int | None = None
    artist_id: int | None = None
    genre_id: int | None = None
    favourites_only: bool = False

    def __bool__(self) -> bool:
        return self != _NO_FILTERS

    def conditions(self) -> list[ColumnElement[bool]]:
        """WHERE conditions on ``tracks`` (no join needed)."""
        found: list[ColumnElement[bool]] = []
        for column, value in (
            (Track.album_id, self.album_id),
            (Track.artist_id, self.artist_id),
            (Track.genre_id, self.genre_id),
        ):
            if value is not None:
                found.append(column == value if _MIN_ID <= value <= _MAX_ID else false())
        if self.favourites_only:
            found.append(Track.id.in_(select(Favourite.track_id)))
        return found

    @property
    def tags(self) -> tuple[str, ...]:
        """Cache tags of a page under these filters."""
        return FAVOURITE_PAGE_TAGS if self.favourites_only else PAGE_TAGS


_NO_FILTERS = _Filters()

_HIDDEN_PRESENT = func.coalesce(Track.missing, False).is_(False)
"""``missing IS false`` in a form no index serves: so SQLite reads rows through another
condition's index (ids, a filter) instead of walking a missing-first index in sort order."""


def _listing(query: str | None, missing: bool, filters: _Filters) -> str:
    """What selects the rows of a page, for its cursors (empty for every present track)."""
    parts: dict[str, Any] = {
        "q": None if query is None else query.strip().lower(),
        "missing": missing or None,
        "album": filters.album_id,
        "artist": filters.artist_id,
        "genre": filters.genre_id,
        "favourites": filters.favourites_only or None,
    }
    named = {name: value for name, value in parts.items() if value is not None}
    return json.dumps(named, sort_keys=True, separators=(",", ":")) if named else ""


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
    """Tracks, with their artist, album, genre, play count and favourite flag.

    Lists and searches take filters (album, artist, genre, favourites only). On SQLite, whose
    planner has no statistics, a page is read either through the filter's index and sorted
    (few matching tracks) or off the sort order's index (many; see :meth:`_dense`)."""

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
        album_id: int | None = None,
        artist_id: int | None = None,
        genre_id: int | None = None,
        favourites_only: bool = False,
    ) -> Page[TrackRecord]:
        """A page of tracks in ``order`` (see ``paging.TRACK_ORDERS``): at ``offset``, or
        after the ``after`` cursor of the previous page of the same listing (fast at any
        depth).

        Only the tracks on album ``album_id``, by (track) artist ``artist_id``, of genre
        ``genre_id`` and/or marked favourite, when given (all of them at once when several
        are); an id that names nothing gives an empty page."""
        filters = _Filters(album_id, artist_id, genre_id, favourites_only)
        return self._page(
            None,
            offset=offset,
            limit=limit,
            order=order,
            missing=include_missing,
            after=after,
            filters=filters,
        )

    def search(
        self,
        query: str,
        *,
        offset: int = 0,
        limit: int = 50,
        order: str = "title",
        after: str | None = None,
        album_id: int | None = None,
        artist_id: int | None = None,
        genre_id: int | None = None,
        favourites_only: bool = False,
    ) -> Page[TrackRecord]:
        """Tracks whose title, artist, album, album artist or genre contains ``query`` (any
        case; an indexed substring search, see :mod:`tonearm.library.paging`), filtered as
        in :meth:`list`."""
        if not query.strip():
            raise ParameterError("search needs some text")
        filters = _Filters(album_id, artist_id, genre_id, favourites_only)
        return self._page(
            query,
            offset=offset,
            limit=limit,
            order=order,
            missing=False,
            after=after,
            filters=filters,
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
        filters: _Filters,
    ) -> Page[TrackRecord]:
        _check_page(offset, limit)
        sort = TRACK_ORDERS.get(order)
        if sort is None:
            raise ParameterError(f"order must be one of {', '.join(TRACK_ORDERS)}, got '{order}'")
        if after is not None and offset:
            raise ParameterError("give an offset or a cursor, not both")
        listing = _listing(query, missing, filters)
        after_key = None if after is None else after_cursor(sort, after, listing=listing)
        dialect = self._db.dialect

        def load() -> Page[TrackRecord]:
            statement = self._select().where(*filters.conditions())
            few: Sequence[int] | None = None
            if query is not None and dialect == "sqlite":
                with self._db.read() as session:
                    few = few_matching_ids(session, query)
            present = Track.missing.is_(False)
            if few is not None:
                statement = statement.where(Track.id.in_(few))
                # hide the filter from the (missing, title) index: else SQLite walks that
                # whole index in title order, probing the id list, instead of fetching the ids
                present = _HIDDEN_PRESENT
            elif query is not None:  # many matches: find a page of them in sort order
                statement = statement.where(search_condition(dialect, query, many=True))
                if filters and dialect == "sqlite":  # the filter's index finds fewer rows
                    present = _HIDDEN_PRESENT
            elif filters and dialect == "sqlite" and not self._dense(sort, limit, missing, filters):
                present = _HIDDEN_PRESENT  # read the few through the filter's index, and sort
            if not missing:
                statement = statement.where(present)
            if after_key is not None:
                statement = statement.where(after_key)
            statement = statement.order_by(*sort.order_by()).limit(limit)
            if after is None:
                statement = statement.offset(offset)
            cursor = None
            with self._db.read() as session:  # records are built before the session ends
                rows = session.execute(statement).all()
                items = tuple(self._record(row) for row in rows)
                if sort.keyset and len(rows) == limit:
                    last = tuple(getattr(rows[-1][0], c.key) for c in sort.columns)
                    cursor = cursor_for(sort, last, listing=listing)
            exact = True
            if query is None:
                total = self._count(missing, filters)
            elif few is not None:
                total = self._present(few, filters)
            elif dialect == "sqlite":  # more than FEW_MATCHES: at most a lower bound
                total, exact = self._at_least(query, filters)
            else:
                total = self._matches(query, filters)
            where = -1 if after is not None else offset
            return Page(items, total, where, limit, cursor, exact)

        key = ("tracks", query, offset, limit, order, missing, after, filters)
        return self._cache.get_or_load(key, filters.tags, load)

    def _dense(self, sort: TrackOrder, limit: int, missing: bool, filters: _Filters) -> bool:
        """Whether, on SQLite, a page of the tracks passing ``filters`` is found sooner by
        walking the index of ``sort`` (about ``limit * library / n`` rows for ``n`` such
        tracks) than by reading all ``n`` through the filter's index and sorting them.

        SQLite's planner, without statistics, walks the order's index whatever the filter:
        right for a genre holding a tenth of the library, a walk through the whole index for
        an album (0.2 s at 100,000 tracks)."""
        if not sort.indexed:
            return False
        matching = self._count(missing, filters)
        return matching * matching > limit * self.count(include_missing=missing)

    def _present(self, track_ids: Sequence[int], filters: _Filters) -> int:
        """How many of ``track_ids`` are present (not missing) and pass ``filters``."""
        if not track_ids:
            return 0
        statement = select(func.count(Track.id)).where(
            Track.id.in_(track_ids), _HIDDEN_PRESENT, *filters.conditions()
        )
        with self._db.read() as session:
            return int(session.execute(statement).scalar_one())

    def _at_least(self, query: str, filters: _Filters) -> tuple[int, bool]:
        """On SQLite, a search with more than ``FEW_MATCHES`` matches in the whole library: how
        many pass ``filters`` (exact), or ``FEW_MATCHES + 1`` (a lower bound) when more do;
        never a slow count of every match."""
        if not filters:
            return FEW_MATCHES + 1, False
        matching = (
            select(Track.id)
            .where(
                search_condition("sqlite", query, many=True),
                _HIDDEN_PRESENT,
                *filters.conditions(),
            )
            .limit(FEW_MATCHES + 1)
            .subquery()
        )
        with self._db.read() as session:
            found = int(session.execute(select(func.count()).select_from(matching)).scalar_one())
        return (found, True) if found <= FEW_MATCHES else (FEW_MATCHES + 1, False)

    def _matches(self, query: str, filters: _Filters) -> int:
        """How many present tracks match a search and ``filters`` (cached like the pages)."""
        dialect = self._db.dialect

        def load() -> int:
            statement = select(func.count(Track.id)).where(
                search_condition(dialect, query), Track.missing.is_(False), *filters.conditions()
            )
            with self._db.read() as session:
                return int(session.execute(statement).scalar_one())

        tags: tuple[str, ...] = ("tracks", "albums", "artists", "genres")
        if filters.favourites_only:
            tags += ("favourites",)
        return self._cache.get_or_load(("search-count", query, filters), tags, load)

    def _count(self, missing: bool, filters: _Filters) -> int:
        """How many tracks pass ``filters`` (present ones only unless ``missing``)."""
        if not filters:
            return self.count(include_missing=missing)

        present = _HIDDEN_PRESENT if self._db.dialect == "sqlite" else Track.missing.is_(False)

        def load() -> int:
            statement = select(func.count(Track.id)).where(*filters.conditions())
            if not missing:  # on SQLite through the filter's index, not the missing-first ones
                statement = statement.where(present)
            with self._db.read() as session:
                return int(session.execute(statement).scalar_one())

        tags = ("tracks", "favourites") if filters.favourites_only else ("tracks",)
        return self._cache.get_or_load(("track-count", missing, filters), tags, load)

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
