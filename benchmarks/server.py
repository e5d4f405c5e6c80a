"""Benchmark the server under load from other processes: REST with wrk, WebSocket broadcast.

    .venv/bin/python benchmarks/server.py                      # 100,000 tracks, 1,000 sockets
    .venv/bin/python benchmarks/server.py --tracks 10000 --clients 200 --duration 5

Starts ``tonearm serve`` (one uvicorn worker, its own process) on a fresh SQLite library of
``--tracks`` synthetic tracks (``benchmarks.scan.fill_library``), then:

* **REST**, with ``wrk`` (``apt-get install wrk``; a separate process, ``--latency``) for
  ``--duration`` seconds at ``--connections`` connections: ``GET /api/health`` (target >= 3,000
  req/s), the first page of ``GET /api/tracks`` (50 tracks), a walk through every page by
  cursor (each wrk connection follows ``next_cursor``, so every request is a different page),
  and random ``offset`` pages over the whole library. Targets for the track list: >= 1,000
  req/s with p99 under 50 ms.
* **WebSocket**: ``--clients`` sockets held by ``--client-processes`` other Python processes
  (``benchmarks/ws_clients.py``: asyncio + websockets) subscribe to ``player``; this process
  sends ``player.state`` messages carrying their send time, ``--broadcasts`` times, 0.25 s
  apart, and every socket records when each arrived. Printed:
  connect time, the broadcast latency p50/p99/max over every (message, client) pair (target:
  1,000 clients, p99 under 250 ms) and messages lost.

No assertions; figures only. The server and the load share the machine's cores: on 2 cores
wrk takes one, so the REST figures are a lower bound for a server with its cores to itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.sync.client import connect as ws_connect  # noqa: E402

from benchmarks.scan import fill_library  # noqa: E402
from tonearm.library.manager import LibraryManager  # noqa: E402

START_TIMEOUT_S = 60.0
FILE_LIMIT = 8192

CURSOR_WALK = textwrap.dedent(
    """
    -- every connection walks the track list page by page, following next_cursor
    local cursor = nil
    request = function()
      local path = "/api/tracks?limit=50"
      if cursor then path = path .. "&cursor=" .. cursor end
      return wrk.format("GET", path)
    end
    response = function(status, headers, body)
      cursor = string.match(body, '"next_cursor":"([^"]+)"')
    end
    """
)
RANDOM_PAGES = textwrap.dedent(
    """
    -- random offset pages over the whole library
    math.randomseed(os.time())
    request = function()
      local offset = math.random(0, {pages}) * 50
      return wrk.format("GET", "/api/tracks?limit=50&offset=" .. offset)
    end
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FILE_LIMIT:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(FILE_LIMIT, hard), hard))


def start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).with_name("tonearm")),
        "serve",
        "--port",
        str(port),
        "--db",
        str(folder / "library.db"),
        "--data-dir",
        str(folder / "data"),
        "--library",
        str(folder / "music"),
        "--no-scan",
    ]
    server = subprocess.Popen(command, preexec_fn=raise_file_limit)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise TimeoutError("the server did not start")


def wrk(url: str, *, duration_s: int, connections: int, script: str | None) -> dict[str, float]:
    """Run wrk; requests/s and latency percentiles (ms)."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script:
            lua.write(script)
            command[1:1] = ["-s", lua.name]
    try:
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=duration_s + 60
        ).stdout
    finally:
        os.unlink(lua.name)
    figures = {"req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for label, value, unit in re.findall(r"\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\b", output):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        figures[f"p{label}_ms"] = float(value) * scale
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def websocket_load(url: str, clients: int, broadcasts: int, processes: int) -> None:
    """Hold ``clients`` sockets in ``processes`` child processes (``benchmarks/ws_clients.py``,
    so the receiving side is not one busy event loop), broadcast ``player.state`` from this
    process, and print the delivery latencies."""
    script = str(Path(__file__).with_name("ws_clients.py"))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    children = [
        subprocess.Popen(
            [sys.executable, script, url, str(share), str(broadcasts)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_file_limit,
        )
        for share in shares
        if share
    ]
    started = time.perf_counter()
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline().strip()  # each prints READY once subscribed
            if line != "READY":
                raise RuntimeError(f"a WebSocket client process said {line!r}")
        connect_s = time.perf_counter() - started
        with ws_connect(url, open_timeout=60) as sender:
            sender.recv(timeout=10)  # welcome
            for i in range(broadcasts):
                state = {"type": "player.state", "data": {"sent": time.time(), "i": i}}
                sender.send(json.dumps(state))
                time.sleep(0.25)
        latencies: list[float] = []
        for child in children:
            out, _ = child.communicate(timeout=120)
            latencies += json.loads(out.strip().splitlines()[-1])["latencies_s"]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    ordered = sorted(latencies)
    if not ordered:
        print("  no deliveries")
        return

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    print(f"  {clients} sockets in {len(children)} processes, subscribed in {connect_s:.2f} s")
    print(
        f"  broadcast latency p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms over {len(ordered)} deliveries; "
        f"lost {clients * broadcasts - len(ordered)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client-processes", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/server.py needs wrk: apt-get install wrk")
    cores = len(os.sched_getaffinity(0))
    print(
        f"{platform.processor() or platform.machine()}, {cores} cores, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="tonearm-server-") as temp:
        folder = Path(temp)
        (folder / "music").mkdir()
        started = time.perf_counter()
        with LibraryManager(folder / "library.db") as library:
            fill_library(library, args.tracks, seed=1)
        print(f"library of {args.tracks} tracks built in {time.perf_counter() - started:.1f} s")
        port = free_port()
        server = start_server(folder, port)
        try:
            base = f"http://127.0.0.1:{port}"
            pages = max(0, args.tracks // 50 - 1)
            runs = [
                ("GET /api/health", f"{base}/api/health", None),
                ("GET /api/tracks first page", f"{base}/api/tracks?limit=50", None),
                ("GET /api/tracks cursor walk", f"{base}/", CURSOR_WALK),
                (
                    "GET /api/tracks random offset",
                    f"{base}/",
                    RANDOM_PAGES.replace("{pages}", str(pages)),
                ),
            ]
            print(f"wrk: 2 threads, {args.connections} connections, {args.duration} s each")
            print(
                f"{'request':<32}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}"
            )
            for label, url, script in runs:
                wrk(url, duration_s=2, connections=args.connections, script=script)  # warm-up
                f = wrk(url, duration_s=args.duration, connections=args.connections, script=script)
                print(
                    f"{label:<32}{f['req_s']:>10.0f}{f.get('p50_ms', 0):>9.2f}"
                    f"{f.get('p90_ms', 0):>9.2f}{f.get('p99_ms', 0):>9.2f}{f['non_2xx']:>8.0f}"
                )
            print(f"WebSocket: {args.clients} clients, {args.broadcasts} broadcasts")
            websocket_load(
                f"ws://127.0.0.1:{port}/ws", args.clients, args.broadcasts, args.client_processes
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        print(f"server exited with {server.returncode}")


if __name__ == "__main__":
    main()
