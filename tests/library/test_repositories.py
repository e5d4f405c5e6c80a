"""Repositories on both backends: pages, search, updates, counters, playlists, settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.library.rows import add_tracks
from tonearm.errors import ParameterError
from tonearm.library.manager import LibraryManager
from tonearm.library.paging import FEW_MATCHES
from tonearm.library.records import AlbumRecord, ArtistRecord, GenreRecord, TrackRecord


@pytest.fixture
def library(database_url: str) -> Iterator[LibraryManager]:
    with LibraryManager(database_url) as manager:
        yield manager


def test_pages_cover_every_track_once_in_order(library: LibraryManager) -> None:
    ids = add_tracks(library.db, 230)
    seen: list[TrackRecord] = []
    offset = 0
    while True:
        page = library.tracks.list(offset=offset, limit=50, order="title")
        assert page.total == 230
        seen.extend(page.items)
        if len(page.items) < 50:
            break
        offset += 50
    assert sorted(t.id for t in seen) == sorted(ids)
    titles = [t.title or "" for t in seen]
    assert titles == sorted(titles)
    assert isinstance(seen[0], TrackRecord)
    assert seen[0].artist is not None
    assert seen[0].album is not None
    assert seen[0].genre is not None


def test_search_matches_title_artist_album_and_genre_in_any_case(
    library: LibraryManager,
) -> None:
    add_tracks(library.db, 70)
    preludes = library.tracks.search("PRELUDE", limit=100)
    assert preludes.total == 10  # every 7th of 70
    assert all("Prelude" in (t.title or "") for t in preludes.items)
    assert library.tracks.search("artist 3", limit=100).total == 14
    assert library.tracks.search("ragtime", limit=100).total == 14  # a genre
    assert library.tracks.search("album 2", limit=100).total == 7
    assert library.tracks.search("100%", limit=10).total == 0  # LIKE wildcards are literal
    with pytest.raises(ParameterError):
        library.tracks.search("   ")


def test_get_update_and_the_cache_never_serves_stale_rows(library: LibraryManager) -> None:
    (track_id,) = add_tracks(library.db, 1)
    before = library.tracks.get(track_id)
    assert before is not None
    assert library.tracks.get(track_id) is before  # a cache hit
    after = library.tracks.update(track_id, title="New title", year=1913)
    assert after.title == "New title"
    assert after.year == 1913
    assert library.tracks.get(track_id) == after
    assert library.tracks.search("new title").total == 1
    assert library.tracks.get(987654) is None
    with pytest.raises(ParameterError, match="cannot update path"):
        library.tracks.update(track_id, path="/elsewhere")
    with pytest.raises(ParameterError, match="no track"):
        library.tracks.update(987654, title="x")


def test_twenty_threads_times_a_hundred_plays_lose_nothing(library: LibraryManager) -> None:
    (track_id,) = add_tracks(library.db, 1)
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def play() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(100):
                library.tracks.record_play(track_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=play) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    record = library.tracks.get(track_id)
    assert record is not None
    assert record.play_count == 2000


def test_favourites(library: LibraryManager) -> None:
    first, second = add_tracks(library.db, 2)
    library.tracks.set_favourite(second, True)
    library.tracks.set_favourite(first, True)
    library.tracks.set_favourite(first, True)  # idempotent
    assert set(library.tracks.favourites()) == {first, second}
    library.tracks.set_favourite(second, False)
    assert library.tracks.favourites() == (first,)
    record = library.tracks.get(first)
    assert record is not None
    assert record.favourite


def test_playlists_keep_their_order_through_every_change(library: LibraryManager) -> None:
    a, b, c, d = add_tracks(library.db, 4)
    playlist = library.playlists.create("Mix", [c, a])
    assert playlist.track_ids == (c, a)
    assert library.playlists.append(playlist.id, [d, a]).track_ids == (c, a, d, a)
    assert library.playlists.set_tracks(playlist.id, [b, c]).track_ids == (b, c)
    assert library.playlists.rename(playlist.id, "Evening").name == "Evening"
    assert [p.name for p in library.playlists.list()] == ["Evening"]
    with pytest.raises(ParameterError, match="exists already"):
        library.playlists.create("Evening")
    with pytest.raises(ParameterError, match="no track"):
        library.playlists.append(playlist.id, [999999])
    assert library.playlists.get(playlist.id) == library.playlists.list()[0]
    library.playlists.delete(playlist.id)
    assert library.playlists.get(playlist.id) is None
    assert library.playlists.list() == ()


def test_concurrent_appends_keep_every_entry(library: LibraryManager) -> None:
    ids = add_tracks(library.db, 10)
    playlist = library.playlists.create("Party")
    errors: list[BaseException] = []

    def add(track_id: int) -> None:
        try:
            for _ in range(10):
                library.playlists.append(playlist.id, [track_id])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(t,)) for t in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    final = library.playlists.get(playlist.id)
    assert final is not None
    assert sorted(final.track_ids) == sorted(ids * 10)


def test_albums_artists_genres_and_settings(library: LibraryManager) -> None:
    add_tracks(library.db, 20, albums=4)
    albums = library.albums.list()
    assert albums.total == 4
    assert sum(album.track_count for album in albums.items) == 20
    assert library.albums.get(albums.items[0].id) == albums.items[0]
    assert library.albums.cover(albums.items[0].id) is None
    assert library.artists.list().total == 5
    assert library.artists.list(query="artist 1").total == 1
    assert [g.name for g in library.genres.list()] == sorted(
        ["Ambient", "Baroque", "Classical", "Jazz", "Ragtime"]
    )
    assert library.settings.get("volume", 0.5) == 0.5
    library.settings.set("volume", 0.8)
    assert library.settings.get("volume") == 0.8
    library.settings.set("volume", {"db": -3})
    assert library.settings.get("volume") == {"db": -3}


def test_bad_pages_are_refused(library: LibraryManager) -> None:
    with pytest.raises(ParameterError):
        library.tracks.list(limit=0)
    with pytest.raises(ParameterError):
        library.tracks.list(offset=-1)
    with pytest.raises(ParameterError, match="order must be"):
        library.tracks.list(order="random")


@pytest.mark.parametrize("order", ["title", "added", "path", "duration", "id"])
def test_cursors_walk_every_track_once_in_order(library: LibraryManager, order: str) -> None:
    ids = add_tracks(library.db, 137)
    reference = library.tracks.list(limit=500, order=order).items
    walked: list[TrackRecord] = []
    page = library.tracks.list(limit=20, order=order)
    while True:
        walked.extend(page.items)
        if page.next_cursor is None:
            break
        page = library.tracks.list(limit=20, order=order, after=page.next_cursor)
        assert page.offset == -1
    assert [t.id for t in walked] == [t.id for t in reference]
    assert sorted(t.id for t in walked) == sorted(ids)


def test_search_pages_by_cursor_and_short_or_odd_queries(library: LibraryManager) -> None:
    add_tracks(library.db, 70)
    first = library.tracks.search("prelude", limit=4)
    assert first.total == 10
    walked = list(first.items)
    cursor = first.next_cursor
    while cursor is not None:
        page = library.tracks.search("prelude", limit=4, after=cursor)
        walked.extend(page.items)
        cursor = page.next_cursor
    assert len({t.id for t in walked}) == 10
    assert library.tracks.search("lu", limit=100).total == 10  # under 3 characters: no index
    assert library.tracks.search("0_", limit=10).total == 0  # "_" is literal, not a wildcard
    library.tracks.update(walked[0].id, title="Für Elise (100% acoustic)")
    assert library.tracks.search("für elise", limit=5).total == 1
    assert library.tracks.search("100% ACOUSTIC", limit=5).total == 1


def test_cursor_mistakes_are_clear(library: LibraryManager) -> None:
    add_tracks(library.db, 5)
    cursor = library.tracks.list(limit=2).next_cursor
    assert cursor is not None
    with pytest.raises(ParameterError, match="not both"):
        library.tracks.list(offset=2, after=cursor)
    with pytest.raises(ParameterError, match="malformed page cursor"):
        library.tracks.list(after="not-a-cursor!")
    with pytest.raises(ParameterError, match="no cursors"):
        library.tracks.list(order="loudness", after=cursor)
    assert library.tracks.list(order="loudness", limit=2).next_cursor is None


def test_a_search_matching_thousands_pages_fast_with_a_lower_bound_total(
    library: LibraryManager,
) -> None:
    add_tracks(library.db, FEW_MATCHES + 100)
    page = library.tracks.search("track", limit=50)
    assert [t.title for t in page.items] == sorted(t.title or "" for t in page.items)
    assert len(page.items) == 50
    if library.db.dialect == "sqlite":
        assert (page.total, page.total_exact) == (FEW_MATCHES + 1, False)  # "1000+"
    else:
        assert (page.total, page.total_exact) == (FEW_MATCHES + 100, True)
    assert page.next_cursor is not None
    following = library.tracks.search("track", limit=50, after=page.next_cursor)
    assert following.items[0].title > page.items[-1].title  # type: ignore[operator]


def test_album_cursors_walk_every_album_once(library: LibraryManager) -> None:
    add_tracks(library.db, 60, albums=23)
    seen: list[AlbumRecord] = []
    page = library.albums.list(limit=5)
    while True:
        seen.extend(page.items)
        if page.next_cursor is None:
            break
        page = library.albums.list(limit=5, after=page.next_cursor)
    assert [a.id for a in seen] == [a.id for a in library.albums.list(limit=100).items]
    assert len(seen) == 23


def test_pages_show_new_plays_and_favourites_at_once(library: LibraryManager) -> None:
    (track_id,) = add_tracks(library.db, 1)
    assert library.tracks.list().items[0].play_count == 0  # now cached
    library.tracks.record_play(track_id)
    library.tracks.set_favourite(track_id, True)
    (fresh,) = library.tracks.list().items
    assert (fresh.play_count, fresh.favourite) == (1, True)
    (found,) = library.tracks.search("track").items
    assert (found.play_count, found.favourite) == (1, True)


def test_renaming_artists_genres_and_albums_follows_into_search(library: LibraryManager) -> None:
    add_tracks(library.db, 20, albums=4)
    artist = library.artists.list(query="artist 2").items[0]
    assert library.artists.get(artist.id) == artist
    library.artists.rename(artist.id, "Scott Joplin")
    assert library.artists.get(artist.id) == ArtistRecord(artist.id, "Scott Joplin")
    albums_by = {a.id for a in library.albums.list(limit=100).items if a.artist == "Scott Joplin"}
    expected = {
        t.id
        for t in library.tracks.list(limit=100).items
        if t.artist == "Scott Joplin" or t.album_id in albums_by
    }
    assert len(expected) >= 4  # its own tracks, and those on its albums
    assert {t.id for t in library.tracks.search("joplin", limit=100).items} == expected
    jazz = next(g for g in library.genres.list() if g.name == "Jazz")
    library.genres.rename(jazz.id, "Stride")
    assert library.genres.get(jazz.id) == GenreRecord(jazz.id, "Stride")
    assert library.tracks.search("stride").total == 4
    assert library.tracks.search("jazz").total == 0
    album = library.albums.list().items[0]
    renamed = library.albums.update(album.id, title="Elite Syncopations", year=1902)
    assert (renamed.title, renamed.year, renamed.track_count) == ("Elite Syncopations", 1902, 5)
    assert library.tracks.search("syncopations").total == 5
    with pytest.raises(ParameterError, match="exists already"):
        library.artists.rename(artist.id, "Artist 0")
    with pytest.raises(ParameterError, match="no genre"):
        library.genres.rename(999, "X")
    with pytest.raises(ParameterError, match="no album"):
        library.albums.update(999, title="X")
