"""Write float32 ``(channels, frames)`` audio to WAV, FLAC, AIFF, MP3, OGG Vorbis or OGG Opus.

The output format follows the extension (:func:`output_format_for`). :class:`AtomicAudioWriter`
streams blocks into a hidden temporary file in the output's own folder and renames it into place
only when everything has been written, so a failed or interrupted master never leaves a partial
file and never touches a previous output before the rename.

Formats and settings
--------------------
========  ===========================  ================================================
suffix    written as                   settings
========  ===========================  ================================================
.wav      WAV PCM_16 / PCM_24 / FLOAT   ``bit_depth`` "16" / "24" (default) / "32f"
.flac     FLAC 16 / 24 bit              "32f" is refused (FLAC has no float samples)
.aiff     AIFF PCM_16 / PCM_24          "32f" is refused
.mp3      MPEG layer III (LAME)         320 kbps CBR, the highest MP3 quality; a LAME tag
                                        records delay and padding, so it decodes gapless
.ogg      OGG Vorbis                    quality 0.9 (libsndfile compression level 0.1),
                                        about 290 kbps for stereo chamber music
.opus     OGG Opus                      libsndfile compression level 0.5 (VBR, about
                                        240 kbps for stereo music), at 48 kHz (see below)
========  ===========================  ================================================

Lossy outputs ignore ``bit_depth``. Opus only runs at 8/12/16/24/48 kHz and MP3 at 8-48 kHz
(the MPEG rates); other rates are resampled in-stream with soxr's ``ResampleStream`` at quality
"VHQ" (Opus: to 48 kHz; MP3: to 44.1 kHz for multiples of 11025 Hz, else 48 kHz, or the nearest
higher MPEG rate below 48 kHz). :attr:`OutputFormat.sample_rate` says which rate is written.

Quantisation
------------
PCM samples are quantised here, not by libsndfile, and handed over as float32 values exactly on
the target grid, which libsndfile converts without further error. They are clipped to
[-1, 1 - 1 LSB] (never wrapped). 16-bit outputs get TPDF dither (:func:`tpdf_dither_quantize`);
24-bit outputs are rounded to the nearest step without dither (their -144 dBFS noise floor is
below any converter's). This matters because libsndfile's own float-to-PCM_24 path for WAV and
AIFF truncates (floor), measured as errors up to 0.99 LSB with a -0.5 LSB bias. Float outputs are
stored as they are.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import soundfile as sf
import soxr

from tonearm.errors import EncodeError, ParameterError
from tonearm.types import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, validate_audio

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import numpy.typing as npt

    from tonearm.types import AudioArray

__all__ = [
    "AtomicAudioWriter",
    "BitDepth",
    "OutputFormat",
    "check_output_path",
    "output_format_for",
    "tpdf_dither_quantize",
    "write_audio",
]

BitDepth = Literal["16", "24", "32f"]
"""Requested PCM sample format: 16-bit, 24-bit integer, or 32-bit float (WAV only)."""

_SUFFIXES = {".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF"}
_SUFFIXES |= {".mp3": "MP3", ".ogg": "OGG", ".oga": "OGG", ".opus": "OPUS"}
_USE = "use .wav, .flac, .aiff, .mp3, .ogg or .opus"
_PCM_SUBTYPES: dict[str, tuple[str, int]] = {
    "16": ("PCM_16", 16),
    "24": ("PCM_24", 24),
    "32f": ("FLOAT", 32),
}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_ENCODER_SETTINGS: dict[str, dict[str, Any]] = {
    "MPEG_LAYER_III": {"bitrate_mode": "CONSTANT", "compression_level": 0.0},
    "VORBIS": {"compression_level": 0.1},
    "OPUS": {"compression_level": 0.5},
}
_CHUNK_FRAMES = 1 << 16
"""Large writes are processed in chunks of this many frames so scratch memory stays bounded."""
_TEMP_SUFFIX = ".tonearm-tmp"


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """How an output file will be written.

    Attributes
    ----------
    container : str
        soundfile format: ``"WAV"``, ``"FLAC"``, ``"AIFF"``, ``"MP3"`` or ``"OGG"``.
    subtype : str
        soundfile subtype: ``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ``"MPEG_LAYER_III"``,
        ``"VORBIS"`` or ``"OPUS"``.
    bit_depth : int or None
        16, 24 or 32 (float) for PCM outputs; ``None`` for lossy ones.
    lossy : bool
        Whether the codec is lossy.
    sample_rate : int
        The rate written, in Hz. It differs from the input's only where the codec cannot store
        that rate (Opus, MP3 above 48 kHz); the writer then resamples in-stream.
    needs_dither : bool
        True exactly for 16-bit PCM outputs, which get TPDF dither.
    """

    container: str
    subtype: str
    bit_depth: int | None
    lossy: bool
    sample_rate: int
    needs_dither: bool


def output_format_for(
    path: str | os.PathLike[str], *, sample_rate: int, bit_depth: BitDepth | None = None
) -> OutputFormat:
    """Choose the output format from the path's extension.

    Parameters
    ----------
    path : str or os.PathLike
        The output file; only its extension matters here.
    sample_rate : int
        The rate of the audio to be written, in Hz (8000-192000).
    bit_depth : {"16", "24", "32f"}, optional
        For WAV/FLAC/AIFF; default "24". Ignored for lossy formats.

    Raises
    ------
    EncodeError
        Unknown extension, a rate out of range, an unknown bit depth, or "32f" for FLAC/AIFF.
    """
    name = os.fspath(path)
    suffix = Path(name).suffix.lower()
    kind = _SUFFIXES.get(suffix)
    if kind is None:
        if not suffix:
            raise EncodeError(f"output '{name}' has no file extension ({_USE})")
        raise EncodeError(f"unsupported output format '{suffix}' ({_USE})")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise EncodeError(f"sample rate must be an integer number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise EncodeError(
            f"cannot write '{name}' at {sample_rate} Hz; tonearm supports "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    rate = int(sample_rate)
    if bit_depth is not None and bit_depth not in _PCM_SUBTYPES:
        raise EncodeError(f"bit depth must be '16', '24' or '32f', got {bit_depth!r}")
    if kind == "MP3":
        return OutputFormat("MP3", "MPEG_LAYER_III", None, True, _mp3_rate(rate), False)
    if kind == "OGG":
        return OutputFormat("OGG", "VORBIS", None, True, rate, False)
    if kind == "OPUS":
        opus_rate = rate if rate in _OPUS_RATES else 48000
        return OutputFormat("OGG", "OPUS", None, True, opus_rate, False)
    depth = bit_depth or "24"
    if depth == "32f" and kind != "WAV":
        raise EncodeError(f"{kind} cannot store 32-bit float; use 16 or 24, or write .wav")
    subtype, bits = _PCM_SUBTYPES[depth]
    return OutputFormat(kind, subtype, bits, False, rate, subtype == "PCM_16")


def _mp3_rate(rate: int) -> int:
    """The MPEG rate to write for ``rate``: itself if MPEG has it, else the nearest sensible one."""
    if rate in _MP3_RATES:
        return rate
    if rate > _MP3_RATES[-1]:
        return 44100 if rate % 11025 == 0 else 48000
    return min(r for r in _MP3_RATES if r > rate)


def tpdf_dither_quantize(block: AudioArray, *, bits: int, rng: np.random.Generator) -> AudioArray:
    """Add TPDF dither and quantise to ``bits``-bit PCM, returning float32 on the exact grid.

    For each sample ``x`` the result is ``clip(round(x * 2**(bits-1) + d), -2**(bits-1),
    2**(bits-1) - 1) / 2**(bits-1)`` where ``d = u1 + u2`` with ``u1, u2`` independent and
    uniform on [-0.5, 0.5) LSB: triangular noise of ±1 LSB peak and 1/6 LSB² variance, which makes
    the quantisation error's mean and variance independent of the signal (no truncation
    distortion, a constant 1/4 LSB² noise floor, signals far below 1 LSB survive on average).
    The total error is below 1.5 LSB in magnitude (except where clipping cuts it). Frames that
    are exactly zero on every channel get no dither ("auto-black"): digital silence stays
    digital silence.

    Every result is an integer multiple of ``2**-(bits-1)`` in [-1, 1 - 2**-(bits-1)], exactly
    representable in float32 for ``bits <= 24``, so soundfile's float-to-integer conversion (which
    scales by ``2**(bits-1)``) reproduces the integers exactly.

    Parameters
    ----------
    block : AudioArray
        float32, shape ``(channels, frames)``.
    bits : int
        Target word length, 2-24.
    rng : numpy.random.Generator
        Source of the dither. Values are drawn frame by frame, two per channel, so the result
        depends only on the generator's state and the samples, not on how the signal is cut into
        blocks: the same seed gives the same output for any block size.

    Returns
    -------
    AudioArray
        A new float32 ``(channels, frames)`` array.
    """
    validate_audio(block, check_finite=False)
    return np.ascontiguousarray(_tpdf_interleaved(block, bits=bits, rng=rng).T)


def _tpdf_interleaved(
    block: AudioArray, *, bits: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """:func:`tpdf_dither_quantize`, returning the interleaved ``(frames, channels)`` layout."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 24:
        raise ParameterError(f"bits must be an integer in 2-24, got {bits!r}")
    channels, frames = block.shape
    scale = float(2 ** (bits - 1))
    # float32 holds x * 2**15 + d to 2**-9 LSB; 24-bit needs float64 for the sum to round right.
    dtype = np.float32 if bits <= 16 else np.float64
    noise = rng.random((frames, channels, 2), dtype=np.float32)
    work = np.empty((frames, channels), dtype=dtype)
    np.multiply(block.T, scale, out=work)
    work += noise[..., 0]
    work += noise[..., 1]
    work -= 1.0
    np.rint(work, out=work)
    np.clip(work, -scale, scale - 1.0, out=work)
    work *= 1.0 / scale
    # auto-black: frames of digital silence on every channel stay digital silence
    work[~block.any(axis=0)] = 0.0
    return work.astype(np.float32, copy=False)


