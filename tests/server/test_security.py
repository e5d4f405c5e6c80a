"""The server's defences on a real uvicorn: the token, binding beyond loopback, WebSocket
origins, paths that must never reach a file, upload caps and types, the rate limits of the
heavy endpoints, and the WebSocket's message limits."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import update
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.mastering import synth
from tests.music_paths import MUSIC_DIR
from tests.server.live import LiveServer, running_server, server_settings, wait_for_scan_done
from tonearm.library.models import Track
from tonearm.server.hub import CLOSE_GOING_AWAY
from tonearm.server.settings import ServerSettings

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
APP_ORIGIN = "http://app.example"
"""An origin the test server allows besides its own."""
UPLOAD_LIMIT = 200_000
WS_BURST = 5
WS_RATE = 0.5
WS_LIMIT_BYTES = 64 * 1024
"""The default ``ws_max_message_bytes``."""
WS_WAIT_S = 10.0
HTTP_TIMEOUT_S = 30.0
SCAN_TIMEOUT_S = 30.0
PROCESS_TIMEOUT_S = 60.0
RATE = 44100
TONEARM = [sys.executable, "-m", "tonearm"]


@dataclass
class Site:
    """A server without a token over a small library, some of whose rows point outside it."""

    live: LiveServer
    client: httpx.Client
    root: Path
    music: Path
    ids: dict[str, int]


def _point_track_at(live: LiveServer, track_id: int, path: str) -> None:
    """Rewrite a track's stored path (what a shared database, or a tampered one, could hold)."""
    library = live.state.library
    with library.db.write() as session:
        session.execute(update(Track).where(Track.id == track_id).values(path=path))
    library.cache.invalidate(f"track:{track_id}", "tracks")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("security")
    music, outside, sibling = root / "music", root / "outside", root / "music-private"
    for folder in (music, outside, sibling):
        folder.mkdir()
    for name in ("inside.flac", "dotted.flac", "prefixed.flac"):
        shutil.copy(MUSIC_DIR / "bach_bwv66_6.flac", music / name)
    shutil.copy(MUSIC_DIR / "bach_bwv66_6.flac", outside / "secret.flac")
    shutil.copy(MUSIC_DIR / "bach_bwv66_6.flac", sibling / "secret.flac")
    (music / "escape.flac").symlink_to(outside / "secret.flac")  # inside the root, file outside
    settings = server_settings(
        root,
        library_roots=(music,),
        allowed_origins=(APP_ORIGIN,),
        max_upload_bytes=UPLOAD_LIMIT,
        ws_burst=WS_BURST,
        ws_messages_per_second=WS_RATE,
        analysis_workers=0,
    )
    with (
        running_server(settings) as live,
        httpx.Client(base_url=live.url, timeout=HTTP_TIMEOUT_S) as client,
    ):
        wait_for_scan_done(client)
        items = client.get("/api/tracks", params={"limit": 50}).json()["items"]
        ids = {item["file_name"]: item["id"] for item in items}
        assert set(ids) == {"inside.flac", "dotted.flac", "prefixed.flac", "escape.flac"}
        # through ``..`` to a folder beside the root; a folder whose name starts like the root's
        _point_track_at(live, ids["dotted.flac"], f"{music}/../outside/secret.flac")
        _point_track_at(live, ids["prefixed.flac"], str(sibling / "secret.flac"))
        yield Site(live, client, root, music, ids)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with a token."""
    root = tmp_path_factory.mktemp("guarded")
    settings = server_settings(root, token=TOKEN, scan_on_start=False)
    with running_server(settings) as live:
        yield live


def _files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def _raw_get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send ``GET target`` exactly as written (no client-side normalisation of ``..`` or
    ``//``); the status and the whole answer."""
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


async def _receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WS_WAIT_S):
        message = json.loads(await ws.recv())
    assert isinstance(message, dict)
    return message


async def _accepted(url: str, **options: Any) -> None:
    """A WebSocket to ``url`` is accepted and greeted."""
    async with connect(url, open_timeout=WS_WAIT_S, **options) as ws:
        assert (await _receive(ws))["type"] == "welcome"


async def _refused(url: str, **options: Any) -> None:
    """A WebSocket to ``url`` is refused in the handshake (the app closes it before accepting,
    which uvicorn answers with 403: no socket is ever opened)."""
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(url, open_timeout=WS_WAIT_S, **options):
            pass
    assert refusal.value.response.status_code == 403


