"""Mastered audio as a stream of blocks, from any frame: what a player listens to.

:func:`plan_for_stream` analyses a file in one streaming pass (no fingerprint) and plans its
master; :func:`render_mastered` renders that plan block by block from ``start_frame`` to the end,
and :func:`render_gain_matched` streams the original with a plain gain (for A/B listening at
equal loudness). Nothing is verified or re-rendered: a stream is a single pass, so its loudness
is the gain model's prediction (``plan.predicted_lufs``; within 0.2 LU of the measured master on
the test music).

Starting in the middle
----------------------
From frame 0, :func:`render_mastered` is exactly ``render_blocks(MasteringChain(plan), blocks)``
over the same blocks. From frame ``N > 0`` it renders a pre-roll first, from a frame ``P`` at
least ``preroll_frames`` before ``N`` and aligned to the dynamics' control steps (so the gain
envelopes are computed on the same grid as from 0), and drops the output before ``N``. What
differs from the from-0 render at ``N`` is only what the stages remember from before ``P``:

* the EQ is a FIR (93 ms, 0.37 s when matching) and the detectors' windows are a few ms:
  covered by the pre-roll exactly, up to float rounding (the FFT blocks are cut elsewhere);
* the limiter's release (100 ms) and the compressor's (300 ms) are exponential: an envelope
  that started from rest at ``P`` lies under the from-0 one by at most the latter's reduction at
  ``P`` times ``exp(-(N - P) / release)``. With the default 3 s pre-roll that is at most
  4 dB x e^-10 = 2e-4 dB for the compressor (its reduction is capped at 4 dB) and nothing
  measurable for the limiter: under 3e-5 of full scale.

The stream tests check a max absolute difference under 1e-4 after the pre-roll on real music
(the measured figure is around 1e-6: float rounding).

Block sizes
-----------
The first block is small (``first_block_frames``, 8192 by default: 0.19 s at 44.1 kHz) so a
player's first bytes come quickly; the rest are ``block_frames`` (65536) for throughput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tonearm.audio_io import AudioReader
from tonearm.dsp.dynamics import COMPRESSOR_CONTROL_PERIOD_S, LIMITER_CONTROL_PERIOD_S, db_to_gain
from tonearm.errors import ParameterError
from tonearm.mastering.analysis import analyze_file
from tonearm.mastering.chain import MasteringChain, render_blocks
from tonearm.mastering.planner import make_plan

if TYPE_CHECKING:
    import os
    from collections.abc import Generator, Iterable, Iterator

    from tonearm.audio_io import AudioInfo
    from tonearm.mastering.plan import MasteringPlan
    from tonearm.mastering.targets import LoudnessTarget
    from tonearm.types import AudioArray

__all__ = [
    "FIRST_BLOCK_FRAMES",
    "PREROLL_S",
    "STREAM_BLOCK_FRAMES",
    "StreamPlan",
    "control_alignment_frames",
    "plan_for_stream",
    "render_gain_matched",
    "render_mastered",
    "stream_block_sizes",
]

FIRST_BLOCK_FRAMES = 8192
"""Frames in a stream's first block (small, so the first bytes come fast)."""
STREAM_BLOCK_FRAMES = 65536
"""Frames in every later block."""
PREROLL_S = 3.0
"""Audio rendered and dropped before a start frame > 0, so the envelopes are warm (see above)."""


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """A plan and what streaming it needs to know about the track.

    Attributes
    ----------
    plan : MasteringPlan
        What :func:`~tonearm.mastering.planner.make_plan` decided for the target and strength.
    info : AudioInfo
        The probed input (``info.frames`` is the exact length of the master too: the chain
        keeps it). Handing it to :class:`~tonearm.audio_io.AudioReader` skips a probe.
    input_lufs : float
        The original's integrated loudness (BS.1770-4, LUFS; -inf for silence).
    """

    plan: MasteringPlan
    info: AudioInfo
    input_lufs: float

    @property
    def match_gain_db(self) -> float:
        """Gain (dB) that brings the original to the master's loudness, for A/B listening.

        The master's loudness is taken as the plan's prediction (``predicted_lufs``): that is
        what a single-pass stream of the plan measures (there is no verify pass to correct it),
        and it is also right when the target is out of reach under the ceiling. 0 for silence.
        """
        predicted = self.plan.predicted_lufs
        if not (math.isfinite(predicted) and math.isfinite(self.input_lufs)):
            return 0.0
        return predicted - self.input_lufs


