"""The command line as a user runs it: exit codes, one-line errors, nothing left behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.mastering import synth
from tonearm.cli import main  # imported before any fork: the child may not read /root

TONEARM = [sys.executable, "-m", "tonearm"]


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TONEARM, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="module")
def short_mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio, rate = synth.excerpt(synth.BACH, 6.0)
    return synth.write(tmp_path_factory.mktemp("mix") / "mix.wav", audio, rate)


def _bad_inputs(folder: Path) -> dict[str, Path]:
    cases: dict[str, Path] = {}
    (folder / "empty.wav").write_bytes(b"")
    cases["empty file"] = folder / "empty.wav"
    sf.write(folder / "zero.wav", np.zeros((0, 2), np.float32), 44100)
    cases["0-length audio"] = folder / "zero.wav"
    good = np.random.default_rng(0).standard_normal((44100, 2)).astype(np.float32) * 0.1
    sf.write(folder / "whole.wav", good, 44100, subtype="PCM_16")
    data = (folder / "whole.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 2])
    cases["truncated WAV"] = folder / "truncated.wav"
    sf.write(folder / "whole.flac", good, 44100, subtype="PCM_16")
    data = (folder / "whole.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(data[: len(data) // 2])
    cases["truncated FLAC"] = folder / "truncated.flac"
    (folder / "text.wav").write_text("this is not audio\n" * 100)
    cases["text file named .wav"] = folder / "text.wav"
    cases["missing path"] = folder / "nope.wav"
    (folder / "adir.wav").mkdir()
    cases["directory"] = folder / "adir.wav"
    nan = good.copy()
    nan[100, 0] = np.nan
    sf.write(folder / "nan.wav", nan, 44100, subtype="FLOAT")
    cases["NaN in float WAV"] = folder / "nan.wav"
    inf = good.copy()
    inf[200, 1] = np.inf
    sf.write(folder / "inf.wav", inf, 44100, subtype="FLOAT")
    cases["Inf in float WAV"] = folder / "inf.wav"
    sf.write(folder / "six.wav", np.zeros((44100, 6), np.float32) + 0.1, 44100)
    cases["6 channels"] = folder / "six.wav"
    return cases


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    for case, path in _bad_inputs(tmp_path).items():
        output = tmp_path / "out" / f"{path.stem}.out.wav"
        output.parent.mkdir(exist_ok=True)
        result = _run("master", path, "-o", output)
        assert result.returncode == 2, (case, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (case, result.stderr)
        assert lines[0].startswith("error: "), (case, lines)
        assert "Traceback" not in result.stderr
        assert not any((tmp_path / "out").iterdir()), case  # no output, no temp file


NOBODY = 65534


def _cli_in_child(folder: Path, args: list[str], *, as_nobody: bool) -> tuple[int, str]:
    """Run the real typer app in a forked child (as 'nobody' if asked); return (code, stderr).

    Exec-ing the interpreter as 'nobody' is not possible where Python lives under /root, so
    the child keeps the interpreter and gives up root itself before running the command.
    """
    # run the same command path once here, so every lazy import happens before the fork
    with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(SystemExit):
        main([args[0], str(folder / "no-such-file.wav")])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 70
        try:
            os.close(read_end)
            sys.stderr = os.fdopen(write_end, "w")  # pytest has replaced the original
            os.chdir(folder)
            if as_nobody:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as stream:
        chunks.append(stream.read())
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


def test_unreadable_path_exits_2(tmp_path: Path, short_mix: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)  # the unprivileged child works inside it
    locked = folder / "locked.wav"
    locked.write_bytes(short_mix.read_bytes())
    locked.chmod(0)
    # root reads anything: the child drops to 'nobody', which gets EACCES for real
    code, stderr = _cli_in_child(
        folder, ["master", "locked.wav", "-o", "out.wav"], as_nobody=os.geteuid() == 0
    )
    assert code == 2, stderr
    assert stderr == "error: cannot read 'locked.wav': permission denied\n"
    assert sorted(p.name for p in folder.iterdir()) == ["locked.wav"]


def test_output_in_missing_folder_and_same_as_input(tmp_path: Path, short_mix: Path) -> None:
    missing = _run("master", short_mix, "-o", tmp_path / "no" / "such" / "out.wav")
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    before = short_mix.read_bytes()
    same = _run("master", short_mix, "-o", short_mix)
    assert same.returncode == 2
    assert "input" in same.stderr
    assert short_mix.read_bytes() == before


def test_bad_usage_exits_2(short_mix: Path, tmp_path: Path) -> None:
    assert _run("master", short_mix, "--target", "nowhere").returncode == 2
    assert _run("master", short_mix, "--strength", "2").returncode == 2
    assert _run("master", short_mix, "--lufs", "3", "-o", tmp_path / "x.wav").returncode == 2
    assert _run("master", short_mix, "-o", tmp_path / "x.xyz").returncode == 2
    assert (
        _run("master", short_mix, "-o", tmp_path / "x.flac", "--bit-depth", "32f").returncode == 2
    )
    assert not list(tmp_path.glob("x.*"))


def test_master_writes_output_and_report(tmp_path: Path, short_mix: Path) -> None:
    output = tmp_path / "mastered.flac"
    report_path = tmp_path / "report.json"
    result = _run("master", short_mix, "-o", output, "--target", "apple", "--report", report_path)
    assert result.returncode == 0, result.stderr
    assert "LUFS" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["target"] == {"name": "apple", "lufs": -16.0, "ceiling_dbtp": -1.0}
    assert report["output"]["integrated_lufs"] == pytest.approx(-16.0, abs=0.5)
    assert report["output"]["true_peak_dbtp"] <= -1.0
    assert {"integrated_lufs", "true_peak_dbtp"} <= set(report["input"])
    assert {"gain_db", "limiter", "eq", "dynamics", "width"} <= set(report["plan"])
    assert {"analyse", "render", "verify", "total"} <= set(report["timings_s"])
    assert output.exists()


def test_custom_target(tmp_path: Path, short_mix: Path) -> None:
    report_path = tmp_path / "r.json"
    args = ("master", short_mix, "-o", tmp_path / "c.wav", "--lufs", "-12", "--ceiling", "-2")
    result = _run(*args, "--report", report_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["output"]["integrated_lufs"] == pytest.approx(-12.0, abs=0.5)
    assert report["output"]["true_peak_dbtp"] <= -2.0


def test_analyze_json(short_mix: Path, tmp_path: Path) -> None:
    result = _run("analyze", short_mix, synth.BACH, "--json")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objects) == 2
    for obj in objects:
        for key in ("integrated_lufs", "true_peak_dbtp", "loudness_range_lu", "sample_rate"):
            assert isinstance(obj[key], float | int)
        assert obj["channels"] == 2
        assert obj["duration_s"] > 5.0
        assert len(obj["fingerprint"]) == 25
    bad = _run("analyze", short_mix, tmp_path / "missing.wav", "--json")
    assert bad.returncode == 2
    assert len(bad.stdout.splitlines()) == 1  # the good file is still reported


def test_too_short_to_measure_exits_2(tmp_path: Path) -> None:
    clip = np.random.default_rng(1).standard_normal((int(0.3 * 44100), 2)).astype(np.float32)
    sf.write(tmp_path / "clip.wav", clip * 0.1, 44100)
    result = _run("master", tmp_path / "clip.wav", "-o", tmp_path / "out.wav")
    assert result.returncode == 2
    assert result.stderr.startswith("error: 'clip.wav' is 0.30 s long")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out.wav").exists()


def test_reference_master_with_plot_and_plans(tmp_path: Path, short_mix: Path) -> None:
    reference, rate = synth.excerpt(synth.JOPLIN, 8.0, offset_s=30.0)
    ref_path = synth.write(tmp_path / "ref.wav", reference, rate)
    out, report_path = tmp_path / "m.wav", tmp_path / "r.json"
    plan_path, plot_path = tmp_path / "plan.json", tmp_path / "report.png"
    result = _run(
        "master", short_mix, "--reference", ref_path, "-o", out, "--report", report_path,
        "--save-plan", plan_path, "--plot", plot_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    match = report["match"]
    assert match["tonal_distance_db"]["after"] < match["tonal_distance_db"]["before"]
    assert report["target"]["name"] == "reference"
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(plan_path.read_text())["eq"]["fir_duration_s"] > 0.3
    again = _run("master", short_mix, "--plan", plan_path, "-o", tmp_path / "again.wav")
    assert again.returncode == 0, again.stderr


def test_reference_bad_inputs_exit_2(tmp_path: Path, short_mix: Path) -> None:
    silent = synth.write(tmp_path / "silent.wav", np.zeros((2, 44100 * 5), np.float32), 44100)
    short = synth.write(tmp_path / "short.wav", synth.noise(44100, 1.0), 44100)
    (tmp_path / "bad.json").write_text("{not json")
    cases = [
        (("--reference", silent), "silent"),
        (("--reference", short), "at least 3 s"),
        (("--plan", tmp_path / "bad.json"), "cannot read plan"),
        (("--plan", tmp_path / "bad.json", "--reference", short), "not both"),
        (("--reference", short, "--plot", tmp_path / "x.jpg"), ".png"),
        (("--reference", short_mix, "--max-eq", "40"), "max EQ must be between 0 and 24 dB"),
    ]
    for args, message in cases:
        result = _run("master", short_mix, *args, "-o", tmp_path / "out.wav")
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "out.wav").exists()
