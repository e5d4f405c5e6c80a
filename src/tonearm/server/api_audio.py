"""REST routes: a track's audio, original or mastered, with HTTP ranges (a player can seek).

* ``GET /api/tracks/{id}/stream``: the original file as stored (Starlette's ``FileResponse``:
  ``Range``, ``If-Range``, 206/416, multipart for several ranges).
* ``GET /api/tracks/{id}/stream?match=spotify&strength=1``: the original, gain-matched to the
  mastered stream's loudness (A/B), as a 32-bit float WAV (nothing clips in the file).
* ``GET /api/tracks/{id}/mastered?target=spotify&strength=1``: the master, as a 16-bit PCM WAV
  (TPDF-dithered) rendered block by block from a cached plan.
* ``POST /api/tracks/{id}/plan?target=spotify&strength=1``: plan now (warms the cache) and
  return the plan.

A target is a preset's name; ``lufs`` (-40..-5) and ``ceiling_dbtp`` (-12..0) override its
loudness and true-peak ceiling (:func:`tonearm.mastering.targets.resolve_target`), and the name
``custom`` stands for no preset: ``target=custom&lufs=-12`` (the ceiling, unless given, is the
default preset's, -1 dBTP). The plan cache keys on the resolved loudness and ceiling, so a
preset and a custom target never share a plan. The streams name what they apply in
``X-Tonearm-Target``: the preset's name (``spotify``) for a preset as it is, otherwise the name,
loudness and ceiling (``custom -12.0 LUFS / -1.0 dBTP``, ``apple -12.0 LUFS / -1.0 dBTP``).

The two WAV streams have exact RIFF sizes up front (the master keeps the track's length) and
answer a single ``Range`` by rendering from the frame it starts in (the header bytes are
synthesised when the range covers them); a range that starts mid-track renders a pre-roll
first (:func:`tonearm.mastering.stream.render_mastered`). Several ranges, a malformed or a
non-byte ``Range`` are ignored (the whole file, 200), as RFC 9110 allows.

Only files inside ``settings.library_roots`` are served: the file's real path (symlinks
resolved) must lie inside a root's real path, or the answer is 403. Routes are plain ``def``
and the streams sync generators: planning, decoding and rendering run on worker threads, never
on the event loop.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from tonearm.audio_io.wav_stream import SampleFormat, WavLayout, wav_bytes
from tonearm.errors import DecodeError, EncodeError, ParameterError
from tonearm.mastering.stream import plan_for_stream, render_gain_matched, render_mastered
from tonearm.mastering.targets import (
    MAX_CEILING_DBTP,
    MAX_TARGET_LUFS,
    MIN_CEILING_DBTP,
    MIN_TARGET_LUFS,
    PRESETS,
    LoudnessTarget,
    resolve_target,
)
from tonearm.server.api_library import TrackId, track_or_404
from tonearm.server.plan_cache import PlanKey
from tonearm.server.schemas import error_responses
from tonearm.server.state import ServerState, server_state

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from starlette.types import Receive, Scope, Send

    from tonearm.library.records import TrackRecord
    from tonearm.mastering.stream import StreamPlan
    from tonearm.types import AudioArray

__all__ = [
    "PlanSummary",
    "inside_library",
    "library_file",
    "parse_byte_range",
    "router",
    "target_label",
]

router = APIRouter(prefix="/api")
_RANGED_TRACK_AUDIO: dict[int | str, dict[str, Any]] = {
    206: {"description": "The requested byte range"},
    403: {"description": "The file lies outside the library folders"},
    404: {"description": "No such track, or its file is gone"},
}
"""What every audio route of a library track may answer besides 200 (OpenAPI)."""
State = Annotated[ServerState, Depends(server_state)]
Strength = Annotated[float, Query(ge=0.0, le=1.0, description="0 (loudness only) to 1")]
Lufs = Annotated[
    float | None,
    Query(
        ge=MIN_TARGET_LUFS,
        le=MAX_TARGET_LUFS,
        description="Integrated loudness to reach instead of the target's (LUFS)",
    ),
]
CeilingDbtp = Annotated[
    float | None,
    Query(
        ge=MIN_CEILING_DBTP,
        le=MAX_CEILING_DBTP,
        description="True-peak ceiling instead of the target's (dBTP)",
    ),
]
TargetName = Annotated[
    str,
    Query(
        max_length=32,
        description="A preset's name, or `custom` (with `lufs` and/or `ceiling_dbtp`)",
    ),
]

MEDIA_TYPES = {
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".alac": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
    ".mka": "audio/x-matroska",
    ".wma": "audio/x-ms-wma",
}
"""Content-Type of an original file, by extension (``application/octet-stream`` otherwise)."""
STRENGTH_DECIMALS = 3
"""Strengths are rounded to this many decimals (one plan per 0.001)."""
LEVEL_DECIMALS = 2
"""A custom loudness and ceiling are rounded to this many decimals (one plan per 0.01 dB)."""
CUSTOM = "custom"
"""The target name that stands for no preset: ``lufs`` and/or ``ceiling_dbtp`` say it all."""
_SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)


class PlanSummary(BaseModel):
    """A track's mastering plan for a target, and what the streams apply."""

    model_config = ConfigDict(frozen=True)

    track_id: int
    target: str
    """The preset's name, or ``custom``."""
    lufs: float
    """The integrated loudness planned for (the preset's, or the ``lufs`` asked for)."""
    ceiling_dbtp: float
    """The true-peak ceiling planned for (the preset's, or the ``ceiling_dbtp`` asked for)."""
    strength: float
    cached: bool
    """The plan was already cached (no analysis ran for this request)."""
    plan_s: float
    """Seconds this request spent getting the plan."""
    input_lufs: float | None
    """The original's integrated loudness (LUFS; null for silence)."""
    predicted_lufs: float | None
    """What the mastered stream measures, as the gain model predicts it (LUFS)."""
    gain_db: float
    """Make-up gain in front of the limiter."""
    match_gain_db: float
    """Gain the A/B stream applies to the original (``predicted_lufs - input_lufs``)."""
    target_reachable: bool
    frames: int
    sample_rate: int
    channels: int
    plan: dict[str, Any]
    """The whole plan (``MasteringPlan.to_dict``)."""


