"""File to file: analyse, plan, render in blocks, verify, and only then put the output in place.

Every pass streams: memory does not grow with the track's length. The rendered file is written
to a staging file beside the output and measured as stored: a lossless file (PCM or float) by
metering the exact samples handed to the encoder as they are written, with its length checked
on disk after; a lossy file by decoding it again. It is renamed into place only if its loudness
is within tolerance of the target and its true peak is at or below the ceiling. Otherwise the
gain (by the plan's gain slope) or the limiter's headroom (by the measured overshoot) is
corrected and the pass repeated, at most ``max_passes`` times.
On any failure nothing is left behind.

Two cores share the work: the reference analysis runs beside the mix's analysis, and the
chain's EQ and dynamics run as pipeline stages beside the encoder and the verify meters
(:mod:`tonearm.pipeline`). ``timings_s["render"]`` of a lossless output therefore includes its
verification, and ``timings_s["verify"]`` only a lossy output's decode pass.
"""

from __future__ import annotations

import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tonearm.audio_io import (
    AtomicAudioWriter,
    AudioInfo,
    AudioReader,
    OutputFormat,
    check_output_path,
    output_format_for,
    probe,
)
from tonearm.errors import Cancelled, EncodeError, ParameterError, TonearmError
from tonearm.events import MessageCode, ProgressCallback, ProgressEvent
from tonearm.mastering.analysis import (
    TrackAnalysis,
    Verification,
    VerificationMeters,
    analyze_blocks,
    verify_file,
)
from tonearm.mastering.chain import MasteringChain, render_blocks
from tonearm.mastering.matching import MatchSettings, plan_match, retarget_plan, summarise_match
from tonearm.mastering.planner import make_plan
from tonearm.mastering.reference import load_references
from tonearm.mastering.report import MasteringReport
from tonearm.mastering.targets import DEFAULT_TARGET, LoudnessTarget
from tonearm.pipeline import threaded_map

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterable, Iterator

    from tonearm.audio_io.encode import BitDepth
    from tonearm.mastering.plan import MasteringPlan
    from tonearm.types import AudioArray

__all__ = [
    "MasterSettings",
    "default_output_path",
    "master_file",
    "master_suffix",
    "output_path_in",
]

LOSSY_EXTRA_MARGIN_DB = 0.5
REFERENCE_TIMEOUT_S = 3600.0  # analysing references never takes near this; a hang must end
MIN_GATING_BLOCK_S = 0.4  # BS.1770-4: the gating block, the shortest measurable programme
LOSSLESS_SUFFIXES = {".wav", ".wave", ".flac", ".aif", ".aiff"}


@dataclass(frozen=True, slots=True)
class MasterSettings:
    """What the user asked for."""

    target: LoudnessTarget = DEFAULT_TARGET
    strength: float = 1.0
    bit_depth: BitDepth | None = None
    block_frames: int = 262144
    """Frames per block through the chain (6 s at 44.1 kHz; larger blocks mean fewer thread
    hand-offs per second of audio; memory grows by 2 MiB per block in flight)."""
    max_passes: int = 3
    tolerance_lu: float = 0.2
    decode_cache_mib: int = 96
    """Keep the decoded input in memory between the analysis and render passes when it fits
    (3 minutes of 44.1 kHz stereo is 61 MiB), saving a decode per pass. Memory stays bounded
    by this cap, never by the track's length; 0 always streams from the file."""
    references: tuple[str, ...] = ()
    """Reference tracks to match (loudness, tonal balance, width); see ``matching``."""
    match: MatchSettings = field(default_factory=MatchSettings)
    plan: MasteringPlan | None = None
    """A saved plan to apply (its gain is solved again for this track)."""
    output_spectrum: bool = False
    """Also measure the output's spectrum in the verify pass (for a plot); implied by
    references."""
    pipeline: bool = True
    """Run the chain's stages and the encoder on their own threads (a master uses about two
    cores). A batch that already runs one job per core turns it off: threads per job then only
    cost hand-offs."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ParameterError(f"strength must be between 0 and 1, got {self.strength}")
        if self.max_passes < 1 or self.block_frames < 1024 or self.decode_cache_mib < 0:
            raise ParameterError(
                "max_passes must be >= 1, block_frames >= 1024 and decode_cache_mib >= 0"
            )


def master_suffix(input_path: Path) -> str:
    """A master's file extension: the input's for a lossless input, ``.wav`` for a lossy one."""
    return input_path.suffix if input_path.suffix.lower() in LOSSLESS_SUFFIXES else ".wav"


def default_output_path(input_path: Path) -> Path:
    """``IN_stem.mastered.<same ext>``, or ``.wav`` when the input is lossy."""
    return input_path.with_name(f"{input_path.stem}.mastered{master_suffix(input_path)}")


def output_path_in(folder: Path, source: Path) -> Path:
    """The master of ``source`` in ``folder``: the same name (``.wav`` for a lossy input), as
    ``tonearm batch`` and the server's jobs name them."""
    return folder / f"{source.stem}{master_suffix(source)}"


