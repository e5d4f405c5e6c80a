"""``tonearm batch`` as a user runs it: a real process over real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf

from tests.mastering import synth

TONEARM = [sys.executable, "-m", "tonearm"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TONEARM, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def _inputs(folder: Path) -> list[Path]:
    folder.mkdir()
    return [
        synth.write(folder / f"song{i}.wav", synth.noise(44100, 3.0, seed=i, level_db=-26.0), 44100)
        for i in range(3)
    ]


def test_batch_masters_every_file_and_prints_a_table(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    result = _run("batch", *inputs, "-o", out, "--workers", "2", "--target", "apple")
    assert result.returncode == 0, result.stderr
    assert "3 of 3 mastered" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["song0.wav", "song1.wav", "song2.wav"]
    for path in out.iterdir():
        assert sf.info(path).frames == 3 * 44100


def test_one_bad_file_fails_alone_and_exits_2(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    bad = tmp_path / "in" / "broken.wav"
    bad.write_text("not audio")
    out = tmp_path / "out"
    out.mkdir()
    result = _run("batch", *inputs, bad, "-o", out, "--quiet")
    assert result.returncode == 2
    assert sorted(p.name for p in out.iterdir()) == ["song0.wav", "song1.wav", "song2.wav"]


def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    for args, message in (
        (("-o", tmp_path / "missing"), "does not exist"),
        (("-o", tmp_path, "--target", "loud"), "target must be one of"),
    ):
        result = _run("batch", *inputs, *args)
        assert result.returncode == 2
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    same = _run("batch", inputs[0], inputs[0], "-o", tmp_path)
    assert same.returncode == 2
    assert "same output file" in same.stderr


def test_batch_records_its_jobs_in_the_library(tmp_path: Path) -> None:
    from tonearm.library.job_store import JobStore
    from tonearm.library.manager import LibraryManager

    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    db = tmp_path / "lib.db"
    result = _run("batch", *inputs, "-o", out, "--db", db, "--quiet")
    assert result.returncode == 0, result.stderr
    with LibraryManager(db) as library:
        jobs = JobStore(library.db).recent()
    assert sorted(Path(job.spec["input_path"]).name for job in jobs) == [p.name for p in inputs]
    assert {job.state for job in jobs} == {"done"}
