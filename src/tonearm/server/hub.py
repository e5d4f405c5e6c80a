"""The WebSocket hub at ``/ws``: topics, one bounded send queue per connection, heartbeat, limits.

Every message either way is JSON ``{"type": ..., "data": ...}``.

Client to server:

- ``subscribe`` / ``unsubscribe`` ``{"topics": [...]}`` of :data:`TOPICS`; answered ``subscribed``.
- ``pong`` (the answer to the server's ``ping``), ``ping`` (answered ``pong``).
- ``player.state`` ``{...}``: a player's state, relayed to every subscriber of ``player``.

Server to client: ``welcome``, ``subscribed``, ``ping``, ``pong``, ``error`` ``{code, message}``,
and the events: ``job.queued``, ``job.progress``, ``job.finished``, ``job.failed``,
``job.cancelled`` (topic ``jobs``), ``scan.progress``, ``scan.finished`` (``scan``),
``library.changed`` (``library``), ``player.state`` (``player``).

Guarantees:

- **Order**: one sender task per connection drains a FIFO queue, so messages on a connection
  keep the order they were published in.
- **Slow clients**: the queue holds ``ws_send_queue`` messages. Publishing never waits: a
  connection whose queue is full, or whose send takes longer than ``ws_send_timeout_s``, is
  closed (1008, "too slow") and forgotten, and no other connection notices.
- **Heartbeat**: ``ping`` every ``ws_ping_interval_s``; no ``pong`` within ``ws_pong_timeout_s``
  closes the connection with 1001.
- **Limits**: a token bucket per connection (``ws_messages_per_second``, ``ws_burst``) and a
  ``ws_max_message_bytes`` size limit; a message over either is answered with an ``error``
  (``rate_limited`` with ``retry_after_s``, ``message_too_large``) and dropped.
- **Shutdown**: :meth:`Hub.close_all` closes every connection with 1001.

Events from other threads (job workers, the scan) go through :meth:`Hub.publish_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

if TYPE_CHECKING:
    from tonearm.server.settings import ServerSettings

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_POLICY", "TOPICS", "Hub"]

TOPICS = ("jobs", "scan", "library", "player")
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


def encode(message_type: str, data: Any) -> str:
    """One wire message."""
    return json.dumps({"type": message_type, "data": data}, separators=(",", ":"), allow_nan=False)


class _TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` says how long to wait if empty."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is due."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


@dataclass(eq=False)
class Connection:
    """One client socket and its queue, topics, sender and heartbeat."""

    id: int
    websocket: WebSocket
    queue: asyncio.Queue[object]
    bucket: _TokenBucket
    topics: set[str] = field(default_factory=set)
    pong: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closing: bool = False
    close_code: int | None = None
    receiver: asyncio.Task[None] | None = None
    """The task reading the socket (cancelled when the socket cannot even take a close)."""


class Hub:
    """All open sockets of one server (use from the server's event loop)."""

    def __init__(self, settings: ServerSettings) -> None:
        self._settings = settings
        self._connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped_slow = 0
        """Connections closed because they did not keep up (a figure for tests and stats)."""
        self.player_state: dict[str, Any] | None = None
        """The last ``player.state`` a client sent (sent to new ``player`` subscribers)."""

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop :meth:`publish_threadsafe` hands events to (the server's)."""
        self._loop = loop

    # --- publishing -----------------------------------------------------------------------

    def publish(self, topic: str, message_type: str, data: Any) -> int:
        """Queue a message for every subscriber of ``topic``; how many got it. Never waits."""
        text = encode(message_type, data)
        delivered = 0
        for connection in list(self._connections.values()):
            if topic in connection.topics and self._offer(connection, text):
                delivered += 1
        return delivered

    def publish_threadsafe(self, topic: str, message_type: str, data: Any) -> None:
        """:meth:`publish` from any thread (dropped when the server's loop has stopped)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.publish, topic, message_type, data)

    def _offer(self, connection: Connection, text: str) -> bool:
        if connection.closing:
            return False
        try:
            connection.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped_slow += 1
            self._close_soon(connection, CLOSE_POLICY, "too slow: send queue full")
            return False
        return True

    def send(self, connection: Connection, message_type: str, data: Any) -> None:
        """Queue a message for one connection."""
        self._offer(connection, encode(message_type, data))

    # --- a connection's life ----------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        """Run one accepted socket until it closes (the ``/ws`` endpoint awaits this)."""
        settings = self._settings
        connection = Connection(
            id=next(self._ids),
            websocket=websocket,
            queue=asyncio.Queue(maxsize=settings.ws_send_queue),
            bucket=_TokenBucket(settings.ws_messages_per_second, settings.ws_burst),
        )
        self._connections[connection.id] = connection
        connection.tasks = [
            asyncio.create_task(self._sender(connection), name=f"ws-send-{connection.id}"),
            asyncio.create_task(self._heartbeat(connection), name=f"ws-ping-{connection.id}"),
        ]
        self.send(connection, "welcome", {"connection_id": connection.id, "topics": list(TOPICS)})
        connection.receiver = asyncio.create_task(
            self._receive_loop(connection), name=f"ws-recv-{connection.id}"
        )
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await connection.receiver
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # the server cancelled serve(): pass it on
                raise asyncio.CancelledError
        finally:
            await self._forget(connection)

    async def _receive_loop(self, connection: Connection) -> None:
        websocket = connection.websocket
        limit = self._settings.ws_max_message_bytes
        while not connection.closing:
            try:
                message = await websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                payload = message.get("bytes") or b""
                size = len(payload)
            else:
                size = len(raw.encode())
            if size > limit:
                self._error(
                    connection, "message_too_large", f"messages are limited to {limit} bytes"
                )
                continue
            wait_s = connection.bucket.take()
            if wait_s > 0.0:
                self._error(
                    connection,
                    "rate_limited",
                    f"too many messages: at most {self._settings.ws_messages_per_second:g}/s",
                    retry_after_s=round(wait_s, 3),
                )
                continue
            self._handle(connection, raw)

    def _handle(self, connection: Connection, raw: str | None) -> None:
        try:
            message = json.loads(raw) if raw is not None else None
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._error(connection, "bad_message", 'send JSON {"type": ..., "data": ...}')
            return
        message_type, data = message["type"], message.get("data")
        if message_type == "pong":
            connection.pong.set()
        elif message_type == "ping":
            self.send(connection, "pong", data)
        elif message_type in ("subscribe", "unsubscribe"):
            self._subscribe(connection, message_type, data)
        elif message_type == "player.state":
            if not isinstance(data, dict):
                self._error(connection, "bad_message", "player.state needs an object")
                return
            self.player_state = data
            self.publish("player", "player.state", {**data, "from": connection.id})
        else:
            self._error(connection, "unknown_type", f"unknown message type '{message_type}'")

    def _subscribe(self, connection: Connection, action: str, data: Any) -> None:
        topics = data.get("topics") if isinstance(data, dict) else None
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            self._error(connection, "bad_message", f'{action} needs {{"topics": [...]}}')
            return
        unknown = sorted(set(topics) - set(TOPICS))
        if unknown:
            self._error(
                connection,
                "unknown_topic",
                f"unknown topic(s) {', '.join(unknown)}; topics: {', '.join(TOPICS)}",
            )
            return
        if action == "subscribe":
            connection.topics.update(topics)
        else:
            connection.topics.difference_update(topics)
        self.send(connection, "subscribed", {"topics": sorted(connection.topics)})
        if action == "subscribe" and "player" in topics and self.player_state is not None:
            self.send(connection, "player.state", self.player_state)

    def _error(self, connection: Connection, code: str, text: str, **extra: Any) -> None:
        self.send(connection, "error", {"code": code, "message": text, **extra})

    async def _sender(self, connection: Connection) -> None:
        websocket = connection.websocket
        timeout_s = self._settings.ws_send_timeout_s
        while True:
            item = await connection.queue.get()
            try:
                async with asyncio.timeout(timeout_s):  # no task per send, unlike wait_for
                    await websocket.send_text(str(item))
            except TimeoutError:
                self.dropped_slow += 1
                connection.close_code = CLOSE_POLICY
                await self._close_socket(connection, reason="too slow: send timed out")
                return
            except (WebSocketDisconnect, RuntimeError, OSError):
                connection.closing = True
                return

    async def _heartbeat(self, connection: Connection) -> None:
        settings = self._settings
        while not connection.closing:
            await asyncio.sleep(settings.ws_ping_interval_s)
            connection.pong.clear()
            self.send(connection, "ping", {"t": time.time()})
            try:
                await asyncio.wait_for(connection.pong.wait(), settings.ws_pong_timeout_s)
            except TimeoutError:
                self._close_soon(connection, CLOSE_GOING_AWAY, "no pong")
                return

    def _close_soon(self, connection: Connection, code: int, reason: str) -> None:
        """Close after nothing more (the queue may be full: the socket is closed directly)."""
        if connection.closing:
            return
        connection.closing = True
        connection.close_code = code
        asyncio.get_running_loop().create_task(self._close_socket(connection, reason=reason))

    async def _close_socket(self, connection: Connection, *, reason: str = "") -> None:
        websocket = connection.websocket
        connection.closing = True
        if websocket.application_state is WebSocketState.CONNECTED:
            try:
                await asyncio.wait_for(
                    websocket.close(code=connection.close_code or 1000, reason=reason),
                    self._settings.ws_send_timeout_s,
                )
            except Exception:  # not even a close frame gets through: stop serving it now
                if connection.receiver is not None:
                    connection.receiver.cancel()

    async def _forget(self, connection: Connection) -> None:
        self._connections.pop(connection.id, None)
        connection.closing = True
        for task in connection.tasks:
            task.cancel()
        for task in connection.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close_all(self, *, reason: str = "server shutting down") -> None:
        """Close every connection with 1001 (graceful shutdown)."""
        connections = list(self._connections.values())
        for connection in connections:
            connection.closing = True
            connection.close_code = CLOSE_GOING_AWAY
        await asyncio.gather(
            *(self._close_socket(c, reason=reason) for c in connections), return_exceptions=True
        )