def _default_bit_depth(info: AudioInfo) -> BitDepth | None:
    if info.bit_depth == 16 and not info.lossy:
        return "16"
    return "24" if info.bit_depth == 24 else None


def _check_measurable(analysis: TrackAnalysis, info: AudioInfo) -> None:
    """Refuse sound too short for BS.1770 to measure: it has no 400 ms gating block."""
    shortest = round(MIN_GATING_BLOCK_S * info.sample_rate)
    no_loudness = not np.isfinite(analysis.loudness.integrated_lufs)
    has_sound = np.isfinite(analysis.levels.sample_peak_dbfs)
    if no_loudness and has_sound and info.frames < shortest:
        raise ParameterError(
            f"'{info.path.name}' is {info.frames / info.sample_rate:.2f} s long; loudness "
            f"(BS.1770) needs at least {MIN_GATING_BLOCK_S:g} s of audio to master"
        )


def _source_blocks(
    input_path: Path, info: AudioInfo, *, block_frames: int, cached: list[AudioArray] | None
) -> Iterator[AudioArray]:
    """The input's blocks: from the decode cache when it holds the whole file, else decoded."""
    if cached is not None:
        yield from cached
        return
    with AudioReader(input_path, info=info) as reader:
        yield from reader.blocks(block_frames=block_frames)


def _keeping(blocks: Iterable[AudioArray], store: list[AudioArray]) -> Iterator[AudioArray]:
    """Pass blocks through, keeping each (decoded blocks are fresh arrays, never reused)."""
    for block in blocks:
        store.append(block)
        yield block


def _render_pass(
    input_path: Path,
    staging: Path,
    *,
    chain: MasteringChain,
    info: AudioInfo,
    fmt: OutputFormat,
    settings: MasterSettings,
    dither_seed: int,
    attempt: int,
    on_progress: ProgressCallback | None,
    cached: list[AudioArray] | None,
    measure_spectrum: bool,
) -> Verification | None:
    """Render one pass into ``staging``; for lossless formats also verify it on the way.

    The chain's stages and the encoder run on their own threads while this one meters. A
    lossless file stores exactly the samples handed to the encoder, so they are metered as they
    are written (and the file's length checked after); a lossy file returns None and is decoded
    to verify.
    """
    done = 0
    blocks = _source_blocks(input_path, info, block_frames=settings.block_frames, cached=cached)
    meters = (
        None
        if fmt.lossy
        else VerificationMeters(
            sample_rate=fmt.sample_rate, channels=info.channels, spectrum=measure_spectrum
        )
    )
    written: list[AudioArray] = []

    def encode(block: AudioArray) -> tuple[int, list[AudioArray]]:
        """Write one block (on the encoder's thread); its frames and the samples as stored."""
        writer.write(block)
        stored = written[:]
        written.clear()
        return block.shape[1], stored

    with AtomicAudioWriter(
        staging,
        sample_rate=info.sample_rate,
        channels=info.channels,
        fmt=fmt,
        dither_seed=dither_seed,
        forbid_same_as=input_path,
        on_written=None if meters is None else written.append,
    ) as writer:
        rendered = render_blocks(chain, blocks, channels=info.channels, threaded=settings.pipeline)
        encoded = (
            threaded_map(encode, rendered, name="tonearm-encode")
            if settings.pipeline
            else (encode(block) for block in rendered)
        )
        try:
            for frames, stored in encoded:
                if meters is not None:
                    for piece in stored:
                        meters.push(piece)
                done += frames
                if on_progress is not None:
                    on_progress(ProgressEvent("render", done, info.frames, attempt))
        finally:
            # stop and join the stage threads before the writer closes (or aborts) the file
            encoded.close()
        frames_written = writer.frames_written
    if meters is None:
        return None
    on_disk = probe(staging)
    if on_disk.frames != frames_written or on_disk.channels != info.channels:
        raise EncodeError(
            f"'{staging.name}' holds {on_disk.frames} frames x {on_disk.channels} channels after "
            f"writing {frames_written} x {info.channels}"
        )
    _report_verify(on_progress, info.frames, attempt)
    return meters.result()


