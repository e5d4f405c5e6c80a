"""REST routes of mastering jobs: upload-and-master, master a library track, list, status,
cancel, and a finished job's master, report and plot.

* **Files**: an upload streams to ``uploads/<token>/<safe name>`` (:mod:`.uploads`: size limit
  while reading, nothing left behind on a refusal) and is probed before it is queued (415 when
  tonearm cannot decode it). Every job writes its master to ``jobs/<token>/<stem>.<ext>``: the
  input's format when lossless, WAV for a lossy input. The API never sends a server path: a
  job names its input and output files, and the report's paths are cut to file names.
* **History**: the engine knows this run's jobs (live progress); the library's job store knows
  every run's, so a job from before a restart still answers (its master is still served).
* **Plot**: drawn on first request, on a worker thread, from the input and the master measured
  again (spectra and short-term loudness; the report has only the summary figures) and the
  plan's EQ, then kept beside the master. A changed or vanished input is refused, never drawn.
* **Threads**: routes that touch files or the database are plain ``def`` (FastAPI's thread
  pool); the upload route is ``async`` only to read the body as it arrives, and does its file,
  probe and database work with ``anyio.to_thread``.

Progress events reach WebSocket subscribers of ``jobs`` from the engine (see ``state``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import math
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import ValidationError

from tonearm.audio_io import probe
from tonearm.errors import DecodeError, ParameterError, TonearmError
from tonearm.jobs.engine import JobSpec, JobState, JobStatus
from tonearm.jobs.queue import QueueFull
from tonearm.mastering.render import output_path_in
from tonearm.server.api_audio import inside_library
from tonearm.server.schemas import ErrorBody, Job, JobOptions, JobStateName, TrackJobRequest
from tonearm.server.state import ServerState, server_state
from tonearm.server.uploads import receive_upload

if TYPE_CHECKING:
    from tonearm.library.job_store import StoredJob

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["jobs"])
State = Annotated[ServerState, Depends(server_state)]
JobId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$")]

MAX_LIST = 500
HISTORY_SCAN = 5000
"""Stored jobs looked through for a list filtered by state."""
CANCEL_WAIT_S = 3.0
"""A cancelled running job stops within a block; the answer waits this long to show it."""
PLOT_WAIT_S = 120.0
"""How long a plot request waits for another plot being drawn (one at a time) before 503."""
INPUT_MATCH_LU = 0.05
"""A plot's re-measured input must be this close to the report's (else the input changed)."""
MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".flac": "audio/flac",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (404, 409, 410, 429, 503)
}
MASTER_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 403, 404, 409, 429, 503)
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 413, 415, 422, 429, 503)
}
_plot_lock = threading.Lock()


def _upload_body_schema() -> dict[str, Any]:
    """The upload's multipart form for ``/openapi.json`` (the route reads the body itself)."""
    schema = JobOptions.model_json_schema()
    schema["properties"] = {
        "file": {"type": "string", "format": "binary", "description": "The mix to master."},
        **schema["properties"],
    }
    schema["required"] = ["file"]
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


# --- job records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    """A job as the API shows it, with what only the server sees."""

    job: Job
    input_path: Path
    output_path: Path
    report: dict[str, Any] | None


def _utc(timestamp: float | None) -> dt.datetime | None:
    return None if timestamp is None else dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _aware(moment: dt.datetime) -> dt.datetime:
    """Database times are UTC; SQLite hands them back without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _aware_or_none(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else _aware(moment)


def _scrub(text: str | None, *paths: Path) -> str | None:
    """An error message with the job's server paths (and their folders) cut to file names."""
    if text is None:
        return None
    for path in paths:
        if str(path) not in ("", "."):
            text = text.replace(str(path), path.name).replace(f"{path.parent}/", "")
    return text


