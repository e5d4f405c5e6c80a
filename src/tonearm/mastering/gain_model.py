"""Predict the master's loudness from the analysis pass, and solve the make-up gain.

The limiter is the one strongly non-linear stage: the louder the gain in front of it, the more
it takes back. Rather than rendering the track several times to find the gain that lands on the
target, the chain is simulated at 5 ms resolution on the :class:`ChunkLevels` of the analysis
pass (200 values per second instead of 44 100; coarser for tracks over ~17 minutes):

* EQ: its K-weighted loudness change and peak change, as flat offsets.
* Compressor: the same soft-knee curve and lookahead/release envelope as the real stage, run on
  the chunk RMS levels.
* Limiter: each chunk's peak against the ceiling, held and released like the real limiter.
* Loudness: chunk K-weighted energies, reduced by the simulated gains, summed into BS.1770-4
  100 ms sub-blocks and gated exactly as the meter does.

Predicted loudness rises monotonically with the gain, so bisection finds the gain for a target.
The render is verified afterwards; the model only has to be close enough to make a second pass
rare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tonearm.dsp.dynamics import compressor_gain_reduction_db
from tonearm.dsp.envelope import GainEnvelope, causal_moving_average
from tonearm.dsp.loudness import integrated_loudness_from_subblocks

if TYPE_CHECKING:
    from tonearm.mastering.analysis import ChunkLevels
    from tonearm.mastering.plan import DynamicsPlan, LimiterPlan

__all__ = ["LoudnessPrediction", "PreLimiterLevels", "pre_limiter_levels", "predict", "solve_gain"]

FloatArray = npt.NDArray[np.float64]

MIN_GAIN_DB = -40.0
MAX_GAIN_DB = 60.0


@dataclass(frozen=True, slots=True)
class PreLimiterLevels:
    """Chunk levels of the signal that reaches the limiter's gain stage (before make-up gain)."""

    peak_db: FloatArray
    k_energy: FloatArray
    subblock_frames: FloatArray
    compressor_max_db: float
    chunks_per_subblock: int

    @property
    def chunk_ms(self) -> float:
        """Duration of one chunk in milliseconds."""
        return 100.0 / self.chunks_per_subblock


@dataclass(frozen=True, slots=True)
class LoudnessPrediction:
    """What the model expects at one make-up gain."""

    gain_db: float
    integrated_lufs: float
    limiter_max_db: float
    limiter_mean_db: float
    reachable: bool = True
    slope: float = 1.0


def _settle(envelope: GainEnvelope, required: FloatArray) -> FloatArray:
    """Run a whole series through an envelope and undo its latency."""
    latency = envelope.latency_frames
    out = envelope.process(required)
    if latency:
        out = np.concatenate((out, envelope.process(np.zeros(latency))))[latency:]
    return out


