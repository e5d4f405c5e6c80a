"""The render chain: a plan turned into streaming stages.

Order: mid/side linear-phase EQ (the width guard's side gain folded into the side filter) ->
gentle compressor -> make-up gain -> lookahead true-peak limiter. Each stage returns as many
frames as it gets, late by its own ``latency_frames``; :func:`render_blocks` feeds the total
latency of silence after the last block and drops the same amount from the front, so the output
has exactly the input's length and alignment.

With ``threaded=True`` the EQ and the dynamics run as two pipeline stages on their own threads
(:func:`tonearm.pipeline.threaded_map`), so they overlap with each other and with the caller's
encoding and metering. Each stage object is only ever used by one thread, and the output is
bit-identical to the single-threaded render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tonearm.dsp.channels import from_mid_side, to_mid_side
from tonearm.dsp.dynamics import Compressor, GainReductionStats, TruePeakLimiter, db_to_gain
from tonearm.dsp.eq import FirConvolver, design_linear_phase_fir, fir_taps_for
from tonearm.pipeline import threaded_map

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

    from tonearm.mastering.plan import MasteringPlan
    from tonearm.types import AudioArray

__all__ = ["MasteringChain", "render_blocks"]


class MidSideEq:
    """Linear-phase EQ on mid and side (mono: mid only), with a static side gain."""

    def __init__(self, plan: MasteringPlan) -> None:
        duration_s = 0.093 if plan.eq is None else plan.eq.fir_duration_s
        taps = fir_taps_for(plan.sample_rate, duration_s=duration_s)
        identity = np.zeros(taps, dtype=np.float32)
        identity[(taps - 1) // 2] = 1.0
        eq = plan.eq
        mid = (
            identity
            if eq is None
            else design_linear_phase_fir(
                eq.freqs_hz, eq.mid_db, sample_rate=plan.sample_rate, taps=taps
            )
        )
        filters = [mid]
        if plan.channels == 2:
            side = (
                identity
                if eq is None
                else design_linear_phase_fir(
                    eq.freqs_hz, eq.side_db, sample_rate=plan.sample_rate, taps=taps
                )
            )
            filters.append(side * np.float32(db_to_gain(plan.width.side_gain_db)))
        self._convolver = FirConvolver(np.stack(filters))
        self.latency_frames = self._convolver.latency_frames

    def reset(self) -> None:
        """Start a new stream."""
        self._convolver.reset()

    def process(self, block: AudioArray) -> AudioArray:
        """Equalise one block (``latency_frames`` late)."""
        return from_mid_side(self._convolver.process(to_mid_side(block)))


class MasteringChain:
    """All stages of a plan, as one streaming processor with an explicit ``reset()``.

    Parameters
    ----------
    plan : MasteringPlan
    gain_db : float, optional
        Overrides ``plan.gain_db`` (the renderer's correction after verification).
    safety_margin_db : float, optional
        Overrides the limiter's internal headroom under the ceiling.
    """

    def __init__(
        self,
        plan: MasteringPlan,
        *,
        gain_db: float | None = None,
        safety_margin_db: float | None = None,
    ) -> None:
        self.plan = plan
        needs_eq = plan.eq is not None or plan.width.side_gain_db != 0.0
        self._eq = MidSideEq(plan) if needs_eq else None
        dyn = plan.dynamics
        self._compressor = (
            None
            if dyn is None
            else Compressor(
                sample_rate=plan.sample_rate,
                channels=plan.channels,
                threshold_dbfs=dyn.threshold_dbfs,
                ratio=dyn.ratio,
                knee_db=dyn.knee_db,
                attack_ms=dyn.attack_ms,
                release_ms=dyn.release_ms,
                rms_window_ms=dyn.rms_window_ms,
                max_reduction_db=dyn.max_reduction_db,
            )
        )
        lim = plan.limiter
        self._limiter = TruePeakLimiter(
            sample_rate=plan.sample_rate,
            channels=plan.channels,
            ceiling_dbtp=lim.ceiling_dbtp,
            input_gain_db=plan.gain_db if gain_db is None else gain_db,
            lookahead_ms=lim.lookahead_ms,
            release_ms=lim.release_ms,
            safety_margin_db=lim.safety_margin_db if safety_margin_db is None else safety_margin_db,
        )
        self.latency_frames = sum(
            stage.latency_frames for stage in (self._eq, self._compressor, self._limiter) if stage
        )

    def reset(self) -> None:
        """Start a new stream."""
        for stage in (self._eq, self._compressor, self._limiter):
            if stage is not None:
                stage.reset()

    @property
    def limiter_stats(self) -> GainReductionStats:
        """Limiter gain reduction over the stream so far."""
        return self._limiter.stats

    @property
    def compressor_stats(self) -> GainReductionStats | None:
        """Compressor gain reduction over the stream so far (None without a compressor)."""
        return None if self._compressor is None else self._compressor.stats

    def process(self, block: AudioArray) -> AudioArray:
        """Run one block through every stage (``latency_frames`` late)."""
        if self._eq is not None:
            block = self._eq.process(block)
        return self._dynamics(block)

    def _dynamics(self, block: AudioArray) -> AudioArray:
        if self._compressor is not None:
            block = self._compressor.process(block)
        return self._limiter.process(block)

    def stages(self) -> list[Callable[[AudioArray], AudioArray]]:
        """The chain as consecutive block functions (the EQ if the plan has one, then the
        dynamics): applying them in turn is :meth:`process`. Two stages balance two cores
        best; a stage per processor costs more in thread hand-offs than it gains."""
        head = [] if self._eq is None else [self._eq.process]
        return [*head, self._dynamics]


def _with_flush(
    blocks: Iterable[AudioArray], *, frames: int, channels: int, flush_frames: int
) -> Generator[AudioArray, None, None]:
    """The blocks, then ``frames`` of silence (in pieces of at most ``flush_frames``)."""
    yield from blocks
    while frames > 0:
        count = min(frames, flush_frames)
        yield np.zeros((channels, count), dtype=np.float32)
        frames -= count


def render_blocks(
    chain: MasteringChain,
    blocks: Iterable[AudioArray],
    *,
    channels: int,
    flush_frames: int = 65536,
    threaded: bool = False,
) -> Generator[AudioArray, None, None]:
    """Stream blocks through ``chain``; the output is time-aligned and exactly as long.

    ``threaded`` runs each of ``chain.stages()`` on its own thread (the source is then iterated
    on the first stage's thread); closing the returned iterator stops them.
    """
    chain.reset()
    padded = _with_flush(
        blocks, frames=chain.latency_frames, channels=channels, flush_frames=flush_frames
    )
    if threaded:
        stream: Generator[AudioArray, None, None] = padded
        for number, stage in enumerate(chain.stages(), start=1):
            stream = threaded_map(stage, stream, name=f"tonearm-render-{number}")
    else:
        stream = (chain.process(block) for block in padded)  # a generator, closable too
    pending = chain.latency_frames  # output frames still to drop
    try:
        for out in stream:
            if pending:
                drop = min(pending, out.shape[1])
                out = out[:, drop:]
                pending -= drop
            if out.shape[1]:
                yield out
    finally:
        stream.close()  # stops the stage threads when the caller stops early