def _of_status(status: JobStatus) -> _Found:
    spec = status.spec
    submitted = _utc(status.submitted_at)
    assert submitted is not None
    job = Job(
        id=status.job_id,
        state=status.state.value,
        stage=status.stage,
        fraction=round(status.fraction, 4),
        eta_s=None if status.eta_s is None else round(status.eta_s, 2),
        error=_scrub(status.error, Path(spec.input_path), Path(spec.output_path)),
        worker=status.worker,
        cached=status.cached,
        submitted_at=submitted,
        started_at=_utc(status.started_at),
        finished_at=_utc(status.finished_at),
        track_id=spec.track_id,
        input_name=Path(spec.input_path).name,
        output_name=Path(spec.output_path).name,
        target=spec.target,
        lufs=spec.lufs,
        ceiling_dbtp=spec.ceiling_dbtp,
        priority=spec.priority,
    )
    return _Found(job, Path(spec.input_path), Path(spec.output_path), status.report)


def _of_stored(stored: StoredJob) -> _Found:
    spec = stored.spec
    input_path = Path(str(spec.get("input_path", "")))
    output_path = Path(str(spec.get("output_path", "")))
    job = Job(
        id=stored.id,
        state=cast("JobStateName", stored.state),  # the engine writes only JobState values
        stage=None,
        fraction=1.0 if stored.state == JobState.DONE else 0.0,
        eta_s=None,
        error=_scrub(stored.error, input_path, output_path),
        worker=None,
        cached=stored.cached,
        submitted_at=_aware(stored.submitted_at),
        started_at=_aware_or_none(stored.started_at),
        finished_at=_aware_or_none(stored.finished_at),
        track_id=spec.get("track_id"),
        input_name=input_path.name,
        output_name=output_path.name,
        target=str(spec.get("target", "")),
        lufs=spec.get("lufs"),
        ceiling_dbtp=spec.get("ceiling_dbtp"),
        priority=int(spec.get("priority", 0)),
    )
    return _Found(job, input_path, output_path, stored.report)


def _find(state: ServerState, job_id: str) -> _Found:
    """This run's job from the engine, else an earlier one from the store; 404 if neither."""
    try:
        return _of_status(state.engine.status(job_id))
    except ParameterError:
        pass
    stored = state.job_store.get(job_id)
    if stored is None:
        raise HTTPException(404, f"no job {job_id}")
    return _of_stored(stored)


def _submit(state: ServerState, spec: JobSpec) -> Job:
    try:
        job_id = state.engine.submit(spec)
    except QueueFull:
        raise HTTPException(
            503, "the job queue is full: try again later", headers={"Retry-After": "30"}
        ) from None
    return _of_status(state.engine.status(job_id)).job


def _new_token() -> str:
    return uuid.uuid4().hex


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _served_output(state: ServerState, found: _Found) -> Path:
    """The finished master of a job this server ran; 409 not done, 404 not the server's (a
    ``tonearm batch --db`` job in the same library), 410 removed since."""
    job = found.job
    if job.state != "done":
        raise HTTPException(409, f"job {job.id} is {job.state}, not done")
    output = found.output_path
    jobs_dir = state.settings.jobs_dir.resolve()
    if not output.resolve().is_relative_to(jobs_dir):
        raise HTTPException(404, f"job {job.id}'s master is not kept by this server")
    if not output.is_file():
        raise HTTPException(410, f"job {job.id}'s master has been removed")
    return output


def _public_report(report: dict[str, Any], job: Job) -> dict[str, Any]:
    """The report with the job's file names where it has server paths."""
    public = copy.deepcopy(report)
    for section, name in (("input", job.input_name), ("output", job.output_name)):
        part = public.get(section)
        if isinstance(part, dict) and "path" in part:
            part["path"] = name
    if "output_path" in public:  # a cached job's report names its own output here
        public["output_path"] = job.output_name
    match = public.get("match")
    if isinstance(match, dict) and isinstance(match.get("references"), list):
        match["references"] = [Path(str(path)).name for path in match["references"]]
    return public


# --- submitting -----------------------------------------------------------------------------


def _form_options(fields: dict[str, str]) -> JobOptions:
    """The upload form's options (empty fields count as absent); 422 like any bad body."""
    given = {name: value for name, value in fields.items() if value.strip()}
    try:
        return JobOptions.model_validate(given)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in exc.errors(include_url=False, include_context=False)
        ]
        raise RequestValidationError(errors) from None