def _wav_bytes(tmp_path: Path, seconds: float = 1.0) -> bytes:
    path = synth.write(tmp_path / "mix.wav", synth.noise(RATE, seconds, channels=1), RATE, "PCM_16")
    return path.read_bytes()


# --- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"Authorization": "Bearer nope"}, {}),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, {}),
        ({"Authorization": f"Bearer {TOKEN}x"}, {}),
        ({"Authorization": f"Basic {TOKEN}"}, {}),
        ({"Authorization": "Bearer"}, {}),
        ({}, {"token": "nope"}),
        ({}, {"token": ""}),
    ],
    ids=["none", "wrong", "prefix", "longer", "basic", "bare-bearer", "wrong-query", "empty-query"],
)
@pytest.mark.timeout(30)
def test_api_without_the_token_is_401(
    guarded: LiveServer, headers: dict[str, str], params: dict[str, str]
) -> None:
    with httpx.Client(base_url=guarded.url, timeout=HTTP_TIMEOUT_S) as http:
        for method, path in (("GET", "/api/tracks"), ("POST", "/api/scan"), ("GET", "/api/jobs")):
            response = http.request(method, path, headers=headers, params=params)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/json"
            assert "token" in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "params"),
    [(BEARER, {}), ({}, {"token": TOKEN})],
    ids=["bearer", "query"],
)
@pytest.mark.timeout(30)
def test_api_with_the_token_is_served(
    guarded: LiveServer, headers: dict[str, str], params: dict[str, str]
) -> None:
    with httpx.Client(base_url=guarded.url, timeout=HTTP_TIMEOUT_S) as http:
        response = http.get("/api/tracks", headers=headers, params=params)
        assert response.status_code == 200
        assert response.json()["items"] == []


@pytest.mark.timeout(30)
def test_health_and_version_stay_public(guarded: LiveServer) -> None:
    with httpx.Client(base_url=guarded.url, timeout=HTTP_TIMEOUT_S) as http:
        assert http.get("/api/health").json()["status"] == "ok"
        assert http.get("/api/version").json()["api"] == "1"
        # only those two: their neighbours are guarded
        assert http.get("/api/presets").status_code == 401
        assert http.get("/api/health", params={"token": "nope"}).status_code == 200


@pytest.mark.parametrize(
    "target",
    ["//api/tracks", "/api/health/../tracks", "/%61pi/tracks", "/api/tracks/", "/api//tracks"],
)
@pytest.mark.timeout(30)
def test_guarded_routes_cannot_be_reached_by_another_spelling(
    guarded: LiveServer, target: str
) -> None:
    status, answer = _raw_get(guarded.port, target)
    assert status in (401, 404), answer[:300]
    assert b'"items"' not in answer


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_websocket_needs_the_token(guarded: LiveServer) -> None:
    await _refused(guarded.ws_url)
    await _refused(f"{guarded.ws_url}?token=nope")
    await _refused(guarded.ws_url, additional_headers={"Authorization": "Bearer nope"})
    await _accepted(f"{guarded.ws_url}?token={TOKEN}")
    await _accepted(guarded.ws_url, additional_headers=BEARER)


# --- binding beyond loopback ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "tonearm.example"])
@pytest.mark.parametrize("token", [None, ""])
def test_binding_beyond_loopback_needs_a_token(
    tmp_path: Path, host: str, token: str | None
) -> None:
    with pytest.raises(ValidationError, match="needs a token"):
        ServerSettings(host=host, token=token, database="x.db", data_dir=tmp_path)
    assert ServerSettings(host=host, token=TOKEN, database="x.db", data_dir=tmp_path).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_binds_without_a_token(tmp_path: Path, host: str) -> None:
    assert ServerSettings(host=host, database="x.db", data_dir=tmp_path).token is None


def _serve(tmp_path: Path, *args: str) -> list[str]:
    music = tmp_path / "music"
    music.mkdir(exist_ok=True)
    return [
        *TONEARM,
        "serve",
        "--library",
        str(music),
        "--db",
        str(tmp_path / "library.db"),
        "--data-dir",
        str(tmp_path / "data"),
        "--no-scan",
        *args,
    ]


def _environment(**changes: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "TONEARM_TOKEN"}
    return {**env, **changes}


