"""Benchmark the music library: metadata scan, rescans, and list/search/paginate queries.

**Scan part.** Generates ``--files`` small tagged audio files (0.2 s each; about 60 % FLAC,
30 % MP3, 10 % Ogg Vorbis) under ``artist/album/NN title.ext`` folders: one template per format
is encoded once with soundfile, and each file is a copy of it tagged in memory with mutagen
(title, artist from a pool of 200, album from a pool of 1,000, track number, genre, year), so
every file's bytes, and so its content hash, differ. Generation is timed apart. Then, into a
fresh SQLite library (``LibraryManager(dir/"lib.db").scan()``; no analysis):

* the first scan, which reads every file's tags and hashes it (target >= 1,500 files/s);
* a rescan with nothing changed: one ``stat`` per file (target >= 10,000 files/s);
* a rescan after rewriting the tags of 1 % of the files.

Baselines, in the same process over the same files: walking the folders with ``os.stat``
(``scanner.walk_audio_files``), reading every file's tags with ``tags.read_file_tags`` alone,
and hashing every file with ``scanner.content_hash`` alone; the first scan's time is printed as
a multiple of the first two, and what it spends beyond all three (the database work) per file.
The files were just written, so they are in the page cache: the scan figures are CPU-bound
figures, not cold-disk ones. ``--profile`` runs the first scan under cProfile and prints where
its time goes (the profiler slows it down: its files/s then mean little).

**Query part.** A fresh library (SQLite next to the files, or the empty database of
``--db-url``, or a throwaway PostgreSQL server with ``--postgres``) gets ``--tracks``
synthetic tracks by bulk insert (2,000 artists, 10 tracks per album, 24 genres, titles from a
Zipf-weighted vocabulary so that words are shared). Each query kind is timed through the
repositories up to ``--queries`` times (stopping once ``--budget-s`` seconds of calls and at
least 10 calls are in), with the query cache cleared before every call (cold: the database's
latency; the headline figure, target p99 < 20 ms), then as often with the cache warm (hits).
Deep pages by ``OFFSET`` (whose cost grows with the offset; the last page is timed apart) and by
keyset cursor (``tracks.list(after=...)``, the way the server pages: constant cost).
SQLite gets no ``ANALYZE`` (tonearm runs none); PostgreSQL is analysed after the insert, as
autovacuum would soon do.

It prints figures only, with the target beside each, and asserts nothing (exit status 0).

    .venv/bin/python benchmarks/scan.py                        # 10,000 files, 100,000 tracks
    .venv/bin/python benchmarks/scan.py --files 2000 --skip-queries --profile
    .venv/bin/python benchmarks/scan.py --skip-scan --postgres # queries on a throwaway server
    .venv/bin/python benchmarks/scan.py --skip-scan --db-url postgresql+psycopg://me@host/empty
    .venv/bin/python benchmarks/scan.py --keep /tmp/bench      # keep the files and databases
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mutagen
import mutagen.flac
import mutagen.mp3
import mutagen.oggvorbis
import numpy as np
import soundfile as sf
import sqlalchemy
from sqlalchemy import func, insert, select, text

from tonearm.library.manager import LibraryManager
from tonearm.library.models import Album, Artist, Genre, Track, utc_now
from tonearm.library.paging import ALBUM_ORDER, TRACK_ORDERS, cursor_for
from tonearm.library.records import search_text_of
from tonearm.library.scanner import content_hash, walk_audio_files
from tonearm.library.tags import read_file_tags

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from tonearm.library.scanner import ScanResult

SCAN_TARGET_FILES_PER_S = 1_500.0
RESCAN_TARGET_FILES_PER_S = 10_000.0
QUERY_TARGET_P99_MS = 20.0
PAGE = 50
MIN_SAMPLES = 10
WARM_DISTINCT = 5
SAMPLE_RATE = 44_100
TEMPLATE_SECONDS = 0.2

FIRST_NAMES = (
    "Ada", "Aino", "Amara", "Anouk", "Aurelio", "Bela", "Bruno", "Camille", "Celeste", "Dario",
    "Dinah", "Elif", "Emeric", "Esme", "Farah", "Felix", "Greta", "Hugo", "Ines", "Ivo", "Jonas",
    "Juno", "Kai", "Kenji", "Lars", "Leona", "Lior", "Mara", "Mateo", "Mira", "Nadia", "Nico",
    "Noor", "Odile", "Omar", "Paloma", "Pavel", "Quentin", "Rhea", "Rosa", "Sami", "Selma",
    "Soren", "Talia", "Tomas", "Uma", "Vera", "Viktor", "Wren", "Yara", "Yusuf", "Zoe",
)  # fmt: skip
SURNAMES = (
    "Abara", "Bergstrom", "Castellano", "Dubois", "Eklund", "Falk", "Gallagher", "Haddad",
    "Ibsen", "Jaramillo", "Kowalski", "Lindqvist", "Marchetti", "Nakamura", "Okafor", "Petrov",
    "Quinlan", "Rasmussen", "Santoro", "Takahashi", "Underwood", "Valdivia", "Whitlock", "Xavier",
    "Yilmaz", "Zeller", "Achebe", "Bianchi", "Costa", "Delacroix", "Esposito", "Fontaine",
    "Grieg", "Holmberg", "Iverson", "Janssen", "Kaur", "Laurent", "Moreau", "Novak", "Olsen",
    "Pereira", "Rossi", "Silva", "Tanaka", "Varga", "Wagner", "Young", "Zamora", "Brandt",
)  # fmt: skip
GENRES = (
    "Ambient", "Baroque", "Blues", "Bossa Nova", "Classical", "Country", "Drum and Bass", "Dub",
    "Electronic", "Flamenco", "Folk", "Funk", "Gospel", "Hip Hop", "House", "Jazz", "Metal",
    "Opera", "Post-Rock", "Reggae", "Rock", "Soul", "Synthpop", "Techno",
)  # fmt: skip
# Most frequent first: words are drawn with weights 1 / (rank + 2).
VOCABULARY = (
    "love", "night", "blue", "heart", "light", "dream", "fire", "rain", "home", "time", "river",
    "summer", "moon", "sun", "road", "song", "morning", "shadow", "golden", "wild", "city",
    "ocean", "winter", "silver", "dance", "stone", "sky", "garden", "window", "letter", "train",
    "autumn", "midnight", "echo", "mirror", "paper", "glass", "velvet", "harbour", "lantern",
    "meadow", "thunder", "whisper", "canyon", "empire", "feather", "horizon", "island",
    "journey", "kingdom", "lullaby", "machine", "northern", "orchard", "prairie", "quiet",
    "restless", "satellite", "tender", "undertow", "valley", "wanderer", "yesterday", "zenith",
    "amber", "bitter", "candle", "desert", "electric", "fever", "gravity", "hollow", "ivory",
    "jasmine", "kaleidoscope", "lighthouse", "marble", "neon", "opal", "pilgrim", "quartz",
    "ribbon", "sapphire", "tidal", "umbrella", "violet", "waltz", "yearning", "anchor",
    "blossom", "cathedral", "drifter", "ember", "falcon", "glacier", "hymn", "indigo", "juniper",
    "keystone", "labyrinth", "monsoon", "nocturne", "outpost", "paradise", "requiem", "serenade",
    "tapestry", "utopia", "vagabond", "wilderness", "avalanche", "bramble", "cobalt", "dusk",
    "eclipse", "fjord", "gossamer", "heron", "inkwell", "jubilee", "kestrel", "lagoon",
    "mosaic", "nebula", "oasis", "parade", "quiver", "rhapsody", "solstice", "tundra",
    "uplands", "vertigo", "willow", "aurora", "ballad", "cascade", "daybreak", "equinox",
    "firefly", "gondola", "harvest", "incense", "jetty", "kindling", "limestone", "mariner",
    "nightingale", "obelisk", "porcelain", "quarry", "reverie", "saffron", "thistle", "umber",
    "vesper", "wharf", "alchemy", "bonfire", "citadel", "driftwood", "estuary", "foxglove",
    "grotto", "hinterland", "isthmus", "jigsaw", "kelp", "lodestar", "minaret", "nomad",
)  # fmt: skip
RARE_WORDS = ("Quixotic", "Zephyrine", "Xylograph", "Brachiate", "Syzygy", "Petrichor")
NO_MATCH = "qwxzv"


# ------------------------------------------------------------------------------- statistics


@dataclass
class Figure:
    """One printed result: a value, its unit, and the target it is held against."""

    name: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(f"  {_figure_line(figure)}", flush=True)


def _figure_line(figure: Figure) -> str:
    verdict = "" if figure.passed is None else ("PASS" if figure.passed else "FAIL")
    value = f"{figure.value:,.1f} {figure.unit}"
    return f"{figure.name:<60} {value:>18}  {figure.target:<14} {verdict:<4}  {figure.note}"


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
    }


def describe_machine(data_dir: Path) -> None:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine   {model}, {os.cpu_count()} CPUs ({usable} usable by this process)")
    print(
        f"software  Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"SQLAlchemy {sqlalchemy.__version__}, mutagen {mutagen.version_string}, "
        f"numpy {np.__version__}"
    )
    print(f"files in  {data_dir} ({_filesystem(data_dir)})")
    print(f"load      {_load()} (other processes share these CPUs: figures are noisier if high)")


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def _filesystem(path: Path) -> str:
    """The file-system type of the mount holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown file system"
    try:
        resolved = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, f"{parts[2]} mounted on {mount}"
    except OSError:
        pass
    return kind