def _inside(path: str, root: str) -> bool:
    return path == root or os.path.commonpath((path, root)) == root


def inside_library(state: ServerState, record: TrackRecord) -> str:
    """The real path of a track's file (symlinks and ``..`` resolved); 403 when it lies outside
    the library folders. The file need not exist."""
    real = os.path.realpath(record.path)
    roots = [os.path.realpath(root) for root in state.settings.library_roots]
    if not any(_inside(real, root) for root in roots):
        raise HTTPException(
            403, f"track {record.id}'s file lies outside the library folders; it is not served"
        )
    return real


def library_file(state: ServerState, track_id: int) -> tuple[TrackRecord, str]:
    """The track and its file's real path: 404 for an unknown track or a file that is gone,
    403 for a file outside the library folders (through ``..`` or a symlink)."""
    record = track_or_404(state, track_id)
    real = inside_library(state, record)
    if not os.path.isfile(real):
        raise HTTPException(
            404,
            f"track {track_id}'s file '{Path(record.path).name}' is gone (moved or deleted "
            "since the last scan); rescan the library",
        )
    return record, real


def _target(name: str, lufs: float | None, ceiling_dbtp: float | None) -> LoudnessTarget:
    """The preset ``name`` with its loudness and/or ceiling overridden (``custom``: none); 400
    for an unknown name, or ``custom`` with nothing to override."""
    preset = name.strip().lower()
    if preset == CUSTOM and lufs is None and ceiling_dbtp is None:
        raise HTTPException(400, "the target 'custom' needs lufs and/or ceiling_dbtp")
    if preset != CUSTOM and preset not in PRESETS:
        raise HTTPException(
            400, f"unknown target '{name}' (choose from {', '.join(PRESETS)}, or {CUSTOM})"
        )
    try:
        return resolve_target(
            None if preset == CUSTOM else preset,
            lufs=None if lufs is None else round(lufs, LEVEL_DECIMALS),
            ceiling_dbtp=None if ceiling_dbtp is None else round(ceiling_dbtp, LEVEL_DECIMALS),
        )
    except ParameterError as exc:  # the query's bounds are the target's: not expected
        raise HTTPException(400, str(exc)) from None


def target_label(target: LoudnessTarget) -> str:
    """``X-Tonearm-Target``: a preset's name (``spotify``) for the preset as it is, otherwise
    the name, loudness and ceiling (``custom -12.0 LUFS / -1.0 dBTP``)."""
    if PRESETS.get(target.name) == target:
        return target.name
    return f"{target.name} {target.lufs:.1f} LUFS / {target.ceiling_dbtp:.1f} dBTP"


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _decode_failed(exc: DecodeError, real: str, track_id: int) -> HTTPException:
    """A decode error without the server's path in it (only the file's name)."""
    message = str(exc).replace(real, Path(real).name)
    return HTTPException(422, f"track {track_id} cannot be mastered: {message}")


