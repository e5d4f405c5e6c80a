"""Decoding: layout, values, streaming blocks, gapless lengths, damaged files, flat memory."""

from __future__ import annotations

import threading
import tracemalloc
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.audio_io.conftest import BACH, BEETHOVEN, JOPLIN, lag_of, make_signal
from tonearm.audio_io import AudioReader, DecodedAudio, iter_blocks, probe, read_audio
from tonearm.errors import DecodeError, ParameterError

if TYPE_CHECKING:
    from pathlib import Path

    from tests.audio_io.conftest import PyavMaker, SoundfileMaker
    from tonearm.types import AudioArray


def _noise(channels: int, frames: int, seed: int = 3) -> AudioArray:
    """Low-passed noise: codec-friendly, yet aperiodic so alignment is unambiguous."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((channels, frames + 7))
    kernel = np.ones(8) / 8
    smooth = np.stack([np.convolve(row, kernel, mode="valid") for row in white])
    return (0.25 * smooth).astype(np.float32)


# --- values and layout ----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_pcm24_and_float_values(make_sf_file: SoundfileMaker, channels: int) -> None:
    audio = make_signal(channels=channels, frames=5000, sample_rate=44100)
    floats = read_audio(make_sf_file("f.wav", audio, 44100, subtype="FLOAT"))
    assert floats.audio.dtype == np.float32
    assert floats.audio.flags.c_contiguous
    np.testing.assert_array_equal(floats.audio, audio)
    pcm24 = read_audio(make_sf_file("p.flac", audio, 44100, subtype="PCM_24")).audio
    assert pcm24.shape == (channels, 5000)
    assert np.max(np.abs(pcm24 - audio)) <= 2.0**-23


def test_read_audio_result(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("a.aiff", make_signal(channels=2, frames=777, sample_rate=22050), 22050)
    result = read_audio(path)
    assert isinstance(result, DecodedAudio)
    assert result.sample_rate == 22050
    assert result.info == probe(path)
    assert result.audio.shape == (2, 777)


# --- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("name", ["s.wav", "s.flac", "s.ogg", "s.mp3"])
def test_blocks_cover_the_file_exactly(
    make_sf_file: SoundfileMaker, name: str, channels: int
) -> None:
    path = make_sf_file(
        name, make_signal(channels=channels, frames=10007, sample_rate=44100), 44100
    )
    with AudioReader(path) as reader:
        whole = reader.read()
        blocks = list(reader.blocks(block_frames=1000))
    assert [b.shape[1] for b in blocks] == [1000] * 10 + [7]
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in blocks)
    assert all(b.shape[0] == channels for b in blocks)
    # Blocks are independent arrays (no shared buffer), so keeping them all is safe.
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)


def test_iter_blocks_and_bad_block_size(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("i.wav", make_signal(channels=2, frames=3000, sample_rate=8000), 8000)
    assert [b.shape for b in iter_blocks(path, block_frames=2048)] == [(2, 2048), (2, 952)]
    with AudioReader(path) as reader, pytest.raises(ParameterError, match="block_frames"):
        reader.blocks(block_frames=0)


def test_closed_reader(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("c.wav", make_signal(channels=1, frames=100, sample_rate=8000), 8000)
    reader = AudioReader(path)
    reader.close()
    reader.close()
    with pytest.raises(DecodeError, match="closed"):
        reader.read()


def test_readers_in_parallel_threads(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("p.flac", make_signal(channels=2, frames=200_000, sample_rate=44100), 44100)
    expected = read_audio(path).audio
    results: list[bool] = []

    def work() -> None:
        with AudioReader(path) as reader:
            got = np.concatenate(list(reader.blocks(block_frames=4096)), axis=1)
        results.append(bool(np.array_equal(got, expected)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 4


# --- damaged files --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_wav_with_nonfinite_samples(make_sf_file: SoundfileMaker, bad: float) -> None:
    audio = make_signal(channels=2, frames=50_000, sample_rate=44100)
    audio[1, 45_000] = bad
    path = make_sf_file("a.wav", audio, 44100, subtype="FLOAT")
    with AudioReader(path) as reader:
        blocks = reader.blocks(block_frames=10_000)
        for _ in range(4):
            next(blocks)  # the first 40000 frames are fine
        with pytest.raises(DecodeError) as caught:
            next(blocks)
    assert str(caught.value) == f"'{path}' contains NaN or Inf samples"
    with pytest.raises(DecodeError, match="NaN or Inf"):
        read_audio(path)


def test_truncation_surfaces_before_any_block(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("t.wav", make_signal(channels=2, frames=8000, sample_rate=8000), 8000)
    path.write_bytes(path.read_bytes()[:-4000])
    blocks = iter_blocks(path)
    with pytest.raises(DecodeError, match="is truncated: header says 8000 frames, only 7000"):
        next(blocks)


# --- gapless lengths ------------------------------------------------------------------------


def test_mp3_from_libsndfile_is_gapless(make_sf_file: SoundfileMaker) -> None:
    audio = _noise(2, 44100 * 2 + 333)
    decoded = read_audio(make_sf_file("g.mp3", audio, 44100, format="MP3")).audio
    assert decoded.shape == audio.shape
    assert lag_of(audio, decoded, max_lag=1200) == 0  # LAME delay and padding trimmed


@pytest.mark.parametrize(
    "options",
    [
        {"movie_timescale": "44100"},  # edit list stored to the sample
        {},  # ffmpeg's default: edit list rounded to 1 ms; the packet end is exact
    ],
)
def test_aac_round_trip_is_sample_exact(make_pyav_file: PyavMaker, options: dict[str, str]) -> None:
    audio = _noise(2, 44100 * 3 + 123)
    path = make_pyav_file("x.m4a", audio, 44100, options=options)
    info = probe(path)
    decoded = read_audio(path).audio
    assert info.frames == decoded.shape[1] == 44100 * 3 + 123
    assert lag_of(audio, decoded, max_lag=2200) == 0  # the 1024 priming frames are gone
    assert np.corrcoef(audio[0, 3000:-3000], decoded[0, 3000:-3000])[0, 1] > 0.9


def test_aac_without_edit_list_keeps_the_priming(make_pyav_file: PyavMaker) -> None:
    # Documented limitation: with no edit list nothing says how long the priming is.
    audio = _noise(2, 44100 + 100)
    path = make_pyav_file("n.m4a", audio, 44100, options={"use_editlist": "0"})
    decoded = read_audio(path).audio
    assert decoded.shape[1] == audio.shape[1] + 1024
    assert lag_of(audio, decoded[:, 1024:], max_lag=100) == 0


def test_mono_48k_m4a(make_pyav_file: PyavMaker) -> None:
    audio = _noise(1, 48000 + 1)
    result = read_audio(make_pyav_file("m.m4a", audio, 48000))
    assert result.audio.shape == (1, 48001)
    assert result.sample_rate == 48000
    assert (result.info.channels, result.info.decoder) == (1, "pyav")


def test_pyav_blocks(make_pyav_file: PyavMaker) -> None:
    audio = _noise(2, 30_011)
    path = make_pyav_file("b.m4a", audio, 44100)
    with AudioReader(path) as reader:
        whole = reader.read()
        blocks = list(reader.blocks(block_frames=4096))
    assert [b.shape[1] for b in blocks] == [4096] * 7 + [30_011 - 7 * 4096]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)


def test_alac_round_trip_is_bit_exact(make_pyav_file: PyavMaker) -> None:
    audio = _noise(2, 12_345)
    path = make_pyav_file("l.m4a", audio, 44100, codec="alac", sample_format="s16p")
    expected = np.round(audio * 32767).astype(np.int16).astype(np.float32) / 32768
    np.testing.assert_array_equal(read_audio(path).audio, expected)


# --- the shared music -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [BACH, JOPLIN])
def test_shared_flac_streams_equal_read(path: Path) -> None:
    with AudioReader(path) as reader:
        whole = reader.read()
        pos = 0
        for block in reader.blocks():
            assert np.array_equal(block, whole[:, pos : pos + block.shape[1]])
            pos += block.shape[1]
    assert pos == whole.shape[1] == reader.info.frames


def test_shared_mp3_streams_in_flat_memory() -> None:
    with AudioReader(BEETHOVEN) as reader:
        whole = reader.read()  # 206 MB
        tracemalloc.start()
        try:
            pos = 0
            for block in reader.blocks():
                assert np.array_equal(block, whole[:, pos : pos + block.shape[1]])
                pos += block.shape[1]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert pos == reader.info.frames == whole.shape[1]
    assert peak < 8 * 2**20  # a few 512 KiB blocks, nowhere near the file's 206 MB


def test_pyav_streams_in_flat_memory(make_pyav_file: PyavMaker) -> None:
    path = make_pyav_file("long.m4a", _noise(2, 44100 * 20), 44100)
    tracemalloc.start()
    try:
        frames = sum(block.shape[1] for block in iter_blocks(path, block_frames=8192))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames == 44100 * 20
    assert peak < 4 * 2**20  # the decoded file would be 7 MB
