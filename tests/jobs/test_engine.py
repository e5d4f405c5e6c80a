"""The job engine on threads: results, priorities, cancellation, failures, cache, memory."""

from __future__ import annotations

import datetime
import hashlib
import threading
import time
from pathlib import Path

import pytest

from tests.mastering import synth
from tonearm.errors import ParameterError
from tonearm.jobs.engine import JobEngine, JobEvent, JobSpec, JobState
from tonearm.mastering.render import master_file

RATE = 44100


def _mix(folder: Path, name: str, seconds: float = 4.0, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    audio = synth.noise(RATE, seconds, level_db=-24.0 - seed % 5, seed=seed)
    return synth.write(folder / name, audio, RATE)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_parallel_results_are_bit_identical_to_sequential(tmp_path: Path) -> None:
    inputs = [_mix(tmp_path / "in", f"{i}.wav", seed=i) for i in range(4)]
    (tmp_path / "seq").mkdir()
    for path in inputs:
        master_file(path, tmp_path / "seq" / path.name)
    (tmp_path / "par").mkdir()
    with JobEngine(workers=2) as engine:
        ids = [engine.submit(JobSpec(str(p), str(tmp_path / "par" / p.name))) for p in inputs]
        finished = [engine.wait(i, timeout_s=120) for i in ids]
    assert [s.state for s in finished] == [JobState.DONE] * 4
    for path in inputs:
        assert _digest(tmp_path / "par" / path.name) == _digest(tmp_path / "seq" / path.name)


def test_a_corrupt_file_fails_alone_with_a_clear_error(tmp_path: Path) -> None:
    good = [_mix(tmp_path, f"{i}.wav", 2.0, seed=i) for i in range(3)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(good[0].read_bytes()[:2000])  # truncated
    with JobEngine(workers=2) as engine:
        ids = {
            p: engine.submit(JobSpec(str(p), str(p.with_suffix(".out.wav")))) for p in [*good, bad]
        }
        states = {p: engine.wait(i, timeout_s=120) for p, i in ids.items()}
    assert states[bad].state is JobState.FAILED
    error = states[bad].error or ""
    assert "bad.wav" in error
    assert "\n" not in error
    assert not bad.with_suffix(".out.wav").exists()
    for path in good:
        assert states[path].state is JobState.DONE
        assert path.with_suffix(".out.wav").is_file()


def test_a_later_higher_priority_job_starts_before_queued_lower_ones(tmp_path: Path) -> None:
    started: list[str] = []
    gate = threading.Event()

    def on_event(event: JobEvent) -> None:
        if event.state is JobState.RUNNING and event.job_id not in started:
            started.append(event.job_id)
            if len(started) == 1:
                gate.wait(timeout=30)  # hold the single worker on the first job

    inputs = [_mix(tmp_path, f"{i}.wav", 1.0, seed=i) for i in range(4)]
    with JobEngine(workers=1, on_event=on_event) as engine:
        first = engine.submit(JobSpec(str(inputs[0]), str(tmp_path / "o0.wav")))
        deadline = time.monotonic() + 30
        while not started and time.monotonic() < deadline:
            time.sleep(0.01)
        low = [
            engine.submit(JobSpec(str(inputs[i]), str(tmp_path / f"o{i}.wav"), priority=0))
            for i in (1, 2)
        ]
        high = engine.submit(JobSpec(str(inputs[3]), str(tmp_path / "o3.wav"), priority=5))
        gate.set()
        engine.wait_all(timeout_s=120)
    assert started == [first, high, *low]


def test_cancel_a_running_job_stops_it_fast_and_leaves_no_output(tmp_path: Path) -> None:
    long = _mix(tmp_path, "long.wav", 90.0)
    output = tmp_path / "long.out.wav"
    running = threading.Event()

    def on_event(event: JobEvent) -> None:
        if event.stage == "render" and event.fraction > 0.4:
            running.set()

    with JobEngine(workers=1, on_event=on_event) as engine:
        job = engine.submit(JobSpec(str(long), str(output)))
        assert running.wait(timeout=60)
        asked = time.monotonic()
        assert engine.cancel(job)
        status = engine.wait(job, timeout_s=30)
        stopped_s = time.monotonic() - asked
        assert engine.cancel(job) is False  # already finished
    assert status.state is JobState.CANCELLED
    assert stopped_s < 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]


def test_cancel_a_queued_job_and_progress_events(tmp_path: Path) -> None:
    events: list[JobEvent] = []
    inputs = [_mix(tmp_path, f"{i}.wav", 3.0, seed=i) for i in range(3)]
    with JobEngine(workers=1, on_event=events.append) as engine:
        ids = [engine.submit(JobSpec(str(p), str(p.with_suffix(".out.wav")))) for p in inputs]
        assert engine.cancel(ids[2])
        engine.wait_all(timeout_s=120)
        assert engine.status(ids[2]).state is JobState.CANCELLED
        assert engine.status(ids[0]).state is JobState.DONE
    assert not inputs[2].with_suffix(".out.wav").exists()
    mine = [e for e in events if e.job_id == ids[0]]
    fractions = [e.fraction for e in mine if e.state is JobState.RUNNING]
    assert fractions == sorted(fractions)  # monotone
    assert {e.stage for e in mine} >= {"analyse", "render", "verify"}
    assert mine[-1].state is JobState.DONE
    assert mine[-1].fraction == 1.0


def test_the_same_input_and_settings_are_served_from_the_result_cache(tmp_path: Path) -> None:
    mix = _mix(tmp_path, "mix.wav", 3.0)
    with JobEngine(workers=1) as engine:
        first = engine.wait(engine.submit(JobSpec(str(mix), str(tmp_path / "a.wav"))), timeout_s=60)
        again = engine.wait(engine.submit(JobSpec(str(mix), str(tmp_path / "b.wav"))), timeout_s=60)
        louder = engine.wait(
            engine.submit(JobSpec(str(mix), str(tmp_path / "c.wav"), target="cd")), timeout_s=60
        )
    assert (first.cached, again.cached, louder.cached) == (False, True, False)
    assert _digest(tmp_path / "a.wav") == _digest(tmp_path / "b.wav")
    assert again.report is not None
    assert again.report["output_path"] == str(tmp_path / "b.wav")
    assert again.report["output"]["path"] == str(tmp_path / "b.wav")
    assert _digest(tmp_path / "c.wav") != _digest(tmp_path / "a.wav")


def test_an_output_changed_since_is_not_served_from_the_cache(tmp_path: Path) -> None:
    x, y = _mix(tmp_path, "x.wav", 3.0), _mix(tmp_path, "y.wav", 3.0, seed=5)
    shared = tmp_path / "out.wav"
    with JobEngine(workers=1) as engine:
        engine.wait(engine.submit(JobSpec(str(x), str(shared))), timeout_s=60)
        x_master = _digest(shared)
        engine.wait(engine.submit(JobSpec(str(y), str(shared))), timeout_s=60)  # overwrites it
        again = engine.wait(engine.submit(JobSpec(str(x), str(tmp_path / "x2.wav"))), timeout_s=60)
    assert again.state is JobState.DONE
    assert not again.cached  # out.wav is y's master now: x is mastered again
    assert _digest(tmp_path / "x2.wav") == x_master


def test_memory_stays_under_the_budget(tmp_path: Path) -> None:
    inputs = [_mix(tmp_path, f"{i}.wav", 20.0, seed=i) for i in range(4)]
    with JobEngine(workers=4, memory_budget_mib=200) as engine:
        ids = [engine.submit(JobSpec(str(p), str(p.with_suffix(".out.wav")))) for p in inputs]
        engine.wait_all(timeout_s=300)
        assert all(engine.status(i).state is JobState.DONE for i in ids)
        assert 0 < engine.memory.peak_bytes <= 200 * 2**20


@pytest.mark.parametrize("workers", [0, -1])
def test_bad_engine_parameters(workers: int) -> None:
    with pytest.raises(ParameterError, match="must be >= 1"):
        JobEngine(workers=workers)


def test_the_process_executor_gives_the_same_masters_and_can_cancel(tmp_path: Path) -> None:
    inputs = [_mix(tmp_path / "in", f"{i}.wav", 3.0, seed=i) for i in range(3)]
    long = _mix(tmp_path / "in", "long.wav", 90.0, seed=7)
    (tmp_path / "seq").mkdir()
    (tmp_path / "proc").mkdir()
    for path in inputs:
        master_file(path, tmp_path / "seq" / path.name)
    events: list[JobEvent] = []
    rendering = threading.Event()

    def on_event(event: JobEvent) -> None:
        events.append(event)
        if event.stage == "render" and event.fraction > 0.4:
            rendering.set()

    with JobEngine(workers=2, executor="process", on_event=on_event) as engine:
        ids = [engine.submit(JobSpec(str(p), str(tmp_path / "proc" / p.name))) for p in inputs]
        done = [engine.wait(i, timeout_s=120) for i in ids]
        slow = engine.submit(JobSpec(str(long), str(tmp_path / "proc" / "long.wav")))
        assert rendering.wait(timeout=120)
        asked = time.monotonic()
        engine.cancel(slow)
        cancelled = engine.wait(slow, timeout_s=60)
        stopped_s = time.monotonic() - asked
    assert [s.state for s in done] == [JobState.DONE] * 3
    for path in inputs:
        assert _digest(tmp_path / "proc" / path.name) == _digest(tmp_path / "seq" / path.name)
    assert {e.stage for e in events if e.job_id == ids[0]} >= {"analyse", "render", "verify"}
    assert cancelled.state is JobState.CANCELLED
    assert stopped_s < 0.5  # the flag crosses a process boundary, then one block
    assert sorted(p.name for p in (tmp_path / "proc").iterdir()) == sorted(p.name for p in inputs)


def test_an_unknown_executor_is_refused() -> None:
    with pytest.raises(ParameterError, match="executor must be"):
        JobEngine(executor="cluster")


def test_job_records_outlive_the_engine_and_a_crash_is_recorded(
    tmp_path: Path, database_url: str
) -> None:
    from tonearm.library.job_store import INTERRUPTED, JobStore
    from tonearm.library.manager import LibraryManager

    good = _mix(tmp_path, "good.wav", 2.0)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with LibraryManager(database_url) as library:
        store = JobStore(library.db)
        with JobEngine(workers=1, store=store) as engine:
            ok = engine.submit(JobSpec(str(good), str(tmp_path / "out.wav")))
            failed = engine.submit(JobSpec(str(bad), str(tmp_path / "bad.out.wav")))
            engine.wait_all(timeout_s=60)
        # a process that died mid-job left this behind
        store.add("deadbeef", {"input_path": "/x.wav"}, submitted_at=_utc_now())
        store.set_state("deadbeef", "running")
    with LibraryManager(database_url) as library:
        store = JobStore(library.db)
        JobEngine(workers=1, store=store).shutdown()  # starting an engine recovers
        done, broken, dead = store.get(ok), store.get(failed), store.get("deadbeef")
        assert done is not None
        assert broken is not None
        assert dead is not None
        assert (done.state, done.spec["input_path"]) == ("done", str(good))
        assert done.report is not None
        assert done.report["output"]["integrated_lufs"] == pytest.approx(-14.0, abs=0.5)
        assert broken.state == "failed"
        assert "bad.wav" in (broken.error or "")
        assert (dead.state, dead.error) == ("failed", INTERRUPTED)
        assert [job.id for job in store.recent()][:3] == ["deadbeef", failed, ok]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
