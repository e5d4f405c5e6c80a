"""The analysis pass: chunk levels for the gain model, bounded for long tracks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.mastering import synth
from tonearm.mastering.analysis import (
    MAX_CHUNKS,
    TrackAnalyzer,
    analyze_audio,
    chunks_per_subblock_for,
)
from tonearm.mastering.gain_model import pre_limiter_levels, predict
from tonearm.mastering.plan import LimiterPlan


def test_chunk_resolution_is_bounded() -> None:
    assert chunks_per_subblock_for(44100 * 180, sample_rate=44100) == 20  # 5 ms
    two_hours = chunks_per_subblock_for(44100 * 7200, sample_rate=44100)
    assert 1 <= two_hours < 20
    assert 7200 * 10 * two_hours <= MAX_CHUNKS
    assert chunks_per_subblock_for(0, sample_rate=48000) == 20


@pytest.mark.parametrize("rate", [11025, 44100, 96000])
@pytest.mark.parametrize("expected_frames", [0, 10**9])
def test_chunks_cover_every_frame_in_any_block_split(rate: int, expected_frames: int) -> None:
    audio = synth.noise(rate, 2.3, seed=rate)
    rng = np.random.default_rng(rate)
    whole = TrackAnalyzer(sample_rate=rate, channels=2, expected_frames=expected_frames)
    whole.push(audio)
    split = TrackAnalyzer(sample_rate=rate, channels=2, expected_frames=expected_frames)
    cuts = np.sort(rng.choice(np.arange(1, audio.shape[1]), size=30, replace=False))
    for part in np.split(audio, cuts, axis=1):
        split.push(part)
    a, b = whole.result().chunks, split.result().chunks
    assert int(a.frames.sum()) == audio.shape[1]
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.peak, b.peak)
    np.testing.assert_allclose(a.k_energy, b.k_energy, rtol=1e-5)
    per_second = 10 * a.chunks_per_subblock
    assert abs(a.frames.shape[0] - audio.shape[1] * per_second / rate) <= 1
    assert np.max(np.abs(audio)) == pytest.approx(float(a.peak.max()))


def test_coarse_chunks_predict_close_to_fine_ones() -> None:
    audio, rate = synth.excerpt(synth.BACH, 20.0)
    fine = analyze_audio(audio, sample_rate=rate)
    coarse_analyzer = TrackAnalyzer(sample_rate=rate, channels=2, expected_frames=rate * 7200)
    coarse_analyzer.push(audio)
    coarse = coarse_analyzer.result()
    assert coarse.chunks.chunks_per_subblock < fine.chunks.chunks_per_subblock
    limiter = LimiterPlan(ceiling_dbtp=-1.0)
    levels = [
        pre_limiter_levels(
            result.chunks, eq_loudness_offset_db=0.0, dynamics=None, true_peak_overshoot_db=0.0
        )
        for result in (fine, coarse)
    ]

    def error_lu(gain_db: float) -> float:
        fine_lufs, coarse_lufs = (
            predict(level, gain_db=gain_db, limiter=limiter).integrated_lufs for level in levels
        )
        return coarse_lufs - fine_lufs

    # without limiting the resolution does not matter; under heavy limiting (+14 dB here) coarse
    # chunks charge the reduction to the whole chunk: the prediction reads low, never high,
    # and the verify pass corrects the gain
    assert abs(error_lu(0.0)) < 0.01
    assert abs(error_lu(8.0)) < 0.1
    assert -1.0 < error_lu(14.0) <= 0.0


def test_blocks_ending_exactly_on_chunk_boundaries() -> None:
    """A block that ends where a chunk ends must not merge that chunk with the next one."""
    rate = 44100
    audio = synth.noise(rate, 3.0, seed=3)
    whole = TrackAnalyzer(sample_rate=rate, channels=2)
    whole.push(audio)
    aligned = TrackAnalyzer(sample_rate=rate, channels=2)
    boundaries = [(2 * j * rate + 200) // 400 for j in range(0, 600, 7)]  # chunk starts
    for start, stop in itertools.pairwise([*boundaries, audio.shape[1]]):
        aligned.push(audio[:, start:stop])
    a, b = whole.result().chunks, aligned.result().chunks
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.peak, b.peak)
