"""Run the server on uvicorn: :func:`serve` (``tonearm serve``) and :class:`TonearmServer`.

On SIGTERM or Ctrl-C uvicorn stops accepting connections; :class:`TonearmServer` then closes
every WebSocket with 1001 (uvicorn's own close would say 1012) before uvicorn drains the HTTP
connections, and the app's lifespan finishes or cancels the running jobs (``on_shutdown``)
and closes the library. The whole shutdown is bounded by the settings' grace period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from tonearm.server.app import create_app

if TYPE_CHECKING:
    import socket

    from fastapi import FastAPI

    from tonearm.server.settings import ServerSettings

__all__ = ["TonearmServer", "serve", "uvicorn_config"]

WS_FRAME_LIMIT_BYTES = 1024 * 1024
"""uvicorn drops larger frames outright (1009); up to this the hub answers with a clear error."""


class TonearmServer(uvicorn.Server):
    """uvicorn's server for ``settings``, closing the hub's sockets with 1001 first when it
    shuts down. ``server.app`` is the FastAPI application."""

    def __init__(self, settings: ServerSettings) -> None:
        self.app = create_app(settings)
        super().__init__(uvicorn_config(settings, self.app))

    def _abort_stuck_sockets(self) -> None:
        """Sockets that cannot take a close frame would hold the shutdown for the whole grace
        period (the hub's send timeout, then uvicorn's): cut them now."""
        for protocol in list(self.server_state.connections):
            if _stuck(protocol):
                protocol.transport.abort()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.app.state, "tonearm", None)
        if state is not None:
            for server in self.servers:  # stop accepting before saying goodbye
                server.close()
            self._abort_stuck_sockets()
            await state.hub.close_all()
        await super().shutdown(sockets)


def _stuck(protocol: object) -> bool:
    """A WebSocket whose peer stopped reading: its write buffer is over the high-water mark."""
    transport = getattr(protocol, "transport", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol) or transport is None:
        return False
    return bool(transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1])


def uvicorn_config(settings: ServerSettings, app: FastAPI) -> uvicorn.Config:
    """uvicorn's configuration for ``settings`` (one worker, the websockets protocol)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        ws_max_size=WS_FRAME_LIMIT_BYTES,
        ws_ping_interval=None,  # the hub sends its own pings (and closes with 1001)
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
    )


def serve(settings: ServerSettings) -> None:
    """Serve until SIGTERM / Ctrl-C (blocks)."""
    TonearmServer(settings).run()