def _queue_upload(
    state: ServerState, *, path: Path, file_name: str, token: str, options: JobOptions
) -> Job:
    """Probe the uploaded file (415 when tonearm cannot decode it) and queue its job."""
    try:
        probe(path)
    except DecodeError as exc:
        message = str(exc).replace(str(path), file_name)
        raise HTTPException(415, f"not audio tonearm can master: {message}") from None
    folder = state.settings.jobs_dir / token
    folder.mkdir(parents=True)
    spec = JobSpec(
        str(path),
        str(output_path_in(folder, path)),
        target=options.target,
        lufs=options.lufs,
        ceiling_dbtp=options.ceiling_dbtp,
        priority=options.priority,
    )
    try:
        return _submit(state, spec)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@router.post(
    "/jobs/upload",
    response_model=Job,
    status_code=202,
    responses=UPLOAD_ERRORS,
    openapi_extra=_upload_body_schema(),
)
async def upload_job(request: Request, state: State) -> Job:
    """Upload a mix (multipart: ``file``, and ``target``, ``lufs``, ``ceiling_dbtp``,
    ``priority``) and master it; rate-limited, size-limited, audio only."""
    state.limiter.check(_client(request), "upload")
    token = _new_token()
    folder = state.settings.uploads_dir / token
    upload = await receive_upload(request, folder=folder, max_bytes=state.settings.max_upload_bytes)
    try:
        options = _form_options(upload.fields)
        return await anyio.to_thread.run_sync(
            lambda: _queue_upload(
                state, path=upload.path, file_name=upload.file_name, token=token, options=options
            )
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
        raise


@router.post("/jobs", response_model=Job, status_code=202, responses=MASTER_ERRORS)
def master_track(state: State, request: Request, body: TrackJobRequest) -> Job:
    """Master a library track (rate-limited)."""
    state.limiter.check(_client(request), "master")
    record = state.library.tracks.get(body.track_id)
    if record is None:
        raise HTTPException(404, f"no track {body.track_id}")
    if record.missing:
        raise HTTPException(409, f"track {body.track_id}'s file is missing")
    inside_library(state, record)  # 403: the job would read (and serve) a file from outside
    folder = state.settings.jobs_dir / _new_token()
    folder.mkdir(parents=True)
    spec = JobSpec(
        record.path,
        str(output_path_in(folder, Path(record.path))),
        target=body.target,
        lufs=body.lufs,
        ceiling_dbtp=body.ceiling_dbtp,
        priority=body.priority,
        track_id=record.id,
    )
    try:
        return _submit(state, spec)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


# --- reading and cancelling -----------------------------------------------------------------


@router.get("/jobs", response_model=list[Job])
def list_jobs(
    state: State,
    state_filter: Annotated[JobStateName | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> list[Job]:
    """Jobs, newest first: this run's (live) and earlier runs' (history); optionally only
    those in one ``state``."""
    stored = state.job_store.recent(limit if state_filter is None else HISTORY_SCAN)
    merged = {record.id: _of_stored(record).job for record in stored}
    merged.update((status.job_id, _of_status(status).job) for status in state.engine.jobs())
    jobs = [job for job in merged.values() if state_filter is None or job.state == state_filter]
    jobs.sort(key=lambda job: (job.submitted_at, job.id), reverse=True)
    return jobs[:limit]


@router.get("/jobs/{job_id}", response_model=Job, responses=ERRORS)
def get_job(state: State, job_id: JobId) -> Job:
    """One job: state, stage, progress, ETA, error, timings."""
    return _find(state, job_id).job


@router.delete("/jobs/{job_id}", response_model=Job, responses=ERRORS)
def cancel_job(state: State, job_id: JobId) -> Job:
    """Cancel a queued or running job (it leaves no master); 409 when it already finished."""
    try:
        cancelled = state.engine.cancel(job_id)
    except ParameterError:
        job = _find(state, job_id).job  # 404, or a job of an earlier run: finished
        raise HTTPException(409, f"job {job_id} is {job.state}: not running here") from None
    if not cancelled:
        job = _of_status(state.engine.status(job_id)).job
        raise HTTPException(409, f"job {job_id} already finished ({job.state})")
    with contextlib.suppress(TimeoutError):
        state.engine.wait(job_id, timeout_s=CANCEL_WAIT_S)
    return _of_status(state.engine.status(job_id)).job


@router.get(
    "/jobs/{job_id}/result",
    response_class=FileResponse,
    responses={**ERRORS, 200: {"content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))}}},
)
def job_result(state: State, job_id: JobId) -> FileResponse:
    """The mastered file (409 until the job is done)."""
    found = _find(state, job_id)
    output = _served_output(state, found)
    input_stem = Path(found.job.input_name).stem or output.stem
    return FileResponse(
        output,
        media_type=MEDIA_TYPES.get(output.suffix.lower(), "application/octet-stream"),
        filename=f"{input_stem}.mastered{output.suffix}",
    )


@router.get("/jobs/{job_id}/report", response_model=dict[str, Any], responses=ERRORS)
def job_report(state: State, job_id: JobId) -> dict[str, Any]:
    """The mastering report of a finished job (loudness, true peak and LRA in and out, the
    plan, limiter, timings; paths cut to file names)."""
    found = _find(state, job_id)
    if found.job.state != "done" or found.report is None:
        raise HTTPException(409, f"job {job_id} is {found.job.state}: no report")
    return _public_report(found.report, found.job)


@router.get(
    "/jobs/{job_id}/plot",
    response_class=FileResponse,
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
)
def job_plot(state: State, job_id: JobId) -> FileResponse:
    """The report plot (PNG): spectra of mix and master, the EQ, short-term loudness."""
    found = _find(state, job_id)
    output = _served_output(state, found)
    png = output.with_name(f"{output.stem}.report.png")
    if not png.is_file():
        if not _plot_lock.acquire(timeout=PLOT_WAIT_S):
            raise HTTPException(503, "busy drawing other plots", headers={"Retry-After": "10"})
        try:
            if not png.is_file():
                _draw_plot(found, output, png)
        finally:
            _plot_lock.release()
    return FileResponse(png, media_type="image/png")


def _draw_plot(found: _Found, output: Path, png: Path) -> None:
    """Measure the input and the master again and draw the report plot to ``png``."""
    from tonearm.mastering.analysis import analyze_file, verify_file
    from tonearm.mastering.plan import MasteringPlan
    from tonearm.mastering.plot import plot_master_report  # matplotlib: only when drawn

    report = found.report or {}
    name = found.job.input_name
    if not found.input_path.is_file():
        raise HTTPException(410, f"job {found.job.id}'s input '{name}' is gone: no plot")
    try:
        plan = MasteringPlan.from_dict(report["plan"])
        analysis = analyze_file(found.input_path, fingerprint=False, chunks=False)
        verification = verify_file(output, spectrum=True)
    except (KeyError, TypeError, ParameterError) as exc:
        raise HTTPException(409, f"job {found.job.id}'s report has no usable plan: {exc}") from None
    except TonearmError as exc:
        raise HTTPException(410, f"job {found.job.id}: cannot measure the files again") from exc
    measured = analysis.loudness.integrated_lufs
    reported = (report.get("input") or {}).get("integrated_lufs")
    changed = isinstance(reported, float) and abs(measured - reported) > INPUT_MATCH_LU
    if changed and math.isfinite(measured):
        raise HTTPException(409, f"'{name}' has changed since it was mastered: no plot")
    assert verification.spectrum is not None
    plot_master_report(
        png,
        mix=analysis.spectrum,
        result=verification.spectrum,
        reference=None,
        eq=plan.eq,
        short_term_before_lufs=analysis.loudness.short_term_lufs,
        short_term_after_lufs=verification.short_term_lufs,
        title=f"{name} -> {found.job.output_name} ({found.job.target})",
    )
