"""Tests for tonearm.library.tags: real files written with soundfile/PyAV, tagged with mutagen."""

from __future__ import annotations

import base64
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import av
import mutagen
import mutagen.flac
import mutagen.id3
import mutagen.mp4
import numpy as np
import pytest
import soundfile as sf

from tonearm.errors import ParameterError, TagError
from tonearm.library.tags import (
    CoverArt,
    FileTags,
    ReplayGain,
    StreamInfo,
    TrackTags,
    read_file_tags,
    replaygain_from_loudness,
    write_replaygain,
)

RATE = 44_100
SECONDS = 0.5
PNG = (
    b"\x89PNG\r\n\x1a\n"
    + struct.pack(">I", 13)
    + b"IHDR"
    + struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"

FULL = TrackTags(
    title="Title",
    artist="Artist",
    album="Album",
    album_artist="Album Artist",
    genre="Jazz",
    track_number=3,
    track_total=12,
    disc_number=1,
    disc_total=2,
    year=2001,
    comment="A comment",
)
FORMATS = ["mp3", "flac", "ogg", "opus", "m4a", "alac", "wav", "aiff"]
ID3_FORMATS = {"mp3", "wav", "aiff"}
VORBIS_FORMATS = {"flac", "ogg", "opus"}
MP4_FORMATS = {"m4a", "alac"}


def _signal(rate: int) -> np.ndarray:
    t = np.arange(int(SECONDS * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)


def _write_pyav(path: Path, codec: str, container_format: str = "ipod") -> None:
    data = np.ascontiguousarray(_signal(RATE).T)
    sample_format = "fltp"
    if codec in ("alac", "wavpack"):
        data = np.round(data * 32767).astype(np.int16)
        sample_format = "s16p"
    with av.open(str(path), "w", format=container_format) as container:
        stream: Any = container.add_stream(codec, rate=RATE, layout="stereo")
        stream.format = sample_format
        for start in range(0, data.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[:, start : start + 1024]),
                format=sample_format,
                layout="stereo",
            )
            frame.sample_rate = RATE
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def make_audio(folder: Path, fmt: str, subtype: str | None = None) -> Path:
    """Write 0.5 s of stereo audio as ``fmt``; return the path."""
    ext = "m4a" if fmt == "alac" else fmt
    path = folder / f"track-{fmt}-{subtype or 'default'}.{ext}"
    if fmt in MP4_FORMATS:
        _write_pyav(path, "alac" if fmt == "alac" else "aac")
    elif fmt == "opus":
        sf.write(path, _signal(48_000), 48_000, format="OGG", subtype="OPUS")
    elif fmt == "ogg":
        sf.write(path, _signal(RATE), RATE, format="OGG", subtype="VORBIS")
    elif fmt == "mp3":
        sf.write(path, _signal(RATE), RATE, format="MP3")
    else:
        sf.write(path, _signal(RATE), RATE, subtype=subtype or "PCM_16")
    return path


def _picture_block(data: bytes, kind: int, mime: str) -> mutagen.flac.Picture:
    picture = mutagen.flac.Picture()
    picture.type = kind
    picture.mime = mime
    picture.data = data
    return picture


def open_tagged(path: Path):
    """The file opened with mutagen, with an (empty) tag added if it had none."""
    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    return audio


def tag_full(path: Path, fmt: str) -> None:
    """Tag with every TrackTags field; a back cover (JPEG) before the front cover (PNG)."""
    audio = open_tagged(path)
    tags = audio.tags
    if fmt in ID3_FORMATS:
        id3 = mutagen.id3
        for frame in (
            id3.TIT2(encoding=3, text=["Title"]),
            id3.TPE1(encoding=3, text=["Artist"]),
            id3.TALB(encoding=3, text=["Album"]),
            id3.TPE2(encoding=3, text=["Album Artist"]),
            id3.TCON(encoding=3, text=["Jazz"]),
            id3.TRCK(encoding=3, text=["3/12"]),
            id3.TPOS(encoding=3, text=["1/2"]),
            id3.TDRC(encoding=3, text=["2001-05-03"]),
            id3.COMM(encoding=3, lang="eng", desc="iTunNORM", text=[" 0000 0000"]),
            id3.COMM(encoding=3, lang="eng", desc="", text=["A comment"]),
            id3.APIC(encoding=3, mime="image/jpeg", type=4, desc="back", data=JPEG),
            id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="front", data=PNG),
        ):
            tags.add(frame)
    elif fmt in VORBIS_FORMATS:
        tags.update(
            {
                "TITLE": ["Title"],
                "ARTIST": ["Artist"],
                "ALBUM": ["Album"],
                "ALBUMARTIST": ["Album Artist"],
                "GENRE": ["Jazz"],
                "TRACKNUMBER": ["3"],
                "TRACKTOTAL": ["12"],
                "DISCNUMBER": ["1/2"],
                "DATE": ["2001-05-03"],
                "COMMENT": ["A comment"],
            }
        )
        back = _picture_block(JPEG, 4, "image/jpeg")
        front = _picture_block(PNG, 3, "image/png")
        if fmt == "flac":
            audio.add_picture(back)
            audio.add_picture(front)
        else:
            tags["METADATA_BLOCK_PICTURE"] = [
                base64.b64encode(p.write()).decode() for p in (back, front)
            ]
    else:
        tags.update(
            {
                "\xa9nam": ["Title"],
                "\xa9ART": ["Artist"],
                "\xa9alb": ["Album"],
                "aART": ["Album Artist"],
                "\xa9gen": ["Jazz"],
                "trkn": [(3, 12)],
                "disk": [(1, 2)],
                "\xa9day": ["2001-05-03T00:00:00Z"],
                "\xa9cmt": ["A comment"],
                "covr": [mutagen.mp4.MP4Cover(PNG, imageformat=mutagen.mp4.MP4Cover.FORMAT_PNG)],
            }
        )
    audio.save()


