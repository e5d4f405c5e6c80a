"""``tonearm batch``: master many files at once on the job engine (a command of the shared app).

Inputs are files, library tracks (``--track ID``, looked up in ``--db``), or both; each is
mastered to a target or with a saved plan (``--plan``), on threads, processes or a
dask.distributed cluster (``--executor``, ``--scheduler``). One progress bar per running file
and one for the whole batch; Ctrl-C cancels every job and removes nothing but the unfinished
outputs' staging files; a summary table at the end. Exit 0 when every file was mastered, 2 when
some could not be (each says why in the table).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tonearm.cli_common import app, exit_codes, load_plan, progress_bars, stdout
from tonearm.errors import UserInputError
from tonearm.jobs.engine import JobEngine, JobEvent, JobSpec, JobState, JobStatus
from tonearm.library.paths import default_database_path
from tonearm.mastering.render import output_path_in
from tonearm.mastering.targets import PRESETS

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from tonearm.library.manager import LibraryManager

__all__ = ["batch"]

WAIT_S = 24 * 3600.0  # a batch of any sane size finishes long before this
DEFAULT_WORKERS = 2


class ExecutorName(StrEnum):
    """Where jobs run."""

    thread = "thread"
    process = "process"
    dask = "dask"


class _Bars:
    """A bar per running job and a total, fed by job events (from worker threads)."""

    def __init__(self, progress: Progress, names: dict[str, str], total: int) -> None:
        self._progress = progress
        self._names = names
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        self._finished = 0
        self._total = progress.add_task(f"batch    0/{total}", total=total)
        self._count = total

    def __call__(self, event: JobEvent) -> None:
        with self._lock:
            task = self._tasks.get(event.job_id)
            if event.state is JobState.RUNNING:
                if task is None:
                    name = self._names.get(event.job_id, event.job_id)
                    task = self._tasks[event.job_id] = self._progress.add_task(name, total=1.0)
                stage = event.stage or ""
                self._progress.update(
                    task,
                    completed=event.fraction,
                    description=f"{stage:<8} {self._names.get(event.job_id, '')}",
                )
            elif event.state.finished:
                if task is not None:
                    self._progress.remove_task(task)
                    del self._tasks[event.job_id]
                self._finished += 1
                self._progress.update(
                    self._total,
                    completed=self._finished,
                    description=f"batch    {self._finished}/{self._count}",
                )


def _track_paths(library: LibraryManager, track_ids: list[int]) -> list[tuple[int, Path]]:
    """Each library track's file; one clear line for an id the library does not have."""
    found = []
    for track_id in track_ids:
        record = library.tracks.get(track_id)
        if record is None:
            raise UserInputError(f"no track {track_id} in the library")
        found.append((track_id, Path(record.path)))
    return found


def _summary(statuses: list[JobStatus]) -> Table:
    table = Table("file", "LUFS in", "LUFS out", "dBTP out", "time s", "result")
    for status in statuses:
        report = status.report or {}
        inp, out = report.get("input", {}), report.get("output", {})
        took = (
            f"{status.finished_at - status.started_at:.1f}"
            if status.finished_at is not None and status.started_at is not None
            else "-"
        )

        def figure(section: dict[str, object], key: str) -> str:
            value = section.get(key)
            return f"{value:.2f}" if isinstance(value, float) else "-"

        result = "cached" if status.cached else status.state.value
        if status.error and status.state is not JobState.DONE:
            result = f"{status.state.value}: {status.error}"
        table.add_row(
            Path(status.spec.input_path).name,
            figure(inp, "integrated_lufs"),
            figure(out, "integrated_lufs"),
            figure(out, "true_peak_dbtp"),
            took,
            result,
        )
    return table


@app.command()
def batch(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the masters.")],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(metavar="IN...", readable=False, help="Files to master."),
    ] = None,
    track: Annotated[
        list[int] | None,
        typer.Option("--track", help="A library track to master, by id (repeat for several)."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Jobs at once.", min=1, max=256)] = DEFAULT_WORKERS,
    executor: Annotated[ExecutorName, typer.Option(help="Where jobs run.")] = ExecutorName.thread,
    scheduler: Annotated[
        str | None,
        typer.Option(help="A dask scheduler (tcp://host:8786); default: a local cluster."),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", readable=False, help="Apply this saved plan to every input."),
    ] = None,
    target: Annotated[
        str, typer.Option(help=f"Loudness target: {', '.join(PRESETS)}.")
    ] = "spotify",
    lufs: Annotated[float | None, typer.Option(help="Override the target's LUFS.")] = None,
    ceiling: Annotated[float | None, typer.Option(help="Override the true-peak ceiling.")] = None,
    memory_mib: Annotated[
        int, typer.Option("--memory-mib", help="Memory budget for running jobs, MiB.", min=64)
    ] = 2048,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Record the jobs in this library database (file or URL); --track reads it "
            "(default for --track: the library tonearm scan fills).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
) -> None:
    """Master files and library tracks into a folder, several at once, with a summary table."""
    with exit_codes():
        if target not in PRESETS:
            raise UserInputError(f"target must be one of {', '.join(PRESETS)}, got '{target}'")
        if not output.is_dir():
            raise UserInputError(f"output folder '{output}' does not exist")
        if not inputs and not track:
            raise UserInputError("nothing to master: give files, or --track IDs")
        if scheduler is not None and executor is not ExecutorName.dask:
            raise UserInputError("--scheduler needs --executor dask")
        plan_json = None if plan is None else json.dumps(load_plan(plan).to_dict())
        started = time.monotonic()
        with contextlib.ExitStack() as stack, progress_bars(quiet) as progress:
            library = None
            if db is not None or track:  # the library loads only when asked for
                from tonearm.library.manager import LibraryManager

                if db is None and not Path(default_database_path()).is_file():
                    raise UserInputError(
                        f"no library at {default_database_path()}: run tonearm scan, or give --db"
                    )
                library = stack.enter_context(LibraryManager(db or default_database_path()))
            sources: list[tuple[int | None, Path]] = [(None, path) for path in inputs or ()]
            if track:
                assert library is not None
                sources += _track_paths(library, track)
            outputs = [output_path_in(output, source) for _, source in sources]
            if len(set(outputs)) != len(outputs):
                raise UserInputError("two inputs would write the same output file")
            specs = [
                JobSpec(
                    str(source),
                    str(out),
                    target=target,
                    lufs=lufs,
                    ceiling_dbtp=ceiling,
                    plan_json=plan_json,
                    track_id=track_id,
                )
                for (track_id, source), out in zip(sources, outputs, strict=True)
            ]
            store = None
            if library is not None and db is not None:
                from tonearm.library.job_store import JobStore

                store = JobStore(library.db)
            names: dict[str, str] = {}
            bars = _Bars(progress, names, len(specs))
            engine = JobEngine(
                workers=workers,
                memory_budget_mib=memory_mib,
                on_event=bars,
                executor=executor.value,
                scheduler=scheduler,
                store=store,
            )
            try:
                for spec in specs:
                    names[engine.submit(spec)] = Path(spec.input_path).name
                statuses = engine.wait_all(timeout_s=WAIT_S)
            except KeyboardInterrupt:
                engine.shutdown(cancel=True)
                raise
            engine.shutdown()
        if not quiet:
            stdout.print(_summary(statuses))
            done = sum(s.state is JobState.DONE for s in statuses)
            stdout.print(
                f"{done} of {len(statuses)} mastered in {time.monotonic() - started:.1f} s "
                f"on {workers} {executor.value} worker(s)"
            )
        if any(s.state is not JobState.DONE for s in statuses):
            raise typer.Exit(2)
