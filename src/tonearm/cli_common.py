"""What every ``tonearm`` command shares: the typer app, the consoles, exit codes, progress.

Exit codes: 0 success, 2 bad input or bad usage (one line on stderr, no traceback, no output
file left), 1 internal error (set ``TONEARM_DEBUG=1`` for the traceback), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tonearm.errors import UserInputError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tonearm.mastering.plan import MasteringPlan

__all__ = [
    "UsageError",
    "app",
    "exit_codes",
    "load_plan",
    "progress_bars",
    "stderr",
    "stdout",
]

app = typer.Typer(
    name="tonearm",
    help="Adaptive mastering engine and music library.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# typer vendors click and exports only BadParameter; its base is the usage error of every kind
UsageError: type[Exception] = typer.BadParameter.__mro__[1]
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """Map exceptions to the documented exit codes, with one line on stderr."""
    try:
        yield
    except UserInputError as exc:
        stderr.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("TONEARM_DEBUG"):
            raise
        stderr.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
        raise typer.Exit(1) from None


def progress_bars(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=quiet or not stderr.is_terminal,
    )


def load_plan(path: Path) -> MasteringPlan:
    """Read a plan saved with ``--save-plan``; one clear line if it is not one."""
    from tonearm.mastering.plan import MasteringPlan

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"plan '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"cannot read plan '{path}': {exc}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"'{path}' is not a tonearm plan")
    return MasteringPlan.from_dict(data)