def _decode(path: Path) -> np.ndarray:
    """The decoded samples (PyAV for MP4, soundfile otherwise)."""
    if path.suffix == ".m4a":
        with av.open(str(path)) as container:
            frames = [f.to_ndarray() for f in container.decode(audio=0)]
        return np.concatenate(frames, axis=1)
    samples: np.ndarray = sf.read(path, dtype="float32")[0]
    return samples


def _single_line_error(excinfo: pytest.ExceptionInfo[TagError], path: Path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# ------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_field_round_trips(tmp_path: Path, fmt: str) -> None:
    path = make_audio(tmp_path, fmt)
    tag_full(path, fmt)
    result = read_file_tags(path)
    assert isinstance(result, FileTags)
    assert result.tags == FULL
    assert result.cover == CoverArt(data=PNG, mime="image/png")
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("fmt", "subtype", "codec", "bits"),
    [
        ("wav", "PCM_16", "pcm", 16),
        ("wav", "PCM_24", "pcm", 24),
        ("aiff", "PCM_16", "aiff", 16),
        ("aiff", "PCM_24", "aiff", 24),
        ("flac", "PCM_16", "flac", 16),
        ("flac", "PCM_24", "flac", 24),
        ("alac", None, "alac", 16),
        ("mp3", None, "mp3", None),
        ("ogg", None, "vorbis", None),
        ("opus", None, "opus", None),
        ("m4a", None, "aac", None),
    ],
)
def test_stream_info(tmp_path: Path, fmt: str, subtype: str | None, codec: str, bits: int | None):
    stream = read_file_tags(make_audio(tmp_path, fmt, subtype)).stream
    assert isinstance(stream, StreamInfo)
    assert stream.codec == codec
    assert stream.bit_depth == bits
    assert stream.channels == 2
    assert stream.sample_rate == (48_000 if fmt == "opus" else RATE)
    tolerance = 1e-3 if bits is not None else 0.05  # lossy: AAC counts its priming
    assert stream.duration_s == pytest.approx(SECONDS, abs=tolerance)
    assert stream.bitrate_kbps is not None
    assert stream.bitrate_kbps > 16


