"""The jobs API against a real uvicorn: upload and master, master a library track, list,
status, cancel, result, report, plot, the upload limits, the rate limit, and history across a
restart (on SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from tests.mastering import synth
from tests.server.live import LiveServer, running_server, server_settings, wait_for_scan_done
from tonearm.server.uploads import MAX_NAME_CHARS, safe_file_name

RATE = 44100
FINISHED = ("done", "failed", "cancelled")
JOB_WAIT_S = 60.0
POLL_S = 0.05
MAIN_UPLOAD_LIMIT = 64 * 2**20


def wait_job(client: httpx.Client, job_id: str, *, timeout_s: float = JOB_WAIT_S) -> dict[str, Any]:
    """Poll a job until it has finished (bounded); its last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["state"] in FINISHED:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout_s} s"
        time.sleep(POLL_S)


def upload(
    client: httpx.Client, name: str, content: bytes, **fields: str | float
) -> httpx.Response:
    data = {key: str(value) for key, value in fields.items()}
    return client.post("/api/jobs/upload", files={"file": (name, content)}, data=data)


def loudness_lufs(content: bytes) -> float:
    audio, rate = sf.read(io.BytesIO(content), dtype="float64")
    return float(pyloudnorm.Meter(rate).integrated_loudness(audio))


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def mix_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("mix") / "mix.wav"
    synth.write(path, synth.noise(RATE, 3.0, level_db=-24, seed=1), RATE)
    return path.read_bytes()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module: a library of one track, a 64 MiB upload limit."""
    root = tmp_path_factory.mktemp("server")
    music = root / "music"
    music.mkdir()
    synth.write(music / "tone.wav", synth.noise(RATE, 3.0, level_db=-30, seed=2), RATE)
    settings = server_settings(
        root, library_roots=(music,), max_upload_bytes=MAIN_UPLOAD_LIMIT, workers=2
    )
    with running_server(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30.0) as http:
        yield http


# --- upload and master ----------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_upload_masters_and_serves_result_report_and_plot(
    live: LiveServer, client: httpx.Client, mix_bytes: bytes
) -> None:
    response = upload(client, "mix.wav", mix_bytes, target="apple")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] in ("queued", "running")
    assert (job["input_name"], job["output_name"], job["target"]) == ("mix.wav", "mix.wav", "apple")
    assert job["track_id"] is None

    done = wait_job(client, job["id"])
    assert done["state"] == "done", done["error"]
    assert done["fraction"] == 1.0
    assert done["started_at"] is not None
    assert done["finished_at"] >= done["started_at"]

    result = client.get(f"/api/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert result.headers["content-type"] == "audio/wav"
    assert "mix.mastered.wav" in result.headers["content-disposition"]
    info = sf.info(io.BytesIO(result.content))
    assert (info.samplerate, info.channels, info.frames) == (RATE, 2, 3 * RATE)
    assert loudness_lufs(result.content) == pytest.approx(-16.0, abs=0.5)

    report = client.get(f"/api/jobs/{job['id']}/report")
    assert report.status_code == 200
    figures = report.json()
    assert figures["target"] == {"name": "apple", "lufs": -16.0, "ceiling_dbtp": -1.0}
    assert figures["output"]["integrated_lufs"] == pytest.approx(-16.0, abs=0.2)
    assert figures["output"]["true_peak_dbtp"] <= -1.0
    assert figures["input"]["integrated_lufs"] == pytest.approx(loudness_lufs(mix_bytes), abs=0.5)
    assert {"plan", "limiter", "timings_s", "render_passes"} <= figures.keys()
    assert (figures["input"]["path"], figures["output"]["path"]) == ("mix.wav", "mix.wav")

    plot = client.get(f"/api/jobs/{job['id']}/plot")
    assert plot.status_code == 200, plot.text
    assert plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(b"\x89PNG\r\n\x1a\n")
    (png,) = [p for p in files_under(live.settings.jobs_dir) if p.name == "mix.report.png"]
    drawn = png.stat().st_mtime_ns
    again = client.get(f"/api/jobs/{job['id']}/plot")
    assert again.content == plot.content
    assert png.stat().st_mtime_ns == drawn  # drawn once, then served from beside the master


def test_upload_name_is_never_a_path(
    live: LiveServer, client: httpx.Client, mix_bytes: bytes
) -> None:
    before = set(os.listdir(live.settings.data_dir.parent))
    response = upload(client, "../../../outside/evil?name.wav", mix_bytes)
    assert response.status_code == 202, response.text
    assert response.json()["input_name"] == "evil_name.wav"
    stored = [p for p in files_under(live.settings.uploads_dir) if p.name == "evil_name.wav"]
    assert len(stored) == 1
    assert stored[0].parent.parent == live.settings.uploads_dir
    assert set(os.listdir(live.settings.data_dir.parent)) == before
    assert wait_job(client, response.json()["id"])["state"] == "done"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../a.wav", "a.wav"),
        ("C:\\Users\\me\\song.flac", "song.flac"),
        ("", "upload"),
        ("..", "upload"),
        ("dir/", "upload"),
        (".hidden.wav", "hidden.wav"),
        ("a\x00b;rm -rf.wav", "a_b_rm -rf.wav"),
        ("naïve café.mp3", "naïve café.mp3"),
        ("no_suffix", "no_suffix"),
        ("odd.we!rd", "odd.we_rd"),
    ],
)
def test_safe_file_name(given: str, expected: str) -> None:
    assert safe_file_name(given) == expected


def test_safe_file_name_is_bounded_and_keeps_the_suffix() -> None:
    name = safe_file_name("x" * 1000 + ".flac")
    assert len(name) == MAX_NAME_CHARS
    assert name.endswith(".flac")


# --- refusals -------------------------------------------------------------------------------


def test_not_audio_is_415_and_leaves_nothing(live: LiveServer, client: httpx.Client) -> None:
    before = files_under(live.settings.data_dir)
    response = upload(client, "notes.txt", b"these are not samples\n" * 100)
    assert response.status_code == 415
    assert "notes.txt" in response.json()["detail"]
    assert str(live.settings.data_dir) not in response.text  # no server paths
    assert files_under(live.settings.data_dir) == before


def test_bad_options_are_422_with_a_clear_message(
    live: LiveServer, client: httpx.Client, mix_bytes: bytes
) -> None:
    before = files_under(live.settings.data_dir)
    response = upload(client, "mix.wav", mix_bytes, target="loudest")
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "target"]
    assert "unknown target 'loudest'" in error["msg"]
    assert "spotify" in error["msg"]
    response = upload(client, "mix.wav", mix_bytes, lufs=-2)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "lufs"]
    assert files_under(live.settings.data_dir) == before


def test_missing_file_field_is_refused(live: LiveServer, client: httpx.Client) -> None:
    other = client.post("/api/jobs/upload", files={"mix": ("a.wav", b"RIFF")})
    assert other.status_code == 422
    assert "'file'" in other.json()["detail"]
    form = client.post("/api/jobs/upload", data={"target": "apple"})
    assert form.status_code == 415
    assert "multipart/form-data" in form.json()["detail"]


def test_too_large_uploads_are_413_and_leave_nothing(tmp_path: Path) -> None:
    limit = 100_000
    settings = server_settings(tmp_path, max_upload_bytes=limit, scan_on_start=False)

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(20):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    with running_server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        declared = upload(http, "big.wav", os.urandom(10 * limit))  # refused by Content-Length
        assert declared.status_code == 413
        assert f"{limit:,} bytes" in declared.json()["detail"]
        streamed = upload(http, "big.wav", os.urandom(limit + 1000))  # within the slack: read
        assert streamed.status_code == 413
        headers = {"content-type": "multipart/form-data; boundary=b"}
        assert http.post("/api/jobs/upload", content=chunked(), headers=headers).status_code == 413
        assert files_under(settings.data_dir) == []
        at_limit = upload(http, "noise.wav", os.urandom(limit))  # accepted size, then probed
        assert at_limit.status_code == 415
        assert files_under(settings.data_dir) == []
        assert http.get("/api/jobs").json() == []


@pytest.mark.timeout(60)
def test_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, heavy_requests_per_minute=2, scan_on_start=False)
    with running_server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(2):
            assert upload(http, "a.txt", b"text").status_code == 415  # counted all the same
        third = upload(http, "a.txt", b"text")
        assert third.status_code == 429
        assert 1 <= int(third.headers["retry-after"]) <= 61
        assert "at most 2" in third.json()["detail"]
        # another bucket: mastering a track is counted apart
        assert http.post("/api/jobs", json={"track_id": 1}).status_code == 404


# --- library tracks, listing, cancelling ----------------------------------------------------


@pytest.mark.timeout(90)
def test_master_a_library_track(live: LiveServer, client: httpx.Client) -> None:
    wait_for_scan_done(client)
    tracks = client.get("/api/tracks").json()["items"]
    (track,) = [t for t in tracks if t["file_name"] == "tone.wav"]
    response = client.post("/api/jobs", json={"track_id": track["id"], "target": "ebu"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["track_id"], job["input_name"], job["target"]) == (track["id"], "tone.wav", "ebu")
    done = wait_job(client, job["id"])
    assert done["state"] == "done", done["error"]
    result = client.get(f"/api/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert loudness_lufs(result.content) == pytest.approx(-23.0, abs=0.5)
    assert "tone.mastered.wav" in result.headers["content-disposition"]
    assert (live.settings.library_roots[0] / "tone.wav").is_file()  # the library file untouched

    assert client.post("/api/jobs", json={"track_id": 987654}).status_code == 404
    bad = client.post("/api/jobs", json={"track_id": track["id"], "target": "x"})
    assert bad.status_code == 422
    assert "unknown target 'x'" in bad.text
    custom = client.post("/api/jobs", json={"track_id": track["id"], "lufs": -12, "priority": 5})
    assert custom.status_code == 202
    assert (custom.json()["lufs"], custom.json()["priority"]) == (-12.0, 5)
    assert wait_job(client, custom.json()["id"])["state"] == "done"


@pytest.mark.timeout(90)
def test_library_jobs_cached_and_failed(live: LiveServer, client: httpx.Client) -> None:
    wait_for_scan_done(client)
    (track,) = [
        t for t in client.get("/api/tracks").json()["items"] if t["file_name"] == "tone.wav"
    ]
    first = client.post("/api/jobs", json={"track_id": track["id"], "target": "deezer"}).json()
    assert wait_job(client, first["id"])["cached"] is False
    again = client.post("/api/jobs", json={"track_id": track["id"], "target": "deezer"}).json()
    cached = wait_job(client, again["id"])
    assert (cached["state"], cached["cached"]) == ("done", True)
    masters = [client.get(f"/api/jobs/{job['id']}/result").content for job in (first, again)]
    assert masters[0] == masters[1]
    report = client.get(f"/api/jobs/{again['id']}/report").json()
    assert report["output"]["path"] == "tone.wav"
    assert str(live.settings.data_dir) not in str(report)

    # a track whose file went away after the scan: the job fails, saying why, without paths
    music = live.settings.library_roots[0]
    synth.write(music / "gone.wav", synth.noise(RATE, 2.0, seed=4), RATE)
    assert client.post("/api/scan").status_code == 202
    wait_for_scan_done(client)
    (gone,) = [t for t in client.get("/api/tracks").json()["items"] if t["file_name"] == "gone.wav"]
    (music / "gone.wav").unlink()
    response = client.post("/api/jobs", json={"track_id": gone["id"]})
    assert response.status_code == 202
    failed = wait_job(client, response.json()["id"])
    assert failed["state"] == "failed"
    assert "gone.wav" in failed["error"]
    assert str(music) not in failed["error"]
    assert client.get(f"/api/jobs/{failed['id']}/result").status_code == 409


def test_list_jobs_newest_first_with_filters(client: httpx.Client, mix_bytes: bytes) -> None:
    first = upload(client, "one.wav", mix_bytes).json()["id"]
    second = upload(client, "two.wav", mix_bytes).json()["id"]
    wait_job(client, first)
    wait_job(client, second)
    ids = [job["id"] for job in client.get("/api/jobs").json()]
    assert ids.index(second) < ids.index(first)
    done = client.get("/api/jobs", params={"state": "done", "limit": 500}).json()
    assert {first, second} <= {job["id"] for job in done}
    assert all(job["state"] == "done" for job in done)
    assert len(client.get("/api/jobs", params={"limit": 1}).json()) == 1
    assert client.get("/api/jobs", params={"state": "bogus"}).status_code == 422


@pytest.mark.timeout(90)
def test_cancel_a_running_job(live: LiveServer, client: httpx.Client, tmp_path: Path) -> None:
    # 4 minutes (a few seconds of work), written quickly by repeating 8 s of noise
    audio = np.tile(synth.noise(RATE, 8.0, level_db=-24, seed=3), (1, 30))
    path = synth.write(tmp_path / "long.wav", audio, RATE, subtype="PCM_16")
    response = upload(client, "long.wav", path.read_bytes())
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 30.0
    while (state := client.get(f"/api/jobs/{job_id}").json()["state"]) != "running":
        assert state == "queued", f"the job went {state} before it could be cancelled"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 409
    assert client.get(f"/api/jobs/{job_id}/report").status_code == 409
    assert client.get(f"/api/jobs/{job_id}/plot").status_code == 409

    cancelled = client.delete(f"/api/jobs/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert wait_job(client, job_id)["state"] == "cancelled"
    assert client.delete(f"/api/jobs/{job_id}").status_code == 409
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 409
    leftovers = [p for p in files_under(live.settings.jobs_dir) if "long" in p.name]
    assert leftovers == []  # no master, no staging file


def test_unknown_job_is_404(client: httpx.Client) -> None:
    for suffix in ("", "/result", "/report", "/plot"):
        response = client.get(f"/api/jobs/0123456789ab{suffix}")
        assert response.status_code == 404
        assert "no job 0123456789ab" in response.text
    assert client.delete("/api/jobs/0123456789ab").status_code == 404


def test_openapi_documents_the_jobs_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    upload_op = spec["paths"]["/api/jobs/upload"]["post"]
    assert upload_op["tags"] == ["jobs"]
    form = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert "target" in form["properties"]
    assert set(spec["paths"]["/api/jobs/{job_id}"]) == {"get", "delete"}
    assert (
        "image/png"
        in spec["paths"]["/api/jobs/{job_id}/plot"]["get"]["responses"]["200"]["content"]
    )
    assert {"Job", "TrackJobRequest"} <= spec["components"]["schemas"].keys()


# --- history across a restart ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_restarted_server_still_shows_finished_jobs(
    tmp_path: Path, database_url: str, mix_bytes: bytes
) -> None:
    settings = server_settings(tmp_path, database=database_url, scan_on_start=False)
    with running_server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        job_id = upload(http, "mix.wav", mix_bytes, target="ebu").json()["id"]
        before = wait_job(http, job_id)
        assert before["state"] == "done"
        master = http.get(f"/api/jobs/{job_id}/result").content
    with running_server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200
        after = response.json()
        for key in ("state", "submitted_at", "finished_at", "input_name", "target", "cached"):
            assert after[key] == before[key], key
        assert [job["id"] for job in http.get("/api/jobs").json()] == [job_id]
        assert http.get(f"/api/jobs/{job_id}/result").content == master
        report = http.get(f"/api/jobs/{job_id}/report").json()
        assert report["output"]["integrated_lufs"] == pytest.approx(-23.0, abs=0.2)
        assert http.delete(f"/api/jobs/{job_id}").status_code == 409
