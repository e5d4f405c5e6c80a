"""The page at desktop (1440×900) and phone (390×844) width: screenshots of every main view
saved to ``out/web/`` for a person to look at, nothing wider than the screen, and every control
with a name a screen reader can say."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from tests.web.pages import DESKTOP, PHONE, PageFactory, WebServer, screenshot, wait_until_position

UNNAMED_CONTROLS = """() => [
  ...document.querySelectorAll('button, a[href], input, select, [role=switch]')]
  .filter((e) => e.offsetParent !== null && e.type !== 'file')
  .filter((e) => {
    const name = e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')
      || (e.labels && [...e.labels].map((l) => l.textContent).join('')) || e.textContent;
    return !name || !name.trim();
  })
  .map((e) => e.outerHTML.slice(0, 120))"""

OVERFLOW = """() => [
  document.documentElement, ...document.querySelectorAll('.view-host, .player-bar, .now-playing')]
  .filter((e) => e.offsetParent !== null || e === document.documentElement)
  .filter((e) => e.scrollWidth > e.clientWidth + 1)
  .map((e) => `${e.className || e.tagName}: ${e.scrollWidth} > ${e.clientWidth}`)"""


def check(page: Page, name: str) -> None:
    page.wait_for_timeout(150)  # transitions settle
    screenshot(page, name)
    assert page.evaluate(OVERFLOW) == [], f"{name}: wider than the screen"
    assert page.evaluate(UNNAMED_CONTROLS) == [], f"{name}: controls without a name"


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_screenshots(
    open_page: PageFactory, web_server: WebServer, size: str, viewport: ViewportSize
) -> None:
    page = open_page("albums", viewport=viewport)
    expect(page.locator(".album-card")).to_have_count(3)
    check(page, f"{size}-albums")

    page.goto(f"{web_server.url}/#/tracks")
    expect(page.locator("table.tracks tbody tr")).to_have_count(3)
    row = page.locator("table.tracks tbody tr", has_text="Maple Leaf Rag")
    row.get_by_role("button", name="Play Maple Leaf Rag").click()
    wait_until_position(page, 0.5)
    if size == "desktop":
        page.get_by_role("switch", name="Master preview").click()
        page.wait_for_function("() => document.querySelector('#loudness-meter').dataset.shortTerm")
        page.mouse.move(0, 0)  # no hover highlight in the picture
    check(page, f"{size}-tracks-playing")

    page.goto(f"{web_server.url}/#/now")
    if size == "phone":
        expect(page.locator("#now-playing")).to_be_visible()
    check(page, f"{size}-now-playing")

    page.goto(f"{web_server.url}/#/jobs")
    expect(page.locator(".dropzone")).to_be_visible()
    check(page, f"{size}-master")
