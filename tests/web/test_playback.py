"""Playing in the browser: the position moves, the keyboard drives the player, the next track
follows without a gap, and the A/B switch between the master and the level-matched original is
instant and keeps the position; the loudness meter reads the master's target."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.web.pages import PageFactory, position, wait_until_position

SAMPLE_S = 0.25
JITTER_S = 0.05
"""How far back a reading may be from the last one without being a reset (timer jitter)."""

AUDIO_STATE = """() => [...document.querySelectorAll('.audio-elements audio')].map(a => ({
  side: a.dataset.side, track: Number(a.dataset.trackId), src: a.getAttribute('src'),
  time: a.currentTime, paused: a.paused, tag: a.dataset.tag ?? null}))"""


def play_track(page: Page, title: str) -> None:
    page.get_by_role("link", name="Tracks").first.click()
    page.locator("table.tracks tbody tr", has_text=title).get_by_role(
        "button", name=f"Play {title}"
    ).click()
    expect(page.locator(".pb-title")).to_have_text(title)


def readings(page: Page, seconds: float) -> list[float]:
    values = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        values.append(position(page))
        time.sleep(SAMPLE_S)
    return values


def assert_moving_on(values: list[float], start: float) -> None:
    """Every reading at or after the one before (no jump back to 0), and the whole moved on."""
    previous = start
    for value in values:
        assert value >= previous - JITTER_S, f"the position went back: {values} from {start}"
        previous = max(previous, value)
    assert values[-1] > start + 0.5, f"the position did not move on: {values} from {start}"


def test_playing_moves_the_position_and_the_keyboard_drives_the_player(page: Page) -> None:
    play_track(page, "Chorale BWV 66.6")
    wait_until_position(page, 1.0)
    start = position(page)
    assert_moving_on(readings(page, 1.0), start)
    expect(page.locator(".pb-inner")).to_have_attribute("data-state", "playing")
    expect(page.locator("table.tracks tr.current .track-title")).to_have_text("Chorale BWV 66.6")

    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Space")
    expect(page.locator(".pb-inner")).to_have_attribute("data-state", "paused")
    paused_at = position(page)
    time.sleep(0.5)
    assert abs(position(page) - paused_at) < 0.01
    page.keyboard.press("ArrowRight")  # +5 s
    page.wait_for_function(
        "s => Number(document.querySelector('#seek').value) > s", arg=paused_at + 4
    )
    page.keyboard.press("Space")
    expect(page.locator(".pb-inner")).to_have_attribute("data-state", "playing")

    page.get_by_role("button", name="Next track").click()
    expect(page.locator(".pb-title")).to_have_text("Maple Leaf Rag")
    wait_until_position(page, 0.5)
    assert position(page) < 5
    page.get_by_role("button", name="Previous track").click()  # early in a track: the one before
    expect(page.locator(".pb-title")).to_have_text("Chorale BWV 66.6")
    expect(page.locator(".queue li[aria-current]")).to_contain_text("Chorale BWV 66.6")


def test_the_next_track_follows_without_a_gap(page: Page) -> None:
    play_track(page, "Chorale BWV 66.6")
    wait_until_position(page, 0.5)
    first = int(page.eval_on_selector("table.tracks tr.current", "e => e.dataset.trackId"))
    page.evaluate(
        """() => {
          window.__events = [];
          for (const type of ['playing', 'ended']) {
            document.addEventListener(type, (e) => window.__events.push(
              {type, track: Number(e.target.dataset.trackId), t: performance.now()}), true);
          }
        }"""
    )
    duration = float(page.eval_on_selector("#seek", "e => e.max"))
    page.get_by_label("Seek").fill(str(duration - 1.5))  # a range input: sets it and fires change
    expect(page.locator(".pb-title")).to_have_text("Maple Leaf Rag", timeout=15_000)
    wait_until_position(page, 0.3)
    events = page.evaluate("window.__events")
    ended = [e["t"] for e in events if e["type"] == "ended" and e["track"] == first]
    started = [e["t"] for e in events if e["type"] == "playing" and e["track"] != first]
    assert ended, events
    assert started, events
    gap_ms = started[0] - ended[0]
    assert gap_ms < 150, f"{gap_ms:.0f} ms between the tracks ({events})"


def test_ab_switches_instantly_and_keeps_the_position(open_page: PageFactory) -> None:
    page = open_page("tracks")
    play_track(page, "Maple Leaf Rag")
    wait_until_position(page, 0.5)

    page.get_by_role("switch", name="Master preview").click()
    expect(page.get_by_role("switch", name="Master preview")).to_have_attribute(
        "aria-checked", "true"
    )
    page.wait_for_function(
        """() => { const a = [...document.querySelectorAll('.audio-elements audio')];
                   return a.length === 2 && a.every(e => !e.paused && e.currentTime > 0.3); }"""
    )
    expect(page.locator(".plan-info")).to_contain_text("LUFS")
    expect(page.get_by_role("button", name="Mastered", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    voices = page.evaluate(AUDIO_STATE)
    assert sorted(v["side"] for v in voices) == ["mastered", "original"]
    sources = {v["side"]: v["src"] for v in voices}
    assert "/mastered?target=spotify" in sources["mastered"]
    assert "/stream?match=spotify" in sources["original"]
    page.evaluate(
        "document.querySelectorAll('.audio-elements audio').forEach(a => a.dataset.tag = 'kept')"
    )

    before = position(page)
    page.get_by_role("button", name="Original", exact=True).click()
    expect(page.get_by_role("button", name="Original", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#ab-badge")).to_have_text("A · Original")
    assert_moving_on(readings(page, 1.2), before)

    # The same two streams play on (nothing reloaded), in step.
    voices = page.evaluate(AUDIO_STATE)
    assert [v["tag"] for v in voices] == ["kept", "kept"]
    assert all(not v["paused"] for v in voices)
    assert abs(voices[0]["time"] - voices[1]["time"]) < 0.3, voices

    before = position(page)
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("b")  # back to the master
    expect(page.locator("#ab-badge")).to_have_text("B · Mastered")
    assert_moving_on(readings(page, 1.0), before)

    # The short-term meter (3 s, K-weighted in the browser) reads the Spotify target, -14 LUFS.
    page.wait_for_function(
        "() => document.querySelector('#loudness-meter').dataset.shortTerm !== ''"
    )
    short_term = float(page.eval_on_selector("#loudness-meter", "e => e.dataset.shortTerm"))
    assert -17.5 < short_term < -11.0, short_term


def test_a_custom_loudness_retargets_the_preview_in_place(open_page: PageFactory) -> None:
    """Custom in the target selector reveals a loudness field; -12 LUFS moves the preview to
    the streams for it at the same position, and the meter reads about -12 LUFS."""
    page = open_page("tracks")
    play_track(page, "Maple Leaf Rag")
    wait_until_position(page, 0.5)
    lufs_field = page.get_by_label("Preview loudness (LUFS)")
    expect(lufs_field).to_be_hidden()
    page.get_by_label("Target").select_option("ebu")  # preview off: nothing reloads
    page.get_by_role("switch", name="Master preview").click()
    page.wait_for_function(
        """() => { const a = [...document.querySelectorAll('.audio-elements audio')];
                   return a.length === 2 && a.some(e => e.src.includes('target=ebu'))
                     && a.every(e => !e.paused && e.currentTime > 0.3); }"""
    )

    page.get_by_label("Target").select_option("custom")
    expect(lufs_field).to_be_visible()
    expect(lufs_field).to_have_attribute("min", "-40")
    expect(lufs_field).to_have_attribute("max", "-5")
    expect(lufs_field).to_have_attribute("step", "0.5")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.audio-elements audio')]"
        ".some(e => e.src.includes('target=custom'))"
    )
    page.evaluate(
        "document.querySelectorAll('.audio-elements audio').forEach(a => a.dataset.tag = 'old')"
    )
    before = position(page)
    lufs_field.fill("-12")
    lufs_field.press("Enter")
    page.wait_for_function(
        """() => { const a = [...document.querySelectorAll('.audio-elements audio')];
                   return a.length === 2 && a.every(e => e.src.includes('lufs=-12')
                     && !e.dataset.tag && !e.paused); }"""
    )
    voices = page.evaluate(AUDIO_STATE)
    sources = {v["side"]: v["src"] for v in voices}
    assert "/mastered?target=custom" in sources["mastered"], sources
    assert "lufs=-12" in sources["mastered"], sources
    assert "/stream?match=custom" in sources["original"], sources
    assert "lufs=-12" in sources["original"], sources
    switched = position(page)
    assert switched >= before - JITTER_S, (before, switched)  # the same position, not 0
    expect(page.get_by_role("button", name="Mastered", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator(".plan-info")).to_contain_text("\u2192 \u221212.0 LUFS")  # → −12.0

    # Once the 3 s window holds only the new master, the short-term meter reads about -12 LUFS
    # (the rag's first bars run quieter than the whole: the loudest of 3 s of readings).
    wait_until_position(page, switched + 3.5)
    short_terms = []
    for _ in range(12):
        short_terms.append(
            float(page.eval_on_selector("#loudness-meter", "e => e.dataset.shortTerm"))
        )
        time.sleep(SAMPLE_S)
    print(f"\ncustom -12 LUFS: the meter reads {min(short_terms):.2f}..{max(short_terms):.2f}")
    assert -15.5 < max(short_terms) < -9.0, short_terms