def plan_for_stream(
    path: str | os.PathLike[str],
    target: LoudnessTarget,
    strength: float,
    *,
    info: AudioInfo | None = None,
) -> StreamPlan:
    """Analyse ``path`` in one streaming pass and plan its master for ``target``.

    The analysis skips the fingerprint (a master does not use it) but keeps the 5 ms chunk
    levels: the planner's compressor decision and gain model need them.

    Parameters
    ----------
    path : str or os.PathLike
        The input file.
    target : LoudnessTarget
        Integrated loudness (LUFS) and true-peak ceiling (dBTP) to master to.
    strength : float
        0 (loudness and ceiling only) to 1 (full tonal and dynamic correction).
    info : AudioInfo, optional
        The file's probe, if already known (skips probing again).

    Raises
    ------
    DecodeError
        The file cannot be decoded.
    ParameterError
        ``strength`` outside 0..1.
    """
    if not 0.0 <= strength <= 1.0:
        raise ParameterError(f"strength must be between 0 and 1, got {strength}")
    with AudioReader(path, info=info) as reader:
        info = reader.info
    analysis = analyze_file(path, info=info, fingerprint=False)
    plan = make_plan(analysis, target, strength=strength)
    return StreamPlan(plan=plan, info=info, input_lufs=analysis.loudness.integrated_lufs)


def stream_block_sizes(
    frames: int,
    *,
    first_block_frames: int = FIRST_BLOCK_FRAMES,
    block_frames: int = STREAM_BLOCK_FRAMES,
) -> list[int]:
    """The block lengths a stream of ``frames`` frames is cut into: one of
    ``first_block_frames``, then ``block_frames`` each, the last one shorter."""
    sizes: list[int] = []
    size = first_block_frames
    while frames > 0:
        sizes.append(min(size, frames))
        frames -= sizes[-1]
        size = block_frames
    return sizes


