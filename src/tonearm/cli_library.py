"""``tonearm scan``: the library half of the command line (a command of ``cli_common.app``).

It wires the library to the mastering engine: the scanner's analysis step gets
:func:`tonearm.jobs.library_analysis.mastering_analysis`, built on the engine's
``analyze_file`` (the library itself never imports the engine).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tonearm.cli_common import app, exit_codes, progress_bars, stderr, stdout
from tonearm.errors import UserInputError
from tonearm.jobs.library_analysis import mastering_analysis
from tonearm.library.paths import default_database_path
from tonearm.library.records import display_path

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from tonearm.library.analysis import AnalysisProgress, AnalysisSummary
    from tonearm.library.manager import ReplayGainSummary
    from tonearm.library.scanner import ScanProgress, ScanResult

__all__ = ["scan"]

SHOWN_ERRORS = 20


class _ScanBars:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._scan: TaskID | None = None
        self._analysis: TaskID | None = None

    def scanned(self, event: ScanProgress) -> None:
        if self._scan is None:
            self._scan = self._progress.add_task("scan", total=None)
        self._progress.update(
            self._scan,
            completed=event.files_seen,
            description=f"scan     {event.files_seen} files, {event.files_per_s:.0f}/s",
        )

    def analysed(self, event: AnalysisProgress) -> None:
        if self._analysis is None:
            self._analysis = self._progress.add_task("analyse", total=max(event.total, 1))
        self._progress.update(
            self._analysis,
            completed=event.done,
            description=f"analyse  {event.done}/{event.total} {Path(event.current_path).name}",
        )


@app.command()
def scan(
    folders: Annotated[
        list[Path],
        typer.Argument(metavar="DIR...", readable=False, help="Music folders to scan."),
    ],
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database file or URL (postgresql+psycopg://...). "
            f"Default: {display_path(default_database_path())}",
        ),
    ] = None,
    analysis: Annotated[
        bool, typer.Option("--analysis/--no-analysis", help="Measure new tracks after the scan.")
    ] = True,
    write_tags: Annotated[
        bool, typer.Option("--write-tags", help="Write ReplayGain 2.0 tags into the files.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Analysis workers.", min=1, max=64)] = max(
        1, min(4, os.cpu_count() or 1)
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
) -> None:
    """Scan DIR... into the library: tags, audio properties, loudness and fingerprints."""
    with exit_codes():
        for folder in folders:
            if not folder.is_dir():
                raise UserInputError(f"'{display_path(str(folder))}' is not a folder")
        from tonearm.library.manager import LibraryManager  # loaded only for this command

        cancel = threading.Event()
        with LibraryManager(db) as library, progress_bars(quiet) as progress:
            bars = _ScanBars(progress)
            try:
                result = library.scan(folders, cancel=cancel, on_progress=bars.scanned)
                summary = (
                    library.analyse(
                        mastering_analysis,
                        workers=workers,
                        cancel=cancel,
                        on_progress=bars.analysed,
                    )
                    if analysis
                    else None
                )
                tagged = library.write_replaygain_tags() if write_tags else None
            except KeyboardInterrupt:
                cancel.set()
                raise
        if not quiet:
            _print_summary(result, summary, tagged)


def _print_summary(
    result: ScanResult, summary: AnalysisSummary | None, tagged: ReplayGainSummary | None
) -> None:
    out = stdout
    table = Table("files", "added", "updated", "unchanged", "moved", "missing", "errors", "files/s")
    table.add_row(
        str(result.files_seen),
        str(result.added),
        str(result.updated),
        str(result.unchanged),
        str(result.moved),
        str(result.missing),
        str(len(result.errors)),
        f"{result.files_per_s:.0f}",
    )
    out.print(table)
    if summary is not None:
        out.print(
            f"analysed {summary.analysed}, failed {summary.failed}, in {summary.elapsed_s:.1f} s"
        )
    if tagged is not None:
        out.print(f"ReplayGain tags written to {tagged.written} files")
        for path, reason in tagged.errors[:SHOWN_ERRORS]:
            stderr.print(f"not tagged: {path}: {reason}", markup=False)
    for path, reason in result.errors[:SHOWN_ERRORS]:
        stderr.print(f"skipped: {path}: {reason}", markup=False)
    if len(result.errors) > SHOWN_ERRORS:
        stderr.print(f"... and {len(result.errors) - SHOWN_ERRORS} more (see the scan run's log)")
