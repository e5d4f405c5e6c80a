"""Dynamics stages: a gentle lookahead compressor and a lookahead true-peak limiter.

Both are streaming processors on float32 ``(channels, frames)`` blocks, with the channels linked
(one gain for all channels, so the stereo image never shifts). ``process`` returns as many frames
as it is given, delayed by ``latency_frames``; the caller feeds ``latency_frames`` of silence at
the end of a stream and drops the first ``latency_frames`` of output. ``reset()`` starts a new
stream. Gain curves come from :class:`tonearm.dsp.envelope.ControlRateGainEnvelope`, so every frame
gets at least the reduction it requires, ramped in over the lookahead and released
exponentially, computed at a control rate (0.18 ms steps for the limiter) and interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tonearm.dsp.envelope import ControlRateGainEnvelope, causal_moving_average
from tonearm.dsp.true_peak import TruePeakDetector
from tonearm.errors import ParameterError

if TYPE_CHECKING:
    from tonearm.types import AudioArray

__all__ = [
    "Compressor",
    "GainReductionStats",
    "TruePeakLimiter",
    "compressor_gain_reduction_db",
    "db_to_gain",
]

FloatArray = npt.NDArray[np.float64]

LIMITER_CONTROL_PERIOD_S = 0.18e-3  # 8 frames at 44.1 kHz
COMPRESSOR_CONTROL_PERIOD_S = 0.7e-3  # 32 frames at 44.1 kHz


_DB_TO_LOG2_GAIN = np.float32(-np.log2(10.0) / 20.0)
"""A reduction in dB times this is the log2 of its linear gain."""


def _control_decimation(period_s: float, *, sample_rate: int) -> int:
    """Audio frames per gain-control step for a control period."""
    return max(1, round(period_s * sample_rate))


def db_to_gain(db: float) -> float:
    """Linear amplitude factor of a level change in dB."""
    return float(10.0 ** (db / 20.0))


@dataclass(frozen=True, slots=True)
class GainReductionStats:
    """What a dynamics stage did to a stream, in dB of gain reduction (>= 0).

    ``mean_db`` averages over every frame of the stream, ``active_mean_db`` over the frames
    where the reduction exceeded 0.1 dB, and ``active_ratio`` is the share of those frames.
    """

    max_db: float
    mean_db: float
    active_mean_db: float
    active_ratio: float


class _DelayLine:
    """Delays ``(channels, frames)`` blocks by a fixed number of frames."""

    def __init__(self, *, channels: int, delay_frames: int) -> None:
        self._channels = channels
        self._delay = delay_frames
        self.reset()

    def reset(self) -> None:
        self._history = np.zeros((self._channels, self._delay), dtype=np.float32)

    def process(self, block: AudioArray) -> AudioArray:
        if self._delay == 0:
            return block
        joined = np.concatenate((self._history, block), axis=1)
        self._history = joined[:, joined.shape[1] - self._delay :].copy()
        return joined[:, : block.shape[1]]


class _ReductionMeter:
    """Accumulates :class:`GainReductionStats` over a stream."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._frames = 0
        self._sum_db = 0.0
        self._active_frames = 0
        self._active_sum_db = 0.0
        self._max_db = 0.0

    def add(self, reduction_db: FloatArray) -> None:
        self._frames += reduction_db.shape[0]
        if not reduction_db.shape[0]:
            return
        self._sum_db += float(reduction_db.sum())
        self._max_db = max(self._max_db, float(reduction_db.max()))
        active = reduction_db[reduction_db > 0.1]
        self._active_frames += active.shape[0]
        self._active_sum_db += float(active.sum())

    def result(self) -> GainReductionStats:
        frames = max(self._frames, 1)
        active = max(self._active_frames, 1)
        return GainReductionStats(
            max_db=self._max_db,
            mean_db=self._sum_db / frames,
            active_mean_db=self._active_sum_db / active if self._active_frames else 0.0,
            active_ratio=self._active_frames / frames,
        )


