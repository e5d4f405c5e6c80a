"""Benchmark reference matching: ``tonearm master --reference`` against Matchering 2.0.

Matchering is not a dependency of tonearm. The script installs ``matchering==2.0.6`` once into
its own virtual environment, ``benchmarks/.venv-matchering`` (gitignored; reused while it holds
that version), and runs it there as a library. It then builds test pairs from the fixtures in a
temporary folder (deterministic processing, no randomness):

* **3-minute pair**: the mix is 180 s of Joplin + Bach + Joplin (as in ``benchmarks/master.py``),
  a 24-bit WAV; the reference is the first 180 s of the Beethoven MP3 made bright (+4 dB high
  shelf, 4 kHz midpoint), wide (side +3 dB) and loud (gain into a ``tanh`` soft clip, -10 LUFS),
  a 16-bit WAV.
* **30-second pairs**: the mix is the first 30 s of the Bach made dull, narrow (side -6 dB) and
  quiet (-24 LUFS); the reference is the first 30 s of the 3-minute reference. "30 s shelf" is
  dull the usual way (a -8 dB high shelf, 3 kHz midpoint); "30 s lowpass" is an extreme case
  (a 4th-order low-pass at 5 kHz leaves the top octaves 30-57 dB short of the reference).

Each tool masters each pair ``--repeats`` times, alternating, every run in a fresh process pinned
to ``--cores`` cores (default: all this process may use) with BLAS/OpenMP/numba thread pools
of that size: tonearm as its command line (``tonearm master MIX
--reference REF -o OUT --bit-depth 24 --report R.json``), Matchering as ``mg.process(target=MIX,
reference=REF, results=[mg.pcm24(OUT)])``. Wall time is the whole process (start, imports,
work); *in-process* is tonearm's ``timings_s["total"]`` and the ``mg.process`` call. Peak RSS is
the process's ``ru_maxrss``. Both outputs are then measured with tonearm's own meters, so the
comparison is the same for both: tonal distance to the reference (third-octave bands, 31.5 Hz to
16 kHz, level offset removed), loudness error (output minus reference integrated LUFS), true
peak, and the side/mid ratio (2.5-20 kHz) minus the reference's.

The benchmark reports; it does not assert. It exits 0 whatever the figures, 2 if Matchering
cannot be installed. If ``tonearm master`` has no ``--reference`` yet, it runs Matchering alone.

    .venv/bin/python benchmarks/reference.py                  # both pairs, 3 runs each
    .venv/bin/python benchmarks/reference.py --quick          # the 30-second pairs, 1 run
    .venv/bin/python benchmarks/reference.py --bands          # also the per-band residuals
    .venv/bin/python benchmarks/reference.py --json out.json  # also write the figures
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from tonearm.dsp.spectrum import MidSideSpectrum

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT.parent / "shared" / "fixtures" / "music"
MATCHERING_VENV = ROOT / "benchmarks" / ".venv-matchering"
MATCHERING_REQUIREMENT = "matchering==2.0.6"
MATCHERING_VERSION = MATCHERING_REQUIREMENT.split("==")[1]
TONEARM = Path(sys.executable).with_name("tonearm")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
THREE_MINUTE_PAIR = "3-minute"
WIDE_EQ = "tonearm ±24"
WIDE_EQ_ARGS = ("--max-eq", "24")
REFERENCE_LUFS = -10.0
SOFT_CLIP_CEILING = 0.95  # the reference's soft clip saturates towards -0.45 dBFS
# seconds; generous, so a slow machine still finishes, but a hung tool does not block forever
INSTALL_TIMEOUT_S = 900
TOOL_TIMEOUT_S = 1200
QUICK_TIMEOUT_S = 60
# reported per package, from inside Matchering's environment
MATCHERING_PACKAGES = ("matchering", "numpy", "scipy", "soundfile", "resampy", "statsmodels")
VERSIONS_SNIPPET = (
    "import importlib.metadata as m, json, sys\n"
    "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))\n"
)
# the Matchering run: the library's documented entry point, timed around the call
MATCHERING_SNIPPET = """\
import json, sys, time
started = time.perf_counter()
import matchering as mg
imported = time.perf_counter()
mg.process(target=sys.argv[1], reference=sys.argv[2], results=[mg.pcm24(sys.argv[3])])
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "in_process_s": done - imported}))
"""


@dataclass(frozen=True)
class Pair:
    """One mix and the reference it is matched to."""

    name: str
    mix: Path
    reference: Path
    description: str


# --- Matchering's environment -------------------------------------------------------------


def matchering_python() -> Path:
    return MATCHERING_VENV / "bin" / "python"


def package_versions(python: Path, packages: tuple[str, ...]) -> dict[str, str] | None:
    """Installed versions of ``packages`` in ``python``'s environment; None if any is missing."""
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", VERSIONS_SNIPPET, *packages],
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        return None
    return dict(json.loads(result.stdout))


