"""True peak by 4x oversampling (ITU-R BS.1770-4 Annex 2; EBU Tech 3341).

The signal is interpolated to four times its rate with a 49-tap polyphase low-pass filter and
the peak is taken over the absolute values of the oversampled signal (Annex 2 steps 2-4; the
optional attenuation of step 1 is not needed in floating point).

Interpolation filter (:func:`interpolation_phase_matrix`)
--------------------------------------------------------
``h[n] = sinc((n - 24) / 4) * kaiser(49, beta=5)[n]``, ``n = 0..48``: a windowed-sinc low-pass
cut off at the input Nyquist frequency. Because the sinc is zero at every multiple of 4 except
the centre, phase 0 is the input sample itself, exactly; the group delay is 24 fine samples =
6 input frames (:data:`LATENCY_FRAMES`). ``h[48]`` is zero, so each phase has 12 taps. Each phase
is normalised to unity gain at DC. The filter is symmetric: phase 3 is phase 1 reversed and phase 2
is its own reverse. The kernel exploits that: with ``s_d = x_d + x_{11-d}`` and
``t_d = x_d - x_{11-d}`` it forms ``A = y1 + y3`` and ``y2`` from ``s`` and ``B = y1 - y3`` from
``t`` (6 taps each), and ``max(|y1|, |y3|) = (|A| + |B|) / 2``.

Accuracy, for a sine of amplitude ``A`` at ``f`` cycles per input sample (measured on the
float32 matrix; ``tests/dsp/test_true_peak.py`` checks it): every polyphase branch has gain
within +0.03/-0.01 dB for ``f <= 0.3`` and at most +0.044 dB at any frequency, so the meter never
over-reads a sine by more than 0.05 dB. For ``f <= 0.42`` (20 kHz at 48 kHz) it under-reads by
at most the 4x grid loss ``cos(pi f / 4)`` (the crest can fall between two oversampled points)
plus 0.05 dB: 0.03 dB at ``f = 0.1`` (4.4 kHz at 44.1 kHz), 0.24 dB at 0.3, 0.44 dB at 0.4 (the
grid alone loses 0.69 dB at Nyquist, where the branches also roll off). So a sine up to 0.42 reads
within +0.05/-0.5 dB of its amplitude, inside the
+0.2/-0.6 dB used for the Tech 3341-style cases of the tests. A signal that starts or stops with a
step (not band-limited) rings above its samples, as it would after any reconstruction filter.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from tonearm.types import validate_audio, validate_block, validate_channels

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from tonearm.types import AudioArray

__all__ = [
    "LATENCY_FRAMES",
    "OVERSAMPLING",
    "TAPS_PER_PHASE",
    "TruePeakDetector",
    "TruePeakMeter",
    "interpolation_l1_bound",
    "interpolation_phase_matrix",
    "sample_peak_dbfs",
    "true_peak",
    "true_peak_dbtp",
]

OVERSAMPLING = 4
"""Oversampling factor (BS.1770-4 Annex 2 recommends at least 4x at 48 kHz)."""
TAPS_PER_PHASE = 12
"""Input frames spanned by each polyphase branch (filter length ``4 * 12 + 1`` = 49)."""
LATENCY_FRAMES = TAPS_PER_PHASE // 2
"""Delay of the interpolator, in input frames (24 oversampled samples)."""

_KAISER_BETA = 5.0
_HISTORY = TAPS_PER_PHASE - 1  # input frames of context a window needs before its newest frame
_PAIRS = TAPS_PER_PHASE // 2  # symmetric tap pairs of the odd phases
_CHUNK_FRAMES = 65536  # oversampling work size (see the module docstring on threads)
_METER_SUBCHUNK = 1024  # frames per skip decision in TruePeakMeter
_METER_CHUNK_FRAMES = 32 * _METER_SUBCHUNK  # frames per bound computation in TruePeakMeter
_METER_GROUP = 8  # selected sub-chunks oversampled together
_BOUND_MARGIN = 1.0 + 1e-5  # covers float32 rounding of the 12-tap sums (< 2e-6 relative)


@functools.lru_cache(maxsize=1)
def interpolation_phase_matrix() -> NDArray[np.float32]:
    """The 4x polyphase interpolation filter (BS.1770-4 Annex 2, step 2).

    Returns
    -------
    ndarray, shape (12, 4), float32, read-only
        ``P[r, k]`` multiplies input frame ``g - 11 + r`` of a window that ends at frame ``g``;
        column ``k`` yields the interpolated value at time ``g - 6 + k / 4`` (frames). Column 0
        is the unit vector selecting frame ``g - 6``. Each column sums to 1 (to float rounding);
        column 3 is column 1 reversed and column 2 is symmetric. Cached.
    """
    half = OVERSAMPLING * TAPS_PER_PHASE // 2
    n = np.arange(-half, half + 1)
    taps = np.sinc(n / OVERSAMPLING) * np.kaiser(n.size, _KAISER_BETA)
    taps[n % OVERSAMPLING == 0] = 0.0  # the sinc's exact zeros
    taps[half] = 1.0
    matrix = np.zeros((TAPS_PER_PHASE, OVERSAMPLING), dtype=np.float64)
    for row in range(TAPS_PER_PHASE):
        delay = TAPS_PER_PHASE - 1 - row  # frames back from the window's newest frame
        matrix[row] = taps[OVERSAMPLING * delay : OVERSAMPLING * delay + OVERSAMPLING]
    matrix /= matrix.sum(axis=0, keepdims=True)
    # Make the symmetry exact after rounding (it holds mathematically).
    matrix[:, 3] = matrix[::-1, 1]
    matrix[:, 2] = 0.5 * (matrix[:, 2] + matrix[::-1, 2])
    result = matrix.astype(np.float32)
    result.setflags(write=False)
    return result


@functools.lru_cache(maxsize=1)
def interpolation_l1_bound() -> float:
    """Largest ``sum(|h_phase|)`` over the phases (about 1.92).

    Any oversampled value is at most this times the largest ``|x|`` within its 12-frame window.
    """
    return float(np.abs(interpolation_phase_matrix().astype(np.float64)).sum(axis=0).max())


@functools.lru_cache(maxsize=1)
def _pair_coefficients() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Kernel factors: ``even`` (6, 2, 1) for ``A`` and ``y2`` and ``odd`` (6,) for ``B``."""
    matrix = interpolation_phase_matrix().astype(np.float64)
    first = matrix[:_PAIRS, 1]
    mirrored = matrix[TAPS_PER_PHASE - 1 : _PAIRS - 1 : -1, 1]  # P[11 - d, 1], d = 0..5
    even = np.stack((first + mirrored, matrix[:_PAIRS, 2]), axis=1)[:, :, np.newaxis]
    odd = first - mirrored
    even32 = even.astype(np.float32)
    odd32 = odd.astype(np.float32)
    even32.setflags(write=False)
    odd32.setflags(write=False)
    return even32, odd32


