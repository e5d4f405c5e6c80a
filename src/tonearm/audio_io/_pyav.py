"""The PyAV (ffmpeg) decode path: M4A/AAC/ALAC, WMA, WebM/MKA, and whatever libsndfile refuses.

Decoded frames are converted by ``av.AudioResampler`` to planar float32 (``fltp``) at the stream's
own rate and a mono or stereo layout, which is already tonearm's ``(channels, frames)`` layout, and
are copied once into fixed-size blocks, so memory stays flat however long the file is.

Length and gapless playback
---------------------------
AAC encoders prepend *priming* samples (1024 for ffmpeg's encoder; Apple's is documented as 2112)
and pad the last packet. What the file says about them decides how exact the decoded length can be:

* MP4/M4A with an edit list (what ffmpeg writes by default). ffmpeg's mov demuxer turns the
  edit's media start into a negative first packet pts (-1024 for ffmpeg's encoder) plus a
  ``skip_samples`` request, and the decoder drops the priming itself: the first decoded frame has
  pts 0. The padding is *not* dropped, so the length has to come from the file:

  - the packets' own timestamps: ``max(pts + duration)`` over all packets. ffmpeg's encoder gives
    the last packet the exact number of real samples it carries, so this end is sample-exact;
    encoders that give every packet a full 1024 make it include the padding.
  - the edit list's segment duration (``stream.duration``). It is stored in the *movie* timescale
    of the ``mvhd`` box, which ffmpeg's muxer sets to 1000 by default: the length is then only
    known to the nearest millisecond (±sr/2000 frames, ±22 at 44.1 kHz). With the sample rate
    as movie timescale (ffmpeg's ``movie_timescale`` option; reportedly Apple's habit) it is exact.

  :func:`mov_length` takes the packet end when the edit duration is longer (the edit cannot add
  samples) or shorter only by what the movie timescale's rounding explains, and the edit duration
  otherwise (it trims encoder padding). ffmpeg-written files come out sample-exact with either
  movie timescale (tested: 44100*3+123 frames in, the same out, aligned to the sample); files
  with full-length last packets and an exact edit list do by construction (untested here: no
  file from another encoder was available).
* MP4 without an edit list: nothing in the file says how many priming samples there are, so they
  stay in the output (1024 extra frames at the start for ffmpeg's encoder); the length is the
  packets' end. No decoder can do better without guessing.
* Other containers (ADTS ``.aac``, Matroska/WebM, ASF/WMA): the container length is not sample
  exact (Matroska counts milliseconds), so :func:`probe_pyav` decodes the stream once and counts.
  ffmpeg applies Opus pre-skip and Matroska ``DiscardPadding`` itself, so Opus in WebM is exact.
  Raw ADTS AAC records neither priming nor padding: both stay in (132423 frames encode to 134144).
"""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
import av.error
import numpy as np

from tonearm.audio_io._common import check_stream_format, nonfinite_error, truncated_error
from tonearm.audio_io._headers import alac_bit_depth, mp4_movie_timescale
from tonearm.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from pathlib import Path

    from tonearm.types import AudioArray

__all__ = [
    "PYAV_EXTENSIONS",
    "NotMediaError",
    "PyavProbe",
    "mov_length",
    "probe_pyav",
    "pyav_blocks",
]

PYAV_EXTENSIONS = frozenset({".m4a", ".mp4", ".aac", ".alac", ".wma", ".webm", ".mka"})
"""Extensions that go straight to PyAV; everything else tries libsndfile first."""

_LOSSLESS_CODECS = frozenset({"alac", "flac", "wmalossless", "tta", "wavpack", "ape", "mlp"})
_LOSSY_PCM = frozenset({"pcm_mulaw", "pcm_alaw"})
_FORMAT_BITS = {"u8": 8, "u8p": 8, "s16": 16, "s16p": 16, "s32": 32, "s32p": 32}
_FORMAT_BITS |= {"flt": 32, "fltp": 32, "dbl": 64, "dblp": 64}
_CODEC_NAMES = {"mp3float": "MP3", "mp3": "MP3", "wmav1": "WMA", "wmav2": "WMA"}
_FFMPEG_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError)


class NotMediaError(DecodeError):
    """ffmpeg could not open the file at all (the caller words the final message)."""


