"""What the web tests share: Chromium's flags, the fixtures' titles, screen sizes, and helpers
that read the page the way a person would (the seek bar, the meter)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page, ViewportSize

from tests.server.live import LiveServer

CHROMIUM = Path(os.environ.get("TONEARM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
)
FIXTURES = ("bach_bwv66_6.flac", "joplin_maple_leaf_rag.flac", "beethoven_opus18no1.mp3")
TITLES = {
    "bach_bwv66_6.flac": "Chorale BWV 66.6",
    "joplin_maple_leaf_rag.flac": "Maple Leaf Rag",
    "beethoven_opus18no1.mp3": "String Quartet Op. 18 No. 1",
}
ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "web"
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
EXPECT_TIMEOUT_MS = 20_000


PageFactory = Callable[..., Page]
"""``open_page(route="", viewport=DESKTOP)`` (the ``open_page`` fixture)."""


@dataclass
class WebServer:
    live: LiveServer
    music: Path
    track_ids: dict[str, int]
    """Track id by fixture file name."""

    @property
    def url(self) -> str:
        return self.live.url


def position(page: Page) -> float:
    """The player's position in seconds, as its seek bar shows it."""
    return float(page.eval_on_selector("#seek", "e => e.value"))


def wait_until_position(page: Page, seconds: float, timeout_ms: int = EXPECT_TIMEOUT_MS) -> None:
    page.wait_for_function(
        "s => Number(document.querySelector('#seek').value) > s", arg=seconds, timeout=timeout_ms
    )


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
