"""The three executors (``tonearm.jobs.runners``): the same masters, failures, cancellation,
progress, worker names and resizing on threads, worker processes and a dask LocalCluster.

An engine per executor serves the whole module (a process pool or a LocalCluster takes seconds
to start); pytest runs every test of one executor before starting the next.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.mastering import synth
from tonearm.errors import ParameterError
from tonearm.jobs.engine import EXECUTORS, JobEngine, JobEvent, JobSpec, JobState, JobStatus
from tonearm.mastering.render import master_file

RATE = 44100
WORKERS = 2
UP_S = 120.0
"""The longest a pool or cluster may take to start (a loaded 2-core machine)."""
JOB_S = 120.0
STOP_S = {"thread": 0.5, "process": 0.5, "dask": 1.0}
"""A running job stops within a block of audio (~30 ms) and the trip of the flag and the
result across the executor. Measured on 2 cores: thread 50-150 ms, process 40-140 ms, dask
120-230 ms idle and up to 520 ms with 4 CPU-bound processes beside it (a dask cancel is a
round trip to the scheduler, a poll every 0.1 s and the error's way back through the
scheduler), hence its own bound."""
PIPELINE = {"thread": True, "process": False, "dask": True}
"""Each engine masters with its own ``pipeline`` setting: the output must not depend on it."""

MIXES = {"plain.wav": 3.0, "apple16.wav": 4.0, "long.wav": 14.0}
"""Mixes and their lengths in seconds (``long.wav`` is three blocks of audio)."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(folder: Path, name: str, seconds: float, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return synth.write(folder / name, synth.noise(RATE, seconds, level_db=-22, seed=seed), RATE)


def _spec(source: Path, out: Path) -> JobSpec:
    """The job for one of :data:`MIXES`, each with settings of its own."""
    spec = JobSpec(str(source), str(out / source.name))
    if source.name == "apple16.wav":
        return replace(spec, target="apple", bit_depth="16")  # dithered
    if source.name == "long.wav":
        return replace(spec, lufs=-16.0, ceiling_dbtp=-1.5)
    return spec