def _round_interleaved(block: AudioArray, *, bits: int, out: npt.NDArray[np.float32]) -> None:
    """Round ``(channels, n)`` to the nearest ``bits``-bit step, clipped, into ``(n, channels)``.

    All in float32 and exact: scaling by a power of two is exact, and ``rint`` of values below
    2**24 is too. libsndfile's own float-to-24-bit conversion for WAV/AIFF truncates (it scales
    to 32 bits and shifts right by 8), which would add up to 1 LSB of error and a -0.5 LSB offset;
    grid values pass through it exactly.
    """
    scale = np.float32(2 ** (bits - 1))
    np.multiply(block.T, scale, out=out)
    np.rint(out, out=out)
    np.clip(out, -scale, scale - 1, out=out)
    out *= np.float32(1.0) / scale


_INT32_SCALE = np.float32(2.0**31)
"""A sample on the 16- or 24-bit grid times this is the int32 libsndfile writes: exact in float32
(at most 24 significant bits) and below 2**31 (the grid stops one step under full scale)."""


class AtomicAudioWriter:
    """Stream audio into an output file that appears only when complete.

    Parameters
    ----------
    path : str or os.PathLike
        The output file. Its folder must exist; an existing file there is replaced atomically
        (``os.replace``) on success and left untouched otherwise.
    sample_rate : int
        Rate of the blocks passed to :meth:`write`, in Hz.
    channels : int
        1 or 2.
    fmt : OutputFormat
        From :func:`output_format_for`.
    dither_seed : int
        Seed of the TPDF dither (16-bit outputs); the same seed gives the same file.
    forbid_same_as : str or os.PathLike, optional
        The input file: writing onto it (same path, or a link to it) is refused.
    on_written : callable, optional
        Called with each piece of audio as it is handed to the encoder: float32 ``(channels,
        frames)`` at ``fmt.sample_rate``, after resampling, dither and rounding. For lossless
        formats (``not fmt.lossy``) these are exactly the samples a decoder reads back from the
        file, so a caller can measure the output without decoding it again.

    Raises
    ------
    EncodeError
        The output folder does not exist, the path is a directory or the input file, or the
        temporary file cannot be created.

    Notes
    -----
    The temporary file ``.{name}.{random}.tonearm-tmp`` lives next to the output. Leaving the
    ``with`` block normally closes it, fsyncs it, renames it onto ``path`` and fsyncs the folder;
    leaving it by an exception (or calling :meth:`abort`) deletes it. One writer serves one thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample_rate: int,
        channels: int,
        fmt: OutputFormat,
        dither_seed: int = 0,
        forbid_same_as: str | os.PathLike[str] | None = None,
        on_written: Callable[[AudioArray], None] | None = None,
    ) -> None:
        self._name = os.fspath(path)
        self._on_written = on_written
        self._path = Path(self._name)
        if channels not in (1, 2):
            raise ParameterError(f"channels must be 1 or 2, got {channels!r}")
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise ParameterError(
                f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
            )
        check_output_path(self._path, forbid_same_as=forbid_same_as)
        self._fmt = fmt
        self._channels = channels
        self._rng = np.random.default_rng(dither_seed)
        self._frames_written = 0
        self._scratch: npt.NDArray[np.float32] | None = None
        self._resampler: Any = None
        if fmt.sample_rate != sample_rate:
            self._resampler = soxr.ResampleStream(
                sample_rate, fmt.sample_rate, channels, dtype="float32", quality="VHQ"
            )
        self._temp, self._fd = _create_temp(self._path, self._name)
        self._open = True
        try:
            self._file = sf.SoundFile(
                self._fd,
                "w",
                samplerate=fmt.sample_rate,
                channels=channels,
                format=fmt.container,
                subtype=fmt.subtype,
                closefd=False,
                **_ENCODER_SETTINGS.get(fmt.subtype, {}),
            )
        except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
            self._discard()
            raise EncodeError(f"cannot write '{self._name}': {_reason(exc)}") from None

    def __del__(self) -> None:
        # A writer dropped without commit() or abort() must not leave its temporary file behind.
        if getattr(self, "_fd", -1) >= 0 or getattr(self, "_open", False):
            with contextlib.suppress(Exception):
                self.abort()

    @property
    def frames_written(self) -> int:
        """Frames written to the output so far, at ``fmt.sample_rate``."""
        return self._frames_written

    @property
    def temp_path(self) -> Path:
        """The temporary file that becomes the output on success."""
        return self._temp

    @property
    def fmt(self) -> OutputFormat:
        """The format being written."""
        return self._fmt

    def __enter__(self) -> AtomicAudioWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def write(self, block: AudioArray) -> None:
        """Append float32 ``(channels, frames)`` audio.

        16-bit outputs are TPDF-dithered, PCM outputs clipped to [-1, 1], and Opus/MP3 inputs at
        rates the codec lacks resampled, before the samples are interleaved and written.

        Raises
        ------
        ParameterError
            ``block`` is not float32 ``(channels, frames)`` with this writer's channel count, or
            holds NaN/Inf.
        EncodeError
            The writer is closed, or the write failed (the temporary file is then deleted).
        """
        if not self._open:
            raise EncodeError(f"cannot write '{self._name}': the writer is already closed")
        validate_audio(block)
        if block.shape[0] != self._channels:
            raise ParameterError(
                f"writer for '{self._name}' expects {self._channels} channel(s), "
                f"got {block.shape[0]}"
            )
        try:
            for start in range(0, block.shape[1], _CHUNK_FRAMES):
                chunk = block[:, start : start + _CHUNK_FRAMES]
                if self._resampler is not None:
                    resampled = self._resampler.resample_chunk(np.ascontiguousarray(chunk.T))
                    chunk = np.asarray(resampled, dtype=np.float32).reshape(-1, self._channels).T
                self._encode(chunk)
        except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
            self.abort()
            raise EncodeError(f"cannot write '{self._name}': {_reason(exc)}") from None

    def commit(self) -> None:
        """Finish the file and move it onto the output path (the ``with`` block does this)."""
        if not self._open:
            raise EncodeError(f"cannot write '{self._name}': the writer is already closed")
        try:
            if self._resampler is not None:
                tail = self._resampler.resample_chunk(
                    np.zeros((0, self._channels), dtype=np.float32), last=True
                )
                self._encode(np.asarray(tail, dtype=np.float32).reshape(-1, self._channels).T)
            self._file.close()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._temp, self._path)
        except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
            self.abort()
            raise EncodeError(f"cannot write '{self._name}': {_reason(exc)}") from None
        self._open = False
        _fsync_folder(self._path.parent)

    def abort(self) -> None:
        """Stop writing and delete the temporary file; the output path is left as it was."""
        if self._open:
            self._open = False
            with contextlib.suppress(sf.SoundFileError, RuntimeError, OSError, ValueError):
                self._file.close()
        self._discard()

    def _discard(self) -> None:
        self._open = False
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()

    def _encode(self, chunk: AudioArray) -> None:
        """Dither/clip ``(channels, n)`` as the format needs, interleave, and write it."""
        n = chunk.shape[1]
        if n == 0:
            return
        fmt = self._fmt
        data: npt.NDArray[np.float32]
        if fmt.needs_dither:
            data = _tpdf_interleaved(chunk, bits=fmt.bit_depth or 16, rng=self._rng)
        elif not fmt.lossy and fmt.subtype != "FLOAT":
            data = self._scratch_buffer(n)
            _round_interleaved(chunk, bits=fmt.bit_depth or 24, out=data)
        else:
            data = np.ascontiguousarray(chunk.T)
        if not fmt.lossy and fmt.subtype != "FLOAT":
            # grid values as the integers libsndfile stores (the top bits of an int32): exact,
            # and faster than its own float conversion
            self._file.write((data * _INT32_SCALE).astype(np.int32))
        else:
            self._file.write(data)
        self._frames_written += n
        if self._on_written is not None:
            self._on_written(data.T.copy())  # a copy: the scratch buffer is reused

    def _scratch_buffer(self, frames: int) -> npt.NDArray[np.float32]:
        if self._scratch is None or self._scratch.shape[0] < frames:
            self._scratch = np.empty((max(frames, _CHUNK_FRAMES), self._channels), np.float32)
        return self._scratch[:frames]


def write_audio(
    path: str | os.PathLike[str],
    audio: AudioArray,
    *,
    sample_rate: int,
    bit_depth: BitDepth | None = None,
    dither_seed: int = 0,
) -> OutputFormat:
    """Write a whole float32 ``(channels, frames)`` array atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The output file; the extension picks the format (:func:`output_format_for`).
    audio : AudioArray
        float32, shape ``(channels, frames)``, finite.
    sample_rate : int
        In Hz.
    bit_depth : {"16", "24", "32f"}, optional
        For WAV/FLAC/AIFF; default "24".
    dither_seed : int
        Seed of the 16-bit TPDF dither.

    Returns
    -------
    OutputFormat
        What was written.

    Raises
    ------
    EncodeError, ParameterError
        As :func:`output_format_for` and :class:`AtomicAudioWriter`.
    """
    fmt = output_format_for(path, sample_rate=sample_rate, bit_depth=bit_depth)
    validate_audio(audio, sample_rate=sample_rate)
    with AtomicAudioWriter(
        path, sample_rate=sample_rate, channels=audio.shape[0], fmt=fmt, dither_seed=dither_seed
    ) as writer:
        writer.write(audio)
    return fmt


def check_output_path(
    path: str | os.PathLike[str], *, forbid_same_as: str | os.PathLike[str] | None = None
) -> None:
    """Raise ``EncodeError`` unless ``path`` can be written: not a directory, in an existing
    folder, and not the same file as ``forbid_same_as`` (the input)."""
    path = Path(path)
    if path.is_dir():
        raise EncodeError(f"'{os.fspath(path)}' is a directory")
    folder = path.parent
    shown = os.fspath(folder).rstrip("/") or "/"
    if not folder.exists():
        raise EncodeError(f"output folder '{shown}/' does not exist")
    if not folder.is_dir():
        raise EncodeError(f"output folder '{shown}/' is not a folder")
    if forbid_same_as is not None and _same_file(path, Path(os.fspath(forbid_same_as))):
        raise EncodeError("output path is the input file; choose another output")


def _same_file(output: Path, source: Path) -> bool:
    try:
        if output.exists() and source.exists():
            return os.path.samefile(output, source)
        return output.resolve() == source.resolve()
    except OSError:
        return False


def _create_temp(path: Path, name: str) -> tuple[Path, int]:
    """Create ``.{name}.{random}.tonearm-tmp`` next to ``path`` exclusively; return it and its fd.

    The mode is the ordinary 0o666 less umask (not mkstemp's 0o600), so the finished output gets
    the same permissions as any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(16):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{_TEMP_SUFFIX}")
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        except PermissionError:
            raise EncodeError(f"cannot write '{name}': permission denied") from None
        except OSError as exc:
            raise EncodeError(f"cannot write '{name}': {_reason(exc)}") from None
    raise EncodeError(f"cannot write '{name}': no free temporary file name")


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; best effort (some platforms cannot open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(getattr(exc, "error_string", "") or exc)
    return " ".join(text.split()).rstrip(".") or type(exc).__name__