@pytest.mark.parametrize("fmt", FORMATS)
def test_untagged_file_gives_empty_tags(tmp_path: Path, fmt: str) -> None:
    result = read_file_tags(make_audio(tmp_path, fmt))
    assert result.tags == TrackTags()
    assert result.cover is None
    assert result.warnings == ()


def test_odd_strings_in_vorbis_comments(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "flac")
    audio = mutagen.File(path)
    audio.tags.update(
        {
            "TITLE": ["  Ünïcødé 日本語 🎵\t"],
            "ARTIST": ["A", " B ", "", "A"],
            "ALBUM": [""],
            "GENRE": ["   "],
            "albumartist": ["lower-case key"],
            "DESCRIPTION": ["from DESCRIPTION"],
            "YEAR": ["circa 1999"],
        }
    )
    audio.save()
    tags = read_file_tags(path).tags
    assert tags.title == "Ünïcødé 日本語 🎵"
    assert tags.artist == "A; B"
    assert tags.album is None
    assert tags.genre is None
    assert tags.album_artist == "lower-case key"
    assert tags.comment == "from DESCRIPTION"
    assert tags.year == 1999


def test_id3v24_multiple_values(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "mp3")
    tags = mutagen.id3.ID3()
    tags.add(mutagen.id3.TPE1(encoding=3, text=["One", "Two", " One "]))
    tags.add(mutagen.id3.TCON(encoding=3, text=["Jazz", "Funk"]))
    tags.save(path, v2_version=4)
    result = read_file_tags(path).tags
    assert result.artist == "One; Two"
    assert result.genre == "Jazz; Funk"


def test_id3v23_numeric_genre_year_and_utf16(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "mp3")
    tags = mutagen.id3.ID3()
    tags.add(mutagen.id3.TCON(encoding=3, text=["(17)"]))
    tags.add(mutagen.id3.TYER(encoding=3, text=["1987"]))
    tags.add(mutagen.id3.TIT2(encoding=1, text=["  Üñí  "]))
    tags.save(path, v2_version=3)
    result = read_file_tags(path).tags
    assert result.genre == "Rock"
    assert result.year == 1987
    assert result.title == "Üñí"


def test_mp4_multiple_values_and_zero_track(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "m4a")
    audio = open_tagged(path)
    audio.tags["\xa9ART"] = ["X", "Y "]
    audio.tags["trkn"] = [(0, 12)]
    audio.tags["disk"] = [(2, 0)]
    audio.save()
    tags = read_file_tags(path).tags
    assert tags.artist == "X; Y"
    assert (tags.track_number, tags.track_total) == (None, 12)
    assert (tags.disc_number, tags.disc_total) == (2, None)


def test_apev2_tags_of_wavpack(tmp_path: Path) -> None:
    path = tmp_path / "track.wv"
    _write_pyav(path, "wavpack", "wv")
    audio = open_tagged(path)
    audio.tags.update(
        {"Title": " T ", "Artist": ["x", "y"], "Album Artist": "AA", "Track": "2/5", "Year": "1970"}
    )
    audio.save()
    result = read_file_tags(path)
    assert result.tags == TrackTags(
        title="T", artist="x; y", album_artist="AA", track_number=2, track_total=5, year=1970
    )
    assert result.stream.codec == "wavpack"
    assert result.stream.bit_depth == 16
    assert result.stream.duration_s == pytest.approx(SECONDS, abs=1e-3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("9" * 5000, (None, None), id="5000-digits"),
        ("3", (3, None)),
        ("3/12", (3, 12)),
        (" 03 ", (3, None)),
        ("03 / 12", (3, 12)),
        ("7/", (7, None)),
        ("0", (None, None)),
        ("0/9", (None, 9)),
        ("-1", (None, None)),
        ("abc", (None, None)),
        ("3/abc", (None, None)),
        ("1e3", (None, None)),
        ("", (None, None)),
        ("99999999999999999999", (None, None)),
        ("٣", (None, None)),
    ],
)
def test_track_number_parsing(
    tmp_path: Path, value: str, expected: tuple[int | None, int | None]
) -> None:
    for fmt in ("flac", "mp3"):
        path = make_audio(tmp_path, fmt)
        audio = open_tagged(path)
        if fmt == "flac":
            audio.tags["TRACKNUMBER"] = [value]
            audio.tags["DISCNUMBER"] = [value]
        else:
            audio.tags.add(mutagen.id3.TRCK(encoding=3, text=[value]))
            audio.tags.add(mutagen.id3.TPOS(encoding=3, text=[value]))
        audio.save()
        tags = read_file_tags(path).tags
        assert (tags.track_number, tags.track_total) == expected, fmt
        assert (tags.disc_number, tags.disc_total) == expected, fmt


