"""Benchmark the job engine: files per second with 1, 2, 4... workers on the same files.

    .venv/bin/python benchmarks/batch.py                  # 20 files of 30 s, 1 and 2 workers
    .venv/bin/python benchmarks/batch.py --workers 1 2 4 8 16 --files 32
    .venv/bin/python benchmarks/batch.py --executors process dask

Each configuration runs in a fresh engine over the same generated files (stereo 44.1 kHz noise
shaped like music, 24-bit WAV), after one warm-up master in this process (imports, FFT plans).
A process pool or dask LocalCluster is started and its workers warmed (``JobEngine.ready``)
before the clock starts, as in a server that keeps its pool; the start-up is printed apart.
It prints files/s, the speed-up over the same executor's 1 worker (jobs on one thread each, as
the engine runs them when there is a worker per core), the ratio to the process pool with as
many workers, the engine's peak memory reservation and this process's peak RSS. A first row
shows 1 worker with its job pipelined over two cores, the engine's choice for a lone worker.
The issue's targets: 2 workers on 2 cores give at least 1.7x the files/s of 1 worker; a dask
LocalCluster comes within 15% of the process pool on 20 files. No assertions; figures only.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mastering import synth  # noqa: E402

from tonearm.jobs.engine import EXECUTORS, JobEngine, JobSpec, JobState  # noqa: E402
from tonearm.mastering.render import master_file  # noqa: E402

RATE = 44100


def make_files(folder: Path, count: int, seconds: float) -> list[Path]:
    return [
        synth.write(
            folder / f"mix{i:03d}.wav",
            synth.noise(RATE, seconds, level_db=-22.0 - i % 6, seed=i),
            RATE,
        )
        for i in range(count)
    ]


def run(
    files: list[Path],
    out: Path,
    workers: int,
    budget_mib: int,
    *,
    pipeline: bool,
    executor: str = "thread",
) -> tuple[float, float, int, int]:
    """Seconds to start the workers, seconds for the batch, jobs done, peak reserved bytes."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    begun = time.perf_counter()
    engine = JobEngine(
        workers=workers, memory_budget_mib=budget_mib, pipeline=pipeline, executor=executor
    )
    with engine:
        engine.ready(timeout_s=300)
        started = time.perf_counter()
        for path in files:
            engine.submit(JobSpec(str(path), str(out / path.name)))
        statuses = engine.wait_all(timeout_s=3600)
        peak = engine.memory.peak_bytes
        elapsed = time.perf_counter() - started
    return started - begun, elapsed, sum(s.state is JobState.DONE for s in statuses), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--memory-mib", type=int, default=4096)
    parser.add_argument(
        "--executors", nargs="+", default=["thread", "process", "dask"], choices=EXECUTORS
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {cores} cores, Python {platform.python_version()}")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    with tempfile.TemporaryDirectory(prefix="tonearm-batch-") as temp:
        folder = Path(temp)
        (folder / "in").mkdir()
        files = make_files(folder / "in", args.files, args.seconds)
        master_file(files[0], folder / "warm.wav")  # imports, FFT plans: once per process
        print(f"{len(files)} files x {args.seconds:g} s (stereo, 44.1 kHz, 24-bit WAV)")
        print(
            f"{'workers':>8}{'executor':>20}{'start s':>9}{'seconds':>9}{'files/s':>9}"
            f"{'x real time':>13}{'speed-up':>10}{'vs process':>12}{'peak reserved':>15}"
        )
        configurations = [("thread", 1, True)] if "thread" in args.executors else []
        configurations += [
            (executor, w, False) for executor in args.executors for w in args.workers
        ]
        one_worker: dict[str, float] = {}
        process_rate: dict[int, float] = {}
        for executor, workers, pipeline in configurations:
            start_s, elapsed, done, peak = run(
                files,
                folder / "out",
                workers,
                args.memory_mib,
                pipeline=pipeline,
                executor=executor,
            )
            rate = done / elapsed
            if not pipeline:
                one_worker.setdefault(executor, rate)
            if executor == "process":
                process_rate[workers] = rate
            base = one_worker.get(executor)
            speed_up = f"{rate / base:>9.2f}x" if base and not pipeline else f"{'-':>10}"
            versus = process_rate.get(workers) if not pipeline else None
            vs_process = f"{rate / versus:>11.2f}x" if versus else f"{'-':>12}"
            kind = f"{executor}{', pipelined' if pipeline else ''}"
            print(
                f"{workers:>8}{kind:>20}{start_s:>9.2f}{elapsed:>9.2f}{rate:>9.2f}"
                f"{done * args.seconds / elapsed:>12.0f}x{speed_up}{vs_process}"
                f"{peak / 2**20:>11.0f} MiB"
            )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {peak_rss:.0f} MiB")


if __name__ == "__main__":
    main()
