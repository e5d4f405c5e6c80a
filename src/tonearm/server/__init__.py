"""The tonearm server: FastAPI REST under ``/api`` and a WebSocket hub at ``/ws``, on uvicorn.

- ``settings``: :class:`ServerSettings` (bind address, library, token, limits, shutdown policy).
- ``state``: :class:`ServerState`, what one running server owns (library, job engine, hub, scan,
  rate limits), opened and closed by the app's lifespan.
- ``app``: :func:`create_app`, the FastAPI application and its routers.
- ``api_*``: the REST routes (library, audio streams, jobs); ``schemas``: their pydantic models.
- ``hub``: the WebSocket hub (topics, bounded per-connection send queues, heartbeat, limits).
- ``serve``: :func:`serve`, uvicorn with graceful shutdown on SIGTERM.

``server`` may import ``jobs``, ``library``, ``mastering`` and below; only ``cli`` imports it.
"""
