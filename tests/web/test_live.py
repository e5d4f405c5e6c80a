"""The page's live connection on a server of its own: it answers the hub's heartbeat, comes
back after the socket drops, and shows a rescan's progress and the new track without a reload."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import Browser, Page, expect

from tests.music_paths import MUSIC_DIR
from tests.server.live import LiveServer, running_server, server_settings
from tests.web.pages import DESKTOP, EXPECT_TIMEOUT_MS

SCAN_TIMEOUT_S = 30.0

RECORD_SCAN_TEXT = """() => {
  window.__scan = [];
  const text = document.querySelector('.scan-text');
  new MutationObserver(() => window.__scan.push(text.textContent))
    .observe(text, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture
def small_server(tmp_path: Path, web_build: Path) -> Iterator[LiveServer]:
    """One track, no analysis, and a hub that pings every 0.3 s and drops a socket that has not
    answered within a second."""
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(MUSIC_DIR / "bach_bwv66_6.flac", music / "bach.flac")
    settings = server_settings(
        tmp_path,
        library_roots=(music,),
        analysis_workers=0,
        ws_ping_interval_s=0.3,
        ws_pong_timeout_s=1.0,
    )
    with running_server(settings) as live:
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while httpx.get(f"{live.url}/api/scan").json()["state"] != "done":
            assert time.monotonic() < deadline, "the scan did not finish in time"
            time.sleep(0.05)
        yield live


@pytest.fixture
def small_page(browser: Browser, small_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{small_server.url}/#/tracks")
    yield page
    context.close()
    assert not errors, errors


def sockets(live: LiveServer) -> int:
    return int(httpx.get(f"{live.url}/api/health").json()["websocket_clients"])


def test_the_page_answers_the_heartbeat_and_reconnects(
    small_page: Page, small_server: LiveServer
) -> None:
    connection = small_page.locator(".connection")
    expect(connection).to_have_attribute("data-status", "open")
    time.sleep(2.0)  # six pings: a page that did not answer them would have been dropped
    expect(connection).to_have_attribute("data-status", "open")
    assert sockets(small_server) == 1

    hub = small_server.state.hub
    asyncio.run_coroutine_threadsafe(hub.close_all(reason="test"), hub._loop).result(5)
    expect(connection).not_to_have_attribute("data-status", "open", timeout=5_000)
    expect(connection).to_have_attribute("data-status", "open", timeout=10_000)
    deadline = time.monotonic() + 5
    while sockets(small_server) != 1:
        assert time.monotonic() < deadline, "the page did not reconnect"
        time.sleep(0.05)


def test_a_rescan_shows_its_progress_and_the_new_track_live(
    small_page: Page, small_server: LiveServer
) -> None:
    expect(small_page.locator("table.tracks tbody tr")).to_have_count(1)
    expect(small_page.locator(".library-figures")).to_contain_text("1 track ")
    small_page.evaluate(RECORD_SCAN_TEXT)

    rate = 44_100
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate)
    music = small_server.settings.library_roots[0]
    sf.write(music / "a_tone.wav", np.stack([tone, tone], axis=1), rate)
    small_page.get_by_role("button", name="Rescan the library folders").click()

    rows = small_page.locator("table.tracks tbody tr")
    expect(rows).to_have_count(2)  # no reload: the library event refreshed the view
    expect(rows.filter(has_text="a_tone")).to_have_count(1)
    expect(small_page.locator(".library-figures")).to_contain_text("2 tracks")
    assert any(text.startswith("Scanning") for text in small_page.evaluate("window.__scan"))
