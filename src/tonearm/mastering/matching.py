"""Reference matching: plan a master that takes on a reference's loudness, tone and width.

1. **Tonal balance** (mid and side separately): the ratio of the reference's and the mix's
   loud-part band levels (each normalised by its own mid level, so loudness plays no part),
   smoothed over ``smoothing_octaves`` in the dB domain, clamped to ``±max_eq_db`` (12 dB), and
   not boosting where the mix has no content: boosts taper from full at 80 dB under the mix's
   average level to none at 100 dB, without a step. Bands past either track's Nyquist hold
   the last valid value.
2. **Width**: normalising side by the *mid* level makes the side curve carry the width change
   too. Per band, the side curve may not make the result's side/mid ratio exceed the
   reference's; broadband, a correlation guard keeps side power at least 1 dB under mid
   (phase correlation above about 0.1), however wide the reference. ``match_width=False`` gives
   side the mid curve (the mix's own width).
3. **Strength** scales both curves themselves, not a dry/wet mix: 0 leaves only the loudness.
4. **Loudness**: the references' (loudness-weighted) integrated loudness under the ceiling;
   the gain model says when the ceiling makes it unreachable, and the report states the most
   that fits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tonearm.errors import ParameterError
from tonearm.events import MessageCode
from tonearm.mastering.gain_model import pre_limiter_levels, solve_gain
from tonearm.mastering.metrics import side_to_mid_db, tonal_distance_db
from tonearm.mastering.plan import EqPlan, LimiterPlan, MasteringPlan, WidthPlan
from tonearm.mastering.planner import eq_loudness_offset_db, plan_dynamics
from tonearm.mastering.reference import (
    BAND_CENTERS_HZ,
    BAND_FRACTION,
    ReferenceProfile,
    band_profile,
)
from tonearm.mastering.targets import MAX_TARGET_LUFS, MIN_TARGET_LUFS, LoudnessTarget

if TYPE_CHECKING:
    from tonearm.dsp.spectrum import MidSideSpectrum
    from tonearm.mastering.analysis import TrackAnalysis

__all__ = [
    "MatchSettings",
    "MatchSummary",
    "match_curves",
    "plan_match",
    "retarget_plan",
    "summarise_match",
]

FloatArray = npt.NDArray[np.float64]
NO_CONTENT_DB = 100.0
NO_CONTENT_TAPER_DB = 20.0
MAX_SIDE_TO_MID_DB = -1.0  # correlation guard: side at least 1 dB under mid, broadband
MAX_EQ_LIMIT_DB = 24.0  # the most --max-eq allows: beyond it a curve mostly lifts noise
MATCH_FIR_DURATION_S = 0.37  # ~16 Hz resolution: 1/3-octave detail down to ~50 Hz


@dataclass(frozen=True, slots=True)
class MatchSettings:
    """What to take from the references."""

    match_eq: bool = True
    match_width: bool = True
    match_loudness: bool = True
    smoothing_octaves: float = 1.0 / 3.0
    max_eq_db: float = 12.0
    lufs: float | None = None
    """A loudness that overrides the references' (``--lufs``)."""

    def __post_init__(self) -> None:
        if not 1.0 / 24.0 <= self.smoothing_octaves <= 3.0:
            raise ParameterError(
                f"smoothing must be between 1/24 and 3 octaves, got {self.smoothing_octaves:g}"
            )
        if not 0.0 <= self.max_eq_db <= MAX_EQ_LIMIT_DB:
            raise ParameterError(
                f"max EQ must be between 0 and {MAX_EQ_LIMIT_DB:g} dB, got {self.max_eq_db:g}"
            )


def _smooth(values: FloatArray, *, octaves: float) -> FloatArray:
    """Moving average over ``octaves`` of 1/12-octave bands (dB domain), edges held."""
    width = max(1, round(octaves * BAND_FRACTION))
    if width % 2 == 0:
        width += 1
    half = width // 2
    padded = np.concatenate((np.repeat(values[:1], half), values, np.repeat(values[-1:], half)))
    return np.convolve(padded, np.full(width, 1.0 / width), mode="valid")


def _hold_edges(values: FloatArray, valid: npt.NDArray[np.bool_]) -> FloatArray:
    """Replace invalid bands by the nearest valid band's value (0 if none is valid)."""
    if not valid.any():
        return np.zeros_like(values)
    index = np.flatnonzero(valid)
    return np.interp(np.arange(values.shape[0]), index, values[index])