def pre_limiter_levels(
    chunks: ChunkLevels,
    *,
    eq_loudness_offset_db: float,
    dynamics: DynamicsPlan | None,
    true_peak_overshoot_db: float,
) -> PreLimiterLevels:
    """Apply the EQ offsets and the compressor to the chunk levels.

    ``true_peak_overshoot_db`` is added to every chunk's sample peak as an estimate of its
    inter-sample peak (the input's true peak minus its sample peak).
    """
    peak_db = 20.0 * np.log10(np.maximum(chunks.peak.astype(np.float64), 1e-10))
    peak_db += eq_loudness_offset_db + true_peak_overshoot_db
    energy_scale = 10.0 ** (eq_loudness_offset_db / 10.0)
    k_energy = chunks.k_energy.astype(np.float64) * energy_scale
    compressor_max_db = 0.0
    if dynamics is not None and chunks.peak.shape[0]:
        window = max(1, round(dynamics.rms_window_ms / chunks.chunk_ms))
        mean_square = causal_moving_average(
            chunks.mean_square.astype(np.float64) * energy_scale, history=np.zeros(window - 1)
        )
        required = compressor_gain_reduction_db(
            10.0 * np.log10(mean_square + 1e-20),
            threshold_db=dynamics.threshold_dbfs,
            ratio=dynamics.ratio,
            knee_db=dynamics.knee_db,
            max_reduction_db=dynamics.max_reduction_db,
        )
        envelope = GainEnvelope(
            lookahead_frames=max(1, round(dynamics.attack_ms / chunks.chunk_ms)),
            release_frames=max(1.0, dynamics.release_ms / chunks.chunk_ms),
        )
        reduction = _settle(envelope, required)
        compressor_max_db = float(reduction.max(initial=0.0))
        peak_db -= reduction
        k_energy *= 10.0 ** (-reduction / 10.0)
    per = chunks.chunks_per_subblock
    usable = (chunks.frames.shape[0] // per) * per
    subblock_frames = chunks.frames[:usable].astype(np.float64).reshape(-1, per).sum(axis=1)
    return PreLimiterLevels(peak_db, k_energy, subblock_frames, compressor_max_db, per)


def predict(
    levels: PreLimiterLevels, *, gain_db: float, limiter: LimiterPlan
) -> LoudnessPrediction:
    """Predicted integrated loudness and limiter load at a make-up gain."""
    ceiling_db = limiter.ceiling_dbtp - limiter.safety_margin_db
    required = np.maximum(levels.peak_db + gain_db - ceiling_db, 0.0)
    envelope = GainEnvelope(
        lookahead_frames=max(1, round(limiter.lookahead_ms / levels.chunk_ms)),
        release_frames=max(1.0, limiter.release_ms / levels.chunk_ms),
    )
    reduction = _settle(envelope, required)
    energy = levels.k_energy * 10.0 ** ((gain_db - reduction) / 10.0)
    count = levels.subblock_frames.shape[0]
    per = levels.chunks_per_subblock
    subblocks = energy[: count * per].reshape(count, per).sum(axis=1)
    subblocks /= np.maximum(levels.subblock_frames, 1.0)
    return LoudnessPrediction(
        gain_db=gain_db,
        integrated_lufs=integrated_loudness_from_subblocks(subblocks),
        limiter_max_db=float(reduction.max(initial=0.0)),
        limiter_mean_db=float(reduction.mean()) if reduction.shape[0] else 0.0,
    )


def solve_gain(
    levels: PreLimiterLevels,
    *,
    target_lufs: float,
    limiter: LimiterPlan,
    tolerance_lu: float = 0.01,
) -> LoudnessPrediction:
    """Bisect the make-up gain that the model says lands on ``target_lufs``.

    If even ``MAX_GAIN_DB`` cannot reach the target (the ceiling caps the loudness), the result
    has ``reachable=False`` and the gain where the loudness stops growing.
    """
    low, high = MIN_GAIN_DB, MAX_GAIN_DB
    top = predict(levels, gain_db=high, limiter=limiter)
    if not np.isfinite(top.integrated_lufs):
        return LoudnessPrediction(0.0, float("-inf"), 0.0, 0.0, reachable=False)
    if top.integrated_lufs < target_lufs:
        # the loudness saturates: take the smallest gain within 0.1 LU of the plateau
        plateau = top.integrated_lufs - 0.1
        for _ in range(40):
            mid = 0.5 * (low + high)
            if predict(levels, gain_db=mid, limiter=limiter).integrated_lufs < plateau:
                low = mid
            else:
                high = mid
        best = predict(levels, gain_db=high, limiter=limiter)
        return _with_slope(levels, best, limiter=limiter, reachable=False)
    best = top
    for _ in range(60):
        mid = 0.5 * (low + high)
        guess = predict(levels, gain_db=mid, limiter=limiter)
        if guess.integrated_lufs < target_lufs:
            low = mid
        else:
            high, best = mid, guess
        if high - low < tolerance_lu * 0.5:
            break
    return _with_slope(levels, best, limiter=limiter, reachable=True)


def _with_slope(
    levels: PreLimiterLevels, at: LoudnessPrediction, *, limiter: LimiterPlan, reachable: bool
) -> LoudnessPrediction:
    """Attach dLUFS/dGain (for correcting the gain after a verified render)."""
    step = 0.5
    above = predict(levels, gain_db=at.gain_db + step, limiter=limiter).integrated_lufs
    below = predict(levels, gain_db=at.gain_db - step, limiter=limiter).integrated_lufs
    slope = (above - below) / (2 * step) if np.isfinite(above) and np.isfinite(below) else 1.0
    return LoudnessPrediction(
        gain_db=at.gain_db,
        integrated_lufs=at.integrated_lufs,
        limiter_max_db=at.limiter_max_db,
        limiter_mean_db=at.limiter_mean_db,
        reachable=reachable,
        slope=float(np.clip(slope, 0.05, 1.0)),
    )