def _cancellable(on_progress: ProgressCallback | None, cancel: threading.Event) -> ProgressCallback:
    """``on_progress``, raising :class:`Cancelled` first once ``cancel`` is set (progress comes
    once per block, so a cancel takes effect within one block)."""

    def report(event: ProgressEvent) -> None:
        if cancel.is_set():
            raise Cancelled(f"cancelled while in {event.stage}")
        if on_progress is not None:
            on_progress(event)

    return report


def _report_verify(on_progress: ProgressCallback | None, frames: int, attempt: int) -> None:
    if on_progress is not None:
        on_progress(ProgressEvent("verify", frames, frames, attempt))


def master_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    *,
    settings: MasterSettings | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> MasteringReport:
    """Master one file to ``settings.target`` and return the verified report.

    Raises ``DecodeError``/``EncodeError``/``ParameterError`` (user errors) before any output
    exists; the output appears only when complete and verified. Setting ``cancel`` stops the
    work within one block (a fraction of a second) with :class:`~tonearm.errors.Cancelled`;
    the staging file is removed and the output path left as it was.
    """
    settings = settings or MasterSettings()
    if cancel is not None:
        on_progress = _cancellable(on_progress, cancel)
    started = time.perf_counter()
    source = Path(input_path)
    info = probe(source)
    # an unreadable reference fails before any long work; its probe is not repeated
    reference_infos = [probe(path) for path in settings.references]
    target_path = Path(output_path) if output_path is not None else default_output_path(source)
    fmt = output_format_for(
        target_path,
        sample_rate=info.sample_rate,
        bit_depth=settings.bit_depth or _default_bit_depth(info),
    )
    check_output_path(target_path, forbid_same_as=source)
    timings: dict[str, float] = {}

    mark = time.perf_counter()
    decoded_bytes = info.frames * info.channels * 4
    cached: list[AudioArray] | None = (
        [] if decoded_bytes <= settings.decode_cache_mib * 2**20 else None
    )
    # the references are analysed on a second thread while this one analyses the mix (the DSP
    # releases the GIL); the one-worker pool bounds it, and the wait below has a timeout
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tonearm-reference") as pool:
        pending = (
            pool.submit(
                load_references,
                settings.references,
                infos=reference_infos,
                on_progress=None if cancel is None else _cancellable(None, cancel),
            )
            if settings.references
            else None
        )
        with AudioReader(source, info=info) as reader:
            blocks: Iterable[AudioArray] = reader.blocks(block_frames=settings.block_frames)
            analysis = analyze_blocks(
                blocks if cached is None else _keeping(blocks, cached),
                sample_rate=info.sample_rate,
                channels=info.channels,
                frames_total=info.frames,
                on_progress=on_progress,
                fingerprint=False,  # a master does not use it; the library's analysis does
            )
        reference = None if pending is None else pending.result(timeout=REFERENCE_TIMEOUT_S)
    timings["analyse"] = time.perf_counter() - mark

    _check_measurable(analysis, info)
    mark = time.perf_counter()
    if settings.plan is not None:
        plan = retarget_plan(settings.plan, analysis)
    elif reference is not None:
        plan = plan_match(
            analysis,
            reference,
            settings=settings.match,
            strength=settings.strength,
            ceiling_dbtp=settings.target.ceiling_dbtp,
        )
    else:
        plan = make_plan(analysis, settings.target, strength=settings.strength)
    timings["plan"] = time.perf_counter() - mark

    target = plan.target
    silent = not np.isfinite(analysis.loudness.integrated_lufs)
    gain_db = plan.gain_db
    margin_db = plan.limiter.safety_margin_db + (LOSSY_EXTRA_MARGIN_DB if fmt.lossy else 0.0)
    dither_seed = int(plan.cache_key()[:8], 16)
    notes = list(plan.notes)
    timings["render"] = timings["verify"] = 0.0
    token = secrets.token_hex(4)
    staging = target_path.with_name(
        f".{target_path.name}.{token}.tonearm-stage{target_path.suffix}"
    )
    verification: Verification | None = None
    chain: MasteringChain | None = None
    measure_spectrum = settings.output_spectrum or reference is not None
    attempt = 0
    try:
        for attempt in range(1, settings.max_passes + 1):
            chain = MasteringChain(plan, gain_db=gain_db, safety_margin_db=margin_db)
            mark = time.perf_counter()
            verification = _render_pass(
                source,
                staging,
                chain=chain,
                info=info,
                fmt=fmt,
                settings=settings,
                dither_seed=dither_seed,
                attempt=attempt,
                on_progress=on_progress,
                cached=cached,
                measure_spectrum=measure_spectrum,
            )
            timings["render"] += time.perf_counter() - mark
            mark = time.perf_counter()
            if verification is None:  # lossy: measure what a decoder gets back
                verification = verify_file(
                    staging, on_progress=on_progress, attempt=attempt, spectrum=measure_spectrum
                )
            measured = verification.levels
            timings["verify"] += time.perf_counter() - mark
            error_lu = target.lufs - measured.integrated_lufs
            overshoot_db = measured.true_peak_dbtp - target.ceiling_dbtp
            loud_ok = silent or abs(error_lu) <= settings.tolerance_lu or not plan.target_reachable
            if overshoot_db <= 0 and loud_ok:
                break
            if attempt == settings.max_passes:
                if overshoot_db <= 0 and abs(error_lu) <= 0.5:
                    notes.append(
                        f"{MessageCode.LOUDNESS_TOLERANCE:d}: output is {-error_lu:+.2f} LU "
                        "from the target"
                    )
                    break
                raise TonearmError(
                    f"could not meet the target after {attempt} passes "
                    f"({measured.integrated_lufs:.2f} LUFS, {measured.true_peak_dbtp:.2f} dBTP)"
                )
            if overshoot_db > 0:
                margin_db += overshoot_db + 0.05
            if not loud_ok:
                gain_db += error_lu / plan.gain_slope
            staging.unlink(missing_ok=True)
        os.replace(staging, target_path)
    finally:
        staging.unlink(missing_ok=True)
    if verification is None or chain is None:
        raise TonearmError("internal error: no render pass ran")
    match = None
    if reference is not None and verification.spectrum is not None:
        match = summarise_match(
            reference=reference,
            plan=plan,
            mix=analysis.spectrum,
            output=verification.spectrum,
            settings=settings.match,
        )
    timings["total"] = time.perf_counter() - started
    if fmt.sample_rate != info.sample_rate:
        notes.append(
            f"{MessageCode.RESAMPLED_OUTPUT:d}: {fmt.container} {fmt.subtype} needs "
            f"{fmt.sample_rate} Hz; resampled from {info.sample_rate} Hz"
        )
    return MasteringReport(
        input_path=str(source),
        output_path=str(target_path),
        sample_rate=info.sample_rate,
        output_sample_rate=fmt.sample_rate,
        channels=info.channels,
        frames=info.frames,
        output_format=f"{fmt.container} {fmt.subtype}",
        input=analysis.measured,
        output=verification.levels,
        plan=plan,
        limiter=chain.limiter_stats,
        compressor=chain.compressor_stats,
        render_passes=attempt,
        timings_s=timings,
        notes=tuple(notes),
        match=match,
        analysis=analysis,
        verification=verification,
        reference_spectrum=None if reference is None else reference.spectrum,
    )