class _GainStage:
    """The shared back half of a dynamics stage.

    It smooths the required reduction with an envelope, delays the audio to match the
    detector's and the envelope's latency, applies the gain, and meters the reduction.
    """

    def __init__(
        self, *, envelope: ControlRateGainEnvelope, channels: int, detector_latency: int = 0
    ) -> None:
        self._envelope = envelope
        self.latency_frames = detector_latency + envelope.latency_frames
        self._delay = _DelayLine(channels=channels, delay_frames=self.latency_frames)
        self._meter = _ReductionMeter()

    def reset(self) -> None:
        self._envelope.reset()
        self._delay.reset()
        self._meter.reset()

    @property
    def stats(self) -> GainReductionStats:
        return self._meter.result()

    def apply(self, block: AudioArray, required_db: FloatArray) -> AudioArray:
        """Reduce ``block`` (delayed) by the smoothed ``required_db`` (one value per frame)."""
        reduction = self._envelope.process(required_db)
        self._meter.add(reduction)
        delayed = self._delay.process(block)
        if not reduction.any():
            return delayed
        # 10 ** (-dB / 20) as exp2 in float32: ~15x faster than float64 power, 1e-7 relative
        gain = np.exp2(reduction.astype(np.float32) * _DB_TO_LOG2_GAIN)
        limited: AudioArray = delayed * gain
        return limited


def compressor_gain_reduction_db(
    level_db: npt.ArrayLike,
    *,
    threshold_db: float,
    ratio: float,
    knee_db: float,
    max_reduction_db: float,
) -> FloatArray:
    """Static soft-knee downward compression curve.

    Parameters
    ----------
    level_db : array_like
        Detector level in dB (RMS dBFS).
    threshold_db, ratio, knee_db, max_reduction_db : float
        Threshold (dB), ratio (>= 1), knee width (dB, >= 0), cap on the reduction (dB).

    Returns
    -------
    ndarray
        Gain reduction in dB (>= 0). Above the knee the reduction is
        ``(1 - 1/ratio) * (level - threshold)``; inside it, the quadratic interpolation
        ``(1 - 1/ratio) * (level - threshold + knee/2)**2 / (2 knee)`` (the usual soft knee).
    """
    over = np.asarray(level_db, dtype=np.float64) - threshold_db
    slope = 1.0 - 1.0 / ratio
    if knee_db > 0:
        in_knee = np.clip(over + knee_db / 2.0, 0.0, knee_db)
        reduction = np.where(
            over > knee_db / 2.0, slope * over, slope * in_knee * in_knee / (2.0 * knee_db)
        )
    else:
        reduction = slope * np.maximum(over, 0.0)
    return np.minimum(reduction, max_reduction_db)


