"""``tonearm serve``: the REST + WebSocket server on uvicorn (a command of the shared app).

With no ``--library`` folder it serves the demo music bundled with the checkout (``demo/``).
Binding beyond loopback needs a token (``--token`` or ``TONEARM_TOKEN``).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import platformdirs
import typer

from tonearm.cli_common import app, exit_codes, stderr
from tonearm.errors import UserInputError
from tonearm.library.paths import default_database_path
from tonearm.library.records import display_path

__all__ = ["demo_folder", "serve"]


class ShutdownPolicy(StrEnum):
    finish = "finish"
    cancel = "cancel"


class ServeExecutor(StrEnum):
    thread = "thread"
    process = "process"
    dask = "dask"


def demo_folder() -> Path | None:
    """The bundled demo music (``demo/`` of the checkout), if it is there."""
    folder = Path(__file__).resolve().parents[2] / "demo"
    return folder if folder.is_dir() else None


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tonearm", appauthor=False)) / "server"


@app.command()
def serve(
    library: Annotated[
        list[Path] | None,
        typer.Option(
            "--library",
            "-l",
            readable=False,
            help="Music folder to serve (repeat for several); default: the bundled demo music.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=0, max=65535)] = 8765,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help=f"Library database file or URL. Default: {display_path(default_database_path())}",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Uploads and job outputs go here."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="TONEARM_TOKEN", help="Require this token on every request."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Mastering jobs at once.", min=1, max=256)] = 2,
    executor: Annotated[ServeExecutor, typer.Option(help="Where jobs run.")] = ServeExecutor.thread,
    on_shutdown: Annotated[
        ShutdownPolicy,
        typer.Option("--on-shutdown", help="Running jobs on SIGTERM: finish or cancel them."),
    ] = ShutdownPolicy.cancel,
    no_scan: Annotated[
        bool, typer.Option("--no-scan", help="Do not scan new library folders on start.")
    ] = False,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option("--allow-origin", help="Another origin browsers may connect from."),
    ] = None,
) -> None:
    """Serve the library, the mastering jobs and the web player over HTTP and WebSocket."""
    with exit_codes():
        from pydantic import ValidationError

        from tonearm.server.settings import ServerSettings

        roots = list(library or [])
        if not roots:
            demo = demo_folder()
            roots = [demo] if demo is not None else []
        for root in roots:
            if not root.is_dir():
                raise UserInputError(f"library folder '{root}' does not exist")
        try:
            settings = ServerSettings(
                host=host,
                port=port,
                database=db or default_database_path(),
                library_roots=tuple(root.resolve() for root in roots),
                data_dir=(data_dir or _default_data_dir()).resolve(),
                token=token or None,
                workers=workers,
                executor=executor.value,
                on_shutdown=on_shutdown.value,
                allowed_origins=tuple(allow_origin or ()),
                scan_on_start=not no_scan,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UserInputError(str(first.get("msg", exc)).removeprefix("Value error, ")) from None
        if db is None:
            os.makedirs(os.path.dirname(settings.database), exist_ok=True)
        from tonearm.server.serve import serve as run_server

        stderr.print(
            f"tonearm serving {', '.join(str(r) for r in settings.library_roots) or 'no folder'}"
            f" on http://{settings.host}:{settings.port}/"
        )
        run_server(settings)
