"""Benchmark ``tonearm master``: speed (x real time, one core) and peak memory.

Each scenario runs in a fresh child process pinned to one core with single-threaded BLAS/FFT.
After a warm-up master of four seconds (imports, FFT plans and first-call costs, paid once per
process),
it alternates the baseline (decode + write only, the same formats, no processing) and the full
master ``--repeats`` times; it prints the best and the median master, and the ratio of the best
master to the best baseline from the same process. Peak RSS is the child's ``ru_maxrss``.

    python benchmarks/master.py                 # 3-minute track + the 10-minute fixture
    python benchmarks/master.py --two-hours     # also a 2-hour file (flat memory check)
    python benchmarks/master.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT.parent / "shared" / "fixtures" / "music"
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
SINGLE_THREAD = dict.fromkeys(THREAD_VARIABLES, "1")
# the usual deliverables: a 24-bit WAV master, a 16-bit (dithered) FLAC for distribution
BIT_DEPTHS: dict[str, Literal["16", "24"]] = {".wav": "24", ".flac": "16"}


def make_three_minutes(folder: Path) -> Path:
    """A 180 s, 44.1 kHz stereo 16-bit FLAC of real music (Joplin, then Bach)."""
    import numpy as np
    import soundfile as sf

    path = folder / "three_minutes.flac"
    joplin, rate = sf.read(MUSIC / "joplin_maple_leaf_rag.flac", dtype="float32")
    bach, _ = sf.read(MUSIC / "bach_bwv66_6.flac", dtype="float32")
    track = np.concatenate([joplin, bach, joplin])[: 180 * rate]
    sf.write(path, track, rate, subtype="PCM_16")
    return path


def make_two_hours(folder: Path) -> Path:
    """A 2-hour 44.1 kHz stereo 16-bit FLAC, written block by block (Joplin looped)."""
    import numpy as np
    import soundfile as sf

    path = folder / "two_hours.flac"
    joplin, rate = sf.read(MUSIC / "joplin_maple_leaf_rag.flac", dtype="float32")
    total = 2 * 3600 * rate
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as out:
        written = 0
        while written < total:
            part = joplin[: total - written]
            out.write(part * np.float32(0.9 + 0.1 * (written // part.shape[0] % 2)))
            written += part.shape[0]
    return path


def child(source: Path, output: Path, repeats: int) -> None:
    """Run baseline then master ``repeats`` times in this process; print one JSON line."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import soundfile as sf

    from tonearm.audio_io import AtomicAudioWriter, AudioReader, output_format_for, write_audio
    from tonearm.mastering import MasterSettings, master_file

    # warm imports, FFT plans and first-call costs outside the timed region: master four
    # seconds of the same source, longer than one 64k-frame block so the same FFT sizes are
    # planned (a CLI pays these once per process; a service once per worker)
    warm_source = output.with_name("warm-in" + source.suffix)
    with AudioReader(source) as reader:
        first = next(reader.blocks(block_frames=4 * reader.info.sample_rate))
        write_audio(warm_source, first, sample_rate=reader.info.sample_rate)
    master_file(warm_source, output.with_name("warm-out" + output.suffix))
    with AudioReader(source) as reader:
        info = reader.info
    depth = BIT_DEPTHS[output.suffix]
    fmt = output_format_for(output, sample_rate=info.sample_rate, bit_depth=depth)
    baseline_times, master_times, reports = [], [], []
    for _ in range(repeats):
        # baseline: the same decode and the same write, no processing
        started = time.perf_counter()
        baseline_out = output.with_name("baseline" + output.suffix)
        with (
            AudioReader(source) as reader,
            AtomicAudioWriter(
                baseline_out, sample_rate=info.sample_rate, channels=info.channels, fmt=fmt
            ) as writer,
        ):
            for block in reader.blocks():
                writer.write(block)
        baseline_times.append(time.perf_counter() - started)
        baseline_out.unlink()
        started = time.perf_counter()
        reports.append(master_file(source, output, settings=MasterSettings(bit_depth=depth)))
        master_times.append(time.perf_counter() - started)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = master_times.index(min(master_times))
    report = reports[best]
    duration = info.frames / info.sample_rate
    print(
        json.dumps(
            {
                "file": source.name,
                "output": f"{output.suffix[1:].upper()}-{depth}",
                "duration_s": duration,
                "repeats": repeats,
                "baseline_s": min(baseline_times),
                "master_s": min(master_times),
                "master_median_s": statistics.median(master_times),
                "realtime_x": duration / min(master_times),
                "realtime_median_x": duration / statistics.median(master_times),
                "ratio_to_baseline": min(master_times) / min(baseline_times),
                "peak_rss_mib": peak_kib / 1024,
                "render_passes": report.render_passes,
                "timings_s": report.timings_s,
                "output_lufs": report.output.integrated_lufs,
                "output_dbtp": report.output.true_peak_dbtp,
                "output_format": sf.info(output).subtype,
            }
        )
    )


def run_child(source: Path, output: Path, repeats: int) -> dict[str, object]:
    env = {**os.environ, **SINGLE_THREAD}
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(source), str(output), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=3600,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--child", nargs=2, type=Path, metavar=("IN", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--two-hours", action="store_true", help="also master a 2-hour file")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (best and median)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.child:
        source, output = args.child
        child(source, output, args.repeats)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="tonearm-bench-") as temp:
        folder = Path(temp)
        three = make_three_minutes(folder)
        jobs = [
            (three, folder / "three_minutes.mastered.wav"),
            (three, folder / "three_minutes.mastered.flac"),
            (MUSIC / "beethoven_opus18no1.mp3", folder / "beethoven.mastered.wav"),
        ]
        for source, output in jobs:
            rows.append(run_child(source, output, args.repeats))
        if args.two_hours:  # once: it takes over a minute
            rows.append(run_child(make_two_hours(folder), folder / "two_hours.mastered.wav", 1))
    print(
        f"{'file':<26}{'output':>9}{'length':>8}{'baseline':>10}{'master':>9}{'x real':>8}"
        f"{'median':>8}{'ratio':>7}{'peak RSS':>10}{'passes':>7}"
    )
    for row in rows:
        print(
            f"{row['file']:<26}{row['output']:>9}{row['duration_s']:>7.0f}s{row['baseline_s']:>9.2f}s"
            f"{row['master_s']:>8.2f}s{row['realtime_x']:>7.0f}x{row['realtime_median_x']:>7.0f}x"
            f"{row['ratio_to_baseline']:>6.1f}x"
            f"{row['peak_rss_mib']:>7.0f} MiB"
            f"{row['render_passes']:>7}"
        )
        stages = {k: round(v, 3) for k, v in row["timings_s"].items()}  # type: ignore[attr-defined]
        print(f"    stages: {json.dumps(stages)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