def install_failed(step: str, result: subprocess.CompletedProcess[str]) -> NoReturn:
    """Print one clear line and exit 2."""
    last = (result.stderr or result.stdout).strip().splitlines()
    detail = last[-1] if last else f"exit status {result.returncode}"
    print(
        f"error: cannot {step} for {MATCHERING_REQUIREMENT} in {MATCHERING_VENV}: {detail}",
        file=sys.stderr,
    )
    sys.exit(2)


def ensure_matchering() -> dict[str, str]:
    """Create (once) Matchering's own environment; return its package versions."""
    versions = package_versions(matchering_python(), MATCHERING_PACKAGES)
    if versions is not None and versions["matchering"] == MATCHERING_VERSION:
        return versions
    print(f"installing {MATCHERING_REQUIREMENT} into {MATCHERING_VENV} ...", flush=True)
    # the base interpreter, not this environment's: the new one must not see tonearm's packages
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        ("create a virtual environment", [base, "-m", "venv", "--clear", str(MATCHERING_VENV)]),
        (
            "pip install",
            [str(matchering_python()), "-m", "pip", "install", "--quiet", MATCHERING_REQUIREMENT],
        ),
    ]
    for step, command in steps:
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            result = subprocess.CompletedProcess(command, 124, "", f"timed out ({step})")
        if result.returncode != 0:
            install_failed(step, result)
    versions = package_versions(matchering_python(), MATCHERING_PACKAGES)
    if versions is None:
        install_failed("import the installed packages", subprocess.CompletedProcess([], 1, "", ""))
    return versions


