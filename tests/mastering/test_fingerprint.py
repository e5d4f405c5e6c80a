"""The 25-value fingerprint: layout, each feature's direction on known signals, streaming."""

from __future__ import annotations

import dataclasses
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from tests.music_paths import MUSIC_DIR
from tonearm.errors import ParameterError
from tonearm.mastering.fingerprint import (
    FINGERPRINT_FIELDS,
    FINGERPRINT_VERSION,
    Fingerprint,
    FingerprintAccumulator,
    fingerprint_of,
)

MUSIC = MUSIC_DIR
SR = 44100


def _fp(audio: np.ndarray, rate: int = SR, lufs: float = -20.0) -> Fingerprint:
    return fingerprint_of(audio, sample_rate=rate, integrated_lufs=lufs)


def _click_track(bpm: float, *, seconds: float = 30.0, rate: int = SR, seed: int = 0) -> np.ndarray:
    """Decaying 5 ms noise bursts every beat, dual mono."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), np.float32)
    n = int(0.005 * rate)
    burst = 0.8 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.001 * rate))
    for start in np.arange(0.0, seconds - 0.05, 60.0 / bpm):
        i = round(start * rate)
        out[i : i + n] += burst.astype(np.float32)
    return np.stack([out, out])


def _sine(freq_hz: float = 440.0, seconds: float = 10.0, *, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)[np.newaxis]


def _noise(seconds: float = 10.0, *, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, int(seconds * SR)))).astype(np.float32)


def _fixture(name: str) -> np.ndarray:
    data, rate = sf.read(MUSIC / name, dtype="float32")
    assert rate == SR
    return np.ascontiguousarray(data.T)


def test_layout_25_named_fields_and_round_trip() -> None:
    assert len(FINGERPRINT_FIELDS) == 25 == len(set(FINGERPRINT_FIELDS))
    names = [f.name for f in dataclasses.fields(Fingerprint)]
    assert names == [*FINGERPRINT_FIELDS, "version"]
    assert FINGERPRINT_FIELDS[:7] == (
        "sub_bass_energy",
        "bass_energy",
        "low_mid_energy",
        "mid_energy",
        "upper_mid_energy",
        "presence_energy",
        "air_energy",
    )
    assert FINGERPRINT_FIELDS[-2:] == ("stereo_width", "phase_correlation")
    fp = _fp(_noise(3.0))
    vec = fp.as_vector()
    assert vec.shape == (25,)
    assert vec.dtype == np.float32
    assert list(fp.to_dict()) == list(FINGERPRINT_FIELDS)
    back = Fingerprint.from_vector(vec)
    assert back.version == FINGERPRINT_VERSION == 1
    np.testing.assert_array_equal(back.as_vector(), vec)
    with pytest.raises(ParameterError, match="25"):
        Fingerprint.from_vector(vec[:24])
    with pytest.raises(ParameterError, match="finite"):
        Fingerprint.from_vector(np.full(25, np.nan))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fp.tempo_bpm = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros((2, 5 * SR), np.float32),
        np.zeros((1, 0), np.float32),
        np.zeros((2, 100), np.float32),
        _sine(seconds=0.5),
        _noise(2.0),
    ],
    ids=["silence", "empty", "tiny", "short-sine", "noise"],
)
def test_values_are_finite_and_deterministic(audio: np.ndarray) -> None:
    first = _fp(audio, lufs=float("-inf")).as_vector()
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(_fp(audio, lufs=float("-inf")).as_vector(), first)
    assert _fp(audio, lufs=float("-inf")).loudness_lufs == -70.0
    assert _fp(audio, lufs=float("nan")).loudness_lufs == -70.0


def test_silence_gives_the_documented_floors() -> None:
    fp = _fp(np.zeros((2, 5 * SR), np.float32), lufs=float("-inf"))
    assert fp.silence_ratio == 1.0
    assert fp.tempo_bpm == fp.rhythm_stability == fp.transient_density == 0.0
    assert fp.stereo_width == 0.0
    assert fp.phase_correlation == 1.0
    assert fp.spectral_centroid_hz == fp.crest_db == 0.0
    bands = fp.as_vector()[:7]
    assert not bands.any()


@pytest.mark.parametrize("bpm", [90.0, 120.0, 140.0])
def test_click_track_tempo_rhythm_and_transients(bpm: float) -> None:
    fp = _fp(_click_track(bpm))
    assert fp.tempo_bpm == pytest.approx(bpm, abs=2.0)
    assert fp.rhythm_stability > 0.8
    assert fp.transient_density == pytest.approx(bpm / 60.0, rel=0.1)
    assert fp.harmonic_ratio < 0.2  # clicks do not persist


@pytest.mark.parametrize("rate", [8000, 96000])
def test_tempo_at_other_sample_rates(rate: int) -> None:
    fp = _fp(_click_track(120.0, seconds=20.0, rate=rate), rate=rate)
    assert fp.tempo_bpm == pytest.approx(120.0, abs=2.0)
    assert np.isfinite(fp.as_vector()).all()


def test_sine_is_tonal_and_noise_is_not() -> None:
    sine = _fp(_sine(440.0))
    noise = _fp(_noise(10.0, channels=1))
    assert sine.harmonic_ratio > 0.95
    assert noise.harmonic_ratio < 0.5
    assert sine.pitch_stability > 0.95
    assert noise.pitch_stability < 0.5
    assert sine.chroma_energy > 0.8
    assert noise.chroma_energy < 0.1
    assert sine.spectral_flatness < 0.01
    assert noise.spectral_flatness > 0.3
    assert sine.tempo_bpm == 0.0
    assert noise.tempo_bpm == 0.0
    assert sine.transient_density == 0.0
    assert sine.crest_db == pytest.approx(3.01, abs=0.05)
    assert sine.mid_energy == pytest.approx(0.0, abs=1e-3)  # 440 Hz is in 250-500 Hz
    assert sine.low_mid_energy == pytest.approx(1.0, abs=1e-3)
    assert sine.spectral_centroid_hz == pytest.approx(440.0, rel=0.02)


def test_low_passed_noise_is_darker_than_high_passed_noise() -> None:
    noise = _noise(10.0, channels=1).astype(np.float64)
    low = scipy.signal.sosfilt(scipy.signal.butter(6, 500, "low", fs=SR, output="sos"), noise)
    high = scipy.signal.sosfilt(scipy.signal.butter(6, 4000, "high", fs=SR, output="sos"), noise)
    dark = _fp(low.astype(np.float32))
    bright = _fp(high.astype(np.float32))
    assert dark.spectral_centroid_hz < 1000.0 < 4000.0 < bright.spectral_centroid_hz
    assert dark.spectral_rolloff_hz < bright.spectral_rolloff_hz
    assert dark.bass_energy + dark.low_mid_energy > 0.8
    assert bright.presence_energy + bright.air_energy > 0.8
    assert dark.bass_mid_ratio > 5.0 > -5.0 > bright.bass_mid_ratio
    for fp in (dark, bright):
        assert sum(fp.as_vector()[:7]) == pytest.approx(1.0, abs=1e-5)


def test_half_silent_audio_has_silence_ratio_one_half() -> None:
    audio = _noise(20.0)
    audio[:, 10 * SR :] = 0.0
    fp = _fp(audio)
    assert fp.silence_ratio == pytest.approx(0.5, abs=0.01)
    assert fp.spectral_flatness > 0.3  # silent frames take no part in the spectral features


def test_stereo_width_and_correlation() -> None:
    mono = _noise(5.0, channels=1)
    for audio in (mono, np.repeat(mono, 2, axis=0)):
        fp = _fp(audio)
        assert fp.stereo_width == 0.0
        assert fp.phase_correlation == pytest.approx(1.0)
    anti = _fp(np.concatenate((mono, -mono)))
    assert anti.stereo_width == pytest.approx(1.0)
    assert anti.phase_correlation == pytest.approx(-1.0)
    wide = _fp(_noise(5.0, seed=4))
    assert wide.stereo_width == pytest.approx(0.5, abs=0.02)
    assert wide.phase_correlation == pytest.approx(0.0, abs=0.02)
    one_sided = _fp(np.concatenate((mono, np.zeros_like(mono))))
    assert one_sided.phase_correlation == 0.0


def test_level_variation_features_follow_the_envelope() -> None:
    steady = _noise(20.0)
    swelling = (
        steady
        * np.repeat(np.array([1.0, 0.1], np.float32), 5 * SR)[np.newaxis].repeat(2, 1)[
            :, : steady.shape[1]
        ]
    )
    fp_steady, fp_swell = _fp(steady), _fp(swelling)
    assert fp_steady.loudness_variation < 0.5 < 5.0 < fp_swell.loudness_variation
    assert fp_steady.peak_consistency > 0.8 > 0.5 > fp_swell.peak_consistency
    assert fp_steady.dynamic_range_variation < 1.0


def test_block_split_invariance_and_reset() -> None:
    rng = np.random.default_rng(11)
    audio = np.ascontiguousarray(_fixture("bach_bwv66_6.flac")[:, : 12 * SR])
    whole = _fp(audio).as_vector()
    acc = FingerprintAccumulator(sample_rate=SR, channels=2)
    acc.push(_noise(2.0))  # forgotten by reset
    acc.reset()
    pos = 0
    while pos < audio.shape[1]:
        size = int(rng.choice([1, 5, 511, 1024, 2047, 30_000, 200_000]))
        acc.push(audio[:, pos : pos + size])
        pos += size
    split = acc.result(integrated_lufs=-20.0).as_vector()
    np.testing.assert_allclose(split, whole, rtol=1e-4, atol=1e-6)


def test_fixtures_differ_and_have_plausible_tempos() -> None:
    bach = _fp(_fixture("bach_bwv66_6.flac"), lufs=-18.0)
    joplin = _fp(_fixture("joplin_maple_leaf_rag.flac"), lufs=-18.0)
    # The chorale is written at 72 bpm (we find about 71.7); the rag's MIDI runs at 120 bpm.
    assert 68.0 <= bach.tempo_bpm <= 76.0 or 136.0 <= bach.tempo_bpm <= 152.0
    assert 114.0 <= joplin.tempo_bpm <= 126.0 or 57.0 <= joplin.tempo_bpm <= 63.0
    assert joplin.transient_density > 3.0 * bach.transient_density  # running 16ths vs chorale
    assert 0.0 < bach.stereo_width < 1.0
    assert 0.0 < joplin.stereo_width < 1.0
    assert bach.harmonic_ratio > 0.3
    assert joplin.harmonic_ratio > 0.3
    distance = np.abs(bach.as_vector() - joplin.as_vector())
    assert np.count_nonzero(distance > 0.01) >= 15


def test_threads_give_the_sequential_results() -> None:
    signals = [
        _click_track(120.0, seconds=10.0),
        _noise(10.0, seed=5),
        _sine(330.0),
        _noise(8.0, seed=6),
    ]
    sequential = [_fp(s).as_vector() for s in signals]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            parallel = list(pool.map(lambda s: _fp(s).as_vector(), signals))
            for got, want in zip(parallel, sequential, strict=True):
                np.testing.assert_array_equal(got, want)


def test_memory_stays_flat_with_length() -> None:
    block = _noise(1.0)
    acc = FingerprintAccumulator(sample_rate=SR, channels=2)
    for _ in range(10):
        acc.push(block)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(120):
            acc.push(block)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 200_000  # 2 minutes of audio: a few float32 series only (~60 kB)
    assert np.isfinite(acc.result(integrated_lufs=-20.0).as_vector()).all()


def test_parameter_errors() -> None:
    with pytest.raises(ParameterError, match="channels"):
        FingerprintAccumulator(sample_rate=SR, channels=0)
    with pytest.raises(ParameterError, match="sample rate"):
        FingerprintAccumulator(sample_rate=300_000, channels=2)
    acc = FingerprintAccumulator(sample_rate=SR, channels=1)
    with pytest.raises(ParameterError, match="expected 1 channels"):
        acc.push(np.zeros((2, 10), np.float32))