def _stream_plan(
    state: ServerState,
    request: Request,
    record: TrackRecord,
    real: str,
    target: LoudnessTarget,
    strength: float,
) -> tuple[StreamPlan, bool]:
    """The cached plan for the track as it is on disk now, or a new one (rate-limited)."""
    try:
        stat = os.stat(real)
    except FileNotFoundError:
        raise HTTPException(404, f"track {record.id}'s file is gone; rescan the library") from None
    key = PlanKey(
        track_id=record.id,
        content_hash=record.content_hash,
        size_bytes=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        target=target.name,
        lufs=target.lufs,
        ceiling_dbtp=target.ceiling_dbtp,
        strength=strength,
    )
    if state.plans.peek(key) is None:
        state.limiter.check(_client(request), "plan")
    try:
        return state.plans.get(key, lambda: plan_for_stream(real, target, strength))
    except DecodeError as exc:
        raise _decode_failed(exc, real, record.id) from None
    except TimeoutError:
        raise HTTPException(
            503, "the track is still being analysed; try again", headers={"Retry-After": "5"}
        ) from None


def parse_byte_range(header: str | None, total_bytes: int) -> tuple[int, int] | None:
    """``(start, stop)`` (stop exclusive) of a single ``Range: bytes=...`` within
    ``total_bytes``; None for no range, or one to ignore (malformed, several ranges, another
    unit). ``HTTPException(416)`` when the range lies beyond the end."""
    if header is None:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    unsatisfiable = HTTPException(
        416,
        f"the range '{header}' is outside the {total_bytes} bytes of the stream",
        headers={"Content-Range": f"bytes */{total_bytes}"},
    )
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            raise unsatisfiable
        return max(0, total_bytes - suffix), total_bytes
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= total_bytes:
        raise unsatisfiable
    return start, total_bytes if not last else min(int(last) + 1, total_bytes)


