"""The web player's end-to-end fixtures: a real ``tonearm serve`` (uvicorn on loopback, in a
thread) whose library is the three test fixtures, and Debian's Chromium driven by Playwright.

* ``web_server`` (session): the server, its scan and loudness analysis finished.
* ``browser`` (session): Chromium from ``/usr/bin/chromium`` (or ``$TONEARM_CHROMIUM``),
  headless, muted, allowed to autoplay, with every background service that would reach for the
  network switched off (Playwright gives it a fresh, empty profile). Missing Chromium fails the
  tests with what to install; they are never skipped (CI installs it in ``.ci/run``).
* ``open_page`` / ``page`` (function): a new browser context (fresh storage) on the player;
  an uncaught error in the page, or a request anywhere but the tonearm server, fails the test.

Helpers and constants: ``tests/web/pages.py``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.music_paths import MUSIC_DIR
from tests.server.live import running_server, server_settings
from tests.web.pages import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    EXPECT_TIMEOUT_MS,
    FIXTURES,
    PageFactory,
    WebServer,
)
from tonearm.server.web import STATIC_DIR

SCAN_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def web_build() -> Path:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        pytest.fail(
            f"the web player is not built ({index} is missing): run `make web` "
            "(npm ci && npm run build in web/); `make test` does it first"
        )
    return STATIC_DIR


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory, web_build: Path) -> Iterator[WebServer]:
    root = tmp_path_factory.mktemp("web")
    music = root / "music"
    music.mkdir()
    for name in FIXTURES:
        shutil.copy(MUSIC_DIR / name, music / name)
    settings = server_settings(root, library_roots=(music,), workers=2, analysis_workers=1)
    with running_server(settings) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while client.get("/api/scan").json()["state"] != "done":
            assert time.monotonic() < deadline, "the library scan did not finish in time"
            time.sleep(0.1)
        tracks = client.get("/api/tracks", params={"limit": 10}).json()["items"]
        yield WebServer(live, music, {t["file_name"]: t["id"] for t in tracks})


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the web tests drive Debian's chromium "
            "(sudo apt-get install chromium; .ci/run installs it), or set TONEARM_CHROMIUM"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser, web_server: WebServer) -> Iterator[PageFactory]:
    """``open_page(route="", viewport=DESKTOP)``: a fresh context on the player at ``#/route``."""
    contexts = []
    errors: list[str] = []
    elsewhere: list[str] = []
    own = (web_server.url, web_server.live.ws_url, "data:", "blob:")

    def open_(route: str = "", viewport: ViewportSize = DESKTOP) -> Page:
        context = browser.new_context(viewport=viewport, accept_downloads=True)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "request",
            lambda request: None if request.url.startswith(own) else elsewhere.append(request.url),
        )
        page.on(
            "websocket",
            lambda socket: None if socket.url.startswith(own) else elsewhere.append(socket.url),
        )
        page.goto(f"{web_server.url}/{'#/' + route if route else ''}")
        page.wait_for_selector(".player-bar .pb-inner")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"
    assert not elsewhere, f"the page reached beyond tonearm: {elsewhere}"


@pytest.fixture
def page(open_page: PageFactory) -> Page:
    return open_page()
