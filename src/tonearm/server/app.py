"""The FastAPI application: :func:`create_app` wires the state, the routers and the hub.

The lifespan opens :class:`~tonearm.server.state.ServerState` (library, job engine, hub) and
starts a scan when a library folder has never been scanned (the first start, a new folder). On
shutdown it closes every socket with 1001 and stops the engine as the settings say (finish or
cancel running jobs) before closing the library.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import time
from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

import tonearm
from tonearm.errors import TonearmError, UserInputError
from tonearm.jobs.engine import JobState
from tonearm.mastering.targets import PRESETS
from tonearm.server import api_audio, api_jobs, api_library
from tonearm.server.hub import CLOSE_POLICY
from tonearm.server.schemas import Health, Preset, Version
from tonearm.server.state import ServerState, server_state
from tonearm.server.web import install_web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import ASGIApp, Receive, Scope, Send

    from tonearm.server.settings import ServerSettings

__all__ = ["create_app"]

State = Annotated[ServerState, Depends(server_state)]
PUBLIC_PATHS = ("/api/health", "/api/version")
"""Answered without a token (they tell nothing about the library)."""


class TokenGate:
    """Pure ASGI middleware: with a token set, every ``/api`` request and ``/ws`` socket must
    carry it (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``, the only way a browser's
    WebSocket can)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _carries_token(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return hmac.compare_digest(value[7:].strip(), self._token)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0].encode()
        return bool(given) and hmac.compare_digest(given, self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        guarded = scope["type"] in ("http", "websocket") and (
            path.startswith("/api") or path.startswith("/ws")
        )
        if not guarded or path in PUBLIC_PATHS or self._carries_token(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": "token needed"})
            return
        response = JSONResponse(
            {"detail": "a valid token is needed (Authorization: Bearer TOKEN)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def _origin_allowed(websocket: WebSocket, settings: ServerSettings) -> bool:
    """Browsers send ``Origin``; only the server's own and the configured ones may connect.
    Clients that send none (not a browser) are let through: the token guards them."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    own = {f"http://{host}", f"https://{host}"}
    return origin in own or origin in settings.allowed_origins


def create_app(settings: ServerSettings) -> FastAPI:
    """The tonearm server application for ``settings`` (uvicorn runs it)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await asyncio.to_thread(ServerState, settings)
        state.hub.bind_loop(asyncio.get_running_loop())
        gc.collect()
        gc.freeze()  # start-up's objects (modules, the app) out of every later collection
        app.state.tonearm = state
        unscanned = await asyncio.to_thread(state.scans.unscanned_roots)
        if settings.scan_on_start and unscanned:
            state.scans.start()
        try:
            yield
        finally:
            await state.hub.close_all()
            await asyncio.to_thread(state.close)

    app = FastAPI(
        title="tonearm",
        version=tonearm.__version__,
        summary="Adaptive mastering engine and music-library server",
        lifespan=lifespan,
    )
    if settings.token:
        app.add_middleware(TokenGate, token=settings.token)
    else:  # no token: only this machine's own names, so a DNS-rebinding page cannot reach it
        app.add_middleware(
            TrustedHostMiddleware,
            allowed_hosts=sorted({"127.0.0.1", "localhost", "::1", "[::1]", settings.host}),
        )

    @app.exception_handler(UserInputError)
    async def user_error(request: Request, exc: UserInputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(TonearmError)
    async def tonearm_error(request: Request, exc: TonearmError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=500)

    install_web(app)  # the web player at / (or how to build it)

    @app.get("/api/health", response_model=Health, tags=["service"])
    async def health(state: State) -> Health:
        """Liveness and a few live figures (no database query: cheap enough to poll)."""
        running = sum(s.state is JobState.RUNNING for s in state.engine.jobs())
        return Health(
            status="ok",
            version=tonearm.__version__,
            uptime_s=round(time.time() - state.started_at, 3),
            jobs_running=running,
            websocket_clients=state.hub.connection_count,
        )

    @app.get("/api/version", response_model=Version, tags=["service"])
    async def version() -> Version:
        return Version(version=tonearm.__version__)

    @app.get("/api/presets", response_model=list[Preset], tags=["mastering"])
    async def presets() -> list[Preset]:
        """The loudness targets a job or a mastered stream can ask for."""
        return [
            Preset(
                name=name,
                lufs=target.lufs,
                ceiling_dbtp=target.ceiling_dbtp,
                description=target.description,
            )
            for name, target in PRESETS.items()
        ]

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        state: ServerState = websocket.app.state.tonearm
        if not _origin_allowed(websocket, settings):
            await websocket.close(code=CLOSE_POLICY, reason="origin not allowed")
            return
        await websocket.accept()
        await state.hub.serve(websocket)

    app.include_router(api_library.router)
    app.include_router(api_audio.router)
    app.include_router(api_jobs.router)
    return app
