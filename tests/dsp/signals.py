"""Seeded test signals for the metering tests, as float32 ``(channels, frames)`` arrays.

Everything is computed in float64 and rounded to float32 once. Random signals take an explicit
``seed`` so every run sees the same samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.signal
import soundfile as sf

from tests.music_paths import MUSIC_DIR
from tonearm.dsp.filters import k_weighting_sos

AudioArray = npt.NDArray[np.float32]

BACH = MUSIC_DIR / "bach_bwv66_6.flac"
JOPLIN = MUSIC_DIR / "joplin_maple_leaf_rag.flac"


def frames_of(seconds: float, sample_rate: int) -> int:
    """Number of frames in ``seconds`` (rounded to the nearest frame)."""
    return round(seconds * sample_rate)


def sine(
    frequency_hz: float,
    *,
    sample_rate: int,
    seconds: float,
    amplitude: float = 1.0,
    phase_rad: float = 0.0,
    channels: int = 2,
    fade_seconds: float = 0.0,
) -> AudioArray:
    """``amplitude * cos(2 pi f t + phase)`` in every channel.

    ``fade_seconds`` > 0 adds raised-cosine fades at both ends, so the signal starts and stops
    without a step (a step overshoots in any band-limited interpolation, e.g. true peak).
    """
    frames = frames_of(seconds, sample_rate)
    t = np.arange(frames) / sample_rate
    wave = amplitude * np.cos(2.0 * np.pi * frequency_hz * t + phase_rad)
    ramp = min(frames // 2, frames_of(fade_seconds, sample_rate))
    if ramp:
        fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        wave[:ramp] *= fade
        wave[frames - ramp :] *= fade[::-1]
    return np.tile(wave, (channels, 1)).astype(np.float32)


def sine_dbfs(
    level_dbfs: float, *, sample_rate: int, seconds: float, frequency_hz: float = 1000.0
) -> AudioArray:
    """Stereo sine whose peak amplitude is ``level_dbfs`` in both channels (EBU Tech 3341/3342)."""
    return sine(
        frequency_hz,
        sample_rate=sample_rate,
        seconds=seconds,
        amplitude=10.0 ** (level_dbfs / 20.0),
    )


def k_weighting_gain(frequency_hz: float, *, sample_rate: int) -> float:
    """Linear magnitude of the K-weighting filter at ``frequency_hz`` for ``sample_rate``."""
    _, response = scipy.signal.sosfreqz(
        np.array(k_weighting_sos(sample_rate)), worN=[frequency_hz], fs=sample_rate
    )
    return float(np.abs(response[0]))


def sine_at_lufs(
    lufs: float,
    *,
    sample_rate: int,
    seconds: float,
    frequency_hz: float = 1000.0,
    channels: int = 2,
    gain_rate: int | None = None,
) -> AudioArray:
    """Sine whose BS.1770 loudness is ``lufs``, from the K-weighting gain at its frequency.

    Loudness = -0.691 + 10 log10(channels * (A g)^2 / 2). The gain ``g`` is taken from the filter
    at ``gain_rate`` (default: ``sample_rate``).
    """
    gain = k_weighting_gain(frequency_hz, sample_rate=gain_rate or sample_rate)
    amplitude = np.sqrt(2.0 * 10.0 ** ((lufs + 0.691) / 10.0) / channels) / gain
    return sine(
        frequency_hz,
        sample_rate=sample_rate,
        seconds=seconds,
        amplitude=float(amplitude),
        channels=channels,
    )


def silence(*, sample_rate: int, seconds: float, channels: int = 2) -> AudioArray:
    """Digital silence."""
    return np.zeros((channels, frames_of(seconds, sample_rate)), dtype=np.float32)


def white_noise(
    seed: int, *, sample_rate: int, seconds: float, rms: float = 0.1, channels: int = 2
) -> AudioArray:
    """Independent Gaussian white noise per channel with the given RMS."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((channels, frames_of(seconds, sample_rate))) * rms
    return noise.astype(np.float32)


def music_like(
    seed: int, *, sample_rate: int, seconds: float, channels: int = 2, peak: float = 0.9
) -> AudioArray:
    """Music-like test signal: decaying partials on note onsets, bass and noise bursts.

    Dynamic (quiet and loud passages, sharp transients, content up to near Nyquist), correlated
    but not identical channels, normalised to the given sample peak.
    """
    rng = np.random.default_rng(seed)
    frames = frames_of(seconds, sample_rate)
    t = np.arange(frames) / sample_rate
    out = np.zeros((channels, frames))
    onsets = np.sort(rng.uniform(0.0, seconds, size=max(1, int(seconds * 4))))
    for onset in onsets:
        start = int(onset * sample_rate)
        length = min(frames - start, int(sample_rate * rng.uniform(0.1, 0.8)))
        if length <= 0:
            continue
        local = t[:length]
        fundamental = rng.uniform(60.0, 1200.0)
        note = np.zeros(length)
        for harmonic in range(1, 9):
            frequency = fundamental * harmonic
            if frequency >= 0.48 * sample_rate:
                break
            note += rng.uniform(0.1, 1.0) / harmonic * np.sin(2 * np.pi * frequency * local)
        note *= np.exp(-local * rng.uniform(2.0, 12.0)) * rng.uniform(0.05, 1.0)
        pan = rng.uniform(0.3, 1.0, size=channels)
        out[:, start : start + length] += pan[:, np.newaxis] * note
    for onset in rng.uniform(0.0, seconds, size=max(1, int(seconds * 2))):  # hi-hat-like hits
        start = int(onset * sample_rate)
        length = min(frames - start, sample_rate // 20)
        decay = np.exp(-np.arange(length) / (0.004 * sample_rate))
        hit = rng.standard_normal((channels, length)) * decay * rng.uniform(0.05, 0.3)
        out[:, start : start + length] += scipy.signal.lfilter([1.0, -0.9], [1.0], hit, axis=1)
    out /= np.abs(out).max()
    return (out * peak).astype(np.float32)


def load_fixture(path: Path) -> tuple[AudioArray, int]:
    """A music fixture as float32 ``(channels, frames)`` and its sample rate."""
    data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sample_rate)
