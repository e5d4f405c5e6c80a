"""Streamed WAV files: exact headers, any byte span, positional dither."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

from tests.audio_io.conftest import make_signal
from tonearm.audio_io.wav_stream import WavLayout, wav_bytes
from tonearm.errors import EncodeError, ParameterError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tonearm.audio_io.wav_stream import SampleFormat
    from tonearm.types import AudioArray


def _renderer(
    audio: AudioArray, *, block_frames: int = 1000, calls: list[int] | None = None
) -> Callable[[int], Iterator[AudioArray]]:
    def render(first_frame: int) -> Iterator[AudioArray]:
        if calls is not None:
            calls.append(first_frame)
        for start in range(first_frame, audio.shape[1], block_frames):
            yield audio[:, start : start + block_frames]

    return render


def _whole(
    layout: WavLayout, audio: AudioArray, *, seed: int = 5, block_frames: int = 1000
) -> bytes:
    return b"".join(
        wav_bytes(layout, _renderer(audio, block_frames=block_frames), dither_seed=seed)
    )


@pytest.mark.parametrize(
    ("sample_format", "channels"), [("pcm16", 2), ("float32", 2), ("pcm16", 1)]
)
def test_whole_file_parses(sample_format: SampleFormat, channels: int) -> None:
    audio = make_signal(channels=channels, frames=10_007, sample_rate=22050, amplitude=0.6)
    audio[:, 100:200] = 0.0  # digital silence stays silent (no dither)
    layout = WavLayout(22050, channels, 10_007, sample_format)
    data = _whole(layout, audio)
    assert len(data) == layout.total_bytes == layout.header_bytes + 10_007 * layout.frame_bytes
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    info = sf.info(io.BytesIO(data))
    assert rate == 22050
    assert decoded.shape == (10_007, channels)
    assert info.subtype == ("PCM_16" if sample_format == "pcm16" else "FLOAT")
    if sample_format == "float32":
        assert np.array_equal(decoded.T, audio)
    else:  # dithered: within 1.5 LSB, silence exact
        assert np.abs(decoded.T - audio).max() <= 1.5 / 32768
        assert not decoded[100:200].any()
    assert int.from_bytes(data[4:8], "little") == len(data) - 8


def test_float_keeps_levels_over_full_scale() -> None:
    audio = np.full((2, 100), 1.75, dtype=np.float32)
    data = _whole(WavLayout(8000, 2, 100, "float32"), audio)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert np.all(decoded == np.float32(1.75))


@pytest.mark.parametrize("sample_format", ["pcm16", "float32"])
def test_every_span_equals_the_same_bytes_of_the_whole(sample_format: SampleFormat) -> None:
    audio = make_signal(channels=2, frames=5_003, sample_rate=8000)
    layout = WavLayout(8000, 2, 5_003, sample_format)
    whole = _whole(layout, audio)
    rng = np.random.default_rng(1)
    spans = [(0, 1), (0, 44), (3, 50), (43, 45), (44, 48), (57, 60), (58, 59)]
    spans += [(layout.total_bytes - 1, layout.total_bytes), (1, layout.total_bytes)]
    for _ in range(40):
        start = int(rng.integers(0, layout.total_bytes - 1))
        spans.append((start, int(rng.integers(start + 1, layout.total_bytes + 1))))
    for start, stop in spans:
        calls: list[int] = []
        # cut into other blocks than the whole: the positional dither does not care
        render = _renderer(audio, block_frames=777, calls=calls)
        part = b"".join(wav_bytes(layout, render, start_byte=start, stop_byte=stop, dither_seed=5))
        assert part == whole[start:stop], (start, stop)
        audio_start = max(start, layout.header_bytes) - layout.header_bytes
        if stop > layout.header_bytes:  # rendering starts in the frame the span starts in
            assert calls == [audio_start // layout.frame_bytes]
        else:
            assert calls == []


def test_another_seed_dithers_differently() -> None:
    audio = make_signal(channels=2, frames=2_000, sample_rate=8000)
    layout = WavLayout(8000, 2, 2_000, "pcm16")
    assert _whole(layout, audio, seed=1) != _whole(layout, audio, seed=2)
    assert _whole(layout, audio, seed=1) == _whole(layout, audio, seed=1, block_frames=333)


def test_short_audio_and_bad_spans() -> None:
    audio = make_signal(channels=2, frames=1_000, sample_rate=8000)
    layout = WavLayout(8000, 2, 1_200, "pcm16")
    with pytest.raises(EncodeError, match="ended 800 bytes before"):
        b"".join(wav_bytes(layout, _renderer(audio)))
    for start, stop in [(-1, 10), (10, 10), (0, layout.total_bytes + 1)]:
        with pytest.raises(ParameterError, match="byte range"):
            next(wav_bytes(layout, _renderer(audio), start_byte=start, stop_byte=stop))


def test_layout_limits() -> None:
    with pytest.raises(EncodeError, match="too long"):
        WavLayout(44100, 2, 2**30, "float32")
    with pytest.raises(ParameterError):
        WavLayout(0, 2, 10, "pcm16")
    with pytest.raises(ParameterError, match="sample format"):
        WavLayout(8000, 2, 10, "pcm24")  # type: ignore[arg-type]
    assert WavLayout(8000, 2, 10, "float32").header_bytes == 58
