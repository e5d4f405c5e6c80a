"""Artists, genres and albums: list, search, paginate, get, and rename.

Renaming changes what tracks are found by, so each rename also rewrites the ``search_text`` of
the tracks it touches, in the same transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Select, func, or_, select

from tonearm.errors import ParameterError
from tonearm.library.models import (
    Album,
    Artist,
    Genre,
    Track,
)
from tonearm.library.paging import ALBUM_ORDER, after_cursor, cursor_for, like_contains
from tonearm.library.records import (
    AlbumRecord,
    ArtistRecord,
    GenreRecord,
    Page,
)
from tonearm.library.repositories import _check_page, _Repository, refresh_search_text

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["AlbumRepository", "ArtistRepository", "GenreRepository"]

RENAME_TAGS = ("tracks", "track-pages", "albums", "artists", "genres")


def _rename(session: Session, model: type[Artist | Genre], row_id: int, name: str) -> None:
    if not name.strip():
        raise ParameterError(f"a {model.__tablename__[:-1]} needs a name")
    row = cast("Artist | Genre | None", session.get(model, row_id))
    if row is None:
        raise ParameterError(f"no {model.__tablename__[:-1]} {row_id}")
    clash = session.scalar(select(model.id).where(model.name == name, model.id != row_id))
    if clash is not None:
        raise ParameterError(f"a {model.__tablename__[:-1]} named '{name}' exists already")
    row.name = name
    session.flush()


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
                match = func.lower(Artist.name).like(like_contains(query), escape="\\")
                statement, counting = statement.where(match), counting.where(match)
            with self._db.read() as session:
                total = int(session.execute(counting).scalar_one())
                rows = session.scalars(
                    statement.order_by(Artist.name, Artist.id).offset(offset).limit(limit)
                )
                items = tuple(ArtistRecord(a.id, a.name) for a in rows)
            return Page(items, total, offset, limit)

        return self._cache.get_or_load(("artists", query, offset, limit), ("artists",), load)

    def get(self, artist_id: int) -> ArtistRecord | None:
        def load() -> ArtistRecord | None:
            with self._db.read() as session:
                artist = session.get(Artist, artist_id)
                return None if artist is None else ArtistRecord(artist.id, artist.name)

        return self._cache.get_or_load(("artist", artist_id), ("artists",), load)

    def rename(self, artist_id: int, name: str) -> ArtistRecord:
        """Rename an artist (its tracks and albums follow, search included)."""
        with self._db.write() as session:
            _rename(session, Artist, artist_id, name)
            albums = select(Album.id).where(Album.artist_id == artist_id)
            refresh_search_text(
                session, or_(Track.artist_id == artist_id, Track.album_id.in_(albums))
            )
        self._cache.invalidate(*RENAME_TAGS)
        return ArtistRecord(artist_id, name)


class GenreRepository(_Repository):
    def list(self) -> tuple[GenreRecord, ...]:
        """Every genre, by name."""

        def load() -> tuple[GenreRecord, ...]:
            with self._db.read() as session:
                rows = session.scalars(select(Genre).order_by(Genre.name))
                return tuple(GenreRecord(g.id, g.name) for g in rows)

        return self._cache.get_or_load(("genres",), ("genres",), load)

    def get(self, genre_id: int) -> GenreRecord | None:
        return next((g for g in self.list() if g.id == genre_id), None)

    def rename(self, genre_id: int, name: str) -> GenreRecord:
        """Rename a genre (its tracks are found by the new name)."""
        with self._db.write() as session:
            _rename(session, Genre, genre_id, name)
            refresh_search_text(session, Track.genre_id == genre_id)
        self._cache.invalidate(*RENAME_TAGS)
        return GenreRecord(genre_id, name)


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
                match = func.lower(Album.title).like(like_contains(query), escape="\\")
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

    def update(
        self, album_id: int, *, title: str | None = None, year: int | None = None
    ) -> AlbumRecord:
        """Change an album's title or year (its tracks are found by the new title)."""
        with self._db.write() as session:
            album = session.get(Album, album_id)
            if album is None:
                raise ParameterError(f"no album {album_id}")
            if title is not None:
                if not title.strip():
                    raise ParameterError("an album needs a title")
                album.title = title
            if year is not None:
                album.year = year
            session.flush()
            refresh_search_text(session, Track.album_id == album_id)
        self._cache.invalidate(*RENAME_TAGS)
        record = self.get(album_id)
        assert record is not None  # written just now
        return record

    def cover(self, album_id: int) -> tuple[bytes, str] | None:
        """The album's cover image and its MIME type, or None (not cached: large)."""
        with self._db.read() as session:
            row = session.execute(
                select(Album.cover, Album.cover_mime).where(Album.id == album_id)
            ).first()
        if row is None or row[0] is None:
            return None
        return bytes(row[0]), str(row[1] or "application/octet-stream")
