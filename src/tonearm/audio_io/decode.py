"""Decode audio files into tonearm's float32 ``(channels, frames)`` layout, whole or streamed.

:class:`AudioReader` probes the file first (so a truncated WAV/AIFF/FLAC/MP3/MP4, a 6-channel file
or a non-audio file fails before anything is produced), then decodes with libsndfile or PyAV:

* libsndfile files are read block by block with ``sf_readf_float`` into one reused interleaved
  buffer and transposed into a fresh ``(channels, n)`` block (mono needs no transpose: it is read
  straight into its block). That is all the overhead there is over ``SoundFile.blocks``, minus
  the seek soundfile performs after every read, which for MP3 made the decoded samples depend
  on the block size (see :func:`~tonearm.audio_io.probe.read_frames_into`).
* PyAV files are decoded packet by packet and copied once into fixed-size blocks (see
  :mod:`tonearm.audio_io._pyav` for how encoder priming and padding are trimmed).

Both paths keep memory flat: one block (plus one decoded packet for PyAV) at a time.

``blocks(start_frame=N)`` yields exactly what ``blocks()`` yields from frame ``N`` on, bit for bit:

* lossless libsndfile files (PCM, FLAC, AIFF) seek straight to ``N``;
* lossy libsndfile files (MP3, Vorbis, Opus) seek to :data:`LOSSY_SEEK_MARGIN_S` before ``N`` and
  decode up to it. libmpg123 seeks with a short pre-roll of its own that the bit reservoir
  sometimes outlasts: about 1 seek in 100 then differs from the straight decode by up to 1e-4
  for ~2,000 frames. With four MP3 frames (4608 samples) of margin every tested seek was exact
  (MP3, Vorbis and Opus, hundreds of positions); the margin used is far longer and costs about a
  millisecond of decoding;
* PyAV files decode from the start and drop the frames before ``N`` (exact by construction; a
  container seek cannot be trusted to reproduce the AAC priming trim sample-exactly).

Damage found only while decoding (a FLAC whose last frame decodes but whose middle does not, an
MP4 cut inside its last packet, an MP3 whose frames are corrupt) raises :class:`DecodeError` at
the block where it is found; a float file with NaN or Inf samples likewise. The check for
non-finite samples runs on every block of float, lossy and PyAV sources; integer PCM cannot hold
them and skips it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import soundfile as sf

from tonearm.audio_io._common import corrupt_error, nonfinite_error, truncated_error
from tonearm.audio_io._pyav import pyav_blocks
from tonearm.audio_io.probe import AudioInfo, open_audio, read_frames_into, reopen_soundfile
from tonearm.errors import DecodeError, ParameterError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from tonearm.types import AudioArray

__all__ = ["AudioReader", "DecodedAudio", "iter_blocks", "read_audio"]

DEFAULT_BLOCK_FRAMES = 65536
LOSSY_SEEK_MARGIN_S = 1.0
"""Lossy libsndfile files seek this far before a start frame and decode up to it."""
_MIN_LOSSY_SEEK_MARGIN_FRAMES = 18432  # 16 MP3 frames, whatever the rate
_READ_BLOCK_FRAMES = 1 << 18
_FLOAT_CODECS = frozenset({"FLOAT", "DOUBLE"})


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A whole decoded file.

    Attributes
    ----------
    audio : AudioArray
        float32, shape ``(channels, frames)``.
    sample_rate : int
        In Hz.
    info : AudioInfo
        What :func:`~tonearm.audio_io.probe.probe` reported.
    """

    audio: AudioArray
    sample_rate: int
    info: AudioInfo