# ------------------------------------------------------------------------------- file making


@dataclass(frozen=True)
class Template:
    extension: str
    data: bytes
    opener: Callable[[io.BytesIO], Any]


def make_templates() -> list[Template]:
    """One 0.2 s stereo clip (a quiet tone plus noise), encoded once per format, untagged."""
    rng = np.random.default_rng(1)
    t = np.arange(round(SAMPLE_RATE * TEMPLATE_SECONDS)) / SAMPLE_RATE
    tone = 0.2 * np.sin(2 * np.pi * 440.0 * t)
    clip = (tone[:, None] + 0.01 * rng.standard_normal((t.size, 2))).astype(np.float32)
    templates = []
    for extension, fmt, subtype, opener in (
        (".flac", "FLAC", "PCM_16", mutagen.flac.FLAC),
        (".mp3", "MP3", "MPEG_LAYER_III", mutagen.mp3.EasyMP3),
        (".ogg", "OGG", "VORBIS", mutagen.oggvorbis.OggVorbis),
    ):
        buffer = io.BytesIO()
        sf.write(buffer, clip, SAMPLE_RATE, format=fmt, subtype=subtype)
        templates.append(Template(extension, buffer.getvalue(), opener))
    return templates


def tagged_bytes(template: Template, tags: dict[str, str]) -> bytes:
    """The template's bytes with ``tags`` written in (in memory: no file is touched)."""
    buffer = io.BytesIO(template.data)
    audio = template.opener(buffer)
    if audio.tags is None:
        audio.add_tags()
    for key, value in tags.items():
        audio[key] = value
    buffer.seek(0)
    audio.save(buffer)
    return buffer.getvalue()