def match_curves(
    mix: TrackAnalysis, reference: ReferenceProfile, *, settings: MatchSettings, strength: float
) -> tuple[FloatArray, FloatArray]:
    """Mid and side gain curves (dB) on :data:`BAND_CENTERS_HZ` (see the module docstring)."""
    ours = band_profile(mix.spectrum)
    theirs = reference.bands
    both = ours.valid & theirs.valid
    if not both.any():
        raise ParameterError("the mix and the reference share no frequency range to match")
    mid = _hold_edges(np.where(both, theirs.mid_db - ours.mid_db, 0.0), both)
    mid = np.clip(
        _smooth(mid, octaves=settings.smoothing_octaves), -settings.max_eq_db, settings.max_eq_db
    )
    # profiles are normalised to the mix's average mid level (0 dB): far under it is noise.
    # Boosts taper from full at -80 dB to none at -100 dB, then the curve is smoothed again so
    # the taper leaves no step.
    content = np.where(ours.valid, ours.mid_db, -np.inf)
    taper = np.clip((content + NO_CONTENT_DB) / NO_CONTENT_TAPER_DB, 0.0, 1.0)
    mid = _smooth(np.where(mid > 0, mid * taper, mid), octaves=settings.smoothing_octaves)
    empty = taper < 1.0
    stereo = mix.channels == 2 and np.isfinite(ours.side_db).any()
    if not (stereo and reference.stereo and settings.match_width):
        return mid * strength, mid * strength
    side_both = both & np.isfinite(ours.side_db) & np.isfinite(theirs.side_db)
    with np.errstate(invalid="ignore"):  # -inf - -inf in bands left out by side_both
        side_ratio = np.where(side_both, theirs.side_db - ours.side_db, 0.0)
    side = _hold_edges(side_ratio, side_both)
    side = np.clip(
        _smooth(side, octaves=settings.smoothing_octaves), -settings.max_eq_db, settings.max_eq_db
    )
    # per band: never wider than the reference (side/mid after <= the reference's side/mid)
    with np.errstate(invalid="ignore"):
        ours_s2m = np.where(side_both, ours.side_db - ours.mid_db, 0.0)
        theirs_s2m = np.where(side_both, theirs.side_db - theirs.mid_db, 0.0)
    # the limit is smoothed like the curves, or single harmonics would make it jagged
    width_limit = _smooth(
        _hold_edges(theirs_s2m - ours_s2m, side_both), octaves=settings.smoothing_octaves
    )
    side = np.minimum(side, mid + width_limit)
    side[empty] = np.minimum(side[empty], mid[empty])
    side = _guard_correlation(mid, side, ours=ours.mid_db, ours_side=ours.side_db)
    side = np.clip(side, -settings.max_eq_db, settings.max_eq_db)
    return mid * strength, side * strength


def _guard_correlation(
    mid: FloatArray, side: FloatArray, *, ours: FloatArray, ours_side: FloatArray
) -> FloatArray:
    """Lower the whole side curve until broadband side power is MAX_SIDE_TO_MID_DB under mid."""
    mid_power = np.nansum(np.where(np.isfinite(ours), 10.0 ** ((ours + mid) / 10.0), 0.0))
    side_power = np.nansum(
        np.where(np.isfinite(ours_side), 10.0 ** ((ours_side + side) / 10.0), 0.0)
    )
    if mid_power <= 0 or side_power <= 0:
        return side
    after = 10.0 * np.log10(side_power / mid_power)
    over = after - MAX_SIDE_TO_MID_DB
    return side - over if over > 0 else side


def _target_for(
    mix: TrackAnalysis, reference: ReferenceProfile, *, settings: MatchSettings, ceiling_dbtp: float
) -> LoudnessTarget:
    if settings.lufs is not None:
        lufs, name = settings.lufs, "custom"
    elif settings.match_loudness:
        lufs, name = reference.integrated_lufs, "reference"
    else:
        lufs, name = mix.loudness.integrated_lufs, "mix loudness"
    lufs = float(np.clip(lufs, MIN_TARGET_LUFS, MAX_TARGET_LUFS))
    return LoudnessTarget(
        name, round(lufs, 2), ceiling_dbtp, f"matched to {len(reference.paths)} reference(s)"
    )


