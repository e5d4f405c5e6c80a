"""The scanner on both backends: add, skip, update, move, missing, cancel, odd paths, bad files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC, Picture
from sqlalchemy import func, select

from tonearm.library.manager import LibraryManager
from tonearm.library.models import ScanRun, Track
from tonearm.library.scanner import ScanProgress

RATE = 44100


def _tone(path: Path, seconds: float = 0.3, *, freq: float = 440.0, **tags: str) -> Path:
    """A short tagged FLAC (content differs with ``freq``)."""
    t = np.arange(int(RATE * seconds)) / RATE
    audio = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([audio, audio * 0.5], axis=1), RATE, format="FLAC", subtype="PCM_16")
    if tags:
        flac = FLAC(path)
        for key, value in tags.items():
            flac[key] = value
        flac.save()
    return path


@pytest.fixture
def library(database_url: str) -> Iterator[LibraryManager]:
    with LibraryManager(database_url) as manager:
        yield manager


def _paths(library: LibraryManager, *, missing: bool | None = None) -> set[str]:
    page = library.tracks.list(limit=500, order="path", include_missing=True)
    return {t.path for t in page.items if missing is None or t.missing == missing}


def test_first_scan_adds_everything_with_tags_and_properties(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    _tone(
        music / "a" / "one.flac",
        title="One",
        artist="Ann",
        album="First",
        tracknumber="1/2",
        genre="Jazz",
        date="1999",
    )
    _tone(
        music / "a" / "two.flac",
        freq=550.0,
        title="Two",
        artist="Ann",
        album="First",
        tracknumber="2/2",
    )
    _tone(music / "b" / "untagged.flac", freq=660.0)
    (music / "b" / "notes.txt").write_text("not music")
    result = library.scan([music])
    assert (result.status, result.files_seen, result.added, result.errors) == ("done", 3, 3, ())
    tracks = {t.title: t for t in library.tracks.list(limit=10).items}
    assert set(tracks) == {"One", "Two", "untagged"}  # the file name stands in for a title
    one = tracks["One"]
    assert (one.artist, one.album, one.genre, one.track_number, one.year) == (
        "Ann",
        "First",
        "Jazz",
        1,
        1999,
    )
    assert (one.sample_rate, one.channels, one.bit_depth, one.codec) == (RATE, 2, 16, "flac")
    assert one.duration_s == pytest.approx(0.3, abs=1e-3)
    assert one.size_bytes == (music / "a" / "one.flac").stat().st_size
    assert len(one.content_hash) == 64
    assert library.albums.list().total == 1
    assert library.albums.list().items[0].track_count == 2


def test_rescan_skips_unchanged_and_updates_changed(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    first = _tone(music / "one.flac", title="Old")
    _tone(music / "two.flac", freq=550.0, title="Same")
    library.scan([music])
    flac = FLAC(first)
    flac["title"] = "New"
    flac.save()
    result = library.scan([music])
    assert (result.added, result.updated, result.unchanged) == (0, 1, 1)
    assert {t.title for t in library.tracks.list().items} == {"New", "Same"}


def test_a_moved_file_keeps_its_id_plays_and_playlists(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    original = _tone(music / "old" / "song.flac", title="Song")
    library.scan([music])
    (track,) = library.tracks.list().items
    library.tracks.record_play(track.id)
    library.tracks.set_favourite(track.id, True)
    playlist = library.playlists.create("Keep", [track.id])
    (music / "new").mkdir()
    shutil.move(original, music / "new" / "renamed.flac")
    result = library.scan([music])
    assert (result.moved, result.added, result.missing) == (1, 0, 0)
    moved = library.tracks.get(track.id)
    assert moved is not None
    assert moved.path == str(music / "new" / "renamed.flac")
    assert (moved.play_count, moved.favourite, moved.missing) == (1, True, False)
    assert library.playlists.get(playlist.id) == playlist


def test_a_move_among_many_new_files_is_found_and_claimed_once(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    original = _tone(music / "old" / "song.flac", title="Song")
    _tone(music / "old" / "stays.flac", freq=330.0, title="Stays")
    library.scan([music])
    song = next(t for t in library.tracks.list().items if t.title == "Song")
    library.tracks.record_play(song.id)
    for i in range(30):  # one batch: the move is decided among new files, before any write
        _tone(music / "new" / f"n{i:02d}.flac", 0.05, freq=900.0 + 10 * i, title=f"N{i}")
    shutil.copy(original, music / "new" / "copy_a.flac")  # two new files, same content...
    shutil.move(original, music / "new" / "copy_b.flac")  # ...and the stored file is gone
    result = library.scan([music], batch_size=500)
    assert (result.moved, result.added, result.updated, result.missing) == (1, 31, 0, 0)
    moved = library.tracks.get(song.id)
    assert moved is not None
    assert moved.path == str(music / "new" / "copy_a.flac")  # the first one walked
    assert (moved.play_count, moved.missing) == (1, False)
    copies = [t for t in library.tracks.list(limit=100).items if t.title == "Song"]
    assert sorted(t.path for t in copies) == [str(music / "new" / f"copy_{c}.flac") for c in "ab"]
    assert len({t.id for t in copies}) == 2
    assert library.tracks.count() == 33
    again = library.scan([music])
    assert (again.unchanged, again.moved, again.added, again.missing) == (33, 0, 0, 0)


def test_two_gone_copies_are_each_taken_by_one_moved_copy(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    first = _tone(music / "a.flac", title="Twin")
    second = music / "b.flac"
    shutil.copy(first, second)
    library.scan([music])
    ids = {t.id for t in library.tracks.list().items}
    (music / "sub").mkdir()
    shutil.move(first, music / "sub" / "a.flac")
    shutil.move(second, music / "sub" / "b.flac")
    result = library.scan([music])
    assert (result.moved, result.added, result.missing) == (2, 0, 0)
    assert {t.id for t in library.tracks.list().items} == ids
    assert _paths(library) == {str(music / "sub" / name) for name in ("a.flac", "b.flac")}


def test_search_text_is_filled_on_add_update_and_move(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    tagged = _tone(
        music / "one.flac", title="Été", artist="Ann", album="First", albumartist="Va", genre="Jazz"
    )
    _tone(music / "Untagged Name.flac", freq=550.0)

    def texts() -> dict[str, str]:
        with library.db.read() as session:
            rows = session.execute(select(Track.path, Track.search_text))
            return {Path(path).name: text for path, text in rows}

    library.scan([music])
    assert texts() == {
        "one.flac": "été | ann | first | va | jazz",
        "Untagged Name.flac": "untagged name",
    }
    flac = FLAC(tagged)
    flac["title"] = "Two"
    del flac["genre"]
    flac.save()
    library.scan([music])
    assert texts()["one.flac"] == "two | ann | first | va"
    shutil.move(tagged, music / "moved.flac")
    assert library.scan([music]).moved == 1
    assert texts()["moved.flac"] == "two | ann | first | va"


def _with_cover(path: Path, image: bytes) -> Path:
    flac = FLAC(path)
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/png", image
    flac.add_picture(picture)
    flac.save()
    return path


def test_album_covers_are_filled_only_where_missing(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    png = b"\x89PNG\r\n\x1a\n"
    _tone(music / "a1.flac", title="A1", artist="Ann", album="A")  # no cover, walked first
    _with_cover(
        _tone(music / "a2.flac", freq=550.0, title="A2", artist="Ann", album="A"), png + b"first"
    )
    _with_cover(
        _tone(music / "a3.flac", freq=660.0, title="A3", artist="Ann", album="A"), png + b"second"
    )
    _tone(music / "b1.flac", freq=770.0, title="B1", artist="Bo", album="B")
    library.scan([music])

    def covers() -> dict[str, bytes | None]:
        found: dict[str, bytes | None] = {}
        for album in library.albums.list().items:
            cover = library.albums.cover(album.id)
            found[album.title] = None if cover is None else cover[0]
        return found

    assert covers() == {"A": png + b"first", "B": None}
    _with_cover(
        _tone(music / "a4.flac", freq=880.0, title="A4", artist="Ann", album="A"), png + b"late"
    )
    _with_cover(
        _tone(music / "b2.flac", freq=990.0, title="B2", artist="Bo", album="B"), png + b"b"
    )
    library.scan([music])  # a new scan (names loaded afresh): A keeps its cover, B gets one
    assert covers() == {"A": png + b"first", "B": png + b"b"}
    assert library.albums.list().total == 2


def test_gone_files_are_marked_missing_and_come_back(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    keep = _tone(music / "keep.flac", title="Keep")
    gone = _tone(music / "gone.flac", freq=550.0, title="Gone")
    library.scan([music])
    hidden = tmp_path / "elsewhere.flac"
    shutil.move(gone, hidden)
    result = library.scan([music])
    assert result.missing == 1
    assert _paths(library, missing=True) == {str(gone)}
    assert library.tracks.count() == 1  # missing tracks are left out of lists by default
    shutil.move(hidden, gone)
    library.scan([music])
    assert _paths(library, missing=True) == set()
    assert _paths(library) == {str(keep), str(gone)}


def test_other_roots_are_not_marked_missing(library: LibraryManager, tmp_path: Path) -> None:
    _tone(tmp_path / "one" / "a.flac", title="A")
    _tone(tmp_path / "two" / "b.flac", freq=550.0, title="B")
    library.scan([tmp_path / "one", tmp_path / "two"])
    result = library.scan([tmp_path / "one"])
    assert result.missing == 0
    assert library.tracks.count() == 2


def test_bad_files_are_skipped_with_a_reason_and_lose_nothing(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    _tone(music / "good.flac", title="Good")
    library.scan([music])
    (music / "text.mp3").write_text("this is a text file, not an MP3\n" * 50)
    (music / "empty.flac").write_bytes(b"")
    (music / "noise.wav").write_bytes(os.urandom(5000))
    broken = _tone(music / "broken_tags.flac", freq=550.0, title="Broken")
    data = bytearray(broken.read_bytes())
    data[8:40] = b"\xff" * 32  # wreck the STREAMINFO/metadata blocks
    broken.write_bytes(bytes(data))
    result = library.scan([music])
    reasons = dict(result.errors)
    assert {Path(p).name for p in reasons} >= {"text.mp3", "empty.flac", "noise.wav"}
    assert all("\n" not in reason for reason in reasons.values())
    assert "Good" in {t.title for t in library.tracks.list().items}
    with library.db.read() as session:
        run = session.scalars(select(ScanRun).order_by(ScanRun.id.desc())).first()
        assert run is not None
        assert run.errors == len(result.errors)
        assert run.status == "done"


def test_odd_names_and_symlink_loops(library: LibraryManager, tmp_path: Path) -> None:
    music = tmp_path / "music"
    newline = _tone(music / "line\nbreak.flac", title="Newline")
    raw = os.fsdecode(os.fsencode(str(music)) + b"/latin1-\xe9t\xe9.flac")  # not UTF-8
    os.rename(_tone(music / "latin1.flac", freq=550.0, title="Latin-1 name"), os.fsencode(raw))
    _tone(music / "ünïcødé ♫.flac", freq=660.0, title="Unicode")
    (music / "loop").symlink_to(music, target_is_directory=True)
    (music / "sub").mkdir()
    (music / "sub" / "back").symlink_to(music / "sub", target_is_directory=True)
    result = library.scan([music])
    assert result.status == "done"
    assert result.added == 3
    assert _paths(library) == {str(newline), raw, str(music / "ünïcødé ♫.flac")}
    again = library.scan([music])
    assert (again.unchanged, again.added, again.updated) == (3, 0, 0)


def test_cancel_stops_early_commits_what_it_has_and_marks_nothing_missing(
    library: LibraryManager, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    for i in range(30):
        _tone(music / f"{i:02d}.flac", 0.05, freq=200.0 + 10 * i, title=f"T{i}")
    library.scan([music])
    cancel = threading.Event()
    seen: list[ScanProgress] = []

    def progress(event: ScanProgress) -> None:
        seen.append(event)
        if event.files_seen >= 5:
            cancel.set()

    for i in range(30):
        _tone(music / f"new{i:02d}.flac", 0.05, freq=900.0 + 10 * i, title=f"N{i}")
    for i in range(10):
        (music / f"{i:02d}.flac").unlink()
    result = library.scan(
        [music], cancel=cancel, on_progress=progress, batch_size=2, progress_interval_s=0.0
    )
    assert result.status == "cancelled"
    assert result.files_seen < 60
    assert result.missing == 0
    assert seen
    assert seen[-1].files_per_s > 0
    assert library.tracks.count() >= 30  # nothing marked missing
    finished = library.scan([music])
    assert finished.status == "done"
    assert _paths(library, missing=False) == {str(p) for p in music.glob("*.flac")}


SCAN_CHILD = """
import sys
from tonearm.library.manager import LibraryManager
with LibraryManager(sys.argv[1]) as library:
    print("started", flush=True)
    library.scan([sys.argv[2]], batch_size=5)
"""


def test_sigkill_mid_scan_leaves_a_database_that_a_rescan_completes(
    database_url: str, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    for i in range(400):
        _tone(music / f"d{i // 50}" / f"{i:03d}.flac", 0.05, freq=100.0 + i, title=f"T{i}")
    with LibraryManager(database_url):
        pass  # migrate first, so the child only scans
    child = subprocess.Popen(
        [sys.executable, "-c", SCAN_CHILD, database_url, str(music)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    with LibraryManager(database_url) as watcher:
        deadline = 0
        while deadline < 600:  # wait (bounded) until some batches are in, then kill
            with watcher.db.read() as session:
                if (session.scalar(select(func.count(Track.id))) or 0) >= 20:
                    break
            threading.Event().wait(0.05)
            deadline += 1
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with LibraryManager(database_url) as library:
        partial = library.tracks.count()
        assert 0 < partial < 400
        result = library.scan([music])
        assert result.status == "done"
        assert _paths(library, missing=False) == {str(p) for p in music.rglob("*.flac")}
        with library.db.read() as session:
            statuses = list(session.scalars(select(ScanRun.status).order_by(ScanRun.id)))
        assert statuses == ["failed", "done"]  # the killed run is recorded as failed
