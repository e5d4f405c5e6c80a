"""4x true peak (BS.1770-4 Annex 2): filter, EBU Tech 3341-style cases, streaming, skipping."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest

import tonearm.dsp.true_peak as true_peak_module
from tests.concurrency.helpers import map_concurrent
from tests.dsp.signals import BACH, load_fixture, music_like, silence, sine, white_noise
from tonearm.dsp.true_peak import (
    LATENCY_FRAMES,
    OVERSAMPLING,
    TruePeakDetector,
    TruePeakMeter,
    interpolation_l1_bound,
    interpolation_phase_matrix,
    sample_peak_dbfs,
    true_peak,
    true_peak_dbtp,
)
from tonearm.errors import ParameterError

Audio = npt.NDArray[np.float32]


def _db(value: float) -> float:
    return 20.0 * math.log10(value)


def _reference_envelope(audio: Audio) -> npt.NDArray[np.float64]:
    """Plain float64 reference of the detector: every window times the phase matrix."""
    matrix = interpolation_phase_matrix().astype(np.float64)
    padded = np.concatenate((np.zeros((audio.shape[0], 11)), audio.astype(np.float64)), axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 12, axis=-1)
    return np.asarray(np.abs(windows @ matrix).max(axis=(0, 2)))


def _brute_force_peak(audio: Audio) -> float:
    detector = TruePeakDetector(channels=audio.shape[0])
    envelope = np.concatenate((detector.process(audio), detector.flush()))
    return float(envelope.max())


# --- the interpolation filter ------------------------------------------------------------------


def test_phase_matrix_design() -> None:
    matrix = interpolation_phase_matrix()
    assert OVERSAMPLING == 4
    assert matrix.shape == (12, 4)
    assert matrix.dtype == np.float32
    assert not matrix.flags.writeable
    assert interpolation_phase_matrix() is matrix
    unit = np.zeros(12, dtype=np.float32)
    unit[LATENCY_FRAMES - 1] = 1.0
    np.testing.assert_array_equal(matrix[:, 0], unit)  # phase 0 is the sample, exactly
    np.testing.assert_allclose(matrix.astype(np.float64).sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(matrix[:, 3], matrix[::-1, 1])
    np.testing.assert_array_equal(matrix[:, 2], matrix[::-1, 2])
    # Half-sample phase: the two nearest frames carry most of the weight.
    assert matrix[5, 2] == pytest.approx(0.6, abs=0.05)


def test_phase_responses_are_flat_in_the_passband() -> None:
    matrix = interpolation_phase_matrix().astype(np.float64)
    frequencies = np.linspace(0.0, 0.3, 61)  # cycles per input sample
    delays = 11 - np.arange(12)
    response = np.abs(np.exp(-2j * np.pi * np.outer(frequencies, delays)) @ matrix)
    gains_db = 20 * np.log10(response)
    assert gains_db.max() < 0.05
    assert gains_db.min() > -0.05


def test_l1_bound() -> None:
    matrix = interpolation_phase_matrix().astype(np.float64)
    bound = interpolation_l1_bound()
    assert bound == pytest.approx(np.abs(matrix).sum(axis=0).max())
    assert 1.5 < bound < 2.5
    # Adversarial windows (signs of the taps) reach the bound; random ones stay below it.
    worst = np.sign(matrix[:, 2]).astype(np.float32)
    assert float(np.abs(worst @ matrix).max()) == pytest.approx(bound, rel=1e-6)
    rng = np.random.default_rng(0)
    windows = rng.uniform(-1.0, 1.0, size=(10000, 12))
    peaks = np.abs(windows @ matrix).max(axis=1)
    assert np.all(peaks <= bound * np.abs(windows).max(axis=1) + 1e-12)


# --- EBU Tech 3341-style cases -----------------------------------------------------------------


def test_quarter_rate_sine_at_45_degrees() -> None:
    # Samples land at +-cos(45 deg): the sample peak is 3.01 dB below the true peak.
    audio = sine(
        12000.0, sample_rate=48000, seconds=1.0, amplitude=0.5, phase_rad=np.pi / 4,
        fade_seconds=0.01,
    )  # fmt: skip
    assert sample_peak_dbfs(audio) == pytest.approx(_db(0.5) - 3.0103, abs=0.001)
    assert true_peak_dbtp(audio) == pytest.approx(_db(0.5), abs=0.1)


@pytest.mark.parametrize(
    ("divisor", "phase_deg"), [(4, 45.0), (6, 60.0), (8, 67.5), (4, 0.0), (6, 30.0)]
)
def test_tech_3341_style_fractional_rate_sines(divisor: int, phase_deg: float) -> None:
    # 0 dBFS-amplitude sines at fs/4, fs/6, fs/8 with phases that put no sample on the crest:
    # Tech 3341 accepts +0.2/-0.4 dB; this filter reads within +0.05/-0.2 dB here.
    audio = sine(
        48000 / divisor, sample_rate=48000, seconds=1.0, phase_rad=math.radians(phase_deg),
        fade_seconds=0.01,
    )  # fmt: skip
    reading = true_peak_dbtp(audio)
    assert -0.2 <= reading <= 0.05


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_full_scale_1khz_sine(sample_rate: int) -> None:
    audio = sine(1000.0, sample_rate=sample_rate, seconds=1.0, phase_rad=0.3, fade_seconds=0.01)
    assert true_peak_dbtp(audio) == pytest.approx(0.0, abs=0.05)
    # Cut off at a crest instead, the step to silence rings above full scale (Gibbs): the
    # meter includes the end of the signal.
    abrupt = sine(1000.0, sample_rate=sample_rate, seconds=1.0, phase_rad=0.3)
    assert true_peak_dbtp(abrupt) > 0.5


def test_sine_sweep_tolerance() -> None:
    # Every frequency up to 0.42 fs, many phases: over-read <= 0.05 dB; under-read no more than
    # the 4x grid loss cos(pi f / 4) plus 0.05 dB (at most 0.5 dB here; Tech 3341: -0.6 dB).
    rng = np.random.default_rng(4)
    for frequency in np.linspace(0.01, 0.42, 42):
        grid_loss_db = _db(math.cos(math.pi * frequency / 4))
        for phase in rng.uniform(0.0, 2 * np.pi, size=4):
            t = np.arange(400)
            audio = np.cos(2 * np.pi * frequency * t + phase)[np.newaxis, :].astype(np.float32)
            # Outputs 50..349 see only the steady sine (>= 3 periods at f = 0.01).
            reading = _db(float(TruePeakDetector(channels=1).process(audio)[50:350].max()))
            assert reading <= 0.05
            assert reading >= grid_loss_db - 0.05
            assert reading >= -0.5


def test_inter_sample_peak_of_a_clipped_square_edge() -> None:
    # Alternating full-scale samples with a step: the classic inter-sample over.
    audio = np.zeros((2, 200), dtype=np.float32)
    audio[:, 100:104] = [[1.0, 1.0, -1.0, -1.0]] * 2
    assert sample_peak_dbfs(audio) == 0.0
    assert true_peak_dbtp(audio) > 0.5


# --- detector ----------------------------------------------------------------------------------


def test_detector_matches_float64_reference_and_latency() -> None:
    audio = music_like(2, sample_rate=44100, seconds=0.5)
    detector = TruePeakDetector(channels=2)
    assert detector.latency_frames == LATENCY_FRAMES == 6
    envelope = detector.process(audio)
    assert envelope.dtype == np.float32
    assert envelope.shape == (audio.shape[1],)
    np.testing.assert_allclose(envelope, _reference_envelope(audio), rtol=1e-5, atol=1e-7)
    # Output i refers to frames [i - 6, i - 5): an impulse at frame 0 peaks at output 6.
    impulse = np.zeros((1, 40), dtype=np.float32)
    impulse[0, 0] = 1.0
    response = TruePeakDetector(channels=1).process(impulse)
    assert response[6] == 1.0
    assert response[:6].max() < 1.0
    assert response[5] > 0.0  # 1/4 frame before the impulse sees its ring
    assert np.all(response[18:] == 0.0)


def test_detector_streaming_equals_whole() -> None:
    audio = music_like(3, sample_rate=48000, seconds=1.5)
    whole_detector = TruePeakDetector(channels=2)
    whole = np.concatenate((whole_detector.process(audio), whole_detector.flush()))
    detector = TruePeakDetector(channels=2)
    rng = np.random.default_rng(3)
    pieces = []
    start = 0
    while start < audio.shape[1]:
        size = int(rng.choice([1, 5, 11, 12, 13, int(rng.integers(1, 40000))]))
        pieces.append(detector.process(audio[:, start : start + size]))
        start += size
    pieces.append(detector.flush())
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert whole.shape == (audio.shape[1] + LATENCY_FRAMES,)
    detector.reset()
    np.testing.assert_array_equal(detector.process(audio), whole[: audio.shape[1]])


def test_detector_channel_linked() -> None:
    left = music_like(5, sample_rate=44100, seconds=0.3)[:1]
    right = 0.5 * music_like(6, sample_rate=44100, seconds=0.3)[:1]
    both = TruePeakDetector(channels=2).process(np.concatenate((left, right)))
    separate = np.maximum(
        TruePeakDetector(channels=1).process(left), TruePeakDetector(channels=1).process(right)
    )
    np.testing.assert_array_equal(both, separate)


def test_detector_empty_block() -> None:
    detector = TruePeakDetector(channels=2)
    assert detector.process(np.zeros((2, 0), dtype=np.float32)).shape == (0,)


# --- meter -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_meter_with_skipping_equals_brute_force(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    audio = music_like(seed, sample_rate=44100, seconds=6.0)
    oversampled_frames = []
    original = true_peak_module._odd_phase_abs_max

    def counting(extended: Audio, scratch: object) -> npt.NDArray[np.float32]:
        oversampled_frames.append(extended.shape[1] - 11)
        return original(extended, scratch)  # type: ignore[arg-type]

    monkeypatch.setattr(true_peak_module, "_odd_phase_abs_max", counting)
    meter = TruePeakMeter(channels=2)
    meter.push(audio)
    peak = meter.peak
    monkeypatch.undo()
    assert peak == _brute_force_peak(audio)  # bitwise
    assert sum(oversampled_frames) < audio.shape[1] // 2  # most of the work was skipped
    assert meter.peak_dbtp == _db(peak)


@pytest.mark.parametrize("seed", [10, 11])
def test_meter_dense_signals_equal_brute_force(seed: int) -> None:
    noise = white_noise(seed, sample_rate=48000, seconds=2.0, rms=0.3)
    loud = np.tanh(3 * music_like(seed, sample_rate=48000, seconds=2.0)).astype(np.float32)
    for audio in (noise, loud):
        assert true_peak(audio) == _brute_force_peak(audio)


def test_meter_on_music_fixture() -> None:
    audio, _ = load_fixture(BACH)
    excerpt = np.ascontiguousarray(audio[:, : 20 * 44100])
    assert true_peak(excerpt) == _brute_force_peak(excerpt)
    assert true_peak(excerpt) >= float(np.abs(excerpt).max())


def test_meter_streaming_equals_whole() -> None:
    audio = music_like(8, sample_rate=44100, seconds=4.0)
    whole = true_peak(audio)
    meter = TruePeakMeter(channels=2)
    rng = np.random.default_rng(8)
    start = 0
    while start < audio.shape[1]:
        size = int(rng.choice([1, 3, 1023, 1025, int(rng.integers(1, 70000))]))
        meter.push(audio[:, start : start + size])
        start += size
    assert meter.peak == whole
    meter.reset()
    assert meter.peak == 0.0
    assert meter.peak_dbtp == float("-inf")


def test_end_of_signal_is_included() -> None:
    # The crest between the last two samples is only reached by flushing the interpolator.
    audio = np.zeros((1, 100), dtype=np.float32)
    audio[0, -2:] = [0.9, 0.9]
    assert true_peak(audio) > 0.9 * 1.05
    assert true_peak(audio) == _brute_force_peak(audio)


def test_silence_and_empty() -> None:
    quiet = silence(sample_rate=44100, seconds=1.0)
    assert true_peak(quiet) == 0.0
    assert true_peak_dbtp(quiet) == float("-inf")
    assert sample_peak_dbfs(quiet) == float("-inf")
    empty = np.zeros((2, 0), dtype=np.float32)
    assert true_peak(empty) == 0.0
    assert sample_peak_dbfs(empty) == float("-inf")


def test_rejects_bad_input() -> None:
    with pytest.raises(ParameterError):
        TruePeakMeter(channels=3)
    with pytest.raises(ParameterError):
        TruePeakDetector(channels=0)
    with pytest.raises(ParameterError, match="channel"):
        TruePeakMeter(channels=2).push(np.zeros((1, 10), dtype=np.float32))
    with pytest.raises(ParameterError, match="float32"):
        true_peak(np.zeros((2, 10), dtype=np.float64))


def test_two_threads_give_the_sequential_results() -> None:
    signals = [music_like(s, sample_rate=44100, seconds=3.0) for s in (21, 22)]
    sequential = [(_brute_force_peak(a), true_peak(a)) for a in signals]

    def measure(audio: npt.NDArray[np.float32]) -> tuple[float, float]:
        return _brute_force_peak(audio), true_peak(audio)

    # two threads started together, each measuring three times (more chances to interleave)
    parallel = map_concurrent(lambda audio: [measure(audio) for _ in range(3)][-1], signals)
    assert dict(enumerate(parallel)) == dict(enumerate(sequential))
    assert sequential[0] != sequential[1]


@pytest.mark.parametrize("floor", [0.05, 0.3, 0.9])
def test_detector_floor_is_exact_above_and_under_below(floor: float) -> None:
    """With a floor, values above it are exact; the rest stay at or under it (a limiter's view)."""
    rng = np.random.default_rng(11)
    audio = (rng.standard_normal((2, 50_000)) * 0.2).astype(np.float32)
    audio[:, 20_000:20_050] *= 4.0  # a loud burst among quiet music
    exact = TruePeakDetector(channels=2)
    floored = TruePeakDetector(channels=2)
    cuts = [0, 777, 20_010, 33_333, 50_000]
    whole = exact.process(audio)
    parts = np.concatenate(
        [floored.process(audio[:, a:b], floor=floor) for a, b in itertools.pairwise(cuts)]
    )
    above = whole > floor
    np.testing.assert_array_equal(parts[above], whole[above])
    assert np.all(parts[~above] <= floor)
    assert np.all(parts <= whole)