@functools.lru_cache(maxsize=1)
def _bound_factors() -> tuple[float, float, float]:
    """Constants ``(A, W, L1)`` of the skip bound ``min(L1 M, A M + W D2)`` of TruePeakMeter.

    For a window ``x_0..x_11`` and phase ``k``, write ``x_r = x_5 + (r - 5)(x_6 - x_5) + e_r``;
    then ``y_k = x_5 (S_k - mu_k) + x_6 mu_k + sum_r P[r, k] e_r`` with ``S_k = sum_r P[r, k]``
    and ``mu_k = sum_r P[r, k] (r - 5)``. The remainder of the linear fit obeys
    ``|e_r| <= |r - 5| |r - 6| / 2 * D2`` (``D2`` = largest ``|x_{j+1} - 2 x_j + x_{j-1}|`` in
    the window), so ``|y_k| <= A M + W D2`` with ``M = max |x_r|``,
    ``A = max_k (|S_k - mu_k| + |mu_k|)`` and ``W = max_k sum_r |P[r, k]| |r - 5| |r - 6| / 2``.
    """
    matrix = interpolation_phase_matrix().astype(np.float64)
    offsets = np.arange(TAPS_PER_PHASE, dtype=np.float64) - (LATENCY_FRAMES - 1)
    sums = matrix.sum(axis=0)
    moments = offsets @ matrix
    linear = float(np.max(np.abs(sums - moments) + np.abs(moments)))
    remainder = np.abs(offsets * (offsets - 1.0)) / 2.0
    curved = float(np.max(remainder @ np.abs(matrix)))
    return linear, curved, interpolation_l1_bound()