# ---------------------------------------------------------------------------------- cover art


def test_first_picture_when_no_front_cover_and_mime_from_magic(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "mp3")
    audio = open_tagged(path)
    audio.tags.add(mutagen.id3.APIC(encoding=3, mime="image/png", type=4, desc="a", data=JPEG))
    audio.tags.add(mutagen.id3.APIC(encoding=3, mime="image/png", type=5, desc="b", data=PNG))
    audio.save()
    assert read_file_tags(path).cover == CoverArt(data=JPEG, mime="image/jpeg")


def test_front_cover_in_unknown_format_falls_back_to_next_picture(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "flac")
    audio = mutagen.File(path)
    audio.add_picture(_picture_block(GIF, 3, "image/gif"))
    audio.add_picture(_picture_block(JPEG, 4, "image/jpeg"))
    audio.save()
    assert read_file_tags(path).cover == CoverArt(data=JPEG, mime="image/jpeg")


def test_only_unknown_pictures_give_no_cover_and_a_warning(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "flac")
    audio = mutagen.File(path)
    audio.add_picture(_picture_block(GIF, 3, "image/png"))
    audio.save()
    result = read_file_tags(path)
    assert result.cover is None
    assert len(result.warnings) == 1
    assert "JPEG or PNG" in result.warnings[0]


def test_broken_vorbis_picture_is_skipped_with_warning(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "ogg")
    audio = mutagen.File(path)
    good = base64.b64encode(_picture_block(PNG, 4, "image/png").write()).decode()
    audio.tags["METADATA_BLOCK_PICTURE"] = ["!!not base64!!", good]
    audio.tags["TITLE"] = ["Still here"]
    audio.save()
    result = read_file_tags(path)
    assert result.cover == CoverArt(data=PNG, mime="image/png")
    assert result.tags.title == "Still here"
    assert result.warnings == ("broken METADATA_BLOCK_PICTURE skipped",)


# ------------------------------------------------------------------------------- broken files


def _synchsafe(value: int) -> bytes:
    return bytes((value >> shift) & 0x7F for shift in (21, 14, 7, 0))


def _tagged_mp3(folder: Path) -> bytes:
    path = make_audio(folder, "mp3")
    tag_full(path, "mp3")
    data = path.read_bytes()
    assert data.startswith(b"ID3")
    return data


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:6] + _synchsafe(200_000_000) + d[10:],  # absurd size
        lambda d: d[:6] + b"\x80" + d[7:],  # size not synchsafe
        lambda d: d[:3] + b"\x09" + d[4:],  # unsupported ID3 version
    ],
    ids=["absurd-size", "not-synchsafe", "bad-version"],
)
def test_broken_id3_header_on_mp3_keeps_stream_info(tmp_path: Path, damage) -> None:
    path = tmp_path / "broken.mp3"
    path.write_bytes(damage(_tagged_mp3(tmp_path)))
    result = read_file_tags(path)
    assert result.tags == TrackTags()
    assert result.cover is None
    assert len(result.warnings) == 1
    assert "tags could not be read" in result.warnings[0]
    assert result.stream.codec == "mp3"
    assert result.stream.sample_rate == RATE
    assert result.stream.duration_s == pytest.approx(SECONDS, abs=0.05)


def test_garbage_in_id3_frame_area_is_not_fatal(tmp_path: Path) -> None:
    data = bytearray(_tagged_mp3(tmp_path))
    data[10:60] = b"\xff" * 50  # overwrites the first frames' headers and contents
    path = tmp_path / "garbled.mp3"
    path.write_bytes(bytes(data))
    result = read_file_tags(path)
    assert result.tags.title is None
    assert result.stream.sample_rate == RATE
    assert result.stream.duration_s == pytest.approx(SECONDS, abs=0.05)