class AudioReader:
    """Open an audio file for whole or streaming decode; use as a context manager.

    Parameters
    ----------
    path : str or os.PathLike
        The input file.
    info : AudioInfo, optional
        What :func:`~tonearm.audio_io.probe.probe` already found for this file in this run.
        Given, the reader trusts it and skips the probe (the truncation checks seek to the end
        of the file, tens of milliseconds for a long FLAC); decoding still raises on damage.

    Raises
    ------
    DecodeError
        Everything :func:`~tonearm.audio_io.probe.probe` raises, on construction.

    Notes
    -----
    One reader serves one thread; open one reader per thread to decode in parallel. Each call to
    :meth:`blocks` or :meth:`read` starts again (at the first frame, or the ``start_frame`` asked
    for); do not interleave two iterations of one reader.
    """

    def __init__(self, path: str | os.PathLike[str], *, info: AudioInfo | None = None) -> None:
        self._name = os.fspath(path)
        if info is not None and info.decoder == "soundfile":
            self._info = info
            self._handle: sf.SoundFile | None = reopen_soundfile(info.path, self._name)
        elif info is not None:
            self._info, self._handle = info, None
        else:
            self._info, self._handle = open_audio(path)
        self._fresh = True
        self._closed = False
        info = self._info
        self._check_finite = info.decoder == "pyav" or info.lossy or info.codec in _FLOAT_CODECS

    @property
    def info(self) -> AudioInfo:
        """What the probe found (``info.frames`` is exactly what will be decoded)."""
        return self._info

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file; safe to call more than once."""
        self._closed = True
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def blocks(
        self, *, block_frames: int = DEFAULT_BLOCK_FRAMES, start_frame: int = 0
    ) -> Iterator[AudioArray]:
        """Yield the file as float32 ``(channels, n)`` blocks, from ``start_frame`` on.

        Parameters
        ----------
        block_frames : int
            Frames per block (>= 1); every block has exactly this many except the last.
        start_frame : int
            First frame to yield, ``0 <= start_frame <= info.frames`` (at ``info.frames`` nothing
            is yielded). The samples are exactly those of ``blocks()`` from that frame on (see
            the module docstring for how each decoder gets there).

        Yields
        ------
        AudioArray
            A new array each time (the caller may keep it).

        Raises
        ------
        ParameterError
            ``block_frames`` or ``start_frame`` out of range.
        DecodeError
            At the block where the file turns out truncated or corrupt, or holds NaN/Inf.
        """
        if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
            raise ParameterError(f"block_frames must be a positive integer, got {block_frames!r}")
        if (
            isinstance(start_frame, bool)
            or not isinstance(start_frame, int)
            or not 0 <= start_frame <= self._info.frames
        ):
            raise ParameterError(
                f"start_frame must be an integer in 0..{self._info.frames}, got {start_frame!r}"
            )
        self._check_open()
        if self._handle is None:
            return pyav_blocks(
                self._info.path,
                name=self._name,
                channels=self._info.channels,
                frames=self._info.frames,
                block_frames=block_frames,
                start_frame=start_frame,
            )
        return self._soundfile_blocks(block_frames, start_frame)

    def read(self) -> AudioArray:
        """Decode the whole file into one float32 ``(channels, frames)`` array.

        Raises
        ------
        DecodeError
            As :meth:`blocks`.
        """
        self._check_open()
        out = np.empty((self._info.channels, self._info.frames), dtype=np.float32)
        pos = 0
        if self._handle is None:
            for block in self.blocks(block_frames=_READ_BLOCK_FRAMES):
                out[:, pos : pos + block.shape[1]] = block
                pos += block.shape[1]
        else:
            for interleaved in self._soundfile_chunks(_READ_BLOCK_FRAMES, reuse=True):
                n = interleaved.shape[0]
                out[:, pos : pos + n] = interleaved.T
                pos += n
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise DecodeError(f"cannot read '{self._name}': the reader is closed")

    def _soundfile_blocks(self, block_frames: int, start_frame: int) -> Iterator[AudioArray]:
        if self._info.channels == 1:
            # A fresh (n, 1) buffer per block: its transpose is already C-contiguous (1, n).
            for mono in self._soundfile_chunks(block_frames, reuse=False, start_frame=start_frame):
                yield mono.T
        else:
            chunks = self._soundfile_chunks(block_frames, reuse=True, start_frame=start_frame)
            for interleaved in chunks:
                yield interleaved.T.copy()

    def _soundfile_seek(self, handle: sf.SoundFile, start_frame: int) -> None:
        """Put a fresh ``handle`` at ``start_frame`` so that it decodes as if read from 0."""
        info = self._info
        margin = 0
        if info.lossy:
            margin = max(
                round(LOSSY_SEEK_MARGIN_S * info.sample_rate), _MIN_LOSSY_SEEK_MARGIN_FRAMES
            )
        seek_to = max(0, start_frame - margin)
        try:
            if seek_to > 0:
                handle.seek(seek_to)
            scratch = np.empty((min(start_frame - seek_to, 16384), info.channels), np.float32)
            skipped = seek_to
            while skipped < start_frame:
                want = min(scratch.shape[0], start_frame - skipped)
                count = read_frames_into(handle, scratch[:want])
                if count < want:
                    raise truncated_error(self._name, declared=info.frames, decoded=skipped + count)
                skipped += want
        except (sf.SoundFileError, RuntimeError) as exc:
            raise corrupt_error(
                self._name, decoded=seek_to, declared=info.frames, reason=str(exc)
            ) from None

    def _soundfile_chunks(
        self, block_frames: int, *, reuse: bool, start_frame: int = 0
    ) -> Iterator[npt.NDArray[np.float32]]:
        """Yield interleaved ``(n, channels)`` chunks from ``start_frame``; with ``reuse`` they
        share one buffer."""
        handle = self._handle
        assert handle is not None
        if not self._fresh:
            # Reopen rather than seek(0): after a libmpg123 seek an MP3 can decode slightly
            # differently than straight through (see read_frames_into).
            handle.close()
            handle = self._handle = reopen_soundfile(self._info.path, self._name)
        self._fresh = False
        frames = self._info.frames
        channels = self._info.channels
        if start_frame:
            self._soundfile_seek(handle, start_frame)
        shared = (
            np.empty((max(1, min(block_frames, frames - start_frame)), channels), dtype=np.float32)
            if reuse
            else None
        )
        done = start_frame
        while done < frames:
            want = min(block_frames, frames - done)
            target = shared[:want] if shared is not None else np.empty((want, channels), np.float32)
            try:
                count = read_frames_into(handle, target)
            except (sf.SoundFileError, RuntimeError) as exc:
                raise corrupt_error(
                    self._name, decoded=done, declared=frames, reason=str(exc)
                ) from None
            if count < want:
                raise truncated_error(self._name, declared=frames, decoded=done + count)
            got = target
            if self._check_finite and not np.isfinite(got).all():
                raise nonfinite_error(self._name)
            done += want
            yield got


def read_audio(path: str | os.PathLike[str]) -> DecodedAudio:
    """Decode a whole file.

    Parameters
    ----------
    path : str or os.PathLike
        The input file.

    Returns
    -------
    DecodedAudio
        The float32 ``(channels, frames)`` audio, its sample rate and the probe's info.

    Raises
    ------
    DecodeError
        As :class:`AudioReader`.
    """
    with AudioReader(path) as reader:
        audio = reader.read()
        return DecodedAudio(audio=audio, sample_rate=reader.info.sample_rate, info=reader.info)


def iter_blocks(
    path: str | os.PathLike[str], *, block_frames: int = DEFAULT_BLOCK_FRAMES
) -> Iterator[AudioArray]:
    """Yield a file's float32 ``(channels, n)`` blocks, opening and closing it around the loop.

    Parameters
    ----------
    path : str or os.PathLike
        The input file.
    block_frames : int
        Frames per block; all blocks but the last have exactly this many.

    Raises
    ------
    DecodeError
        As :meth:`AudioReader.blocks` (the probe's errors surface at the first ``next()``).
    """
    with AudioReader(path) as reader:
        yield from reader.blocks(block_frames=block_frames)
