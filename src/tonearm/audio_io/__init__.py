"""Audio file I/O: the only place where tonearm meets file formats and sample layouts.

Everything inside tonearm is float32 ``(channels, frames)`` with one or two channels; this package
converts to and from that at the edge.

* :mod:`~tonearm.audio_io.probe` — :func:`probe` describes a file (:class:`AudioInfo`, with an
  exact frame count) and rejects what cannot be mastered (missing, empty, not audio, truncated,
  more than two channels, rate outside 8-192 kHz) with a one-line
  :class:`~tonearm.errors.DecodeError`.
* :mod:`~tonearm.audio_io.decode` — :class:`AudioReader`, :func:`read_audio` and
  :func:`iter_blocks` decode WAV/FLAC/AIFF/OGG/MP3 with libsndfile and M4A/AAC/ALAC/WebM/WMA with
  PyAV (trimming AAC priming and padding), whole or in flat-memory blocks.
* :mod:`~tonearm.audio_io.encode` — :func:`output_format_for` maps an output extension to an
  :class:`OutputFormat`; :class:`AtomicAudioWriter` and :func:`write_audio` write WAV/FLAC/AIFF
  (16-bit with TPDF dither, :func:`tpdf_dither_quantize`), MP3, OGG Vorbis and Opus through a
  temporary file renamed into place only on success.
* :mod:`~tonearm.audio_io.wav_stream` — :class:`~tonearm.audio_io.wav_stream.WavLayout` and
  :func:`~tonearm.audio_io.wav_stream.wav_bytes`: a WAV of known length served as a stream,
  any byte range rendered on demand.
"""

from tonearm.audio_io.decode import AudioReader, DecodedAudio, iter_blocks, read_audio
from tonearm.audio_io.encode import (
    AtomicAudioWriter,
    BitDepth,
    OutputFormat,
    check_output_path,
    output_format_for,
    tpdf_dither_quantize,
    write_audio,
)
from tonearm.audio_io.probe import AudioInfo, probe

__all__ = [
    "AtomicAudioWriter",
    "AudioInfo",
    "AudioReader",
    "BitDepth",
    "DecodedAudio",
    "OutputFormat",
    "check_output_path",
    "iter_blocks",
    "output_format_for",
    "probe",
    "read_audio",
    "tpdf_dither_quantize",
    "write_audio",
]
