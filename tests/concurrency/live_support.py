"""Support for the async-operation tests: the library a live server is started on, and async
clients of it (HTTP polls, WebSocket clients), every wait bounded.

:class:`ServedLibrary` is a running server with its library (``conftest.served_library``);
:func:`write_tones` writes distinct short noise files into a library folder.
:class:`WsClient` wraps a ``websockets`` client connection speaking the hub's protocol (JSON
``{"type", "data"}``): :func:`ws_connect` opens one and reads its ``welcome``;
:func:`ws_connect_stuck` opens one that never reads (a tiny receive buffer, the client library
pauses after one frame), for the slow-client tests. A hub ``ping`` met while waiting for
something else is answered with a ``pong``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from tests.mastering import synth
from tests.server.live import LiveServer

__all__ = [
    "HTTP_TIMEOUT_S",
    "RECV_TIMEOUT_S",
    "SERVER_RATE",
    "SHORT_SECONDS",
    "ServedLibrary",
    "WsClient",
    "free_port",
    "track_ids",
    "upload",
    "wait_first_scan",
    "wait_for_condition",
    "wait_job",
    "wait_scan",
    "write_tones",
    "ws_connect",
    "ws_connect_stuck",
]

HTTP_TIMEOUT_S = 30.0
RECV_TIMEOUT_S = 10.0
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 3.0
POLL_S = 0.02
FINISHED_JOB_STATES = ("done", "failed", "cancelled")
STUCK_RECEIVE_BUFFER_BYTES = 8192
"""SO_RCVBUF of a client that never reads (set before connecting: no autotuning)."""

SERVER_RATE = 44100
SHORT_SECONDS = 2.0
SCAN_TIMEOUT_S = 60.0

Message = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ServedLibrary:
    """A live server and its library: ``ids`` maps the real files' names to track ids."""

    live: LiveServer
    music: Path
    ids: dict[str, int]
    seeded: int
    """Rows added straight to the database (paths that do not exist, outside the roots)."""


def write_tones(
    folder: Path, names: Iterable[str], *, seconds: float = SHORT_SECONDS
) -> list[Path]:
    """Distinct short noise files (seeded by position) in ``folder``."""
    paths = []
    for i, name in enumerate(names):
        audio = synth.noise(SERVER_RATE, seconds, level_db=-20 - i % 6, seed=100 + i)
        paths.append(synth.write(folder / name, audio, SERVER_RATE))
    return paths


def wait_first_scan(live: LiveServer, *, timeout_s: float = SCAN_TIMEOUT_S) -> None:
    """Wait (bounded) until the server's scan (and analysis) has finished."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=live.url, timeout=30.0) as client:
        while (state := client.get("/api/scan").json()["state"]) != "done":
            assert state not in ("failed", "cancelled"), f"the first scan ended {state}"
            assert time.monotonic() < deadline, f"the first scan took over {timeout_s:g} s"
            time.sleep(0.05)


def track_ids(live: LiveServer, names: Iterable[str]) -> dict[str, int]:
    """Track ids of the library files called ``names`` (every page read)."""
    wanted = set(names)
    found: dict[str, int] = {}
    with httpx.Client(base_url=live.url, timeout=30.0) as client:
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 500, "order": "path"}
            if cursor is not None:
                params["cursor"] = cursor
            page = client.get("/api/tracks", params=params).json()
            found.update(
                (t["file_name"], t["id"]) for t in page["items"] if t["file_name"] in wanted
            )
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert found.keys() == wanted, f"not in the library: {sorted(wanted - found.keys())}"
    return found


def free_port() -> int:
    """A loopback port nothing listens on now (for a server started as a process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_for_condition(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    what: str,
) -> float:
    """Poll ``condition`` (sync or async) until it is true; the seconds it took.

    ``AssertionError`` naming ``what`` when it is still false after ``timeout_s``.
    """
    started = time.monotonic()
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, f"{what}: not within {timeout_s:g} s"
        await asyncio.sleep(POLL_S)


async def wait_scan(
    client: httpx.AsyncClient,
    *,
    timeout_s: float = 60.0,
    until: tuple[str, ...] = ("done",),
) -> Message:
    """Poll ``GET /api/scan`` until its state is one of ``until``; the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status: Message = (await client.get("/api/scan")).json()
        if status["state"] in until:
            return status
        assert status["state"] not in ("failed", "cancelled", "done"), f"the scan ended {status}"
        assert time.monotonic() < deadline, f"the scan is still {status['state']} ({timeout_s} s)"
        await asyncio.sleep(POLL_S)


async def wait_job(
    client: httpx.AsyncClient,
    job_id: str,
    *,
    timeout_s: float = 60.0,
    until: tuple[str, ...] = FINISHED_JOB_STATES,
) -> Message:
    """Poll ``GET /api/jobs/{job_id}`` until its state is one of ``until``; the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: Message = response.json()
        if job["state"] in until:
            return job
        assert job["state"] not in FINISHED_JOB_STATES, f"job {job_id} ended {job['state']}"
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} ({timeout_s} s)"
        await asyncio.sleep(POLL_S)