@pytest.mark.parametrize("fmt", ["wav", "aiff"])
def test_broken_id3_chunk_in_pcm_file(tmp_path: Path, fmt: str) -> None:
    path = make_audio(tmp_path, fmt)
    tag_full(path, fmt)
    data = bytearray(path.read_bytes())
    start = data.rfind(b"ID3\x04")
    assert start > 0
    data[start + 6] = 0x80  # tag size no longer synchsafe
    path.write_bytes(bytes(data))
    result = read_file_tags(path)
    assert result.tags == TrackTags()
    assert len(result.warnings) == 1
    assert "tags could not be read" in result.warnings[0]
    assert result.stream.sample_rate == RATE
    assert result.stream.channels == 2
    assert result.stream.bit_depth == 16
    assert result.stream.codec == ("aiff" if fmt == "aiff" else "pcm")
    assert result.stream.duration_s == pytest.approx(SECONDS, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("text.mp3", b"hello, this is not music\n" * 40),
        ("empty.mp3", b""),
        ("random.flac", np.random.default_rng(1).bytes(4096)),
        ("random.bin", np.random.default_rng(2).bytes(4096)),
        ("picture.m4a", PNG),
        ("fake.ogg", b"OggS" + bytes(200)),
    ],
)
def test_not_audio_raises_one_line_tag_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TagError) as excinfo:
        read_file_tags(path)
    assert "not an audio file" in _single_line_error(excinfo, path)


def test_missing_file_and_directory_raise_tag_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.flac"
    with pytest.raises(TagError) as excinfo:
        read_file_tags(missing)
    assert "does not exist" in _single_line_error(excinfo, missing)
    folder = tmp_path / "folder.mp3"
    folder.mkdir()
    with pytest.raises(TagError) as excinfo:
        read_file_tags(folder)
    assert "directory" in _single_line_error(excinfo, folder)
    with pytest.raises(TagError):
        write_replaygain(folder, ReplayGain(-1.0, 0.5))
    with pytest.raises(TagError):
        write_replaygain(missing, ReplayGain(-1.0, 0.5))


def test_unreadable_file_raises_tag_error(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "flac")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anyway: then it must read normally
            assert read_file_tags(path).stream.codec == "flac"
        else:
            with pytest.raises(TagError) as excinfo:
                read_file_tags(path)
            assert "ermission" in _single_line_error(excinfo, path)
    finally:
        path.chmod(0o644)


# ---------------------------------------------------------------------------------- ReplayGain


def test_replaygain_from_loudness() -> None:
    gain = replaygain_from_loudness(-25.12, -1.0)
    assert gain.track_gain_db == pytest.approx(7.12)
    assert gain.track_peak == pytest.approx(10 ** (-1 / 20))
    assert gain.album_gain_db is None
    assert gain.album_peak is None
    loud = replaygain_from_loudness(-8.0, 0.5)
    assert loud.track_gain_db == pytest.approx(-10.0)
    assert loud.track_peak == pytest.approx(1.0592537)
    assert replaygain_from_loudness(-20.0, -np.inf).track_peak == 0.0


@pytest.mark.parametrize(
    ("lufs", "dbtp"), [(-np.inf, -3.0), (np.nan, -3.0), (np.inf, 0.0), (-20.0, np.nan)]
)
def test_replaygain_from_loudness_rejects_non_finite(lufs: float, dbtp: float) -> None:
    with pytest.raises(ParameterError):
        replaygain_from_loudness(lufs, dbtp)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"track_gain_db": np.nan, "track_peak": 1.0},
        {"track_gain_db": 1.0, "track_peak": -0.1},
        {"track_gain_db": 1.0, "track_peak": 1.0, "album_gain_db": np.inf},
        {"track_gain_db": 1.0, "track_peak": 1.0, "album_peak": np.nan},
    ],
)
def test_replaygain_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ParameterError):
        ReplayGain(**kwargs)