@dataclass
class Inputs:
    folder: Path
    mixes: list[Path]
    sequential: dict[str, dict[bool, str]]
    """Each mix's master from a plain ``master_file`` call: its digest per ``pipeline``."""
    long: Path
    """Two minutes of audio (20 blocks), to cancel while it renders."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    folder = tmp_path_factory.mktemp("inputs")
    mixes = [
        _write(folder / "in", name, seconds, seed)
        for seed, (name, seconds) in enumerate(MIXES.items())
    ]
    sequential: dict[str, dict[bool, str]] = {}
    for pipeline in (True, False):
        out = folder / f"sequential-{pipeline}"
        out.mkdir()
        for mix in mixes:
            spec = _spec(mix, out)
            master_file(
                spec.input_path, spec.output_path, settings=spec.settings(pipeline=pipeline)
            )
            sequential.setdefault(mix.name, {})[pipeline] = _digest(Path(spec.output_path))
    long = _write(folder / "slow", "long.wav", 120.0, seed=9)
    return Inputs(folder, mixes, sequential, long)


@dataclass
class Harness:
    executor: str
    engine: JobEngine
    events: list[tuple[float, JobEvent]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: JobEvent) -> None:
        with self.lock:
            self.events.append((time.monotonic(), event))

    def of(self, job_id: str) -> list[JobEvent]:
        with self.lock:
            return [event for _, event in self.events if event.job_id == job_id]


@pytest.fixture(scope="module", params=EXECUTORS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    executor: str = request.param
    box: list[Harness] = []
    engine = JobEngine(
        workers=WORKERS,
        executor=executor,
        pipeline=PIPELINE[executor],
        on_event=lambda event: box[0].record(event),
    )
    box.append(Harness(executor, engine))
    try:
        engine.ready(timeout_s=UP_S)
        yield box[0]
    finally:
        engine.shutdown(cancel=True)


def _wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:g} s"
        time.sleep(0.01)


def _interval(status: JobStatus) -> tuple[float, float]:
    assert status.started_at is not None, status
    assert status.finished_at is not None, status
    return status.started_at, status.finished_at


def _overlap(a: JobStatus, b: JobStatus) -> bool:
    (a_start, a_end), (b_start, b_end) = _interval(a), _interval(b)
    return max(a_start, b_start) < min(a_end, b_end)


@pytest.mark.timeout(240)
def test_every_executor_masters_bit_identically_to_a_sequential_run(
    harness: Harness, inputs: Inputs, tmp_path: Path
) -> None:
    engine = harness.engine
    assert engine.pipeline is PIPELINE[harness.executor]
    ids = {mix.name: engine.submit(_spec(mix, tmp_path)) for mix in inputs.mixes}
    finished = {name: engine.wait(job, timeout_s=JOB_S) for name, job in ids.items()}
    assert {name: s.state for name, s in finished.items()} == dict.fromkeys(ids, JobState.DONE)
    for name, digests in inputs.sequential.items():
        assert digests[True] == digests[False], f"{name}: the pipeline changed the master"
        assert _digest(tmp_path / name) == digests[True], f"{name} on {harness.executor}"
        assert not finished[name].cached
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MIXES)
    # progress crosses from the worker: mid-render fractions of the three-block file, in order
    events = harness.of(ids["long.wav"])
    running = [e for e in events if e.state is JobState.RUNNING]
    assert {e.stage for e in running} >= {"analyse", "render"}
    assert any(e.stage == "render" and 0.35 < e.fraction < 0.9 for e in running), running
    fractions = [e.fraction for e in running]
    assert fractions == sorted(fractions)
    assert (events[-1].state, events[-1].fraction) == (JobState.DONE, 1.0)


@pytest.mark.timeout(240)
def test_a_corrupt_input_fails_alone_with_a_one_line_error(
    harness: Harness, inputs: Inputs, tmp_path: Path
) -> None:
    good = [_write(tmp_path / "in", f"good{i}.wav", 2.0, seed=20 + i) for i in range(2)]
    truncated = tmp_path / "in" / "truncated.wav"  # refused by the engine's probe
    truncated.write_bytes(good[0].read_bytes()[:2000])
    flac = synth.write(tmp_path / "in" / "whole.flac", synth.noise(RATE, 14.0, seed=5), RATE)
    damaged = bytearray(flac.read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 20000] = b"\x55" * 20000
    corrupt = tmp_path / "in" / "corrupt.flac"  # its header is fine: the worker fails mid-decode
    corrupt.write_bytes(bytes(damaged))
    flac.unlink()
    out = tmp_path / "out"
    out.mkdir()
    sources = [good[0], truncated, corrupt, good[1]]
    ids = {
        p.name: harness.engine.submit(JobSpec(str(p), str(out / f"{p.stem}.wav"))) for p in sources
    }
    states = {name: harness.engine.wait(job, timeout_s=JOB_S) for name, job in ids.items()}
    for bad in ("truncated.wav", "corrupt.flac"):
        status = states[bad]
        assert status.state is JobState.FAILED, (bad, status)
        error = status.error or ""
        assert bad in error
        assert "\n" not in error
        assert "internal error" not in error
    assert "truncated" in (states["truncated.wav"].error or "")
    assert "corrupt" in (states["corrupt.flac"].error or "")
    assert [states[p.name].state for p in good] == [JobState.DONE, JobState.DONE]
    assert sorted(p.name for p in out.iterdir()) == ["good0.wav", "good1.wav"]


@pytest.mark.timeout(240)
def test_cancelling_a_rendering_job_stops_it_fast_and_leaves_nothing(
    harness: Harness, inputs: Inputs, tmp_path: Path
) -> None:
    engine = harness.engine
    out = tmp_path / "out"
    out.mkdir()
    job = engine.submit(JobSpec(str(inputs.long), str(out / "long.wav")))

    def rendering() -> bool:
        status = engine.status(job)
        assert not status.state.finished, status
        return (
            status.state is JobState.RUNNING and status.stage == "render" and status.fraction > 0.4
        )

    _wait_for(rendering, timeout_s=JOB_S, what="rendering")
    asked = time.monotonic()
    assert engine.cancel(job)
    status = engine.wait(job, timeout_s=30)
    stopped_s = time.monotonic() - asked
    print(f"{harness.executor}: a running job stopped {stopped_s * 1000:.0f} ms after cancel()")
    assert status.state is JobState.CANCELLED
    assert status.fraction < 0.9  # it did not finish rendering
    cancelled = [e for e in harness.of(job) if e.state.finished]
    assert [e.state for e in cancelled] == [JobState.CANCELLED]
    assert stopped_s < STOP_S[harness.executor]
    assert engine.cancel(job) is False
    assert list(out.iterdir()) == []  # no output and no staging file


@pytest.mark.timeout(240)
def test_ready_names_each_worker_and_every_job_ran_on_one(
    harness: Harness, inputs: Inputs, tmp_path: Path
) -> None:
    engine = harness.engine
    names = engine.ready(timeout_s=UP_S)
    assert len(names) == len(set(names)) == WORKERS == engine.workers
    prefix = {"thread": "tonearm-job-", "process": "pid ", "dask": "tcp://"}[harness.executor]
    assert all(name.startswith(prefix) for name in names), names
    mixes = [_write(tmp_path / "in", f"{i}.wav", 2.0, seed=30 + i) for i in range(4)]
    ids = [engine.submit(JobSpec(str(p), str(tmp_path / f"{p.stem}.out.wav"))) for p in mixes]
    mine = [engine.wait(job, timeout_s=JOB_S) for job in ids]
    assert [s.state for s in mine] == [JobState.DONE] * 4
    done = [s for s in engine.jobs() if s.state is JobState.DONE]  # with earlier tests' jobs
    assert {s.worker for s in done} <= set(names)
    assert engine.ready(timeout_s=UP_S) == names  # the same workers all along


@pytest.mark.timeout(240)
def test_resize_shrinks_to_one_worker_then_grows_to_two(
    harness: Harness, inputs: Inputs, tmp_path: Path
) -> None:
    engine = harness.engine
    # shrink while two jobs render: each worker finishes the job it holds
    held = [engine.submit(JobSpec(str(inputs.long), str(tmp_path / f"{n}.wav"))) for n in "ab"]

    def rendering() -> bool:
        statuses = [engine.status(job) for job in held]
        assert not any(s.state.finished for s in statuses), statuses
        return all(s.stage == "render" and s.fraction > 0.4 for s in statuses)

    _wait_for(rendering, timeout_s=JOB_S, what="both rendering")
    engine.resize(1)
    finished = [engine.wait(job, timeout_s=JOB_S) for job in held]
    assert [s.state for s in finished] == [JobState.DONE] * 2
    assert _digest(tmp_path / "a.wav") == _digest(tmp_path / "b.wav")
    assert _overlap(finished[0], finished[1])
    assert finished[0].worker != finished[1].worker, finished  # neither job moved
    _wait_for(lambda: engine.workers == 1, timeout_s=10, what="one worker thread")
    _wait_for(lambda: len(engine.ready(timeout_s=UP_S)) == 1, timeout_s=30, what="one worker")
    (only,) = engine.ready(timeout_s=UP_S)
    mixes = [_write(tmp_path / "in", f"one{i}.wav", 3.0, seed=40 + i) for i in range(3)]
    ids = [engine.submit(JobSpec(str(p), str(tmp_path / f"{p.stem}.out.wav"))) for p in mixes]
    serial = [engine.wait(job, timeout_s=JOB_S) for job in ids]
    assert [s.state for s in serial] == [JobState.DONE] * 3
    assert {s.worker for s in serial} == {only}
    for i, a in enumerate(serial):
        for b in serial[i + 1 :]:
            assert not _overlap(a, b), (a, b)
    assert engine.workers == 1

    engine.resize(2)
    assert engine.workers == 2
    names = engine.ready(timeout_s=UP_S)
    assert len(set(names)) == 2
    mixes = [_write(tmp_path / "in", f"two{i}.wav", 15.0, seed=50 + i) for i in range(2)]
    ids = [engine.submit(JobSpec(str(p), str(tmp_path / f"{p.stem}.out.wav"))) for p in mixes]
    both = [engine.wait(job, timeout_s=JOB_S) for job in ids]
    assert [s.state for s in both] == [JobState.DONE] * 2
    assert _overlap(both[0], both[1]), both
    assert both[0].worker != both[1].worker
    assert {s.worker for s in both} <= set(names)
    assert not list(tmp_path.glob(".*"))  # no staging file left by a retired worker


@pytest.mark.timeout(240)
def test_a_killed_worker_process_fails_its_job_alone_and_the_pool_recovers(
    inputs: Inputs, tmp_path: Path
) -> None:
    with JobEngine(workers=1, executor="process", pipeline=False) as engine:
        (first,) = engine.ready(timeout_s=UP_S)
        doomed = engine.submit(JobSpec(str(inputs.long), str(tmp_path / "doomed.wav")))
        _wait_for(
            lambda: engine.status(doomed).stage == "render",
            timeout_s=JOB_S,
            what="the job rendering",
        )
        os.kill(int(first.removeprefix("pid ")), signal.SIGKILL)
        status = engine.wait(doomed, timeout_s=JOB_S)
        assert status.state is JobState.FAILED
        assert status.error is not None
        assert "died" in status.error
        assert "long.wav" in status.error
        assert list(tmp_path.iterdir()) == []  # no output, no staging file of the dead worker
        (second,) = engine.ready(timeout_s=UP_S)
        assert second != first
        mix = inputs.mixes[0]
        after = engine.wait(engine.submit(_spec(mix, tmp_path)), timeout_s=JOB_S)
        assert after.state is JobState.DONE, after.error
        assert after.worker == second
        assert _digest(Path(after.spec.output_path)) == inputs.sequential[mix.name][False]


def test_an_unknown_executor_or_a_scheduler_without_dask_is_refused() -> None:
    with pytest.raises(ParameterError, match="executor must be one of thread, process, dask"):
        JobEngine(executor="nope")
    with pytest.raises(ParameterError, match="needs the dask executor"):
        JobEngine(scheduler="tcp://x:1")
    with pytest.raises(ParameterError, match="needs the dask executor"):
        JobEngine(executor="process", scheduler="tcp://x:1")


@pytest.mark.timeout(60)
def test_an_unreachable_dask_scheduler_is_a_parameter_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tonearm.jobs import dask_runner

    monkeypatch.setattr(dask_runner, "CONNECT_TIMEOUT_S", 2.0)  # 10 s by default
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    asked = time.monotonic()
    with pytest.raises(
        ParameterError, match=re.escape(f"cannot reach the dask scheduler {address}")
    ):
        JobEngine(executor="dask", scheduler=address)
    assert time.monotonic() - asked < 20  # it gives up after the connect timeout
