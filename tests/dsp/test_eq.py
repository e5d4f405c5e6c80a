"""Linear-phase FIR design and the streaming convolver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tonearm.dsp.eq import (
    FirConvolver,
    design_linear_phase_fir,
    fir_taps_for,
    frequency_response_db,
)
from tonearm.errors import ParameterError


def test_taps_scale_with_rate_and_are_odd() -> None:
    assert fir_taps_for(44100) == 4097
    assert fir_taps_for(48000) == 4097
    assert fir_taps_for(96000) == 8193
    assert fir_taps_for(8000) % 2 == 1
    assert fir_taps_for(192000) > fir_taps_for(96000)


def test_flat_curve_is_transparent() -> None:
    fir = design_linear_phase_fir([100.0, 1000.0], [0.0, 0.0], sample_rate=44100)
    freqs = np.geomspace(20.0, 20000.0, 200)
    response = frequency_response_db(fir, sample_rate=44100, freqs_hz=freqs)
    assert np.max(np.abs(response)) < 0.01


def test_response_follows_a_smooth_curve() -> None:
    freqs = np.array([31.5, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 16000.0])
    gains = np.array([0.0, 2.0, 1.0, -2.0, 1.5, -1.0, -3.0])
    fir = design_linear_phase_fir(freqs, gains, sample_rate=48000)
    probe = np.geomspace(80.0, 16000.0, 60)
    wanted = np.interp(np.log2(probe), np.log2(freqs), gains)
    response = frequency_response_db(fir, sample_rate=48000, freqs_hz=probe)
    assert np.max(np.abs(response - wanted)) < 0.35


def test_filter_is_symmetric() -> None:
    fir = design_linear_phase_fir([200.0, 5000.0], [3.0, -3.0], sample_rate=44100)
    np.testing.assert_allclose(fir, fir[::-1], atol=1e-7)


@pytest.mark.parametrize(
    ("freqs", "gains", "taps"),
    [([1000.0, 100.0], [0.0, 0.0], None), ([0.0, 100.0], [0.0, 0.0], None), ([100.0], [0.0], 4)],
)
def test_bad_designs_are_rejected(freqs: list[float], gains: list[float], taps: int | None) -> None:
    with pytest.raises(ParameterError):
        design_linear_phase_fir(freqs, gains, sample_rate=44100, taps=taps)


def test_convolver_streams_like_a_full_convolution() -> None:
    rng = np.random.default_rng(5)
    audio = rng.standard_normal((2, 30_000)).astype(np.float32)
    filters = np.stack(
        [
            design_linear_phase_fir([100.0, 4000.0], [3.0, -2.0], sample_rate=44100, taps=255),
            design_linear_phase_fir([300.0, 8000.0], [-1.0, 2.0], sample_rate=44100, taps=255),
        ]
    )
    convolver = FirConvolver(filters)
    cuts = [0, 1, 5000, 5003, 17_000, 30_000]
    streamed = np.concatenate(
        [convolver.process(audio[:, a:b]) for a, b in itertools.pairwise(cuts)], axis=1
    )
    for channel in range(2):
        full = np.convolve(audio[channel].astype(np.float64), filters[channel].astype(np.float64))
        np.testing.assert_allclose(streamed[channel], full[:30_000], atol=2e-4)
    assert convolver.latency_frames == 127


def test_identity_rows_pass_through_exactly() -> None:
    identity = np.zeros(65, dtype=np.float32)
    identity[32] = 1.0
    convolver = FirConvolver(np.stack([identity]))
    audio = np.random.default_rng(1).standard_normal((1, 1000)).astype(np.float32)
    out = convolver.process(audio)
    np.testing.assert_array_equal(out[:, 32:], audio[:, :-32])
    np.testing.assert_array_equal(out[:, :32], 0.0)


def test_convolver_rejects_even_filters() -> None:
    with pytest.raises(ParameterError):
        FirConvolver(np.zeros((1, 64), dtype=np.float32))


def test_digital_silence_stays_exactly_silent() -> None:
    fir = design_linear_phase_fir([100.0, 5000.0], [3.0, -3.0], sample_rate=44100, taps=1025)
    convolver = FirConvolver(np.stack([fir]))
    audio = np.zeros((1, 40_000), dtype=np.float32)
    audio[0, 20_000:] = np.random.default_rng(2).standard_normal(20_000).astype(np.float32)
    out = convolver.process(audio)
    lead_in = 20_000 + convolver.latency_frames - (1025 - 1)  # last output untouched by music
    assert not out[0, :lead_in].any()
    assert out[0, lead_in + 1024 :].any()
