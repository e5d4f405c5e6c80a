"""Mastering in the browser: a mix dropped on the page (or chosen with the file input) is
uploaded, its progress arrives live over the WebSocket, and the master downloaded through the
page's link measures the target's loudness; the report shows the figures and the plot."""

from __future__ import annotations

import base64
from pathlib import Path

import pyloudnorm
import soundfile as sf
from playwright.sync_api import Page, expect

from tests.web.pages import WebServer

LOUDNESS_TOLERANCE_LU = 0.3
"""The engine verifies within 0.2 LU of the target; a second meter may differ a little more."""
MASTER_TIMEOUT_MS = 60_000

RECORD_CARDS = """() => {
  window.__cards = [];
  const seen = (card) => window.__cards.push({
    state: card.dataset.state,
    progress: card.querySelector('[role=progressbar]')?.getAttribute('aria-valuenow') ?? null});
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node instanceof HTMLElement && node.dataset.state) seen(node);
      }
    }
  }).observe(document.querySelector('.job-list'), {childList: true});
}"""

DROP = """([name, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: 'audio/flac'}));
  return transfer;
}"""


def integrated_lufs(path: Path) -> float:
    data, rate = sf.read(path)
    return float(pyloudnorm.Meter(rate).integrated_loudness(data))


def download_master(page: Page, card_name: str, folder: Path) -> Path:
    card = page.locator(".job-card", has_text=card_name).first  # the newest
    expect(card).to_have_attribute("data-state", "done", timeout=MASTER_TIMEOUT_MS)
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    with page.expect_download() as download_info:
        card.get_by_role("link", name=f"Download the master of {card_name}").click()
    download = download_info.value
    path = folder / download.suggested_filename
    download.save_as(path)
    return path


def test_drop_a_mix_watch_it_master_and_download_it(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    page.get_by_role("link", name="Master").first.click()
    dropzone = page.locator(".dropzone")
    expect(dropzone).to_be_visible()
    page.evaluate(RECORD_CARDS)

    # Drag and drop: Apple's target, -16 LUFS.
    page.get_by_label("Loudness target").select_option("apple")
    mix = web_server.music / "bach_bwv66_6.flac"
    transfer = page.evaluate_handle(DROP, [mix.name, base64.b64encode(mix.read_bytes()).decode()])
    dropzone.dispatch_event("dragenter", {"dataTransfer": transfer})
    expect(dropzone).to_have_class("dropzone over")
    dropzone.dispatch_event("drop", {"dataTransfer": transfer})
    master = download_master(page, mix.name, tmp_path)

    assert master.name == "bach_bwv66_6.mastered.flac"
    assert abs(integrated_lufs(master) - -16.0) < LOUDNESS_TOLERANCE_LU
    cards = page.evaluate("window.__cards")
    states = [c["state"] for c in cards]
    assert "uploading" in states, cards
    assert states[-1] == "done", cards
    # Progress came live, in between: a queued or running card before the finished one.
    assert any(s in ("queued", "running") for s in states), cards
    assert page.locator(".nav-jobs .nav-badge").is_hidden()

    # The report: before and after, and the plot.
    card = page.locator(".job-card", has_text=mix.name).first
    card.get_by_role("button", name="Report").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Integrated loudness")
    shown = dialog.locator(".figures tbody tr").first.locator("td").last
    expect(shown).to_contain_text("LUFS")
    assert abs(float(shown.inner_text().split()[0].replace("−", "-")) - -16.0) < 0.3
    plot = dialog.get_by_role("img")
    expect(plot).to_have_attribute("src", f"/api/jobs/{card.get_attribute('data-job-id')}/plot")
    page.wait_for_function(
        "() => { const i = document.querySelector('.report-dialog .plot img');"
        " return i.complete && i.naturalWidth > 0; }",
        timeout=MASTER_TIMEOUT_MS,
    )
    dialog.get_by_role("button", name="Close the report").click()
    expect(dialog).to_be_hidden()


def test_choose_a_file_with_a_custom_loudness(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    page.get_by_role("link", name="Master").first.click()
    page.get_by_label("Custom loudness (LUFS)").fill("-12")
    mix = web_server.music / "bach_bwv66_6.flac"
    page.get_by_label("Choose a file").set_input_files(mix)
    card = page.locator(".job-card", has_text=mix.name).first
    expect(card.locator(".job-meta")).to_contain_text("−12.0 LUFS")
    master = download_master(page, mix.name, tmp_path)
    assert abs(integrated_lufs(master) - -12.0) < LOUDNESS_TOLERANCE_LU
