"""The web player's files: ``/`` answers its ``index.html`` and ``/assets`` its scripts and styles.

Vite builds them from ``web/`` into ``static/`` beside this module (``make web``; ``make run``
and ``make test`` build them when missing or older than their sources). The assets' names carry
a content hash, so they are cached for a year; ``index.html`` is revalidated every time. Without
a build, ``/`` answers a page saying how to make one (503), never a 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

if TYPE_CHECKING:
    import os

    from fastapi import FastAPI
    from starlette.types import Scope

__all__ = ["STATIC_DIR", "install_web"]

STATIC_DIR = Path(__file__).parent / "static"
"""Where ``npm run build`` in ``web/`` writes the player."""

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>tonearm: the web player is not built</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;background:#0e1014;color:#e8eaf0;margin:0;
display:grid;place-items:center;min-height:100vh}}main{{max-width:600px;padding:32px}}
code,pre{{background:#191c23;border-radius:6px;padding:2px 6px}}pre{{padding:12px 16px}}
a{{color:#f5a524}}</style></head>
<body><main><h1>The web player is not built yet</h1>
<p>tonearm's server is running, but the player's files are missing from
<code>{where}</code>. Build them once (Node.js 20.19+ and npm), then reload this page:</p>
<pre>make web</pre>
<p>or by hand: <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>.
<code>make run</code> builds them by itself.</p>
<p>The API works meanwhile: its pages are at <a href="/docs">/docs</a>.</p></main></body></html>
"""


def install_web(app: FastAPI, static_dir: Path = STATIC_DIR) -> None:
    """Serve the built player from ``static_dir`` at ``/`` (checked on every request, so a
    build made while the server runs is picked up)."""
    index = static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        """The web player (or how to build it)."""
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT.format(where=static_dir), status_code=503)
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/assets", _Assets(directory=static_dir / "assets", check_dir=False), name="assets")


class _Assets(StaticFiles):
    """Content-hashed files, cached for a year (a new build has new names); 404 for every
    path while nothing is built (Starlette's own check would answer 500)."""

    async def check_config(self) -> None:
        return None

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response
