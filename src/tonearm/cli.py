"""Command line: the composition root (``tonearm master``, ``analyze``; ``scan`` lives in
:mod:`tonearm.cli_library`, ``batch`` in :mod:`tonearm.cli_batch`, the shared parts in
:mod:`tonearm.cli_common`).

Exit codes: 0 success, 2 bad input or bad usage (one line on stderr, no traceback, no output
file left), 1 internal error (set ``TONEARM_DEBUG=1`` for the traceback), 130 interrupted.
Paths are not pre-validated by click: :func:`tonearm.audio_io.probe` says what is wrong with a
file in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from tonearm import __version__
from tonearm import cli_batch as cli_batch  # registers "batch" on the shared app
from tonearm import cli_library as cli_library  # registers "scan" on the shared app
from tonearm import cli_serve as cli_serve  # registers "serve" on the shared app
from tonearm.cli_common import (
    UsageError,
    app,
    exit_codes,
    load_plan,
    progress_bars,
    stderr,
    stdout,
)
from tonearm.errors import UserInputError
from tonearm.events import ProgressEvent
from tonearm.mastering.analysis import analyze_file
from tonearm.mastering.matching import MatchSettings
from tonearm.mastering.render import MasterSettings, master_file
from tonearm.mastering.report import MasteringReport
from tonearm.mastering.targets import PRESETS, resolve_target

__all__ = ["app", "main"]

TargetName = Enum("TargetName", {name: name for name in PRESETS}, type=str)  # type: ignore[misc]


class BitDepthOption(StrEnum):
    """Output sample formats for PCM containers."""

    pcm16 = "16"
    pcm24 = "24"
    float32 = "32f"


class _Bars:
    """A rich progress bar per stage, fed by :class:`ProgressEvent`s."""

    def __init__(self, progress: Progress, label: str) -> None:
        self._progress = progress
        self._label = label
        self._tasks: dict[tuple[str, int], TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        key = (event.stage, event.attempt)
        task = self._tasks.get(key)
        if task is None:
            suffix = f" (pass {event.attempt})" if event.attempt > 1 else ""
            task = self._progress.add_task(
                f"{event.stage:<8}{suffix} {self._label}", total=max(event.frames_total, 1)
            )
            self._tasks[key] = task
        self._progress.update(task, completed=event.frames_done)


def _write_json_atomically(path: Path, payload: Any) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=2, allow_nan=False)
            stream.write("\n")
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _check_output_path(path: Path | None, what: str) -> None:
    if path is None:
        return
    if path.is_dir():
        raise UserInputError(f"{what} path '{path}' is a directory")
    if not path.parent.is_dir():
        raise UserInputError(f"{what} folder '{path.parent}/' does not exist")


def _plot(path: Path, result: MasteringReport) -> None:
    """Draw the report figure (spectra, EQ curve, loudness over time) to ``path``."""
    from tonearm.mastering.plot import plot_master_report  # matplotlib only when asked

    if result.analysis is None or result.verification is None:
        raise UserInputError("nothing to plot")
    if result.verification.spectrum is None:
        raise UserInputError("the output spectrum was not measured")
    plot_master_report(
        path,
        mix=result.analysis.spectrum,
        result=result.verification.spectrum,
        reference=result.reference_spectrum,
        eq=result.plan.eq,
        short_term_before_lufs=result.analysis.loudness.short_term_lufs,
        short_term_after_lufs=result.verification.short_term_lufs,
        title=f"{Path(result.input_path).name} -> {Path(result.output_path).name}",
    )


@app.command()
def master(
    input_path: Annotated[
        Path, typer.Argument(metavar="IN", readable=False, help="Mix to master.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output file; format follows its extension."),
    ] = None,
    target: Annotated[
        TargetName, typer.Option("--target", "-t", help="Platform loudness preset.")
    ] = TargetName["spotify"],
    lufs: Annotated[
        float | None, typer.Option(help="Custom integrated loudness target (LUFS).")
    ] = None,
    ceiling: Annotated[float | None, typer.Option(help="Custom true-peak ceiling (dBTP).")] = None,
    strength: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="0 = loudness only, 1 = full processing.")
    ] = 1.0,
    bit_depth: Annotated[
        BitDepthOption | None, typer.Option("--bit-depth", help="PCM output depth.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the full JSON report here.")] = None,
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference",
            readable=False,
            help="Match this track's loudness, tonal balance and width (repeat for several).",
        ),
    ] = None,
    no_eq: Annotated[bool, typer.Option("--no-eq", help="Do not match tonal balance.")] = False,
    no_width: Annotated[bool, typer.Option("--no-width", help="Do not match width.")] = False,
    no_loudness: Annotated[
        bool, typer.Option("--no-loudness", help="Keep the mix's loudness.")
    ] = False,
    smoothing: Annotated[
        float, typer.Option(help="Smoothing of the matching curve, in octaves.")
    ] = 1.0 / 3.0,
    max_eq: Annotated[
        float,
        typer.Option("--max-eq", help="Largest boost or cut of the matching curve, in dB."),
    ] = 12.0,
    save_plan: Annotated[
        Path | None, typer.Option("--save-plan", help="Save the plan as JSON (a preset).")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", readable=False, help="Apply a saved plan (gain re-solved)."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw spectra, EQ curve and loudness to this PNG.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary or progress.")] = False,
) -> None:
    """Master IN to a loudness target with a true-peak ceiling, or to match references."""
    with exit_codes():
        for path, what in ((report, "report"), (save_plan, "plan"), (plot, "plot")):
            _check_output_path(path, what)
        if plot is not None and plot.suffix.lower() != ".png":
            raise UserInputError(f"plot must be a .png file, got '{plot.name}'")
        if plan is not None and reference:
            raise UserInputError("use --plan or --reference, not both")
        references = tuple(str(path) for path in reference or ())
        settings = MasterSettings(
            target=resolve_target(
                str(target.value),
                lufs=None if references else lufs,
                ceiling_dbtp=ceiling,
            ),
            strength=strength,
            bit_depth=None if bit_depth is None else bit_depth.value,
            references=references,
            match=MatchSettings(
                match_eq=not no_eq,
                match_width=not no_width,
                match_loudness=not no_loudness,
                smoothing_octaves=smoothing,
                max_eq_db=max_eq,
                lufs=lufs if references else None,
            ),
            plan=None if plan is None else load_plan(plan),
            output_spectrum=plot is not None,
        )
        with progress_bars(quiet) as progress:
            result = master_file(
                input_path, output, settings=settings, on_progress=_Bars(progress, input_path.name)
            )
        if report is not None:
            _write_json_atomically(report, result.to_dict())
        if save_plan is not None:
            _write_json_atomically(save_plan, result.plan.to_dict())
        if plot is not None:
            _plot(plot, result)
        if not quiet:
            for line in result.summary_lines():
                stdout.print(line, markup=False)


@app.command()
def analyze(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", readable=False, help="Files to analyse.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per file, one per line.")
    ] = False,
) -> None:
    """Measure loudness, loudness range, true peak and the fingerprint of each FILE."""
    failed = False
    table = Table("file", "LUFS", "dBTP", "LRA", "rate", "ch", "seconds")
    with progress_bars(as_json) as progress:
        for path in files:
            try:
                with exit_codes():
                    result = analyze_file(path, on_progress=_Bars(progress, path.name))
            except typer.Exit as exit_:
                if exit_.exit_code != 2:
                    raise
                failed = True
                continue
            summary = result.to_dict()
            if as_json:
                sys.stdout.write(json.dumps({"path": str(path), **summary}, allow_nan=False) + "\n")
            else:
                table.add_row(
                    path.name,
                    f"{result.loudness.integrated_lufs:.2f}",
                    f"{result.true_peak_dbtp:.2f}",
                    f"{result.loudness.loudness_range_lu:.1f}",
                    str(result.sample_rate),
                    str(result.channels),
                    f"{result.duration_s:.1f}",
                )
    if not as_json and table.row_count:
        stdout.print(table)
    if failed:
        raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"tonearm {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """tonearm: adaptive mastering engine and music library."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage errors become one ``error:`` line and exit 2."""
    try:
        result = app(args=argv, prog_name="tonearm", standalone_mode=False)
    except UsageError as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        stderr.print(f"error: {' '.join(message.split())}", markup=False)
        sys.exit(2)
    except typer.Abort:
        stderr.print("interrupted", markup=False)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
