"""WAV files that exist only as a stream: an exact header up front, any byte range on demand.

A stream whose length is known before its audio is rendered (a master keeps its input's length)
can be served as a complete, seekable WAV file: :class:`WavLayout` gives the header with exact
RIFF sizes and the byte length, and :func:`wav_bytes` produces any byte span of that virtual
file, asking a renderer for audio only from the frame the span starts in.

Formats: 16-bit PCM (``pcm16``, TPDF-dithered by
:func:`~tonearm.audio_io.encode.tpdf_dither_quantize`) and 32-bit IEEE float (``float32``: a
level above full scale survives). The dither is
*positional*: frame ``f`` always gets the same noise for a given seed, however the stream was
started or cut (a PCG64 generator advanced by ``f x channels`` draws: each frame draws two
float32 per channel, two float32 per 64-bit output), so a byte range starting mid-file holds
the same bytes as the whole file wherever the audio is the same.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from tonearm.audio_io.encode import tpdf_dither_quantize
from tonearm.errors import EncodeError, ParameterError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tonearm.types import AudioArray

__all__ = ["SampleFormat", "WavLayout", "wav_bytes"]

SampleFormat = Literal["pcm16", "float32"]

_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_IEEE_FLOAT = 3
_MAX_RIFF_BYTES = 2**32 - 1


@dataclass(frozen=True, slots=True)
class WavLayout:
    """The byte layout of a WAV file of ``frames`` frames.

    ``pcm16``: the canonical 44-byte header (RIFF, 16-byte ``fmt``, ``data``). ``float32``: a
    58-byte header (RIFF, 18-byte ``fmt`` with ``cbSize`` 0, ``fact`` with the frame count,
    ``data``), as the WAVE spec asks of non-PCM formats. Samples interleaved, little-endian.

    Raises
    ------
    ParameterError
        Non-positive rate or channels, negative frames, an unknown sample format.
    EncodeError
        More audio than a RIFF file's 32-bit sizes can describe (about 3.4 hours of 44.1 kHz
        stereo float, 6.8 hours of 16-bit).
    """

    sample_rate: int
    channels: int
    frames: int
    sample_format: SampleFormat

    def __post_init__(self) -> None:
        if self.sample_rate < 1 or self.channels < 1 or self.frames < 0:
            raise ParameterError(
                f"a WAV needs a positive rate and channel count and frames >= 0, got "
                f"{self.sample_rate} Hz, {self.channels} channels, {self.frames} frames"
            )
        if self.sample_format not in ("pcm16", "float32"):
            raise ParameterError(f"unknown WAV sample format {self.sample_format!r}")
        if self.total_bytes - 8 > _MAX_RIFF_BYTES:
            raise EncodeError(
                f"{self.frames} frames of {self.channels}-channel {self.sample_format} are too "
                "long for one WAV file (RIFF sizes are 32-bit)"
            )

    @property
    def bytes_per_sample(self) -> int:
        """2 (pcm16) or 4 (float32)."""
        return 2 if self.sample_format == "pcm16" else 4

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (all channels)."""
        return self.bytes_per_sample * self.channels

    @property
    def header_bytes(self) -> int:
        """Bytes before the first sample: 44 (pcm16) or 58 (float32)."""
        return 44 if self.sample_format == "pcm16" else 58

    @property
    def data_bytes(self) -> int:
        """Bytes of audio in the ``data`` chunk."""
        return self.frames * self.frame_bytes

    @property
    def total_bytes(self) -> int:
        """Length of the whole file (even: both sample sizes are even, so no pad byte)."""
        return self.header_bytes + self.data_bytes

    def header(self) -> bytes:
        """The header bytes, with exact RIFF and ``data`` sizes."""
        rate, channels = self.sample_rate, self.channels
        bits = 8 * self.bytes_per_sample
        byte_rate = rate * self.frame_bytes
        if self.sample_format == "pcm16":
            fmt = struct.pack(
                "<HHIIHH", _WAVE_FORMAT_PCM, channels, rate, byte_rate, self.frame_bytes, bits
            )
            chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
        else:
            fmt = struct.pack(
                "<HHIIHHH",
                _WAVE_FORMAT_IEEE_FLOAT,
                channels,
                rate,
                byte_rate,
                self.frame_bytes,
                bits,
                0,
            )
            chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
            chunks += b"fact" + struct.pack("<II", 4, self.frames)
        chunks += b"data" + struct.pack("<I", self.data_bytes)
        header = b"RIFF" + struct.pack("<I", 4 + len(chunks) + self.data_bytes) + b"WAVE" + chunks
        assert len(header) == self.header_bytes
        return header


