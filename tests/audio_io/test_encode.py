"""Encoding: format choice, round trips, dither, lossy outputs, and the atomic writer."""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

from tests.audio_io.conftest import lag_of, make_signal
from tonearm.audio_io import (
    AtomicAudioWriter,
    OutputFormat,
    output_format_for,
    probe,
    read_audio,
    tpdf_dither_quantize,
    write_audio,
)
from tonearm.errors import EncodeError, ParameterError

if TYPE_CHECKING:
    from pathlib import Path

    from tonearm.audio_io import BitDepth

LSB16 = 2.0**-15
RATES = [8000, 11025, 44100, 48000, 96000, 192000]


# --- output_format_for ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bit_depth", "expected"),
    [
        ("o.wav", None, OutputFormat("WAV", "PCM_24", 24, False, 44100, False)),
        ("o.WAVE", "16", OutputFormat("WAV", "PCM_16", 16, False, 44100, True)),
        ("o.wav", "32f", OutputFormat("WAV", "FLOAT", 32, False, 44100, False)),
        ("o.flac", "16", OutputFormat("FLAC", "PCM_16", 16, False, 44100, True)),
        ("o.flac", None, OutputFormat("FLAC", "PCM_24", 24, False, 44100, False)),
        ("o.aif", "24", OutputFormat("AIFF", "PCM_24", 24, False, 44100, False)),
        ("o.aiff", "16", OutputFormat("AIFF", "PCM_16", 16, False, 44100, True)),
        ("o.mp3", "16", OutputFormat("MP3", "MPEG_LAYER_III", None, True, 44100, False)),
        ("o.ogg", None, OutputFormat("OGG", "VORBIS", None, True, 44100, False)),
        ("o.oga", "24", OutputFormat("OGG", "VORBIS", None, True, 44100, False)),
        ("o.opus", None, OutputFormat("OGG", "OPUS", None, True, 48000, False)),
    ],
)
def test_output_format_for(name: str, bit_depth: BitDepth | None, expected: OutputFormat) -> None:
    assert output_format_for(name, sample_rate=44100, bit_depth=bit_depth) == expected


@pytest.mark.parametrize(
    ("name", "rate", "written"),
    [
        ("o.opus", 16000, 16000),
        ("o.opus", 96000, 48000),
        ("o.mp3", 96000, 48000),
        ("o.mp3", 88200, 44100),
        ("o.mp3", 10000, 11025),
        ("o.mp3", 32000, 32000),
        ("o.ogg", 192000, 192000),
        ("o.flac", 192000, 192000),
    ],
)
def test_written_rate(name: str, rate: int, written: int) -> None:
    assert output_format_for(name, sample_rate=rate).sample_rate == written


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "o.xyz",
            {},
            "unsupported output format '.xyz' (use .wav, .flac, .aiff, .mp3, .ogg or .opus)",
        ),
        (
            "out",
            {},
            "output 'out' has no file extension (use .wav, .flac, .aiff, .mp3, .ogg or .opus)",
        ),
        (
            "o.flac",
            {"bit_depth": "32f"},
            "FLAC cannot store 32-bit float; use 16 or 24, or write .wav",
        ),
        (
            "o.aiff",
            {"bit_depth": "32f"},
            "AIFF cannot store 32-bit float; use 16 or 24, or write .wav",
        ),
        ("o.wav", {"bit_depth": "20"}, "bit depth must be '16', '24' or '32f', got '20'"),
        (
            "o.wav",
            {"sample_rate": 4000},
            "cannot write 'o.wav' at 4000 Hz; tonearm supports 8000-192000 Hz",
        ),
    ],
)
def test_output_format_errors(name: str, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"sample_rate": 44100, **kwargs}
    with pytest.raises(EncodeError) as caught:
        output_format_for(name, **args)  # type: ignore[arg-type]
    assert str(caught.value) == message


# --- lossless round trips ------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    ("name", "bit_depth"),
    [
        ("r.wav", "16"),
        ("r.wav", "24"),
        ("r.wav", "32f"),
        ("r.flac", "16"),
        ("r.flac", "24"),
        ("r.aiff", "16"),
        ("r.aiff", "24"),
    ],
)
def test_lossless_round_trip(
    tmp_path: Path, name: str, bit_depth: BitDepth, channels: int, rate: int
) -> None:
    frames = rate // 4 + 3
    audio = make_signal(channels=channels, frames=frames, sample_rate=rate, seed=rate)
    path = tmp_path / name
    fmt = write_audio(path, audio, sample_rate=rate, bit_depth=bit_depth)
    decoded = read_audio(path)
    assert decoded.audio.shape == (channels, frames)
    assert decoded.sample_rate == rate == fmt.sample_rate
    assert decoded.info.bit_depth == fmt.bit_depth
    error = np.abs(decoded.audio.astype(np.float64) - audio)
    if bit_depth == "32f":
        assert error.max() == 0.0
    elif bit_depth == "24":
        assert error.max() <= 2.0**-24 + 1e-12  # rounded to the nearest 24-bit step
    else:
        assert error.max() < 1.5 * LSB16  # TPDF dither: at most 1 LSB noise + 0.5 LSB rounding
        assert np.array_equal(decoded.audio * 32768, np.round(decoded.audio * 32768))


