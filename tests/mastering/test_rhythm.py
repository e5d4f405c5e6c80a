"""Onset counting and tempo from synthetic onset envelopes (one value per frame)."""

from __future__ import annotations

import numpy as np
import pytest

from tonearm.mastering.rhythm import count_onsets, estimate_tempo

FPS = 44100 / 1024  # the fingerprint's frame rate at 44.1 kHz


def _pulses(bpm: float, seconds: float, *, jitter_frames: float = 0.0, seed: int = 0) -> np.ndarray:
    """An onset envelope with a 6 dB rise at every beat on a little noise."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * FPS)
    envelope = rng.random(frames).astype(np.float32) * 0.2
    beat = 60.0 * FPS / bpm
    for k in range(int(frames / beat)):
        index = (
            round(k * beat + rng.normal(0.0, jitter_frames)) if jitter_frames else round(k * beat)
        )
        if 0 <= index < frames:
            envelope[index] += 6.0
    return envelope


@pytest.mark.parametrize("bpm", [72.0, 100.0, 128.0, 150.0])
def test_tempo_of_a_steady_pulse(bpm: float) -> None:
    tempo, stability = estimate_tempo(_pulses(bpm, 30.0), FPS)
    assert tempo == pytest.approx(bpm, abs=1.5)
    assert stability > 0.5


def test_jitter_lowers_rhythm_stability() -> None:
    _, steady = estimate_tempo(_pulses(120.0, 30.0), FPS)
    _, loose = estimate_tempo(_pulses(120.0, 30.0, jitter_frames=2.5, seed=1), FPS)
    assert loose < steady


def test_no_tempo_without_pulses() -> None:
    flat = np.full(int(30 * FPS), 0.1, dtype=np.float32)
    assert estimate_tempo(flat, FPS) == (0.0, 0.0)
    assert estimate_tempo(np.zeros(10, dtype=np.float32), FPS) == (0.0, 0.0)


def test_count_onsets_counts_each_beat_once() -> None:
    envelope = _pulses(120.0, 20.0)
    placed = int(np.count_nonzero(envelope > 3.0))
    # every pulse is found once; one at the very edge may lack running-median context
    assert placed - 1 <= count_onsets(envelope, FPS) <= placed
    assert count_onsets(np.zeros(2, dtype=np.float32), FPS) == 0