def _raw_replaygain(path: Path) -> dict[str, str]:
    """The ReplayGain/R128 tags as stored, keyed by upper-case name."""
    audio = mutagen.File(path)
    found: dict[str, str] = {}
    if audio.tags is None:
        return found
    if isinstance(audio.tags, mutagen.id3.ID3):
        for frame in audio.tags.getall("TXXX"):
            found[frame.desc] = frame.text[0]
    elif isinstance(audio.tags, mutagen.mp4.MP4Tags):
        prefix = "----:com.apple.iTunes:"
        for key, values in audio.tags.items():
            if key.startswith(prefix):
                found[key[len(prefix) :]] = bytes(values[0]).decode()
    else:
        for key, value in audio.tags:  # raw (key, value) pairs, spelling as stored
            if key.upper().startswith(("REPLAYGAIN", "R128")):
                assert key not in found, f"duplicate {key}"
                found[key] = value
    return found


@pytest.mark.parametrize("fmt", ["flac", "mp3", "ogg", "opus", "m4a", "alac", "wav", "aiff"])
def test_write_replaygain_round_trip(tmp_path: Path, fmt: str) -> None:
    path = make_audio(tmp_path, fmt)
    tag_full(path, fmt)
    before_tags = read_file_tags(path)
    before_audio = _decode(path)
    write_replaygain(path, ReplayGain(-7.123, 0.98765432, album_gain_db=1.5, album_peak=1.2))
    expected = {
        "REPLAYGAIN_TRACK_GAIN": "-7.12 dB",
        "REPLAYGAIN_TRACK_PEAK": "0.987654",
        "REPLAYGAIN_ALBUM_GAIN": "1.50 dB",
        "REPLAYGAIN_ALBUM_PEAK": "1.200000",
    }
    if fmt == "opus":
        # integrated = -18 + 7.123 = -10.877 LUFS; (-23 + 10.877) * 256 = -3103.49
        expected |= {"R128_TRACK_GAIN": "-3103", "R128_ALBUM_GAIN": str(round((1.5 - 5) * 256))}
    assert _raw_replaygain(path) == expected
    after_tags = read_file_tags(path)
    assert after_tags.tags == before_tags.tags == FULL
    assert after_tags.cover == before_tags.cover
    np.testing.assert_array_equal(_decode(path), before_audio)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_write_replaygain_replaces_old_values_and_keeps_album(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "flac")
    audio = mutagen.File(path)
    audio.tags["replaygain_track_gain"] = ["+99.00 dB"]
    audio.tags["replaygain_album_gain"] = ["-3.00 dB"]
    audio.tags["ARTIST"] = ["Someone"]
    audio.save()
    write_replaygain(path, ReplayGain(-0.001, 0.5))
    assert _raw_replaygain(path) == {
        "REPLAYGAIN_TRACK_GAIN": "0.00 dB",
        "REPLAYGAIN_TRACK_PEAK": "0.500000",
        "replaygain_album_gain": "-3.00 dB",
    }
    assert read_file_tags(path).tags.artist == "Someone"


def test_write_replaygain_twice_on_id3_keeps_one_frame_each(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "mp3")
    tags = mutagen.id3.ID3()
    tags.add(mutagen.id3.TXXX(encoding=3, desc="replaygain_track_gain", text=["+5 dB"]))
    tags.add(mutagen.id3.TIT2(encoding=3, text=["Old v2.3 tag"]))
    tags.save(path, v2_version=3)
    write_replaygain(path, ReplayGain(2.0, 0.25))
    write_replaygain(path, ReplayGain(3.456, 0.125))
    assert _raw_replaygain(path) == {
        "REPLAYGAIN_TRACK_GAIN": "3.46 dB",
        "REPLAYGAIN_TRACK_PEAK": "0.125000",
    }
    assert mutagen.id3.ID3(path).version == (2, 3, 0)
    assert read_file_tags(path).tags.title == "Old v2.3 tag"