@pytest.mark.parametrize(("name", "bit_depth"), [("c.wav", "16"), ("c.flac", "24")])
def test_pcm_clips_instead_of_wrapping(tmp_path: Path, name: str, bit_depth: BitDepth) -> None:
    audio = np.array([[1.7, -1.7, 1.0, -1.0, 0.5]], dtype=np.float32)
    write_audio(tmp_path / name, audio, sample_rate=44100, bit_depth=bit_depth)
    decoded = read_audio(tmp_path / name).audio[0]
    step = 2.0 ** -(int(bit_depth) - 1)
    assert decoded[0] == decoded[2] == pytest.approx(1.0 - step, abs=step)
    assert decoded[1] == decoded[3] == -1.0
    assert decoded[4] == pytest.approx(0.5, abs=1.5 * step)


# --- dither ---------------------------------------------------------------------------------


def test_dither_lands_on_the_grid_with_bounded_error() -> None:
    audio = make_signal(channels=2, frames=200_000, sample_rate=44100)
    out = tpdf_dither_quantize(audio, bits=16, rng=np.random.default_rng(7))
    assert out.dtype == np.float32
    assert out.shape == audio.shape
    steps = out.astype(np.float64) * 32768
    assert np.array_equal(steps, np.round(steps))
    error = (steps - audio.astype(np.float64) * 32768).ravel()
    assert np.abs(error).max() < 1.5
    assert abs(error.mean()) < 0.01  # unbiased
    assert error.std() == pytest.approx(0.5, rel=0.02)  # TPDF 1/6 + rounding 1/12 = 1/4 LSB²


