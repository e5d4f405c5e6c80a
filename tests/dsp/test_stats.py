"""Level statistics: peak, RMS, crest, mid/side balance, width and phase correlation."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from tests.concurrency.helpers import map_concurrent
from tests.dsp.signals import music_like, silence, sine, white_noise
from tonearm.dsp.channels import to_mid_side
from tonearm.dsp.stats import LevelStats, LevelStatsAccumulator, level_stats
from tonearm.errors import ParameterError


def test_full_scale_sine() -> None:
    # 1000 periods of 1 kHz at 48 kHz, starting at the crest: peak exactly 1.0.
    stats = level_stats(sine(1000.0, sample_rate=48000, seconds=1.0))
    assert stats.sample_peak_dbfs == 0.0
    assert stats.rms_dbfs == pytest.approx(-3.0103, abs=1e-4)
    assert stats.crest_db == pytest.approx(3.0103, abs=1e-4)
    assert stats.side_to_mid_db == float("-inf")  # dual mono
    assert stats.width == 0.0
    assert stats.correlation == 1.0


def test_silence() -> None:
    for channels in (1, 2):
        stats = level_stats(silence(sample_rate=44100, seconds=0.5, channels=channels))
        assert stats == LevelStats(
            sample_peak_dbfs=float("-inf"),
            rms_dbfs=float("-inf"),
            crest_db=0.0,
            side_to_mid_db=float("-inf"),
            width=0.0,
            correlation=1.0,
        )
    empty = level_stats(np.zeros((2, 0), dtype=np.float32))
    assert empty.rms_dbfs == float("-inf")
    assert empty.correlation == 1.0


def test_mono() -> None:
    audio = white_noise(1, sample_rate=44100, seconds=1.0, rms=0.25, channels=1)
    stats = level_stats(audio)
    assert stats.rms_dbfs == pytest.approx(20 * math.log10(0.25), abs=0.05)
    assert stats.sample_peak_dbfs == pytest.approx(20 * math.log10(np.abs(audio).max()))
    assert stats.side_to_mid_db == float("-inf")
    assert stats.width == 0.0
    assert stats.correlation == 1.0


def test_opposite_polarity() -> None:
    audio = white_noise(2, sample_rate=44100, seconds=1.0, channels=1)
    stats = level_stats(np.concatenate((audio, -audio)))
    assert stats.correlation == -1.0
    assert stats.width == 1.0
    assert stats.side_to_mid_db == float("inf")


def test_uncorrelated_channels() -> None:
    stats = level_stats(white_noise(3, sample_rate=48000, seconds=2.0))
    assert stats.correlation == pytest.approx(0.0, abs=0.01)
    assert stats.width == pytest.approx(0.5, abs=0.01)
    assert stats.side_to_mid_db == pytest.approx(0.0, abs=0.05)


def test_one_silent_channel() -> None:
    left = white_noise(4, sample_rate=44100, seconds=1.0, channels=1)
    stats = level_stats(np.concatenate((left, np.zeros_like(left))))
    assert stats.correlation == 0.0
    assert stats.width == pytest.approx(0.5, abs=1e-12)
    assert stats.side_to_mid_db == pytest.approx(0.0, abs=1e-9)
    assert stats.rms_dbfs == pytest.approx(10 * math.log10(np.mean(left.astype(float) ** 2) / 2))


def test_known_mid_side_balance() -> None:
    # L = M + S, R = M - S with independent M and S 12 dB apart.
    mid = white_noise(5, sample_rate=48000, seconds=2.0, rms=0.2, channels=1)
    side = white_noise(6, sample_rate=48000, seconds=2.0, rms=0.05, channels=1)
    audio = np.concatenate((mid + side, mid - side))
    stats = level_stats(audio)
    m, s = to_mid_side(audio).astype(np.float64)
    expected = 10 * math.log10(np.sum(s**2) / np.sum(m**2))
    assert stats.side_to_mid_db == pytest.approx(expected, abs=1e-4)
    assert stats.side_to_mid_db == pytest.approx(-12.04, abs=0.1)
    assert stats.width == pytest.approx(np.sum(s**2) / (np.sum(m**2) + np.sum(s**2)), rel=1e-5)
    left, right = audio.astype(np.float64)
    pearson = np.sum(left * right) / math.sqrt(np.sum(left**2) * np.sum(right**2))
    assert stats.correlation == pytest.approx(pearson, abs=1e-9)


def test_side_far_below_mid_stays_accurate() -> None:
    mid = white_noise(7, sample_rate=48000, seconds=1.0, rms=0.3, channels=1)
    side = white_noise(8, sample_rate=48000, seconds=1.0, rms=0.3e-4, channels=1)
    stats = level_stats(np.concatenate((mid + side, mid - side)))
    assert stats.side_to_mid_db == pytest.approx(-80.0, abs=0.2)


def test_streaming_equals_whole() -> None:
    audio = music_like(9, sample_rate=44100, seconds=5.0)
    whole = level_stats(audio)
    accumulator = LevelStatsAccumulator(channels=2)
    rng = np.random.default_rng(9)
    start = 0
    while start < audio.shape[1]:
        size = int(rng.integers(1, 100000))
        accumulator.push(audio[:, start : start + size])
        start += size
    streamed = accumulator.result()
    assert streamed.sample_peak_dbfs == whole.sample_peak_dbfs
    for name in ("rms_dbfs", "crest_db", "side_to_mid_db", "width", "correlation"):
        assert getattr(streamed, name) == pytest.approx(getattr(whole, name), rel=1e-9, abs=1e-12)
    accumulator.reset()
    assert accumulator.result().rms_dbfs == float("-inf")


def test_frozen_result() -> None:
    stats = level_stats(sine(440.0, sample_rate=44100, seconds=0.1))
    with pytest.raises(AttributeError):
        stats.width = 1.0  # type: ignore[misc]


def test_rejects_bad_input() -> None:
    with pytest.raises(ParameterError):
        LevelStatsAccumulator(channels=3)
    with pytest.raises(ParameterError, match="channel"):
        LevelStatsAccumulator(channels=1).push(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ParameterError, match="float32"):
        level_stats(np.zeros((2, 4), dtype=np.int16))


def test_two_threads_give_the_sequential_results() -> None:
    signals = [music_like(s, sample_rate=44100, seconds=3.0) for s in (31, 32)]

    def measure(audio: npt.NDArray[np.float32]) -> LevelStats:
        accumulator = LevelStatsAccumulator(channels=2)
        for start in range(0, audio.shape[1], 5000):
            accumulator.push(audio[:, start : start + 5000])
        return accumulator.result()

    sequential = [measure(a) for a in signals]
    # two threads started together, each measuring three times (more chances to interleave)
    parallel = map_concurrent(lambda audio: [measure(audio) for _ in range(3)][-1], signals)
    results: dict[int, LevelStats] = dict(enumerate(parallel))
    assert results == dict(enumerate(sequential))
    assert sequential[0] != sequential[1]


def test_every_figure_is_bit_identical_however_the_stream_is_cut() -> None:
    audio = music_like(11, sample_rate=44100, seconds=9.0)
    whole = LevelStatsAccumulator(channels=2)
    whole.push(audio)
    rng = np.random.default_rng(2)
    cut = LevelStatsAccumulator(channels=2)
    position = 0
    while position < audio.shape[1]:
        size = int(rng.choice([1, 999, 30000, 65536, 200000]))
        cut.push(audio[:, position : position + size])
        position += size
    assert cut.result() == whole.result()  # exact equality, not approx