async def upload(
    client: httpx.AsyncClient, name: str, content: bytes, **fields: str | float
) -> httpx.Response:
    """``POST /api/jobs/upload`` of one file with form fields."""
    data = {key: str(value) for key, value in fields.items()}
    return await client.post("/api/jobs/upload", files={"file": (name, content)}, data=data)


class WsClient:
    """One client socket of the hub, with JSON helpers (every receive has a timeout)."""

    def __init__(self, connection: ClientConnection, welcome: Message | None) -> None:
        self.connection = connection
        self.welcome = welcome
        self.pings_answered = 0

    @property
    def id(self) -> int:
        assert self.welcome is not None, "a stuck client has not read its welcome"
        connection_id: int = self.welcome["data"]["connection_id"]
        return connection_id

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self.connection.close_reason

    async def send(self, message_type: str, data: Any = None) -> None:
        await asyncio.wait_for(
            self.connection.send(json.dumps({"type": message_type, "data": data})),
            RECV_TIMEOUT_S,
        )

    async def send_raw(self, payload: str | bytes) -> None:
        await asyncio.wait_for(self.connection.send(payload), RECV_TIMEOUT_S)

    async def recv(self, *, timeout_s: float = RECV_TIMEOUT_S) -> Message:
        """The next message (``TimeoutError`` after ``timeout_s``, ``ConnectionClosed`` when
        the socket closed)."""
        raw = await asyncio.wait_for(self.connection.recv(), timeout_s)
        message: Message = json.loads(raw)
        return message

    async def next(
        self,
        message_type: str,
        *,
        timeout_s: float = RECV_TIMEOUT_S,
        where: Callable[[Message], bool] | None = None,
    ) -> Message:
        """The next message of ``message_type`` (matching ``where``), skipping others and
        answering hub pings on the way."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {message_type} within {timeout_s:g} s")
            message = await self.recv(timeout_s=remaining)
            if message["type"] == message_type and (where is None or where(message)):
                return message
            if message["type"] == "ping":
                await self.pong(message)

    async def pong(self, ping: Message) -> None:
        await self.send("pong", ping.get("data"))
        self.pings_answered += 1

    async def subscribe(self, *topics: str) -> None:
        await self.send("subscribe", {"topics": list(topics)})
        answer = await self.next("subscribed")
        assert set(topics) <= set(answer["data"]["topics"]), answer

    async def drain_until_closed(self, *, timeout_s: float = RECV_TIMEOUT_S) -> list[Message]:
        """Read until the server closes the socket; the messages read on the way.

        ``TimeoutError`` when it stays open ``timeout_s`` (measured from the last message).
        """
        messages = []
        while True:
            try:
                messages.append(await self.recv(timeout_s=timeout_s))
            except ConnectionClosed:
                return messages

    async def close(self) -> None:
        await asyncio.wait_for(self.connection.close(), CLOSE_TIMEOUT_S + 1.0)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed client)."""
        transport = self.connection.transport
        transport.abort()


async def ws_connect(url: str, *, origin: str | None = None, read_welcome: bool = True) -> WsClient:
    """Connect to the hub at ``url`` and read the ``welcome``."""
    connection = await connect(
        url,
        open_timeout=OPEN_TIMEOUT_S,
        close_timeout=CLOSE_TIMEOUT_S,
        ping_interval=None,  # the hub runs its own heartbeat
        compression=None,  # message sizes on the wire are what the tests publish
        max_size=2**24,
        origin=None if origin is None else Origin(origin),
    )
    if not read_welcome:
        return WsClient(connection, None)
    welcome = json.loads(await asyncio.wait_for(connection.recv(), RECV_TIMEOUT_S))
    assert welcome["type"] == "welcome", welcome
    return WsClient(connection, welcome)


async def ws_connect_stuck(url: str, port: int) -> WsClient:
    """A client that reads nothing: an 8 KiB receive buffer, paused after one frame.

    It sends well (subscribe with :meth:`WsClient.send`); everything sent to it piles up in
    the server's buffers until it starts reading.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STUCK_RECEIVE_BUFFER_BYTES)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), OPEN_TIMEOUT_S
        )
        connection = await connect(
            url,
            sock=sock,
            open_timeout=OPEN_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            ping_interval=None,
            compression=None,
            max_queue=1,
            max_size=2**24,
        )
    except BaseException:
        sock.close()
        raise
    return WsClient(connection, None)
