"""Describe an audio file, and reject the ones tonearm cannot master, before anything is decoded.

:func:`probe` opens the file with libsndfile (through soundfile) or, for MP4-family and other
ffmpeg-only formats, with PyAV, and returns an :class:`AudioInfo` whose ``frames`` is exactly the
number of frames :class:`~tonearm.audio_io.decode.AudioReader` will produce.

What libsndfile 1.2.2 does with damaged or unusual files (measured, and why probe checks more)
-------------------------------------------------------------------------------------------------
* **Truncated WAV**: opens without complaint and reports the frames actually present (its log says
  ``data : 529692 (should be 353113)``); reading then ends early, silently. A cut inside a frame is
  rounded down. Probe therefore walks the RIFF chunks itself and compares the ``data`` chunk's
  declared size with the bytes present (sizes 0 and 0xFFFFFFFF mean "written as a stream, length
  unknown" and are accepted).
* **Truncated AIFF**: the same, ``frames`` follows the bytes present; probe compares it with the
  ``COMM`` chunk's ``numSampleFrames``.
* **Truncated FLAC**: ``frames`` is STREAMINFO's total, so it looks complete, and reading raises
  ``flac decoder lost sync`` where the data stops. Probe seeks to the last frame and reads it,
  which fails at once (``psf_fseek() failed``) on a cut file and costs about a millisecond.
  A FLAC whose STREAMINFO leaves the total at 0 (a streamed encode) is reported by libsndfile as
  ``SF_COUNT_MAX`` frames and cannot be read through soundfile; it goes to PyAV instead.
* **MP3** (libmpg123 with ``MPG123_GAPLESS``): when the first frame carries a Xing/Info (or VBRI)
  header with a frame count, the length comes from it and, with a LAME tag, the encoder delay and
  padding are trimmed: a 132423-frame signal written by libsndfile's or ffmpeg's LAME decodes to
  exactly 132423 frames (gapless). Without such a header the reported length is an estimate from
  the file size (134062 for 133632 decodable frames in one test) and nothing is trimmed, so probe
  decodes the file once to count its frames (about 0.05 s per minute of audio). A truncated MP3
  with a Xing header still reports the header's count, so probe seeks to the last frame: on a cut
  file the read there returns nothing. A truncated MP3 *without* a header is indistinguishable
  from a shorter one.
* **OGG Vorbis/Opus**: the length comes from the last page's granule position and the Opus
  pre-skip is honoured; both round-trip to the exact frame count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf

from tonearm.audio_io._common import (
    check_input_file,
    check_stream_format,
    display_name,
    truncated_error,
)
from tonearm.audio_io._headers import aiff_declared_frames, mp3_has_frame_count, wav_data_chunk
from tonearm.audio_io._pyav import PYAV_EXTENSIONS, NotMediaError, probe_pyav
from tonearm.errors import DecodeError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["AudioInfo", "probe"]

_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
_BITS |= {"FLOAT": 32, "DOUBLE": 64, "ALAC_16": 16, "ALAC_20": 20, "ALAC_24": 24, "ALAC_32": 32}
_BYTES_PER_SAMPLE = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4}
_BYTES_PER_SAMPLE |= {"FLOAT": 4, "DOUBLE": 8}
_CONTAINERS = {"WAVEX": "WAV"}
_CODECS = {"MPEG_LAYER_III": "MP3", "MPEG_LAYER_II": "MP2", "MPEG_LAYER_I": "MP1"}
_UNKNOWN_LENGTH = 2**62
"""libsndfile reports ``SF_COUNT_MAX`` (2**63 - 1) frames when it does not know the length."""
_COUNT_BLOCK = 16384


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What tonearm knows about an input file before decoding it.

    Attributes
    ----------
    path : Path
        The file, as given (not resolved).
    sample_rate : int
        Frames per second, in Hz (8000-192000).
    channels : int
        1 or 2.
    frames : int
        Exactly the number of frames the decoder produces (encoder delay and padding excluded
        where the file records them).
    duration_s : float
        ``frames / sample_rate``, in seconds.
    container : str
        ``"WAV"``, ``"FLAC"``, ``"AIFF"``, ``"OGG"``, ``"MP3"``, ``"M4A"``, ``"MP4"``, ...
    codec : str
        ``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ``"FLAC"``, ``"VORBIS"``, ``"OPUS"``, ``"MP3"``,
        ``"AAC"``, ``"ALAC"``, ...
    bit_depth : int or None
        Bits per sample of lossless sources (32 for float); ``None`` for lossy ones.
    lossy : bool
        Whether the codec is lossy.
    decoder : {"soundfile", "pyav"}
        Which library decodes it.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    container: str
    codec: str
    bit_depth: int | None
    lossy: bool
    decoder: Literal["soundfile", "pyav"]


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Describe an audio file and check that tonearm can master it.

    Parameters
    ----------
    path : str or os.PathLike
        The input file. ``.m4a .mp4 .aac .alac .wma .webm .mka`` go to PyAV; everything else to
        libsndfile, with PyAV as the fallback when libsndfile cannot open it.

    Returns
    -------
    AudioInfo
        With an exact frame count (see the module docstring for how it is established).

    Raises
    ------
    DecodeError
        One line naming the file: it does not exist, is a directory, is unreadable, is empty, is
        not audio, has no frames, has more than two channels, has a sample rate outside
        8000-192000 Hz, or is truncated (WAV, AIFF, FLAC, MP3 with a Xing header, MP4).
    """
    info, handle = open_audio(path)
    if handle is not None:
        handle.close()
    return info


