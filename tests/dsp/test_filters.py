"""K-weighting design: the BS.1770-4 tables at 48 kHz and the same response at other rates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from tonearm.dsp.filters import k_weighting_sos
from tonearm.errors import ParameterError

# ITU-R BS.1770-4, Table 1 (stage 1, pre-filter) and Table 2 (stage 2, RLB), 48 kHz.
TABLE_1 = [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241,
           0.73248077421585]  # fmt: skip
TABLE_2 = [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]

RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000]


def _response_db(sample_rate: int, frequencies: np.ndarray) -> np.ndarray:
    sos = np.array(k_weighting_sos(sample_rate))
    _, h = scipy.signal.sosfreqz(sos, worN=frequencies, fs=sample_rate)
    return np.asarray(20.0 * np.log10(np.abs(h)))


def test_48k_reproduces_the_standard_tables() -> None:
    sos = k_weighting_sos(48000)
    assert sos.shape == (2, 6)
    assert sos.dtype == np.float64
    np.testing.assert_allclose(sos[0], TABLE_1, rtol=0.0, atol=1e-6)
    np.testing.assert_allclose(sos[1], TABLE_2, rtol=0.0, atol=1e-6)
    # The round trip through the analog prototype is exact to rounding, far below 1e-6.
    np.testing.assert_allclose(sos, [TABLE_1, TABLE_2], rtol=0.0, atol=1e-12)


def test_cached_and_read_only() -> None:
    first = k_weighting_sos(44100)
    assert k_weighting_sos(44100) is first
    assert not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 0.0


@pytest.mark.parametrize("sample_rate", RATES)
def test_stable_and_normalised(sample_rate: int) -> None:
    sos = k_weighting_sos(sample_rate)
    assert np.all(sos[:, 3] == 1.0)
    for section in sos:
        poles = np.roots(section[3:])
        assert np.all(np.abs(poles) < 1.0)


def test_response_shape_at_48k() -> None:
    # Shelf about +4 dB at high frequencies, +0.69 dB at 1 kHz (which the -0.691 of BS.1770
    # eq. 2 cancels), high-pass below about 38 Hz.
    gains = _response_db(48000, np.array([10.0, 38.0, 1000.0, 10000.0, 20000.0]))
    assert gains[0] < -20.0
    assert gains[1] == pytest.approx(-6.0, abs=0.1)
    assert gains[2] == pytest.approx(0.691, abs=0.01)
    assert gains[3] == pytest.approx(4.04, abs=0.02)
    assert gains[4] == pytest.approx(4.04, abs=0.02)


@pytest.mark.parametrize(
    ("sample_rate", "tolerance_db"),
    [(8000, 0.3), (11025, 0.16), (16000, 0.07), (22050, 0.035), (32000, 0.012),
     (44100, 0.003), (88200, 0.008), (96000, 0.008), (176400, 0.008), (192000, 0.008)],
)  # fmt: skip
def test_other_rates_match_the_48k_response(sample_rate: int, tolerance_db: float) -> None:
    top = min(20000.0, 0.45 * sample_rate)
    frequencies = np.geomspace(10.0, top, 300)
    difference = _response_db(sample_rate, frequencies) - _response_db(48000, frequencies)
    assert np.abs(difference).max() < tolerance_db


@pytest.mark.parametrize("sample_rate", [7999, 192001, 0, -48000])
def test_rejects_rates_out_of_range(sample_rate: int) -> None:
    with pytest.raises(ParameterError, match="sample rate"):
        k_weighting_sos(sample_rate)


def test_rejects_non_integer_rate() -> None:
    with pytest.raises(ParameterError, match="sample rate"):
        k_weighting_sos(44100.0)
