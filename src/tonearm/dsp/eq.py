"""Linear-phase FIR equalisation: design from a dB curve, and a streaming FFT convolver.

A tonal correction is a smooth curve of gains in dB at a few frequencies. It is turned into a
symmetric (hence linear-phase, no phase smear between bands) FIR by frequency sampling: the
curve is interpolated on a log-frequency axis onto a dense FFT grid, made zero-phase, brought
back to the time domain, centred and windowed. The convolver applies one such filter per channel
with overlap-save block convolution, so any length streams through in flat memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.signal

from tonearm.dsp.envelope import running_max
from tonearm.errors import ParameterError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tonearm.types import AudioArray

__all__ = ["FirConvolver", "design_linear_phase_fir", "fir_taps_for", "frequency_response_db"]

FloatArray = npt.NDArray[np.float64]

_FIR_DURATION_S = 0.093  # ~10.7 Hz resolution: enough for curves smoothed to 1/3 octave or wider
_MIN_PIECE_FRAMES = 65536  # shortest piece FirConvolver filters in one FFT


def fir_taps_for(sample_rate: int, *, duration_s: float = _FIR_DURATION_S) -> int:
    """Odd FIR length covering about ``duration_s`` (4097 taps at 44.1 kHz for 93 ms).

    Frequency resolution is about ``6 / duration_s`` Hz (the Blackman window's main lobe):
    93 ms follows smooth curves down to ~100 Hz, 0.37 s resolves 1/3-octave detail at 50 Hz.
    """
    taps = int(2 ** np.round(np.log2(duration_s * sample_rate)))
    return taps + 1


def design_linear_phase_fir(
    freqs_hz: Sequence[float] | FloatArray,
    gains_db: Sequence[float] | FloatArray,
    *,
    sample_rate: int,
    taps: int | None = None,
) -> npt.NDArray[np.float32]:
    """Design a linear-phase FIR whose magnitude follows a dB curve.

    Parameters
    ----------
    freqs_hz : array_like, shape (k,)
        Strictly increasing frequencies of the curve, > 0 Hz.
    gains_db : array_like, shape (k,)
        Gain at each frequency. Interpolated linearly against log2(frequency) in between, held
        constant below the first and above the last point.
    sample_rate : int
        Hz.
    taps : int, optional
        Odd filter length; default :func:`fir_taps_for`.

    Returns
    -------
    ndarray, shape (taps,), float32
        Symmetric impulse response with group delay ``(taps - 1) / 2`` frames.
    """
    freqs = np.asarray(freqs_hz, dtype=np.float64)
    gains = np.asarray(gains_db, dtype=np.float64)
    if freqs.ndim != 1 or freqs.shape != gains.shape or freqs.shape[0] < 1:
        raise ParameterError("freqs_hz and gains_db must be 1-D arrays of the same length")
    if np.any(freqs <= 0) or np.any(np.diff(freqs) <= 0):
        raise ParameterError("freqs_hz must be positive and strictly increasing")
    length = fir_taps_for(sample_rate) if taps is None else taps
    if length < 3 or length % 2 == 0:
        raise ParameterError(f"taps must be odd and >= 3, got {length}")
    grid_size = 4 * (length - 1)
    grid_hz = np.fft.rfftfreq(grid_size, d=1.0 / sample_rate)
    grid_db = np.interp(np.log2(np.maximum(grid_hz, grid_hz[1])), np.log2(freqs), gains)
    zero_phase = np.fft.irfft(10.0 ** (grid_db / 20.0), n=grid_size)
    half = (length - 1) // 2
    centred = np.concatenate((zero_phase[-half:], zero_phase[: half + 1]))
    impulse = centred * scipy.signal.windows.blackman(length, sym=True)
    result: npt.NDArray[np.float32] = impulse.astype(np.float32)
    return result


def frequency_response_db(
    impulse: npt.NDArray[np.float32], *, sample_rate: int, freqs_hz: FloatArray
) -> FloatArray:
    """Magnitude response of an FIR in dB at the given frequencies."""
    _, response = scipy.signal.freqz(impulse.astype(np.float64), worN=freqs_hz, fs=sample_rate)
    return np.asarray(20.0 * np.log10(np.maximum(np.abs(response), 1e-12)), dtype=np.float64)


class FirConvolver:
    """Streaming overlap-save convolution, one FIR per channel.

    Parameters
    ----------
    filters : ndarray, shape (channels, taps), float32
        Odd-length linear-phase filters; channel ``c`` of each block is convolved with
        ``filters[c]``. A row that is a unit impulse passes its channel through untouched.

    Notes
    -----
    ``process`` returns as many frames as it is given, ``latency_frames = (taps - 1) // 2``
    late (the filters' group delay), so the output lines up with the input once the caller
    drops the first ``latency_frames``. The filter spectrum is cached per FFT size.
    """

    def __init__(self, filters: npt.NDArray[np.float32]) -> None:
        if filters.ndim != 2 or filters.shape[1] % 2 == 0:
            raise ParameterError(
                f"filters must have shape (channels, odd taps), got {filters.shape}"
            )
        self._filters = filters.astype(np.float32)
        self._taps = filters.shape[1]
        self.latency_frames = (self._taps - 1) // 2
        identity = np.zeros(self._taps, dtype=np.float32)
        identity[self.latency_frames] = 1.0
        self._passthrough = [bool(np.array_equal(row, identity)) for row in self._filters]
        self._spectra: dict[int, npt.NDArray[np.complex64]] = {}
        self.reset()

    def reset(self) -> None:
        """Start a new stream (silence before it)."""
        self._history = np.zeros((self._filters.shape[0], self._taps - 1), dtype=np.float32)

    def process(self, block: AudioArray) -> AudioArray:
        """Filter one block; returns the same number of frames, ``latency_frames`` late.

        Long blocks are filtered in pieces of about four filter lengths (at least 65536
        frames): FFT convolution is cheapest per frame there, and the work stays in cache.
        """
        piece = max(_MIN_PIECE_FRAMES, 4 * self._taps)
        if block.shape[1] <= piece:
            return self._process(block)
        return np.concatenate(
            [
                self._process(block[:, start : start + piece])
                for start in range(0, block.shape[1], piece)
            ],
            axis=1,
        )

    def _process(self, block: AudioArray) -> AudioArray:
        frames = block.shape[1]
        joined = np.concatenate((self._history, block), axis=1)
        self._history = joined[:, frames:].copy()
        out = np.empty_like(block)
        size = scipy.fft.next_fast_len(joined.shape[1], real=True)
        filtered: list[int] = []
        for channel in range(block.shape[0]):
            if self._passthrough[channel]:
                out[channel] = joined[channel, self.latency_frames : self.latency_frames + frames]
            elif not joined[channel].any():
                out[channel] = 0.0
            else:
                filtered.append(channel)
        if filtered:
            # one 2-D transform for all filtered channels: cheaper than one call per channel
            rows = joined[filtered]
            product = scipy.fft.rfft(rows, n=size, axis=1) * self._spectrum(size)[filtered]
            full = scipy.fft.irfft(product, n=size, axis=1)
            out[filtered] = full[:, self._taps - 1 : self._taps - 1 + frames]
            for channel in filtered:
                self._keep_digital_silence(out[channel], joined[channel])
        return out

    def _keep_digital_silence(self, out: npt.NDArray[np.float32], joined: AudioArray) -> None:
        """Zero the outputs whose whole input window is exactly zero.

        FFT convolution spreads rounding noise (~1e-7 of the block's peak) over the whole FFT
        frame, including stretches of digital silence; a silent lead-in must stay silent.
        """
        if joined.shape[0] - np.count_nonzero(joined) < self._taps:
            return  # fewer zeros than the filter is long: no window can be all zero
        nonzero = np.flatnonzero(joined)
        if nonzero.shape[0] == 0:
            out[:] = 0.0
            return
        edges = np.concatenate(([-1], nonzero, [joined.shape[0]]))
        if int(np.diff(edges).max()) <= self._taps:
            return  # no silent stretch as long as the filter: nothing to guard
        loud = (joined != 0).astype(np.int8)
        window_loudness = running_max(loud, window=self._taps)
        out[window_loudness[: out.shape[0]] == 0] = 0.0

    def _spectrum(self, size: int) -> npt.NDArray[np.complex64]:
        cached = self._spectra.get(size)
        if cached is None:
            cached = scipy.fft.rfft(self._filters, n=size, axis=1).astype(np.complex64)
            self._spectra[size] = cached
        return cached
