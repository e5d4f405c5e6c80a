"""Mid/side conversion for ``(channels, frames)`` float32 audio.

Convention: ``M = (L + R) / 2`` and ``S = (L - R) / 2``, so ``L = M + S`` and ``R = M - S``
(unity gain both ways, a mono signal has ``S == 0``). Mono input is its own mid and has no side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tonearm.types import AudioArray

__all__ = ["from_mid_side", "to_mid_side"]


def to_mid_side(audio: AudioArray) -> AudioArray:
    """``[M, S]`` of a stereo signal, or a copy of a mono one; shape ``(channels, frames)``."""
    if audio.shape[0] == 1:
        return audio.copy()
    out = np.empty_like(audio)
    np.add(audio[0], audio[1], out=out[0])
    np.subtract(audio[0], audio[1], out=out[1])
    out *= np.float32(0.5)
    return out


def from_mid_side(mid_side: AudioArray) -> AudioArray:
    """Inverse of :func:`to_mid_side`: ``[M, S]`` back to ``[L, R]`` (mono passes through)."""
    if mid_side.shape[0] == 1:
        return mid_side.copy()
    out = np.empty_like(mid_side)
    np.add(mid_side[0], mid_side[1], out=out[0])
    np.subtract(mid_side[0], mid_side[1], out=out[1])
    return out
