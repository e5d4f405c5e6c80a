"""Turn an analysis and a loudness target into a :class:`MasteringPlan`.

Decisions, each scaled by ``strength`` (0 = loudness only, 1 = full):

* **Tonal balance**: third-octave mid levels of the loud parts, smoothed over an octave,
  compared with the track's own balance smoothed over three octaves; octave-wide humps and
  dips (resonances, boxiness, harshness) are pulled half-way back to it, and an extreme overall
  tilt half-way toward -1.5..-6 dB/octave. The track's character is kept.
  Cuts stay within ``max_eq_db`` (3 dB) and boosts within 2 dB; nothing is boosted below 60 Hz
  or where the track has little content (30 dB under its loudest band). Side follows mid with
  boosts capped at +1 dB and a low-side trim
  that tightens the bass.
* **Dynamics**: only when the limiter would otherwise carry more than 4 dB; a 1.8:1 soft-knee
  RMS compressor, slow release, threshold 3 dB under the 95th percentile of the short-time
  level, reduction capped at 4 dB: it takes the edge off the loudest moments and leaves the
  rest of the dynamics alone.
* **Width guard**: a side/mid energy ratio above -3 dB (correlation heading toward zero) is
  brought back to -3 dB.
* **Gain**: solved by :mod:`tonearm.mastering.gain_model` so the output lands on the target
  after the limiter, whatever the strength.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.signal

from tonearm.dsp.filters import k_weighting_sos
from tonearm.dsp.spectrum import (
    MidSideSpectrum,
    band_levels_db,
    spectral_tilt_db_per_octave,
    third_octave_centers_hz,
)
from tonearm.errors import ParameterError
from tonearm.events import MessageCode
from tonearm.mastering.gain_model import pre_limiter_levels, solve_gain
from tonearm.mastering.plan import DynamicsPlan, EqPlan, LimiterPlan, MasteringPlan, WidthPlan

if TYPE_CHECKING:
    from tonearm.mastering.analysis import TrackAnalysis
    from tonearm.mastering.targets import LoudnessTarget

__all__ = ["eq_loudness_offset_db", "make_plan", "plan_dynamics", "plan_eq", "plan_width"]

FloatArray = npt.NDArray[np.float64]

MAX_EQ_DB = 3.0
MAX_EQ_BOOST_DB = 2.0
MAX_SIDE_BOOST_DB = 1.0
NATURAL_TILT_DB_PER_OCTAVE = (-6.0, -1.5)
MAX_SIDE_TO_MID_DB = -3.0
LIMITER_COMFORT_DB = 4.0


def _band_smooth(values: FloatArray, *, bands: int) -> FloatArray:
    """Moving average over ``bands`` third-octave bands (odd), edges held."""
    half = bands // 2
    padded = np.concatenate((np.repeat(values[:1], half), values, np.repeat(values[-1:], half)))
    return np.convolve(padded, np.full(bands, 1.0 / bands), mode="valid")


def plan_eq(
    spectrum: MidSideSpectrum, *, strength: float, max_eq_db: float = MAX_EQ_DB
) -> EqPlan | None:
    """Gentle M/S tonal correction toward the track's own smooth balance (None if negligible)."""
    if spectrum.frames_used == 0 or strength <= 0:
        return None
    nyquist = spectrum.sample_rate / 2
    centers = third_octave_centers_hz(f_min_hz=31.5, f_max_hz=min(16000.0, 0.9 * nyquist))
    mid_db = band_levels_db(spectrum.freqs_hz, spectrum.mid_power, centers_hz=centers)
    has_content = np.isfinite(mid_db) & (mid_db > np.nanmax(mid_db) - 45.0)
    if has_content.sum() < 6:
        return None
    floor = np.nanmax(mid_db) - 45.0
    smooth = _band_smooth(np.where(has_content, mid_db, floor), bands=3)  # one octave
    balance = _band_smooth(smooth, bands=9)  # the track's own smooth balance: three octaves
    fit = has_content & (centers >= 50.0)
    tilt = spectral_tilt_db_per_octave(centers[fit], smooth[fit])
    octaves = np.log2(centers / 1000.0)
    wanted_tilt = float(np.clip(tilt, *NATURAL_TILT_DB_PER_OCTAVE))
    correction = -0.5 * (smooth - balance) + 0.5 * (wanted_tilt - tilt) * octaves
    correction = _band_smooth(correction, bands=3) * strength
    correction = np.clip(correction, -max_eq_db, min(max_eq_db, MAX_EQ_BOOST_DB))
    no_boost = ~has_content | (mid_db < np.nanmax(mid_db) - 30.0) | (centers < 60.0)
    correction[no_boost] = np.minimum(correction[no_boost], 0.0)
    side = np.minimum(correction, MAX_SIDE_BOOST_DB)
    if spectrum.side_power.any():
        side_db = band_levels_db(spectrum.freqs_hz, spectrum.side_power, centers_hz=centers)
        bass = centers < 120.0
        excess = np.clip(side_db[bass] - (mid_db[bass] - 12.0), 0.0, 3.0)
        side[bass] -= np.nan_to_num(excess) * strength
        side = np.maximum(side, -max_eq_db)
    if max(np.abs(correction).max(), np.abs(side).max()) < 0.25:
        return None
    plan = EqPlan(
        freqs_hz=tuple(float(f) for f in centers),
        mid_db=tuple(round(float(v), 3) for v in correction),
        side_db=tuple(round(float(v), 3) for v in side),
        tilt_db_per_octave=round(float(tilt), 3),
    )
    return plan