def test_write_replaygain_keeps_id3v23_frames_as_they_were(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "mp3")
    tags = mutagen.id3.ID3()
    tags.add(mutagen.id3.TYER(encoding=1, text=["1999"]))
    tags.add(mutagen.id3.TDAT(encoding=1, text=["3105"]))
    tags.add(mutagen.id3.TSOP(encoding=1, text=["Sort Artist"]))  # v2.4 frame iTunes puts in v2.3
    tags.save(path, v2_version=3)
    write_replaygain(path, ReplayGain(-1.0, 0.5))
    saved = mutagen.id3.ID3(path, translate=False)
    assert saved.version == (2, 3, 0)
    assert saved["TSOP"].text == ["Sort Artist"]
    assert saved["TYER"].text == ["1999"]
    assert saved["TDAT"].text == ["3105"]
    assert saved["TXXX:REPLAYGAIN_TRACK_GAIN"].text == ["-1.00 dB"]
    assert read_file_tags(path).tags.year == 1999


def test_write_replaygain_follows_symlink(tmp_path: Path) -> None:
    target = make_audio(tmp_path, "flac")
    link = tmp_path / "link.flac"
    link.symlink_to(target.name)
    write_replaygain(link, ReplayGain(1.0, 0.5))
    assert link.is_symlink()
    assert _raw_replaygain(target)["REPLAYGAIN_TRACK_GAIN"] == "1.00 dB"


@pytest.mark.parametrize("where", ["save", "fsync", "replace"])
def test_failed_write_leaves_original_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    path = make_audio(tmp_path, "flac")
    tag_full(path, "flac")
    original = path.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if where == "save":
        monkeypatch.setattr(mutagen.flac.FLAC, "save", fail)
    else:
        monkeypatch.setattr(f"tonearm.library.tags.os.{where}", fail)
    with pytest.raises(TagError) as excinfo:
        write_replaygain(path, ReplayGain(-7.0, 0.9))
    assert "No space left on device" in _single_line_error(excinfo, path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_write_replaygain_refuses_unreadable_tags_and_non_audio(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(_tagged_mp3(tmp_path)[:6] + b"\x80\x00\x00\x00" + bytes(100))
    original = broken.read_bytes()
    with pytest.raises(TagError) as excinfo:
        write_replaygain(broken, ReplayGain(1.0, 0.5))
    _single_line_error(excinfo, broken)
    assert broken.read_bytes() == original
    au = tmp_path / "sound.au"
    sf.write(au, _signal(RATE), RATE, format="AU")
    with pytest.raises(TagError) as excinfo:
        write_replaygain(au, ReplayGain(1.0, 0.5))
    assert "not an audio file" in _single_line_error(excinfo, au)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tonearm-tags")]
    assert leftovers == []


def test_non_utf8_and_long_file_names(tmp_path: Path) -> None:
    for raw in (b"caf\xe9 \xff.flac", "é".encode() * 120 + b".flac"):
        path = tmp_path / os.fsdecode(raw)
        make_audio(tmp_path, "flac").rename(path)
        write_replaygain(path, ReplayGain(1.0, 0.5))
        assert _raw_replaygain(path)["REPLAYGAIN_TRACK_GAIN"] == "1.00 dB"
        assert read_file_tags(path).stream.codec == "flac"
        assert sorted(tmp_path.iterdir()) == [path]
        path.unlink()


def test_copy_keeps_permission_bits(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "ogg")
    path.chmod(0o640)
    write_replaygain(path, ReplayGain(1.0, 0.5))
    assert path.stat().st_mode & 0o777 == 0o640
    assert _raw_replaygain(path)["REPLAYGAIN_TRACK_PEAK"] == "0.500000"


def test_write_touches_only_the_named_file(tmp_path: Path) -> None:
    path = make_audio(tmp_path, "wav")
    shutil.copy(path, tmp_path / "copy.wav")
    write_replaygain(tmp_path / "copy.wav", ReplayGain(-2.5, 0.75))
    assert _raw_replaygain(tmp_path / "copy.wav")["REPLAYGAIN_TRACK_GAIN"] == "-2.50 dB"
    assert _raw_replaygain(path) == {}
