"""probe(): formats, exact frame counts, and one-line DecodeErrors for every kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

from tests.audio_io.conftest import BACH, BEETHOVEN, JOPLIN, make_signal
from tonearm.audio_io import AudioInfo, probe, read_audio
from tonearm.audio_io._pyav import mov_length
from tonearm.errors import DecodeError

if TYPE_CHECKING:
    from tests.audio_io.conftest import PyavMaker, SoundfileMaker

NOBODY = 65534


def _one_line_error(path: str | os.PathLike[str]) -> str:
    with pytest.raises(DecodeError) as caught:
        probe(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "subtype", "container", "codec", "bits"),
    [
        ("a.wav", "PCM_16", "WAV", "PCM_16", 16),
        ("a.wav", "PCM_24", "WAV", "PCM_24", 24),
        ("a.wav", "FLOAT", "WAV", "FLOAT", 32),
        ("a.flac", "PCM_16", "FLAC", "FLAC", 16),
        ("a.flac", "PCM_24", "FLAC", "FLAC", 24),
        ("a.aiff", "PCM_16", "AIFF", "PCM_16", 16),
        ("a.aif", "PCM_24", "AIFF", "PCM_24", 24),
    ],
)
def test_lossless_formats(
    make_sf_file: SoundfileMaker, name: str, subtype: str, container: str, codec: str, bits: int
) -> None:
    audio = make_signal(channels=2, frames=12345, sample_rate=48000)
    path = make_sf_file(name, audio, 48000, subtype=subtype)
    info = probe(path)
    assert info == AudioInfo(
        path=path,
        sample_rate=48000,
        channels=2,
        frames=12345,
        duration_s=12345 / 48000,
        container=container,
        codec=codec,
        bit_depth=bits,
        lossy=False,
        decoder="soundfile",
    )


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "container", "codec"),
    [
        ("a.ogg", "OGG", "VORBIS", "OGG", "VORBIS"),
        ("a.opus", "OGG", "OPUS", "OGG", "OPUS"),
        ("a.mp3", "MP3", "MPEG_LAYER_III", "MP3", "MP3"),
    ],
)
def test_lossy_formats_via_soundfile(
    make_sf_file: SoundfileMaker, name: str, fmt: str, subtype: str, container: str, codec: str
) -> None:
    audio = make_signal(channels=1, frames=48000 + 77, sample_rate=48000)
    info = probe(make_sf_file(name, audio, 48000, format=fmt, subtype=subtype))
    assert (info.container, info.codec, info.lossy, info.bit_depth) == (
        container,
        codec,
        True,
        None,
    )
    assert (info.channels, info.sample_rate, info.decoder) == (1, 48000, "soundfile")
    # libsndfile's Vorbis, Opus (pre-skip) and MP3 (LAME tag, gapless) lengths are exact.
    assert info.frames == 48077


def test_m4a_goes_to_pyav_with_exact_length(make_pyav_file: PyavMaker) -> None:
    audio = make_signal(channels=2, frames=44100 * 3 + 123, sample_rate=44100)
    info = probe(make_pyav_file("a.m4a", audio, 44100))
    assert (info.container, info.codec, info.decoder, info.lossy) == ("M4A", "AAC", "pyav", True)
    assert (info.channels, info.sample_rate, info.frames) == (2, 44100, 44100 * 3 + 123)


def test_alac_is_lossless_with_its_bit_depth(make_pyav_file: PyavMaker) -> None:
    audio = make_signal(channels=2, frames=20000, sample_rate=44100)
    info = probe(make_pyav_file("a.m4a", audio, 44100, codec="alac", sample_format="s16p"))
    assert (info.codec, info.lossy, info.bit_depth, info.frames) == ("ALAC", False, 16, 20000)


def test_opus_in_webm_is_counted_exactly(make_pyav_file: PyavMaker) -> None:
    audio = make_signal(channels=2, frames=48000 + 17, sample_rate=48000)
    path = make_pyav_file("a.webm", audio, 48000, codec="libopus", sample_format="flt")
    info = probe(path)
    assert (info.container, info.codec, info.frames) == ("WEBM", "OPUS", 48017)


@pytest.mark.parametrize(
    ("path", "seconds", "container"),
    [(BACH, 32.8, "FLAC"), (JOPLIN, 132.3, "FLAC"), (BEETHOVEN, 584.6, "MP3")],
)
def test_shared_music(path: Path, seconds: float, container: str) -> None:
    info = probe(path)
    assert info.container == container
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration_s == pytest.approx(seconds, abs=0.1)
    assert info.frames == round(info.duration_s * 44100)


# --- MP3 length -----------------------------------------------------------------------------


def test_mp3_without_xing_header_is_counted(make_pyav_file: PyavMaker) -> None:
    # Muxed to a non-seekable sink, ffmpeg cannot write the Xing/LAME header: libsndfile's length
    # is then a file-size estimate, and probe must count instead so decode agrees with it.
    audio = make_signal(channels=2, frames=44100 * 2 + 5, sample_rate=44100)
    path = make_pyav_file(
        "raw.mp3", audio, 44100, codec="libmp3lame", container_format="mp3", seekable=False
    )
    estimate = sf.info(str(path)).frames
    info = probe(path)
    assert info.frames != estimate
    assert read_audio(path).audio.shape == (2, info.frames)
    # No LAME tag means no gapless trim: whole 1152-frame MPEG frames, delay and padding included.
    assert info.frames % 1152 == 0
    assert info.frames >= audio.shape[1]


# --- the MP4 length rule --------------------------------------------------------------------


def test_mov_length_trusts_exact_packets_over_millisecond_edit() -> None:
    # ffmpeg's default muxer: edit duration rounded to 1 ms, packets exact.
    assert (
        mov_length(packet_end=132423, edit_frames=132432, sample_rate=44100, movie_timescale=1000)
        == 132423
    )
    assert (
        mov_length(packet_end=48000, edit_frames=47981, sample_rate=44100, movie_timescale=1000)
        == 48000
    )


def test_mov_length_trusts_edit_that_trims_padding() -> None:
    # Apple-style: every packet 1024 long, the edit list (sample-rate timescale) is exact.
    assert (
        mov_length(packet_end=133120, edit_frames=132423, sample_rate=44100, movie_timescale=44100)
        == 132423
    )
    assert (
        mov_length(packet_end=132428, edit_frames=132423, sample_rate=44100, movie_timescale=44100)
        == 132423
    )
    # Coarse timescale, but far more than its rounding: still padding.
    assert (
        mov_length(packet_end=133120, edit_frames=132432, sample_rate=44100, movie_timescale=1000)
        == 132432
    )
    assert (
        mov_length(packet_end=133120, edit_frames=None, sample_rate=44100, movie_timescale=None)
        == 133120
    )


# --- bad input --------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "f.wav"
    assert _one_line_error(path) == f"'{path}' does not exist"


def test_missing_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "f.wav"
    assert _one_line_error(path) == f"'{path}' does not exist"


def test_directory(tmp_path: Path) -> None:
    assert _one_line_error(tmp_path) == f"'{tmp_path}' is a directory"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "b.wav"
    path.touch()
    assert _one_line_error(path) == f"'{path}' is empty"


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_text("this is not audio\n" * 40)
    assert _one_line_error(path) == f"cannot read '{path}': not an audio file"


def test_zero_frame_wav(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("c.wav", np.zeros((2, 0), np.float32), 44100)
    assert _one_line_error(path) == f"'{path}' has no audio frames"


def test_six_channels(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("z.wav", np.zeros((6, 100), np.float32), 44100)
    assert _one_line_error(path) == f"'{path}' has 6 channels; tonearm masters mono and stereo"


@pytest.mark.parametrize("rate", [4000, 384000])
def test_sample_rate_out_of_range(make_sf_file: SoundfileMaker, rate: int) -> None:
    path = make_sf_file("r.wav", np.zeros((1, 100), np.float32), rate)
    assert _one_line_error(path) == (
        f"'{path}' has a sample rate of {rate} Hz; tonearm supports 8000-192000 Hz"
    )


def _cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(("subtype", "width"), [("PCM_16", 2), ("PCM_24", 3), ("FLOAT", 4)])
def test_truncated_wav(make_sf_file: SoundfileMaker, subtype: str, width: int) -> None:
    path = make_sf_file(
        "t.wav", make_signal(channels=2, frames=30000, sample_rate=44100), 44100, subtype=subtype
    )
    size = path.stat().st_size
    keep = size - 10001 * 2 * width - 1  # cut 10001 frames and one byte of the frame before
    path.write_bytes(path.read_bytes()[:keep])
    present = (keep - (size - 30000 * 2 * width)) // (2 * width)
    assert present == 30000 - 10002
    assert sf.info(str(path)).frames == present  # libsndfile shortens it silently...
    assert _one_line_error(path) == (  # ...probe does not
        f"'{path}' is truncated: header says 30000 frames, only {present} could be decoded"
    )


def test_wav_with_unknown_data_size_is_accepted(make_sf_file: SoundfileMaker) -> None:
    # Streaming writers put 0xFFFFFFFF in the data size; that is not truncation.
    path = make_sf_file("s.wav", make_signal(channels=1, frames=1000, sample_rate=44100), 44100)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert probe(path).frames == 1000


def test_truncated_aiff(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file(
        "t.aiff", make_signal(channels=2, frames=1000, sample_rate=44100), 44100, subtype="PCM_24"
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 600])
    assert _one_line_error(path) == (
        f"'{path}' is truncated: header says 1000 frames, only 900 could be decoded"
    )


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.999])
def test_truncated_flac(make_sf_file: SoundfileMaker, keep: float) -> None:
    path = make_sf_file(
        "t.flac", make_signal(channels=2, frames=44100 * 3, sample_rate=44100), 44100
    )
    _cut(path, keep)
    assert sf.info(str(path)).frames == 44100 * 3  # STREAMINFO still promises everything
    message = _one_line_error(path)
    assert message.startswith(f"'{path}' is truncated: header says 132300 frames, only ")
    decoded = int(message.split("only ")[1].split()[0])
    assert decoded < 44100 * 3 * keep + 16384


def test_flac_without_total_in_streaminfo_goes_to_pyav(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file("u.flac", make_signal(channels=2, frames=50000, sample_rate=44100), 44100)
    data = bytearray(path.read_bytes())
    data[8 + 13] &= 0xF0  # STREAMINFO starts at byte 8; total samples is its last 36 bits
    data[8 + 14 : 8 + 18] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    info = probe(path)
    assert (info.decoder, info.frames, info.codec) == ("pyav", 50000, "FLAC")


def test_truncated_mp3_with_xing_header(make_sf_file: SoundfileMaker) -> None:
    path = make_sf_file(
        "t.mp3", make_signal(channels=2, frames=44100 * 3, sample_rate=44100), 44100, format="MP3"
    )
    _cut(path, 0.5)
    message = _one_line_error(path)
    assert message.startswith(f"'{path}' is truncated: header says 132300 frames, only ")


def test_truncated_m4a_with_index_first(make_pyav_file: PyavMaker) -> None:
    audio = make_signal(channels=2, frames=44100 * 3, sample_rate=44100)
    path = make_pyav_file("t.m4a", audio, 44100, options={"movflags": "+faststart"})
    _cut(path, 0.5)
    assert _one_line_error(path).startswith(f"'{path}' is truncated: header says ")


def test_truncated_m4a_with_index_last(make_pyav_file: PyavMaker) -> None:
    path = make_pyav_file("t.m4a", make_signal(channels=2, frames=44100, sample_rate=44100), 44100)
    _cut(path, 0.5)  # the moov box went with the second half
    assert _one_line_error(path) == f"cannot read '{path}': not an audio file"


def _probe_message_as_nobody(folder: Path, name: str) -> str:
    """Probe ``folder/name`` in a child process that has given up root; return what it raised.

    The child enters ``folder`` first, so only that folder (0o755) needs to be searchable by the
    unprivileged user; the file itself is mode 000 and the open fails for real (EACCES).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.chdir(folder)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            assert not os.access(name, os.R_OK)
            try:
                probe(name)
                result = "no error"
            except DecodeError as exc:
                result = f"DecodeError: {exc}"
            os.write(write_end, result.encode())
        except BaseException as exc:
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_unreadable_file(tmp_path: Path, make_sf_file: SoundfileMaker) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o755)
    path = make_sf_file(
        "locked/e.wav", make_signal(channels=1, frames=100, sample_rate=44100), 44100
    )
    path.chmod(0)
    try:
        if os.geteuid() == 0:  # root reads anything: drop to 'nobody' in a child process
            message = _probe_message_as_nobody(folder, path.name)
            assert message == f"DecodeError: cannot read '{path.name}': permission denied"
        else:
            assert not os.access(path, os.R_OK)
            assert _one_line_error(path) == f"cannot read '{path}': permission denied"
    finally:
        path.chmod(0o644)