def eq_loudness_offset_db(
    spectrum: MidSideSpectrum, eq: EqPlan | None, *, side_gain_db: float = 0.0
) -> float:
    """K-weighted loudness change (dB) the EQ and side gain cause on this spectrum."""
    if spectrum.frames_used == 0 or (eq is None and side_gain_db == 0.0):
        return 0.0
    freqs = spectrum.freqs_hz
    _, response = scipy.signal.sosfreqz(
        k_weighting_sos(spectrum.sample_rate), worN=freqs, fs=spectrum.sample_rate
    )
    weight = np.abs(response) ** 2
    if eq is None:
        mid_gain = np.ones_like(freqs)
        side_gain = np.ones_like(freqs)
    else:
        log_f = np.log2(np.maximum(freqs, 1.0))
        log_points = np.log2(np.asarray(eq.freqs_hz))
        mid_gain = 10.0 ** (np.interp(log_f, log_points, eq.mid_db) / 10.0)
        side_gain = 10.0 ** (np.interp(log_f, log_points, eq.side_db) / 10.0)
    side_gain = side_gain * 10.0 ** (side_gain_db / 10.0)
    before = float(np.sum(weight * (spectrum.mid_power + spectrum.side_power)))
    after = float(
        np.sum(weight * (spectrum.mid_power * mid_gain + spectrum.side_power * side_gain))
    )
    if before <= 0 or after <= 0:
        return 0.0
    return float(10.0 * np.log10(after / before))


def plan_width(analysis: TrackAnalysis, *, strength: float) -> WidthPlan:
    """Width guard: bring an over-wide or phasey image back to the side/mid limit."""
    side_to_mid = analysis.levels.side_to_mid_db
    if analysis.channels < 2 or not np.isfinite(side_to_mid) or side_to_mid <= MAX_SIDE_TO_MID_DB:
        return WidthPlan(0.0, side_to_mid, MAX_SIDE_TO_MID_DB)
    return WidthPlan(
        round((MAX_SIDE_TO_MID_DB - side_to_mid) * strength, 3), side_to_mid, MAX_SIDE_TO_MID_DB
    )