def tonearm_has_reference() -> bool:
    """Whether this checkout's ``tonearm master`` takes ``--reference`` yet."""
    result = subprocess.run(
        [str(TONEARM), "master", "--help"],
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    return "--reference" in result.stdout


# --- test pairs -----------------------------------------------------------------------------


def read_music(name: str, seconds: float | None = None) -> tuple[npt.NDArray[np.float32], int]:
    """A fixture as float32 ``(channels, frames)``, optionally its first ``seconds``."""
    import numpy as np
    import soundfile as sf

    rate = sf.info(str(MUSIC / name)).samplerate
    frames = -1 if seconds is None else round(seconds * rate)
    audio, rate = sf.read(str(MUSIC / name), frames=frames, dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), rate


def loudness(audio: npt.NDArray[np.float32], rate: int) -> float:
    from tonearm.dsp.loudness import integrated_loudness

    return integrated_loudness(audio, sample_rate=rate)


def high_shelf_sos(gain_db: float, midpoint_hz: float, rate: int) -> npt.NDArray[np.float64]:
    """A second-order high shelf (the audio EQ cookbook form, slope 1) as one SOS section."""
    import numpy as np

    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * midpoint_hz / rate
    cos_w0, root = np.cos(w0), 2.0 * np.sqrt(amp) * np.sin(w0) / np.sqrt(2.0)
    b = amp * np.array(
        [
            (amp + 1) + (amp - 1) * cos_w0 + root,
            -2.0 * ((amp - 1) + (amp + 1) * cos_w0),
            (amp + 1) + (amp - 1) * cos_w0 - root,
        ]
    )
    a = np.array(
        [
            (amp + 1) - (amp - 1) * cos_w0 + root,
            2.0 * ((amp - 1) - (amp + 1) * cos_w0),
            (amp + 1) - (amp - 1) * cos_w0 - root,
        ]
    )
    return np.concatenate([b / a[0], a / a[0]])[np.newaxis, :]


def scale_side(audio: npt.NDArray[np.float32], gain_db: float) -> npt.NDArray[np.float32]:
    """Stereo with its side (``(L - R) / 2``) scaled by ``gain_db``; mid unchanged."""
    import numpy as np

    mid = (audio[0] + audio[1]) / 2
    side = (audio[0] - audio[1]) / 2 * np.float32(10.0 ** (gain_db / 20.0))
    return np.stack([mid + side, mid - side]).astype(np.float32)


def soft_clip_to(
    audio: npt.NDArray[np.float32], rate: int, target_lufs: float
) -> npt.NDArray[np.float32]:
    """Gain into a ``tanh`` soft clip, the gain found by bisection so the result hits the target."""
    import numpy as np

    ceiling = np.float32(SOFT_CLIP_CEILING)

    def clipped(gain_db: float) -> npt.NDArray[np.float32]:
        gain = np.float32(10.0 ** (gain_db / 20.0))
        out: npt.NDArray[np.float32] = (ceiling * np.tanh(audio * (gain / ceiling))).astype(
            np.float32
        )
        return out

    low, high = -20.0, 40.0
    for _ in range(16):  # 60 dB / 2**16 < 0.001 dB
        middle = (low + high) / 2
        low, high = (
            (middle, high) if loudness(clipped(middle), rate) < target_lufs else (low, middle)
        )
    return clipped((low + high) / 2)


def to_lufs(audio: npt.NDArray[np.float32], rate: int, target: float) -> npt.NDArray[np.float32]:
    import numpy as np

    gain = np.float32(10.0 ** ((target - loudness(audio, rate)) / 20.0))
    return (audio * gain).astype(np.float32)


def write_wav(path: Path, audio: npt.NDArray[np.float32], rate: int, subtype: str) -> Path:
    import soundfile as sf

    sf.write(str(path), audio.T, rate, subtype=subtype)
    return path


def make_pairs(folder: Path, *, quick: bool) -> list[Pair]:
    """Write the test pairs (see the module docstring) into ``folder``."""
    import numpy as np
    import scipy.signal

    beethoven, rate = read_music("beethoven_opus18no1.mp3", 180.0)
    bright = scipy.signal.sosfilt(high_shelf_sos(4.0, 4000.0, rate), beethoven, axis=-1)
    loud = soft_clip_to(scale_side(bright.astype(np.float32), 3.0), rate, REFERENCE_LUFS)
    reference = write_wav(folder / "reference_180s.wav", loud, rate, "PCM_16")
    short_reference = write_wav(folder / "reference_30s.wav", loud[:, : 30 * rate], rate, "PCM_16")

    bach, _ = read_music("bach_bwv66_6.flac", 30.0)
    lowpass = scipy.signal.butter(4, 5000.0, fs=rate, output="sos")
    dull = scipy.signal.sosfilt(lowpass, bach, axis=-1).astype(np.float32)
    quiet = to_lufs(scale_side(dull, -6.0), rate, -24.0)
    shelved = scipy.signal.sosfilt(high_shelf_sos(-8.0, 3000.0, rate), bach, axis=-1)
    quiet_shelved = to_lufs(scale_side(shelved.astype(np.float32), -6.0), rate, -24.0)
    pairs = [
        Pair(
            "30 s shelf",
            write_wav(folder / "mix_30s_shelf.wav", quiet_shelved, rate, "PCM_24"),
            short_reference,
            "Bach 0-30 s, high shelf -8 dB (3 kHz), side -6 dB, -24 LUFS; "
            "vs the 3-minute reference's first 30 s",
        ),
        Pair(
            "30 s lowpass",
            write_wav(folder / "mix_30s.wav", quiet, rate, "PCM_24"),
            short_reference,
            "Bach 0-30 s, low-passed 5 kHz, side -6 dB, -24 LUFS; "
            "vs the 3-minute reference's first 30 s",
        ),
    ]
    if quick:
        return pairs
    joplin, _ = read_music("joplin_maple_leaf_rag.flac")
    whole_bach, _ = read_music("bach_bwv66_6.flac")
    three = np.concatenate([joplin, whole_bach, joplin], axis=1)[:, : 180 * rate]
    pairs.insert(
        0,
        Pair(
            THREE_MINUTE_PAIR,
            write_wav(folder / "mix_180s.wav", np.ascontiguousarray(three), rate, "PCM_24"),
            reference,
            "Joplin + Bach + Joplin, 180 s, as is; vs Beethoven 0-180 s, high shelf +4 dB "
            f"(4 kHz), side +3 dB, tanh soft clip to {REFERENCE_LUFS:g} LUFS",
        ),
    )
    return pairs


# --- running the tools ----------------------------------------------------------------------


def measure_child(command: list[str], timeout_s: float, cores: int) -> None:
    """Pin to ``cores`` cores, run ``command``, print its wall time, peak RSS and output (JSON)."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    started = time.perf_counter()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired:
        returncode, stdout, stderr = 124, "", f"timed out after {timeout_s:.0f} s"
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "returncode": returncode,
                "wall_s": wall,
                "peak_rss_mib": peak_kib / 1024,
                "stdout": stdout[-4000:],
                "stderr": stderr[-4000:],
            }
        )
    )


def measured_run(
    command: list[str], *, cores: int, timeout_s: float = TOOL_TIMEOUT_S
) -> dict[str, Any]:
    """Run ``command`` in a fresh child pinned to ``cores`` (see :func:`measure_child`), with
    thread pools of that size."""
    result = subprocess.run(
        [sys.executable, __file__, "--measure-child", json.dumps([timeout_s, command, cores])],
        capture_output=True,
        text=True,
        env={**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(cores))},
        timeout=timeout_s + 60,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def failed(tool: str, run: dict[str, Any]) -> bool:
    if run["returncode"] == 0:
        return False
    tail = "\n    ".join(run["stderr"].strip().splitlines()[-8:])
    print(f"  {tool} failed (exit {run['returncode']}):\n    {tail}", flush=True)
    return True


def run_tonearm(
    pair: Pair, folder: Path, *, cores: int, extra: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    tag = "tonearm" + "".join(extra).replace("-", "_")
    output = folder / f"{pair.mix.stem}.{tag}.wav"
    report_path = folder / f"{pair.mix.stem}.{tag}.json"
    output.unlink(missing_ok=True)
    report_path.unlink(missing_ok=True)
    command = [
        str(TONEARM),
        "master",
        str(pair.mix),
        "--reference",
        str(pair.reference),
        "-o",
        str(output),
        "--bit-depth",
        "24",
        "--report",
        str(report_path),
        "--quiet",
        *extra,
    ]
    run = measured_run(command, cores=cores)
    if failed("tonearm", run):
        return None
    report = json.loads(report_path.read_text())
    run.update(output=output, in_process_s=report["timings_s"]["total"], report=report)
    return run


def run_matchering(pair: Pair, folder: Path, *, cores: int) -> dict[str, Any] | None:
    output = folder / f"{pair.mix.stem}.matchering.wav"
    output.unlink(missing_ok=True)
    command = [
        str(matchering_python()),
        "-c",
        MATCHERING_SNIPPET,
        str(pair.mix),
        str(pair.reference),
        str(output),
    ]
    run = measured_run(command, cores=cores)
    if failed("Matchering", run):
        return None
    run.update(json.loads(run["stdout"].strip().splitlines()[-1]), output=output)
    return run


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best and median times over the runs, the largest peak RSS, the last run's output."""
    walls = [run["wall_s"] for run in runs]
    inside = [run["in_process_s"] for run in runs]
    return {
        "runs": len(runs),
        "wall_s": min(walls),
        "wall_median_s": statistics.median(walls),
        "in_process_s": min(inside),
        "in_process_median_s": statistics.median(inside),
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
        "output": runs[-1]["output"],
        "report": runs[-1].get("report"),
    }


# --- measuring the results ------------------------------------------------------------------


@dataclass(frozen=True)
class Levels:
    """What the comparison needs of one file, measured by tonearm's meters."""

    lufs: float
    true_peak_dbtp: float
    spectrum: MidSideSpectrum
    side_to_mid_db: float


def measure_file(path: Path) -> Levels:
    import numpy as np
    import soundfile as sf

    from tonearm.dsp.spectrum import spectrum_of
    from tonearm.dsp.true_peak import true_peak_dbtp
    from tonearm.mastering.metrics import side_to_mid_db

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(data.T)
    spectrum = spectrum_of(audio, sample_rate=rate)
    return Levels(
        lufs=loudness(audio, rate),
        true_peak_dbtp=true_peak_dbtp(audio),
        spectrum=spectrum,
        side_to_mid_db=side_to_mid_db(spectrum),
    )


def band_residual_db(levels: Levels, reference: Levels) -> list[float]:
    """Per third-octave band, this file's level minus the reference's, level offset removed."""
    import numpy as np

    from tonearm.mastering.metrics import tonal_balance_db

    difference = tonal_balance_db(levels.spectrum) - tonal_balance_db(reference.spectrum)
    return [round(float(x), 2) for x in difference - np.nanmean(difference)]


def compare(levels: Levels, reference: Levels) -> dict[str, Any]:
    from tonearm.mastering.metrics import tonal_distance_db

    return {
        "tonal_distance_db": tonal_distance_db(levels.spectrum, reference.spectrum),
        "band_residual_db": band_residual_db(levels, reference),
        "loudness_error_lu": levels.lufs - reference.lufs,
        "lufs": levels.lufs,
        "true_peak_dbtp": levels.true_peak_dbtp,
        "side_to_mid_delta_db": levels.side_to_mid_db - reference.side_to_mid_db,
    }


def benchmark_pair(
    pair: Pair, folder: Path, *, repeats: int, with_tonearm: bool, cores: int
) -> dict[str, Any]:
    """Run the tools ``repeats`` times each (alternating) and measure their outputs."""
    print(f"pair {pair.name}: {pair.description}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"tonearm": [], "Matchering": [], WIDE_EQ: []}
    for _ in range(repeats):
        if with_tonearm and (run := run_tonearm(pair, folder, cores=cores)) is not None:
            runs["tonearm"].append(run)
        if (run := run_matchering(pair, folder, cores=cores)) is not None:
            runs["Matchering"].append(run)
    # once more with the widest clamp tonearm allows: what the default +-12 dB gives up
    if with_tonearm and (run := run_tonearm(pair, folder, cores=cores, extra=WIDE_EQ_ARGS)):
        runs[WIDE_EQ].append(run)
    reference = measure_file(pair.reference)
    mix = compare(measure_file(pair.mix), reference)
    tools = {}
    for tool, tool_runs in runs.items():
        if tool_runs:
            summary = summarise(tool_runs)
            summary.update(compare(measure_file(summary["output"]), reference))
            summary["output"] = str(summary["output"])
            tools[tool] = summary
    return {
        "pair": pair.name,
        "description": pair.description,
        "reference": {
            "lufs": reference.lufs,
            "true_peak_dbtp": reference.true_peak_dbtp,
            "side_to_mid_db": reference.side_to_mid_db,
        },
        "mix": mix,
        "tools": tools,
    }


# --- the table and the verdicts -------------------------------------------------------------


def table_row(pair: str, tool: str, tonal: str, row: dict[str, Any], cost: str) -> str:
    return (
        f"{pair:<13}{tool:<12}{tonal:>15}{row['loudness_error_lu']:>+9.2f} LU"
        f"{row['true_peak_dbtp']:>+8.2f} dBTP{row['side_to_mid_delta_db']:>+8.2f} dB{cost}"
    )


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'pair':<13}{'tool':<12}{'tonal dist dB':>15}{'loud err':>12}{'true peak':>13}"
        f"{'S/M delta':>11}{'wall s (process / in)':>24}{'peak RSS':>10}"
    )
    for result in results:
        before = f"{result['mix']['tonal_distance_db']:.2f}"
        print(table_row(result["pair"], "(mix)", before, result["mix"], ""))
        for tool, row in result["tools"].items():
            tonal = f"{before} -> {row['tonal_distance_db']:.2f}"
            times = f"{row['wall_s']:.2f} / {row['in_process_s']:.2f}"
            cost = f"{times:>24}{row['peak_rss_mib']:>6.0f} MiB"
            print(table_row(result["pair"], tool, tonal, row, cost))
        ref = result["reference"]
        print(
            f"{'':<13}reference: {ref['lufs']:.2f} LUFS, {ref['true_peak_dbtp']:+.2f} dBTP, "
            f"side/mid {ref['side_to_mid_db']:+.2f} dB (2.5-20 kHz)"
        )


