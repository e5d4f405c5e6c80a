"""Reference tracks: what a mix is matched to.

A :class:`ReferenceProfile` reduces one or more references to what matching needs: the
integrated loudness (BS.1770-4), and the loud-part mid and side spectra as band levels on a
common 1/12-octave grid (so references and mixes at different sample rates compare directly),
each normalised by the track's own mid level so that only the *shape* and the side/mid
relation remain.

Several references are averaged in the power domain, each weighted by its loudness
(``10 ** (LUFS / 10)``): a loud reference counts for more than a quiet one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tonearm.errors import ParameterError
from tonearm.mastering.analysis import TrackAnalysis, analyze_file

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tonearm.audio_io import AudioInfo
    from tonearm.dsp.spectrum import MidSideSpectrum
    from tonearm.events import ProgressCallback

__all__ = [
    "BAND_CENTERS_HZ",
    "MIN_REFERENCE_S",
    "BandProfile",
    "ReferenceProfile",
    "band_profile",
    "load_references",
]

BAND_CENTERS_HZ: npt.NDArray[np.float64] = 1000.0 * 2.0 ** (np.arange(-67, 53) / 12.0)
"""1/12-octave band centres, 20.9 Hz to 20.2 kHz."""
BAND_FRACTION = 12.0
NORMALISE_RANGE_HZ = (100.0, 10000.0)
MIN_REFERENCE_S = 3.0
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BandProfile:
    """Mid and side band levels (dB) on :data:`BAND_CENTERS_HZ`, normalised by the mid level.

    ``valid`` marks bands below the track's Nyquist with content; ``side_db`` is ``-inf`` for
    mono.
    """

    mid_db: FloatArray
    side_db: FloatArray
    valid: npt.NDArray[np.bool_]


def _power_mean_db(levels_db: FloatArray) -> float:
    finite = levels_db[np.isfinite(levels_db)]
    if finite.shape[0] == 0:
        return float("-inf")
    return float(10.0 * np.log10(np.mean(10.0 ** (finite / 10.0))))


def _band_density_db(freqs_hz: FloatArray, power: FloatArray) -> FloatArray:
    """Mean power per FFT bin in each 1/12-octave band, in dB (NaN past Nyquist).

    Low bands are narrower than an FFT bin (1.8 Hz at 31 Hz against 5.4 Hz bins at 44.1 kHz):
    where a band holds no bin, the spectrum is interpolated at its centre instead. A mean per
    bin, unlike a band sum, does not depend on how many bins a band happens to hold; the
    level normalisation then cancels the bin width, so sample rates compare directly.
    """
    half = 2.0 ** (1.0 / (2.0 * BAND_FRACTION))
    cumulative = np.concatenate(([0.0], np.cumsum(power)))
    low = np.searchsorted(freqs_hz, BAND_CENTERS_HZ / half, side="left")
    high = np.searchsorted(freqs_hz, BAND_CENTERS_HZ * half, side="left")
    count = high - low
    mean = np.where(
        count > 0,
        (cumulative[high] - cumulative[low]) / np.maximum(count, 1),
        np.interp(BAND_CENTERS_HZ, freqs_hz, power),
    )
    with np.errstate(divide="ignore"):
        level = 10.0 * np.log10(np.maximum(mean, 0.0))
    level[BAND_CENTERS_HZ * half > freqs_hz[-1]] = np.nan
    return np.asarray(level, dtype=np.float64)


def band_profile(spectrum: MidSideSpectrum) -> BandProfile:
    """The normalised M/S band levels of a loud-part spectrum."""
    mid = _band_density_db(spectrum.freqs_hz, spectrum.mid_power)
    side = _band_density_db(spectrum.freqs_hz, spectrum.side_power)
    low, high = NORMALISE_RANGE_HZ
    in_range = (low <= BAND_CENTERS_HZ) & (high >= BAND_CENTERS_HZ)
    level = _power_mean_db(mid[in_range])
    if not np.isfinite(level):
        raise ParameterError("cannot profile a silent track")
    mid = mid - level
    side = (
        np.where(side > -150.0, side - level, -np.inf)
        if spectrum.side_power.any()
        else (np.full_like(mid, -np.inf))
    )
    valid = np.isfinite(mid) & (mid > -150.0)
    return BandProfile(mid_db=mid, side_db=side, valid=valid)


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """One or more references, combined."""

    paths: tuple[str, ...]
    integrated_lufs: float
    true_peak_dbtp: float
    bands: BandProfile
    spectrum: MidSideSpectrum
    channels: int
    side_to_mid_db: float

    @property
    def stereo(self) -> bool:
        """True when the references carry a side signal."""
        return self.channels == 2 and bool(np.isfinite(self.bands.side_db).any())


def _check_reference(path: str, analysis: TrackAnalysis) -> None:
    name = Path(path).name
    if not np.isfinite(analysis.loudness.integrated_lufs):
        raise ParameterError(f"reference '{name}' is silent; it has no loudness to match")
    if analysis.duration_s < MIN_REFERENCE_S:
        raise ParameterError(
            f"reference '{name}' is {analysis.duration_s:.1f} s long; a reference needs at "
            f"least {MIN_REFERENCE_S:g} s"
        )


def _combine(profiles: Sequence[BandProfile], weights: FloatArray) -> BandProfile:
    """Loudness-weighted power average of band profiles (bands valid in any reference)."""
    weights = weights / weights.sum()

    def mean_db(rows: list[FloatArray]) -> FloatArray:
        stacked = np.stack([np.where(np.isfinite(r), 10.0 ** (r / 10.0), 0.0) for r in rows])
        present = np.stack([np.isfinite(r) for r in rows])
        weight = (weights[:, None] * present).sum(axis=0)
        power = (weights[:, None] * stacked).sum(axis=0) / np.maximum(weight, 1e-300)
        with np.errstate(divide="ignore"):
            return np.where(weight > 0, 10.0 * np.log10(power), -np.inf)

    return BandProfile(
        mid_db=mean_db([p.mid_db for p in profiles]),
        side_db=mean_db([p.side_db for p in profiles]),
        valid=np.any(np.stack([p.valid for p in profiles]), axis=0),
    )


def load_references(
    paths: Sequence[str | os.PathLike[str]],
    *,
    infos: Sequence[AudioInfo] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ReferenceProfile:
    """Analyse and combine reference files; ``ParameterError`` for a silent or short one.

    ``infos``, one per path, are probes already made in this run (they are not repeated).
    ``on_progress`` gets the analysis events of each file (and may raise to stop).
    """
    if not paths:
        raise ParameterError("no reference given")
    analyses = []
    for index, path in enumerate(paths):
        info = None if infos is None else infos[index]
        analysis = analyze_file(
            path, fingerprint=False, chunks=False, info=info, on_progress=on_progress
        )
        _check_reference(os.fspath(path), analysis)
        analyses.append(analysis)
    loudness = np.array([a.loudness.integrated_lufs for a in analyses])
    weights = 10.0 ** (loudness / 10.0)
    profiles = [band_profile(a.spectrum) for a in analyses]
    bands = profiles[0] if len(profiles) == 1 else _combine(profiles, weights)
    loudest = int(np.argmax(loudness))
    side_to_mid = float(
        10.0
        * np.log10(
            np.average(
                [10.0 ** (a.levels.side_to_mid_db / 10.0) for a in analyses], weights=weights
            )
            + 1e-300
        )
    )
    return ReferenceProfile(
        paths=tuple(os.fspath(p) for p in paths),
        integrated_lufs=float(np.sum(weights * loudness) / np.sum(weights)),
        true_peak_dbtp=float(max(a.true_peak_dbtp for a in analyses)),
        bands=bands,
        spectrum=analyses[loudest].spectrum,
        channels=max(a.channels for a in analyses),
        side_to_mid_db=side_to_mid,
    )