def open_audio(path: str | os.PathLike[str]) -> tuple[AudioInfo, sf.SoundFile | None]:
    """Probe ``path`` and return its info plus, for libsndfile files, the open handle at frame 0.

    The caller owns the handle and must close it. PyAV files return ``None`` (the reader opens
    its own container). The handle is a fresh one, not the probing handle rewound: the checks
    seek, and libmpg123's seeks re-decode from an earlier frame with a short pre-roll, so an MP3
    decoded after a seek can differ slightly from a straight decode (see
    :func:`read_frames_into`). Decoding always starts from a newly opened file instead.
    """
    file, size = check_input_file(path)
    name = display_name(path)
    refusal: str | None = None
    if file.suffix.lower() not in PYAV_EXTENSIONS:
        try:
            handle = sf.SoundFile(os.fsencode(file))  # bytes: any file name, UTF-8 or not
        except sf.LibsndfileError as exc:
            refusal = _refusal(exc, name)
        except (sf.SoundFileError, OSError, RuntimeError) as exc:
            refusal = str(exc)
        else:
            with handle:
                info = _soundfile_info(handle, file, name, size)
            if info is not None:
                return info, reopen_soundfile(file, name)
    try:
        found = probe_pyav(file, name=name, size=size)
    except NotMediaError:
        if refusal is None or refusal == "Format not recognised.":
            raise DecodeError(f"cannot read '{name}': not an audio file") from None
        reason = " ".join(refusal.split()).rstrip(".")
        raise DecodeError(f"cannot read '{name}': not a valid audio file ({reason})") from None
    info = AudioInfo(
        path=file,
        sample_rate=found.sample_rate,
        channels=found.channels,
        frames=found.frames,
        duration_s=found.frames / found.sample_rate,
        container=found.container,
        codec=found.codec,
        bit_depth=found.bit_depth,
        lossy=found.lossy,
        decoder="pyav",
    )
    return info, None


def _refusal(exc: sf.LibsndfileError, name: str) -> str:
    """Return libsndfile's reason for refusing a file, or raise for a permission problem."""
    reason = str(getattr(exc, "error_string", "") or exc)
    if "Permission denied" in reason:
        raise DecodeError(f"cannot read '{name}': permission denied") from None
    return reason


def _soundfile_info(handle: sf.SoundFile, file: Path, name: str, size: int) -> AudioInfo | None:
    """Build and check the info of a file libsndfile opened; ``None`` hands it to PyAV."""
    frames = int(handle.frames)
    if frames >= _UNKNOWN_LENGTH or not handle.seekable():
        return None
    sample_rate = int(handle.samplerate)
    channels = int(handle.channels)
    check_stream_format(name, sample_rate=sample_rate, channels=channels)
    container = _CONTAINERS.get(handle.format, handle.format)
    subtype = str(handle.subtype)
    codec = "FLAC" if container == "FLAC" else _CODECS.get(subtype, subtype)
    bit_depth = _BITS.get(subtype)
    if frames == 0:
        raise DecodeError(f"'{name}' has no audio frames")
    with file.open("rb") as fh:
        if container == "WAV":
            _check_wav(fh, name, size=size, frames=frames, channels=channels, subtype=subtype)
        elif container == "AIFF":
            declared = aiff_declared_frames(fh)
            if declared is not None and declared > frames:
                raise truncated_error(name, declared=declared, decoded=frames)
        elif container == "MP3" and not mp3_has_frame_count(fh):
            frames = _count_or_raise(handle, name, declared=None)
        elif container in ("FLAC", "MP3"):
            _check_tail(handle, file, name, frames=frames)
    if frames == 0:
        raise DecodeError(f"'{name}' has no audio frames")
    return AudioInfo(
        path=file,
        sample_rate=sample_rate,
        channels=channels,
        frames=frames,
        duration_s=frames / sample_rate,
        container=container,
        codec=codec,
        bit_depth=bit_depth,
        lossy=bit_depth is None,
        decoder="soundfile",
    )


