"""The mastering plan: a frozen, JSON-serialisable record of every decision.

A :class:`MasteringPlan` is the report of what will be done, a reusable preset and a cache key.
It is small (a few hundred numbers), so it travels to any worker. ``to_dict``/``from_dict``
round-trip exactly through JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from tonearm.errors import ParameterError
from tonearm.mastering.targets import LoudnessTarget

__all__ = ["PLAN_VERSION", "DynamicsPlan", "EqPlan", "LimiterPlan", "MasteringPlan", "WidthPlan"]

PLAN_VERSION = 1


@dataclass(frozen=True, slots=True)
class EqPlan:
    """Linear-phase tonal correction: gains in dB at ``freqs_hz`` for mid and side."""

    freqs_hz: tuple[float, ...]
    mid_db: tuple[float, ...]
    side_db: tuple[float, ...]
    tilt_db_per_octave: float = 0.0
    loudness_offset_db: float = 0.0
    fir_duration_s: float = 0.093
    """Length of the linear-phase FIR: resolution ~6/duration Hz (0.37 s for matching)."""

    @property
    def max_abs_db(self) -> float:
        """Largest boost or cut on either channel."""
        return max((abs(v) for v in (*self.mid_db, *self.side_db)), default=0.0)


@dataclass(frozen=True, slots=True)
class DynamicsPlan:
    """Gentle linked RMS compression (see :class:`tonearm.dsp.dynamics.Compressor`)."""

    threshold_dbfs: float
    ratio: float
    knee_db: float = 6.0
    attack_ms: float = 20.0
    release_ms: float = 300.0
    rms_window_ms: float = 30.0
    max_reduction_db: float = 4.0


@dataclass(frozen=True, slots=True)
class WidthPlan:
    """Width guard: a static side gain (0 dB leaves the image alone)."""

    side_gain_db: float = 0.0
    side_to_mid_db: float = float("-inf")
    max_side_to_mid_db: float = -3.0


@dataclass(frozen=True, slots=True)
class LimiterPlan:
    """Lookahead true-peak limiter settings."""

    ceiling_dbtp: float
    lookahead_ms: float = 3.0
    release_ms: float = 100.0
    safety_margin_db: float = 0.05


@dataclass(frozen=True, slots=True)
class MasteringPlan:
    """Every decision of a master, in the order the chain applies them.

    ``gain_db`` is the make-up gain applied in front of the limiter; ``predicted_lufs`` what
    the gain model expects the output to measure, and ``gain_slope`` how many LU the output
    moves per dB of gain there (below 1 where the limiter takes some back).
    """

    sample_rate: int
    channels: int
    target: LoudnessTarget
    strength: float
    eq: EqPlan | None
    dynamics: DynamicsPlan | None
    width: WidthPlan
    gain_db: float
    limiter: LimiterPlan
    predicted_lufs: float
    gain_slope: float = 1.0
    target_reachable: bool = True
    notes: tuple[str, ...] = field(default=())
    version: int = PLAN_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe mapping (infinities become None)."""
        data: dict[str, Any] = _json_safe(asdict(self))
        return data

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def cache_key(self) -> str:
        """Stable SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MasteringPlan:
        """Rebuild a plan from :meth:`to_dict` output; ``ParameterError`` if it is not one."""
        try:
            if data.get("version") != PLAN_VERSION:
                raise ParameterError(f"unsupported plan version {data.get('version')!r}")
            eq = data["eq"]
            dynamics = data["dynamics"]
            width = dict(data["width"])
            if width.get("side_to_mid_db") is None:
                width["side_to_mid_db"] = float("-inf")
            return cls(
                sample_rate=int(data["sample_rate"]),
                channels=int(data["channels"]),
                target=LoudnessTarget(**data["target"]),
                strength=float(data["strength"]),
                eq=None
                if eq is None
                else EqPlan(
                    freqs_hz=tuple(eq["freqs_hz"]),
                    mid_db=tuple(eq["mid_db"]),
                    side_db=tuple(eq["side_db"]),
                    tilt_db_per_octave=float(eq["tilt_db_per_octave"]),
                    loudness_offset_db=float(eq["loudness_offset_db"]),
                    fir_duration_s=float(eq.get("fir_duration_s", 0.093)),
                ),
                dynamics=None if dynamics is None else DynamicsPlan(**dynamics),
                width=WidthPlan(**width),
                gain_db=float(data["gain_db"]),
                limiter=LimiterPlan(**data["limiter"]),
                predicted_lufs=float(data["predicted_lufs"]),
                gain_slope=float(data.get("gain_slope", 1.0)),
                target_reachable=bool(data.get("target_reachable", True)),
                notes=tuple(data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ParameterError):
                raise
            raise ParameterError(f"not a tonearm mastering plan: {exc}") from None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