def plan_match(
    mix: TrackAnalysis,
    reference: ReferenceProfile,
    *,
    settings: MatchSettings,
    strength: float = 1.0,
    ceiling_dbtp: float = -1.0,
    target: LoudnessTarget | None = None,
) -> MasteringPlan:
    """Plan the master of ``mix`` matched to ``reference`` (``target`` overrides the loudness)."""
    if not 0.0 <= strength <= 1.0:
        raise ParameterError(f"strength must be between 0 and 1, got {strength}")
    if not np.isfinite(mix.loudness.integrated_lufs):
        raise ParameterError("the mix is silent; there is nothing to match")
    notes: list[str] = []
    if mix.channels == 2 and not reference.stereo:
        notes.append(
            f"{MessageCode.WIDTH_REDUCED:d}: the reference is mono; the mix keeps its own width"
        )
    elif mix.channels == 1 and reference.stereo:
        notes.append(
            f"{MessageCode.WIDTH_REDUCED:d}: the mix is mono; only the reference's tonal balance "
            "(mid) and loudness are matched"
        )
    eq: EqPlan | None = None
    if settings.match_eq and strength > 0:
        mid, side = match_curves(mix, reference, settings=settings, strength=strength)
        eq = EqPlan(
            freqs_hz=tuple(float(f) for f in BAND_CENTERS_HZ),
            mid_db=tuple(round(float(v), 3) for v in mid),
            side_db=tuple(round(float(v), 3) for v in side),
            fir_duration_s=MATCH_FIR_DURATION_S,
        )
    elif settings.match_width and strength > 0 and mix.channels == 2 and reference.stereo:
        # width only: side moves by what it would move relative to mid; mid stays flat
        mid, side = match_curves(mix, reference, settings=settings, strength=strength)
        eq = EqPlan(
            freqs_hz=tuple(float(f) for f in BAND_CENTERS_HZ),
            mid_db=tuple(0.0 for _ in BAND_CENTERS_HZ),
            side_db=tuple(round(float(v), 3) for v in side - mid),
            fir_duration_s=MATCH_FIR_DURATION_S,
        )
    plan_target = target or _target_for(
        mix, reference, settings=settings, ceiling_dbtp=ceiling_dbtp
    )
    base = MasteringPlan(
        sample_rate=mix.sample_rate,
        channels=mix.channels,
        target=plan_target,
        strength=strength,
        eq=eq,
        dynamics=plan_dynamics(mix, plan_target, strength=strength),
        width=WidthPlan(0.0, mix.levels.side_to_mid_db, MAX_SIDE_TO_MID_DB),
        gain_db=0.0,
        limiter=LimiterPlan(ceiling_dbtp=plan_target.ceiling_dbtp),
        predicted_lufs=float("-inf"),
        notes=tuple(notes),
    )
    return retarget_plan(base, mix)


def retarget_plan(plan: MasteringPlan, analysis: TrackAnalysis) -> MasteringPlan:
    """Keep every decision of ``plan`` and solve its gain for the track ``analysis`` describes.

    This is how one plan gives a whole album the same treatment: EQ, width, dynamics and
    limiter stay, and each track is brought to the plan's loudness target.
    """
    if not np.isfinite(analysis.loudness.integrated_lufs):
        raise ParameterError("the track is silent; there is nothing to master")
    offset = eq_loudness_offset_db(analysis.spectrum, plan.eq, side_gain_db=plan.width.side_gain_db)
    eq = None if plan.eq is None else replace(plan.eq, loudness_offset_db=round(offset, 3))
    overshoot = max(0.0, analysis.true_peak_dbtp - analysis.levels.sample_peak_dbfs)
    levels = pre_limiter_levels(
        analysis.chunks,
        eq_loudness_offset_db=offset,
        dynamics=plan.dynamics,
        true_peak_overshoot_db=min(overshoot, 1.0),
    )
    solution = solve_gain(levels, target_lufs=plan.target.lufs, limiter=plan.limiter)
    notes = [
        n
        for n in plan.notes
        if not n.startswith(
            (f"{MessageCode.TARGET_UNREACHABLE:d}", f"{MessageCode.HEAVY_LIMITING:d}")
        )
    ]
    if not solution.reachable:
        notes.append(
            f"{MessageCode.TARGET_UNREACHABLE:d}: {plan.target.lufs:g} LUFS is out of reach under "
            f"a {plan.target.ceiling_dbtp:g} dBTP ceiling; {solution.integrated_lufs:.1f} LUFS is "
            "the most"
        )
    return replace(
        plan,
        sample_rate=analysis.sample_rate,
        channels=analysis.channels,
        eq=eq,
        gain_db=round(solution.gain_db, 4),
        predicted_lufs=round(solution.integrated_lufs, 3),
        gain_slope=round(solution.slope, 4),
        target_reachable=solution.reachable,
        notes=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class MatchSummary:
    """How close the master came to the references (the report's ``match`` object)."""

    references: tuple[str, ...]
    reference_lufs: float
    reference_true_peak_dbtp: float
    target_lufs: float
    target_reachable: bool
    max_lufs_at_ceiling: float | None
    tonal_distance_before_db: float
    tonal_distance_after_db: float
    side_to_mid_hf_mix_db: float
    side_to_mid_hf_reference_db: float
    side_to_mid_hf_output_db: float
    settings: MatchSettings


def summarise_match(
    *,
    reference: ReferenceProfile,
    plan: MasteringPlan,
    mix: MidSideSpectrum,
    output: MidSideSpectrum,
    settings: MatchSettings,
) -> MatchSummary:
    """Measure the match: tonal distance before and after, side/mid 2.5-20 kHz of each."""
    return MatchSummary(
        references=reference.paths,
        reference_lufs=reference.integrated_lufs,
        reference_true_peak_dbtp=reference.true_peak_dbtp,
        target_lufs=plan.target.lufs,
        target_reachable=plan.target_reachable,
        max_lufs_at_ceiling=None if plan.target_reachable else plan.predicted_lufs,
        tonal_distance_before_db=tonal_distance_db(mix, reference.spectrum),
        tonal_distance_after_db=tonal_distance_db(output, reference.spectrum),
        side_to_mid_hf_mix_db=side_to_mid_db(mix),
        side_to_mid_hf_reference_db=side_to_mid_db(reference.spectrum),
        side_to_mid_hf_output_db=side_to_mid_db(output),
        settings=settings,
    )
