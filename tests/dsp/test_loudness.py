"""BS.1770-4 integrated loudness, EBU Tech 3341 meter cases and EBU Tech 3342 loudness range."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pyloudnorm
import pytest
import scipy.signal

from tests.concurrency.helpers import map_concurrent
from tests.dsp.signals import (
    BACH,
    JOPLIN,
    load_fixture,
    music_like,
    silence,
    sine,
    sine_at_lufs,
    sine_dbfs,
    white_noise,
)
from tonearm.dsp.filters import k_weighting_sos
from tonearm.dsp.loudness import (
    ABSOLUTE_GATE_LUFS,
    LRA_RELATIVE_GATE_LU,
    RELATIVE_GATE_LU,
    KWeighting,
    LoudnessMeter,
    LoudnessResult,
    integrated_loudness,
    integrated_loudness_from_subblocks,
    loudness_range,
    loudness_range_from_subblocks,
    measure_loudness,
    momentary_loudness_from_subblocks,
    short_term_loudness_from_subblocks,
)
from tonearm.errors import ParameterError

Energies = npt.NDArray[np.float64]


def _energy(lufs: float) -> float:
    return float(10.0 ** ((lufs + 0.691) / 10.0))


def _lufs(energy: float) -> float:
    return -0.691 + 10.0 * math.log10(energy)


def _concat(*parts: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.concatenate(parts, axis=1)


def test_constants() -> None:
    assert ABSOLUTE_GATE_LUFS == -70.0
    assert RELATIVE_GATE_LU == -10.0
    assert LRA_RELATIVE_GATE_LU == -20.0


# --- calibration -------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [8000, 11025, 44100, 48000, 96000, 192000])
def test_sine_at_minus_23_lufs(sample_rate: int) -> None:
    audio = sine_at_lufs(-23.0, sample_rate=sample_rate, seconds=5.0)
    assert integrated_loudness(audio, sample_rate=sample_rate) == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize("sample_rate", [22050, 44100, 88200, 96000, 192000])
def test_rate_independent_calibration(sample_rate: int) -> None:
    # Amplitude from the 48 kHz (standard) gain: other rates agree to a few hundredths of a LU.
    audio = sine_at_lufs(-23.0, sample_rate=sample_rate, seconds=3.0, gain_rate=48000)
    assert integrated_loudness(audio, sample_rate=sample_rate) == pytest.approx(-23.0, abs=0.03)


def test_mono_reads_3_db_below_the_same_level_in_two_channels() -> None:
    stereo = sine(1000.0, sample_rate=48000, seconds=3.0, amplitude=0.1)
    mono = stereo[:1].copy()
    difference = integrated_loudness(stereo, sample_rate=48000) - integrated_loudness(
        mono, sample_rate=48000
    )
    assert difference == pytest.approx(10.0 * math.log10(2.0), abs=1e-6)


# --- EBU Tech 3341 test cases 1-5 (stereo 1 kHz sines, levels in dBFS per channel) ------------


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ([(-23.0, 20.0)], -23.0),  # case 1
        ([(-33.0, 20.0)], -33.0),  # case 2
        ([(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], -23.0),  # case 3
        ([(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)], -23.0),
        ([(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)], -23.0),  # case 5
    ],
)
def test_tech_3341_integrated_cases(segments: list[tuple[float, float]], expected: float) -> None:
    audio = _concat(*(sine_dbfs(level, sample_rate=48000, seconds=s) for level, s in segments))
    result = measure_loudness(audio, sample_rate=48000)
    assert result.integrated_lufs == pytest.approx(expected, abs=0.1)


def test_tech_3341_momentary_and_short_term_of_a_steady_tone() -> None:
    result = measure_loudness(sine_dbfs(-23.0, sample_rate=48000, seconds=20.0), sample_rate=48000)
    assert result.momentary_max_lufs == pytest.approx(-23.0, abs=0.1)
    assert result.short_term_max_lufs == pytest.approx(-23.0, abs=0.1)
    assert result.short_term_lufs.dtype == np.float32
    assert result.short_term_lufs.shape == (200 - 29,)
    np.testing.assert_allclose(result.short_term_lufs, -23.0, atol=0.1)


# --- gating ------------------------------------------------------------------------------------


def test_relative_gate_drops_the_quiet_part() -> None:
    loud = sine_at_lufs(-20.0, sample_rate=48000, seconds=10.0)
    quiet = sine_at_lufs(-40.0, sample_rate=48000, seconds=10.0)
    measured = integrated_loudness(_concat(loud, quiet), sample_rate=48000)
    # Gating blocks: 97 wholly loud, 3 straddling (3/4, 2/4, 1/4 loud), 97 wholly quiet. The
    # relative gate (about -33 LUFS) keeps the first 100; without it the result would be -23.
    kept = (97 * _energy(-20.0) + sum(k * _energy(-20.0) + (4 - k) * _energy(-40.0)
                                      for k in (3, 2, 1)) / 4) / 100  # fmt: skip
    assert measured == pytest.approx(_lufs(kept), abs=0.01)
    assert measured == pytest.approx(-20.07, abs=0.02)


def test_silence_is_gated_out() -> None:
    tone = sine_at_lufs(-23.0, sample_rate=44100, seconds=10.0)
    assert integrated_loudness(tone, sample_rate=44100) == pytest.approx(-23.0, abs=0.01)
    results = []
    for seconds in (5.0, 60.0):
        gap = silence(sample_rate=44100, seconds=seconds)
        results.append(integrated_loudness(_concat(gap, tone, gap), sample_rate=44100))
    # However much silence surrounds it, only the 3 + 3 gating blocks that straddle the edges
    # (1/4, 2/4 and 3/4 tone) join the 97 blocks of pure tone: 100 tone energies over 103 blocks.
    assert results[0] == pytest.approx(results[1], abs=1e-9)
    assert results[0] == pytest.approx(-23.0 + 10.0 * math.log10(100 / 103), abs=0.01)


@pytest.mark.parametrize("level_lufs", [-75.0, -90.0])
def test_signal_below_the_absolute_gate_is_minus_infinity(level_lufs: float) -> None:
    audio = sine_at_lufs(level_lufs, sample_rate=48000, seconds=5.0)
    result = measure_loudness(audio, sample_rate=48000)
    assert result.integrated_lufs == float("-inf")
    assert result.loudness_range_lu == 0.0
    assert result.momentary_max_lufs == pytest.approx(level_lufs, abs=0.1)


def test_digital_silence() -> None:
    result = measure_loudness(silence(sample_rate=44100, seconds=4.0), sample_rate=44100)
    assert result.integrated_lufs == float("-inf")
    assert result.loudness_range_lu == 0.0
    assert result.momentary_max_lufs == float("-inf")
    assert result.short_term_max_lufs == float("-inf")
    assert result.short_term_lufs.shape == (11,)
    assert np.all(result.short_term_lufs == -np.inf)


def test_too_short_signals() -> None:
    short = sine_at_lufs(-23.0, sample_rate=48000, seconds=0.35)  # 3 sub-blocks, no 400 ms block
    result = measure_loudness(short, sample_rate=48000)
    assert result.integrated_lufs == float("-inf")
    assert result.momentary_max_lufs == float("-inf")
    assert result.short_term_lufs.shape == (0,)
    empty = np.zeros((2, 0), dtype=np.float32)
    assert integrated_loudness(empty, sample_rate=48000) == float("-inf")
    assert loudness_range(empty, sample_rate=48000) == 0.0


# --- functions on sub-block energies -----------------------------------------------------------


def test_integrated_from_subblocks_exact_cases() -> None:
    steady = np.full(50, _energy(-18.0))
    assert integrated_loudness_from_subblocks(steady) == pytest.approx(-18.0, abs=1e-12)
    # A block exactly at the absolute gate is excluded (l_j > -70 is required).
    assert integrated_loudness_from_subblocks(np.full(10, _energy(-70.0) * 0.999)) == -np.inf
    assert integrated_loudness_from_subblocks(np.zeros(40)) == -np.inf
    assert integrated_loudness_from_subblocks(np.zeros(0)) == -np.inf
    # Two plateaux 15 dB apart: the quieter is below the relative gate (about -23 LUFS).
    two = np.concatenate((np.full(100, _energy(-10.0)), np.full(100, _energy(-25.0))))
    gating = np.lib.stride_tricks.sliding_window_view(two, 4).mean(axis=1)
    threshold = gating.mean() * 0.1
    expected = _lufs(float(gating[gating > threshold].mean()))
    assert integrated_loudness_from_subblocks(two) == pytest.approx(expected, abs=1e-12)
    assert expected > -10.2


def test_short_term_and_momentary_from_subblocks() -> None:
    energies = np.concatenate((np.zeros(10), np.full(40, _energy(-20.0))))
    momentary = momentary_loudness_from_subblocks(energies)
    short_term = short_term_loudness_from_subblocks(energies)
    assert momentary.shape == (47,)
    assert short_term.shape == (21,)
    assert momentary.dtype == np.float32
    assert short_term.dtype == np.float32
    assert np.all(momentary[:7] == -np.inf)
    np.testing.assert_allclose(momentary[10:], -20.0, atol=1e-5)
    assert short_term[0] == pytest.approx(-20.0 + 10 * math.log10(20 / 30), abs=1e-5)
    np.testing.assert_allclose(short_term[10:], -20.0, atol=1e-5)


def test_loudness_range_from_subblocks_percentiles() -> None:
    # Short-term values are window means; with a linear ramp of loudness the LRA is the spread
    # between the 10th and 95th percentiles (linear interpolation) of the window loudness.
    levels = np.linspace(-30.0, -10.0, 400)
    energies = 10.0 ** ((levels + 0.691) / 10.0)
    windows = np.lib.stride_tricks.sliding_window_view(energies, 30).mean(axis=1)
    window_lufs = -0.691 + 10.0 * np.log10(windows)
    power_mean = windows.mean()
    kept = window_lufs[windows > power_mean * 0.01]
    expected = np.percentile(kept, 95) - np.percentile(kept, 10)
    assert loudness_range_from_subblocks(energies) == pytest.approx(expected, abs=1e-9)
    assert loudness_range_from_subblocks(np.full(100, _energy(-20.0))) == pytest.approx(0.0)
    assert loudness_range_from_subblocks(np.zeros(100)) == 0.0


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 10)), np.array([1.0, -1.0]), np.array([np.nan]), np.array([np.inf])]
)
def test_subblock_functions_reject_bad_input(bad: Energies) -> None:
    with pytest.raises(ParameterError):
        integrated_loudness_from_subblocks(bad)
    with pytest.raises(ParameterError):
        loudness_range_from_subblocks(bad)


# --- EBU Tech 3342 loudness range (stereo 1 kHz sines, levels in dBFS per channel) ------------


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ([(-20.0, 20.0), (-30.0, 20.0)], 10.0),  # case 1
        ([(-20.0, 20.0), (-15.0, 20.0)], 5.0),  # case 2
        ([(-40.0, 20.0), (-20.0, 20.0)], 20.0),  # case 3
        ([(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0), (-50.0, 20.0)], 15.0),
    ],
)
def test_tech_3342_cases(segments: list[tuple[float, float]], expected: float) -> None:
    audio = _concat(*(sine_dbfs(level, sample_rate=48000, seconds=s) for level, s in segments))
    assert loudness_range(audio, sample_rate=48000) == pytest.approx(expected, abs=1.0)


# --- comparison with pyloudnorm ----------------------------------------------------------------


@pytest.mark.parametrize("path", [BACH, JOPLIN], ids=["bach", "joplin"])
def test_matches_pyloudnorm_on_music(path: object) -> None:
    audio, sample_rate = load_fixture(path)  # type: ignore[arg-type]
    ours = measure_loudness(audio, sample_rate=sample_rate)
    meter = pyloudnorm.Meter(sample_rate)  # 400 ms blocks, 75 % overlap
    theirs = meter.integrated_loudness(audio.T.astype(np.float64))
    # pyloudnorm's default K-weighting is a re-designed approximation of the BS.1770 filter;
    # measured difference here is about 0.04 LU.
    assert ours.integrated_lufs == pytest.approx(theirs, abs=0.1)
    # pyloudnorm's LRA uses a 90 ms hop (overlap 0.97 of 3 s), appends 1.5 s of silence and
    # gates with >=; the same 10th/95th percentiles. Measured difference here: < 0.03 LU.
    their_range = meter.loudness_range(audio.T.astype(np.float64))
    assert ours.loudness_range_lu == pytest.approx(their_range, abs=1.0)
    assert ours.loudness_range_lu > 0.5


# --- streaming ---------------------------------------------------------------------------------


def _random_splits(frames: int, seed: int, largest: int) -> list[int]:
    rng = np.random.default_rng(seed)
    edges = [0]
    while edges[-1] < frames:
        size = int(rng.choice([1, 2, 7, int(rng.integers(1, largest))]))
        edges.append(min(frames, edges[-1] + size))
    return edges


@pytest.mark.parametrize(("sample_rate", "seed"), [(44100, 1), (11025, 2), (48000, 3)])
def test_streaming_equals_whole(sample_rate: int, seed: int) -> None:
    audio = music_like(seed, sample_rate=sample_rate, seconds=8.0)
    whole = LoudnessMeter(sample_rate=sample_rate, channels=2)
    whole.push(audio)
    streamed = LoudnessMeter(sample_rate=sample_rate, channels=2)
    edges = _random_splits(audio.shape[1], seed, largest=30000)
    for start, stop in itertools.pairwise(edges):
        streamed.push(audio[:, start:stop])
    np.testing.assert_array_equal(streamed.subblock_energies, whole.subblock_energies)
    a, b = streamed.result(), whole.result()
    assert a.integrated_lufs == pytest.approx(b.integrated_lufs, abs=1e-9)
    assert a.loudness_range_lu == pytest.approx(b.loudness_range_lu, abs=1e-9)
    np.testing.assert_array_equal(a.short_term_lufs, b.short_term_lufs)


def test_subblock_boundaries_at_a_fractional_rate() -> None:
    # 11025 Hz: sub-blocks are 1102 or 1103 frames, boundaries floor(k * 1102.5 + 0.5).
    sample_rate = 11025
    audio = white_noise(5, sample_rate=sample_rate, seconds=2.05)
    meter = LoudnessMeter(sample_rate=sample_rate, channels=2)
    meter.push(audio)
    energies = meter.subblock_energies
    assert energies.shape == (20,)  # 2.05 s: the trailing 50 ms is not a complete sub-block
    sos = np.array(k_weighting_sos(sample_rate))
    weighted = scipy.signal.sosfilt(sos, audio.astype(np.float64), axis=-1)
    bounds = [math.floor(k * sample_rate / 10 + 0.5) for k in range(21)]
    expected = [
        float(np.mean(np.sum(weighted[:, a:b] ** 2, axis=0))) for a, b in itertools.pairwise(bounds)
    ]
    np.testing.assert_allclose(energies, expected, rtol=2e-4)


def test_push_k_weighted_equals_push() -> None:
    audio = music_like(7, sample_rate=44100, seconds=5.0)
    direct = LoudnessMeter(sample_rate=44100, channels=2)
    direct.push(audio)
    weighting = KWeighting(sample_rate=44100, channels=2)
    split = LoudnessMeter(sample_rate=44100, channels=2)
    for start in range(0, audio.shape[1], 10000):
        split.push_k_weighted(weighting.process(audio[:, start : start + 10000]))
    np.testing.assert_array_equal(split.subblock_energies, direct.subblock_energies)


def test_k_weighting_streaming_and_reset() -> None:
    audio = white_noise(9, sample_rate=48000, seconds=1.0)
    whole = KWeighting(sample_rate=48000, channels=2).process(audio)
    assert whole.dtype == np.float32
    assert whole.shape == audio.shape
    weighting = KWeighting(sample_rate=48000, channels=2)
    pieces = [weighting.process(audio[:, a : a + 777]) for a in range(0, audio.shape[1], 777)]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    weighting.reset()
    np.testing.assert_array_equal(weighting.process(audio), whole)
    # float32 filtering stays within 1e-4 of a float64 reference.
    reference = scipy.signal.sosfilt(np.array(k_weighting_sos(48000)), audio.astype(np.float64))
    np.testing.assert_allclose(whole, reference, atol=1e-4 * float(np.abs(reference).max()))


def test_meter_reset_and_result_types() -> None:
    meter = LoudnessMeter(sample_rate=48000, channels=1)
    meter.push(sine_at_lufs(-30.0, sample_rate=48000, seconds=4.0, channels=1))
    meter.reset()
    assert meter.subblock_energies.shape == (0,)
    meter.push(sine_at_lufs(-16.0, sample_rate=48000, seconds=4.0, channels=1))
    result = meter.result()
    assert isinstance(result, LoudnessResult)
    assert result.integrated_lufs == pytest.approx(-16.0, abs=0.05)
    with pytest.raises(AttributeError):
        result.integrated_lufs = 0.0  # type: ignore[misc]
    # The energies property is a copy.
    energies = meter.subblock_energies
    energies[:] = 0.0
    assert meter.result().integrated_lufs == pytest.approx(-16.0, abs=0.05)


def test_memory_is_per_subblock() -> None:
    meter = LoudnessMeter(sample_rate=48000, channels=2)
    block = white_noise(3, sample_rate=48000, seconds=1.0)
    for _ in range(30):
        meter.push(block)
    assert meter.subblock_energies.shape == (300,)
    assert meter._energies.nbytes <= 8 * 1024  # 300 float64 with doubling headroom
    assert meter._pending.size < 4800


def test_rejects_bad_blocks() -> None:
    meter = LoudnessMeter(sample_rate=48000, channels=2)
    with pytest.raises(ParameterError, match="channel"):
        meter.push(np.zeros((1, 100), dtype=np.float32))
    with pytest.raises(ParameterError, match="float32"):
        meter.push(np.zeros((2, 100), dtype=np.float64))
    with pytest.raises(ParameterError, match="NaN"):
        meter.push(np.full((2, 100), np.nan, dtype=np.float32))
    with pytest.raises(ParameterError):
        LoudnessMeter(sample_rate=4000, channels=2)
    with pytest.raises(ParameterError):
        KWeighting(sample_rate=48000, channels=3)
    with pytest.raises(ParameterError, match="sample rate"):
        integrated_loudness(np.zeros((2, 10), dtype=np.float32), sample_rate=200000)


def test_two_threads_give_the_sequential_results() -> None:
    signals = [music_like(s, sample_rate=44100, seconds=6.0) for s in (11, 12)]

    def measure(audio: npt.NDArray[np.float32]) -> LoudnessResult:
        meter = LoudnessMeter(sample_rate=44100, channels=2)
        for start in range(0, audio.shape[1], 4096):
            meter.push(audio[:, start : start + 4096])
        return meter.result()

    sequential = [measure(audio) for audio in signals]
    # two threads started together, each measuring three times (more chances to interleave)
    parallel = map_concurrent(lambda audio: [measure(audio) for _ in range(3)][-1], signals)
    results: dict[int, LoudnessResult] = dict(enumerate(parallel))
    for index, expected in enumerate(sequential):
        got = results[index]
        assert got.integrated_lufs == expected.integrated_lufs
        assert got.loudness_range_lu == expected.loudness_range_lu
        np.testing.assert_array_equal(got.short_term_lufs, expected.short_term_lufs)
    assert sequential[0].integrated_lufs != sequential[1].integrated_lufs


@pytest.mark.parametrize("sample_rate", [48000, 192000])
def test_float32_filtering_error_is_negligible(sample_rate: int) -> None:
    # Bass-heavy noise is the worst case for a float32 high-pass with poles near z = 1.
    noise = white_noise(13, sample_rate=sample_rate, seconds=4.0, rms=1.0)
    lowpass = scipy.signal.butter(2, 200.0, fs=sample_rate, output="sos")
    audio = (0.3 * scipy.signal.sosfilt(lowpass, noise.astype(np.float64))).astype(np.float32)
    meter = LoudnessMeter(sample_rate=sample_rate, channels=2)
    meter.push(audio)
    sos = np.array(k_weighting_sos(sample_rate))
    weighted = scipy.signal.sosfilt(sos, audio.astype(np.float64), axis=-1)
    frames = sample_rate // 10
    reference = np.sum(weighted[:, : 40 * frames] ** 2, axis=0).reshape(40, frames).mean(axis=1)
    ours = integrated_loudness_from_subblocks(meter.subblock_energies)
    theirs = integrated_loudness_from_subblocks(reference)
    assert ours == pytest.approx(theirs, abs=0.01)
    np.testing.assert_allclose(meter.subblock_energies, reference, rtol=0.01)
