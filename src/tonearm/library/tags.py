"""Read a track's tags, stream info and cover art, and write ReplayGain 2.0 tags (with mutagen).

* :func:`read_file_tags` returns a :class:`FileTags`: the common text fields (:class:`TrackTags`)
  from ID3 (MP3, WAV, AIFF), Vorbis comments (FLAC, OGG Vorbis, Opus), MP4 atoms (M4A/AAC/ALAC)
  and APEv2; the stream parameters (:class:`StreamInfo`); the front cover (:class:`CoverArt`,
  its type taken from the image's magic bytes); and warnings about what was skipped. Broken tags
  never fail a file whose audio is readable: the tags come back empty with a warning, and the
  stream info comes from the MPEG frame headers or :func:`tonearm.audio_io.probe` instead.
* :func:`replaygain_from_loudness` turns an EBU R128 measurement into a :class:`ReplayGain`
  (reference -18 LUFS) and :func:`write_replaygain` writes it the way beets, foobar2000 and
  Jellyfin read it (``REPLAYGAIN_*`` Vorbis comments, ID3 ``TXXX`` frames, iTunes freeform atoms,
  plus ``R128_*_GAIN`` for Opus) into a copy of the file that replaces the original only once it
  is complete and synced, so a crash leaves either the old file or the new one.

Every failure is a :class:`~tonearm.errors.TagError` whose message is one line naming the file.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
import stat
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mutagen
import mutagen.flac
import mutagen.id3
import mutagen.mp3
import mutagen.mp4
import mutagen.oggopus
from mutagen import MutagenError

from tonearm.audio_io import probe
from tonearm.errors import DecodeError, ParameterError, TagError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "CoverArt",
    "FileTags",
    "ReplayGain",
    "StreamInfo",
    "TrackTags",
    "read_file_tags",
    "replaygain_from_loudness",
    "write_replaygain",
]

# mutagen's functions are unannotated: call them through Any-typed names (mypy --strict)
_open_mutagen: Callable[..., Any] = mutagen.File
_MPEGInfo: Callable[..., Any] = mutagen.mp3.MPEGInfo
_Picture: Callable[..., Any] = mutagen.flac.Picture
_TXXX: Callable[..., Any] = mutagen.id3.TXXX
_FreeForm: Callable[..., Any] = mutagen.mp4.MP4FreeForm

_REFERENCE_LUFS = -18.0
"""ReplayGain 2.0 reference loudness, in LUFS."""
_R128_REFERENCE_LUFS = -23.0
"""Reference of the Opus ``R128_*_GAIN`` tags (RFC 7845), in LUFS."""
_MAX_INDEX = 99_999
"""Largest plausible track or disc number; anything above is garbage."""
_FRONT_COVER = 3
"""Picture type "Cover (front)" of ID3 APIC frames and FLAC/Vorbis picture blocks."""
_MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
_NUMBER_PAIR = re.compile(r"\s*([0-9]+)\s*(?:/\s*([0-9]*)\s*)?")
_YEAR = re.compile(r"(?<![0-9])([0-9]{4})(?![0-9])")
_CODECS = {
    "FLAC": "flac", "OggFLAC": "flac", "OggVorbis": "vorbis", "OggOpus": "opus",
    "OggSpeex": "speex", "WAVE": "pcm", "AIFF": "aiff", "AAC": "aac", "AC3": "ac3",
    "WavPack": "wavpack", "MonkeysAudio": "ape", "Musepack": "musepack", "TrueAudio": "tta",
    "OptimFROG": "optimfrog", "TAK": "tak", "DSF": "dsd", "DSDIFF": "dsd", "ASF": "wma",
}  # fmt: skip
"""Short codec name by mutagen class name (MP3 and MP4 are told apart by their stream)."""
_LOSSLESS = frozenset({"flac", "pcm", "aiff", "alac", "wavpack", "ape", "tta", "tak", "dsd"})
_TAG_PARSE_ERRORS = (MutagenError, ValueError, TypeError, LookupError, UnicodeError)


@dataclass(frozen=True, slots=True)
class TrackTags:
    """The tag fields of tonearm's library; ``None`` where absent, empty or unparsable.

    Strings are stripped, several values of one field are joined with ``"; "``; track and disc
    numbers are 1-based (0 counts as absent); ``year`` is the release date's four-digit year.
    """

    title: str | None = None
    artist: str | None = None
    album: str | None = None
    album_artist: str | None = None
    genre: str | None = None
    track_number: int | None = None
    track_total: int | None = None
    disc_number: int | None = None
    disc_total: int | None = None
    year: int | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """The audio stream.

    ``duration_s`` in seconds (AAC in MP4: as the container says, encoder priming included),
    ``sample_rate`` in Hz (48000 for Opus), ``channels``, ``bit_depth`` in bits per sample of
    lossless codecs (``None`` for lossy ones), ``codec`` a short lowercase name (``"flac"``,
    ``"mp3"``, ``"vorbis"``, ``"opus"``, ``"aac"``, ``"alac"``, ``"pcm"`` for WAV, ``"aiff"``...)
    and ``bitrate_kbps`` the average bitrate in kbit/s, when known.
    """

    duration_s: float
    sample_rate: int
    channels: int
    bit_depth: int | None
    codec: str
    bitrate_kbps: int | None


@dataclass(frozen=True, slots=True)
class CoverArt:
    """An embedded cover image; ``mime`` (``image/jpeg`` or ``image/png``) comes from its bytes."""

    data: bytes
    mime: str


@dataclass(frozen=True, slots=True)
class FileTags:
    """Everything :func:`read_file_tags` learns about one file, and what it had to skip."""

    tags: TrackTags
    stream: StreamInfo
    cover: CoverArt | None
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReplayGain:
    """ReplayGain 2.0 values: gains in dB towards -18 LUFS, peaks as linear amplitudes (1.0 =
    full scale; true or sample peak). The album values are optional.

    Raises ParameterError for a non-finite gain or a negative or non-finite peak.
    """

    track_gain_db: float
    track_peak: float
    album_gain_db: float | None = None
    album_peak: float | None = None

    def __post_init__(self) -> None:
        for label, gain in (("track gain", self.track_gain_db), ("album gain", self.album_gain_db)):
            if gain is not None and not math.isfinite(gain):
                raise ParameterError(f"ReplayGain {label} must be finite, got {gain} dB")
        for label, peak in (("track peak", self.track_peak), ("album peak", self.album_peak)):
            if peak is not None and not (math.isfinite(peak) and peak >= 0):
                raise ParameterError(f"ReplayGain {label} must be finite and >= 0, got {peak}")


def replaygain_from_loudness(integrated_lufs: float, true_peak_dbtp: float) -> ReplayGain:
    """Track ReplayGain 2.0 values from an integrated loudness (LUFS) and a true peak (dBTP).

    The gain is ``-18 - integrated_lufs`` dB, the peak ``10 ** (true_peak_dbtp / 20)``.

    Raises
    ------
    ParameterError
        When the loudness is not finite (silence measures -inf LUFS) or the peak is NaN or +inf.
    """
    if not math.isfinite(integrated_lufs):
        raise ParameterError(
            f"cannot compute ReplayGain from a loudness of {integrated_lufs} LUFS (silence?)"
        )
    if math.isnan(true_peak_dbtp) or true_peak_dbtp == math.inf:
        raise ParameterError(f"true peak must be finite, got {true_peak_dbtp} dBTP")
    return ReplayGain(_REFERENCE_LUFS - integrated_lufs, 10.0 ** (true_peak_dbtp / 20.0))


def read_file_tags(path: str | os.PathLike[str]) -> FileTags:
    """Read the tags, stream info and front cover of an audio file.

    Raises
    ------
    TagError
        One line naming the file: it is missing, a directory, unreadable, or not audio that
        mutagen (or, when only its tags are broken, the decoder) can read.
    """
    name = os.fspath(path)
    file, size = _check_file(path, name)
    not_audio = f"'{name}' is not an audio file mutagen can read"
    if size == 0:
        raise TagError(f"{not_audio} (the file is empty)")
    try:
        audio = _open_mutagen(os.fspath(file))
    except Exception as exc:  # mutagen raises assorted types on damaged files
        stream = _stream_without_mutagen(file)
        if stream is None:
            raise TagError(f"{not_audio} ({_one_line(exc)})") from None
        warning = f"tags could not be read and were ignored ({_one_line(exc)})"
        return FileTags(TrackTags(), stream, None, (warning,))
    if audio is None:
        raise TagError(not_audio)
    stream = _stream_info(type(audio).__name__, audio.info) or _stream_without_mutagen(file)
    if stream is None:
        raise TagError(not_audio)
    warnings: list[str] = []
    try:
        tags = _track_tags(audio.tags)
    except _TAG_PARSE_ERRORS as exc:
        tags = TrackTags()
        warnings.append(f"tags could not be parsed and were ignored ({_one_line(exc)})")
    return FileTags(tags, stream, _cover(audio, warnings), tuple(warnings))


def write_replaygain(path: str | os.PathLike[str], gain: ReplayGain) -> None:
    """Write ReplayGain 2.0 tags into an audio file, keeping its other tags and its audio.

    Album tags already in the file stay when ``gain`` has no album values. The file is copied to
    ``.{name}.{random}.tonearm-tags`` in its folder, the copy is tagged, synced and renamed over
    the original (keeping its permission bits; the modification time is the write's). On any
    failure the copy is deleted and the original is untouched. A symbolic link is followed.

    Raises
    ------
    TagError
        One line naming the file: missing, read-only, not audio, tags already broken (rewriting
        them would lose them), a format without ReplayGain support, or a failed write.
    """
    name = os.fspath(path)
    file = Path(os.path.realpath(_check_file(path, name)[0]))
    if not os.access(file, os.W_OK):
        raise TagError(f"cannot write tags to '{name}': the file is read-only")
    try:
        audio = _open_mutagen(os.fspath(file))
    except Exception as exc:  # see read_file_tags
        reason = _one_line(exc)
        raise TagError(f"cannot write tags to '{name}': its tags are broken ({reason})") from None
    if audio is None:
        raise TagError(f"'{name}' is not an audio file mutagen can read")
    writer = _WRITERS.get(type(audio).__name__)
    if writer is None:
        raise TagError(f"cannot write ReplayGain tags to '{name}': unsupported file type")
    prefix = "." + os.fsdecode(os.fsencode(file.name)[:150]) + "."  # any bytes, short enough
    temp: str | None = None
    try:
        handle, temp = tempfile.mkstemp(prefix=prefix, suffix=".tonearm-tags", dir=file.parent)
        with os.fdopen(handle, "wb") as out, file.open("rb") as source:
            shutil.copyfileobj(source, out)
        shutil.copymode(file, temp)
        writer(temp, type(audio), gain)
        _fsync(temp, os.O_RDWR)
        os.replace(temp, file)
        temp = None
    except Exception as exc:  # OSError, MutagenError and whatever mutagen raises while saving
        raise TagError(f"cannot write tags to '{name}': {_one_line(exc)}") from None
    finally:
        if temp is not None:
            with suppress(OSError):
                os.unlink(temp)
    with suppress(OSError):
        _fsync(os.fspath(file.parent), os.O_RDONLY)


# ---------------------------------------------------------------------------- files and errors


def _check_file(path: str | os.PathLike[str], name: str) -> tuple[Path, int]:
    """Check that ``path`` is a regular file this process can open; return it and its size."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise TagError(f"'{name}' does not exist") from None
    except (OSError, ValueError) as exc:
        raise TagError(f"cannot read '{name}': {_one_line(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise TagError(f"'{name}' is a directory, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        raise TagError(f"cannot read '{name}': not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TagError(f"cannot read '{name}': {_one_line(exc)}") from None
    return Path(path), info.st_size


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, looking inside mutagen's wrapped errors."""
    if isinstance(exc, MutagenError) and exc.args and isinstance(exc.args[0], BaseException):
        return _one_line(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, OSError):  # mutagen's bare IOError: a short read
        return "the data ends before its declared size"
    return text or type(exc).__name__


def _fsync(path: str, flags: int) -> None:
    """Flush a file's (or, opened ``O_RDONLY``, a folder's) data to disk."""
    handle = os.open(path, flags)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# -------------------------------------------------------------------------------- stream info


def _stream_info(kind: str, info: Any) -> StreamInfo | None:
    """Stream info from mutagen's ``info`` of a ``kind`` file (its class name: ``"FLAC"``...);
    ``None`` when it lacks the rate, channels or length."""
    if kind == "MP3":
        codec = f"mp{getattr(info, 'layer', 3)}"
    elif kind == "MP4":  # mutagen spells the sample entry "mp4a.40.2" (AAC LC), "alac"...
        codec = str(getattr(info, "codec", "")).lower()
        codec = "aac" if codec.startswith("mp4a.40") else codec.split(".", 1)[0] or "unknown"
    else:
        codec = _CODECS.get(kind, kind.lower())
    rate = getattr(info, "sample_rate", None) or (48_000 if codec == "opus" else None)
    channels = getattr(info, "channels", None)
    length = getattr(info, "length", None)
    if not (rate and channels and isinstance(length, int | float) and 0 < length < math.inf):
        return None
    bits = getattr(info, "bits_per_sample", None) if codec in _LOSSLESS else None
    bitrate = getattr(info, "bitrate", None)
    return StreamInfo(
        duration_s=float(length),
        sample_rate=int(rate),
        channels=int(channels),
        bit_depth=int(bits) if bits else None,
        codec=codec,
        bitrate_kbps=round(bitrate / 1000) if bitrate else None,
    )


def _stream_without_mutagen(file: Path) -> StreamInfo | None:
    """Stream info when mutagen cannot load the file: MPEG frame headers after a damaged ID3
    header, else libsndfile/PyAV through :func:`probe`; ``None`` when neither reads audio."""
    with suppress(Exception), file.open("rb") as handle:  # mutagen raises assorted types
        if handle.read(3) == b"ID3":
            # from offset 10 mutagen does not trust the ID3 size: it hunts for the first frame
            return _stream_info("MP3", _MPEGInfo(handle, 10))
    try:
        found = probe(file)
    except DecodeError:
        return None
    codec = found.codec.lower()
    if found.container == "AIFF":
        codec = "aiff"
    elif codec.startswith(("pcm", "float", "double")):
        codec = "pcm"
    return StreamInfo(
        found.duration_s, found.sample_rate, found.channels, found.bit_depth, codec, None
    )


# ----------------------------------------------------------------------------------- the tags

_TEXT_FIELDS = ("title", "artist", "album", "album_artist", "genre", "comment")
_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "id3": {
        "title": ("TIT2",), "artist": ("TPE1",), "album": ("TALB",), "album_artist": ("TPE2",),
        "genre": ("TCON",), "comment": ("COMM",), "track": ("TRCK",), "disc": ("TPOS",),
        "date": ("TDRC", "TYER", "TDOR"),
    },
    "mp4": {
        "title": ("\xa9nam",), "artist": ("\xa9ART",), "album": ("\xa9alb",),
        "album_artist": ("aART",), "genre": ("\xa9gen",), "comment": ("\xa9cmt",),
        "track": ("trkn",), "disc": ("disk",), "date": ("\xa9day",),
    },
    "keyed": {  # Vorbis comments and APEv2; mutagen matches their keys case-blind
        "title": ("title",), "artist": ("artist",), "album": ("album",),
        "album_artist": ("albumartist", "album artist", "album_artist"), "genre": ("genre",),
        "comment": ("comment", "description"), "track": ("tracknumber", "track"),
        "disc": ("discnumber", "disc"), "track_total": ("tracktotal", "totaltracks"),
        "disc_total": ("disctotal", "totaldiscs"), "date": ("date", "year", "originaldate"),
    },
}  # fmt: skip
"""Where each field lives, per tag flavour: keys tried in order, the first with a value wins."""


def _flavour(tags: Any) -> str:
    """``"id3"``, ``"mp4"``, ``"keyed"`` (Vorbis comments, APEv2) or ``"none"``."""
    if isinstance(tags, mutagen.id3.ID3):
        return "id3"
    if isinstance(tags, mutagen.mp4.MP4Tags):
        return "mp4"
    return "keyed" if hasattr(tags, "keys") and hasattr(tags, "get") else "none"


def _track_tags(tags: Any) -> TrackTags:
    """The :class:`TrackTags` of a mutagen tag object (empty for none or an unknown flavour)."""
    flavour = _flavour(tags)
    if flavour == "none":
        return TrackTags()

    def get(field: str) -> list[object]:
        for key in _KEYS[flavour].get(field, ()):
            found = _lookup(tags, flavour, key)
            if found:
                return found
        return []

    text = {field: _joined(get(field)) for field in _TEXT_FIELDS}
    track, track_total = _number_pair(get("track"))
    disc, disc_total = _number_pair(get("disc"))
    return TrackTags(
        title=text["title"],
        artist=text["artist"],
        album=text["album"],
        album_artist=text["album_artist"],
        genre=text["genre"],
        track_number=track,
        track_total=track_total or _number_pair(get("track_total"))[0],
        disc_number=disc,
        disc_total=disc_total or _number_pair(get("disc_total"))[0],
        year=_year(get("date")),
        comment=text["comment"],
    )


def _lookup(tags: Any, flavour: str, key: str) -> list[object]:
    """The values stored under one key."""
    if flavour == "id3":
        frames = tags.getall(key)
        if key == "TCON":  # .genres resolves ID3v1 numbers such as "(17)"
            return [genre for frame in frames for genre in frame.genres]
        if key == "COMM":  # the plain comment, not iTunes' iTunNORM/iTunSMPB data
            plain = [c for c in frames if not c.desc]
            frames = (plain or [c for c in frames if not str(c.desc).startswith("iTun")])[:1]
        return [value for frame in frames for value in frame.text]
    found = tags.get(key)
    if isinstance(found, list):
        return list(found)
    if getattr(found, "kind", None) == 0:  # APEv2 text value: several values split by NUL
        return list(str(found).split("\0"))
    return []


def _joined(values: Iterable[object]) -> str | None:
    """Strip each value, drop empty ones and repeats, join the rest with ``"; "``."""
    kept: list[str] = []
    for value in values:
        text = str(value).replace("\0", " ").strip()
        if text and text not in kept:
            kept.append(text)
    return "; ".join(kept) or None


def _number_pair(values: Sequence[object]) -> tuple[int | None, int | None]:
    """``(number, total)`` from the first value: ``"3"``, ``"3/12"``, ``" 03 "``, ``(3, 12)``;
    zero, out-of-range and unparsable parts give ``None``."""
    value = values[0] if values else None
    if isinstance(value, tuple):  # MP4 trkn/disk atom
        parts: list[object] = [*value[:2], None, None][:2]
    elif isinstance(value, int):
        parts = [value, None]
    else:
        match = _NUMBER_PAIR.fullmatch(str(value))
        parts = [match.group(1), match.group(2)] if match else [None, None]
    numbers: list[int | None] = []
    for part in parts:
        if isinstance(part, str):  # digits only; int() refuses more than 4300 of them
            part = int(part) if 0 < len(part) <= 9 else 0
        numbers.append(part if isinstance(part, int) and 0 < part <= _MAX_INDEX else None)
    return numbers[0], numbers[1]


def _year(values: Sequence[object]) -> int | None:
    """The first four-digit year (1000-9999) in the date values."""
    for value in values:
        match = _YEAR.search(str(value))
        if match and int(match.group(1)) >= 1000:
            return int(match.group(1))
    return None


# ---------------------------------------------------------------------------------- cover art


def _cover(audio: Any, warnings: list[str]) -> CoverArt | None:
    """The first front cover in a known image format, else the first picture in one."""
    pictures: list[tuple[bool, bytes]] = []  # (is the front cover, image bytes), in file order
    tags = audio.tags
    flavour = _flavour(tags)
    try:
        if flavour == "id3":
            pictures += [(p.type == _FRONT_COVER, bytes(p.data)) for p in tags.getall("APIC")]
        elif flavour == "mp4":
            pictures += [(False, bytes(c)) for c in tags.get("covr", [])]
        elif flavour == "keyed":
            pictures += _vorbis_pictures(tags, warnings)
        for picture in getattr(audio, "pictures", []):  # FLAC picture blocks
            pictures.append((picture.type == _FRONT_COVER, bytes(picture.data)))
    except _TAG_PARSE_ERRORS as exc:
        warnings.append(f"cover art could not be read and was ignored ({_one_line(exc)})")
    ordered = [data for front, data in pictures if front] + [d for f, d in pictures if not f]
    for data in ordered:
        for magic, mime in _MAGIC.items():
            if data.startswith(magic):
                return CoverArt(data=data, mime=mime)
    if ordered:
        warnings.append("embedded pictures are not JPEG or PNG and were ignored")
    return None


def _vorbis_pictures(tags: Any, warnings: list[str]) -> list[tuple[bool, bytes]]:
    """Pictures in ``METADATA_BLOCK_PICTURE`` comments (base64 FLAC picture blocks); broken
    ones are skipped with a warning."""
    found: list[tuple[bool, bytes]] = []
    for value in tags.get("metadata_block_picture", []):
        try:
            picture = _Picture(base64.b64decode(str(value), validate=True))
            found.append((picture.type == _FRONT_COVER, bytes(picture.data)))
        except (MutagenError, ValueError, TypeError):
            warnings.append("broken METADATA_BLOCK_PICTURE skipped")
    return found


# ---------------------------------------------------------------------------- ReplayGain tags


def _replaygain_items(gain: ReplayGain) -> dict[str, str]:
    """Tag name -> text, e.g. ``REPLAYGAIN_TRACK_GAIN`` -> ``"-7.12 dB"`` (peaks 6 decimals)."""

    def db(value: float) -> str:
        text = f"{value:.2f}"
        return ("0.00" if text == "-0.00" else text) + " dB"

    items = {"REPLAYGAIN_TRACK_GAIN": db(gain.track_gain_db)}
    items["REPLAYGAIN_TRACK_PEAK"] = f"{gain.track_peak:.6f}"
    if gain.album_gain_db is not None:
        items["REPLAYGAIN_ALBUM_GAIN"] = db(gain.album_gain_db)
    if gain.album_peak is not None:
        items["REPLAYGAIN_ALBUM_PEAK"] = f"{gain.album_peak:.6f}"
    return items


def _r128(gain_db: float) -> str:
    """An Opus ``R128_*_GAIN`` value: Q7.8 dB relative to -23 LUFS, clamped to 16 bits."""
    integrated = _REFERENCE_LUFS - gain_db
    return str(max(-32768, min(32767, round((_R128_REFERENCE_LUFS - integrated) * 256))))


def _write_id3(path: str, kind: Callable[..., Any], gain: ReplayGain) -> None:
    """TXXX frames; an ID3v2.3 tag is loaded untranslated and saved as v2.3, frames intact."""
    audio = kind(path, translate=False)
    if audio.tags is None:
        audio.add_tags()
    elif audio.tags.version < (2, 3, 0):  # mutagen cannot write v2.2: upgrade it to v2.4
        audio = kind(path)
    tags = audio.tags
    for desc, text in _replaygain_items(gain).items():
        for key in [k for k in tags if k.startswith("TXXX:") and k[5:].upper() == desc]:
            del tags[key]
        tags.add(_TXXX(encoding=3, desc=desc, text=[text]))
    audio.save(v2_version=3 if tags.version[:2] == (2, 3) else 4)


def _write_vorbis(path: str, kind: Callable[..., Any], gain: ReplayGain) -> None:
    """``REPLAYGAIN_*`` comments, plus ``R128_*_GAIN`` for Opus."""
    audio = kind(path)
    if audio.tags is None:
        audio.add_tags()
    items = _replaygain_items(gain)
    if kind is mutagen.oggopus.OggOpus:
        items["R128_TRACK_GAIN"] = _r128(gain.track_gain_db)
        if gain.album_gain_db is not None:
            items["R128_ALBUM_GAIN"] = _r128(gain.album_gain_db)
    for key, text in items.items():
        audio.tags[key] = [text]  # replaces any spelling of the key: Vorbis keys are case-blind
    audio.save()


def _write_mp4(path: str, kind: Callable[..., Any], gain: ReplayGain) -> None:
    """iTunes freeform atoms ``----:com.apple.iTunes:REPLAYGAIN_*``."""
    audio = kind(path)
    if audio.tags is None:
        audio.add_tags()
    for name, text in _replaygain_items(gain).items():
        key = f"----:com.apple.iTunes:{name}"
        for old in [k for k in audio.tags if k.upper() == key.upper()]:
            del audio.tags[old]
        audio.tags[key] = [_FreeForm(text.encode())]
    audio.save()


_WRITERS: dict[str, Callable[[str, Callable[..., Any], ReplayGain], None]] = {
    "MP3": _write_id3, "WAVE": _write_id3, "AIFF": _write_id3, "MP4": _write_mp4,
    "FLAC": _write_vorbis, "OggVorbis": _write_vorbis, "OggOpus": _write_vorbis,
    "OggFLAC": _write_vorbis, "OggSpeex": _write_vorbis,
}  # fmt: skip
"""ReplayGain writer by mutagen class name: each opens the copy, tags it and saves it."""