def _check_block_sizes(first_block_frames: int, block_frames: int) -> None:
    for name, value in (("first_block_frames", first_block_frames), ("block_frames", block_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name} must be a positive integer, got {value!r}")


def _check_start(start_frame: int, frames: int) -> None:
    if isinstance(start_frame, bool) or not isinstance(start_frame, int):
        raise ParameterError(f"start_frame must be an integer, got {start_frame!r}")
    if not 0 <= start_frame <= frames:
        raise ParameterError(f"start_frame must be in 0..{frames}, got {start_frame}")


def _reblock(blocks: Iterable[AudioArray], sizes: Iterable[int]) -> Iterator[AudioArray]:
    """Cut a stream of blocks into pieces of ``sizes`` frames (each piece a new array); the
    last piece is what is left when the blocks run out first."""
    pending: list[AudioArray] = []
    held = 0
    want_sizes = iter(sizes)
    want = next(want_sizes, 0)
    for block in blocks:
        pending.append(block)
        held += block.shape[1]
        while want and held >= want:
            joined = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
            yield np.ascontiguousarray(joined[:, :want])
            rest = joined[:, want:]
            pending = [rest] if rest.shape[1] else []
            held -= want
            want = next(want_sizes, 0)
    if held:
        yield np.ascontiguousarray(
            np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
        )


def control_alignment_frames(sample_rate: int) -> int:
    """Frames a mid-stream render must start on a multiple of, so the limiter's and the
    compressor's gain envelopes are computed on the same control grid as from frame 0."""
    steps = (
        max(1, round(period_s * sample_rate))
        for period_s in (LIMITER_CONTROL_PERIOD_S, COMPRESSOR_CONTROL_PERIOD_S)
    )
    return math.lcm(*steps)


def render_mastered(
    path: str | os.PathLike[str],
    plan: MasteringPlan,
    *,
    start_frame: int = 0,
    block_frames: int = STREAM_BLOCK_FRAMES,
    first_block_frames: int = FIRST_BLOCK_FRAMES,
    preroll_frames: int | None = None,
    info: AudioInfo | None = None,
) -> Generator[AudioArray, None, None]:
    """The master of ``path`` from ``start_frame`` to the end, in float32 ``(channels, n)``.

    Parameters
    ----------
    path : str or os.PathLike
        The input file (the one ``plan`` was made for: same rate and channels).
    plan : MasteringPlan
        What to apply (a single pass with ``plan.gain_db``; nothing is verified).
    start_frame : int
        First output frame, 0 to the input's length.
    block_frames, first_block_frames : int
        Input block sizes (see :func:`stream_block_sizes`); each output block is as long as
        its input block, the first one shorter by the chain's latency.
    preroll_frames : int, optional
        Frames rendered and dropped before ``start_frame`` > 0 (default :data:`PREROLL_S`
        seconds); see the module docstring for what it buys.
    info : AudioInfo, optional
        The file's probe, if already known.

    Yields
    ------
    AudioArray
        float32 ``(channels, n)`` blocks, ``frames - start_frame`` frames in all. From 0 they
        are bit-identical to ``render_blocks(MasteringChain(plan), ...)`` over input blocks
        cut as :func:`stream_block_sizes` says.

    Raises
    ------
    ParameterError
        ``start_frame`` out of range, bad block sizes, or a plan for another rate or layout.
    DecodeError
        The input cannot be decoded (at the block where that is found).
    """
    _check_block_sizes(first_block_frames, block_frames)
    with AudioReader(path, info=info) as reader:
        source = reader.info
        if plan.sample_rate != source.sample_rate or plan.channels != source.channels:
            raise ParameterError(
                f"the plan is for {plan.channels} channel(s) at {plan.sample_rate} Hz; "
                f"'{source.path.name}' has {source.channels} at {source.sample_rate} Hz"
            )
        _check_start(start_frame, source.frames)
        if start_frame == source.frames:
            return
        begin = 0
        if start_frame > 0:
            preroll = (
                round(PREROLL_S * source.sample_rate) if preroll_frames is None else preroll_frames
            )
            if preroll < 0:
                raise ParameterError(f"preroll_frames must be >= 0, got {preroll}")
            align = control_alignment_frames(source.sample_rate)
            begin = max(0, start_frame - preroll) // align * align
        # the pre-roll in big blocks, then the small first block, then big ones
        warmup = start_frame - begin
        sizes = [block_frames] * (warmup // block_frames)
        if warmup % block_frames:
            sizes.append(warmup % block_frames)
        sizes += stream_block_sizes(
            source.frames - start_frame,
            first_block_frames=first_block_frames,
            block_frames=block_frames,
        )
        decoded = reader.blocks(block_frames=first_block_frames, start_frame=begin)
        blocks = _reblock(decoded, sizes)
        rendered = render_blocks(MasteringChain(plan), blocks, channels=source.channels)
        try:
            drop = warmup
            for out in rendered:
                if drop:
                    cut = min(drop, out.shape[1])
                    drop -= cut
                    out = out[:, cut:]
                    if not out.shape[1]:
                        continue
                yield out
        finally:
            rendered.close()


def render_gain_matched(
    path: str | os.PathLike[str],
    gain_db: float,
    *,
    start_frame: int = 0,
    block_frames: int = STREAM_BLOCK_FRAMES,
    first_block_frames: int = FIRST_BLOCK_FRAMES,
    info: AudioInfo | None = None,
) -> Generator[AudioArray, None, None]:
    """The original from ``start_frame`` on, times a plain gain (``gain_db``, dB), as float32
    ``(channels, n)`` blocks cut as :func:`stream_block_sizes` says. Nothing is limited: the
    result may pass full scale (keep it in float).

    Raises
    ------
    ParameterError
        ``start_frame`` out of range or bad block sizes.
    DecodeError
        The input cannot be decoded.
    """
    _check_block_sizes(first_block_frames, block_frames)
    gain = np.float32(db_to_gain(gain_db))
    with AudioReader(path, info=info) as reader:
        frames = reader.info.frames
        _check_start(start_frame, frames)
        sizes = stream_block_sizes(
            frames - start_frame, first_block_frames=first_block_frames, block_frames=block_frames
        )
        decoded = reader.blocks(block_frames=first_block_frames, start_frame=start_frame)
        for block in _reblock(decoded, sizes):
            yield block * gain
