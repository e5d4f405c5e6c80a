"""Filtered track lists on both backends: album, artist, genre and favourites, alone and
together, in every order, by offset and by cursor, with searches, totals and the cache."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, update

from tests.library.rows import add_tracks
from tonearm.errors import ParameterError
from tonearm.library.manager import LibraryManager
from tonearm.library.models import Track
from tonearm.library.paging import TRACK_ORDERS
from tonearm.library.records import TrackRecord

KEYSET_ORDERS = [name for name, order in TRACK_ORDERS.items() if order.keyset]


@pytest.fixture
def library(database_url: str) -> Iterator[LibraryManager]:
    with LibraryManager(database_url) as manager:
        yield manager


@dataclass(frozen=True)
class Ids:
    """The catalogue of :func:`fill`: names to ids."""

    albums: dict[str, int]
    artists: dict[str, int]
    genres: dict[str, int]


def fill(library: LibraryManager, count: int = 140) -> Ids:
    """``count`` tracks over 7 albums, 5 artists and 5 genres (every album holds every artist's
    tracks, so album and artist filters cross); every 3rd a favourite, every 11th missing."""
    ids = add_tracks(library.db, count, albums=7)
    for track_id in ids[::3]:
        library.tracks.set_favourite(track_id, True)
    with library.db.write() as session:
        session.execute(update(Track).where(Track.id.in_(ids[::11])).values(missing=True))
    library.cache.clear()
    return Ids(
        albums={a.title: a.id for a in library.albums.list(limit=100).items},
        artists={a.name: a.id for a in library.artists.list(limit=100).items},
        genres={g.name: g.id for g in library.genres.list()},
    )


def _expected(everything: tuple[TrackRecord, ...], ids: Ids, **filters: Any) -> list[TrackRecord]:
    """The tracks of an unfiltered listing that pass ``filters`` (in its order)."""
    albums = {v: k for k, v in ids.albums.items()}
    artists = {v: k for k, v in ids.artists.items()}
    genres = {v: k for k, v in ids.genres.items()}
    kept = []
    for track in everything:
        if "album_id" in filters and track.album != albums.get(filters["album_id"]):
            continue
        if "artist_id" in filters and track.artist != artists.get(filters["artist_id"]):
            continue
        if "genre_id" in filters and track.genre != genres.get(filters["genre_id"]):
            continue
        if filters.get("favourites_only") and not track.favourite:
            continue
        kept.append(track)
    return kept


def _combinations(ids: Ids) -> list[dict[str, Any]]:
    album, other_album = ids.albums["Album 2"], ids.albums["Album 5"]
    artist, genre = ids.artists["Artist 3"], ids.genres["Jazz"]
    return [
        {"album_id": album},
        {"artist_id": artist},
        {"genre_id": genre},
        {"favourites_only": True},
        {"album_id": album, "artist_id": artist},
        {"artist_id": artist, "favourites_only": True},
        {"album_id": other_album, "genre_id": genre, "favourites_only": True},
        {"artist_id": artist, "genre_id": ids.genres["Baroque"]},  # never together: empty
    ]


def _walk(library: LibraryManager, *, limit: int, **kwargs: Any) -> list[TrackRecord]:
    """Every page of a listing by cursor; checks each page's total against the first's."""
    page = library.tracks.list(limit=limit, **kwargs)
    walked = list(page.items)
    while page.next_cursor is not None:
        following = library.tracks.list(limit=limit, after=page.next_cursor, **kwargs)
        assert (following.total, following.offset) == (page.total, -1)
        walked.extend(following.items)
        page = following
    return walked


def test_every_filter_and_combination_in_every_order(library: LibraryManager) -> None:
    ids = fill(library)
    for order in TRACK_ORDERS:
        everything = library.tracks.list(limit=500, order=order).items
        assert len(everything) == 140 - 13  # the missing ones are left out
        for filters in _combinations(ids):
            expected = _expected(everything, ids, **filters)
            page = library.tracks.list(limit=500, order=order, **filters)
            assert [t.id for t in page.items] == [t.id for t in expected], (order, filters)
            assert (page.total, page.total_exact) == (len(expected), True)
    sizes = [len(_expected(everything, ids, **f)) for f in _combinations(ids)]
    assert sizes[:4] == [18, 26, 26, 42]  # album, artist, genre, favourites
    assert 0 < sizes[4] < sizes[0]
    assert 0 < sizes[6] < sizes[0]
    assert sizes[7] == 0


@pytest.mark.parametrize("order", KEYSET_ORDERS)
def test_cursor_walks_equal_offset_pages_under_every_filter(
    library: LibraryManager, order: str
) -> None:
    ids = fill(library)
    for filters in _combinations(ids):
        walked = _walk(library, limit=4, order=order, **filters)
        by_offset: list[TrackRecord] = []
        for offset in range(0, 200, 4):
            page = library.tracks.list(limit=4, offset=offset, order=order, **filters)
            by_offset.extend(page.items)
            if len(page.items) < 4:
                break
        assert [t.id for t in walked] == [t.id for t in by_offset], filters
        assert len({t.id for t in walked}) == len(walked)


def test_searches_take_the_same_filters(library: LibraryManager) -> None:
    ids = fill(library)
    artist = ids.artists["Artist 3"]
    everything = library.tracks.search("prelude", limit=500).items
    for filters in _combinations(ids):
        expected = _expected(everything, ids, **filters)
        page = library.tracks.search("prelude", limit=500, **filters)
        assert [t.id for t in page.items] == [t.id for t in expected], filters
        assert (page.total, page.total_exact) == (len(expected), True)
    walked: list[TrackRecord] = []
    page = library.tracks.search("track", limit=5, artist_id=artist, order="path")
    while True:
        walked.extend(page.items)
        if page.next_cursor is None:
            break
        page = library.tracks.search(
            "TRACK ", limit=5, artist_id=artist, order="path", after=page.next_cursor
        )  # the same search, in other words: its cursor goes on
    assert [t.id for t in walked] == [
        t.id for t in library.tracks.list(limit=500, artist_id=artist, order="path").items
    ]


def test_many_matches_are_counted_exactly_under_a_narrow_filter(
    library: LibraryManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = fill(library)
    few = 20  # a search with more matches than this pages by the sort order (see paging)
    monkeypatch.setattr("tonearm.library.paging.FEW_MATCHES", few)
    monkeypatch.setattr("tonearm.library.repositories.FEW_MATCHES", few)
    unfiltered = library.tracks.search("track", limit=10)
    if library.db.dialect == "sqlite":
        assert (unfiltered.total, unfiltered.total_exact) == (few + 1, False)
    else:
        assert (unfiltered.total, unfiltered.total_exact) == (127, True)
    wide = library.tracks.search("track", limit=10, favourites_only=True)  # 42 of them
    if library.db.dialect == "sqlite":
        assert (wide.total, wide.total_exact) == (few + 1, False)  # "20+"
    else:
        assert (wide.total, wide.total_exact) == (42, True)
    narrow: dict[str, Any] = {"album_id": ids.albums["Album 2"], "favourites_only": True}
    expected = _expected(library.tracks.list(limit=500).items, ids, **narrow)
    page = library.tracks.search("track", limit=10, **narrow)
    assert 0 < len(expected) <= few
    assert (page.total, page.total_exact) == (len(expected), True)
    assert [t.id for t in page.items] == [t.id for t in expected][:10]


def test_favourites_only_pages_follow_every_mark_at_once(library: LibraryManager) -> None:
    ids = add_tracks(library.db, 30)
    first = library.tracks.list(favourites_only=True)
    assert (first.items, first.total) == ((), 0)
    assert library.tracks.list(favourites_only=True) is first  # cached
    library.tracks.set_favourite(ids[7], True)
    library.tracks.set_favourite(ids[3], True)
    marked = library.tracks.list(favourites_only=True, order="id")
    assert ([t.id for t in marked.items], marked.total) == ([ids[3], ids[7]], 2)
    found = library.tracks.search("track", favourites_only=True, order="id")
    assert [t.id for t in found.items] == [ids[3], ids[7]]
    library.tracks.set_favourite(ids[3], False)
    after = library.tracks.list(favourites_only=True, order="id")
    assert ([t.id for t in after.items], after.total) == ([ids[7]], 1)
    assert [t.id for t in library.tracks.search("track", favourites_only=True).items] == [ids[7]]
    # the pages are tagged "favourites" as well as with the page tags
    cached = library.tracks.list(favourites_only=True, order="id")
    assert library.tracks.list(favourites_only=True, order="id") is cached
    assert library.cache.invalidate("favourites") >= 1
    assert library.tracks.list(favourites_only=True, order="id") is not cached


def test_a_cursor_continues_only_its_own_listing(library: LibraryManager) -> None:
    ids = fill(library)
    album, artist = ids.albums["Album 2"], ids.artists["Artist 3"]
    cursor = library.tracks.list(limit=3, album_id=album).next_cursor
    assert cursor is not None
    assert library.tracks.list(limit=3, album_id=album, after=cursor).items
    others: list[dict[str, Any]] = [
        {},
        {"album_id": ids.albums["Album 5"]},
        {"album_id": album, "artist_id": artist},
        {"album_id": album, "favourites_only": True},
        {"album_id": album, "include_missing": True},
        {"album_id": album, "order": "path"},
        {"artist_id": album},
    ]
    for other in others:
        with pytest.raises(ParameterError, match="another listing"):
            library.tracks.list(limit=3, after=cursor, **other)
    with pytest.raises(ParameterError, match="another listing"):
        library.tracks.search("track", limit=3, album_id=album, after=cursor)
    plain = library.tracks.list(limit=3).next_cursor
    assert plain is not None
    with pytest.raises(ParameterError, match="another listing"):
        library.tracks.list(limit=3, album_id=album, after=plain)
    searched = library.tracks.search("track", limit=3).next_cursor
    assert searched is not None
    with pytest.raises(ParameterError, match="another listing"):
        library.tracks.search("rag", limit=3, after=searched)
    with pytest.raises(ParameterError, match="another listing"):
        library.tracks.list(limit=3, after=searched)


def test_unknown_ids_give_an_empty_page(library: LibraryManager) -> None:
    fill(library, 20)
    unknown: list[dict[str, Any]] = [
        {"album_id": 987654},
        {"artist_id": -1},
        {"genre_id": 0},
        {"album_id": 2**70},  # no database holds it: no error either
        {"genre_id": -(2**70), "favourites_only": True},
    ]
    for filters in unknown:
        page = library.tracks.list(**filters)
        assert (page.items, page.total, page.total_exact, page.next_cursor) == ((), 0, True, None)
        found = library.tracks.search("track", **filters)
        assert (found.items, found.total) == ((), 0)


def test_missing_tracks_stay_out_of_filtered_pages_unless_asked_for(
    library: LibraryManager,
) -> None:
    ids = fill(library)
    album = ids.albums["Album 3"]
    everything = library.tracks.list(limit=500, include_missing=True).items
    on_album = [t for t in everything if t.album == "Album 3"]
    assert any(t.missing for t in on_album)
    present = library.tracks.list(limit=500, album_id=album)
    assert [t.id for t in present.items] == [t.id for t in on_album if not t.missing]
    assert present.total == len(present.items)
    every = _walk(library, limit=4, album_id=album, include_missing=True)
    assert [t.id for t in every] == [t.id for t in on_album]
    favourites = library.tracks.list(limit=500, favourites_only=True, include_missing=True)
    assert favourites.total == sum(1 for t in everything if t.favourite)


# --- query plans (SQLite: no statistics, so the planner is easily misled) ---

FULL_WALK = re.compile(
    r"^(SCAN tracks\b|SEARCH tracks USING (COVERING )?INDEX ix_tracks_missing_\w+ \(missing=\?\)$)"
)
"""A plan step reading every (present) track: a scan, or a walk of a missing-first index."""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_album_artist_and_few_favourites_pages_are_read_through_their_index(
    library: LibraryManager,
) -> None:
    add_tracks(library.db, 3000, albums=300, artists=150)  # 10 and 20 tracks each
    ids = library.tracks.list(limit=3, order="id").items
    for track in ids:
        library.tracks.set_favourite(track.id, True)
    album = library.albums.list().items[0].id
    artist = library.artists.list().items[0].id
    library.cache.clear()
    library.tracks.count()  # the library's size is cached after the first page anyway
    steps: list[str] = []

    @event.listens_for(library.db.engine, "before_cursor_execute")
    def explain(connection: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("SELECT"):
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            steps.extend(str(row[-1]) for row in plan)

    for filters in ({"album_id": album}, {"artist_id": artist}, {"favourites_only": True}):
        for order in TRACK_ORDERS:
            steps.clear()
            page = library.tracks.list(limit=5, order=order, **filters)
            if page.next_cursor is not None:
                library.tracks.list(limit=5, order=order, after=page.next_cursor, **filters)
            library.tracks.search("rag", limit=5, order=order, **filters)  # 2,571 matches
            library.tracks.search("prelude", limit=5, order=order, **filters)  # 429
            assert steps
            walks = [step for step in steps if FULL_WALK.match(step)]
            assert walks == [], (filters, order, steps)
    event.remove(library.db.engine, "before_cursor_execute", explain)
