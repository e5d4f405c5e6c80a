"""A real uvicorn serving tonearm on a free loopback port, in a background thread.

``running_server(settings)`` starts :class:`tonearm.server.serve.TonearmServer` (uvicorn with
the app's lifespan), waits until it listens, yields a :class:`LiveServer` and stops it on exit,
every wait bounded. Tests talk to it over real sockets (httpx, websockets).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tonearm.server.serve import TonearmServer
from tonearm.server.settings import ServerSettings

START_TIMEOUT_S = 30.0
SCAN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@dataclass
class LiveServer:
    server: TonearmServer
    thread: threading.Thread
    settings: ServerSettings
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def state(self):  # the running ServerState (for assertions on the real parts)
        return self.server.app.state.tonearm


def server_settings(tmp_path: Path, **changes: object) -> ServerSettings:
    """Settings for a test server: port 0 (a free one), files under ``tmp_path``."""
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "database": str(tmp_path / "library.db"),
        "data_dir": tmp_path / "data",
    }
    values.update(changes)
    return ServerSettings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_server(settings: ServerSettings) -> Iterator[LiveServer]:
    server = TonearmServer(settings)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server stopped while starting")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the server did not start within {START_TIMEOUT_S:g} s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(server, thread, settings, port)
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        assert not thread.is_alive(), "the server did not stop in time"


def wait_for_scan(client: httpx.Client, *, timeout_s: float = SCAN_TIMEOUT_S) -> dict[str, Any]:
    """Poll ``GET /api/scan`` until the scan (and the analysis after it) is over; its status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status: dict[str, Any] = client.get("/api/scan").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        assert time.monotonic() < deadline, f"scan still {status['state']} after {timeout_s} s"
        time.sleep(0.05)


def wait_for_scan_done(client: httpx.Client, *, timeout_s: float = SCAN_TIMEOUT_S) -> None:
    """:func:`wait_for_scan`, which must end ``done``."""
    status = wait_for_scan(client, timeout_s=timeout_s)
    assert status["state"] == "done", f"the scan ended {status['state']}: {status}"
