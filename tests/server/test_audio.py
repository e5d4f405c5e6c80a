"""Audio routes on a real server: the original with ranges, the mastered and A/B WAV streams,
the library-folder guard, the plan cache."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.music_paths import MUSIC_DIR
from tests.server.live import LiveServer, running_server, server_settings
from tonearm.audio_io.wav_stream import WavLayout, wav_bytes
from tonearm.mastering.analysis import measure_file
from tonearm.mastering.plan import MasteringPlan
from tonearm.mastering.stream import render_mastered
from tonearm.mastering.targets import PRESETS

SCAN_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 60.0
SEEK_TOLERANCE_LSB = 4
"""A 16-bit range that starts mid-track may differ from the whole file by the pre-roll's
float-rounding differences (~1e-6, see tests/mastering/test_stream.py) turned into a dither
step: a few LSB at most, in a few samples."""


@dataclass
class Library:
    live: LiveServer
    client: httpx.Client
    music: Path
    ids: dict[str, int]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("audio")
    music, outside = root / "music", root / "outside"
    music.mkdir()
    outside.mkdir()
    for name in ("bach_bwv66_6.flac", "joplin_maple_leaf_rag.flac", "beethoven_opus18no1.mp3"):
        shutil.copy(MUSIC_DIR / name, music / name)
    shutil.copy(MUSIC_DIR / "bach_bwv66_6.flac", music / "gone.flac")
    shutil.copy(MUSIC_DIR / "bach_bwv66_6.flac", outside / "secret.flac")
    (music / "escape.flac").symlink_to(outside / "secret.flac")  # inside the root, file outside
    settings = server_settings(root, library_roots=(music,), analysis_workers=0)
    with (
        running_server(settings) as live,
        httpx.Client(base_url=live.url, timeout=HTTP_TIMEOUT_S) as client,
    ):
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while client.get("/api/scan").json()["state"] != "done":
            assert time.monotonic() < deadline, "the first scan did not finish in time"
            time.sleep(0.05)
        items = client.get("/api/tracks", params={"limit": 50}).json()["items"]
        ids = {item["file_name"]: item["id"] for item in items}
        assert len(ids) == 5
        yield Library(live, client, music, ids)


def _frames_of(path: Path) -> int:
    return sf.info(path).frames if path.suffix == ".flac" else 0


# --- the original file ----------------------------------------------------------------------


def test_original_whole_and_ranges(library: Library) -> None:
    client, track = library.client, library.ids["bach_bwv66_6.flac"]
    data = (library.music / "bach_bwv66_6.flac").read_bytes()
    size = len(data)
    url = f"/api/tracks/{track}/stream"
    whole = client.get(url)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "audio/flac"
    assert whole.headers["accept-ranges"] == "bytes"
    for header, start, stop in [
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=0-0", 0, 1),
        (f"bytes={size - 10}-", size - 10, size),  # open-ended
        ("bytes=-500", size - 500, size),  # suffix
        (f"bytes=2000000-{size + 99}", 2_000_000, size),  # past the end: clipped
    ]:
        part = client.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == data[start:stop], header
        assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
    beyond = client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    mp3 = client.get(
        f"/api/tracks/{library.ids['beethoven_opus18no1.mp3']}/stream",
        headers={"Range": "bytes=0-3"},
    )
    assert mp3.status_code == 206
    assert mp3.headers["content-type"] == "audio/mpeg"
    assert mp3.content == (library.music / "beethoven_opus18no1.mp3").read_bytes()[:4]


def test_files_outside_the_library_are_not_served(library: Library) -> None:
    client, escape = library.client, library.ids["escape.flac"]
    for path in ("/stream", "/stream?match=spotify", "/mastered"):
        answer = client.get(f"/api/tracks/{escape}{path}")
        assert answer.status_code == 403, path
        assert "outside the library folders" in answer.json()["detail"]
    assert client.post(f"/api/tracks/{escape}/plan").status_code == 403
    assert client.get("/api/tracks/999999/stream").status_code == 404
    assert client.get("/api/tracks/999999/mastered").status_code == 404


def test_a_file_that_is_gone(library: Library) -> None:
    (library.music / "gone.flac").unlink()
    for path in ("/stream", "/mastered"):
        answer = library.client.get(f"/api/tracks/{library.ids['gone.flac']}{path}")
        assert answer.status_code == 404
        assert "'gone.flac' is gone" in answer.json()["detail"]
        assert str(library.music) not in answer.text  # no server paths in answers


def test_bad_target_and_strength(library: Library) -> None:
    url = f"/api/tracks/{library.ids['bach_bwv66_6.flac']}/mastered"
    unknown = library.client.get(url, params={"target": "loud"})
    assert unknown.status_code == 400
    assert all(name in unknown.json()["detail"] for name in PRESETS)
    assert library.client.get(url, params={"strength": 1.5}).status_code == 422
    assert library.client.get(url, params={"strength": -0.1}).status_code == 422
    match = library.client.get(url.replace("mastered", "stream"), params={"match": "loud"})
    assert match.status_code == 400


# --- the mastered stream --------------------------------------------------------------------


def _samples(wav_part: bytes) -> np.ndarray:
    return np.frombuffer(wav_part, dtype="<i2").astype(np.int32)


def _ttfb(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, float]:
    """Seconds to the first byte and to the first audio bytes (past the WAV header)."""
    began = time.perf_counter()
    first = audio = 0.0
    received = 0
    with client.stream("GET", url, headers=headers) as answer:
        assert answer.status_code in (200, 206)
        for chunk in answer.iter_raw():
            if not first:
                first = time.perf_counter() - began
            received += len(chunk)
            if received > 44 + 4:
                audio = time.perf_counter() - began
                break
    return first, audio


@pytest.mark.timeout(120)
def test_mastered_stream(library: Library, tmp_path: Path) -> None:
    client, track = library.client, library.ids["bach_bwv66_6.flac"]
    url = f"/api/tracks/{track}/mastered"
    began = time.perf_counter()
    whole = client.get(url, params={"target": "spotify", "strength": 1})
    print(f"\nmastered bach, plan not cached: whole file in {time.perf_counter() - began:.2f} s")
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["x-tonearm-target"] == "spotify"
    gain_db = float(whole.headers["x-tonearm-gain-db"])
    assert 0.0 < gain_db < 12.0
    frames = _frames_of(library.music / "bach_bwv66_6.flac")
    body = whole.content
    assert len(body) == int(whole.headers["content-length"]) == 44 + frames * 4
    decoded, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert (decoded.shape, rate) == ((frames, 2), 44100)
    assert sf.info(io.BytesIO(body)).subtype == "PCM_16"
    saved = tmp_path / "mastered.wav"
    saved.write_bytes(body)
    measured = measure_file(saved)
    print(
        f"mastered bach: {measured.integrated_lufs:.2f} LUFS (target -14), "
        f"{measured.true_peak_dbtp:.2f} dBTP (ceiling -1)"
    )
    assert abs(measured.integrated_lufs - -14.0) < 0.5
    assert measured.true_peak_dbtp <= -1.0 + 0.05

    # ranges: the header synthesised, the audio rendered from the frame the range starts in
    for start, stop in [(0, 100), (10, 44), (0, 44 + 40_000)]:
        part = client.get(url, headers={"Range": f"bytes={start}-{stop - 1}"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(body)}"
        assert part.content == body[start:stop]  # from frame 0 the render is exact
    middle = 44 + 4 * 700_001 + 1  # mid-sample: not aligned to a frame or a sample
    for header, start, stop in [
        (f"bytes={middle}-{middle + 400_000}", middle, middle + 400_001),
        (f"bytes={len(body) - 30_001}-", len(body) - 30_001, len(body)),
        ("bytes=-30000", len(body) - 30_000, len(body)),
    ]:
        part = client.get(url, headers={"Range": header})
        assert part.status_code == 206
        assert len(part.content) == stop - start
        # compare whole samples: skip to the next sample boundary
        skip = (44 - start) % 2
        got, want = _samples(part.content[skip:]), _samples(body[start + skip : stop])
        n = min(got.shape[0], want.shape[0]) // 2 * 2
        differences = np.abs(got[:n] - want[:n])
        assert differences.max() <= SEEK_TOLERANCE_LSB, header
        assert np.mean(differences == 0) > 0.99, header  # positional dither: the same bytes
    assert client.get(url, headers={"Range": f"bytes={len(body)}-"}).status_code == 416

    first, audio = _ttfb(client, url, {})
    seek_first, seek_audio = _ttfb(client, url, {"Range": f"bytes={middle}-"})
    print(
        f"plan cached: first byte {first * 1e3:.1f} ms, first audio {audio * 1e3:.1f} ms; "
        f"from the middle: {seek_first * 1e3:.1f} ms / {seek_audio * 1e3:.1f} ms"
    )
    assert max(first, audio, seek_first, seek_audio) < 2.0  # ~10-60 ms; CI boxes are slow


@pytest.mark.timeout(120)
def test_ab_stream_matches_the_mastered_loudness(library: Library, tmp_path: Path) -> None:
    client, track = library.client, library.ids["joplin_maple_leaf_rag.flac"]
    params: dict[str, str | float] = {"target": "apple", "strength": 0.5}
    plan = client.post(f"/api/tracks/{track}/plan", params=params).json()
    print(f"\nplan for joplin (132 s, not cached): {plan['plan_s']:.2f} s")
    assert plan["cached"] is False
    assert client.post(f"/api/tracks/{track}/plan", params=params).json()["cached"] is True
    mastered = client.get(f"/api/tracks/{track}/mastered", params=params)
    original = client.get(f"/api/tracks/{track}/stream", params={"match": "apple", "strength": 0.5})
    assert original.status_code == mastered.status_code == 200
    assert float(original.headers["x-tonearm-gain-db"]) == pytest.approx(
        plan["match_gain_db"], abs=1e-3
    )
    assert sf.info(io.BytesIO(original.content)).subtype == "FLOAT"
    levels = {}
    for name, answer in (("mastered", mastered), ("original", original)):
        (tmp_path / f"{name}.wav").write_bytes(answer.content)
        levels[name] = measure_file(tmp_path / f"{name}.wav").integrated_lufs
    print(f"A/B: mastered {levels['mastered']:.2f} LUFS, gain-matched {levels['original']:.2f}")
    assert abs(levels["mastered"] - -16.0) < 0.5
    assert abs(levels["original"] - levels["mastered"]) < 0.5
    # the A/B stream is exact from any byte
    body = original.content
    start = 58 + 8 * 1_234_567 + 3
    part = client.get(
        f"/api/tracks/{track}/stream",
        params={"match": "apple", "strength": 0.5},
        headers={"Range": f"bytes={start}-{start + 99_999}"},
    )
    assert part.status_code == 206
    assert part.content == body[start : start + 100_000]


@pytest.mark.timeout(120)
def test_a_custom_loudness(library: Library, tmp_path: Path) -> None:
    """``lufs`` (and ``ceiling_dbtp``) override a target's: the master reaches the loudness
    asked for, the A/B stream is gain-matched to it, and the plan cache keys on the numbers."""
    client, track = library.client, library.ids["bach_bwv66_6.flac"]
    plan_url = f"/api/tracks/{track}/plan"
    custom: dict[str, str | float] = {"target": "custom", "lufs": -12}
    plan = client.post(plan_url, params=custom).json()
    assert (plan["target"], plan["lufs"], plan["ceiling_dbtp"]) == ("custom", -12.0, -1.0)
    assert plan["cached"] is False
    assert client.post(plan_url, params=custom).json()["cached"] is True
    assert client.post(plan_url, params={**custom, "lufs": -12.5}).json()["cached"] is False
    # a preset and a custom target with the preset's numbers, or the preset with another
    # loudness or ceiling: four plans
    spotify = client.post(plan_url, params={"target": "spotify"}).json()
    assert (spotify["target"], spotify["lufs"], spotify["ceiling_dbtp"]) == ("spotify", -14, -1)
    assert client.post(plan_url, params={"target": "spotify"}).json()["cached"] is True
    tweaks: list[dict[str, str | float]] = [
        {"target": "custom", "lufs": -14, "ceiling_dbtp": -1},
        {"target": "spotify", "lufs": -12},
        {"target": "spotify", "ceiling_dbtp": -2},
    ]
    for params in tweaks:
        answer = client.post(plan_url, params=params).json()
        assert answer["cached"] is False, params
        assert answer["lufs"] == params.get("lufs", -14), params
        assert answer["ceiling_dbtp"] == params.get("ceiling_dbtp", -1), params

    mastered = client.get(f"/api/tracks/{track}/mastered", params=custom)
    original = client.get(f"/api/tracks/{track}/stream", params={"match": "custom", "lufs": -12})
    assert original.status_code == mastered.status_code == 200
    assert mastered.headers["x-tonearm-target"] == "custom -12.0 LUFS / -1.0 dBTP"
    assert original.headers["x-tonearm-target"] == "custom -12.0 LUFS / -1.0 dBTP"
    assert float(original.headers["x-tonearm-gain-db"]) == pytest.approx(
        plan["match_gain_db"], abs=1e-3
    )
    measured = {}
    for name, answer in (("mastered", mastered), ("original", original)):
        (tmp_path / f"{name}.wav").write_bytes(answer.content)
        measured[name] = measure_file(tmp_path / f"{name}.wav")
    levels = {name: m.integrated_lufs for name, m in measured.items()}
    print(
        f"\ncustom -12 LUFS: mastered {levels['mastered']:.2f} LUFS "
        f"({measured['mastered'].true_peak_dbtp:.2f} dBTP), gain-matched {levels['original']:.2f}"
    )
    assert abs(levels["mastered"] - -12.0) < 0.5
    assert measured["mastered"].true_peak_dbtp <= -1.0 + 0.05
    assert abs(levels["original"] - levels["mastered"]) < 0.5
    tweaked = client.get(
        f"/api/tracks/{track}/mastered",
        params={"target": "spotify", "ceiling_dbtp": -2},
        headers={"Range": "bytes=0-99"},
    )
    assert tweaked.status_code == 206
    assert tweaked.headers["x-tonearm-target"] == "spotify -14.0 LUFS / -2.0 dBTP"


def test_a_custom_loudness_out_of_range(library: Library) -> None:
    client, track = library.client, library.ids["bach_bwv66_6.flac"]
    for path, params in (
        ("/mastered", {"target": "custom"}),
        ("/stream", {"match": "custom"}),
        ("/plan", {"target": "custom"}),
    ):
        url = f"/api/tracks/{track}{path}"
        method = "POST" if path == "/plan" else "GET"
        for bad in ({"lufs": -4.9}, {"lufs": -40.5}, {"lufs": "loud"}, {"ceiling_dbtp": 0.5}):
            answer = client.request(method, url, params={**params, **bad})
            assert answer.status_code == 422, (path, bad)
        alone = client.request(method, url, params=params)  # custom, with nothing to override
        assert alone.status_code == 400, path
        assert "needs lufs" in alone.json()["detail"]


def test_plan_is_computed_once_for_concurrent_requests(library: Library) -> None:
    client, track = library.client, library.ids["bach_bwv66_6.flac"]
    params: dict[str, str | float] = {"target": "ebu", "strength": 0.25}
    state = library.live.state
    before = state.plans.computed
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(4)

    def ask() -> None:
        barrier.wait(timeout=10)
        answers.append(client.post(f"/api/tracks/{track}/plan", params=params))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=HTTP_TIMEOUT_S)
    assert [answer.status_code for answer in answers] == [200] * 4
    assert state.plans.computed == before + 1
    plans = {answer.json()["plan"]["gain_db"] for answer in answers}
    assert len(plans) == 1
    assert answers[0].json()["target"] == "ebu"


@pytest.mark.timeout(120)
def test_mastered_mp3_from_the_middle(library: Library) -> None:
    """A lossy track (10 min MP3): the range's audio matches the whole stream's, which is
    rendered here from frame 0 with the server's own plan."""
    client, track = library.client, library.ids["beethoven_opus18no1.mp3"]
    url = f"/api/tracks/{track}/mastered"
    began = time.perf_counter()
    first, audio = _ttfb(client, url, {"Range": "bytes=0-"})
    print(
        f"\nmastered 10 min MP3, plan not cached: first byte {first:.2f} s, first audio "
        f"{audio:.2f} s (total {time.perf_counter() - began:.2f} s)"
    )
    summary = client.post(f"/api/tracks/{track}/plan").json()
    assert summary["cached"] is True
    plan = MasteringPlan.from_dict(summary["plan"])
    layout = WavLayout(44100, 2, summary["frames"], "pcm16")
    start = 44 + 4 * (60 * 44100 + 17)
    stop = start + 4 * 3 * 44100
    part = client.get(url, headers={"Range": f"bytes={start}-{stop - 1}"})
    assert part.status_code == 206
    path = os.fspath(library.music / "beethoven_opus18no1.mp3")
    expected = b"".join(
        wav_bytes(
            layout,
            lambda _: render_mastered(path, plan),
            stop_byte=stop,
            dither_seed=int(plan.cache_key()[:8], 16),
        )
    )[start:]
    differences = np.abs(_samples(part.content) - _samples(expected))
    assert differences.max() <= SEEK_TOLERANCE_LSB
    assert np.mean(differences == 0) > 0.99