@pytest.mark.timeout(90)
def test_serve_beyond_loopback_without_a_token_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        _serve(tmp_path, "--host", "0.0.0.0", "--port", "0"),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
        env=_environment(),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == "error: binding to 0.0.0.0 needs a token: --token or TONEARM_TOKEN"
    assert done.stdout == ""
    assert not (tmp_path / "data").exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


async def _close_code_on_sigterm(url: str, process: subprocess.Popen[str]) -> int | None:
    """SIGTERM the server while a socket is open: how the server closes it (graceful: 1001)."""
    async with connect(url, open_timeout=WS_WAIT_S) as ws:
        assert (await _receive(ws))["type"] == "welcome"
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(PROCESS_TIMEOUT_S):
            await ws.wait_closed()
        return ws.close_code


@pytest.mark.timeout(120)
def test_serve_beyond_loopback_with_the_token_from_the_environment(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        _serve(tmp_path, "--host", "0.0.0.0", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(TONEARM_TOKEN=TOKEN),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        with httpx.Client(base_url=url, timeout=5.0) as http:
            while True:
                assert process.poll() is None, "the server exited while starting"
                try:
                    if http.get("/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not answer in time"
                time.sleep(0.1)
            unauthorised = http.get("/api/tracks")
            assert unauthorised.status_code == 401
            assert unauthorised.headers["www-authenticate"] == "Bearer"
            assert http.get("/api/tracks", headers=BEARER).status_code == 200
        ws_url = f"ws://127.0.0.1:{port}/ws?token={TOKEN}"
        assert asyncio.run(_close_code_on_sigterm(ws_url, process)) == CLOSE_GOING_AWAY
        _, stderr = process.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=PROCESS_TIMEOUT_S)
    # uvicorn raises the captured SIGTERM again once its graceful shutdown is over
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert f"on http://0.0.0.0:{port}/" in stderr
    assert "Traceback" not in stderr


# --- WebSocket origins ------------------------------------------------------------------------


OWN = "own"
"""Stands for the server's own origin, ``http://127.0.0.1:<port>`` (known once it runs)."""


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("http://evil.example", False),
        ("null", False),
        ("http://127.0.0.1:1", False),
        ("http://app.example.evil.example", False),
        ("https://app.example", False),
        (OWN, True),
        (APP_ORIGIN, True),
        (None, True),
    ],
    ids=["evil", "null", "other-port", "suffix", "other-scheme", "own", "allowed", "no-origin"],
)
@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_websocket_origin(site: Site, origin: str | None, accepted: bool) -> None:
    if origin == OWN:
        origin = site.live.url
    if accepted:
        await _accepted(site.live.ws_url, origin=origin)
    else:
        await _refused(site.live.ws_url, origin=origin)


# --- paths ----------------------------------------------------------------------------------


AUDIO_ROUTES = [
    ("GET", "/stream"),
    ("GET", "/stream?match=spotify"),
    ("GET", "/mastered"),
    ("POST", "/plan"),
]


@pytest.mark.parametrize("name", ["escape.flac", "dotted.flac", "prefixed.flac"])
@pytest.mark.timeout(60)
def test_audio_outside_the_library_folders_is_403(site: Site, name: str) -> None:
    for method, route in AUDIO_ROUTES:
        response = site.client.request(method, f"/api/tracks/{site.ids[name]}{route}")
        assert response.status_code == 403, (name, route)
        assert "outside the library folders" in response.json()["detail"]
        assert str(site.root) not in response.text
    inside = site.client.get(f"/api/tracks/{site.ids['inside.flac']}/stream")
    assert inside.status_code == 200
    assert inside.content == (site.music / "inside.flac").read_bytes()


