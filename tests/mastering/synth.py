"""Seeded synthetic test signals for the mastering tests, written as real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tests.music_paths import MUSIC_DIR

MUSIC = MUSIC_DIR
BACH = MUSIC / "bach_bwv66_6.flac"
JOPLIN = MUSIC / "joplin_maple_leaf_rag.flac"
BEETHOVEN = MUSIC / "beethoven_opus18no1.mp3"


def write(path: Path, audio: np.ndarray, rate: int, subtype: str = "PCM_24") -> Path:
    """Write float32 ``(channels, frames)`` audio to ``path``."""
    sf.write(path, np.ascontiguousarray(audio.T), rate, subtype=subtype)
    return path


def noise(
    rate: int, seconds: float, *, channels: int = 2, level_db: float = -20.0, seed: int = 0
) -> np.ndarray:
    """Pink-ish (1/f-filtered) noise at an RMS level in dBFS."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((channels, int(rate * seconds)))
    spectrum = np.fft.rfft(white, axis=1)
    freqs = np.fft.rfftfreq(white.shape[1], 1.0 / rate)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    pink = np.fft.irfft(spectrum, n=white.shape[1], axis=1)
    pink *= 10 ** (level_db / 20) / np.sqrt(np.mean(pink**2))
    return pink.astype(np.float32)


def sines(rate: int, seconds: float, *, channels: int = 2, level_db: float = -18.0) -> np.ndarray:
    """A chord of three sines with a slow amplitude swell."""
    t = np.arange(int(rate * seconds)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 440.0, min(3300.0, rate / 3)))
    tone *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    tone *= 10 ** (level_db / 20) / np.sqrt(np.mean(tone**2))
    return np.tile(tone.astype(np.float32), (channels, 1))


def transients(rate: int, seconds: float, *, channels: int = 2, seed: int = 1) -> np.ndarray:
    """Decaying clicks (drum-like hits) over quiet noise: a very high crest factor."""
    rng = np.random.default_rng(seed)
    frames = int(rate * seconds)
    out = rng.standard_normal((channels, frames)).astype(np.float32) * 0.003
    hit = np.exp(-np.arange(int(0.08 * rate)) / (0.01 * rate)) * np.sin(
        2 * np.pi * 180.0 * np.arange(int(0.08 * rate)) / rate
    )
    for start in range(0, frames - hit.shape[0], int(0.5 * rate)):
        out[:, start : start + hit.shape[0]] += (0.9 * hit).astype(np.float32)
    return out


def excerpt(path: Path, seconds: float, *, offset_s: float = 0.0) -> tuple[np.ndarray, int]:
    """A float32 ``(channels, frames)`` excerpt of a fixture and its rate."""
    with sf.SoundFile(path) as handle:
        handle.seek(int(offset_s * handle.samplerate))
        data = handle.read(int(seconds * handle.samplerate), dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), handle.samplerate