class Compressor:
    """Gentle, linked, RMS-detecting downward compressor with lookahead attack.

    Parameters
    ----------
    sample_rate : int
        Hz.
    channels : int
        1 or 2.
    threshold_dbfs : float
        RMS level (dBFS, mean over channels) where compression starts (centre of the knee).
    ratio : float
        >= 1; 1 is a no-op.
    knee_db : float
        Soft-knee width in dB.
    attack_ms : float
        Lookahead over which the gain ramps in before a loud event (also the latency).
    release_ms : float
        Exponential release time constant. Long releases with low ratios do not pump.
    rms_window_ms : float
        Detector averaging window.
    max_reduction_db : float
        Cap on the gain reduction.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int,
        threshold_dbfs: float,
        ratio: float,
        knee_db: float = 6.0,
        attack_ms: float = 20.0,
        release_ms: float = 300.0,
        rms_window_ms: float = 30.0,
        max_reduction_db: float = 6.0,
    ) -> None:
        if ratio < 1.0:
            raise ParameterError(f"compressor ratio must be >= 1, got {ratio}")
        self.threshold_dbfs = threshold_dbfs
        self.ratio = ratio
        self.knee_db = knee_db
        self.max_reduction_db = max_reduction_db
        self._rms_frames = max(1, round(rms_window_ms * 1e-3 * sample_rate))
        envelope = ControlRateGainEnvelope(
            lookahead_frames=max(1, round(attack_ms * 1e-3 * sample_rate)),
            release_frames=max(1.0, release_ms * 1e-3 * sample_rate),
            decimation=_control_decimation(COMPRESSOR_CONTROL_PERIOD_S, sample_rate=sample_rate),
        )
        self._gain = _GainStage(envelope=envelope, channels=channels)
        self.latency_frames = self._gain.latency_frames
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._gain.reset()
        self._square_history = np.zeros(self._rms_frames - 1, dtype=np.float64)

    @property
    def stats(self) -> GainReductionStats:
        """Gain reduction applied so far in this stream."""
        return self._gain.stats

    def process(self, block: AudioArray) -> AudioArray:
        """Compress one block; returns the same number of frames, ``latency_frames`` late."""
        squares: FloatArray = np.mean(np.square(block, dtype=np.float32), axis=0, dtype=np.float64)
        mean_square = causal_moving_average(squares, history=self._square_history)
        self._square_history = np.concatenate((self._square_history, squares))[squares.shape[0] :]
        # float32 log10 is ~15x faster than float64 and exact to 1e-6 dB
        level_db = 10.0 * np.log10(mean_square.astype(np.float32) + np.float32(1e-20))
        required = compressor_gain_reduction_db(
            level_db,
            threshold_db=self.threshold_dbfs,
            ratio=self.ratio,
            knee_db=self.knee_db,
            max_reduction_db=self.max_reduction_db,
        )
        return self._gain.apply(block, required)


class TruePeakLimiter:
    """Lookahead true-peak limiter: the output never exceeds ``ceiling_dbtp`` (4x oversampled).

    Detection runs on the 4x-oversampled signal (:class:`TruePeakDetector`, BS.1770-4 Annex 2
    interpolator), channels linked. For each frame the required reduction is
    ``max(0, 20 log10(peak / ceiling))``; the gain envelope holds it over the lookahead,
    releases it exponentially and ramps it in smoothly, never below the requirement. The
    internal ceiling sits ``safety_margin_db`` under the target to absorb the small
    interpolation error of applying a gain that changes within the interpolator's span.

    Parameters
    ----------
    sample_rate : int
        Hz.
    channels : int
        1 or 2.
    ceiling_dbtp : float
        Output true-peak ceiling in dBTP.
    input_gain_db : float
        Gain applied before detection (the plan's make-up gain to the loudness target).
    lookahead_ms, release_ms : float
        Attack ramp / lookahead and release time constant.
    safety_margin_db : float
        Internal headroom under the ceiling, >= 0.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int,
        ceiling_dbtp: float,
        input_gain_db: float = 0.0,
        lookahead_ms: float = 3.0,
        release_ms: float = 100.0,
        safety_margin_db: float = 0.05,
    ) -> None:
        if safety_margin_db < 0:
            raise ParameterError(f"safety_margin_db must be >= 0, got {safety_margin_db}")
        self.ceiling_dbtp = ceiling_dbtp
        self.input_gain_db = input_gain_db
        self._input_gain = np.float32(db_to_gain(input_gain_db))
        self._ceiling = db_to_gain(ceiling_dbtp - safety_margin_db)
        self._detector = TruePeakDetector(channels=channels)
        envelope = ControlRateGainEnvelope(
            lookahead_frames=max(2, round(lookahead_ms * 1e-3 * sample_rate)),
            release_frames=max(1.0, release_ms * 1e-3 * sample_rate),
            decimation=_control_decimation(LIMITER_CONTROL_PERIOD_S, sample_rate=sample_rate),
        )
        self._gain = _GainStage(
            envelope=envelope, channels=channels, detector_latency=self._detector.latency_frames
        )
        self.latency_frames = self._gain.latency_frames

    def reset(self) -> None:
        """Start a new stream."""
        self._detector.reset()
        self._gain.reset()

    @property
    def stats(self) -> GainReductionStats:
        """Gain reduction applied so far in this stream."""
        return self._gain.stats

    def process(self, block: AudioArray) -> AudioArray:
        """Limit one block; returns the same number of frames, ``latency_frames`` late."""
        boosted = block * self._input_gain if self._input_gain != 1 else block
        peaks = self._detector.process(boosted, floor=self._ceiling)
        required = np.zeros(peaks.shape[0], dtype=np.float64)
        over = peaks > self._ceiling
        if over.any():
            required[over] = 20.0 * np.log10(peaks[over] / self._ceiling)
        return self._gain.apply(boosted, required)