@pytest.mark.parametrize("name", ["escape.flac", "dotted.flac", "prefixed.flac"])
@pytest.mark.timeout(60)
def test_a_track_outside_the_library_folders_is_not_mastered(site: Site, name: str) -> None:
    """A job would read the outside file and serve its master: the same guard as the streams."""
    response = site.client.post("/api/jobs", json={"track_id": site.ids[name]})
    assert response.status_code == 403, response.text
    assert "outside the library folders" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/tracks/..%2F..%2F..%2F..%2Fetc%2Fpasswd/stream",
        "/api/tracks/%2E%2E/stream",
        "/api/tracks/1%2F..%2F..%2F..%2Fetc%2Fpasswd/mastered",
        "/api/albums/..%2F..%2Fetc%2Fpasswd/cover",
        "/api/jobs/..%2F..%2F..%2Fetc%2Fpasswd/result",
        "/api/jobs/%2E%2E/report",
        "/api/jobs/..%5C..%5Cetc%5Cpasswd/plot",
        "/assets/..%2F..%2Fapp.py",
        "/assets/%2E%2E/%2E%2E/app.py",
        "/assets/..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    ],
)
@pytest.mark.timeout(30)
def test_encoded_dot_segments_never_reach_a_file(site: Site, path: str) -> None:
    response = site.client.get(path)
    assert response.status_code in (404, 422), response.text
    if path.startswith("/api/"):
        assert response.headers["content-type"] == "application/json"
    assert b"root:" not in response.content
    assert b"from __future__" not in response.content  # no source file of the server either


@pytest.mark.parametrize(
    "target",
    [
        "/api/tracks/1/../../../../etc/passwd",
        "/api/tracks/../../../../etc/passwd/stream",
        "/api/jobs/../../../../etc/passwd/result",
        "/../../../../etc/passwd",
        "/api/tracks/1/stream/../../../../../music/inside.flac",
        "/assets/../../app.py",
        "/assets/../../../../../../../../etc/passwd",
    ],
)
@pytest.mark.timeout(30)
def test_raw_dot_segments_never_reach_a_file(site: Site, target: str) -> None:
    status, answer = _raw_get(site.live.port, target)
    assert status in (404, 422), answer[:300]
    assert b"root:" not in answer
    assert b"fLaC" not in answer
    assert b"from __future__" not in answer


def _upload(
    client: httpx.Client, name: str, content: bytes, content_type: str | None = None
) -> httpx.Response:
    part = (name, content) if content_type is None else (name, content, content_type)
    return client.post("/api/jobs/upload", files={"file": part})


@pytest.mark.parametrize(
    "name",
    [
        "{absolute}/evil.wav",
        "../../../../{absolute}/evil.wav",
        "..\\..\\..\\evil.wav",
        "C:\\Windows\\evil.wav",
        "....//....//evil.wav",
        "%2e%2e%2fevil.wav",
    ],
    ids=["absolute", "dot-dot", "backslashes", "windows", "doubled", "encoded"],
)
@pytest.mark.timeout(60)
def test_upload_names_are_sanitized(site: Site, tmp_path: Path, name: str) -> None:
    absolute = tmp_path / "abs"
    name = name.format(absolute=absolute)
    uploads = site.live.settings.uploads_dir
    before = set(_files_under(uploads))
    response = _upload(site.client, name, _wav_bytes(tmp_path))
    assert response.status_code == 202, response.text
    stored_name = response.json()["input_name"]
    assert "/" not in stored_name
    assert "\\" not in stored_name
    assert not stored_name.startswith(".")
    assert stored_name.endswith("evil.wav")
    (stored,) = set(_files_under(uploads)) - before
    assert stored.name == stored_name
    assert stored.parent.parent == uploads
    assert not absolute.exists()
    beside = [p for p in _files_under(site.root) if "evil" in p.name]
    assert all(p.is_relative_to(site.live.settings.data_dir) for p in beside), beside


# --- upload caps and types ------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_uploads_over_the_cap_are_413(site: Site) -> None:
    uploads = site.live.settings.uploads_dir
    before = set(_files_under(uploads))
    declared = _upload(site.client, "big.wav", os.urandom(10 * UPLOAD_LIMIT))
    assert declared.status_code == 413
    assert f"{UPLOAD_LIMIT:,} bytes at most" in declared.json()["detail"]
    # Content-Length within the slack for the form, the file itself one byte over: counted
    assert _upload(site.client, "big.wav", os.urandom(UPLOAD_LIMIT + 1)).status_code == 413

    def unsized() -> Iterator[bytes]:  # chunked: no Content-Length at all
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(2 * UPLOAD_LIMIT // 65536 + 1):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    headers = {"content-type": "multipart/form-data; boundary=b"}
    chunked = site.client.post("/api/jobs/upload", content=unsized(), headers=headers)
    assert chunked.status_code == 413
    assert set(_files_under(uploads)) - before == set()  # nothing left behind


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("notes.txt", None), ("notes.wav", "audio/wav"), ("song.flac", "audio/flac")],
)
@pytest.mark.timeout(60)
def test_text_uploads_are_415(site: Site, name: str, content_type: str | None) -> None:
    """The content decides, not the name or the part's declared type."""
    uploads = site.live.settings.uploads_dir
    before = set(_files_under(uploads))
    text = b"these are words, not samples\n" * 200
    response = _upload(site.client, name, text, content_type)
    assert response.status_code == 415
    assert name in response.json()["detail"]
    assert str(site.root) not in response.text
    assert set(_files_under(uploads)) - before == set()  # nothing left behind