def _safe(name: str) -> str:
    return name.replace("/", "-")


def artist_names(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct "First Last" names."""
    combos = [f"{f} {s}" for f in FIRST_NAMES for s in SURNAMES]
    if count > len(combos):
        combos += [f"{name} {i}" for i in range(2, count // len(combos) + 2) for name in combos]
    chosen = rng.choice(len(combos), size=count, replace=False)
    return [combos[int(i)] for i in chosen]


def _zipf_words(rng: np.random.Generator, size: int) -> npt.NDArray[np.int64]:
    weights = 1.0 / (np.arange(len(VOCABULARY)) + 3.0)
    return rng.choice(len(VOCABULARY), size=size, p=weights / weights.sum())


def _phrase(word_ids: npt.NDArray[np.int64]) -> str:
    return " ".join(VOCABULARY[int(i)].capitalize() for i in word_ids)


def album_titles(count: int, rng: np.random.Generator) -> list[str]:
    words = _zipf_words(rng, 3 * count)
    lengths = rng.integers(1, 4, size=count)
    titles: list[str] = []
    seen: Counter[str] = Counter()
    for i in range(count):
        title = ("The " if lengths[i] == 1 else "") + _phrase(words[3 * i : 3 * i + lengths[i]])
        seen[title] += 1
        titles.append(title if seen[title] == 1 else f"{title} {seen[title]}")
    return titles  # distinct (a repeat gets a number)


def track_titles(count: int, rng: np.random.Generator) -> list[str]:
    words = _zipf_words(rng, 4 * count)
    lengths = rng.integers(2, 5, size=count)
    titles = [_phrase(words[4 * i : 4 * i + lengths[i]]) for i in range(count)]
    for i in np.flatnonzero(rng.random(count) < len(RARE_WORDS) * 6 / max(count, 1)):
        titles[int(i)] += " " + RARE_WORDS[int(rng.integers(len(RARE_WORDS)))]
    return titles


@dataclass(frozen=True)
class Collection:
    root: Path
    paths: list[Path]
    generate_s: float
    bytes_total: int


def generate_files(root: Path, count: int, seed: int) -> Collection:
    """``count`` tagged files under ``root/artist/album/``: 10 tracks per album."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    flac, mp3, ogg = make_templates()
    artists = artist_names(200, rng)
    albums = album_titles(1000, rng)
    titles = track_titles(count, rng)
    kinds = rng.choice(3, size=count, p=[0.6, 0.3, 0.1])
    paths: list[Path] = []
    made: set[Path] = set()
    total = 0
    for i in range(count):
        album = (i // 10) % len(albums)
        artist = artists[album % len(artists)]
        album_title = albums[album] + (
            f" Vol. {i // (10 * len(albums)) + 1}" if i >= 10_000 else ""
        )
        number = i % 10 + 1
        template = (flac, mp3, ogg)[int(kinds[i])]
        tags = {
            "title": titles[i],
            "artist": artist,
            "album": album_title,
            "tracknumber": str(number),
            "genre": GENRES[album % len(GENRES)],
            "date": str(1960 + album % 65),
        }
        folder = root / _safe(artist) / _safe(album_title)
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        path = folder / f"{number:02d} {_safe(titles[i])}{template.extension}"
        data = tagged_bytes(template, tags)
        path.write_bytes(data)
        paths.append(path)
        total += len(data)
    return Collection(root, paths, time.perf_counter() - started, total)


def retag(paths: Sequence[Path]) -> None:
    """Rewrite the title of each file in place (new bytes, new mtime)."""
    for path in paths:
        audio: Any = mutagen.File(path, easy=True)
        audio["title"] = f"{audio['title'][0]} (Remastered)"
        audio.save()


# ------------------------------------------------------------------------------------- scans


def timed_scan(
    library: LibraryManager, root: Path, profile: cProfile.Profile | None = None
) -> tuple[ScanResult, float]:
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    result = library.scan([root])
    if profile is not None:
        profile.disable()
    return result, time.perf_counter() - started


def _scan_note(result: ScanResult) -> str:
    return (
        f"seen {result.files_seen}, added {result.added}, updated {result.updated}, "
        f"unchanged {result.unchanged}, errors {len(result.errors)}"
    )


def run_scan_part(args: argparse.Namespace, work: Path, report: Report) -> None:
    root = work / "music"
    print(f"\n== scan: {args.files:,} files ==", flush=True)
    collection = generate_files(root, args.files, args.seed)
    print(
        f"  generated {len(collection.paths):,} files ({collection.bytes_total / 1e6:.1f} MB, "
        f"{len(list(root.iterdir()))} artist folders) in {collection.generate_s:.2f} s "
        "(not part of any figure)",
        flush=True,
    )

    started = time.perf_counter()
    walked = sum(1 for _ in walk_audio_files([str(root)]))
    walk_s = time.perf_counter() - started
    started = time.perf_counter()
    for path in collection.paths:
        read_file_tags(path)
    tags_s = time.perf_counter() - started
    started = time.perf_counter()
    for path in collection.paths:
        content_hash(str(path), path.stat().st_size)
    hash_s = time.perf_counter() - started

    profile = cProfile.Profile() if args.profile else None
    library = LibraryManager(work / "lib.db")
    try:
        first, first_s = timed_scan(library, root, profile)
        unchanged, unchanged_s = timed_scan(library, root)
        touched = collection.paths[:: max(1, len(collection.paths) // max(1, args.files // 100))]
        touched = touched[: max(1, args.files // 100)]
        retag(touched)
        changed, changed_s = timed_scan(library, root)
    finally:
        library.close()

    n = first.files_seen
    report.add(
        Figure(
            "first scan (tags + hash + insert), wall",
            n / first_s,
            "files/s",
            f">= {SCAN_TARGET_FILES_PER_S:,.0f}",
            n / first_s >= SCAN_TARGET_FILES_PER_S,
            f"{first_s:.2f} s, {first_s / n * 1e3:.3f} ms/file; {_scan_note(first)}",
        )
    )
    report.add(
        Figure(
            "first scan, scanner's own result.files_per_s",
            first.files_per_s,
            "files/s",
            f">= {SCAN_TARGET_FILES_PER_S:,.0f}",
            first.files_per_s >= SCAN_TARGET_FILES_PER_S,
            f"elapsed_s {first.elapsed_s:.2f} s",
        )
    )
    report.add(
        Figure(
            "rescan, nothing changed, wall",
            unchanged.files_seen / unchanged_s,
            "files/s",
            f">= {RESCAN_TARGET_FILES_PER_S:,.0f}",
            unchanged.files_seen / unchanged_s >= RESCAN_TARGET_FILES_PER_S,
            f"{unchanged_s:.3f} s; {_scan_note(unchanged)}",
        )
    )
    report.add(
        Figure(
            "rescan, nothing changed, result.files_per_s",
            unchanged.files_per_s,
            "files/s",
            f">= {RESCAN_TARGET_FILES_PER_S:,.0f}",
            unchanged.files_per_s >= RESCAN_TARGET_FILES_PER_S,
            f"elapsed_s {unchanged.elapsed_s:.3f} s",
        )
    )
    report.add(
        Figure(
            f"rescan after retagging {len(touched)} files (1 %), wall",
            changed.files_seen / changed_s,
            "files/s",
            note=f"{changed_s:.3f} s; {_scan_note(changed)}",
        )
    )
    report.add(
        Figure(
            "baseline: walk + os.stat (walk_audio_files)",
            walked / walk_s,
            "files/s",
            note=f"{walk_s:.3f} s; first scan = {first_s / walk_s:.1f}x this, "
            f"unchanged rescan = {unchanged_s / walk_s:.2f}x",
        )
    )
    report.add(
        Figure(
            "baseline: read_file_tags alone (mutagen)",
            len(collection.paths) / tags_s,
            "files/s",
            note=f"{tags_s:.2f} s, {tags_s / len(collection.paths) * 1e3:.3f} ms/file; "
            f"first scan = {first_s / tags_s:.2f}x this",
        )
    )
    report.add(
        Figure(
            "baseline: stat + content_hash alone",
            len(collection.paths) / hash_s,
            "files/s",
            note=f"{hash_s:.2f} s, {hash_s / len(collection.paths) * 1e3:.3f} ms/file",
        )
    )
    rest_s = first_s - walk_s - tags_s - hash_s
    report.add(
        Figure(
            "first scan minus walk, tags and hash (database)",
            rest_s / n * 1e3,
            "ms/file",
            note=f"{rest_s:.2f} s, {rest_s / first_s:.0%} of the first scan",
        )
    )
    if profile is not None:
        print_profile(profile, n)


def print_profile(profile: cProfile.Profile, files: int) -> None:
    """The first scan's heaviest functions, by own time and by cumulative time."""
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(25)
        print(f"\n-- first scan profile by {order} ({files} files) --")
        listing = out.getvalue()
        print(listing[listing.find("   ncalls") :].rstrip())


# ----------------------------------------------------------------------------------- queries


def fill_library(library: LibraryManager, count: int, seed: int) -> dict[str, str]:
    """Insert ``count`` synthetic tracks; returns the search queries to time, by label."""
    rng = np.random.default_rng(seed + 1)
    n_artists = max(1, min(2000, count // 50))
    n_albums = max(1, count // 10)
    artists = artist_names(n_artists, rng)
    albums = album_titles(n_albums, rng)
    titles = track_titles(count, rng)
    album_artist = [a % n_artists for a in range(n_albums)]
    rng.shuffle(album_artist)
    now = utc_now()
    with library.db.write() as session:
        session.execute(insert(Artist), [{"id": i + 1, "name": n} for i, n in enumerate(artists)])
        session.execute(insert(Genre), [{"id": i + 1, "name": n} for i, n in enumerate(GENRES)])
        session.execute(
            insert(Album),
            [
                {
                    "id": a + 1,
                    "title": albums[a],
                    "artist_id": album_artist[a] + 1,
                    "year": 1960 + a % 65,
                }
                for a in range(n_albums)
            ],
        )
        rows = []
        for i in range(count):
            album = i // 10 % n_albums
            artist = album_artist[album]
            number = i % 10 + 1
            title = titles[i]
            rows.append(
                {
                    "id": i + 1,
                    "path": f"/music/{artists[artist]}/{albums[album]} [{album}]/"
                    f"{number:02d} {_safe(title)}.flac",
                    "title": title,
                    "search_text": search_text_of(
                        title, artists[artist], albums[album], GENRES[album % len(GENRES)]
                    ),
                    "artist_id": artist + 1,
                    "album_id": album + 1,
                    "genre_id": album % len(GENRES) + 1,
                    "track_number": number,
                    "disc_number": 1,
                    "year": 1960 + album % 65,
                    "duration_s": 120.0 + (i * 37) % 300,
                    "sample_rate": 44_100,
                    "channels": 2,
                    "bit_depth": 16,
                    "codec": "flac",
                    "size_bytes": 20_000_000 + i,
                    "mtime_ns": 1_700_000_000_000_000_000 + i,
                    "content_hash": f"{i:064x}",
                    "integrated_lufs": -8.0 - (i % 120) / 10,
                    "missing": False,
                    "added_at": now,
                    "updated_at": now,
                }
            )
            if len(rows) == 5000:
                session.execute(insert(Track), rows)
                rows = []
        if rows:
            session.execute(insert(Track), rows)
    if library.db.dialect == "postgresql":  # ids were given: move the sequences past them
        with library.db.engine.connect() as connection:
            for table in ("artists", "genres", "albums", "tracks"):
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                connection.execute(text(f"SELECT setval({sequence}, max(id)) FROM {table}"))
            connection.commit()
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))

    # words by how many tracks mention them (title, album or artist), to pick searches from
    mentions: Counter[str] = Counter()
    for i in range(count):
        album = i // 10 % n_albums
        words = f"{titles[i]} {albums[album]} {artists[album_artist[album]]}".lower().split()
        mentions.update(set(words))
    vocabulary = [w for w in VOCABULARY if mentions[w]]
    common = min(vocabulary, key=lambda w: abs(mentions[w] - 300))
    return {
        "very common word": VOCABULARY[0],
        "common word": common,
        "rare word": RARE_WORDS[0].lower(),
        "artist name": artists[len(artists) // 2],
        "no match": NO_MATCH,
    }


@dataclass(frozen=True)
class QueryKind:
    name: str
    calls: list[Callable[[], object]]


def measure_cold(
    library: LibraryManager, calls: Sequence[Callable[[], object]], budget_s: float
) -> tuple[object, list[float]]:
    """The first call's answer (an untimed warm-up: statement compilation, pooled connections)
    and the seconds of each timed call, the cache cleared before each (not timed). Stops early
    once ``budget_s`` of timed calls have run and at least ``MIN_SAMPLES`` were taken."""
    library.cache.clear()
    answer = calls[0]()
    seconds: list[float] = []
    for call in calls:
        library.cache.clear()
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
        if len(seconds) >= MIN_SAMPLES and sum(seconds) > budget_s:
            break
    return answer, seconds


def measure_warm(
    library: LibraryManager, calls: Sequence[Callable[[], object]], samples: int
) -> list[float]:
    """Seconds per call served from the cache: the first few distinct calls are loaded once,
    then ``samples`` calls cycle over them."""
    distinct = list(calls[:WARM_DISTINCT])
    library.cache.clear()
    for call in distinct:
        call()
    seconds = []
    for i in range(samples):
        call = distinct[i % len(distinct)]
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def query_kinds(
    library: LibraryManager, searches: dict[str, str], queries: int, seed: int
) -> list[QueryKind]:
    rng = np.random.default_rng(seed + 2)
    tracks = library.tracks
    total = tracks.count()
    with library.db.read() as session:
        ids = list(session.scalars(select(Track.id)))
        albums_total = int(session.execute(select(func.count(Album.id))).scalar_one())
    last_page = max(0, total - PAGE)
    offsets = [int(o) for o in rng.integers(0, last_page + 1, size=queries)]
    # keyset paging: the cursor after the track at a random position of the title order
    by_title = TRACK_ORDERS["title"]
    with library.db.read() as session:
        keys = session.execute(
            select(Track.title, Track.id)
            .where(Track.missing.is_(False))
            .order_by(Track.title, Track.id)
        ).all()
    cursors = [cursor_for(by_title, tuple(keys[o])) for o in offsets]
    cursors_last = cursor_for(by_title, tuple(keys[max(0, last_page - 1)]))
    album_offsets = [int(o) for o in rng.integers(0, max(1, albums_total - PAGE + 1), size=queries)]
    with library.db.read() as session:
        album_keys = session.execute(
            select(Album.title, Album.id).order_by(Album.title, Album.id)
        ).all()
    album_cursors = [cursor_for(ALBUM_ORDER, tuple(album_keys[o])) for o in album_offsets]
    picked = [int(ids[int(i)]) for i in rng.integers(0, len(ids), size=queries)]

    def bind(
        function: Callable[..., object], *args: object, **kwargs: object
    ) -> Callable[[], object]:
        return lambda: function(*args, **kwargs)

    kinds = [
        QueryKind(
            "tracks.list first page (title order)", [bind(tracks.list, limit=PAGE)] * queries
        ),
        QueryKind(
            "tracks.list first page (added order)",
            [bind(tracks.list, limit=PAGE, order="added")] * queries,
        ),
        QueryKind(
            "tracks.list random offset (pages of 50)",
            [bind(tracks.list, offset=o, limit=PAGE) for o in offsets],
        ),
        QueryKind(
            f"tracks.list last page (offset {last_page:,})",
            [bind(tracks.list, offset=last_page, limit=PAGE)] * queries,
        ),
        QueryKind(
            "tracks.list next page by cursor, random depth",
            [bind(tracks.list, limit=PAGE, after=c) for c in cursors],
        ),
        QueryKind(
            "tracks.list last page by cursor",
            [bind(tracks.list, limit=PAGE, after=cursors_last)] * queries,
        ),
    ]
    for label, query in searches.items():
        kinds.append(
            QueryKind(
                f"tracks.search {label} '{query}'",
                [bind(tracks.search, query, limit=PAGE)] * queries,
            )
        )
    kinds.append(
        QueryKind(
            "tracks.search 'common word' page 3",
            [bind(tracks.search, searches["common word"], offset=2 * PAGE, limit=PAGE)] * queries,
        )
    )
    kinds += [
        QueryKind("tracks.get random id", [bind(tracks.get, i) for i in picked]),
        QueryKind("albums.list first page", [bind(library.albums.list, limit=PAGE)] * queries),
        QueryKind(
            "albums.list random offset",
            [bind(library.albums.list, offset=o, limit=PAGE) for o in album_offsets],
        ),
        QueryKind(
            "albums.list next page by cursor, random depth",
            [bind(library.albums.list, limit=PAGE, after=c) for c in album_cursors],
        ),
    ]
    return kinds


def run_query_part(
    args: argparse.Namespace, location: str | os.PathLike[str], label: str, report: Report
) -> None:
    print(f"\n== queries: {args.tracks:,} synthetic tracks on {label} ==", flush=True)
    library = LibraryManager(location)
    try:
        with library.db.read() as session:
            existing = int(session.execute(select(func.count(Track.id))).scalar_one())
        if existing:
            print(f"  the database already holds {existing} tracks: use an empty one; skipped")
            return
        started = time.perf_counter()
        searches = fill_library(library, args.tracks, args.seed)
        print(f"  inserted {args.tracks:,} tracks in {time.perf_counter() - started:.1f} s")
        if library.db.dialect == "sqlite" and library.db.url.database:
            size = Path(library.db.url.database).stat().st_size
            print(f"  database file {size / 1e6:.1f} MB")
        print(
            "  times in ms; cold: query cache cleared before each call (the database's latency);"
            " warm: cache hits;\n  n: cold calls timed (up to --queries, stopping after"
            f" --budget-s {args.budget_s:g} s once {MIN_SAMPLES} are in)"
        )
        print(
            f"  {'query':<52} {'hits':>7} {'cold p50':>9} {'p95':>7} {'p99':>7} {'max':>7}"
            f"   {'warm p50':>8} {'p99':>7}  {'n':>4}"
        )
        for kind in query_kinds(library, searches, args.queries, args.seed):
            answer, cold_s = measure_cold(library, kind.calls, args.budget_s)
            hits = getattr(answer, "total", 1 if answer is not None else 0)
            cold = percentiles_ms(cold_s)
            warm = percentiles_ms(measure_warm(library, kind.calls, len(kind.calls)))
            passed = cold["p99"] < QUERY_TARGET_P99_MS
            print(
                f"  {kind.name:<52} {hits:>7,} {cold['p50']:>9.2f} {cold['p95']:>7.2f} "
                f"{cold['p99']:>7.2f} {cold['max']:>7.2f}   {warm['p50']:>8.3f} "
                f"{warm['p99']:>7.3f}  {len(cold_s):>4} {'PASS' if passed else 'FAIL'}",
                flush=True,
            )
            report.figures.append(
                Figure(
                    f"[{label}] {kind.name}",
                    cold["p99"],
                    "ms p99",
                    f"< {QUERY_TARGET_P99_MS:.0f} ms",
                    passed,
                    f"p50 {cold['p50']:.2f} ms, n={len(cold_s)}; warm p99 {warm['p99']:.3f} ms",
                )
            )
    finally:
        library.close()


# -------------------------------------------------------------------------------------- main


def postgres_url(stack: ExitStack) -> str:
    """A fresh database on a throwaway PostgreSQL server (stopped when ``stack`` closes)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.pgserver import PostgresServer

    server = PostgresServer()
    stack.callback(server.stop)
    server.start()
    return server.create_database("tonearm_bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=10_000, help="audio files to generate")
    parser.add_argument("--tracks", type=int, default=100_000, help="synthetic library rows")
    parser.add_argument("--queries", type=int, default=300, help="calls timed per query kind")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="generate in DIR and keep it")
    parser.add_argument("--db-url", help="run the query part on this (empty) database instead")
    parser.add_argument("--postgres", action="store_true", help="query part on a throwaway server")
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the first scan")
    parser.add_argument(
        "--budget-s", type=float, default=4.0, help="cold seconds per query kind (>= 10 calls)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.files < 1 or args.tracks < 100 or args.queries < 10:
        parser.error("need --files >= 1, --tracks >= 100 and --queries >= 10")
    if args.db_url and args.postgres:
        parser.error("--db-url and --postgres exclude each other")

    with ExitStack() as stack:
        if args.keep is not None:
            work = args.keep.resolve()
            if (work / "music").exists() or (work / "lib.db").exists():
                parser.error(f"{work} already holds music/ or lib.db: pick another folder")
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(tempfile.mkdtemp(prefix="tonearm-bench-"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        describe_machine(work)
        report = Report()
        started = time.perf_counter()
        if not args.skip_scan:
            run_scan_part(args, work, report)
        if not args.skip_queries:
            if args.postgres:
                run_query_part(args, postgres_url(stack), "PostgreSQL", report)
            elif args.db_url:
                dialect = sqlalchemy.make_url(args.db_url).get_backend_name()
                run_query_part(args, args.db_url, dialect, report)
            else:
                run_query_part(args, work / "queries.db", "SQLite", report)

        print(f"\n== summary (total {time.perf_counter() - started:.0f} s, load {_load()}) ==")
        for figure in report.figures:
            print(f"  {_figure_line(figure)}")
        if args.keep is not None:
            print(f"\nkept {work}")


if __name__ == "__main__":
    main()
