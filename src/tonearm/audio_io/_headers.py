"""Small, bounded parsers for the few container header fields that libsndfile and PyAV hide.

Each function reads a handful of bytes from an open binary file, never the audio data, and returns
``None`` when the file does not look like what it expects (the caller then falls back to the
decoder's own answer). Nothing here raises on malformed input except ``OSError`` from the reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "DataChunk",
    "aiff_declared_frames",
    "alac_bit_depth",
    "mp3_has_frame_count",
    "mp4_movie_timescale",
    "wav_data_chunk",
]

_MAX_CHUNKS = 256
"""Upper bound on the chunks/boxes walked, so a hostile file cannot make a parser spin."""

_UNKNOWN_DATA_SIZES = frozenset({0, 0xFFFFFFFF})
"""Data chunk sizes that streaming writers use for "length unknown"; libsndfile then uses the
file length, and so must we, rather than calling the file truncated."""


@dataclass(frozen=True, slots=True)
class DataChunk:
    """Where a WAV ``data`` chunk says it ends and how many of its bytes are really there."""

    declared_bytes: int
    present_bytes: int


def wav_data_chunk(fh: BinaryIO, *, file_size: int) -> DataChunk | None:
    """Read the declared size of a RIFF/RIFX WAVE ``data`` chunk and the bytes present after it.

    Returns ``None`` for anything that is not a plain RIFF/RIFX WAVE file (RF64, W64 and the like)
    and for the "unknown length" sizes 0 and 0xFFFFFFFF.
    """
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE":
        return None
    if head[:4] == b"RIFF":
        endian = "<"
    elif head[:4] == b"RIFX":
        endian = ">"
    else:
        return None
    pos = 12
    for _ in range(_MAX_CHUNKS):
        fh.seek(pos)
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        (size,) = struct.unpack(endian + "I", chunk[4:8])
        if chunk[:4] == b"data":
            if size in _UNKNOWN_DATA_SIZES:
                return None
            return DataChunk(declared_bytes=size, present_bytes=max(0, file_size - pos - 8))
        pos += 8 + size + (size & 1)
    return None


def aiff_declared_frames(fh: BinaryIO) -> int | None:
    """Return ``numSampleFrames`` from the ``COMM`` chunk of an AIFF/AIFF-C file, else ``None``."""
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    pos = 12
    for _ in range(_MAX_CHUNKS):
        fh.seek(pos)
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        (size,) = struct.unpack(">I", chunk[4:8])
        if chunk[:4] == b"COMM":
            body = fh.read(6)
            if len(body) < 6:
                return None
            (frames,) = struct.unpack(">I", body[2:6])
            return int(frames)
        pos += 8 + size + (size & 1)
    return None


# MPEG audio frame header fields (ISO 11172-3 / 13818-3).
_MPEG_VERSION_1 = 3
_MPEG_VERSION_RESERVED = 1
_MPEG_MODE_MONO = 3
_SYNC_SEARCH_BYTES = 64 * 1024


def mp3_has_frame_count(fh: BinaryIO) -> bool:
    """Tell whether an MP3 starts with a Xing/Info or VBRI header that carries a frame count.

    libmpg123 (behind libsndfile) takes the length from that header, exactly, and with a LAME tag
    trims the encoder delay and padding. Without it the length is an estimate from the file size.
    """
    fh.seek(0)
    head = fh.read(10)
    offset = 0
    if len(head) == 10 and head[:3] == b"ID3":
        size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7
        size |= head[9] & 0x7F
        offset = 10 + size + (10 if head[5] & 0x10 else 0)
    fh.seek(offset)
    buf = fh.read(_SYNC_SEARCH_BYTES)
    for i in range(max(0, len(buf) - 4)):
        b1 = buf[i + 1]
        if buf[i] != 0xFF or b1 & 0xE0 != 0xE0:
            continue
        version = (b1 >> 3) & 3
        layer = (b1 >> 1) & 3
        bitrate_index = buf[i + 2] >> 4
        rate_index = (buf[i + 2] >> 2) & 3
        if version == _MPEG_VERSION_RESERVED or layer == 0 or bitrate_index == 15:
            continue
        if rate_index == 3:
            continue
        mono = (buf[i + 3] >> 6) & 3 == _MPEG_MODE_MONO
        side_info = (17 if mono else 32) if version == _MPEG_VERSION_1 else (9 if mono else 17)
        xing = i + 4 + side_info
        tag = buf[xing : xing + 8]
        if len(tag) == 8 and tag[:4] in (b"Xing", b"Info"):
            return bool(tag[7] & 1)
        return buf[i + 36 : i + 40] == b"VBRI"
    return False


def mp4_movie_timescale(fh: BinaryIO, *, file_size: int) -> int | None:
    """Return the ``mvhd`` timescale of an ISO-BMFF (MP4/M4A) file, the unit of its edit lists."""
    moov = _find_box(fh, b"moov", start=0, end=file_size)
    if moov is None:
        return None
    mvhd = _find_box(fh, b"mvhd", start=moov[0], end=moov[1])
    if mvhd is None:
        return None
    fh.seek(mvhd[0])
    body = fh.read(24)
    if len(body) < 24:
        return None
    version = body[0]
    at = 20 if version == 1 else 12
    (timescale,) = struct.unpack(">I", body[at : at + 4])
    return int(timescale) or None


def _find_box(fh: BinaryIO, kind: bytes, *, start: int, end: int) -> tuple[int, int] | None:
    """Return ``(body_start, body_end)`` of the first box of type ``kind`` in ``[start, end)``."""
    pos = start
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > end:
            return None
        fh.seek(pos)
        head = fh.read(16)
        if len(head) < 8:
            return None
        (size,) = struct.unpack(">I", head[:4])
        header = 8
        if size == 1:
            if len(head) < 16:
                return None
            (size,) = struct.unpack(">Q", head[8:16])
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return None
        if head[4:8] == kind:
            return pos + header, min(pos + size, end)
        pos += size
    return None


def alac_bit_depth(extradata: bytes | None) -> int | None:
    """Return the bit depth stored in an ALAC magic cookie (the ``alac`` atom), else ``None``."""
    if extradata is None or len(extradata) < 24 or extradata[4:8] != b"alac":
        return None
    depth = extradata[17]
    return int(depth) if depth in (16, 20, 24, 32) else None
