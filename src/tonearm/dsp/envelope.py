"""Vectorised lookahead gain smoothing, shared by the compressor and the limiter.

A dynamics stage computes, for every frame, the gain reduction it *requires* (``r >= 0`` dB).
:class:`GainEnvelope` turns that into a smooth gain-reduction curve ``g`` with the guarantee

    ``g[q] >= r[q]`` for every frame ``q``

(so a limiter built on it never lets a detected peak through), with three steps, all vectorised:

1. **Lookahead hold**: ``h[q] = max(r[q : q + A])`` over the next ``A`` frames (van Herk /
   Gil-Werman running maximum, O(n) whatever ``A`` is).
2. **Release**: ``e[q] = max(h[q], e[q - 1] * a)`` with ``a = exp(-1 / release_frames)``: an
   instant-attack, exponential (in dB) release. Solved without a loop as
   ``e[q] = a**q * max(e[-1] * a, cummax(h[k] * a**-k))`` over sub-blocks short enough that
   ``a**-k`` cannot overflow.
3. **Attack smoothing**: two cascaded causal moving averages of lengths ``B1 + B2 - 1 <= A``.
   Every term they average lies within ``A - 1`` frames before ``q``, and each of those
   ``h`` values already covers frame ``q``, so the average stays ``>= r[q]``; the gain ramps in
   over the lookahead as an S-curve instead of stepping.

Output frame ``j`` of the stream describes input frame ``j - latency_frames``; the stage that
owns the envelope delays its audio by the same amount.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from tonearm.errors import ParameterError

__all__ = ["GainEnvelope", "causal_moving_average", "running_max"]

FloatArray = npt.NDArray[np.float64]

# exp(600) ~ 1e260: the largest growth factor we let a**-k reach inside one release sub-block.
_MAX_RELEASE_EXPONENT = 600.0


def running_max(values: npt.NDArray[Any], *, window: int) -> npt.NDArray[Any]:
    """Forward running maximum ``out[i] = max(values[i : i + window])``.

    Parameters
    ----------
    values : ndarray, shape (n,)
        Must hold at least ``window`` values.
    window : int
        Window length in frames, >= 1.

    Returns
    -------
    ndarray, shape (n - window + 1,)
        Van Herk / Gil-Werman: block-wise prefix and suffix maxima, two passes, O(n).
    """
    n = values.shape[0]
    if window < 1 or n < window:
        raise ParameterError(f"running_max needs 1 <= window <= {n}, got {window}")
    if window == 1:
        return values.copy()
    blocks = -(-n // window)
    lowest = np.finfo(values.dtype).min if values.dtype.kind == "f" else np.iinfo(values.dtype).min
    padded = np.full(blocks * window, lowest, dtype=values.dtype)
    padded[:n] = values
    grid = padded.reshape(blocks, window)
    prefix = np.maximum.accumulate(grid, axis=1).ravel()
    suffix = np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    count = n - window + 1
    return np.maximum(suffix[:count], prefix[window - 1 : window - 1 + count])


def causal_moving_average(values: FloatArray, *, history: FloatArray) -> FloatArray:
    """Mean of each value and the ``len(history)`` values before it.

    Parameters
    ----------
    values : ndarray, shape (n,)
    history : ndarray, shape (length - 1,)
        The values that preceded ``values`` in the stream (zeros at the start of a stream).

    Returns
    -------
    ndarray, shape (n,)
    """
    length = history.shape[0] + 1
    cumulative = np.empty(values.shape[0] + length, dtype=np.float64)
    cumulative[0] = 0.0
    np.cumsum(np.concatenate((history, values)), out=cumulative[1:])
    result: FloatArray = (cumulative[length:] - cumulative[:-length]) / length
    return result


class GainEnvelope:
    """Streaming lookahead gain-reduction smoother (see the module docstring).

    Parameters
    ----------
    lookahead_frames : int
        ``A``, >= 1: how far ahead the envelope starts ramping in, in frames.
    release_frames : float
        Time constant of the exponential release in frames, > 0.

    Notes
    -----
    ``process`` accepts blocks of any length and returns as many values, delayed by
    ``latency_frames = lookahead_frames - 1``. Consecutive blocks give the same result as one
    call on their concatenation. Call ``reset()`` before a new stream.
    """

    def __init__(self, *, lookahead_frames: int, release_frames: float) -> None:
        if lookahead_frames < 1:
            raise ParameterError(f"lookahead_frames must be >= 1, got {lookahead_frames}")
        if not release_frames > 0:
            raise ParameterError(f"release_frames must be > 0, got {release_frames}")
        self.lookahead_frames = lookahead_frames
        self.release_frames = float(release_frames)
        self.latency_frames = lookahead_frames - 1
        self._decay = math.exp(-1.0 / self.release_frames)
        self._release_chunk = max(1, int(_MAX_RELEASE_EXPONENT * self.release_frames))
        self._first_box = (lookahead_frames + 1) // 2
        self._second_box = lookahead_frames - self._first_box + 1
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next block starts from silence (no gain reduction)."""
        self._pending = np.zeros(self.latency_frames, dtype=np.float64)
        self._released = 0.0
        self._first_history = np.zeros(self._first_box - 1, dtype=np.float64)
        self._second_history = np.zeros(self._second_box - 1, dtype=np.float64)

    def process(self, required_db: npt.ArrayLike) -> FloatArray:
        """Smooth a block of required gain reduction (dB, >= 0); returns the same count, delayed."""
        required = np.asarray(required_db, dtype=np.float64)
        n = required.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        if self._idle and not required.any():
            return np.zeros(n, dtype=np.float64)  # nothing pending, nothing to reduce
        joined = np.concatenate((self._pending, required))
        self._pending = joined[joined.shape[0] - self.latency_frames :].copy()
        held = running_max(joined, window=self.lookahead_frames)
        released = self._release(held)
        first = causal_moving_average(released, history=self._first_history)
        self._first_history = _tail(self._first_history, released)
        second = causal_moving_average(first, history=self._second_history)
        self._second_history = _tail(self._second_history, first)
        return second

    @property
    def _idle(self) -> bool:
        """True when no reduction is pending, releasing or being smoothed."""
        return (
            self._released < 1e-12
            and not self._pending.any()
            and not self._first_history.any()
            and not self._second_history.any()
        )

    def _release(self, held: FloatArray) -> FloatArray:
        if self._released <= 0.0 and not held.any():
            return held
        out = np.empty_like(held)
        decay = self._decay
        for start in range(0, held.shape[0], self._release_chunk):
            part = held[start : start + self._release_chunk]
            k = np.arange(part.shape[0], dtype=np.float64)
            growth = np.power(decay, -k)
            best = np.maximum.accumulate(part * growth)
            np.maximum(best, self._released * decay, out=best)
            out[start : start + part.shape[0]] = best / growth
            self._released = float(out[start + part.shape[0] - 1])
        return out


