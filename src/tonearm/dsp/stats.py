"""Level statistics: sample peak, RMS, crest factor, mid/side balance, width and correlation.

All figures come from five float64 sums accumulated block by block (so streaming and whole-array
results agree to rounding): per channel ``sum(x_i^2)``, and for stereo ``sum((L + R)^2)`` and
``sum((L - R)^2)``, plus the largest ``|sample|``. With the ``tonearm.dsp.channels`` convention
``M = (L + R) / 2`` and ``S = (L - R) / 2``:

- ``E_M = sum((L + R)^2) / 4``, ``E_S = sum((L - R)^2) / 4``;
- ``sum(L R) = E_M - E_S`` (since ``L R = M^2 - S^2``).

Computing ``S`` from the float32 samples directly (instead of ``LL + RR - 2 LR``) keeps the side
energy exact for dual-mono material and accurate far below the mid level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tonearm.dsp.framing import Rechunker
from tonearm.types import validate_audio, validate_block, validate_channels

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from tonearm.types import AudioArray

__all__ = ["LevelStats", "LevelStatsAccumulator", "level_stats"]

_CHUNK_FRAMES = 1 << 16  # float64 conversion size: bounds temporaries to 1 MiB


@dataclass(frozen=True, slots=True)
class LevelStats:
    """Level statistics of a signal.

    Attributes
    ----------
    sample_peak_dbfs : float
        ``20 log10(max |x|)`` over all channels; ``-inf`` for silence.
    rms_dbfs : float
        ``10 log10(mean(x^2))`` over all samples of all channels (a full-scale sine reads
        -3.01 dBFS); ``-inf`` for silence.
    crest_db : float
        ``sample_peak_dbfs - rms_dbfs``; 0.0 for silence.
    side_to_mid_db : float
        ``10 log10(E_S / E_M)``; ``-inf`` for mono, dual mono and silence, ``+inf`` when only the
        side carries signal.
    width : float
        ``E_S / (E_M + E_S)`` in [0, 1]; 0.0 for mono, dual mono and silence.
    correlation : float
        Phase correlation ``sum(L R) / sqrt(sum(L^2) sum(R^2))`` in [-1, 1]; +1.0 for mono and
        for silence, 0.0 when exactly one channel is silent.
    """

    sample_peak_dbfs: float
    rms_dbfs: float
    crest_db: float
    side_to_mid_db: float
    width: float
    correlation: float


def _db_power(value: float) -> float:
    return 10.0 * math.log10(value) if value > 0.0 else float("-inf")


def _energy(values: NDArray[np.float64]) -> float:
    """Sum of squares without BLAS: a threaded ``ddot`` spin-waits on a busy machine."""
    return float(np.einsum("i,i->", values, values))


class LevelStatsAccumulator:
    """Streaming accumulator of :class:`LevelStats`.

    Parameters
    ----------
    channels : int
        1 or 2.
    """

    def __init__(self, *, channels: int) -> None:
        self.channels = validate_channels(channels)
        # sums over fixed pieces: the float64 rounding, and so every figure to the last bit,
        # does not depend on how the stream was cut into blocks
        self._rechunker = Rechunker(channels=self.channels, piece=_CHUNK_FRAMES)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._rechunker.reset()
        self._frames = 0
        self._peak = 0.0
        self._channel_energy = [0.0] * self.channels  # sum(x_i^2)
        self._sum_energy = 0.0  # sum((L + R)^2)
        self._difference_energy = 0.0  # sum((L - R)^2)

    def push(self, block: AudioArray) -> None:
        """Accumulate one block.

        Parameters
        ----------
        block : ndarray, shape (channels, frames), float32
        """
        self._push(validate_block(block, channels=self.channels))

    def _push(self, audio: AudioArray) -> None:
        for piece in self._rechunker.push(audio):
            self._add(piece)

    def _add(self, chunk: AudioArray) -> None:
        wide = chunk.astype(np.float64)  # float32 sums and differences are exact in float64
        self._peak = max(self._peak, float(np.abs(chunk).max()))
        for channel in range(self.channels):
            self._channel_energy[channel] += _energy(wide[channel])
        if self.channels == 2:
            total = wide[0] + wide[1]
            difference = wide[0] - wide[1]
            self._sum_energy += _energy(total)
            self._difference_energy += _energy(difference)
        self._frames += chunk.shape[1]

    def result(self) -> LevelStats:
        """Statistics of everything pushed so far (silence figures before any frame)."""
        for piece in self._rechunker.flush():
            self._add(piece)
        peak_dbfs = 20.0 * math.log10(self._peak) if self._peak > 0.0 else float("-inf")
        samples = self._frames * self.channels
        energy = sum(self._channel_energy)
        rms_dbfs = _db_power(energy / samples) if samples else float("-inf")
        crest = peak_dbfs - rms_dbfs if self._peak > 0.0 else 0.0
        if self.channels == 1:
            return LevelStats(
                sample_peak_dbfs=peak_dbfs,
                rms_dbfs=rms_dbfs,
                crest_db=crest,
                side_to_mid_db=float("-inf"),
                width=0.0,
                correlation=1.0,
            )
        mid = self._sum_energy / 4.0
        side = self._difference_energy / 4.0
        if side == 0.0:
            side_to_mid = float("-inf")
        elif mid == 0.0:
            side_to_mid = float("inf")
        else:
            side_to_mid = 10.0 * math.log10(side / mid)
        width = side / (mid + side) if side > 0.0 else 0.0
        left, right = self._channel_energy
        if left == 0.0 and right == 0.0:
            correlation = 1.0
        elif left == 0.0 or right == 0.0:
            correlation = 0.0
        else:
            correlation = (mid - side) / math.sqrt(left * right)
            correlation = min(1.0, max(-1.0, correlation))
        return LevelStats(
            sample_peak_dbfs=peak_dbfs,
            rms_dbfs=rms_dbfs,
            crest_db=crest,
            side_to_mid_db=side_to_mid,
            width=width,
            correlation=correlation,
        )


def level_stats(audio: AudioArray) -> LevelStats:
    """:class:`LevelStats` of a whole signal.

    Parameters
    ----------
    audio : ndarray, shape (channels, frames), float32
    """
    validate_audio(audio)
    accumulator = LevelStatsAccumulator(channels=audio.shape[0])
    accumulator._push(audio)
    return accumulator.result()
