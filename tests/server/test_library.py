"""The library's REST routes against a real uvicorn: tracks, search, paging, plays, favourites,
albums, artists, genres, playlists, stats, similar tracks, scans, presets, health."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.live import LiveServer, running_server, server_settings, wait_for_scan

MUSIC = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "music"
FILES = ("bach_bwv66_6.flac", "joplin_maple_leaf_rag.flac", "beethoven_opus18no1.mp3")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("library")
    music = folder / "music"
    music.mkdir()
    for name in FILES:
        shutil.copy(MUSIC / name, music / name)
    settings = server_settings(folder, library_roots=(music,), analysis_workers=2)
    with running_server(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30.0) as session:
        status = wait_for_scan(session)
        assert status["state"] == "done", status
        assert (status["added"], status["analysed"], status["errors"]) == (3, 3, 0)
        yield session


def _tracks(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/api/tracks", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _id_of(client: httpx.Client, file_name: str) -> int:
    (track,) = [t for t in _tracks(client)["items"] if t["file_name"] == file_name]
    return int(track["id"])


@pytest.mark.timeout(180)
def test_tracks_list_sorted_with_every_field_and_no_server_path(client: httpx.Client) -> None:
    page = _tracks(client)
    assert (page["total"], page["total_exact"], page["offset"], page["limit"]) == (3, True, 0, 50)
    titles = [t["title"] for t in page["items"]]
    assert titles == sorted(titles)
    assert sorted(t["file_name"] for t in page["items"]) == sorted(FILES)
    for track in page["items"]:
        assert "path" not in track
        assert track["integrated_lufs"] is not None  # analysed after the scan
        assert track["true_peak_dbtp"] < 0.5
        assert track["duration_s"] > 10
    by_duration = _tracks(client, order="duration")["items"]
    durations = [t["duration_s"] for t in by_duration]
    assert durations == sorted(durations)


def test_cursor_paging_walks_every_track_once(client: httpx.Client) -> None:
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = _tracks(client, **params)
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3
    assert len(set(seen)) == 3
    offsets = [t["id"] for o in range(3) for t in _tracks(client, limit=1, offset=o)["items"]]
    assert offsets == seen


def test_search_matches_title_artist_and_album(client: httpx.Client) -> None:
    bach = _tracks(client, q="bach")["items"]
    assert [t["file_name"] for t in bach] == ["bach_bwv66_6.flac"]
    assert _tracks(client, q="no such music anywhere")["items"] == []
    assert _tracks(client, q="  ")["total"] == 3  # blank text lists everything


def test_bad_parameters_are_422_with_a_reason(client: httpx.Client) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"order": "colour"}, {"offset": -1}):
        response = client.get("/api/tracks", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"]
    assert client.get("/api/tracks", params={"cursor": "garbage"}).status_code == 400


def test_track_detail_and_404(client: httpx.Client) -> None:
    track_id = _id_of(client, "joplin_maple_leaf_rag.flac")
    detail = client.get(f"/api/tracks/{track_id}").json()
    assert detail["id"] == track_id
    assert detail["codec"] == "flac"
    missing = client.get("/api/tracks/999999")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no track 999999"


def test_plays_count_atomically_and_show_in_lists_and_stats(client: httpx.Client) -> None:
    track_id = _id_of(client, "bach_bwv66_6.flac")
    before = client.get("/api/stats").json()["plays"]
    counts = [client.post(f"/api/tracks/{track_id}/plays").json()["play_count"] for _ in range(3)]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    listed = {t["id"]: t for t in _tracks(client)["items"]}[track_id]
    assert listed["play_count"] == counts[-1]  # the cached page was dropped by the write
    assert client.get("/api/stats").json()["plays"] == before + 3
    assert client.post("/api/tracks/999999/plays").status_code == 404


def test_favourites_on_and_off(client: httpx.Client) -> None:
    track_id = _id_of(client, "joplin_maple_leaf_rag.flac")
    marked = client.put(f"/api/tracks/{track_id}/favourite", json={"favourite": True})
    assert marked.status_code == 200
    assert marked.json()["favourite"] is True
    assert [t["id"] for t in client.get("/api/favourites").json()] == [track_id]
    client.put(f"/api/tracks/{track_id}/favourite", json={"favourite": False})
    assert client.get("/api/favourites").json() == []
    bad = client.put(f"/api/tracks/{track_id}/favourite", json={"favourite": "maybe"})
    assert bad.status_code == 422


def test_tracks_filtered_by_album_artist_and_genre(client: httpx.Client) -> None:
    everything = _tracks(client)["items"]
    artists = {a["name"]: a["id"] for a in client.get("/api/artists").json()["items"]}
    genres = {g["name"]: g["id"] for g in client.get("/api/genres").json()}
    fields = {"album_id": "album_id", "artist_id": "artist", "genre_id": "genre"}
    for track in everything:
        filters = {
            "album_id": track["album_id"],
            "artist_id": artists[track["artist"]],
            "genre_id": genres[track["genre"]],
        }
        for name, value in filters.items():
            page = _tracks(client, **{name: value})
            expected = [t["id"] for t in everything if t[fields[name]] == track[fields[name]]]
            assert [t["id"] for t in page["items"]] == expected, (name, value)
            assert (page["total"], page["total_exact"]) == (len(expected), True)
        assert [t["id"] for t in _tracks(client, **filters)["items"]] == [track["id"]]
    by_file = {t["file_name"]: t for t in everything}
    bach, joplin = by_file["bach_bwv66_6.flac"], by_file["joplin_maple_leaf_rag.flac"]
    classical = _tracks(client, genre_id=genres["Classical"])
    assert classical["total"] == 2  # Bach and Beethoven
    assert _tracks(client, q="bach", album_id=joplin["album_id"])["total"] == 0
    found = _tracks(client, q="bach", artist_id=artists[bach["artist"]])["items"]
    assert [t["id"] for t in found] == [bach["id"]]


def test_unknown_filter_ids_give_an_empty_page_and_bad_ones_a_422(client: httpx.Client) -> None:
    for params in (
        {"album_id": 999999},
        {"artist_id": -3},
        {"genre_id": 0},
        {"album_id": 2**80},
        {"favourites": True, "genre_id": 999999},
    ):
        page = _tracks(client, **params)
        assert (page["items"], page["total"], page["next_cursor"]) == ([], 0, None), params
    bad: list[dict[str, Any]] = [{"album_id": "one"}, {"artist_id": 1.5}, {"favourites": "maybe"}]
    for params in bad:
        response = client.get("/api/tracks", params=params)
        assert response.status_code == 422, (params, response.text)


def test_favourite_pages_follow_marks_and_their_cursors_stay_in_them(
    client: httpx.Client,
) -> None:
    assert _tracks(client, favourites=True)["items"] == []  # now a cached page
    ids = sorted(t["id"] for t in _tracks(client)["items"])
    try:
        for track_id in ids[:2]:
            marked = client.put(f"/api/tracks/{track_id}/favourite", json={"favourite": True})
            assert marked.status_code == 200
        first = _tracks(client, favourites=True, order="path", limit=1)
        assert (first["total"], len(first["items"])) == (2, 1)
        assert first["next_cursor"] is not None
        second = _tracks(
            client, favourites=True, order="path", limit=1, cursor=first["next_cursor"]
        )
        walked = [t["id"] for t in first["items"] + second["items"]]
        assert sorted(walked) == ids[:2]
        assert all(t["favourite"] for t in first["items"] + second["items"])
        elsewhere = client.get(
            "/api/tracks", params={"order": "path", "limit": 1, "cursor": first["next_cursor"]}
        )
        assert elsewhere.status_code == 400
        assert "another listing" in elsewhere.json()["detail"]
        client.put(f"/api/tracks/{ids[0]}/favourite", json={"favourite": False})
        assert [t["id"] for t in _tracks(client, favourites=True)["items"]] == [ids[1]]
    finally:
        for track_id in ids:
            client.put(f"/api/tracks/{track_id}/favourite", json={"favourite": False})
    assert _tracks(client, favourites=True)["total"] == 0


def test_albums_artists_genres(client: httpx.Client) -> None:
    albums = client.get("/api/albums").json()
    assert albums["total"] >= 1
    album = albums["items"][0]
    assert client.get(f"/api/albums/{album['id']}").json() == album
    assert client.get("/api/albums/999999").status_code == 404
    cover = client.get(f"/api/albums/{album['id']}/cover")
    assert cover.status_code == (200 if album["has_cover"] else 404)
    artists = client.get("/api/artists").json()["items"]
    assert "Johann Sebastian Bach" in [a["name"] for a in artists]
    bach_only = client.get("/api/artists", params={"q": "bach"}).json()["items"]
    assert [a["name"] for a in bach_only] == ["Johann Sebastian Bach"]
    genres = client.get("/api/genres").json()
    assert all(isinstance(g["name"], str) and g["id"] > 0 for g in genres)


def test_playlists_create_change_and_delete(client: httpx.Client) -> None:
    ids = sorted(t["id"] for t in _tracks(client)["items"])
    created = client.post("/api/playlists", json={"name": "Morning", "track_ids": ids[:2]})
    assert created.status_code == 201, created.text
    playlist = created.json()
    assert playlist["track_ids"] == ids[:2]
    pid = playlist["id"]
    renamed = client.patch(f"/api/playlists/{pid}", json={"name": "Evening"}).json()
    assert (renamed["name"], renamed["track_ids"]) == ("Evening", ids[:2])
    reordered = client.patch(f"/api/playlists/{pid}", json={"track_ids": ids[::-1]}).json()
    assert reordered["track_ids"] == ids[::-1]
    appended = client.patch(f"/api/playlists/{pid}", json={"append": [ids[0]]}).json()
    assert appended["track_ids"] == [*ids[::-1], ids[0]]
    assert pid in [p["id"] for p in client.get("/api/playlists").json()]
    unknown = client.patch(f"/api/playlists/{pid}", json={"append": [999999]})
    assert unknown.status_code == 400
    assert client.get(f"/api/playlists/{pid}").json()["track_ids"] == appended["track_ids"]
    assert client.post("/api/playlists", json={"name": ""}).status_code == 422
    assert client.delete(f"/api/playlists/{pid}").status_code == 204
    assert client.get(f"/api/playlists/{pid}").status_code == 404
    assert client.delete(f"/api/playlists/{pid}").status_code == 404


def test_similar_tracks_by_fingerprint(client: httpx.Client) -> None:
    track_id = _id_of(client, "bach_bwv66_6.flac")
    similar = client.get(f"/api/tracks/{track_id}/similar", params={"k": 5}).json()
    assert {s["track"]["id"] for s in similar} == {
        t["id"] for t in _tracks(client)["items"] if t["id"] != track_id
    }
    distances = [s["distance"] for s in similar]
    assert distances == sorted(distances)
    assert all(d > 0 for d in distances)
    assert client.get("/api/tracks/999999/similar").status_code == 404


def test_stats_count_the_library(client: httpx.Client) -> None:
    stats = client.get("/api/stats").json()
    assert (stats["tracks"], stats["analysed"]) == (3, 3)
    assert stats["albums"] >= 1
    assert stats["artists"] >= 2
    total = sum(t["duration_s"] for t in _tracks(client)["items"])
    assert stats["total_duration_s"] == pytest.approx(total)


@pytest.mark.timeout(120)
def test_a_rescan_finds_a_new_file_and_can_be_cancelled(
    client: httpx.Client, live: LiveServer
) -> None:
    (root,) = live.settings.library_roots
    shutil.copy(MUSIC / "bach_bwv66_6.flac", root / "bach_copy.flac")
    try:
        started = client.post("/api/scan")
        assert started.status_code == 202
        assert started.json()["state"] in ("running", "analysing", "done")
        status = wait_for_scan(client)
        assert status["state"] == "done"
        assert status["added"] + status["moved"] == 1
        assert _tracks(client)["total"] == 4
        client.post("/api/scan")
        cancelled = client.delete("/api/scan")
        assert cancelled.status_code == 200
        assert wait_for_scan(client)["state"] in ("cancelled", "done")
    finally:
        (root / "bach_copy.flac").unlink()
        client.post("/api/scan")
        wait_for_scan(client)
    assert _tracks(client)["total"] == 3  # the copy is marked missing, and not listed


def test_presets_version_and_health(client: httpx.Client) -> None:
    presets = {p["name"]: p for p in client.get("/api/presets").json()}
    assert (presets["spotify"]["lufs"], presets["spotify"]["ceiling_dbtp"]) == (-14.0, -1.0)
    assert presets["apple"]["lufs"] == -16.0
    version = client.get("/api/version").json()
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    assert health["version"] == version["version"]
    assert health["uptime_s"] > 0