def print_bands(results: list[dict[str, Any]]) -> None:
    """Each file's band levels minus the reference's (what the tonal distance is the RMS of)."""
    from tonearm.mastering.metrics import TONAL_BANDS_HZ

    for result in results:
        print(f"\n{result['pair']}: band level minus the reference's, dB (level offset removed)")
        print(f"{'Hz':<13}" + "".join(f"{f:>6.0f}" for f in TONAL_BANDS_HZ))
        rows = {"(mix)": result["mix"]} | result["tools"]
        for tool, row in rows.items():
            print(f"{tool:<13}" + "".join(f"{x:>+6.1f}" for x in row["band_residual_db"]))


def verdicts(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios per pair and whether each requirement of the issue holds (None: not measured)."""
    found: dict[str, Any] = {"pairs": {}}
    for result in results:
        tools = result["tools"]
        if {"tonearm", "Matchering"} - tools.keys():
            continue
        ours, theirs = tools["tonearm"], tools["Matchering"]
        found["pairs"][result["pair"]] = {
            "closer": ours["tonal_distance_db"] < theirs["tonal_distance_db"],
            "speedup_process_x": theirs["wall_s"] / ours["wall_s"],
            "speedup_in_process_x": theirs["in_process_s"] / ours["in_process_s"],
            "memory_ratio": ours["peak_rss_mib"] / theirs["peak_rss_mib"],
        }
    pairs = found["pairs"]
    three = pairs.get(THREE_MINUTE_PAIR)
    found["closer_on_every_pair"] = all(p["closer"] for p in pairs.values()) if pairs else None
    found["at_least_4x_faster"] = None if three is None else three["speedup_process_x"] >= 4.0
    found["at_least_4x_faster_in_process"] = (
        None if three is None else three["speedup_in_process_x"] >= 4.0
    )
    found["under_a_third_memory"] = None if three is None else three["memory_ratio"] < 1.0 / 3.0
    wide = [
        r["tools"][WIDE_EQ]["tonal_distance_db"] < r["tools"]["Matchering"]["tonal_distance_db"]
        for r in results
        if {WIDE_EQ, "Matchering"} <= r["tools"].keys()
    ]
    found["closer_on_every_pair_max_eq_24"] = all(wide) if wide else None
    return found


def print_verdicts(found: dict[str, Any], with_tonearm: bool) -> None:
    print()
    if not with_tonearm:
        print("tonearm master has no --reference in this checkout: Matchering measured alone")
        return
    for name, pair in found["pairs"].items():
        print(
            f"{name}: tonearm is {pair['speedup_process_x']:.1f}x faster as a process "
            f"({pair['speedup_in_process_x']:.1f}x in-process), uses "
            f"{pair['memory_ratio']:.2f}x Matchering's peak RSS, and is "
            f"{'closer to' if pair['closer'] else 'NOT closer to'} the reference"
        )
    labels = {
        "closer_on_every_pair": "tonearm closer to the reference than Matchering (every pair)",
        "closer_on_every_pair_max_eq_24": "same, with tonearm's --max-eq 24 (not the default)",
        "at_least_4x_faster": f"tonearm >= 4x faster ({THREE_MINUTE_PAIR} pair, whole process)",
        "at_least_4x_faster_in_process": "tonearm >= 4x faster (same, the call alone)",
        "under_a_third_memory": f"tonearm < 1/3 of Matchering's peak RSS ({THREE_MINUTE_PAIR})",
    }
    for key, label in labels.items():
        state = {True: "HOLDS", False: "FAILS", None: "not measured"}[found[key]]
        print(f"requirement: {label}: {state}")


def print_notes(results: list[dict[str, Any]]) -> None:
    """tonearm's own account of each reference master: target, notes."""
    for result in results:
        report = result["tools"].get("tonearm", {}).get("report")
        if report is None:
            continue
        target = report["target"]
        print(
            f"tonearm {result['pair']}: target {target['name']} {target['lufs']:.2f} LUFS, "
            f"ceiling {target['ceiling_dbtp']:g} dBTP; report's loudness error "
            f"{report['loudness_error_lu']:+.3f} LU; stages {report['timings_s']}"
        )
        for note in report.get("notes", []):
            print(f"    note: {note}")


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}"


