"""The one channel-layout rule and its validator.

Inside tonearm every audio buffer is a float32 ``numpy.ndarray`` of shape ``(channels, frames)``:
channels first, time on the last axis, one or two channels. Decoders convert to this layout at the
edge (``tonearm.audio_io``) and encoders convert back; nothing in between ever sees another layout.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from tonearm.errors import ParameterError

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "AudioArray",
    "validate_audio",
    "validate_block",
    "validate_channels",
]

AudioArray: TypeAlias = npt.NDArray[np.float32]
"""float32 array of shape ``(channels, frames)``."""

MAX_CHANNELS = 2
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000


def validate_audio(
    audio: object, *, sample_rate: int | None = None, check_finite: bool = True
) -> AudioArray:
    """Check that ``audio`` follows the layout rule and return it unchanged.

    Parameters
    ----------
    audio : ndarray, shape (channels, frames), float32
        One or two channels. Zero frames are allowed here; callers that need sound check that.
    sample_rate : int, optional
        If given, must lie in [8000, 192000] Hz.
    check_finite : bool
        Reject NaN and Inf samples (the default).

    Raises
    ------
    ParameterError
        With a message that says what was expected and what arrived.
    """
    if not isinstance(audio, np.ndarray):
        raise ParameterError(f"expected a numpy array, got {type(audio).__name__}")
    if audio.dtype != np.float32:
        raise ParameterError(f"expected float32 audio, got {audio.dtype}")
    if audio.ndim != 2:
        raise ParameterError(f"expected shape (channels, frames), got {audio.shape}")
    if not 1 <= audio.shape[0] <= MAX_CHANNELS:
        raise ParameterError(
            f"expected 1 or 2 channels, got {audio.shape[0]} (shape {audio.shape}; "
            "is the array transposed?)"
        )
    if sample_rate is not None and not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ParameterError(
            f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    if check_finite and audio.size and not np.isfinite(audio).all():
        raise ParameterError("audio contains NaN or Inf samples")
    return audio


def validate_channels(channels: object) -> int:
    """Check a channel count (1 or 2) for a stream processor and return it."""
    if isinstance(channels, bool) or not isinstance(channels, int):
        raise ParameterError(f"channels must be 1 or {MAX_CHANNELS}, got {channels!r}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ParameterError(f"channels must be 1 or {MAX_CHANNELS}, got {channels!r}")
    return channels


def validate_block(block: object, *, channels: int) -> AudioArray:
    """:func:`validate_audio`, plus the channel count a stream processor was built for."""
    audio = validate_audio(block)
    if audio.shape[0] != channels:
        raise ParameterError(
            f"expected a block with {channels} channel(s), got shape {audio.shape}"
        )
    return audio
