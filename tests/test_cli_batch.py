"""``tonearm batch`` as a user runs it: a real process over real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.mastering import synth
from tonearm.jobs.engine import JobSpec
from tonearm.mastering.analysis import measure_file
from tonearm.mastering.render import master_file

TONEARM = [sys.executable, "-m", "tonearm"]


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TONEARM, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def test_batch_on_a_dask_cluster_gives_the_same_masters(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    result = _run("batch", *inputs, "-o", out, "--workers", "2", "--executor", "dask")
    assert result.returncode == 0, result.stderr
    assert "3 of 3 mastered" in result.stdout
    assert "on 2 dask worker(s)" in result.stdout
    assert "LUFS out" in result.stdout  # the table, a row per file
    assert all(path.name in result.stdout for path in inputs)
    (tmp_path / "here").mkdir()
    for path in inputs:
        spec = JobSpec(str(path), str(tmp_path / "here" / path.name))
        master_file(spec.input_path, spec.output_path, settings=spec.settings())
        assert _digest(out / path.name) == _digest(tmp_path / "here" / path.name)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in inputs]


def test_batch_masters_library_tracks_and_records_their_ids(tmp_path: Path) -> None:
    from tonearm.library.job_store import JobStore
    from tonearm.library.manager import LibraryManager

    inputs = _inputs(tmp_path / "music")
    xdg = {"XDG_DATA_HOME": str(tmp_path / "xdg")}  # the default library lives here
    default_db = tmp_path / "xdg" / "tonearm" / "library.db"
    scan = _run("scan", tmp_path / "music", "-q", env=xdg)
    assert scan.returncode == 0, scan.stderr
    with LibraryManager(default_db) as library:
        ids = {Path(t.path).name: t.id for t in library.tracks.list().items}
    assert sorted(ids) == [p.name for p in inputs]
    extra = synth.write(
        tmp_path / "extra.wav", synth.noise(44100, 3.0, seed=9, level_db=-24.0), 44100
    )
    picked = ["song0.wav", "song2.wav"]
    tracks = [arg for name in picked for arg in ("--track", str(ids[name]))]

    plain = tmp_path / "plain"  # the default library, read only: no job records
    plain.mkdir()
    first = _run("batch", *tracks, extra, "-o", plain, "-q", env=xdg)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in plain.iterdir()) == ["extra.wav", *picked]
    with LibraryManager(default_db) as library:
        assert JobStore(library.db).recent() == []

    recorded = tmp_path / "recorded"
    recorded.mkdir()
    second = _run("batch", *tracks, "-o", recorded, "--db", default_db, "-q", env=xdg)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in recorded.iterdir()) == picked
    for name in picked:
        assert _digest(recorded / name) == _digest(plain / name)
    with LibraryManager(default_db) as library:
        jobs = JobStore(library.db).recent()
    assert sorted((job.spec["track_id"], Path(job.spec["input_path"]).name) for job in jobs) == [
        (ids[name], name) for name in picked
    ]
    assert {job.state for job in jobs} == {"done"}


def test_batch_applies_a_saved_plan_to_every_input(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    plan = tmp_path / "plan.json"
    saved = _run(
        "master", inputs[0], "-o", tmp_path / "first.wav", "--lufs", "-18", "--ceiling", "-2",
        "--save-plan", plan, "-q",
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert json.loads(plan.read_text())["target"]["lufs"] == -18.0
    out = tmp_path / "out"
    out.mkdir()
    result = _run("batch", *inputs, "-o", out, "--plan", plan, "--target", "apple")
    assert result.returncode == 0, result.stderr
    assert "3 of 3 mastered" in result.stdout
    for path in inputs:
        levels = measure_file(out / path.name)  # the plan's target, not apple's -16 LUFS
        assert levels.integrated_lufs == pytest.approx(-18.0, abs=0.5)
        assert levels.true_peak_dbtp <= -2.0 + 0.05
        spec = JobSpec(str(path), str(tmp_path / path.name), plan_json=plan.read_text())
        master_file(spec.input_path, spec.output_path, settings=spec.settings())
        assert _digest(out / path.name) == _digest(tmp_path / path.name)


def test_new_bad_usage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from tonearm.library.manager import LibraryManager

    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    db = tmp_path / "empty.db"
    with LibraryManager(db):
        pass  # an empty library
    no_library = {"XDG_DATA_HOME": str(tmp_path / "nowhere")}
    cases: list[tuple[tuple[str | Path, ...], str]] = [
        ((*inputs, "--scheduler", "tcp://127.0.0.1:1"), "--scheduler needs --executor dask"),
        ((inputs[0], "--track", "999", "--db", db), "no track 999 in the library"),
        (("--track", "1"), "no library at"),
        ((), "nothing to master"),
    ]
    for args, message in cases:
        result = _run("batch", *args, "-o", out, env=no_library)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(out.iterdir()) == []
    assert not (tmp_path / "nowhere").exists()  # a missing default library is not created