@dataclass(frozen=True, slots=True)
class PyavProbe:
    """What :func:`probe_pyav` learns about a file's first audio stream."""

    sample_rate: int
    channels: int
    frames: int
    container: str
    codec: str
    bit_depth: int | None
    lossy: bool


def _open(path: Path, name: str) -> Any:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except PermissionError:
        raise DecodeError(f"cannot read '{name}': permission denied") from None
    except _FFMPEG_ERRORS:
        raise NotMediaError(f"cannot read '{name}': not an audio file") from None


def _container_name(format_name: str, suffix: str) -> str:
    names = set(format_name.split(","))
    if "mov" in names or "mp4" in names:
        return {".mp4": "MP4", ".mov": "MOV"}.get(suffix, "M4A")
    if "matroska" in names:
        return "WEBM" if suffix == ".webm" else "MKA"
    if "asf" in names:
        return "WMA"
    return format_name.split(",")[0].upper()


def _codec_facts(stream: Any) -> tuple[str, bool, int | None]:
    """Return ``(codec, lossy, bit_depth)`` for an audio stream."""
    cc = stream.codec_context
    name = str(cc.name)
    lossless = name in _LOSSLESS_CODECS or (name.startswith("pcm_") and name not in _LOSSY_PCM)
    codec = _CODEC_NAMES.get(name, name.upper())
    if not lossless:
        return codec, True, None
    depth = alac_bit_depth(cc.extradata) if name == "alac" else None
    if depth is None and cc.format is not None:
        depth = _FORMAT_BITS.get(str(cc.format.name))
    return codec, False, depth


def mov_length(
    *, packet_end: int, edit_frames: int | None, sample_rate: int, movie_timescale: int | None
) -> int:
    """Choose an MP4 track's length from its packet end and its edit-list duration (in frames).

    See the module docstring: the edit duration wins when it is shorter than the packets by more
    than the movie timescale's rounding can explain (it trims encoder padding); otherwise the
    sample-exact packet end wins.
    """
    if edit_frames is None or edit_frames >= packet_end:
        return packet_end
    if movie_timescale is not None and movie_timescale < sample_rate:
        rounding = math.ceil(sample_rate / (2 * movie_timescale))
        if packet_end - edit_frames <= rounding:
            return packet_end
    return edit_frames


def _to_frames(ticks: int, time_base: Fraction, sample_rate: int) -> int:
    return round(ticks * time_base * sample_rate)


def _scan_mov(
    container: Any, stream: Any, *, path: Path, name: str, sample_rate: int, size: int
) -> int:
    """Length of an MP4 audio track from its packet index, without decoding (see module doc)."""
    time_base = Fraction(stream.time_base)
    start: int | None = None
    end: int | None = None
    count = 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        count += 1
        if packet.pts is None or not packet.duration:
            raise DecodeError(f"cannot read '{name}': packets without timestamps")
        start = packet.pts if start is None else min(start, packet.pts)
        stop = packet.pts + packet.duration
        end = stop if end is None else max(end, stop)
    edit = None if stream.duration is None else _to_frames(stream.duration, time_base, sample_rate)
    if start is None or end is None:
        raise DecodeError(f"'{name}' has no audio frames")
    packet_end = _to_frames(end - max(start, 0), time_base, sample_rate)
    declared_packets = int(stream.frames or 0)
    if count < declared_packets:
        declared = edit if edit is not None else packet_end
        raise truncated_error(name, declared=declared, decoded=packet_end)
    with path.open("rb") as fh:
        timescale = mp4_movie_timescale(fh, file_size=size)
    return mov_length(
        packet_end=packet_end,
        edit_frames=edit,
        sample_rate=sample_rate,
        movie_timescale=timescale,
    )