class _Scratch:
    """Work buffer owned by one detector or meter (never shared, so instances are re-entrant)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = np.empty(0, dtype=np.float32)

    def take(self, size: int) -> NDArray[np.float32]:
        if self._buffer.size < size:
            self._buffer = np.empty(size, dtype=np.float32)
        return self._buffer[:size]


def _odd_phase_abs_max(extended: AudioArray, scratch: _Scratch) -> NDArray[np.float32]:
    """Max over rows (channels) and phases 1..3 of |interpolated value|, per window.

    ``extended`` has shape (rows, frames + 11); window ``i`` is ``extended[:, i : i + 12]``.
    Returns shape (frames,). Only elementwise arithmetic in a fixed order, so a window's value
    never depends on how the signal was split into blocks or gathered.
    """
    rows = extended.shape[0]
    frames = extended.shape[1] - _HISTORY
    plane = rows * frames
    work = scratch.take(7 * plane)
    even = work[: 2 * plane].reshape(rows, 2, frames)  # accumulates A = y1 + y3 and y2
    even_term = work[2 * plane : 4 * plane].reshape(rows, 2, frames)
    odd = work[4 * plane : 5 * plane].reshape(rows, frames)  # accumulates B = y1 - y3
    pair_sum = work[5 * plane : 6 * plane].reshape(rows, frames)
    pair_difference = work[6 * plane :].reshape(rows, frames)
    even_coefficients, odd_coefficients = _pair_coefficients()
    for d in range(_PAIRS):
        near = extended[:, d : d + frames]
        far = extended[:, TAPS_PER_PHASE - 1 - d : TAPS_PER_PHASE - 1 - d + frames]
        np.add(near, far, out=pair_sum)
        np.subtract(near, far, out=pair_difference)
        if d == 0:
            np.multiply(pair_sum[:, np.newaxis, :], even_coefficients[0], out=even)
            np.multiply(pair_difference, odd_coefficients[0], out=odd)
        else:
            np.multiply(pair_sum[:, np.newaxis, :], even_coefficients[d], out=even_term)
            even += even_term
            pair_difference *= odd_coefficients[d]
            odd += pair_difference
    np.abs(even, out=even)
    np.abs(odd, out=odd)
    outer = even[:, 0, :]
    outer += odd
    outer *= np.float32(0.5)  # max(|y1|, |y3|) = (|A| + |B|) / 2
    result: NDArray[np.float32] = even.max(axis=(0, 1))
    return result


def _subchunk_bounds(extended: AudioArray, *, size: int) -> NDArray[np.float64]:
    """Upper bound of the oversampled values of each ``size``-frame sub-chunk of windows.

    ``extended`` is ``(channels, frames + 11)``: the windows of output frames
    ``[j * size, (j + 1) * size)`` read ``extended[:, j * size : (j + 1) * size + 11]``. The
    bound is ``min(L1 M, A M + W D2)`` of :func:`_bound_factors` over that span, with ``M`` the
    largest ``|x|`` and ``D2`` the largest ``|second difference|``.
    """
    total = extended.shape[1]
    frames = total - _HISTORY
    count = -(-frames // size)
    magnitude = np.abs(extended).max(axis=0)
    second = extended[:, 2:] - extended[:, 1:-1] * np.float32(2.0)
    second += extended[:, :-2]
    curvature = np.abs(second).max(axis=0)
    # Windows of sub-chunk j read magnitude[j*size : (j+1)*size + 11] and curvature
    # [j*size : (j+1)*size + 9]: both within segments j and j + 1.
    starts = np.arange(0, total, size)
    segment_magnitude = np.maximum.reduceat(magnitude, starts).astype(np.float64)
    segment_curvature = np.zeros(starts.size, dtype=np.float64)
    segment_curvature[: -(-curvature.size // size)] = np.maximum.reduceat(
        curvature, starts[starts < curvature.size]
    )
    span_magnitude = np.append(segment_magnitude, 0.0)
    span_magnitude = np.maximum(span_magnitude[:count], span_magnitude[1 : count + 1])
    span_curvature = np.append(segment_curvature, 0.0)
    span_curvature = np.maximum(span_curvature[:count], span_curvature[1 : count + 1])
    linear, curved, l1 = _bound_factors()
    bounds: NDArray[np.float64] = np.minimum(
        l1 * span_magnitude, linear * span_magnitude + curved * span_curvature
    )
    return bounds * _BOUND_MARGIN


class TruePeakDetector:
    """Streaming, channel-linked 4x true-peak envelope for a lookahead limiter.

    For input frame ``g`` (global index in the stream), the output is the maximum over channels
    and over the 4 oversampled points in ``[t, t + 1)`` of the absolute interpolated value, with
    ``t = g - latency_frames``. The first ``latency_frames`` outputs of a stream therefore refer
    to frames before its start and see zero history. Consecutive calls equal one call on the
    concatenation, bitwise.

    Parameters
    ----------
    channels : int
        1 or 2.
    """

    latency_frames: int

    def __init__(self, *, channels: int) -> None:
        validate_channels(channels)
        self.channels = channels
        self.latency_frames = LATENCY_FRAMES
        self._tail = np.zeros((channels, _HISTORY), dtype=np.float32)
        self._scratch = _Scratch()

    def reset(self) -> None:
        """Forget the carried input frames (start of a new stream)."""
        self._tail = np.zeros_like(self._tail)

    def process(self, block: AudioArray, *, floor: float = 0.0) -> NDArray[np.float32]:
        """True-peak envelope of one block (BS.1770-4 Annex 2 steps 2-3, per frame).

        Parameters
        ----------
        block : ndarray, shape (channels, frames), float32
        floor : float
            Linear level below which the exact value does not matter (a limiter's ceiling).
            Sub-chunks of 1024 frames whose bound (see :func:`_subchunk_bounds`) is at or under
            ``floor`` report their sample peak instead, which is also under ``floor``, and skip
            the oversampling. Values above ``floor`` are always exact. 0 computes everything.

        Returns
        -------
        ndarray, shape (frames,), float32
            Linear peak per input frame, delayed by :attr:`latency_frames` (see class docstring).
        """
        return self._process(validate_block(block, channels=self.channels), floor=floor)

    def _process(self, block: AudioArray, *, floor: float = 0.0) -> NDArray[np.float32]:
        frames = block.shape[1]
        out = np.empty(frames, dtype=np.float32)
        centre = _HISTORY - LATENCY_FRAMES  # window i's phase 0 is frame i + 5 of `extended`
        for start in range(0, frames, _CHUNK_FRAMES):
            chunk = block[:, start : start + _CHUNK_FRAMES]
            size = chunk.shape[1]
            extended = np.concatenate((self._tail, chunk), axis=1)
            part = out[start : start + size]
            part[:] = np.abs(extended[:, centre : centre + size]).max(axis=0)
            if floor > 0.0:
                needed = _subchunk_bounds(extended, size=_METER_SUBCHUNK) > floor
                edges = np.flatnonzero(np.diff(np.concatenate(([0], needed.view(np.int8), [0]))))
                runs: list[tuple[int, int]] = list(
                    zip(
                        (edges[::2] * _METER_SUBCHUNK).tolist(),
                        (edges[1::2] * _METER_SUBCHUNK).tolist(),
                        strict=True,
                    )
                )
            else:
                runs = [(0, size)]
            for first, last in runs:
                last = min(last, size)
                window = extended[:, first : last + _HISTORY]
                np.maximum(
                    part[first:last],
                    _odd_phase_abs_max(window, self._scratch),
                    out=part[first:last],
                )
            self._tail = extended[:, -_HISTORY:].copy()
        return out

    def flush(self) -> NDArray[np.float32]:
        """Feed ``latency_frames`` zero frames: the envelope of the last real frames.

        Returns
        -------
        ndarray, shape (latency_frames,), float32
            The outputs for times ``t`` at the last ``latency_frames`` input frames. The detector
            is left as if those zeros were part of the stream; call :meth:`reset` to reuse it.
        """
        return self._process(np.zeros((self.channels, self.latency_frames), dtype=np.float32))


class TruePeakMeter:
    """Streaming maximum true peak of a programme (EBU Tech 3341 "maximum true-peak level").

    The oversampled signal includes the end of the stream (as if flushed) at every reading.
    Work is skipped where it cannot change the answer: the running maximum starts from the sample
    peak (phase 0 is exact), and a 1024-frame sub-chunk is oversampled only if the bound
    ``min(L1 M, A M + W D2)`` of :func:`_bound_factors` (``M`` = max ``|x|``, ``D2`` = max
    ``|second difference|`` over the sub-chunk and its filter span) exceeds that maximum. The
    result is identical to oversampling everything.

    Parameters
    ----------
    channels : int
        1 or 2.
    """

    def __init__(self, *, channels: int) -> None:
        validate_channels(channels)
        self.channels = channels
        self._tail = np.zeros((channels, _HISTORY), dtype=np.float32)
        self._peak = 0.0
        self._scratch = _Scratch()

    def reset(self) -> None:
        """Forget everything measured so far."""
        self._tail = np.zeros_like(self._tail)
        self._peak = 0.0

    def push(self, block: AudioArray) -> None:
        """Measure one block.

        Parameters
        ----------
        block : ndarray, shape (channels, frames), float32
        """
        self._push(validate_block(block, channels=self.channels))

    def _push(self, block: AudioArray) -> None:
        for start in range(0, block.shape[1], _METER_CHUNK_FRAMES):
            chunk = block[:, start : start + _METER_CHUNK_FRAMES]
            extended = np.concatenate((self._tail, chunk), axis=1)
            self._measure(extended)
            self._tail = extended[:, -_HISTORY:].copy()

    def _measure(self, extended: AudioArray) -> None:
        """Update the running peak with the windows of ``extended`` (channels, frames + 11)."""
        frames = extended.shape[1] - _HISTORY
        count = -(-frames // _METER_SUBCHUNK)
        # Phase 0 is exact: every sample is a point of the oversampled signal (now or at flush).
        peak = max(self._peak, float(np.abs(extended).max()))
        bounds = _subchunk_bounds(extended, size=_METER_SUBCHUNK)
        selected = np.flatnonzero(bounds > peak)
        if 2 * selected.size > count:
            # Mostly needed (loud, dense material): one contiguous pass beats gathering.
            for start in range(0, frames, _CHUNK_FRAMES):
                part = extended[:, start : start + _CHUNK_FRAMES + _HISTORY]
                peak = max(peak, float(_odd_phase_abs_max(part, self._scratch).max()))
        else:
            for group in range(0, selected.size, _METER_GROUP):
                chosen = selected[group : group + _METER_GROUP]
                peak = max(peak, self._selected_peak(extended, chosen))
        self._peak = peak

    def _selected_peak(self, extended: AudioArray, selected: NDArray[np.intp]) -> float:
        """Max over phases 1..3 of the windows of the given sub-chunks.

        Their spans are gathered end to end into one row per channel; the windows that straddle
        two spans, or run past the real frames, are masked out.
        """
        total = extended.shape[1]
        size = _METER_SUBCHUNK
        span = size + _HISTORY
        offsets = selected[:, np.newaxis] * size + np.arange(span)
        np.minimum(offsets, total - 1, out=offsets)
        gathered = extended[:, offsets].reshape(extended.shape[0], -1)
        values = np.zeros(selected.size * span, dtype=np.float32)
        values[: gathered.shape[1] - _HISTORY] = _odd_phase_abs_max(gathered, self._scratch)
        per_span = values.reshape(selected.size, span)[:, :size]
        valid = np.arange(size) < (total - _HISTORY - selected * size)[:, np.newaxis]
        return float(np.max(per_span, where=valid, initial=0.0))

    @property
    def peak(self) -> float:
        """Maximum true peak so far, linear (0.0 for silence), including the flushed end."""
        ending = np.concatenate(
            (self._tail, np.zeros((self.channels, LATENCY_FRAMES), dtype=np.float32)), axis=1
        )
        return max(self._peak, float(_odd_phase_abs_max(ending, _Scratch()).max()))

    @property
    def peak_dbtp(self) -> float:
        """Maximum true peak so far in dBTP (``20 log10``), ``-inf`` for silence."""
        return _to_db(self.peak)


def _to_db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0.0 else float("-inf")


def true_peak(audio: AudioArray) -> float:
    """Maximum true peak of a whole signal, linear (BS.1770-4 Annex 2), including its end.

    Parameters
    ----------
    audio : ndarray, shape (channels, frames), float32

    Returns
    -------
    float
        Max over channels and the 4x oversampled signal of ``|x|``; 0.0 for silence.
    """
    validate_audio(audio)
    meter = TruePeakMeter(channels=audio.shape[0])
    meter._push(audio)
    return meter.peak


def true_peak_dbtp(audio: AudioArray) -> float:
    """Maximum true peak of a whole signal in dBTP; ``-inf`` for silence.

    Parameters
    ----------
    audio : ndarray, shape (channels, frames), float32
    """
    return _to_db(true_peak(audio))


def sample_peak_dbfs(audio: AudioArray) -> float:
    """Largest ``|sample|`` over all channels in dBFS (``20 log10``); ``-inf`` for silence.

    Parameters
    ----------
    audio : ndarray, shape (channels, frames), float32
    """
    validate_audio(audio)
    return _to_db(float(np.abs(audio).max()) if audio.size else 0.0)