# --- rate limits ------------------------------------------------------------------------------


def _heavy(http: httpx.Client, bucket: str) -> httpx.Response:
    if bucket == "upload":
        return _upload(http, "a.txt", b"text")  # 415, counted all the same
    if bucket == "master":
        return http.post("/api/jobs", json={"track_id": 1})  # 404: no such track
    return http.post("/api/scan")


HEAVY = ("upload", "master", "scan")


@pytest.mark.parametrize("bucket", HEAVY)
@pytest.mark.timeout(60)
def test_heavy_endpoints_are_429_per_bucket(tmp_path: Path, bucket: str) -> None:
    settings = server_settings(tmp_path, heavy_requests_per_minute=2, scan_on_start=False)
    with (
        running_server(settings) as live,
        httpx.Client(base_url=live.url, timeout=HTTP_TIMEOUT_S) as http,
    ):
        for _ in range(2):
            assert _heavy(http, bucket).status_code != 429
        refused = _heavy(http, bucket)
        assert refused.status_code == 429
        retry_after = refused.headers["retry-after"]
        assert retry_after.isdigit()
        assert 1 <= int(retry_after) <= 61
        assert f"too many {bucket} requests: at most 2 a minute" in refused.json()["detail"]
        for other in HEAVY:  # the other buckets are counted apart
            if other != bucket:
                assert _heavy(http, other).status_code != 429, other
        assert http.get("/api/tracks").status_code == 200  # reads are not limited


# --- WebSocket limits -------------------------------------------------------------------------


async def _ping(ws: ClientConnection, data: object) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "ping", "data": data}))
    return await _receive(ws)


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_websocket_message_too_large(site: Site) -> None:
    async with connect(site.live.ws_url, open_timeout=WS_WAIT_S) as ws:
        assert (await _receive(ws))["type"] == "welcome"
        padding = "x" * (WS_LIMIT_BYTES + 1)
        for big in (json.dumps({"type": "ping", "data": padding}), padding.encode()):
            await ws.send(big)
            error = await _receive(ws)
            assert error["type"] == "error"
            assert error["data"]["code"] == "message_too_large"
            assert error["data"]["message"] == f"messages are limited to {WS_LIMIT_BYTES} bytes"
        # a message just under the limit, and the connection still works
        fits = "y" * (WS_LIMIT_BYTES - 100)
        assert await _ping(ws, fits) == {"type": "pong", "data": fits}
        assert await _ping(ws, 1) == {"type": "pong", "data": 1}


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_websocket_burst_is_rate_limited(site: Site) -> None:
    sent = 3 * WS_BURST
    async with connect(site.live.ws_url, open_timeout=WS_WAIT_S) as ws:
        assert (await _receive(ws))["type"] == "welcome"
        for i in range(sent):
            await ws.send(json.dumps({"type": "ping", "data": i}))
        replies = [await _receive(ws) for _ in range(sent)]
        pongs = [reply["data"] for reply in replies if reply["type"] == "pong"]
        errors = [reply["data"] for reply in replies if reply["type"] == "error"]
        assert len(pongs) + len(errors) == sent
        assert pongs[:WS_BURST] == list(range(WS_BURST))  # the burst is answered, in order
        assert len(pongs) <= WS_BURST + 1  # a token refilled meanwhile at most
        assert errors
        for error in errors:
            assert error["code"] == "rate_limited"
            assert error["message"] == f"too many messages: at most {WS_RATE:g}/s"
            assert 0 < error["retry_after_s"] <= 1 / WS_RATE
        await asyncio.sleep(max(error["retry_after_s"] for error in errors) + 0.05)
        assert await _ping(ws, "again") == {"type": "pong", "data": "again"}