def test_dither_keeps_a_minus_100_dbfs_sine() -> None:
    rate = 44100
    t = np.arange(rate * 5) / rate
    sine = (1e-5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[np.newaxis]  # 0.33 LSB
    plain = np.round(sine.astype(np.float64) * 32768) / 32768
    assert not plain.any()  # rounding alone turns it into digital silence
    out = tpdf_dither_quantize(sine, bits=16, rng=np.random.default_rng(1))
    reference = np.sin(2 * np.pi * 1000 * t)
    amplitude = 2 * float(np.mean(out[0].astype(np.float64) * reference))
    assert amplitude == pytest.approx(1e-5, rel=0.1)  # ...the dithered signal still carries it


def test_dither_edges_and_arguments() -> None:
    audio = np.array([[1.0, -1.0, 2.0, -2.0]], dtype=np.float32)
    out = tpdf_dither_quantize(audio, bits=16, rng=np.random.default_rng(0))
    assert out[0, 0] == out[0, 2] == np.float32(1 - LSB16)
    assert out[0, 1] == out[0, 3] == -1.0
    with pytest.raises(ParameterError, match="bits"):
        tpdf_dither_quantize(audio, bits=25, rng=np.random.default_rng(0))
    with pytest.raises(ParameterError):
        tpdf_dither_quantize(audio.T.copy(), bits=16, rng=np.random.default_rng(0))


def test_dither_is_deterministic_and_independent_of_block_size(tmp_path: Path) -> None:
    audio = make_signal(channels=2, frames=30_000, sample_rate=44100, amplitude=0.1)
    fmt = output_format_for("d.wav", sample_rate=44100, bit_depth="16")

    def render(name: str, block: int, seed: int) -> bytes:
        with AtomicAudioWriter(
            tmp_path / name, sample_rate=44100, channels=2, fmt=fmt, dither_seed=seed
        ) as writer:
            for start in range(0, audio.shape[1], block):
                writer.write(audio[:, start : start + block])
        return (tmp_path / name).read_bytes()

    first = render("a.wav", 1000, seed=5)
    assert render("b.wav", 4096, seed=5) == first
    assert render("c.wav", 30_000, seed=5) == first
    assert render("d.wav", 1000, seed=6) != first


# --- lossy outputs ----------------------------------------------------------------------------


def _noise(channels: int, frames: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    white = rng.standard_normal((channels, frames + 7))
    smooth = np.stack([np.convolve(row, np.ones(8) / 8, mode="valid") for row in white])
    return (0.25 * smooth).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("name", ["l.mp3", "l.ogg"])
def test_mp3_and_vorbis_keep_rate_length_and_alignment(
    tmp_path: Path, name: str, channels: int
) -> None:
    audio = _noise(channels, 44100 + 321)
    fmt = write_audio(tmp_path / name, audio, sample_rate=44100, bit_depth="16")
    assert fmt.lossy
    decoded = read_audio(tmp_path / name)
    assert decoded.sample_rate == 44100
    # Tolerance: none. LAME's tag lets libmpg123 trim delay and padding; Vorbis ends by granule.
    assert decoded.audio.shape == (channels, 44100 + 321)
    assert lag_of(audio, decoded.audio, max_lag=1200) == 0


@pytest.mark.parametrize("rate", [44100, 96000])
def test_opus_is_written_at_48k(tmp_path: Path, rate: int) -> None:
    frames = rate + 99
    audio = _noise(2, frames)
    path = tmp_path / "o.opus"
    with AtomicAudioWriter(
        path,
        sample_rate=rate,
        channels=2,
        fmt=output_format_for(path, sample_rate=rate),
    ) as writer:
        for start in range(0, frames, 10_000):
            writer.write(audio[:, start : start + 10_000])
    expected = round(frames * 48000 / rate)
    # soxr's stream, flushed at the end, gives exactly frames * 48000 / rate (±1 for rounding).
    assert abs(writer.frames_written - expected) <= 1
    info = probe(path)
    assert (info.codec, info.sample_rate, info.channels) == ("OPUS", 48000, 2)
    assert info.frames == writer.frames_written


# --- the atomic writer ----------------------------------------------------------------------


def _fmt(name: str) -> OutputFormat:
    return output_format_for(name, sample_rate=44100, bit_depth="24")


def test_missing_output_folder(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "o.wav"
    with pytest.raises(EncodeError) as caught:
        AtomicAudioWriter(path, sample_rate=44100, channels=2, fmt=_fmt("o.wav"))
    assert str(caught.value) == f"output folder '{tmp_path / 'nope'}/' does not exist"


def test_output_is_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "d.wav"
    target.mkdir()
    with pytest.raises(EncodeError) as caught:
        write_audio(target, np.zeros((1, 10), np.float32), sample_rate=44100)
    assert str(caught.value) == f"'{target}' is a directory"


def test_output_same_as_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, np.zeros(100, np.float32), 44100)
    monkeypatch.chdir(tmp_path)
    os.link(source, tmp_path / "hard.wav")
    for spelling in (source, "in.wav", f"../{tmp_path.name}/in.wav", tmp_path / "hard.wav"):
        with pytest.raises(EncodeError) as caught:
            AtomicAudioWriter(
                spelling, sample_rate=44100, channels=1, fmt=_fmt("in.wav"), forbid_same_as=source
            )
        assert str(caught.value) == "output path is the input file; choose another output"
    # A different file is fine.
    with AtomicAudioWriter(
        "out.wav", sample_rate=44100, channels=1, fmt=_fmt("out.wav"), forbid_same_as=source
    ) as writer:
        writer.write(np.zeros((1, 10), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.wav", "in.wav", "out.wav"]


def test_success_leaves_exactly_the_output(tmp_path: Path) -> None:
    audio = make_signal(channels=2, frames=20_000, sample_rate=44100)
    path = tmp_path / "o.flac"
    with AtomicAudioWriter(path, sample_rate=44100, channels=2, fmt=_fmt("o.flac")) as writer:
        temp = writer.temp_path
        assert temp.parent == tmp_path
        assert temp.name.startswith(".o.flac.")
        assert temp.name.endswith(".tonearm-tmp")
        writer.write(audio[:, :5000])
        writer.write(audio[:, 5000:])
        assert writer.frames_written == 20_000
        assert not path.exists()
        assert temp.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["o.flac"]
    assert probe(path).frames == 20_000


def test_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    audio = make_signal(channels=2, frames=20_000, sample_rate=44100)
    path = tmp_path / "o.wav"
    seen: list[Path] = []

    def master_and_fail() -> None:
        with AtomicAudioWriter(path, sample_rate=44100, channels=2, fmt=_fmt("o.wav")) as writer:
            writer.write(audio)
            seen.append(writer.temp_path)
            assert writer.temp_path.stat().st_size > 100_000
            raise RuntimeError("mastering failed")

    with pytest.raises(RuntimeError, match="mastering failed"):
        master_and_fail()
    assert seen
    assert list(tmp_path.iterdir()) == []


def test_existing_output_untouched_until_rename(tmp_path: Path) -> None:
    path = tmp_path / "o.wav"
    path.write_bytes(b"previous master")
    audio = make_signal(channels=1, frames=10_000, sample_rate=44100)
    with AtomicAudioWriter(path, sample_rate=44100, channels=1, fmt=_fmt("o.wav")) as writer:
        writer.write(audio)
        assert path.read_bytes() == b"previous master"
    assert read_audio(path).audio.shape == (1, 10_000)
    # An aborted rewrite leaves the previous file as it was.
    previous = path.read_bytes()
    writer = AtomicAudioWriter(path, sample_rate=44100, channels=1, fmt=_fmt("o.wav"))
    writer.write(audio[:, :100])
    writer.abort()
    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]


def test_dropped_writer_cleans_up(tmp_path: Path) -> None:
    writer = AtomicAudioWriter(tmp_path / "o.wav", sample_rate=44100, channels=1, fmt=_fmt("o.wav"))
    writer.write(np.zeros((1, 1000), np.float32))
    assert writer.temp_path.exists()
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_bad_blocks_and_closed_writer(tmp_path: Path) -> None:
    writer = AtomicAudioWriter(tmp_path / "o.wav", sample_rate=44100, channels=2, fmt=_fmt("o.wav"))
    with pytest.raises(ParameterError, match="expects 2 channel"):
        writer.write(np.zeros((1, 10), np.float32))
    with pytest.raises(ParameterError, match="NaN or Inf"):
        writer.write(np.full((2, 10), np.nan, np.float32))
    with pytest.raises(ParameterError, match="float32"):
        writer.write(np.zeros((2, 10), np.float64))
    writer.commit()
    with pytest.raises(EncodeError, match="already closed"):
        writer.write(np.zeros((2, 10), np.float32))
    assert sf.info(str(tmp_path / "o.wav")).frames == 0  # committed: a valid, empty WAV


def test_write_audio_returns_the_format(tmp_path: Path) -> None:
    audio = make_signal(channels=2, frames=1000, sample_rate=48000)
    fmt = write_audio(tmp_path / "w.aiff", audio, sample_rate=48000, bit_depth="16", dither_seed=3)
    assert fmt == OutputFormat("AIFF", "PCM_16", 16, False, 48000, True)
    info = probe(tmp_path / "w.aiff")
    assert (info.container, info.codec, info.frames) == ("AIFF", "PCM_16", 1000)


def test_dither_keeps_digital_silence_silent() -> None:
    block = np.zeros((2, 10_000), dtype=np.float32)
    block[:, 5_000:] = 0.25
    out = tpdf_dither_quantize(block, bits=16, rng=np.random.default_rng(0))
    assert not out[:, :5_000].any()
    assert np.all(np.abs(out[:, 5_000:] - 0.25) <= 1.5 / 2**15)


@pytest.mark.parametrize(
    ("name", "bit_depth"),
    [
        ("w.wav", "16"),
        ("w.wav", "24"),
        ("w.wav", "32f"),
        ("w.flac", "16"),
        ("w.flac", "24"),
        ("w.aiff", "16"),
        ("w.aiff", "24"),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_on_written_sees_exactly_what_a_lossless_file_decodes_to(
    tmp_path: Path, name: str, bit_depth: BitDepth, channels: int
) -> None:
    rate = 44100
    # louder than full scale in places, so clipping is part of what must match
    audio = make_signal(channels=channels, frames=rate * 2 + 17, sample_rate=rate, amplitude=1.1)
    fmt = output_format_for(tmp_path / name, sample_rate=rate, bit_depth=bit_depth)
    assert not fmt.lossy
    written: list[np.ndarray] = []
    with AtomicAudioWriter(
        tmp_path / name, sample_rate=rate, channels=channels, fmt=fmt, on_written=written.append
    ) as writer:
        for start in range(0, audio.shape[1], 30000):  # blocks that do not align with chunks
            writer.write(audio[:, start : start + 30000])
    stored = np.concatenate(written, axis=1)
    assert all(piece.dtype == np.float32 and piece.flags.c_contiguous for piece in written)
    decoded = read_audio(tmp_path / name).audio
    assert stored.shape == decoded.shape == audio.shape
    assert np.array_equal(stored, decoded)  # bit for bit
    if bit_depth != "32f":
        assert not np.array_equal(stored, audio)  # quantised, not the input passed through
