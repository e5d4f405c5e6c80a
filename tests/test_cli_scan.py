"""``tonearm scan`` as a user runs it: a real process, a real database file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.library.test_scanner import _tone
from tonearm.library.manager import LibraryManager

TONEARM = [sys.executable, "-m", "tonearm"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TONEARM, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def test_scan_analyse_and_tag_then_rescan(tmp_path: Path) -> None:
    music = tmp_path / "music"
    for i in range(3):
        _tone(music / f"{i}.flac", 1.0, freq=220.0 * (i + 1), title=f"Song {i}")
    (music / "broken.mp3").write_text("not audio")
    db = tmp_path / "lib.db"
    first = _run("scan", music, "--db", db, "--write-tags", "--workers", "1")
    assert first.returncode == 0, first.stderr
    assert "analysed 3, failed 0" in first.stdout
    assert "ReplayGain tags written to 3 files" in first.stdout
    assert "skipped:" in first.stderr
    assert "broken.mp3" in first.stderr
    second = _run("scan", music, "--db", db, "--quiet")
    assert second.returncode == 0
    assert second.stdout == ""
    with LibraryManager(db) as library:
        tracks = library.tracks.list().items
        assert len(tracks) == 3
        assert all(t.integrated_lufs is not None for t in tracks)


@pytest.mark.parametrize("what", ["not-a-folder", "bad-db", "bad-url"])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, what: str) -> None:
    music = tmp_path / "music"
    _tone(music / "a.flac", title="A")
    db = tmp_path / "lib.db"
    if what == "not-a-folder":
        args: tuple[str | Path, ...] = (music / "a.flac", "--db", db)
        message = "is not a folder"
    elif what == "bad-db":
        db.write_bytes(b"garbage, not sqlite" * 200)
        args = (music, "--db", db)
        message = "cannot open library database"
    else:
        args = (music, "--db", "bad url://x")
        message = "not a database URL"
    before = db.read_bytes() if db.exists() else None
    result = _run("scan", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert (db.read_bytes() if db.exists() else None) == before
