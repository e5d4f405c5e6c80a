"""How close one track sounds to another: the measures reference matching is judged by.

Both take :class:`~tonearm.dsp.spectrum.MidSideSpectrum` (the loud-part average spectra of the
analysis pass), so tracks of different lengths and sample rates compare directly.

* **Tonal distance**: the RMS over third-octave bands from 31.5 Hz to 16 kHz of the difference
  of the two tracks' band levels (mid + side power, i.e. the stereo sum), after removing the
  level offset (the mean difference). 0 dB means the same tonal balance at any loudness.
* **Side/mid ratio**: 10 log10 of side over mid power in a frequency range (2.5-20 kHz by
  default, where width is heard).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tonearm.dsp.spectrum import MidSideSpectrum, band_levels_db, third_octave_centers_hz

__all__ = [
    "TONAL_BANDS_HZ",
    "side_to_mid_db",
    "tonal_balance_db",
    "tonal_distance_db",
]

TONAL_BANDS_HZ: npt.NDArray[np.float64] = third_octave_centers_hz(f_min_hz=31.5, f_max_hz=16000.0)
_EMPTY_BAND_DB = -150.0  # below this a band holds no content worth comparing


def tonal_balance_db(spectrum: MidSideSpectrum) -> npt.NDArray[np.float64]:
    """Third-octave band levels (dB) of the stereo sum, 31.5 Hz-16 kHz; NaN above Nyquist."""
    power = spectrum.mid_power + spectrum.side_power
    return band_levels_db(spectrum.freqs_hz, power, centers_hz=TONAL_BANDS_HZ)


def tonal_distance_db(a: MidSideSpectrum, b: MidSideSpectrum) -> float:
    """RMS band-level difference after removing the level offset (see the module docstring).

    Bands above either track's Nyquist, or empty in both, are left out. Returns NaN if no band
    is left (a silent track).
    """
    level_a, level_b = tonal_balance_db(a), tonal_balance_db(b)
    usable = (
        np.isfinite(level_a)
        & np.isfinite(level_b)
        & ((level_a > _EMPTY_BAND_DB) | (level_b > _EMPTY_BAND_DB))
    )
    if not usable.any():
        return float("nan")
    difference = level_a[usable] - level_b[usable]
    difference -= difference.mean()
    return float(np.sqrt(np.mean(difference**2)))


def side_to_mid_db(
    spectrum: MidSideSpectrum, *, f_min_hz: float = 2500.0, f_max_hz: float = 20000.0
) -> float:
    """Side over mid power (dB) between ``f_min_hz`` and ``f_max_hz``; -inf for mono."""
    inside = (spectrum.freqs_hz >= f_min_hz) & (spectrum.freqs_hz <= f_max_hz)
    mid = float(spectrum.mid_power[inside].sum())
    side = float(spectrum.side_power[inside].sum())
    if side <= 0.0:
        return float("-inf")
    if mid <= 0.0:
        return float("inf")
    return float(10.0 * np.log10(side / mid))