class _ClosingStreamingResponse(StreamingResponse):
    """A streaming response that closes its generator when the response ends, also when the
    client left early: the render's file and decoder are released at once, not whenever the
    garbage collector finds the abandoned generator."""

    def __init__(self, content: Iterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._source = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(close)  # no next() runs on it by now


def _wav_response(
    request: Request,
    layout: WavLayout,
    render: Callable[[int], Iterator[AudioArray]],
    *,
    dither_seed: int,
    headers: dict[str, str],
) -> StreamingResponse:
    span = parse_byte_range(request.headers.get("range"), layout.total_bytes)
    start, stop = span if span is not None else (0, layout.total_bytes)
    body = wav_bytes(layout, render, start_byte=start, stop_byte=stop, dither_seed=dither_seed)
    headers = {
        **headers,
        "Accept-Ranges": "bytes",
        "Content-Length": str(stop - start),
        "Cache-Control": "no-cache",
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{layout.total_bytes}"
    return _ClosingStreamingResponse(
        body, status_code=206 if span is not None else 200, media_type="audio/wav", headers=headers
    )


def _layout(plan: StreamPlan, sample_format: SampleFormat) -> WavLayout:
    info = plan.info
    try:
        return WavLayout(
            sample_rate=info.sample_rate,
            channels=info.channels,
            frames=info.frames,
            sample_format=sample_format,
        )
    except EncodeError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get(
    "/tracks/{track_id}/stream",
    tags=["audio"],
    response_class=StreamingResponse,
    response_model=None,
    responses={
        200: {"content": {"audio/*": {}}},
        **_RANGED_TRACK_AUDIO,
        416: {"description": "The range lies beyond the end of the file"},
        **error_responses(400, 429, 503),
    },
)
def stream_original(
    state: State,
    request: Request,
    track_id: TrackId,
    match: Annotated[
        str | None,
        Query(
            max_length=32,
            description="A target (a preset's name, or `custom`): gain-match to its mastered "
            "stream (A/B)",
        ),
    ] = None,
    strength: Strength = 1.0,
    lufs: Lufs = None,
    ceiling_dbtp: CeilingDbtp = None,
) -> FileResponse | StreamingResponse:
    """The track's file as stored; with ``match``, the original at the mastered stream's
    loudness (float WAV). ``lufs`` and ``ceiling_dbtp`` override the target's (with ``match``
    only; without it they are ignored)."""
    record, real = library_file(state, track_id)
    if match is None:
        media_type = MEDIA_TYPES.get(Path(real).suffix.lower(), "application/octet-stream")
        return FileResponse(real, media_type=media_type, headers={"Cache-Control": "no-cache"})
    target = _target(match, lufs, ceiling_dbtp)
    strength = round(strength, STRENGTH_DECIMALS)
    plan, _ = _stream_plan(state, request, record, real, target, strength)
    gain_db = plan.match_gain_db
    info = plan.info

    def render(first_frame: int) -> Iterator[AudioArray]:
        return render_gain_matched(real, gain_db, start_frame=first_frame, info=info)

    return _wav_response(
        request,
        _layout(plan, "float32"),
        render,
        dither_seed=0,
        headers={"X-Tonearm-Gain-Db": f"{gain_db:.3f}", "X-Tonearm-Target": target_label(target)},
    )


@router.get(
    "/tracks/{track_id}/mastered",
    tags=["audio"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/wav": {}}},
        **_RANGED_TRACK_AUDIO,
        400: {"description": "Unknown target, or `custom` without `lufs` or `ceiling_dbtp`"},
        416: {"description": "The range lies beyond the end of the stream"},
        **error_responses(429, 503),
    },
)
def stream_mastered(
    state: State,
    request: Request,
    track_id: TrackId,
    target: TargetName = "spotify",
    strength: Strength = 1.0,
    lufs: Lufs = None,
    ceiling_dbtp: CeilingDbtp = None,
) -> StreamingResponse:
    """The track mastered for ``target`` (16-bit WAV, rendered as it is sent; seekable);
    ``lufs`` and ``ceiling_dbtp`` override the target's."""
    record, real = library_file(state, track_id)
    loudness_target = _target(target, lufs, ceiling_dbtp)
    strength = round(strength, STRENGTH_DECIMALS)
    stream_plan, _ = _stream_plan(state, request, record, real, loudness_target, strength)
    plan, info = stream_plan.plan, stream_plan.info

    def render(first_frame: int) -> Iterator[AudioArray]:
        return render_mastered(real, plan, start_frame=first_frame, info=info)

    return _wav_response(
        request,
        _layout(stream_plan, "pcm16"),
        render,
        dither_seed=int(plan.cache_key()[:8], 16),
        headers={
            "X-Tonearm-Gain-Db": f"{plan.gain_db:.3f}",
            "X-Tonearm-Target": target_label(loudness_target),
            "X-Tonearm-Predicted-Lufs": f"{plan.predicted_lufs:.2f}",
        },
    )


@router.post(
    "/tracks/{track_id}/plan",
    response_model=PlanSummary,
    tags=["audio"],
    responses=error_responses(400, 403, 404, 422, 429, 503),
)
def plan_track(
    state: State,
    request: Request,
    track_id: TrackId,
    target: TargetName = "spotify",
    strength: Strength = 1.0,
    lufs: Lufs = None,
    ceiling_dbtp: CeilingDbtp = None,
) -> PlanSummary:
    """Plan the master of a track for ``target`` now (the streams then start at once);
    ``lufs`` and ``ceiling_dbtp`` override the target's."""
    record, real = library_file(state, track_id)
    loudness_target = _target(target, lufs, ceiling_dbtp)
    strength = round(strength, STRENGTH_DECIMALS)
    started = time.perf_counter()
    stream_plan, cached = _stream_plan(state, request, record, real, loudness_target, strength)
    plan = stream_plan.plan
    return PlanSummary(
        track_id=track_id,
        target=loudness_target.name,
        lufs=loudness_target.lufs,
        ceiling_dbtp=loudness_target.ceiling_dbtp,
        strength=strength,
        cached=cached,
        plan_s=round(time.perf_counter() - started, 4),
        input_lufs=_finite(stream_plan.input_lufs),
        predicted_lufs=_finite(plan.predicted_lufs),
        gain_db=plan.gain_db,
        match_gain_db=round(stream_plan.match_gain_db, 4),
        target_reachable=plan.target_reachable,
        frames=stream_plan.info.frames,
        sample_rate=stream_plan.info.sample_rate,
        channels=stream_plan.info.channels,
        plan=plan.to_dict(),
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