def plan_dynamics(
    analysis: TrackAnalysis, target: LoudnessTarget, *, strength: float
) -> DynamicsPlan | None:
    """A gentle compressor, only when the limiter would otherwise work hard."""
    integrated = analysis.loudness.integrated_lufs
    if strength <= 0 or not np.isfinite(integrated):
        return None
    limiter_load = analysis.true_peak_dbtp + (target.lufs - integrated) - target.ceiling_dbtp
    if limiter_load <= LIMITER_COMFORT_DB:
        return None
    mean_square = analysis.chunks.mean_square.astype(np.float64)
    window = max(1, round(30.0 / analysis.chunks.chunk_ms))  # a 30 ms RMS window
    if mean_square.shape[0] < window:
        return None
    smoothed = np.convolve(mean_square, np.full(window, 1.0 / window), mode="valid")
    level_db = 10.0 * np.log10(smoothed[smoothed > 1e-7])
    if level_db.shape[0] == 0:
        return None
    threshold = float(np.percentile(level_db, 95.0)) - 3.0
    return DynamicsPlan(
        threshold_dbfs=round(threshold, 2),
        ratio=round(1.0 + 0.8 * strength, 3),
        max_reduction_db=round(min(4.0, limiter_load / 2.0) * strength, 2),
    )


def make_plan(
    analysis: TrackAnalysis,
    target: LoudnessTarget,
    *,
    strength: float = 1.0,
    limiter: LimiterPlan | None = None,
) -> MasteringPlan:
    """Plan the master of an analysed track for a target."""
    if not 0.0 <= strength <= 1.0:
        raise ParameterError(f"strength must be between 0 and 1, got {strength}")
    limiter_plan = limiter or LimiterPlan(ceiling_dbtp=target.ceiling_dbtp)
    notes: list[str] = []
    if not np.isfinite(analysis.loudness.integrated_lufs):
        notes.append(
            f"{MessageCode.SILENT_INPUT:d}: input is silent (nothing above the -70 LUFS "
            "absolute gate of BS.1770); nothing to master"
        )
        return MasteringPlan(
            sample_rate=analysis.sample_rate,
            channels=analysis.channels,
            target=target,
            strength=strength,
            eq=None,
            dynamics=None,
            width=WidthPlan(),
            gain_db=0.0,
            limiter=limiter_plan,
            predicted_lufs=float("-inf"),
            notes=tuple(notes),
        )
    eq = plan_eq(analysis.spectrum, strength=strength)
    width = plan_width(analysis, strength=strength)
    offset = eq_loudness_offset_db(analysis.spectrum, eq, side_gain_db=width.side_gain_db)
    if eq is not None:
        eq = EqPlan(eq.freqs_hz, eq.mid_db, eq.side_db, eq.tilt_db_per_octave, round(offset, 3))
    if width.side_gain_db < 0:
        notes.append(
            f"{MessageCode.WIDTH_REDUCED:d}: side/mid {width.side_to_mid_db:.1f} dB is over "
            f"{MAX_SIDE_TO_MID_DB:g} dB; side lowered {-width.side_gain_db:.1f} dB"
        )
    dynamics = plan_dynamics(analysis, target, strength=strength)
    overshoot = max(0.0, analysis.true_peak_dbtp - analysis.levels.sample_peak_dbfs)
    levels = pre_limiter_levels(
        analysis.chunks,
        eq_loudness_offset_db=offset,
        dynamics=dynamics,
        true_peak_overshoot_db=min(overshoot, 1.0),
    )
    solution = solve_gain(levels, target_lufs=target.lufs, limiter=limiter_plan)
    if not solution.reachable:
        notes.append(
            f"{MessageCode.TARGET_UNREACHABLE:d}: {target.lufs:g} LUFS is out of reach under a "
            f"{target.ceiling_dbtp:g} dBTP ceiling; about {solution.integrated_lufs:.1f} LUFS "
            "is the most"
        )
    if solution.limiter_max_db > 6.0:
        notes.append(
            f"{MessageCode.HEAVY_LIMITING:d}: reaching {target.lufs:g} LUFS takes up to "
            f"{solution.limiter_max_db:.1f} dB of limiting "
            f"(average {solution.limiter_mean_db:.2f} dB)"
        )
    return MasteringPlan(
        sample_rate=analysis.sample_rate,
        channels=analysis.channels,
        target=target,
        strength=strength,
        eq=eq,
        dynamics=dynamics,
        width=width,
        gain_db=round(solution.gain_db, 4),
        limiter=limiter_plan,
        predicted_lufs=round(solution.integrated_lufs, 3),
        gain_slope=round(solution.slope, 4),
        target_reachable=solution.reachable,
        notes=tuple(notes),
    )