class _Encoder:
    """Blocks to interleaved little-endian sample bytes, from frame ``first_frame`` on."""

    def __init__(self, layout: WavLayout, *, first_frame: int, dither_seed: int) -> None:
        self._layout = layout
        self._rng: np.random.Generator | None = None
        if layout.sample_format == "pcm16":
            bits = np.random.PCG64(dither_seed)
            bits.advance(first_frame * layout.channels)
            self._rng = np.random.Generator(bits)

    def encode(self, block: AudioArray) -> bytes:
        if block.shape[0] != self._layout.channels:
            raise ParameterError(
                f"expected {self._layout.channels} channel(s), got a block of {block.shape[0]}"
            )
        if self._rng is None:
            return np.ascontiguousarray(block.T, dtype="<f4").tobytes()
        quantised = tpdf_dither_quantize(block, bits=16, rng=self._rng)
        # grid values times 2**15 are exact integers in int16's range
        return np.ascontiguousarray((quantised.T * np.float32(32768.0)).astype("<i2")).tobytes()


def wav_bytes(
    layout: WavLayout,
    render: Callable[[int], Iterator[AudioArray]],
    *,
    start_byte: int = 0,
    stop_byte: int | None = None,
    dither_seed: int = 0,
) -> Iterator[bytes]:
    """Yield bytes ``start_byte`` to ``stop_byte`` (exclusive) of the WAV file ``layout``
    describes, rendering only the audio they cover.

    Parameters
    ----------
    layout : WavLayout
        The file's format and length.
    render : callable
        ``render(first_frame)`` yields float32 ``(channels, n)`` blocks from ``first_frame`` to
        the end (at least as far as the span reaches). It is closed once the span is complete.
    start_byte, stop_byte : int
        The span, ``0 <= start_byte < stop_byte <= layout.total_bytes`` (default: to the end).
    dither_seed : int
        Seed of the positional dither (pcm16).

    Raises
    ------
    ParameterError
        The span is empty or outside the file.
    EncodeError
        ``render`` ran out of audio before the span was complete (the stream is then short).
    """
    stop = layout.total_bytes if stop_byte is None else stop_byte
    if not 0 <= start_byte < stop <= layout.total_bytes:
        raise ParameterError(
            f"byte range {start_byte}..{stop} is not inside the file's {layout.total_bytes} bytes"
        )
    header_len = layout.header_bytes
    if start_byte < header_len:
        yield layout.header()[start_byte : min(stop, header_len)]
    if stop <= header_len:
        return
    audio_start = max(start_byte, header_len) - header_len
    remaining = stop - header_len - audio_start
    first_frame, skip = divmod(audio_start, layout.frame_bytes)
    encoder = _Encoder(layout, first_frame=first_frame, dither_seed=dither_seed)
    blocks = render(first_frame)
    try:
        for block in blocks:
            data = encoder.encode(block)
            if skip:
                data, skip = data[skip:], 0
            if len(data) >= remaining:
                yield data[:remaining]
                return
            yield data
            remaining -= len(data)
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
    raise EncodeError(f"the audio ended {remaining} bytes before the end of the WAV stream")
