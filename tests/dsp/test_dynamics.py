"""Compressor and true-peak limiter: ceilings, gain laws, linking, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from tonearm.dsp.dynamics import Compressor, TruePeakLimiter, compressor_gain_reduction_db
from tonearm.dsp.true_peak import true_peak_dbtp
from tonearm.errors import ParameterError


def _run(stage: Compressor | TruePeakLimiter, audio: np.ndarray, block: int = 4096) -> np.ndarray:
    """Stream ``audio`` through ``stage`` and undo its latency (output as long as the input)."""
    latency = stage.latency_frames
    padded = np.concatenate((audio, np.zeros((audio.shape[0], latency), np.float32)), axis=1)
    out = np.concatenate(
        [stage.process(padded[:, i : i + block]) for i in range(0, padded.shape[1], block)], axis=1
    )
    return out[:, latency:]


def _hot_noise(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((channels, int(rate * seconds))).astype(np.float32) * 0.5
    envelope = np.where(rng.random(noise.shape[1]) > 0.999, 4.0, 1.0)  # occasional transients
    return (noise * envelope.astype(np.float32)).astype(np.float32)


def test_static_curve() -> None:
    level = np.array([-40.0, -20.0, -10.0, 0.0])
    hard = compressor_gain_reduction_db(
        level, threshold_db=-20.0, ratio=2.0, knee_db=0.0, max_reduction_db=100.0
    )
    np.testing.assert_allclose(hard, [0.0, 0.0, 5.0, 10.0])
    capped = compressor_gain_reduction_db(
        level, threshold_db=-20.0, ratio=2.0, knee_db=6.0, max_reduction_db=4.0
    )
    assert capped[0] == 0.0
    assert 0.0 < capped[1] < 1.0  # inside the knee
    assert capped[3] == 4.0


def test_compressor_steady_state_reduction() -> None:
    rate = 44100
    t = np.arange(rate * 2) / rate
    sine = (np.sqrt(2) * 10 ** (-10 / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    comp = Compressor(
        sample_rate=rate,
        channels=1,
        threshold_dbfs=-20.0,
        ratio=2.0,
        knee_db=0.0,
        max_reduction_db=20.0,
    )
    out = _run(comp, sine[None, :])
    tail = out[0, rate:]
    rms_db = 10 * np.log10(np.mean(tail.astype(np.float64) ** 2))
    assert rms_db == pytest.approx(-15.0, abs=0.2)
    assert comp.stats.max_db == pytest.approx(5.0, abs=0.2)


def test_compressor_ratio_one_is_a_pure_delay() -> None:
    audio = _hot_noise(44100, 0.5, 2, 1)
    comp = Compressor(sample_rate=44100, channels=2, threshold_dbfs=-30.0, ratio=1.0)
    np.testing.assert_array_equal(_run(comp, audio), audio)


def test_compressor_rejects_ratio_below_one() -> None:
    with pytest.raises(ParameterError):
        Compressor(sample_rate=44100, channels=1, threshold_dbfs=-20.0, ratio=0.5)


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_limiter_holds_the_ceiling(rate: int, channels: int) -> None:
    audio = _hot_noise(rate, 1.0, channels, rate + channels)
    limiter = TruePeakLimiter(
        sample_rate=rate, channels=channels, ceiling_dbtp=-1.0, input_gain_db=6.0
    )
    out = _run(limiter, audio)
    assert true_peak_dbtp(out) <= -1.0
    assert out.shape == audio.shape
    assert limiter.stats.max_db > 6.0


def test_limiter_catches_inter_sample_peaks() -> None:
    rate = 48000
    n = np.arange(rate)
    # fs/4 at 45 degrees: samples at +-0.707, true peak 1.0 (0 dBTP) between them
    sine = np.sin(2 * np.pi * n / 4 + np.pi / 4).astype(np.float32)[None, :]
    assert np.abs(sine).max() < 0.71
    out = _run(TruePeakLimiter(sample_rate=rate, channels=1, ceiling_dbtp=-1.0), sine)
    assert true_peak_dbtp(out) <= -1.0
    assert true_peak_dbtp(out) > -1.5  # and not much more than needed


def test_limiter_leaves_quiet_audio_untouched() -> None:
    audio = _hot_noise(44100, 0.5, 2, 3) * np.float32(0.05)
    limiter = TruePeakLimiter(sample_rate=44100, channels=2, ceiling_dbtp=-1.0)
    np.testing.assert_array_equal(_run(limiter, audio), audio)
    assert limiter.stats.max_db == 0.0


def test_limiter_links_channels() -> None:
    rng = np.random.default_rng(4)
    left = rng.standard_normal(44100).astype(np.float32) * 0.9
    right = rng.standard_normal(44100).astype(np.float32) * 0.05
    audio = np.stack([left, right])
    out = _run(TruePeakLimiter(sample_rate=44100, channels=2, ceiling_dbtp=-3.0), audio)
    nonzero = np.abs(audio[1]) > 1e-3
    ratio_left = out[0, nonzero] / audio[0, nonzero]
    ratio_right = out[1, nonzero] / audio[1, nonzero]
    np.testing.assert_allclose(ratio_left, ratio_right, rtol=1e-4)
    assert ratio_right.min() < 0.9  # the quiet channel was turned down with the loud one


def test_limiter_block_split_invariance() -> None:
    audio = _hot_noise(44100, 1.0, 2, 9)
    whole = _run(
        TruePeakLimiter(sample_rate=44100, channels=2, ceiling_dbtp=-1.0), audio, block=10**9
    )
    split = _run(
        TruePeakLimiter(sample_rate=44100, channels=2, ceiling_dbtp=-1.0), audio, block=777
    )
    np.testing.assert_allclose(split, whole, atol=1e-6)


def test_limiter_reset_repeats_output() -> None:
    audio = _hot_noise(44100, 0.5, 2, 10)
    limiter = TruePeakLimiter(sample_rate=44100, channels=2, ceiling_dbtp=-1.0, input_gain_db=3.0)
    first = _run(limiter, audio)
    limiter.reset()
    np.testing.assert_array_equal(_run(limiter, audio), first)


def test_silence_stays_silent() -> None:
    silence = np.zeros((2, 20_000), dtype=np.float32)
    for stage in (
        TruePeakLimiter(sample_rate=44100, channels=2, ceiling_dbtp=-1.0, input_gain_db=20.0),
        Compressor(sample_rate=44100, channels=2, threshold_dbfs=-40.0, ratio=4.0),
    ):
        assert not _run(stage, silence).any()
