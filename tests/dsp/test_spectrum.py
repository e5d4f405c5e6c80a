"""Long-term mid/side spectrum: scaling, the loudness gate, fractional-octave bands, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.music_paths import MUSIC_DIR
from tonearm.dsp.framing import BlockFramer
from tonearm.dsp.spectrum import (
    SpectrumAccumulator,
    band_levels_db,
    default_fft_frames,
    smooth_fractional_octave_db,
    spectral_tilt_db_per_octave,
    spectrum_of,
    third_octave_centers_hz,
)
from tonearm.errors import ParameterError

MUSIC = MUSIC_DIR
SR = 44100


def _sine(freq_hz: float, seconds: float, *, rate: int = SR, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)[np.newaxis]


def _noise(seconds: float, *, channels: int = 1, seed: int = 0, pink: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((channels, int(seconds * SR)))
    if pink:
        spec = np.fft.rfft(white, axis=1)
        freqs = np.fft.rfftfreq(white.shape[1], 1.0 / SR)
        spec /= np.sqrt(np.maximum(freqs, 1.0))
        white = np.fft.irfft(spec, n=white.shape[1], axis=1)
    out: np.ndarray = (0.1 * white / white.std()).astype(np.float32)
    return out


def _bach() -> np.ndarray:
    data, rate = sf.read(MUSIC / "bach_bwv66_6.flac", dtype="float32")
    assert rate == SR
    return np.ascontiguousarray(np.asarray(data, dtype=np.float32).T)


def _band_share(spec_freqs: np.ndarray, power: np.ndarray, center: float) -> float:
    lo, hi = center * 2 ** (-1 / 6), center * 2 ** (1 / 6)
    in_band = (spec_freqs >= lo) & (spec_freqs < hi)
    return float(power[in_band].sum() / power.sum())


@pytest.mark.parametrize("channels", [1, 2])
def test_sine_energy_lands_in_its_third_octave_band_and_sums_to_half(channels: int) -> None:
    audio = np.repeat(_sine(1000.0, 5.0), channels, axis=0)
    spec = spectrum_of(audio, sample_rate=SR)
    assert spec.frames_used > 0
    assert _band_share(spec.freqs_hz, spec.mid_power, 1000.0) >= 0.99
    assert spec.mid_power.sum() == pytest.approx(0.5, rel=0.01)  # documented scaling
    assert not spec.side_power.any()  # dual mono and mono have no side
    centers = third_octave_centers_hz()
    levels = band_levels_db(spec.freqs_hz, spec.mid_power, centers_hz=centers)
    assert centers[int(np.nanargmax(levels))] == pytest.approx(1000.0)


def test_sine_at_other_rates_and_fft_sizes() -> None:
    for rate, expected_fft in ((8000, 2048), (48000, 8192), (96000, 16384), (192000, 32768)):
        assert default_fft_frames(rate) == expected_fft
    spec = spectrum_of(_sine(1000.0, 3.0, rate=96000, amplitude=0.25), sample_rate=96000)
    assert spec.freqs_hz[-1] == pytest.approx(48000.0)
    assert _band_share(spec.freqs_hz, spec.mid_power, 1000.0) >= 0.99
    assert spec.mid_power.sum() == pytest.approx(0.25**2 / 2, rel=0.01)


def test_white_noise_tilts_up_3_db_per_octave_and_pink_is_flat() -> None:
    centers = third_octave_centers_hz()
    tilts = {}
    for pink in (False, True):
        spec = spectrum_of(_noise(20.0, pink=pink, seed=3), sample_rate=SR)
        levels = band_levels_db(spec.freqs_hz, spec.mid_power, centers_hz=centers)
        tilts[pink] = spectral_tilt_db_per_octave(centers, levels)
    assert tilts[False] == pytest.approx(10 * np.log10(2), abs=0.3)
    assert tilts[True] == pytest.approx(0.0, abs=0.3)


def test_silence_around_the_music_does_not_lower_band_levels() -> None:
    music = _bach()[:, : 15 * SR]
    silence = np.zeros((2, 100 * 4096), np.float32)  # whole hops, so the STFT frames line up
    padded = np.concatenate((silence, music, 0.03 * music, 1e-5 * music), axis=1)
    centers = third_octave_centers_hz(f_min_hz=50.0, f_max_hz=16000.0)
    alone = spectrum_of(music, sample_rate=SR)
    mixed = spectrum_of(padded, sample_rate=SR)
    assert mixed.frames_used == pytest.approx(alone.frames_used, abs=2)
    for attr in ("mid_power", "side_power"):
        a = band_levels_db(alone.freqs_hz, getattr(alone, attr), centers_hz=centers)
        b = band_levels_db(mixed.freqs_hz, getattr(mixed, attr), centers_hz=centers)
        np.testing.assert_allclose(b, a, atol=0.1)
    ungated = spectrum_of(padded, sample_rate=SR, gate_lu=-np.inf)  # the quiet copy counts
    c = band_levels_db(ungated.freqs_hz, ungated.mid_power, centers_hz=centers)
    a = band_levels_db(alone.freqs_hz, alone.mid_power, centers_hz=centers)
    assert np.mean(a - c) > 2.0
    assert alone.side_power.sum() > 0.01 * alone.mid_power.sum()  # the fixture is stereo


def test_relative_gate_keeps_only_the_loud_part() -> None:
    loud = _sine(1000.0, 6.0, amplitude=0.5)
    quiet = _sine(100.0, 6.0, amplitude=0.005)  # 40 dB down
    audio = np.concatenate((loud, quiet), axis=1)
    gated = spectrum_of(audio, sample_rate=SR)
    everything = spectrum_of(audio, sample_rate=SR, gate_lu=-np.inf)
    assert _band_share(gated.freqs_hz, gated.mid_power, 100.0) < 1e-5
    assert _band_share(everything.freqs_hz, everything.mid_power, 100.0) > 3e-5
    assert everything.frames_used > 1.8 * gated.frames_used


def test_side_is_zero_for_dual_mono_and_matches_mid_for_independent_channels() -> None:
    mono = _noise(4.0, seed=1)
    assert not spectrum_of(mono, sample_rate=SR).side_power.any()
    assert not spectrum_of(np.repeat(mono, 2, axis=0), sample_rate=SR).side_power.any()
    wide = spectrum_of(_noise(4.0, channels=2, seed=2), sample_rate=SR)
    assert wide.side_power.sum() == pytest.approx(wide.mid_power.sum(), rel=0.05)
    anti = np.concatenate((mono, -mono), axis=0)
    flipped = spectrum_of(anti, sample_rate=SR)
    assert not flipped.mid_power.any()
    assert flipped.side_power.sum() == pytest.approx(
        float(np.mean(mono.astype(np.float64) ** 2)), rel=0.02
    )


def test_silence_and_short_audio_give_zero_spectra() -> None:
    for audio in (np.zeros((2, 5 * SR), np.float32), _noise(0.1, channels=2)):
        spec = spectrum_of(audio, sample_rate=SR)
        assert spec.frames_used == 0
        assert not spec.mid_power.any()
        assert not spec.side_power.any()
        assert spec.freqs_hz.shape == spec.mid_power.shape == (8192 // 2 + 1,)


def test_block_split_invariance_and_reset() -> None:
    rng = np.random.default_rng(7)
    audio = np.ascontiguousarray(_bach()[:, 5 * SR : 9 * SR])
    whole = spectrum_of(audio, sample_rate=SR)
    acc = SpectrumAccumulator(sample_rate=SR, channels=2)
    acc.push(_noise(1.0, channels=2))  # forgotten by reset
    acc.reset()
    pos = 0
    while pos < audio.shape[1]:
        size = int(rng.choice([1, 7, 333, 4096, 8191, 50_000]))
        acc.push(audio[:, pos : pos + size])
        pos += size
    split = acc.result()
    assert split.frames_used == whole.frames_used
    np.testing.assert_allclose(split.mid_power, whole.mid_power, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(split.side_power, whole.side_power, rtol=1e-5, atol=1e-12)


def test_block_framer_matches_direct_framing() -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2, 5000)).astype(np.float32)
    framer = BlockFramer(channels=2, frame_length=256, hop=96)
    got = []
    pos = 0
    while pos < data.shape[1]:
        size = int(rng.integers(1, 700))
        for span in framer.push(data[:, pos : pos + size]):
            got.append(framer.frames(span).copy())
        pos += size
    frames = np.concatenate(got, axis=1)
    n = (data.shape[1] - 256) // 96 + 1
    expected = np.stack([data[:, i * 96 : i * 96 + 256] for i in range(n)], axis=1)
    np.testing.assert_array_equal(frames, expected)


def test_result_arrays_are_read_only() -> None:
    spec = spectrum_of(_sine(440.0, 1.0), sample_rate=SR)
    with pytest.raises(ValueError, match="read-only"):
        spec.mid_power[0] = 1.0


def test_third_octave_centres_are_exact_base_two() -> None:
    centers = third_octave_centers_hz()
    assert centers.size == 31  # the IEC 61260 bands with nominal centres 20 Hz .. 20 kHz
    assert centers[0] == pytest.approx(1000 * 2 ** (-17 / 3))
    assert centers[-1] == pytest.approx(1000 * 2 ** (13 / 3))
    np.testing.assert_allclose(centers[1:] / centers[:-1], 2 ** (1 / 3))
    assert 1000.0 in centers
    small = third_octave_centers_hz(f_min_hz=50.0, f_max_hz=16000.0)
    assert small[0] == pytest.approx(1000 * 2 ** (-13 / 3))  # nominal 50 Hz
    assert small[-1] == pytest.approx(1000 * 2**4)  # nominal 16 kHz


def test_band_levels_match_a_direct_sum_floor_and_nyquist() -> None:
    rng = np.random.default_rng(0)
    freqs = np.arange(1025) * (SR / 2048)
    power = rng.random(1025)
    power[(freqs > 200) & (freqs < 400)] = 0.0
    centers = third_octave_centers_hz(f_min_hz=20.0, f_max_hz=40000.0)
    got = band_levels_db(freqs, power, centers_hz=centers)
    for fc, level in zip(centers, got, strict=True):
        lo, hi = fc * 2 ** (-1 / 6), fc * 2 ** (1 / 6)
        total = power[(freqs >= lo) & (freqs < hi)].sum()
        if fc > SR / 2:
            assert np.isnan(level)
        elif total == 0:
            assert level == -200.0
        else:
            assert level == pytest.approx(10 * np.log10(total))
    assert np.isnan(got).sum() == np.count_nonzero(centers > SR / 2) > 0
    octave = band_levels_db(freqs, np.stack([power, 2 * power]), centers_hz=[1000.0], fraction=1)
    assert octave.shape == (2, 1)
    assert octave[1, 0] - octave[0, 0] == pytest.approx(10 * np.log10(2))


def test_smoothing_matches_a_direct_average() -> None:
    rng = np.random.default_rng(1)
    freqs = np.arange(513) * (SR / 1024)
    values = rng.normal(size=513)
    got = smooth_fractional_octave_db(freqs, values, fraction=3.0)
    assert got[0] == values[0]
    for k in (1, 5, 40, 300, 512):
        near = (freqs >= freqs[k] * 2 ** (-1 / 6)) & (freqs <= freqs[k] * 2 ** (1 / 6))
        assert got[k] == pytest.approx(values[near].mean())
    flat = smooth_fractional_octave_db(freqs, np.full(513, -12.0), fraction=6.0)
    np.testing.assert_allclose(flat, -12.0)


def test_tilt_recovers_a_straight_line_and_ignores_bad_bands() -> None:
    centers = third_octave_centers_hz()
    levels = -20.0 - 4.5 * np.log2(centers / 1000.0)
    levels[3] = np.nan
    levels[20] = -200.0
    assert spectral_tilt_db_per_octave(centers, levels) == pytest.approx(-4.5)
    assert spectral_tilt_db_per_octave(centers[:1], levels[:1]) == 0.0


def test_parameter_errors() -> None:
    with pytest.raises(ParameterError, match="channels"):
        SpectrumAccumulator(sample_rate=SR, channels=3)
    with pytest.raises(ParameterError, match="fft_frames"):
        SpectrumAccumulator(sample_rate=SR, channels=1, fft_frames=1001)
    with pytest.raises(ParameterError, match="sample rate"):
        SpectrumAccumulator(sample_rate=4000, channels=1)
    acc = SpectrumAccumulator(sample_rate=SR, channels=2)
    with pytest.raises(ParameterError, match="expected 2 channels"):
        acc.push(np.zeros((1, 100), np.float32))
    with pytest.raises(ParameterError, match="float32"):
        acc.push(np.zeros((2, 100)))  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="gate_lu"):
        acc.result(gate_lu=3.0)


def test_frames_without_overlap_use_half_the_frames_and_agree_on_long_audio() -> None:
    audio = np.ascontiguousarray(_bach()[:, : 40 * SR])
    overlapped = SpectrumAccumulator(sample_rate=SR, channels=2)
    adjacent = SpectrumAccumulator(sample_rate=SR, channels=2, overlap=False)
    for start in range(0, audio.shape[1], 65536):
        overlapped.push(audio[:, start : start + 65536])
        adjacent.push(audio[:, start : start + 65536])
    dense, sparse = overlapped.result(), adjacent.result()
    n_fft = default_fft_frames(SR)
    assert sparse.frames_used <= audio.shape[1] // n_fft
    assert abs(2 * sparse.frames_used - dense.frames_used) <= 0.1 * dense.frames_used
    # the same long-term balance, band by band (third octaves, where the music has energy)
    centres = third_octave_centers_hz(f_min_hz=63.0, f_max_hz=8000.0)
    dense_db = band_levels_db(dense.freqs_hz, dense.mid_power, centers_hz=centres)
    sparse_db = band_levels_db(sparse.freqs_hz, sparse.mid_power, centers_hz=centres)
    assert np.max(np.abs(dense_db - sparse_db)) < 1.0
    assert abs(np.mean(dense_db - sparse_db)) < 0.2
