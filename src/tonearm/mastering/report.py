"""The mastering report: what went in, what came out, what was decided and how long it took.

Its JSON (``to_dict``) is the contract of ``--report`` and of a finished job: ``input`` and
``output`` each carry ``integrated_lufs`` and ``true_peak_dbtp`` (and more), ``target`` carries
``lufs`` and ``ceiling_dbtp``, ``plan`` every decision, and ``timings_s`` each stage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tonearm.mastering.analysis import MeasuredLevels, TrackAnalysis, Verification, finite_or_none

if TYPE_CHECKING:
    from tonearm.dsp.dynamics import GainReductionStats
    from tonearm.dsp.spectrum import MidSideSpectrum
    from tonearm.mastering.matching import MatchSummary
    from tonearm.mastering.plan import MasteringPlan

__all__ = ["MasteringReport"]


def _db(value: float, unit: str) -> str:
    return (
        f"{value:6.2f} {unit}"
        if value == value and abs(value) != float("inf")
        else f"  -inf {unit}"
    )


def _match_dict(match: MatchSummary) -> dict[str, Any]:
    settings = match.settings
    return {
        "references": list(match.references),
        "reference_lufs": finite_or_none(match.reference_lufs),
        "reference_true_peak_dbtp": finite_or_none(match.reference_true_peak_dbtp),
        "target_lufs": match.target_lufs,
        "target_reachable": match.target_reachable,
        "max_lufs_at_ceiling": match.max_lufs_at_ceiling,
        "tonal_distance_db": {
            "before": finite_or_none(match.tonal_distance_before_db),
            "after": finite_or_none(match.tonal_distance_after_db),
        },
        "side_to_mid_2k5_20k_db": {
            "mix": finite_or_none(match.side_to_mid_hf_mix_db),
            "reference": finite_or_none(match.side_to_mid_hf_reference_db),
            "output": finite_or_none(match.side_to_mid_hf_output_db),
        },
        "settings": {
            "eq": settings.match_eq,
            "width": settings.match_width,
            "loudness": settings.match_loudness,
            "smoothing_octaves": settings.smoothing_octaves,
            "max_eq_db": settings.max_eq_db,
        },
    }


@dataclass(frozen=True, slots=True)
class MasteringReport:
    """Everything a user needs to trust a master."""

    input_path: str
    output_path: str
    sample_rate: int
    output_sample_rate: int
    channels: int
    frames: int
    output_format: str
    input: MeasuredLevels
    output: MeasuredLevels
    plan: MasteringPlan
    limiter: GainReductionStats
    compressor: GainReductionStats | None
    render_passes: int
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    match: MatchSummary | None = None
    # what the plot needs; not part of the JSON
    analysis: TrackAnalysis | None = field(default=None, repr=False, compare=False)
    verification: Verification | None = field(default=None, repr=False, compare=False)
    reference_spectrum: MidSideSpectrum | None = field(default=None, repr=False, compare=False)

    @property
    def duration_s(self) -> float:
        """Length of the track in seconds."""
        return self.frames / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe mapping (infinities become None)."""
        target = self.plan.target
        return {
            "input": {"path": self.input_path, **self.input.to_dict()},
            "output": {
                "path": self.output_path,
                "format": self.output_format,
                "sample_rate": self.output_sample_rate,
                **self.output.to_dict(),
            },
            "target": {
                "name": target.name,
                "lufs": target.lufs,
                "ceiling_dbtp": target.ceiling_dbtp,
            },
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "duration_s": self.duration_s,
            "plan": self.plan.to_dict(),
            "limiter": {
                "max_gain_reduction_db": self.limiter.max_db,
                "mean_gain_reduction_db": self.limiter.mean_db,
                "active_mean_gain_reduction_db": self.limiter.active_mean_db,
                "active_ratio": self.limiter.active_ratio,
            },
            "compressor": None if self.compressor is None else asdict(self.compressor),
            "render_passes": self.render_passes,
            "timings_s": {key: round(value, 4) for key, value in self.timings_s.items()},
            "realtime_factor": (
                self.duration_s / self.timings_s["total"] if self.timings_s.get("total") else None
            ),
            "notes": list(self.notes),
            "match": None if self.match is None else _match_dict(self.match),
            "loudness_error_lu": finite_or_none(self.output.integrated_lufs - target.lufs),
        }

    def summary_lines(self) -> list[str]:
        """A short human summary, one fact per line."""
        target = self.plan.target
        plan = self.plan
        pairs = [
            (name, _db(getattr(self.input, field), unit), _db(getattr(self.output, field), unit))
            for name, field, unit in (
                ("loudness", "integrated_lufs", "LUFS"),
                ("true peak", "true_peak_dbtp", "dBTP"),
                ("LRA", "loudness_range_lu", "LU"),
            )
        ]
        lines = [
            f"target     {target.name}: {target.lufs:g} LUFS, ceiling {target.ceiling_dbtp:g} dBTP",
            *(f"{name:<10} {before} -> {after}" for name, before, after in pairs),
            f"gain       {plan.gain_db:+.2f} dB; limiter max {self.limiter.max_db:.2f} dB, "
            f"average {self.limiter.mean_db:.2f} dB",
        ]
        if plan.eq is not None:
            lines.append(
                f"EQ         up to {plan.eq.max_abs_db:.1f} dB (M/S, linear phase), "
                f"tilt {plan.eq.tilt_db_per_octave:+.1f} dB/oct"
            )
        if plan.dynamics is not None and self.compressor is not None:
            lines.append(
                f"dynamics   {plan.dynamics.ratio:.1f}:1 above "
                f"{plan.dynamics.threshold_dbfs:.1f} dBFS, "
                f"max {self.compressor.max_db:.1f} dB"
            )
        if plan.width.side_gain_db:
            lines.append(f"width      side {plan.width.side_gain_db:+.1f} dB")
        total = self.timings_s.get("total", 0.0)
        speed = f" ({self.duration_s / total:.0f}x real time)" if total else ""
        if self.match is not None:
            match = self.match
            lines.append(
                f"reference  {match.reference_lufs:.2f} LUFS; tonal distance "
                f"{match.tonal_distance_before_db:.2f} -> {match.tonal_distance_after_db:.2f} dB; "
                f"side/mid 2.5-20 kHz {match.side_to_mid_hf_mix_db:.1f} -> "
                f"{match.side_to_mid_hf_output_db:.1f} dB (reference "
                f"{match.side_to_mid_hf_reference_db:.1f})"
            )
            if match.max_lufs_at_ceiling is not None:
                lines.append(
                    f"           the ceiling allows {match.max_lufs_at_ceiling:.1f} LUFS at most"
                )
        lines.append(f"time       {total:.2f} s{speed}, {self.render_passes} render pass(es)")
        lines.append(f"output     {self.output_path} ({self.output_format})")
        lines.extend(f"note       {note}" for note in self.notes)
        return lines
