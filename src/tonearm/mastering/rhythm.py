"""Rhythm from an onset envelope: onset count, tempo and rhythm stability.

The fingerprint computes an onset envelope (mean positive dB rise per band, one value per STFT
frame, ``fps`` frames per second); these pure functions turn it into the fingerprint's
``transient_density``, ``tempo_bpm`` and ``rhythm_stability``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.ndimage

__all__ = [
    "MIN_RHYTHM_STRENGTH",
    "TEMPO_MAX_BPM",
    "TEMPO_MIN_BPM",
    "TEMPO_PRIOR_BPM",
    "TEMPO_PRIOR_OCTAVES",
    "count_onsets",
    "estimate_tempo",
]

TEMPO_MIN_BPM = 60.0
TEMPO_MAX_BPM = 200.0
TEMPO_PRIOR_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0
MIN_RHYTHM_STRENGTH = 0.05

_MIN_ONSET_STD_DB = 0.05  # a flatter onset envelope (a steady tone) has no tempo
_ONSET_MARGIN_DB = 1.0  # onset threshold above the running median (mean dB rise per band)


def count_onsets(onset: npt.NDArray[np.float32], fps: float) -> int:
    """Local maxima (+-50 ms) of the onset envelope above its 0.5 s running median + margin."""
    if onset.size < 3:
        return 0
    env = onset.astype(np.float64)
    size = max(3, round(0.5 * fps) | 1)
    baseline = scipy.ndimage.median_filter(env, size=size, mode="nearest")
    reach = max(1, round(0.05 * fps))
    peak = scipy.ndimage.maximum_filter1d(env, size=2 * reach + 1, mode="nearest")
    picked = (env >= peak) & (env > baseline + _ONSET_MARGIN_DB)
    # Plateaus: keep only the first frame of a run of equal maxima.
    picked[1:] &= ~picked[:-1]
    return int(np.count_nonzero(picked))


def estimate_tempo(onset: npt.NDArray[np.float32], fps: float) -> tuple[float, float]:
    """Tempo (BPM) and rhythm stability (0..1) from the onset envelope; (0, 0) if none.

    The envelope is smoothed (25 ms Gaussian) and high-passed (1.5 s moving mean). Its unbiased,
    normalised autocorrelation ``r`` gives each tempo on a 0.5 BPM grid over 60..200 BPM the
    salience ``r(T) + r(2T)/2 + r(3T)/3`` (``T`` the beat period), weighted by a log-Gaussian prior
    around 120 BPM; the winner's period is refined on the autocorrelation peaks near 1..4 periods.
    The peak height at one period is the rhythm stability; below chance level (3 standard errors
    of an autocorrelation of that length, at least ``MIN_RHYTHM_STRENGTH``) there is no tempo.
    """
    n = onset.size
    lag_max = 60.0 * fps / TEMPO_MIN_BPM
    n_lags = min(n // 2, int(4 * lag_max) + 4)
    if n_lags < lag_max + 2:
        return 0.0, 0.0
    env = scipy.ndimage.gaussian_filter1d(onset.astype(np.float64), sigma=max(1.0, 0.025 * fps))
    env -= scipy.ndimage.uniform_filter1d(env, size=max(3, round(1.5 * fps)), mode="nearest")
    if float(np.std(env)) < _MIN_ONSET_STD_DB:
        return 0.0, 0.0
    size = scipy.fft.next_fast_len(2 * n, real=True)
    spec = scipy.fft.rfft(env, size)
    acf = scipy.fft.irfft(spec.real**2 + spec.imag**2, size)[:n_lags]
    acf = acf * (n / (n - np.arange(n_lags))) / acf[0]  # unbiased, normalised
    lag_axis = np.arange(n_lags, dtype=np.float64)
    bpm = np.arange(TEMPO_MIN_BPM, TEMPO_MAX_BPM + 0.25, 0.5)
    period = 60.0 * fps / bpm
    salience = sum(np.interp(k * period, lag_axis, acf, right=0.0) / k for k in (1, 2, 3))
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    best = float(period[int(np.argmax(salience * prior))])
    position, height = _peak_near(acf, best)
    chance = max(MIN_RHYTHM_STRENGTH, 3.0 * math.sqrt(3.0 / n))
    if height < chance:
        return 0.0, 0.0
    # Refine on the peaks near 2, 3 and 4 periods (finer lag resolution).
    positions, multiples = [position], [1.0]
    for k in range(2, 5):
        if k * position + 3 >= n_lags:
            break
        pos, value = _peak_near(acf, k * position)
        if value < 0.5 * height:
            break
        positions.append(pos)
        multiples.append(float(k))
    refined = sum(positions) / sum(multiples)
    tempo = float(np.clip(60.0 * fps / refined, TEMPO_MIN_BPM, TEMPO_MAX_BPM))
    return tempo, float(np.clip(height, 0.0, 1.0))


def _peak_near(values: npt.NDArray[np.float64], lag: float) -> tuple[float, float]:
    """Sub-sample position and height (parabola through 3 points) of the largest value within
    2 lags of ``lag``."""
    centre = round(lag)
    lo, hi = max(1, centre - 2), min(values.size - 2, centre + 2)
    if lo > hi:
        return lag, 0.0
    index = lo + int(np.argmax(values[lo : hi + 1]))
    a, b, c = values[index - 1], values[index], values[index + 1]
    denom = a - 2.0 * b + c
    if denom >= 0.0:
        return float(index), float(b)
    shift = 0.5 * (a - c) / denom
    return index + shift, float(b - 0.25 * (a - c) * shift)
