"""Async operations against a real server: concurrent REST requests, WebSocket clients and
background work (scans, jobs), over real sockets.

Every test talks to a real uvicorn on a free loopback port (``tests/server/live.py``; one
test also runs ``tonearm serve`` as a process) with ``httpx.AsyncClient`` and the
``websockets`` client, never through an in-process transport. Each request has the client's
timeouts, each receive and each gather an ``asyncio.wait_for`` bound, each test a
``pytest.mark.timeout``. Sections follow the concurrency test plan (Category 3): FastAPI
async patterns (1-10), WebSocket concurrency (11-20), background tasks (21-25).

Shared servers come from ``conftest.py``: ``served_library`` (a small real library, no special
settings) and ``slow_client_server`` (a short send queue and send timeout); tests that need
other settings start their own with ``start_server``. Assertions on server internals go
through the running :class:`~tonearm.server.state.ServerState` (``live.state``): its engine,
hub and scan controller, never a copy. Figures (latency, throughput) are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed, InvalidStatus

import tonearm.server.api_audio as api_audio
from tests.concurrency.live_support import (
    HTTP_TIMEOUT_S,
    SERVER_RATE,
    ServedLibrary,
    WsClient,
    free_port,
    upload,
    wait_for_condition,
    wait_job,
    wait_scan,
    write_tones,
    ws_connect,
    ws_connect_stuck,
)
from tests.mastering import synth
from tests.server.live import LiveServer
from tonearm.library.job_store import JobStore
from tonearm.library.manager import LibraryManager
from tonearm.mastering.stream import render_mastered
from tonearm.server.hub import Hub

GATHER_TIMEOUT_S = 120.0
EVENT_TIMEOUT_S = 30.0
STAGING_MARK = ".tonearm-"
"""Part of the name of every staging or temporary file the engine and renderer write."""
DEFAULT_WMEM_MAX = 4 * 2**20
WALK_LIMITS = (250, 500, 500, 250)
"""Page sizes of the concurrent walks through the whole library."""


# --- small helpers ------------------------------------------------------------------------


def http(
    live: LiveServer, *, connections: int | None = 100, timeout_s: float = HTTP_TIMEOUT_S
) -> httpx.AsyncClient:
    """An async client of ``live`` with at most ``connections`` sockets (None: no limit)."""
    return httpx.AsyncClient(
        base_url=live.url,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def gather_all(*aws: Awaitable[Any], timeout_s: float = GATHER_TIMEOUT_S) -> list[Any]:
    """``asyncio.gather`` bounded by ``timeout_s`` (the first exception propagates)."""
    return await asyncio.wait_for(asyncio.gather(*aws), timeout_s)


@contextlib.asynccontextmanager
async def ws_clients(url: str, count: int) -> AsyncIterator[list[WsClient]]:
    """``count`` clients connected at once (welcome read); all closed on exit."""
    clients: list[WsClient] = []
    try:
        clients.extend(await gather_all(*(ws_connect(url) for _ in range(count))))
        yield clients
    finally:
        await close_all(clients)


async def close_all(clients: list[WsClient]) -> None:
    """Close every client that is still open (aborting those that do not close in time)."""

    async def close(client: WsClient) -> None:
        try:
            await client.close()
        except (TimeoutError, ConnectionClosed, OSError):
            client.abort()

    await asyncio.wait_for(asyncio.gather(*(close(c) for c in clients)), 30.0)


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.floor(fraction * len(ordered)))]


def wmem_max_bytes() -> int:
    """The most a TCP socket may buffer for sending (Linux ``tcp_wmem``'s maximum)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return DEFAULT_WMEM_MAX


def blob(nbytes: int, seed: int) -> str:
    """``nbytes`` characters of seeded random hex (incompressible, JSON-safe)."""
    return random.Random(seed).randbytes(nbytes // 2 + 1).hex()[:nbytes]


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def open_handles(path: Path) -> int:
    """File descriptors of this process open on ``path`` (Linux ``/proc/self/fd``)."""
    target = str(path.resolve())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
    return count


class PublishTimer:
    """Stands in for ``hub.publish`` and times every call (on the server's loop)."""

    def __init__(self, hub: Hub) -> None:
        self._publish = hub.publish
        self.durations: list[float] = []

    def __call__(self, topic: str, message_type: str, data: Any) -> int:
        started = time.perf_counter()
        try:
            return self._publish(topic, message_type, data)
        finally:
            self.durations.append(time.perf_counter() - started)


def publish_sequence(
    hub: Hub, topic: str, count: int, *, stream: str, pause_s: float = 0.0
) -> None:
    """Publish ``count`` messages ``{"stream", "seq"}`` from the calling thread (as job
    workers and the scan do), optionally ``pause_s`` apart."""
    for seq in range(count):
        hub.publish_threadsafe(topic, "test.seq", {"stream": stream, "seq": seq})
        if pause_s:
            time.sleep(pause_s)


def run_in_thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def join(thread: threading.Thread, timeout_s: float = 30.0) -> None:
    thread.join(timeout_s)
    assert not thread.is_alive(), f"{thread.name} still running after {timeout_s:g} s"


async def collect(
    client: WsClient, count: int, *, message_type: str, timeout_s: float = EVENT_TIMEOUT_S
) -> list[dict[str, Any]]:
    """The next ``count`` messages of ``message_type`` (others skipped, pings answered)."""
    return [await client.next(message_type, timeout_s=timeout_s) for _ in range(count)]


def data_is(expected: Any) -> Callable[[dict[str, Any]], bool]:
    """A ``where`` for :meth:`WsClient.next`: the message's data is ``expected``."""
    return lambda message: bool(message["data"] == expected)


def of_job(job_id: str) -> Callable[[dict[str, Any]], bool]:
    """A ``where`` for :meth:`WsClient.next`: an event of job ``job_id``."""
    return lambda message: bool(message["data"].get("job_id") == job_id)


async def submit_track_job(client: httpx.AsyncClient, track_id: int, **options: Any) -> str:
    response = await client.post("/api/jobs", json={"track_id": track_id, **options})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


# --- FastAPI async patterns (plan 1-10) -----------------------------------------------------


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_concurrent_api_requests(served_library: ServedLibrary) -> None:
    """100 requests at once over up to 100 connections: every one answers 200 with the body
    a lone request gets (health, version, presets, track pages, a list page)."""
    live = served_library.live
    async with http(live, connections=100) as client:
        paths = ["/api/version", "/api/presets", "/api/tracks?limit=5&order=path"]
        paths += [f"/api/tracks/{track_id}" for track_id in served_library.ids.values()]
        expected = {path: (await client.get(path)).json() for path in paths}
        requests = [paths[i % len(paths)] if i % 4 else "/api/health" for i in range(100)]

        started = time.perf_counter()
        responses = await gather_all(*(client.get(path) for path in requests))
        elapsed = time.perf_counter() - started

    assert [r.status_code for r in responses] == [200] * 100
    for path, response in zip(requests, responses, strict=True):
        if path == "/api/health":
            body = response.json()
            assert body["status"] == "ok"
            assert body["version"] == expected["/api/version"]["version"]
        else:
            assert response.json() == expected[path], path
    print(f"\n100 concurrent requests: {elapsed:.3f} s ({100 / elapsed:.0f} requests/s)")


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_concurrent_api_requests_1000(served_library: ServedLibrary) -> None:
    """1000 requests in flight at once over a pool of 100 connections: 500 health checks and
    500 track pages, each page equal to the track as the list showed it."""
    live = served_library.live
    async with http(live, connections=100, timeout_s=90.0) as client:  # includes the pool wait
        listed = (await client.get("/api/tracks", params={"limit": 500, "order": "title"})).json()
        tracks = {track["id"]: track for track in listed["items"]}
        assert len(tracks) == 500
        ids = list(tracks)
        latencies: list[float] = []

        async def timed(path: str) -> httpx.Response:
            started = time.perf_counter()
            response = await client.get(path)
            latencies.append(time.perf_counter() - started)
            return response

        requests = [f"/api/tracks/{ids[i // 2]}" if i % 2 else "/api/health" for i in range(1000)]
        started = time.perf_counter()
        responses = await gather_all(*(timed(path) for path in requests))
        elapsed = time.perf_counter() - started

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1000}, statuses
    for path, response in zip(requests, responses, strict=True):
        body = response.json()
        if path == "/api/health":
            assert body["status"] == "ok"
        else:
            assert body == tracks[int(path.rsplit("/", 1)[1])]
    print(
        f"\n1000 requests over 100 connections: {elapsed:.2f} s ({1000 / elapsed:.0f}/s), "
        f"latency p50 {percentile(latencies, 0.5) * 1e3:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms"
    )


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_async_database_queries(served_library: ServedLibrary) -> None:
    """Concurrent reads see one consistent library; concurrent writes are atomic.

    Reads: walks of every page (cursor paging), searches and track pages at once give what a
    lone reader gets. Writes: 200 concurrent plays of one track are all counted, each answer a
    different count; of 10 concurrent creations of one playlist name exactly one wins (the
    others are a clean 400); 40 concurrent appends all land. Each write publishes one
    ``library.changed``."""
    live, ids = served_library.live, served_library.ids
    total = served_library.seeded + len(ids)

    async def walk(client: httpx.AsyncClient, limit: int) -> list[int]:
        seen: list[int] = []
        params: dict[str, Any] = {"limit": limit, "order": "title"}
        while True:
            response = await client.get("/api/tracks", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["total"] == total
            seen.extend(track["id"] for track in page["items"])
            if page["next_cursor"] is None:
                return seen
            params["cursor"] = page["next_cursor"]

    async def search(client: httpx.AsyncClient) -> tuple[int, list[int]]:
        page = (await client.get("/api/tracks", params={"q": "Prelude", "limit": 100})).json()
        return page["total"], [track["id"] for track in page["items"]]

    async with http(live, connections=50) as client:
        reference = await walk(client, 250)
        assert len(reference) == len(set(reference)) == total
        reference_search = await search(client)
        assert reference_search[0] == math.ceil(served_library.seeded / 7)  # every 7th row
        details = {i: (await client.get(f"/api/tracks/{i}")).json() for i in reference[:20]}

        walks, searches, pages = await gather_all(
            gather_all(*(walk(client, limit) for limit in WALK_LIMITS)),
            gather_all(*(search(client) for _ in range(20))),
            gather_all(*(client.get(f"/api/tracks/{i}") for i in details)),
        )
        for limit, seen in zip(WALK_LIMITS, walks, strict=True):
            assert seen == reference, f"a walk of pages of {limit} differs"
        assert all(result == reference_search for result in searches)
        assert [page.json() for page in pages] == list(details.values())

        # atomic counters: every play is counted and each answer is a different count
        track = ids["tone_1.wav"]
        before = (await client.get(f"/api/tracks/{track}")).json()["play_count"]
        async with ws_clients(live.ws_url, 1) as (listener,):
            await listener.subscribe("library")
            plays = await gather_all(
                *(client.post(f"/api/tracks/{track}/plays") for _ in range(200))
            )
            assert Counter(p.status_code for p in plays) == {200: 200}
            counts = sorted(p.json()["play_count"] for p in plays)
            assert counts == list(range(before + 1, before + 201))
            assert (await client.get(f"/api/tracks/{track}")).json()["play_count"] == before + 200
            changed = await collect(listener, 200, message_type="library.changed")
            assert all(m["data"] == {"track_id": track} for m in changed)

        # one name, ten creators: one playlist, nine clean refusals
        created = await gather_all(
            *(
                client.post("/api/playlists", json={"name": "Concurrent mix", "track_ids": []})
                for _ in range(10)
            )
        )
        assert sorted(r.status_code for r in created) == [201] + [400] * 9
        (winner,) = [r.json() for r in created if r.status_code == 201]
        for refused in (r for r in created if r.status_code == 400):
            assert "exists already" in refused.json()["detail"]
        named = [
            p for p in (await client.get("/api/playlists")).json() if p["name"] == "Concurrent mix"
        ]
        assert [p["id"] for p in named] == [winner["id"]]

        # forty appends at once: all there, each once
        entries = reference[100:140]
        appended = await gather_all(
            *(
                client.patch(f"/api/playlists/{winner['id']}", json={"append": [track_id]})
                for track_id in entries
            )
        )
        assert Counter(r.status_code for r in appended) == {200: 40}
        final = (await client.get(f"/api/playlists/{winner['id']}")).json()
        assert sorted(final["track_ids"]) == sorted(entries)
        assert (await client.delete(f"/api/playlists/{winner['id']}")).status_code == 204


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_async_file_operations(served_library: ServedLibrary, tmp_path: Path) -> None:
    """Concurrent byte ranges of the original files are exact slices; concurrent uploads land
    intact, are mastered to the same length, and their results download intact in parallel."""
    live, music = served_library.live, served_library.music
    names = ("bach_bwv66_6.flac", "joplin_maple_leaf_rag.flac")
    data = {name: (music / name).read_bytes() for name in names}
    rng = random.Random(20240601)
    ranges = []
    for i in range(60):
        name = names[i % 2]
        size = len(data[name])
        start = rng.randrange(size)
        ranges.append((name, start, min(size, start + rng.randrange(1, 400_000))))

    async with http(live, connections=None) as client:

        async def read_range(name: str, start: int, stop: int) -> None:
            track = served_library.ids[name]
            response = await client.get(
                f"/api/tracks/{track}/stream", headers={"Range": f"bytes={start}-{stop - 1}"}
            )
            assert response.status_code == 206, response.text
            assert (
                response.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(data[name])}"
            )
            assert response.content == data[name][start:stop]

        async def read_whole(name: str) -> None:
            response = await client.get(f"/api/tracks/{served_library.ids[name]}/stream")
            assert response.status_code == 200
            assert response.content == data[name]

        await gather_all(
            *(read_range(*span) for span in ranges), *(read_whole(names[i % 2]) for i in range(4))
        )

        # six different mixes uploaded at once
        mixes = {}
        for i in range(6):
            path = synth.write(
                tmp_path / f"upload_{i}.wav",
                synth.noise(SERVER_RATE, 1.0 + 0.25 * i, level_db=-26 + i, seed=300 + i),
                SERVER_RATE,
            )
            mixes[path.name] = path.read_bytes()
        answers = await gather_all(*(upload(client, name, body) for name, body in mixes.items()))
        assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
        jobs = {a.json()["input_name"]: a.json()["id"] for a in answers}
        assert jobs.keys() == mixes.keys()
        stored = {p.name: p.read_bytes() for p in files_under(live.settings.uploads_dir)}
        for name, body in mixes.items():
            assert stored[name] == body, f"{name} was not stored intact"

        finished = await gather_all(*(wait_job(client, job_id) for job_id in jobs.values()))
        assert [job["state"] for job in finished] == ["done"] * 6, [j["error"] for j in finished]
        results = await gather_all(
            *(client.get(f"/api/jobs/{job_id}/result") for job_id in jobs.values() for _ in (0, 1))
        )
    for index, name in enumerate(jobs):
        first, second = results[2 * index], results[2 * index + 1]
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        mastered = sf.info(_bytes_file(tmp_path, f"mastered_{name}", first.content))
        assert mastered.frames == sf.info(tmp_path / name).frames


def _bytes_file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_async_processing_queue(
    start_server: Callable[..., LiveServer],
    tmp_path: Path,
    short_wav: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job queue behind the API, on one worker.

    * 8 jobs submitted at once (library tracks and uploads) all finish, each with exactly one
      ``job.queued`` and one ``job.finished`` event, in that order.
    * Priority: while the worker waits (the engine's memory budget is held by the test), three
      jobs of priority 0 are queued, then one of priority 10: it starts right after the job the
      worker holds, before the three queued earlier, which then run first come, first served.
    * A full queue answers 503 with ``Retry-After`` and clean JSON, and leaves no folder or
      upload behind; no refused job shows as queued or running.
    """
    music = tmp_path / "queue-music"
    music.mkdir()
    names = [f"q_{i}.wav" for i in range(6)]
    write_tones(music, names)
    live = start_server(
        library_roots=(music,),
        workers=1,
        analysis_workers=0,
        heavy_requests_per_minute=1_000_000,
    )
    engine = live.state.engine
    mix = short_wav.read_bytes()
    async with http(live, connections=None) as client, ws_clients(live.ws_url, 1) as (events,):
        await wait_scan(client)
        page = (await client.get("/api/tracks", params={"limit": 50})).json()
        tracks = {t["file_name"]: t["id"] for t in page["items"]}
        await events.subscribe("jobs")

        # eight submissions at once
        submissions = [
            client.post("/api/jobs", json={"track_id": tracks[name], "lufs": -14.0 - i})
            for i, name in enumerate(names[:4])
        ] + [upload(client, f"up_{i}.wav", mix, lufs=-15.5 - i) for i in range(4)]
        answers = await gather_all(*submissions)
        assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
        ids = [a.json()["id"] for a in answers]
        assert len(set(ids)) == 8
        finished = await gather_all(*(wait_job(client, job_id) for job_id in ids))
        assert [job["state"] for job in finished] == ["done"] * 8, [j["error"] for j in finished]
        seen: dict[str, list[str]] = {job_id: [] for job_id in ids}
        while any("job.finished" not in kinds for kinds in seen.values()):
            message = await events.recv(timeout_s=EVENT_TIMEOUT_S)
            if message["type"].startswith("job.") and message["data"]["job_id"] in seen:
                seen[message["data"]["job_id"]].append(message["type"])
        for job_id, kinds in seen.items():
            assert kinds[0] == "job.queued", (job_id, kinds)
            assert kinds.count("job.queued") == 1, (job_id, kinds)
            assert kinds.count("job.finished") == 1, (job_id, kinds)

        # priority: the worker is held (it waits for memory) while the others queue up
        budget = engine.memory.budget_bytes
        gate = engine.memory.acquire(budget, timeout_s=5.0)
        try:
            held = await submit_track_job(client, tracks[names[0]], lufs=-20.0)
            await wait_for_condition(
                lambda: engine.memory.waiting == 1, timeout_s=10.0, what="the worker takes a job"
            )
            lows = [
                await submit_track_job(client, tracks[names[1 + i]], lufs=-21.0 - i, priority=0)
                for i in range(3)
            ]
            high = await submit_track_job(client, tracks[names[4]], lufs=-25.0, priority=10)

            # a full queue: 4 jobs wait in it now; make that its size and submit 3 more
            jobs_folders = {p.name for p in live.settings.jobs_dir.iterdir()}
            uploads_before = files_under(live.settings.uploads_dir)
            monkeypatch.setattr(engine._queue, "_max_size", 4)  # 10,000 jobs would be slow
            refused = await gather_all(
                client.post("/api/jobs", json={"track_id": tracks[names[5]], "lufs": -30.0}),
                client.post("/api/jobs", json={"track_id": tracks[names[5]], "lufs": -31.0}),
                upload(client, "refused.wav", mix, lufs=-32.0),
            )
            for response in refused:
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "30"
                assert response.headers["content-type"] == "application/json"
                assert "queue is full" in response.json()["detail"]
            assert {p.name for p in live.settings.jobs_dir.iterdir()} == jobs_folders
            assert files_under(live.settings.uploads_dir) == uploads_before
            monkeypatch.undo()
        finally:
            gate.release()

        order = [held, high, *lows]
        done = await gather_all(*(wait_job(client, job_id) for job_id in order))
        assert [job["state"] for job in done] == ["done"] * 5, [j["error"] for j in done]
        assert None not in [job["started_at"] for job in done]
        started = [dt.datetime.fromisoformat(job["started_at"]) for job in done]
        assert started == sorted(started), f"jobs did not start in priority order: {done}"
        listed = (await client.get("/api/jobs", params={"limit": 500})).json()
        unfinished = [job for job in listed if job["state"] in ("queued", "running")]
        assert unfinished == [], "a refused job is shown as waiting or running"
        assert {job["id"] for job in listed if job["state"] == "done"} == {*ids, *order}


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_async_error_handling(served_library: ServedLibrary) -> None:
    """Errors raised in concurrent handlers come back as clean JSON with the right status
    (400, 403, 404, 416, 422), never a 500, while the good requests beside them succeed."""
    live, ids = served_library.live, served_library.ids
    bach, seeded_track = ids["bach_bwv66_6.flac"], 1  # the seeded rows come first
    assert seeded_track not in ids.values()
    size = (served_library.music / "bach_bwv66_6.flac").stat().st_size
    bad: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("GET", "/api/tracks/99999999", {}, 404, "no track 99999999"),
        ("GET", "/api/jobs/0123456789ab", {}, 404, "no job 0123456789ab"),
        ("DELETE", "/api/jobs/0123456789ab", {}, 404, "no job 0123456789ab"),
        ("GET", "/api/playlists/987654", {}, 404, "no playlist 987654"),
        ("GET", "/api/no/such/route", {}, 404, "Not Found"),
        ("GET", "/api/tracks?limit=0", {}, 422, "greater than or equal to 1"),
        ("GET", "/api/tracks/not-a-number", {}, 422, "valid integer"),
        ("DELETE", "/api/jobs/bad!id", {}, 422, "pattern"),
        ("POST", "/api/jobs", {"json": {"track_id": bach, "target": "bogus"}}, 422, "bogus"),
        (
            "POST",
            "/api/playlists",
            {"json": {"name": "x", "track_ids": [99999999]}},
            400,
            "no track 99999999",
        ),
        ("GET", f"/api/tracks/{bach}/mastered?target=bogus", {}, 400, "unknown target 'bogus'"),
        ("GET", f"/api/tracks/{seeded_track}/stream", {}, 403, "outside the library folders"),
        (
            "GET",
            f"/api/tracks/{bach}/mastered",
            {"headers": {"Range": "bytes=999999999-"}},
            416,
            "is outside the",
        ),
    ]
    async with http(live, connections=None) as client:
        expected_track = (await client.get(f"/api/tracks/{bach}")).json()

        async def good(i: int) -> None:
            response = await client.get("/api/health" if i % 2 else f"/api/tracks/{bach}")
            assert response.status_code == 200
            if not i % 2:
                assert response.json() == expected_track

        async def refused(
            method: str, path: str, options: dict[str, Any], status: int, text: str
        ) -> None:
            response = await client.request(method, path, **options)
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"] == "application/json", path
            assert text in json.dumps(response.json()["detail"]), (path, response.text)

        async def beyond_the_file() -> None:  # Starlette's own 416 (plain text)
            response = await client.get(
                f"/api/tracks/{bach}/stream", headers={"Range": f"bytes={size}-"}
            )
            assert response.status_code == 416
            assert response.headers["content-range"] == f"bytes */{size}"

        await gather_all(
            *(good(i) for i in range(60)),
            *(refused(*case) for case in bad for _ in range(3)),
            *(beyond_the_file() for _ in range(3)),
        )
        assert (await health(client))["status"] == "ok"


class RenderSpy:
    """Stands in for ``render_mastered`` in the audio routes: counts the blocks rendered and
    the renders closed (their reader released)."""

    def __init__(self) -> None:
        self._render = render_mastered
        self.blocks = 0
        self.started = 0
        self.closed = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self.started += 1
        try:
            for block in self._render(*args, **kwargs):
                self.blocks += 1
                yield block
        finally:
            self.closed += 1


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_async_timeout_handling(
    served_library: ServedLibrary,
    slow_client_server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Clients that time out do not hurt the server.

    * HTTP: a client gives up (its own timeout) 0.3 s into the 23 MB mastered stream of the
      Joplin rag. The render stops, and releases the track's file, at once (with the cyclic
      garbage collector off, so nothing but the server can close it); health checks running
      meanwhile all answer fast; the stream served again starts with the same bytes.
    * WebSocket: a client that never reads is dropped once a send to it takes longer than the
      send timeout (1.5 s: here the 64-message queue never fills), and forgotten: the health
      figure counts only the client left, who received every message in order.
    """
    live, joplin = served_library.live, served_library.ids["joplin_maple_leaf_rag.flac"]
    joplin_path = served_library.music / "joplin_maple_leaf_rag.flac"
    spy = RenderSpy()
    monkeypatch.setattr(api_audio, "render_mastered", spy)
    url = f"/api/tracks/{joplin}/mastered"
    async with http(live, connections=None) as client:
        plan = await client.post(f"/api/tracks/{joplin}/plan")  # the stream starts at once
        assert plan.status_code == 200, plan.text
        latencies: list[float] = []
        stop_polling = asyncio.Event()

        async def poll_health() -> None:
            while not stop_polling.is_set():
                started = time.perf_counter()
                assert (await health(client))["status"] == "ok"
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll_health())
        received = bytearray()
        gc.disable()  # only the server may release the abandoned render, not the collector
        try:
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                total = int(response.headers["content-length"])

                async def read_all() -> None:
                    async for chunk in response.aiter_bytes():
                        received.extend(chunk)

                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(read_all(), 0.3)  # the client's own deadline
            assert 0 < len(received) < total
            left = time.monotonic()
            stable_after = await _settled(lambda: spy.blocks, quiet_s=0.5, timeout_s=10.0)
            blocks_at_stop = spy.blocks
            await asyncio.sleep(0.5)
            assert spy.blocks == blocks_at_stop, "the render went on after the client left"
            stop_polling.set()
            await asyncio.wait_for(poller, 10.0)
            assert max(latencies) < 1.0, f"health took {max(latencies):.2f} s during the stream"
            head = len(received) // 2
            again = await client.get(url, headers={"Range": f"bytes=0-{head - 1}"})
            assert again.status_code == 206
            assert again.content == bytes(received[:head])
            await wait_for_condition(
                lambda: spy.closed == spy.started == 2 and open_handles(joplin_path) == 0,
                timeout_s=5.0,
                what="the abandoned render releases the track (without garbage collection)",
            )
            released_s = time.monotonic() - left
        finally:
            gc.enable()
            stop_polling.set()
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
    print(
        f"\nabandoned stream: {len(received) / 1e6:.1f} of {total / 1e6:.1f} MB sent, render "
        f"stopped {stable_after:.2f} s and was released {released_s:.2f} s after the client "
        f"left; health max "
        f"{max(latencies) * 1e3:.0f} ms over {len(latencies)} checks"
    )

    # a WebSocket client that never reads, dropped by the send timeout
    hub = slow_client_server.state.hub
    timeout_s = slow_client_server.settings.ws_send_timeout_s
    count, size = 40, math.ceil((wmem_max_bytes() + 2 * 2**20) / 40)
    async with http(slow_client_server) as client:
        base = (await health(client))["websocket_clients"]
        async with ws_clients(slow_client_server.ws_url, 1) as (reader,):
            stuck = await ws_connect_stuck(slow_client_server.ws_url, slow_client_server.port)
            try:
                await reader.subscribe("jobs")
                await stuck.send("subscribe", {"topics": ["jobs"]})
                await wait_for_condition(
                    lambda: hub.connection_count == base + 2, timeout_s=5.0, what="both connected"
                )
                await asyncio.sleep(0.2)  # the stuck client's subscription is handled
                dropped = hub.dropped_slow
                started = time.monotonic()
                for seq in range(count):  # fewer than the queue holds: only a send can time out
                    hub.publish_threadsafe(
                        "jobs", "test.blob", {"seq": seq, "blob": blob(size, seq)}
                    )
                got = [
                    m["data"]["seq"] for m in await collect(reader, count, message_type="test.blob")
                ]
                assert got == list(range(count))
                await wait_for_condition(
                    lambda: hub.dropped_slow == dropped + 1,
                    timeout_s=timeout_s + 5.0,
                    what="the client that never reads is dropped",
                )
                dropped_after = time.monotonic() - started
                assert dropped_after >= timeout_s * 0.9
                forgotten_after = await wait_for_condition(
                    lambda: hub.connection_count == base + 1,
                    timeout_s=2 * timeout_s + 3.0,
                    what="the dropped client is forgotten (only the reader left)",
                )
                assert (await health(client))["websocket_clients"] == base + 1
                await reader.send("ping", {"n": 1})
                assert (await reader.next("pong"))["data"] == {"n": 1}
                messages = await stuck.drain_until_closed(timeout_s=10.0)
                seqs = [m["data"]["seq"] for m in messages if m["type"] == "test.blob"]
                assert seqs == list(range(len(seqs)))
                assert len(seqs) < count
                assert stuck.close_code in (1008, 1006, None), stuck.close_code
            finally:
                stuck.abort()
    print(
        f"never-reading client: dropped {dropped_after:.2f} s after the burst "
        f"(send timeout {timeout_s:g} s), forgotten {forgotten_after:.2f} s later"
    )


async def _settled(value: Callable[[], int], *, quiet_s: float, timeout_s: float) -> float:
    """Seconds until ``value()`` stopped changing for ``quiet_s`` (bounded by ``timeout_s``)."""
    started = time.monotonic()
    last, last_change = value(), time.monotonic()
    while time.monotonic() - last_change < quiet_s:
        assert time.monotonic() - started < timeout_s, f"still changing after {timeout_s:g} s"
        await asyncio.sleep(0.02)
        if (current := value()) != last:
            last, last_change = current, time.monotonic()
    return last_change - started


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_async_cancellation(served_library: ServedLibrary) -> None:
    """Cancelling async work leaves the server whole.

    * ``DELETE /api/jobs/{id}`` of a running 4-minute job: it answers ``cancelled`` (the job
      stops within a block), a ``job.cancelled`` event follows, no output is left, and a
      second cancel is a 409.
    * 32 requests in flight (whole-file downloads, mastered streams, pages), every other one
      cancelled by its client after 50 ms: the others complete with exact bodies, and 50
      requests afterwards all succeed with no job or socket left over.
    """
    live, ids = served_library.live, served_library.ids
    bach, joplin = ids["bach_bwv66_6.flac"], ids["joplin_maple_leaf_rag.flac"]
    joplin_bytes = (served_library.music / "joplin_maple_leaf_rag.flac").read_bytes()
    async with http(live, connections=None) as client, ws_clients(live.ws_url, 1) as (events,):
        await events.subscribe("jobs")
        job_id = await submit_track_job(client, ids["long.wav"], lufs=-17.5)
        running = await wait_job(client, job_id, until=("running",))
        assert running["state"] == "running"
        started = time.perf_counter()
        cancelled = await client.delete(f"/api/jobs/{job_id}")
        cancel_s = time.perf_counter() - started
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        event = await events.next("job.cancelled", where=of_job(job_id))
        assert event["data"]["state"] == "cancelled"
        assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 409
        leftovers = [p for p in files_under(live.settings.jobs_dir) if "long" in p.name]
        assert leftovers == [], "a cancelled job left files"

        plan = await client.post(f"/api/tracks/{bach}/plan")
        assert plan.status_code == 200
        bach_mastered_size = (
            (await client.get(f"/api/tracks/{bach}/mastered", headers={"Range": "bytes=0-0"}))
            .headers["content-range"]
            .rsplit("/", 1)[1]
        )
        expected_page = (await client.get(f"/api/tracks/{bach}")).json()

        async def download() -> None:
            response = await client.get(f"/api/tracks/{joplin}/stream")
            assert response.content == joplin_bytes

        async def mastered() -> None:
            response = await client.get(f"/api/tracks/{bach}/mastered")
            assert response.status_code == 200
            assert len(response.content) == int(bach_mastered_size)

        async def page() -> None:
            assert (await client.get(f"/api/tracks/{bach}")).json() == expected_page

        kinds = [download, mastered, page, page] * 8
        tasks = [asyncio.create_task(kind()) for kind in kinds]
        await asyncio.sleep(0.05)
        for task in tasks[::2]:
            task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120.0)
        outcomes = Counter(type(r).__name__ for r in results)
        for index, result in enumerate(results):
            if index % 2:
                assert result is None, f"request {index} ({kinds[index].__name__}): {result!r}"
            else:
                assert result is None or isinstance(result, asyncio.CancelledError), result

        after = await gather_all(*(client.get("/api/health") for _ in range(50)))
        assert [r.status_code for r in after] == [200] * 50
        await wait_for_condition(
            lambda: live.state.engine.memory.in_use_bytes == 0,
            timeout_s=10.0,
            what="no job holds memory",
        )
        assert (await health(client))["jobs_running"] == 0
    print(f"\nrunning job cancelled in {cancel_s * 1e3:.0f} ms; outcomes: {dict(outcomes)}")


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_async_rate_limiting(start_server: Callable[..., LiveServer]) -> None:
    """Rate limits hold exactly under concurrency.

    * HTTP (3 heavy requests a minute): of 8 concurrent ``POST /api/scan`` exactly 3 pass and
      5 get 429 with ``Retry-After``; the master bucket is counted apart (3 pass to the 404 of
      an unknown track, 5 get 429); light requests are never limited.
    * WebSocket (1 message a second, burst 3): of 8 pings sent at once, 3 are answered and 5 get
      ``rate_limited`` errors with ``retry_after_s``, in the order sent; after waiting that long
      the same connection works again; another connection has its own bucket.
    """
    live = start_server(
        heavy_requests_per_minute=3, ws_messages_per_second=1.0, ws_burst=3, scan_on_start=False
    )
    async with http(live, connections=None) as client:
        scans, masters, light = await gather_all(
            gather_all(*(client.post("/api/scan") for _ in range(8))),
            gather_all(*(client.post("/api/jobs", json={"track_id": 424242}) for _ in range(8))),
            gather_all(*(client.get("/api/tracks") for _ in range(50))),
        )
        assert sorted(r.status_code for r in scans) == [202] * 3 + [429] * 5
        assert sorted(r.status_code for r in masters) == [404] * 3 + [429] * 5
        assert [r.status_code for r in light] == [200] * 50
        for response in (*scans, *masters):
            if response.status_code == 429:
                assert 1 <= int(response.headers["retry-after"]) <= 61
                assert "at most 3 a minute" in response.json()["detail"]

        async with ws_clients(live.ws_url, 2) as (first, second):
            await gather_all(*(first.send("ping", {"n": n}) for n in range(8)))
            answers = [await first.recv() for _ in range(8)]
            assert [a["type"] for a in answers] == ["pong"] * 3 + ["error"] * 5
            assert [a["data"]["n"] for a in answers[:3]] == [0, 1, 2]
            errors = [a["data"] for a in answers[3:]]
            assert {e["code"] for e in errors} == {"rate_limited"}
            assert all(0 < e["retry_after_s"] <= 1.0 for e in errors)
            await second.send("ping", {"n": "other"})
            assert (await second.recv())["data"] == {"n": "other"}  # its own bucket
            await asyncio.sleep(max(e["retry_after_s"] for e in errors) + 0.05)
            await first.send("ping", {"n": "again"})
            assert await first.recv() == {"type": "pong", "data": {"n": "again"}}


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_async_backpressure(
    slow_client_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading is cut off, not waited for.

    Messages of 32 KB go to two subscribers, paced by the one that reads (never more than 16
    ahead of it). The one that does not read fills the socket buffers, then its 64-message
    queue, and is closed with 1008 ("send queue full"); it had received a gap-free prefix. The
    reader gets every message in order, before and after, and is never dropped. Publishing
    never waited: every ``Hub.publish`` call (timed on the server's loop) returned at once, and
    the server answered health checks meanwhile.
    """
    live = slow_client_server
    hub = live.state.hub
    timer = PublishTimer(hub)
    monkeypatch.setattr(hub, "publish", timer)
    size = 32 * 1024
    limit = math.ceil((wmem_max_bytes() + 4 * 2**20) / size) + 2 * live.settings.ws_send_queue
    async with http(live) as client, ws_clients(live.ws_url, 1) as (reader,):
        stuck = await ws_connect_stuck(live.ws_url, live.port)
        try:
            await reader.subscribe("jobs")
            await stuck.send("subscribe", {"topics": ["jobs"]})
            await asyncio.sleep(0.2)
            dropped = hub.dropped_slow
            received: list[int] = []

            async def read() -> None:
                while True:
                    message = await reader.next("test.blob")
                    received.append(message["data"]["seq"])
                    if message["data"].get("last"):
                        return

            reading = asyncio.create_task(read())
            closing: asyncio.Task[list[dict[str, Any]]] | None = None
            published, dropped_at, health_s = 0, 0, []
            deadline = time.monotonic() + 60.0
            while not dropped_at or published < dropped_at + 20:
                assert published < limit, f"no drop after {published} messages of {size} bytes"
                assert time.monotonic() < deadline, "publishing took over 60 s"
                if published - len(received) >= 16:
                    await asyncio.sleep(0.001)
                    continue
                hub.publish_threadsafe(
                    "jobs", "test.blob", {"seq": published, "blob": blob(size, published)}
                )
                published += 1
                if not dropped_at and hub.dropped_slow > dropped:
                    dropped_at = published
                    closing = asyncio.create_task(stuck.drain_until_closed(timeout_s=10.0))
                if published % 50 == 0:
                    started = time.perf_counter()
                    await health(client)
                    health_s.append(time.perf_counter() - started)
            hub.publish_threadsafe("jobs", "test.blob", {"seq": published, "last": True})
            await asyncio.wait_for(reading, EVENT_TIMEOUT_S)
            assert closing is not None
            messages = await asyncio.wait_for(closing, 30.0)
        finally:
            stuck.abort()
        assert received == list(range(published + 1)), "the reader missed or reordered messages"
        assert hub.dropped_slow == dropped + 1, "only the client that does not read is dropped"
        assert stuck.close_code == 1008, (stuck.close_code, stuck.close_reason)
        assert stuck.close_reason == "too slow: send queue full"
        seqs = [m["data"]["seq"] for m in messages if m["type"] == "test.blob"]
        assert seqs == list(range(len(seqs))), "the dropped client got a gap or a reorder"
        assert len(seqs) < dropped_at
        await reader.send("ping", {"still": "here"})
        assert (await reader.next("pong"))["data"] == {"still": "here"}
    assert timer.durations, "no publish was timed"
    slowest = max(timer.durations)
    assert slowest < 0.05, f"a publish took {slowest * 1e3:.1f} ms: publishing waited"
    assert max(health_s) < 1.0
    print(
        f"\nbackpressure: stuck client dropped after {dropped_at} messages "
        f"({dropped_at * size / 2**20:.1f} MiB) and had taken {len(seqs)}; reader got all "
        f"{published + 1}; publish p50 {percentile(timer.durations, 0.5) * 1e6:.0f} us, "
        f"max {slowest * 1e3:.2f} ms; health max {max(health_s) * 1e3:.0f} ms"
    )


# --- WebSocket concurrency (plan 11-20) -----------------------------------------------------


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_concurrent_websocket_connections(served_library: ServedLibrary) -> None:
    """100 clients connect at once: each gets its own connection id, the health figure counts
    them, an event reaches all of them, each ping is answered to its own sender only, and the
    count falls back when they leave."""
    live, track = served_library.live, served_library.ids["tone_2.wav"]
    async with http(live) as client:
        base = (await health(client))["websocket_clients"]
        started = time.perf_counter()
        async with ws_clients(live.ws_url, 100) as clients:
            connect_s = time.perf_counter() - started
            assert len({c.id for c in clients}) == 100
            assert (await health(client))["websocket_clients"] == base + 100
            await gather_all(*(c.subscribe("library") for c in clients))
            assert (await client.post(f"/api/tracks/{track}/plays")).status_code == 200
            events = await gather_all(*(c.next("library.changed") for c in clients))
            assert all(e["data"] == {"track_id": track} for e in events)
            await gather_all(*(c.send("ping", {"from": c.id}) for c in clients))
            pongs = await gather_all(*(c.next("pong") for c in clients))
            assert [p["data"]["from"] for p in pongs] == [c.id for c in clients]
        await wait_for_condition(
            lambda: live.state.hub.connection_count == base, timeout_s=10.0, what="all gone"
        )
        assert (await health(client))["websocket_clients"] == base
    print(f"\n100 WebSocket clients connected in {connect_s:.2f} s")


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_message_ordering(served_library: ServedLibrary) -> None:
    """Messages keep their order on every connection.

    Two threads publish 100 numbered messages each at once (as job workers do): every one of 5
    clients receives all 200, each thread's in order, and all clients in the same order (the
    hub's). A real job's events arrive queued first, progress never going back, finished last
    and once.
    """
    live = served_library.live
    hub = live.state.hub
    async with http(live) as client, ws_clients(live.ws_url, 5) as clients:
        await gather_all(*(c.subscribe("scan", "jobs") for c in clients))
        threads = [
            run_in_thread(functools.partial(publish_sequence, hub, "scan", 100, stream=name), name)
            for name in ("worker-a", "worker-b")
        ]
        for thread in threads:
            join(thread)
        streams = await gather_all(*(collect(c, 200, message_type="test.seq") for c in clients))
        orders = [[(m["data"]["stream"], m["data"]["seq"]) for m in stream] for stream in streams]
        for order in orders:
            for name in ("worker-a", "worker-b"):
                assert [seq for stream, seq in order if stream == name] == list(range(100))
        assert all(order == orders[0] for order in orders), "clients saw different orders"

        job_id = await submit_track_job(client, served_library.ids["tone_3.wav"], lufs=-13.3)
        for c in clients:
            kinds: list[str] = []
            fractions: list[float] = []
            while not kinds or kinds[-1] != "job.finished":
                message = await c.recv(timeout_s=EVENT_TIMEOUT_S)
                if message["type"].startswith("job.") and message["data"]["job_id"] == job_id:
                    kinds.append(message["type"])
                    fractions.append(message["data"]["fraction"])
            assert kinds[0] == "job.queued", kinds
            assert kinds.count("job.finished") == 1, kinds
            assert set(kinds[1:-1]) <= {"job.progress"}, kinds
            assert fractions == sorted(fractions), fractions
            assert fractions[-1] == 1.0, fractions


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_broadcast_performance(served_library: ServedLibrary) -> None:
    """100 messages broadcast to 50 clients (10 bursts of 10): all 5000 deliveries arrive, in
    order on every client. The publish-to-receive latency (one clock: same process) and the
    delivery rate are printed; bounds loose enough for a loaded two-core machine, where the
    50 clients share the CPU with the server, still catch a hub that delivers one client at a
    time or stalls (p95 under 5 s, over 500 deliveries a second)."""
    live = served_library.live
    hub = live.state.hub
    clients_n, bursts, per_burst = 50, 10, 10
    async with ws_clients(live.ws_url, clients_n) as clients:
        await gather_all(*(c.subscribe("scan") for c in clients))
        latencies: list[float] = []

        async def receive(c: WsClient) -> list[int]:
            seqs = []
            for _ in range(bursts * per_burst):
                message = await c.next("test.sent")
                latencies.append(time.perf_counter() - message["data"]["t"])
                seqs.append(message["data"]["seq"])
            return seqs

        receivers = [asyncio.create_task(receive(c)) for c in clients]
        started = time.perf_counter()
        for burst in range(bursts):
            for i in range(per_burst):
                seq = burst * per_burst + i
                hub.publish_threadsafe("scan", "test.sent", {"seq": seq, "t": time.perf_counter()})
            await asyncio.sleep(0.02)
        results = await asyncio.wait_for(asyncio.gather(*receivers), 60.0)
        elapsed = time.perf_counter() - started
    assert all(seqs == list(range(bursts * per_burst)) for seqs in results)
    deliveries = clients_n * bursts * per_burst
    assert len(latencies) == deliveries
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    print(
        f"\nbroadcast to {clients_n} clients: {deliveries} deliveries in {elapsed:.2f} s "
        f"({deliveries / elapsed:.0f}/s); latency p50 {p50 * 1e3:.1f} ms, "
        f"p95 {p95 * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms"
    )
    assert p95 < 5.0, f"broadcast latency p95 {p95:.2f} s"
    assert deliveries / elapsed > 500, f"only {deliveries / elapsed:.0f} deliveries/s"


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_connection_lifecycle(served_library: ServedLibrary) -> None:
    """Connections come and go: 20 open at once raise the health figure by 20; 10 closed
    cleanly (1000) and 10 dropped without a close frame all bring it back to where it was. A
    browser from a foreign origin is refused before it is counted; one from the server's own
    origin is let in."""
    live = served_library.live
    hub = live.state.hub
    async with http(live) as client:
        base = (await health(client))["websocket_clients"]
        clients = await gather_all(*(ws_connect(live.ws_url) for _ in range(20)))
        try:
            assert (await health(client))["websocket_clients"] == base + 20
            await gather_all(*(c.close() for c in clients[:10]))
            assert all(c.close_code == 1000 for c in clients[:10])
            for c in clients[10:]:
                c.abort()
            await wait_for_condition(
                lambda: hub.connection_count == base, timeout_s=10.0, what="all forgotten"
            )
            assert (await health(client))["websocket_clients"] == base
        finally:
            for c in clients:
                c.abort()

        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(live.ws_url, origin="http://evil.example")
        assert refused.value.response.status_code == 403
        assert hub.connection_count == base
        async with contextlib.AsyncExitStack() as stack:
            own = await ws_connect(live.ws_url, origin=live.url)
            stack.push_async_callback(own.close)
            assert hub.connection_count == base + 1
            await own.send("ping", {"own": True})
            assert (await own.next("pong"))["data"] == {"own": True}
        await wait_for_condition(
            lambda: hub.connection_count == base, timeout_s=10.0, what="the last one forgotten"
        )


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_reconnection_handling(served_library: ServedLibrary) -> None:
    """A client that loses its connection and comes back gets a new connection id and starts
    unsubscribed (nothing published before it subscribes again reaches it); subscribing to
    ``player`` hands it the last player state at once. 20 quick drop-and-reconnect cycles
    leave nothing behind."""
    live = served_library.live
    hub = live.state.hub
    async with http(live) as client:
        base = (await health(client))["websocket_clients"]
        first = await ws_connect(live.ws_url)
        await first.subscribe("player", "library")
        state = {"track_id": served_library.ids["bach_bwv66_6.flac"], "position_s": 12.5}
        await first.send("player.state", state)
        echoed = await first.next("player.state")
        assert echoed["data"]["position_s"] == 12.5
        first.abort()  # the network goes away

        again = await ws_connect(live.ws_url)
        try:
            assert again.id > first.id
            hub.publish_threadsafe("library", "library.changed", {"reason": "while away"})
            await again.send("ping", {"n": 1})
            reply = await again.recv()
            assert reply == {"type": "pong", "data": {"n": 1}}, (
                "an event reached an unsubscribed client"
            )
            await again.send("subscribe", {"topics": ["player", "library"]})
            assert (await again.recv())["type"] == "subscribed"
            restored = await again.recv()
            assert restored["type"] == "player.state"
            assert restored["data"]["position_s"] == 12.5
            assert restored["data"]["track_id"] == state["track_id"]
            hub.publish_threadsafe("library", "library.changed", {"reason": "back"})
            assert (await again.next("library.changed"))["data"] == {"reason": "back"}
        finally:
            await again.close()

        ids = []
        for _ in range(20):
            c = await ws_connect(live.ws_url)
            await c.subscribe("jobs")
            ids.append(c.id)
            c.abort()
        assert ids == sorted(ids)
        assert len(set(ids)) == 20
        await wait_for_condition(
            lambda: hub.connection_count == base, timeout_s=10.0, what="every dropped one forgotten"
        )
        assert (await health(client))["websocket_clients"] == base


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_message_queueing(served_library: ServedLibrary) -> None:
    """A client that pauses reading (1 s, under the 5 s send timeout) loses nothing: more than
    its socket buffers can hold is published to it (the rest waits in its queue on the
    server), and when it reads again it gets every message in order, and is not dropped;
    a client reading all along got them at once."""
    live = served_library.live
    hub = live.state.hub
    queue_size = live.settings.ws_send_queue
    count = queue_size // 2
    size = max(32 * 1024, math.ceil((wmem_max_bytes() + 3 * 2**20) / count))
    async with ws_clients(live.ws_url, 1) as (reader,):
        paused = await ws_connect_stuck(live.ws_url, live.port)
        try:
            await reader.subscribe("jobs")
            await paused.send("subscribe", {"topics": ["jobs"]})
            await asyncio.sleep(0.2)
            dropped = hub.dropped_slow
            for seq in range(count):
                hub.publish_threadsafe("jobs", "test.blob", {"seq": seq, "blob": blob(size, seq)})
            got = await collect(reader, count, message_type="test.blob")
            assert [m["data"]["seq"] for m in got] == list(range(count))
            await asyncio.sleep(1.0)
            assert hub.dropped_slow == dropped
            welcome = await paused.recv()
            assert welcome["type"] == "welcome"
            later = await collect(paused, count, message_type="test.blob")
            assert [m["data"]["seq"] for m in later] == list(range(count))
            assert all(len(m["data"]["blob"]) == size for m in later)
            await paused.send("ping", {"after": "pause"})
            assert (await paused.next("pong"))["data"] == {"after": "pause"}
            assert hub.dropped_slow == dropped
        finally:
            await close_all([paused])
    print(f"\nqueued for a paused client: {count} messages, {count * size / 2**20:.1f} MiB")


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_heartbeat_concurrency(start_server: Callable[..., LiveServer]) -> None:
    """Heartbeat amid traffic (ping every 0.25 s, pong due within 0.5 s): while a thread
    broadcasts a message every 20 ms for 2.5 s, three clients that answer pings stay connected
    and receive every broadcast in order; a client that reads but never answers is closed with
    1001 ("no pong") within interval + timeout (plus scheduling slack); a client's own pings
    are answered in between."""
    live = start_server(ws_ping_interval_s=0.25, ws_pong_timeout_s=0.5, scan_on_start=False)
    hub = live.state.hub
    interval, timeout = live.settings.ws_ping_interval_s, live.settings.ws_pong_timeout_s
    broadcasts = 125
    async with ws_clients(live.ws_url, 4) as clients:
        lively, silent = clients[:3], clients[3]
        silent_connected = time.monotonic()
        await gather_all(*(c.subscribe("scan") for c in clients))

        async def answer(c: WsClient) -> list[int]:
            seqs: list[int] = []
            own_pongs = 0
            while len(seqs) < broadcasts:
                message = await c.recv()
                if message["type"] == "ping":
                    await c.pong(message)
                    await c.send("ping", {"own": len(seqs)})
                elif message["type"] == "pong":
                    own_pongs += 1
                elif message["type"] == "test.seq":
                    seqs.append(message["data"]["seq"])
            assert own_pongs >= 1
            return seqs

        async def ignore(c: WsClient) -> tuple[list[dict[str, Any]], float]:
            messages = await c.drain_until_closed(timeout_s=10.0)
            return messages, time.monotonic() - silent_connected

        publisher = run_in_thread(
            lambda: publish_sequence(hub, "scan", broadcasts, stream="beat", pause_s=0.02),
            "publisher",
        )
        results, (silent_messages, silent_s) = await gather_all(
            gather_all(*(answer(c) for c in lively)), ignore(silent)
        )
        join(publisher)
        for seqs in results:
            assert seqs == list(range(broadcasts))
        assert all(c.pings_answered >= 5 for c in lively), [c.pings_answered for c in lively]
        assert silent.close_code == 1001
        assert silent.close_reason == "no pong"
        assert any(m["type"] == "ping" for m in silent_messages)
        assert silent_s < interval + timeout + 1.5, f"the silent client lasted {silent_s:.2f} s"
        for c in lively:
            await c.send("ping", {"last": True})
            await c.next("pong", where=lambda m: m["data"] == {"last": True})
        assert hub.connection_count == 3
    print(
        f"\nheartbeat: silent client closed after {silent_s:.2f} s; pings answered "
        f"{[c.pings_answered for c in lively]}"
    )


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_error_isolation(served_library: ServedLibrary) -> None:
    """Misbehaving clients get errors (or, for a frame over 1 MiB, a 1009 close) and nobody
    else notices: at the same time, clients send bad JSON, an unknown type, an unknown topic,
    a 70 KB message, a binary frame, a 2 MiB frame, a flood, or vanish mid-send, while three
    good clients receive all 50 broadcasts in order. Every bad client but the 2 MiB one can
    still talk afterwards."""
    live = served_library.live
    hub = live.state.hub
    async with http(live) as client:
        base = (await health(client))["websocket_clients"]
        async with ws_clients(live.ws_url, 11) as clients:
            good, bad = clients[:3], clients[3:]
            await gather_all(*(c.subscribe("scan") for c in good))

            async def error_code(c: WsClient, payload: str | bytes) -> str:
                await c.send_raw(payload)
                code: str = (await c.next("error"))["data"]["code"]
                return code

            async def flood(c: WsClient) -> int:
                for n in range(60):
                    await c.send("ping", {"n": n})
                errors = 0
                for _ in range(60):
                    errors += (await c.recv())["type"] == "error"
                return errors

            async def too_big(c: WsClient) -> int | None:
                with contextlib.suppress(ConnectionClosed):
                    await c.send_raw("x" * (2 * 2**20))
                await c.drain_until_closed(timeout_s=10.0)
                return c.close_code

            async def vanish(c: WsClient) -> None:
                await c.send("subscribe", {"topics": ["scan"]})
                c.abort()

            async def listen(c: WsClient) -> list[int]:
                return [m["data"]["seq"] for m in await collect(c, 50, message_type="test.seq")]

            publisher = run_in_thread(
                lambda: publish_sequence(hub, "scan", 50, stream="good", pause_s=0.005), "pub"
            )
            outcome = await gather_all(
                *(listen(c) for c in good),
                error_code(bad[0], "{not json"),
                error_code(bad[1], json.dumps({"type": "dance", "data": {}})),
                error_code(
                    bad[2], json.dumps({"type": "subscribe", "data": {"topics": ["gossip"]}})
                ),
                error_code(bad[3], json.dumps({"type": "ping", "data": "y" * 70_000})),
                error_code(bad[4], b"\x00\xff binary"),
                flood(bad[5]),
                too_big(bad[6]),
                vanish(bad[7]),
            )
            join(publisher)
            assert outcome[:3] == [list(range(50))] * 3
            assert outcome[3:8] == [
                "bad_message",
                "unknown_type",
                "unknown_topic",
                "message_too_large",
                "bad_message",
            ]
            assert outcome[8] > 0, "a flood of 60 messages was not rate limited"
            assert outcome[9] == 1009
            await asyncio.sleep(0.2)  # the flood's bucket has tokens again
            for c in bad[:6]:
                await c.send("ping", {"ok": c.id})
                await c.next("pong", where=data_is({"ok": c.id}))
        await wait_for_condition(
            lambda: hub.connection_count == base, timeout_s=10.0, what="all clients gone"
        )


@contextlib.contextmanager
def tonearm_serve(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m tonearm serve`` on a free port (output to files); killed if still running
    on exit."""
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "tonearm", "serve", "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10.0)
        log.close()


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_websocket_graceful_shutdown(
    start_server: Callable[..., LiveServer], tmp_path: Path, long_wav: Path
) -> None:
    """Shutdown closes every socket with 1001.

    * In process: 10 clients (some subscribed, one mid-conversation) all get 1001 "server
      shutting down"; the server stops and no longer accepts connections.
    * ``tonearm serve`` as a process, on SIGTERM while a 4-minute job runs, 3 clients listen
      and one client has stopped reading (its socket buffers full): the listening clients get
      1001, new connections are refused, the process exits within 10 s (wall clock) having
      cancelled the job (``--on-shutdown cancel``), which left no file behind.
    """
    live = start_server(scan_on_start=False)
    clients = await gather_all(*(ws_connect(live.ws_url) for _ in range(10)))
    try:
        await gather_all(*(c.subscribe("jobs") for c in clients[:5]))
        await clients[9].send("ping", {"n": 1})
        started = time.monotonic()
        live.server.should_exit = True
        await gather_all(*(c.drain_until_closed(timeout_s=10.0) for c in clients))
        closed_s = time.monotonic() - started
        assert [c.close_code for c in clients] == [1001] * 10
        assert {c.close_reason for c in clients} == {"server shutting down"}
        await wait_for_condition(
            lambda: not live.thread.is_alive(), timeout_s=15.0, what="the server stops"
        )
        with pytest.raises(ConnectionRefusedError):
            await ws_connect(live.ws_url)
    finally:
        for c in clients:
            c.abort()

    # the real thing: SIGTERM to ``tonearm serve``
    music, data, database = tmp_path / "music", tmp_path / "data", tmp_path / "serve.db"
    music.mkdir()
    with tonearm_serve(
        tmp_path,
        "--db",
        str(database),
        "--data-dir",
        str(data),
        "--library",
        str(music),
        "--no-scan",
        "--on-shutdown",
        "cancel",
    ) as (process, address):
        url, ws_url = f"http://{address}", f"ws://{address}/ws"
        async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S) as client:

            async def up() -> bool:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    return (await client.get("/api/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for_condition(up, timeout_s=60.0, what="tonearm serve answers")
            listeners = await gather_all(*(ws_connect(ws_url) for _ in range(3)))
            stuck = await ws_connect_stuck(ws_url, int(address.rsplit(":", 1)[1]))
            try:
                await gather_all(*(c.subscribe("jobs") for c in listeners))
                # fill the stuck client's buffers: pings it sends come back as big pongs
                chunk = blob(60_000, 1)
                for n in range(math.ceil((wmem_max_bytes() + 1.5 * 2**20) / 60_000)):
                    await stuck.send("ping", {"n": n, "pad": chunk})
                    await asyncio.sleep(0.0 if n < 35 else 0.055)  # within 40 at once, 20/s
                answer = await upload(client, "long.wav", long_wav.read_bytes())
                assert answer.status_code == 202, answer.text
                job_id = answer.json()["id"]
                await wait_job(client, job_id, until=("running",))

                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await gather_all(*(c.drain_until_closed(timeout_s=15.0) for c in listeners))
                closed_s = time.monotonic() - started
                assert [c.close_code for c in listeners] == [1001] * 3
                async with httpx.AsyncClient(base_url=url, timeout=5.0) as fresh:
                    with pytest.raises(httpx.TransportError):
                        await fresh.get("/api/health")  # no longer accepting
                code = await asyncio.to_thread(_wait_exit, process, 30.0)
                exit_s = time.monotonic() - started
            finally:
                stuck.abort()
                for c in listeners:
                    c.abort()
    log = (tmp_path / "serve.log").read_text()
    assert code in (0, -signal.SIGTERM), f"exit status {code}:\n{log}"
    assert exit_s < 10.0, f"tonearm serve took {exit_s:.1f} s to exit on SIGTERM:\n{log}"
    with LibraryManager(str(database)) as library:
        stored = JobStore(library.db).get(job_id)
    assert stored is not None
    assert stored.state == "cancelled", stored
    assert [p for p in files_under(data) if STAGING_MARK in p.name] == []
    assert list(files_under(data / "jobs")) == [], "the cancelled job left its master"
    print(f"\nshutdown: sockets closed {closed_s:.2f} s after SIGTERM, exit after {exit_s:.2f} s")


def _wait_exit(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout_s:g} s after SIGTERM") from None


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_websocket_concurrent_state_updates(served_library: ServedLibrary) -> None:
    """Concurrent state updates do not conflict.

    * Player state: 6 clients send 15 ``player.state`` updates each, all at once. Every client
      receives all 90, each sender's in its order, every client in the same order; each relay
      names its real sender in ``from`` (a client cannot claim another's id); the hub keeps the
      last one, and a new subscriber is handed exactly that.
    * Library state: 20 tracks marked favourite and 20 unmarked at once, each write answered
      with the new state and announced by one ``library.changed``; the favourites list ends
      exactly as the writes say.
    """
    live = served_library.live
    hub = live.state.hub
    async with http(live, connections=None) as client, ws_clients(live.ws_url, 7) as clients:
        senders, watcher = clients[:6], clients[6]
        earlier = hub.player_state
        await gather_all(*(c.subscribe("player") for c in senders))
        if earlier is not None:  # a new subscriber is handed the state first
            handed_first = await gather_all(*(c.next("player.state") for c in senders))
            assert all(m["data"] == earlier for m in handed_first)
        await watcher.subscribe("library")

        async def send_states(c: WsClient, index: int) -> None:
            for seq in range(15):
                state: dict[str, Any] = {"client": index, "seq": seq, "position_s": seq * 0.5}
                if index == 0:
                    state["from"] = 999_999  # claims to be someone else
                await c.send("player.state", state)

        await gather_all(*(send_states(c, i) for i, c in enumerate(senders)))
        relayed = await gather_all(*(collect(c, 90, message_type="player.state") for c in senders))
        orders = [[(m["data"]["client"], m["data"]["seq"]) for m in got] for got in relayed]
        assert all(order == orders[0] for order in orders), "clients saw different orders"
        for index in range(6):
            assert [seq for who, seq in orders[0] if who == index] == list(range(15))
        for message in relayed[0]:
            sender = senders[message["data"]["client"]]
            assert message["data"]["from"] == sender.id, (
                f"relayed as from {message['data']['from']}"
            )
        last = relayed[0][-1]["data"]
        assert hub.player_state is not None
        assert {k: v for k, v in hub.player_state.items() if k != "from"} == {
            k: v for k, v in last.items() if k != "from"
        }
        async with ws_clients(live.ws_url, 1) as (newcomer,):
            await newcomer.subscribe("player")
            handed = await newcomer.next("player.state")
            assert (handed["data"]["client"], handed["data"]["seq"]) == (
                last["client"],
                last["seq"],
            )

        page = (await client.get("/api/tracks", params={"limit": 40, "order": "path"})).json()
        chosen = [t["id"] for t in page["items"]]
        assert len(chosen) == 40
        marks = {track_id: i % 2 == 0 for i, track_id in enumerate(chosen)}
        answers = await gather_all(
            *(
                client.put(f"/api/tracks/{track_id}/favourite", json={"favourite": mark})
                for track_id, mark in marks.items()
            )
        )
        assert [a.json()["favourite"] for a in answers] == list(marks.values())
        favourites = {t["id"] for t in (await client.get("/api/favourites")).json()}
        assert favourites & set(chosen) == {t for t, mark in marks.items() if mark}
        changed = await collect(watcher, 40, message_type="library.changed")
        assert sorted(m["data"]["track_id"] for m in changed) == sorted(chosen)
        for track_id in chosen:  # leave the shared library as it was
            await client.put(f"/api/tracks/{track_id}/favourite", json={"favourite": False})


# --- Background tasks (plan 21-25) ----------------------------------------------------------


async def events_until(
    client: WsClient, stop: Callable[[dict[str, Any]], bool], *, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Every message up to and including the first for which ``stop`` is true (pings
    answered, not returned)."""
    deadline = time.monotonic() + timeout_s
    messages: list[dict[str, Any]] = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no closing event within {timeout_s:g} s: {messages[-5:]}"
        message = await client.recv(timeout_s=remaining)
        if message["type"] == "ping":
            await client.pong(message)
            continue
        messages.append(message)
        if stop(message):
            return messages


def scan_finished(message: dict[str, Any]) -> bool:
    return bool(message["type"] == "scan.finished")


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_background_task_execution(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """``POST /api/scan`` runs the scan and the analysis in the background: the answer (202,
    ``running``) comes at once; ``scan.progress`` events follow (scanning, then analysing),
    then one ``scan.finished`` (done, 8 added, 8 analysed) and ``library.changed`` for the scan
    and for the analysis; the tracks carry their loudness. Five concurrent starts run one scan.
    A rescan finds the 8 files unchanged. Health answers fast all along."""
    music = tmp_path / "bg-music"
    music.mkdir()
    write_tones(music, [f"bg_{i}.wav" for i in range(8)], seconds=4.0)  # a scan of ~1 s
    live = start_server(library_roots=(music,), scan_on_start=False, analysis_workers=1)
    async with http(live) as client, ws_clients(live.ws_url, 1) as (watcher,):
        await watcher.subscribe("scan", "library")
        latencies: list[float] = []

        async def poll_health(stop: asyncio.Event) -> None:
            while not stop.is_set():
                started = time.perf_counter()
                await health(client)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

        stop = asyncio.Event()
        poller = asyncio.create_task(poll_health(stop))
        started = time.perf_counter()
        starts = await gather_all(*(client.post("/api/scan") for _ in range(5)))
        answered_s = time.perf_counter() - started
        assert [s.status_code for s in starts] == [202] * 5
        assert {s.json()["state"] for s in starts} == {"running"}
        events = await events_until(watcher, scan_finished)
        stop.set()
        await asyncio.wait_for(poller, 10.0)

        kinds = [m["type"] for m in events]
        progress = [m["data"]["state"] for m in events if m["type"] == "scan.progress"]
        assert "running" in progress, progress
        assert "analysing" in progress, progress
        assert progress.index("analysing") > progress.index("running")
        finished = events[-1]["data"]
        assert (finished["state"], finished["added"], finished["analysed"]) == ("done", 8, 8)
        assert finished["errors"] == 0
        changes = [m["data"] for m in events if m["type"] == "library.changed"]
        assert {"reason": "scan"} in changes
        # the analysis' change follows the finished event
        after = await watcher.next("library.changed")
        assert after["data"] == {"reason": "analysis"}
        assert kinds.count("scan.finished") == 1
        status = (await client.get("/api/scan")).json()
        assert status["state"] == "done"
        tracks = (await client.get("/api/tracks")).json()["items"]
        assert len(tracks) == 8
        assert all(t["integrated_lufs"] is not None for t in tracks)

        again = await client.post("/api/scan")
        assert again.status_code == 202
        rescan = (await events_until(watcher, scan_finished))[-1]["data"]
        assert (rescan["state"], rescan["added"], rescan["unchanged"]) == ("done", 0, 8)
        with pytest.raises(TimeoutError):  # five starts, two scans: no third scan.finished
            await watcher.next("scan.finished", timeout_s=0.5)
    assert answered_s < 2.0
    assert max(latencies) < 1.0, f"health took {max(latencies):.2f} s during the scan"
    print(
        f"\nbackground scan: 5 starts answered in {answered_s * 1e3:.0f} ms; "
        f"{len(events)} events; health max {max(latencies) * 1e3:.0f} ms"
    )


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_background_task_isolation(
    start_server: Callable[..., LiveServer], tmp_path: Path, short_wav: Path
) -> None:
    """A scan (with analysis) and seven jobs at once do not interfere: the scan adds and
    analyses exactly the 5 new files, every job masters its own input to its own target, a
    subscriber of ``jobs`` sees only job events (of these jobs) and one of ``scan`` only scan
    events."""
    music = tmp_path / "iso-music"
    music.mkdir()
    write_tones(music, ["old_0.wav", "old_1.wav", "old_2.wav"])
    live = start_server(
        library_roots=(music,), analysis_workers=1, heavy_requests_per_minute=1_000_000
    )
    async with (
        http(live, connections=None) as client,
        ws_clients(live.ws_url, 2) as (jobs_w, scan_w),
    ):
        await wait_scan(client)
        old = {t["file_name"]: t["id"] for t in (await client.get("/api/tracks")).json()["items"]}
        await jobs_w.subscribe("jobs")
        await scan_w.subscribe("scan")
        write_tones(music, [f"new_{i}.wav" for i in range(5)], seconds=3.0)
        targets = {-13.0 - i: old[f"old_{i % 3}.wav"] for i in range(4)}
        answers = await gather_all(
            client.post("/api/scan"),
            *(
                client.post("/api/jobs", json={"track_id": t, "lufs": lufs})
                for lufs, t in targets.items()
            ),
            *(
                upload(client, f"iso_{i}.wav", short_wav.read_bytes(), lufs=-20.0 - i)
                for i in range(3)
            ),
        )
        assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
        job_ids = [a.json()["id"] for a in answers[1:]]
        wanted = [*targets, -20.0, -21.0, -22.0]
        scan_events = await events_until(scan_w, scan_finished)
        done = await gather_all(*(wait_job(client, job_id) for job_id in job_ids))
        assert [job["state"] for job in done] == ["done"] * 7, [j["error"] for j in done]
        for job_id, lufs in zip(job_ids, wanted, strict=True):
            report = (await client.get(f"/api/jobs/{job_id}/report")).json()
            assert report["output"]["integrated_lufs"] == pytest.approx(lufs, abs=0.5)
        job_events: list[dict[str, Any]] = []
        finished_ids: set[str] = set()
        while finished_ids != set(job_ids):
            message = await jobs_w.recv(timeout_s=EVENT_TIMEOUT_S)
            job_events.append(message)
            if message["type"] == "job.finished":
                finished_ids.add(message["data"]["job_id"])
    assert all(m["type"].startswith("job.") for m in job_events), {m["type"] for m in job_events}
    assert {m["data"]["job_id"] for m in job_events} == set(job_ids)
    assert all(m["type"].startswith("scan.") for m in scan_events)
    finished = scan_events[-1]["data"]
    assert (finished["state"], finished["added"], finished["unchanged"]) == ("done", 5, 3)
    assert finished["analysed"] == 5


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_background_task_error_handling(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """Errors in background work are recorded, reported and contained.

    * Scan: a file that is not audio is counted as an error; the scan still finishes ``done``
      with the good files in.
    * Jobs: a job on a track whose file was deleted after the scan fails, with an error naming
      the file but no server path, in its status, its ``job.failed`` event and its stored
      record; the two jobs submitted with it finish ``done``; the failed job leaves no file.
    """
    music = tmp_path / "err-music"
    music.mkdir()
    write_tones(music, ["fine_0.wav", "fine_1.wav", "gone.wav"])
    (music / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio" * 50)
    live = start_server(library_roots=(music,), analysis_workers=1)
    async with http(live, connections=None) as client, ws_clients(live.ws_url, 1) as (events,):
        status = await wait_scan(client)
        assert (status["state"], status["added"], status["errors"]) == ("done", 3, 1), status
        tracks = {
            t["file_name"]: t["id"] for t in (await client.get("/api/tracks")).json()["items"]
        }
        assert set(tracks) == {"fine_0.wav", "fine_1.wav", "gone.wav"}
        await events.subscribe("jobs")
        (music / "gone.wav").unlink()
        failing, *fine = await gather_all(
            submit_track_job(client, tracks["gone.wav"]),
            submit_track_job(client, tracks["fine_0.wav"], lufs=-16.0),
            submit_track_job(client, tracks["fine_1.wav"], lufs=-18.0),
        )
        failed = await wait_job(client, failing)
        assert failed["state"] == "failed"
        assert "gone.wav" in failed["error"]
        assert str(music) not in failed["error"]
        event = await events.next("job.failed", where=of_job(failing))
        assert event["data"]["error"] == live.state.engine.status(failing).error
        assert "gone.wav" in event["data"]["error"]
        assert [(await wait_job(client, job_id))["state"] for job_id in fine] == ["done", "done"]
        stored = live.state.job_store.get(failing)
        assert stored is not None
        assert stored.state == "failed"
        assert "gone.wav" in (stored.error or "")
        listed = (await client.get("/api/jobs", params={"state": "failed"})).json()
        assert [job["id"] for job in listed] == [failing]
        output = live.settings.jobs_dir / Path(failed["output_name"])
        assert [p for p in files_under(live.settings.jobs_dir) if p.name.startswith("gone")] == []
        assert not output.exists()
        assert (await health(client))["status"] == "ok"


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_background_task_cancellation(
    start_server: Callable[..., LiveServer], tmp_path: Path, short_wav: Path, long_wav: Path
) -> None:
    """Running and waiting background work can be cancelled.

    * ``DELETE /api/scan`` while the analysis runs (8 tracks of 20 s): the scan ends
      ``cancelled`` with tracks left to analyse, its thread stops, and a new scan analyses
      exactly the rest.
    * ``DELETE /api/jobs/{id}`` (one worker) of a job waiting for memory, of a job still in
      the queue, and of a running 4-minute job: each ends ``cancelled`` with a
      ``job.cancelled`` event and no output; the next job runs normally.
    """
    folder = tmp_path / "cancel-music"
    folder.mkdir()
    for i in range(8):  # 2 s of noise repeated: quick to write, 20 s to analyse
        audio = np.tile(synth.noise(SERVER_RATE, 2.0, level_db=-22, seed=40 + i), (1, 10))
        synth.write(folder / f"t_{i}.wav", audio, SERVER_RATE, subtype="PCM_16")
    live = start_server(library_roots=(folder,), scan_on_start=False, analysis_workers=1, workers=1)
    async with http(live, connections=None) as client, ws_clients(live.ws_url, 1) as (events,):
        await events.subscribe("scan", "jobs")
        assert (await client.post("/api/scan")).status_code == 202
        await events.next("scan.progress", where=lambda m: m["data"]["state"] == "analysing")
        answer = await client.delete("/api/scan")
        assert answer.status_code == 200
        finished = (await events_until(events, scan_finished))[-1]["data"]
        assert finished["state"] == "cancelled", finished
        assert finished["analysis_pending"] > 0
        assert finished["analysed"] < 8
        assert (await client.get("/api/scan")).json()["state"] == "cancelled"
        await wait_for_condition(
            lambda: not live.state.scans.running, timeout_s=10.0, what="the scan thread stops"
        )
        analysed_before = finished["analysed"]

        tracks = {
            t["file_name"]: t["id"] for t in (await client.get("/api/tracks")).json()["items"]
        }
        engine = live.state.engine
        gate = engine.memory.acquire(engine.memory.budget_bytes, timeout_s=5.0)
        try:
            waiting = await submit_track_job(client, tracks["t_0.wav"], lufs=-15.0)
            await wait_for_condition(
                lambda: engine.memory.waiting == 1, timeout_s=10.0, what="the worker waits"
            )
            queued = await submit_track_job(client, tracks["t_1.wav"], lufs=-15.0)
            answers = await gather_all(
                client.delete(f"/api/jobs/{queued}"), client.delete(f"/api/jobs/{waiting}")
            )
        finally:
            gate.release()
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert [a.json()["state"] for a in answers] == ["cancelled", "cancelled"]
        uploaded = await upload(client, "long.wav", long_wav.read_bytes())
        assert uploaded.status_code == 202, uploaded.text
        running = uploaded.json()["id"]
        await wait_job(client, running, until=("running",))
        answer = await client.delete(f"/api/jobs/{running}")
        assert answer.status_code == 200
        assert answer.json()["state"] == "cancelled"
        for job_id in (queued, waiting, running):
            await events.next("job.cancelled", where=of_job(job_id))
        assert files_under(live.settings.jobs_dir) == [], "a cancelled job left a file"
        after = (await upload(client, "short.wav", short_wav.read_bytes())).json()["id"]
        assert (await wait_job(client, after))["state"] == "done"

        assert (await client.post("/api/scan")).status_code == 202
        rest = (await events_until(events, scan_finished))[-1]["data"]
        assert rest["state"] == "done"
        assert rest["analysed"] + analysed_before == 8, (rest, analysed_before)
        assert rest["analysis_pending"] == 0


@pytest.mark.concurrency
@pytest.mark.async_test
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_background_task_cleanup(
    start_server: Callable[..., LiveServer], tmp_path: Path, short_wav: Path, long_wav: Path
) -> None:
    """After a mixed workload nothing is left behind.

    The workload: a scan with analysis, three mastering jobs, one that fails, one cancelled
    while running, an upload refused (not audio), WebSocket clients closed and dropped. Then,
    with the server still up: no staging or temporary file anywhere in its data folder, no
    upload folder of a refused upload, no output of a failed or cancelled job; the engine has
    its two worker threads, no scan or analysis thread runs, the hub holds no connection and
    no job runs. After it stops: every thread it started is gone and the process has no more
    file descriptors open than before.
    """
    gc.collect()
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = len(os.listdir("/proc/self/fd"))
    music = tmp_path / "clean-music"
    music.mkdir()
    write_tones(music, ["k_0.wav", "k_1.wav", "k_2.wav", "doomed.wav"])
    live = start_server(library_roots=(music,), analysis_workers=1, workers=2)
    data = live.settings.data_dir
    async with http(live, connections=None) as client:
        await wait_scan(client)
        tracks = {
            t["file_name"]: t["id"] for t in (await client.get("/api/tracks")).json()["items"]
        }
        clients = await gather_all(*(ws_connect(live.ws_url) for _ in range(6)))
        await gather_all(*(c.subscribe("jobs", "scan") for c in clients))
        (music / "doomed.wav").unlink()
        good = await gather_all(
            *(submit_track_job(client, tracks[f"k_{i}.wav"], lufs=-17.0) for i in range(3))
        )
        doomed = await submit_track_job(client, tracks["doomed.wav"])
        long_job = (await upload(client, "long.wav", long_wav.read_bytes())).json()["id"]
        refused = await upload(client, "notes.wav", b"not audio at all" * 100)
        assert refused.status_code == 415
        await wait_job(client, long_job, until=("running",))
        assert (await client.delete(f"/api/jobs/{long_job}")).status_code == 200
        states = [(await wait_job(client, j))["state"] for j in (*good, doomed, long_job)]
        assert states == ["done", "done", "done", "failed", "cancelled"]
        await close_all(clients[:3])
        for c in clients[3:]:
            c.abort()

        await wait_for_condition(
            lambda: live.state.hub.connection_count == 0, timeout_s=10.0, what="no connection"
        )
        assert [p for p in files_under(data) if STAGING_MARK in p.name] == []
        uploads = [
            p.relative_to(live.settings.uploads_dir) for p in files_under(live.settings.uploads_dir)
        ]
        assert [p.name for p in uploads] == ["long.wav"], uploads
        assert sorted(p.name for p in live.settings.uploads_dir.iterdir()) == [uploads[0].parts[0]]
        masters = [p.name for p in files_under(live.settings.jobs_dir)]
        assert sorted(masters) == ["k_0.wav", "k_1.wav", "k_2.wav"], masters
        assert live.state.engine.workers == 2
        names = [t.name for t in threading.enumerate() if t.ident not in threads_before]
        assert sorted(n for n in names if n.startswith("tonearm-job-")) == [
            "tonearm-job-0",
            "tonearm-job-1",
        ]
        assert not any(n.startswith(("tonearm-scan", "tonearm-analysis")) for n in names), names
        body = await health(client)
        assert (body["jobs_running"], body["websocket_clients"]) == (0, 0)
        assert live.state.engine.memory.in_use_bytes == 0

    live.server.should_exit = True
    await wait_for_condition(lambda: not live.thread.is_alive(), timeout_s=30.0, what="stopped")
    await wait_for_condition(
        lambda: {t.ident for t in threading.enumerate()} <= threads_before,
        timeout_s=10.0,
        what="every thread the server started has ended",
    )
    gc.collect()
    fds_after = len(os.listdir("/proc/self/fd"))
    assert fds_after <= fds_before, f"{fds_after - fds_before} more file descriptors open"