def _check_wav(
    fh: BinaryIO, name: str, *, size: int, frames: int, channels: int, subtype: str
) -> None:
    """Raise if the WAV ``data`` chunk is shorter than its header says."""
    chunk = wav_data_chunk(fh, file_size=size)
    if chunk is None or chunk.present_bytes >= chunk.declared_bytes:
        return
    width = _BYTES_PER_SAMPLE.get(subtype)
    if width is None:
        raise DecodeError(
            f"'{name}' is truncated: header says {chunk.declared_bytes} bytes of audio, only "
            f"{chunk.present_bytes} are present"
        )
    raise truncated_error(name, declared=chunk.declared_bytes // (width * channels), decoded=frames)


def _check_tail(handle: sf.SoundFile, file: Path, name: str, *, frames: int) -> None:
    """Read the last frame; if that fails, count what decodes and raise.

    A failed seek leaves libsndfile's FLAC decoder unusable, so the count uses a fresh handle.
    """
    try:
        handle.seek(frames - 1)
        # read_frames_into, not handle.read: soundfile's read() adds three tell() calls, each a
        # seek, which for FLAC costs tens of milliseconds on a long file
        if read_frames_into(handle, np.empty((1, handle.channels), dtype=np.float32)) == 1:
            return
    except (sf.SoundFileError, RuntimeError):
        pass
    with reopen_soundfile(file, name) as fresh:
        count = _count_or_raise(fresh, name, declared=frames)
    raise DecodeError(
        f"'{name}' is corrupt: its last frame cannot be read although {count} frames decode"
    )


def _count_or_raise(handle: sf.SoundFile, name: str, *, declared: int | None) -> int:
    """Decode from the current position (the start) and count frames; a shortfall raises."""
    buffer = np.empty((_COUNT_BLOCK, handle.channels), dtype=np.float32)
    count = 0
    failure: str | None = None
    while True:
        try:
            got = read_frames_into(handle, buffer)
        except (sf.SoundFileError, RuntimeError) as exc:
            failure = str(exc)
            break
        count += got
        if got < _COUNT_BLOCK:
            break
    if declared is not None and count < declared:
        raise truncated_error(name, declared=declared, decoded=count)
    if failure is not None:
        reason = " ".join(failure.split()).rstrip(".")
        raise DecodeError(f"'{name}' is corrupt: decoding failed after {count} frames ({reason})")
    return count


def read_frames_into(handle: sf.SoundFile, out: npt.NDArray[np.float32]) -> int:
    """Fill C-contiguous float32 ``out`` of shape ``(n, channels)`` from ``handle``; return frames.

    This is libsndfile's ``sf_readf_float`` without what ``SoundFile.read`` adds: after every
    read soundfile seeks to the position it just reached. For libmpg123 that seek is not a no-op
    (it re-decodes from an earlier frame with a short pre-roll), so the samples after each block
    boundary come out slightly different (about 1e-7 absolute, for a few thousand frames) and the
    decode would depend on the block size. Reading straight through gives one continuous,
    block-size-independent decode, and is faster. Falls back to ``SoundFile.read`` if soundfile's
    internals ever change.

    Raises
    ------
    soundfile.LibsndfileError
        When libsndfile reports an error (e.g. ``flac decoder lost sync``).
    """
    snd = getattr(sf, "_snd", None)
    ffi = getattr(sf, "_ffi", None)
    file = getattr(handle, "_file", None)
    if snd is None or ffi is None or file is None:
        return int(handle.read(out=out).shape[0])
    if not out.flags.c_contiguous or out.dtype != np.float32:
        raise ValueError("out must be C-contiguous float32")
    pointer = ffi.cast("float *", out.__array_interface__["data"][0])
    frames = int(snd.sf_readf_float(file, pointer, out.shape[0]))
    code = int(snd.sf_error(file))
    if code:
        raise sf.LibsndfileError(code)
    return frames


def reopen_soundfile(file: Path, name: str) -> sf.SoundFile:
    """Open ``file`` again with libsndfile, at frame 0 with a fresh decoder state."""
    try:
        return sf.SoundFile(os.fsencode(file))
    except (sf.SoundFileError, OSError, RuntimeError) as exc:
        reason = " ".join(str(exc).split()).rstrip(".")
        raise DecodeError(f"cannot read '{name}': {reason}") from None