def _tail(history: FloatArray, values: FloatArray) -> FloatArray:
    """The last ``len(history)`` values of ``history`` followed by ``values``."""
    keep = history.shape[0]
    if keep == 0:
        return history
    if values.shape[0] >= keep:
        return values[values.shape[0] - keep :].copy()
    return np.concatenate((history[values.shape[0] :], values))


class ControlRateGainEnvelope:
    """:class:`GainEnvelope` run at a control rate, interpolated back to the audio rate.

    The required reduction is max-pooled over ``decimation`` frames, dilated one control step
    back (``c'[k] = max(c[k-1], c[k])``), smoothed by a :class:`GainEnvelope` at the control
    rate and linearly interpolated between control points. The guarantee holds frame by frame:
    the frames of control step ``k`` need at most ``c[k]``; the interpolation there lies
    between ``g[k] >= c'[k] >= c[k]`` and ``g[k+1] >= c'[k+1] >= c[k]``. The work is about
    ``decimation`` times smaller; the gain is piecewise linear over ``decimation`` frames (8
    frames is 0.18 ms at 44.1 kHz, far below anything audible as a step).

    Parameters
    ----------
    lookahead_frames : int
        Ramp-in length at the audio rate (rounded up to whole control steps).
    release_frames : float
        Release time constant at the audio rate.
    decimation : int
        Audio frames per control step, >= 1.
    """

    def __init__(self, *, lookahead_frames: int, release_frames: float, decimation: int) -> None:
        if decimation < 1:
            raise ParameterError(f"decimation must be >= 1, got {decimation}")
        self.decimation = decimation
        self._inner = GainEnvelope(
            lookahead_frames=max(1, -(-lookahead_frames // decimation)),
            release_frames=max(release_frames / decimation, 1e-3),
        )
        # produced frames start (inner latency + 1) control steps early; D - 1 more frames of
        # slack cover an incomplete control step, so every call can return as many as it got
        self.latency_frames = (self._inner.latency_frames + 2) * decimation - 1
        self._ramp = np.arange(decimation, dtype=np.float64) / decimation
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._inner.reset()
        self._partial = np.zeros(0, dtype=np.float64)
        self._previous_required = 0.0
        self._previous_gain = 0.0
        self._queue = np.zeros(self.decimation - 1, dtype=np.float64)

    def process(self, required_db: npt.ArrayLike) -> FloatArray:
        """Smooth required reduction (dB): as many values out, ``latency_frames`` late."""
        required = np.asarray(required_db, dtype=np.float64)
        n = required.shape[0]
        step = self.decimation
        if self._idle and not required.any():
            # all state is zero and stays zero: only the bookkeeping of lengths moves
            partial = (self._partial.shape[0] + n) % step
            self._partial = np.zeros(partial, dtype=np.float64)
            self._queue = np.zeros(step - 1 - partial, dtype=np.float64)
            return np.zeros(n, dtype=np.float64)
        joined = np.concatenate((self._partial, required)) if self._partial.size else required
        steps = joined.shape[0] // step
        self._partial = joined[steps * step :].copy()
        if steps:
            pooled = _pool_max(joined[: steps * step].reshape(steps, step))
            dilated = np.maximum(pooled, np.concatenate(([self._previous_required], pooled[:-1])))
            self._previous_required = float(pooled[-1])
            smoothed = self._inner.process(dilated)
            points = np.concatenate(([self._previous_gain], smoothed))
            self._previous_gain = float(smoothed[-1])
            start = points[:-1, np.newaxis]
            frames = (start + (points[1:, np.newaxis] - start) * self._ramp).ravel()
            self._queue = np.concatenate((self._queue, frames))
        out = self._queue[:n]
        self._queue = self._queue[n:]
        return out

    @property
    def _idle(self) -> bool:
        """True when every part of the state is zero (no reduction anywhere in flight)."""
        return (
            self._previous_required == 0.0
            and self._previous_gain == 0.0
            and self._inner._idle
            and not self._partial.any()
            and not self._queue.any()
        )


def _pool_max(grid: FloatArray) -> FloatArray:
    """Row maxima of a ``(rows, d)`` grid with small ``d``: column-wise ``maximum`` beats
    ``max(axis=1)``, which numpy reduces slowly along a short axis."""
    out = grid[:, 0].copy()
    for column in range(1, grid.shape[1]):
        np.maximum(out, grid[:, column], out=out)
    return out