def probe_pyav(path: Path, *, name: str, size: int) -> PyavProbe:
    """Describe the first audio stream of ``path`` with PyAV, with an exact frame count.

    Raises
    ------
    DecodeError
        Not a media file, no audio stream, more than two channels, a sample rate out of range,
        truncated, or no frames.
    """
    with closing(_open(path, name)) as container:
        if not container.streams.audio:
            raise DecodeError(f"cannot read '{name}': no audio stream")
        stream = container.streams.audio[0]
        cc = stream.codec_context
        sample_rate = int(cc.sample_rate or 0)
        channels = int(cc.channels or 0)
        check_stream_format(name, sample_rate=sample_rate, channels=channels)
        codec, lossy, bit_depth = _codec_facts(stream)
        container_name = _container_name(str(container.format.name), path.suffix.lower())
        try:
            if container_name in ("M4A", "MP4", "MOV"):
                frames = _scan_mov(
                    container, stream, path=path, name=name, sample_rate=sample_rate, size=size
                )
            else:
                frames = 0
                for block in _decode_arrays(container, stream, name=name, channels=channels):
                    frames += block.shape[1]
        except _FFMPEG_ERRORS as exc:
            raise DecodeError(f"cannot read '{name}': {exc}") from None
    if frames <= 0:
        raise DecodeError(f"'{name}' has no audio frames")
    return PyavProbe(
        sample_rate=sample_rate,
        channels=channels,
        frames=frames,
        container=container_name,
        codec=codec,
        bit_depth=bit_depth,
        lossy=lossy,
    )


def _decode_arrays(
    container: Any, stream: Any, *, name: str, channels: int
) -> Generator[AudioArray, None, None]:
    """Yield every decoded frame as float32 ``(channels, n)``, in stream order."""
    resampler = av.AudioResampler(
        format="fltp",
        layout="mono" if channels == 1 else "stereo",
        rate=int(stream.codec_context.sample_rate),
    )
    decoded = 0
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                for out in resampler.resample(frame):
                    array = np.asarray(out.to_ndarray(), dtype=np.float32)
                    decoded += array.shape[1]
                    yield array
        for out in resampler.resample(None):
            array = np.asarray(out.to_ndarray(), dtype=np.float32)
            yield array
    except _FFMPEG_ERRORS as exc:
        raise DecodeError(
            f"'{name}' is corrupt or truncated: decoding failed after {decoded} frames ({exc})"
        ) from None


def pyav_blocks(
    path: Path,
    *,
    name: str,
    channels: int,
    frames: int,
    block_frames: int,
    start_frame: int = 0,
) -> Iterator[AudioArray]:
    """Decode ``path`` with PyAV into float32 ``(channels, block_frames)`` blocks.

    Frames ``start_frame`` to ``frames`` are produced (those before ``start_frame`` are decoded
    and dropped, encoder padding beyond ``frames`` is dropped); the last block may be shorter.
    Decoding fewer raises :class:`DecodeError` before the short last block.
    """
    if start_frame >= frames:
        return
    with closing(_open(path, name)) as container:
        stream = container.streams.audio[0]
        arrays = _decode_arrays(container, stream, name=name, channels=channels)
        with closing(arrays):
            yield from _assemble(
                _skip(arrays, start_frame),
                name=name,
                channels=channels,
                frames=frames - start_frame,
                block_frames=block_frames,
                offset=start_frame,
            )


def _skip(arrays: Iterator[AudioArray], frames: int) -> Iterator[AudioArray]:
    """The decoded arrays less their first ``frames`` frames."""
    for array in arrays:
        if frames >= array.shape[1]:
            frames -= array.shape[1]
            continue
        yield array[:, frames:] if frames else array
        frames = 0


def _assemble(
    arrays: Iterator[AudioArray],
    *,
    name: str,
    channels: int,
    frames: int,
    block_frames: int,
    offset: int = 0,
) -> Iterator[AudioArray]:
    """Copy decoded frames into fresh blocks, stopping at ``frames`` (``offset`` frames of the
    stream were skipped before them: error messages count from the stream's start).

    Each block is allocated at its final size (the last one at the remainder), so nothing is
    sliced or copied twice.
    """
    remaining = frames
    block = np.empty((channels, min(block_frames, remaining)), dtype=np.float32)
    fill = 0
    for array in arrays:
        n = min(array.shape[1], remaining - fill)
        start = 0
        while start < n:
            take = min(block.shape[1] - fill, n - start)
            block[:, fill : fill + take] = array[:, start : start + take]
            fill += take
            start += take
            if fill == block.shape[1]:
                _check_finite(block, name)
                yield block
                remaining -= fill
                if remaining == 0:
                    return
                fill = 0
                block = np.empty((channels, min(block_frames, remaining)), dtype=np.float32)
    raise truncated_error(
        name, declared=offset + frames, decoded=offset + frames - remaining + fill
    )


def _check_finite(block: AudioArray, name: str) -> None:
    if not np.isfinite(block).all():
        raise nonfinite_error(name)