# --- entry point ----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure-child", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, help="runs per tool and pair (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="only the 30-second pairs")
    parser.add_argument("--bands", action="store_true", help="print the per-band residuals")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--cores",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="cores each run may use (default: all available)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.measure_child:
        timeout_s, command, cores = json.loads(args.measure_child)
        measure_child(command, timeout_s, cores)
        return
    repeats = args.repeats or (1 if args.quick else 3)
    versions = ensure_matchering()
    print("Matchering environment: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"each run pinned to {args.cores} core(s), with thread pools of that size")
    with_tonearm = tonearm_has_reference()
    with tempfile.TemporaryDirectory(prefix="tonearm-reference-") as temp:
        folder = Path(temp)
        results = [
            benchmark_pair(
                pair, folder, repeats=repeats, with_tonearm=with_tonearm, cores=args.cores
            )
            for pair in make_pairs(folder, quick=args.quick)
        ]
    print_table(results)
    if args.bands:
        print_bands(results)
    print_notes(results)
    found = verdicts(results)
    print_verdicts(found, with_tonearm)
    if args.json:
        figures = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "repeats": repeats,
            "cores": args.cores,
            "matchering_environment": versions,
            "tonearm_has_reference": with_tonearm,
            "results": results,
            "requirements": found,
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
