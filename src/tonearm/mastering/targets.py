"""Loudness targets: the platform presets and custom LUFS / true-peak ceilings."""

from __future__ import annotations

from dataclasses import dataclass

from tonearm.errors import ParameterError

__all__ = ["DEFAULT_TARGET", "PRESETS", "LoudnessTarget", "resolve_target"]

MIN_TARGET_LUFS = -40.0
MAX_TARGET_LUFS = -5.0
MIN_CEILING_DBTP = -12.0
MAX_CEILING_DBTP = 0.0


@dataclass(frozen=True, slots=True)
class LoudnessTarget:
    """Integrated loudness (BS.1770-4, LUFS) and true-peak ceiling (dBTP) to master to."""

    name: str
    lufs: float
    ceiling_dbtp: float
    description: str = ""

    def __post_init__(self) -> None:
        if not MIN_TARGET_LUFS <= self.lufs <= MAX_TARGET_LUFS:
            raise ParameterError(
                f"target loudness {self.lufs} LUFS is outside "
                f"{MIN_TARGET_LUFS:g}..{MAX_TARGET_LUFS:g}"
            )
        if not MIN_CEILING_DBTP <= self.ceiling_dbtp <= MAX_CEILING_DBTP:
            raise ParameterError(
                f"ceiling {self.ceiling_dbtp} dBTP is outside "
                f"{MIN_CEILING_DBTP:g}..{MAX_CEILING_DBTP:g}"
            )


PRESETS: dict[str, LoudnessTarget] = {
    target.name: target
    for target in (
        LoudnessTarget("spotify", -14.0, -1.0, "Spotify loudness normalisation"),
        LoudnessTarget("apple", -16.0, -1.0, "Apple Music Sound Check"),
        LoudnessTarget("youtube", -14.0, -1.0, "YouTube"),
        LoudnessTarget("tidal", -14.0, -1.0, "TIDAL"),
        LoudnessTarget("amazon", -14.0, -2.0, "Amazon Music"),
        LoudnessTarget("deezer", -15.0, -1.0, "Deezer"),
        LoudnessTarget("aes", -16.0, -1.0, "AES TD1008 streaming recommendation"),
        LoudnessTarget("ebu", -23.0, -1.0, "EBU R128 broadcast"),
        LoudnessTarget("cd", -9.0, -0.3, "Loud CD master"),
    )
}

DEFAULT_TARGET = PRESETS["spotify"]


def resolve_target(
    preset: str | None = None, *, lufs: float | None = None, ceiling_dbtp: float | None = None
) -> LoudnessTarget:
    """Start from a preset (default ``spotify``) and override its loudness and/or ceiling.

    Raises ``ParameterError`` for an unknown preset or values out of range.
    """
    name = (preset or DEFAULT_TARGET.name).lower()
    base = PRESETS.get(name)
    if base is None:
        raise ParameterError(f"unknown target '{preset}' (choose from {', '.join(PRESETS)})")
    if lufs is None and ceiling_dbtp is None:
        return base
    return LoudnessTarget(
        name if preset else "custom",
        base.lufs if lufs is None else float(lufs),
        base.ceiling_dbtp if ceiling_dbtp is None else float(ceiling_dbtp),
        "custom target" if not preset else f"{base.description}, customised",
    )
