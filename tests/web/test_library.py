"""The library in the browser: albums, tracks, search as you type, sorting, favourites,
playlists, and the page's own serving (``/`` and its assets)."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi import FastAPI
from playwright.sync_api import Page, expect

from tests.web.pages import TITLES, WebServer
from tonearm.server.web import install_web


def row_titles(page: Page) -> list[str]:
    return page.locator("table.tracks tbody .track-title").all_inner_texts()


def test_the_library_lists_the_three_fixtures(page: Page) -> None:
    expect(page.locator(".album-card")).to_have_count(3)
    expect(page.locator(".album-grid")).to_contain_text("Chorales (rendered)")
    expect(page.locator(".library-figures")).to_contain_text("3 tracks")

    page.get_by_role("link", name="Tracks").first.click()
    expect(page.locator("table.tracks tbody tr")).to_have_count(3)
    assert sorted(row_titles(page)) == sorted(TITLES.values())

    page.get_by_role("link", name="Artists").first.click()
    expect(page.locator(".artist-grid li")).to_have_count(3)
    page.get_by_role("link", name="Scott Joplin").click()
    expect(page.locator("#view-title")).to_have_text("Scott Joplin")
    expect(page.locator("table.tracks tbody tr")).to_have_count(1)

    page.goto(page.url.split("#")[0] + "#/albums")
    page.locator(".album-link", has_text="String Quartets").click()
    expect(page.locator(".album-hero h1")).to_have_text("String Quartets (rendered)")
    expect(page.locator("table.tracks tbody .track-title")).to_have_text(
        [TITLES["beethoven_opus18no1.mp3"]]
    )


def test_search_as_you_type_and_sorting(page: Page) -> None:
    search = page.get_by_label("Search the library")
    search.press_sequentially("map", delay=40)  # one key at a time, as typed
    expect(page).to_have_url(re.compile(r"#/tracks$"))
    expect(page.locator("table.tracks tbody .track-title")).to_have_text(["Maple Leaf Rag"])
    search.fill("")
    expect(page.locator("table.tracks tbody tr")).to_have_count(3)

    page.get_by_role("button", name="Time").click()  # sort by duration, shortest first
    expect(page.locator("table.tracks tbody .track-title")).to_have_text(
        ["Chorale BWV 66.6", "Maple Leaf Rag", "String Quartet Op. 18 No. 1"]
    )
    expect(page.locator("th.col-time")).to_have_attribute("aria-sort", "ascending")
    page.get_by_label("Sort by").select_option("path")  # bach, beethoven, joplin
    expect(page.locator("table.tracks tbody .track-title")).to_have_text(
        ["Chorale BWV 66.6", "String Quartet Op. 18 No. 1", "Maple Leaf Rag"]
    )
    page.get_by_role("button", name="Title").click()
    expect(page.locator("table.tracks tbody .track-title").first).to_have_text("Chorale BWV 66.6")


def test_favourites_and_playlists(page: Page, web_server: WebServer) -> None:
    page.get_by_role("link", name="Tracks").first.click()
    heart = page.get_by_role("button", name="Add Maple Leaf Rag to favourites")
    heart.click()
    expect(
        page.get_by_role("button", name="Remove Maple Leaf Rag from favourites")
    ).to_have_attribute("aria-pressed", "true")
    page.get_by_role("link", name="Favourites").first.click()
    expect(page.locator("table.tracks tbody .track-title")).to_have_text(["Maple Leaf Rag"])
    page.get_by_role("button", name="Remove Maple Leaf Rag from favourites").click()
    expect(page.locator(".empty")).to_contain_text("No favourites yet")

    # A playlist: create it from a track's "add to playlist", then open and play it.
    page.get_by_role("link", name="Tracks").first.click()
    page.get_by_role("button", name="Add Chorale BWV 66.6 to a playlist").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("New playlist name").fill("Sunday")
    dialog.get_by_role("button", name="Create and add").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("link", name="Sunday").click()
    expect(page.locator("#view-title")).to_have_text("Sunday")
    expect(page.locator("table.tracks tbody .track-title")).to_have_text(["Chorale BWV 66.6"])
    playlists = httpx.get(f"{web_server.url}/api/playlists").json()
    assert [(p["name"], p["track_ids"]) for p in playlists] == [
        ("Sunday", [web_server.track_ids["bach_bwv66_6.flac"]])
    ]
    page.get_by_role("button", name="Remove Chorale BWV 66.6 from this playlist").click()
    expect(page.locator(".empty")).to_contain_text("This playlist is empty")
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete the playlist?"
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#view-title")).to_have_text("Playlists")
    assert httpx.get(f"{web_server.url}/api/playlists").json() == []


def test_the_server_serves_the_page_and_its_assets(web_server: WebServer) -> None:
    home = httpx.get(f"{web_server.url}/")
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert home.headers["cache-control"] == "no-cache"
    assert '<div id="app"' in home.text
    script = home.text.split('src="', 1)[1].split('"', 1)[0]
    asset = httpx.get(f"{web_server.url}{script}")
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert not re.search(r"(src|href)=\"(https?:)?//", home.text)  # nothing from elsewhere
    assert httpx.get(f"{web_server.url}/assets/none.js").status_code == 404


def test_without_a_build_the_page_says_how_to_make_one(tmp_path: Path) -> None:
    app = FastAPI()
    install_web(app, tmp_path / "static")

    async def fetch(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tonearm") as client:
            return await client.get(path)

    def get(path: str) -> httpx.Response:
        # On a thread of its own: Playwright's sync API holds this thread's event loop.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, fetch(path)).result()

    home = get("/")
    assert home.status_code == 503
    assert "make web" in home.text
    assert "npm ci" in home.text
    assert get("/assets/index.js").status_code == 404
