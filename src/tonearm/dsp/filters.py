"""Filter design: the ITU-R BS.1770-4 K-weighting filter at any sample rate.

BS.1770-4 (Annex 1, Tables 1 and 2) publishes the two K-weighting biquads only for 48 kHz:

- stage 1, the "pre-filter": a second-order high shelf (+4 dB above about 1.5 kHz) that models
  the acoustic effect of the head;
- stage 2, the "RLB" (revised low-frequency B-curve) weighting: a second-order high-pass at
  about 38 Hz.

To use the same weighting at any other rate we recover each stage's analog prototype from the
published 48 kHz coefficients and re-discretise it with the bilinear transform, prewarped at the
prototype's natural (pole) frequency ``f0``:

1. With ``K = tan(pi * f0 / fs)`` the prewarped bilinear transform maps a normalised analog
   biquad ``H(p) = (n0 p^2 + n1 p + n2) / (p^2 + p / Q + 1)`` (``p = s / (2 pi f0)``) to
   ``b = [n0 + n1 K + n2 K^2, 2 (n2 K^2 - n0), n0 - n1 K + n2 K^2] / a0`` and
   ``a = [1, 2 (K^2 - 1) / a0, (1 - K / Q + K^2) / a0]`` with ``a0 = 1 + K / Q + K^2``.
2. Inverting these relations on the 48 kHz denominator gives ``K`` (hence ``f0``) and ``Q``
   (``K^2 = (1 + a1 + a2) / (1 - a1 + a2)``, ``Q = K (1 - a1 + a2) / (2 (1 - a2))``), and then the
   numerator ``n0, n1, n2`` -- the analog prototype, exactly.
3. Step 1 at the target rate gives the coefficients. At 48 kHz this is an exact round trip, so
   the published coefficients come back to rounding error (about 1e-15); at other rates the
   magnitude response matches the 48 kHz filter within 0.002 dB at 44.1 kHz, 0.006 dB at 96 and
   192 kHz, 0.03 dB at 22.05 kHz, 0.15 dB at 11.025 kHz and 0.29 dB at 8 kHz up to 0.45 fs (the
   bilinear transform's frequency warping bends the shelf when it nears the target's Nyquist).

The stage-2 numerator in the standard is ``[1, -2, 1]`` unnormalised, so its high-frequency gain
is slightly above unity (about +0.04 dB at 48 kHz); the prototype keeps that gain at every rate,
which keeps the K-weighted level of a 1 kHz tone -- and so the standard's -0.691 dB offset --
independent of the sample rate.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from tonearm.errors import ParameterError
from tonearm.types import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "BS1770_STAGE1_48K",
    "BS1770_STAGE2_48K",
    "k_weighting_sos",
]

BS1770_STAGE1_48K: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (1.53512485958697, -2.69169618940638, 1.19839281085285),
    (1.0, -1.69065929318241, 0.73248077421585),
)
"""BS.1770-4 Table 1: stage-1 pre-filter ``(b, a)`` at 48 kHz."""

BS1770_STAGE2_48K: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (1.0, -2.0, 1.0),
    (1.0, -1.99004745483398, 0.99007225036621),
)
"""BS.1770-4 Table 2: stage-2 RLB high-pass ``(b, a)`` at 48 kHz."""

_REFERENCE_RATE = 48_000


@functools.lru_cache(maxsize=8)
def _analog_prototype(stage: int) -> tuple[float, float, tuple[float, float, float]]:
    """Return ``(f0_hz, q, (n0, n1, n2))`` of one K-weighting stage (steps 1-2 above)."""
    b, a = BS1770_STAGE1_48K if stage == 1 else BS1770_STAGE2_48K
    _, a1, a2 = a
    # Denominator: sum and alternating sum of the digital coefficients isolate K^2 and 1.
    k = math.sqrt((1.0 + a1 + a2) / (1.0 - a1 + a2))
    a0 = 4.0 / (1.0 - a1 + a2)  # 1 + K/Q + K^2, from (1 - a1 + a2) = 4 / a0
    q = k * (1.0 - a1 + a2) / (2.0 * (1.0 - a2))
    f0 = _REFERENCE_RATE / math.pi * math.atan(k)
    b0, b1, b2 = b
    n0 = (b0 - b1 + b2) * a0 / 4.0
    n1 = (b0 - b2) * a0 / (2.0 * k)
    n2 = (b0 + b1 + b2) * a0 / (4.0 * k * k)
    return f0, q, (n0, n1, n2)


def _bilinear_biquad(
    f0_hz: float, q: float, numerator: tuple[float, float, float], sample_rate: int
) -> list[float]:
    """Prewarped bilinear transform of a normalised analog biquad: one SOS row (step 1)."""
    k = math.tan(math.pi * f0_hz / sample_rate)
    n0, n1, n2 = numerator
    a0 = 1.0 + k / q + k * k
    return [
        (n0 + n1 * k + n2 * k * k) / a0,
        2.0 * (n2 * k * k - n0) / a0,
        (n0 - n1 * k + n2 * k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / q + k * k) / a0,
    ]


@functools.lru_cache(maxsize=32, typed=True)
def k_weighting_sos(sample_rate: int) -> NDArray[np.float64]:
    """K-weighting filter of ITU-R BS.1770-4 (Annex 1) for ``sample_rate`` Hz.

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz, 8000..192000.

    Returns
    -------
    ndarray, shape (2, 6), float64, read-only
        Second-order sections ``[b0, b1, b2, 1, a1, a2]``: row 0 is the stage-1 high shelf
        (Table 1), row 1 the stage-2 RLB high-pass (Table 2). Cached and shared, hence
        read-only; ``scipy.signal.sosfilt`` needs a writable array, so pass it a copy (e.g.
        ``sos.astype(np.float32)`` or ``np.array(sos)``).

    Raises
    ------
    ParameterError
        If the sample rate is out of range.
    """
    if not isinstance(sample_rate, int) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ParameterError(
            f"sample rate {sample_rate!r} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    rows = []
    for stage in (1, 2):
        f0, q, numerator = _analog_prototype(stage)
        rows.append(_bilinear_biquad(f0, q, numerator, sample_rate))
    sos = np.array(rows, dtype=np.float64)
    sos.setflags(write=False)
    return sos
