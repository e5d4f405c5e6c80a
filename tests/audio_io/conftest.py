"""Fixtures for the audio I/O tests: signals, files made in ``tmp_path``, and the shared music."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import av
import numpy as np
import pytest
import soundfile as sf

from tests.music_paths import MUSIC_DIR

if TYPE_CHECKING:
    from tonearm.types import AudioArray

"""The repository's sibling ``shared/fixtures/music`` (``/work/shared`` next to ``/work/main``)."""

BACH = MUSIC_DIR / "bach_bwv66_6.flac"
JOPLIN = MUSIC_DIR / "joplin_maple_leaf_rag.flac"
BEETHOVEN = MUSIC_DIR / "beethoven_opus18no1.mp3"


def make_signal(
    *, channels: int, frames: int, sample_rate: int, seed: int = 0, amplitude: float = 0.5
) -> AudioArray:
    """A deterministic test signal: per-channel sines plus a little noise, float32 (ch, n)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / sample_rate
    tones = [amplitude * np.sin(2 * np.pi * f * t) for f in (441.0, 662.5)[:channels]]
    noise = 0.02 * rng.standard_normal((channels, frames))
    return (np.stack(tones) + noise).astype(np.float32)


class SoundfileMaker(Protocol):
    def __call__(
        self,
        name: str,
        audio: AudioArray,
        sample_rate: int,
        *,
        subtype: str | None = None,
        format: str | None = None,
    ) -> Path: ...


class PyavMaker(Protocol):
    def __call__(
        self,
        name: str,
        audio: AudioArray,
        sample_rate: int,
        *,
        codec: str = "aac",
        sample_format: str = "fltp",
        options: dict[str, str] | None = None,
        container_format: str | None = None,
        seekable: bool = True,
    ) -> Path: ...


@pytest.fixture
def make_sf_file(tmp_path: Path) -> SoundfileMaker:
    """Write ``audio`` (ch, n) with soundfile directly (independent of tonearm's encoder)."""

    def make(
        name: str,
        audio: AudioArray,
        sample_rate: int,
        *,
        subtype: str | None = None,
        format: str | None = None,
    ) -> Path:
        path = tmp_path / name
        if format is None and path.suffix == ".aif":
            format = "AIFF"  # soundfile only infers AIFF from ".aiff"
        sf.write(path, audio.T, sample_rate, subtype=subtype, format=format)
        return path

    return make


class _NonSeekable(io.RawIOBase):
    """A write-only sink that refuses to seek, so muxers cannot go back to patch headers."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: Any) -> int:
        self.data += bytes(b)
        return len(b)


def _to_av(audio: AudioArray, sample_format: str) -> np.ndarray[Any, Any]:
    if sample_format == "fltp":
        return np.ascontiguousarray(audio)
    if sample_format == "flt":
        return np.ascontiguousarray(audio.T).reshape(1, -1)
    ints = np.round(audio * 32767).astype(np.int16)
    if sample_format == "s16p":
        return np.ascontiguousarray(ints)
    return np.ascontiguousarray(ints.T).reshape(1, -1)


@pytest.fixture
def make_pyav_file(tmp_path: Path) -> PyavMaker:
    """Encode ``audio`` (ch, n) with PyAV's encoders (default: AAC in M4A) in 1024-frame steps."""

    def make(
        name: str,
        audio: AudioArray,
        sample_rate: int,
        *,
        codec: str = "aac",
        sample_format: str = "fltp",
        options: dict[str, str] | None = None,
        container_format: str | None = None,
        seekable: bool = True,
    ) -> Path:
        path = tmp_path / name
        sink = None if seekable else _NonSeekable()
        target: Any = str(path) if sink is None else sink
        layout = "mono" if audio.shape[0] == 1 else "stereo"
        with av.open(target, "w", format=container_format, options=options or {}) as container:
            stream: Any = container.add_stream(codec, rate=sample_rate, layout=layout)
            stream.format = sample_format
            for start in range(0, audio.shape[1], 1024):
                chunk = _to_av(audio[:, start : start + 1024], sample_format)
                frame = av.AudioFrame.from_ndarray(chunk, format=sample_format, layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        if sink is not None:
            path.write_bytes(bytes(sink.data))
        return path

    return make


def lag_of(reference: np.ndarray[Any, Any], decoded: np.ndarray[Any, Any], max_lag: int) -> int:
    """The shift (in frames) that best aligns ``decoded`` with ``reference`` (0 = aligned).

    Positive means ``decoded`` starts late (extra frames in front). Cross-correlation by FFT,
    summed over channels.
    """
    n = min(reference.shape[-1], decoded.shape[-1])
    size = 1 << (2 * n - 1).bit_length()
    ref = np.fft.rfft(np.atleast_2d(reference)[:, :n].astype(np.float64), size)
    dec = np.fft.rfft(np.atleast_2d(decoded)[:, :n].astype(np.float64), size)
    xcorr = np.fft.irfft(np.conj(ref) * dec, size).sum(axis=0)
    window = np.concatenate([xcorr[size - max_lag :], xcorr[: max_lag + 1]])
    return int(np.argmax(window)) - max_lag
