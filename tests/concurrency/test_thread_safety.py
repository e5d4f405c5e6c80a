"""Thread safety: shared resources, audio processing and thread-pool management under load.

Every test runs real tonearm processors from many threads at once (released together by a
barrier) and compares the results bit for bit with a sequential run of the same work: any
shared mutable state, cache race or cross-talk between threads shows as a difference. Inputs
differ per thread (offset, gain-scaled, channel-swapped variants of the Bach excerpt plus seeded
noise), so a thread that picked up another thread's data could not go unnoticed. All waits are
bounded; each test has an explicit timeout.

The shared-resource tests run the music library (``tonearm.library``) on both database backends
instead: they compare what every thread saw, and the final state, with what the operations
imply. Sections follow the concurrency test plan; the thread-pool-management tests (plan
21-25) run the job engine's worker threads (``tonearm.jobs.engine``) on short synthetic files.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import random
import re
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import mutagen
import mutagen.id3
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.concurrency.helpers import (
    AudioArray,
    Excerpt,
    assert_identical,
    blocks_of,
    detect_race_condition,
    map_concurrent,
    process_stream,
    run_concurrent,
    variants,
)
from tests.library.rows import add_tracks
from tests.mastering import synth
from tonearm.dsp.dynamics import Compressor, GainReductionStats, TruePeakLimiter
from tonearm.dsp.eq import FirConvolver, design_linear_phase_fir
from tonearm.dsp.filters import k_weighting_sos
from tonearm.dsp.spectrum import MidSideSpectrum, hann_window, spectrum_of
from tonearm.dsp.true_peak import interpolation_phase_matrix, true_peak_dbtp
from tonearm.jobs.engine import JobEngine, JobEvent, JobSpec, JobState, JobStatus
from tonearm.jobs.queue import QueueFull
from tonearm.library.db import Database, PoolSettings
from tonearm.library.manager import LibraryManager
from tonearm.library.models import Favourite, PlayCount, PlaylistEntry, Setting, Track
from tonearm.library.records import Page, TrackRecord
from tonearm.library.tags import ReplayGain, read_file_tags, write_replaygain
from tonearm.mastering.analysis import TrackAnalysis, analyze_audio, measure_file
from tonearm.mastering.chain import MasteringChain, MidSideEq, render_blocks
from tonearm.mastering.fingerprint import Fingerprint, FingerprintAccumulator, fingerprint_of
from tonearm.mastering.plan import DynamicsPlan, EqPlan, LimiterPlan, MasteringPlan, WidthPlan
from tonearm.mastering.planner import make_plan
from tonearm.mastering.render import MasterSettings, master_file
from tonearm.mastering.report import MasteringReport
from tonearm.mastering.targets import PRESETS, LoudnessTarget

THREAD_TIMEOUT_S = 60.0
BLOCK_FRAMES = 4096


def _full_plan(
    sample_rate: int, target: LoudnessTarget, *, gain_db: float, tilt_db: float
) -> MasteringPlan:
    """A plan that uses every stage of the chain: M/S EQ, width, compressor, gain, limiter."""
    freqs = (63.0, 250.0, 1000.0, 4000.0, 12000.0)
    mid = tuple(round(tilt_db * k, 3) for k in (-1.0, -0.5, 0.0, 0.5, 1.0))
    side = tuple(round(-0.5 * v - 0.5, 3) for v in mid)
    return MasteringPlan(
        sample_rate=sample_rate,
        channels=2,
        target=target,
        strength=1.0,
        eq=EqPlan(freqs_hz=freqs, mid_db=mid, side_db=side, tilt_db_per_octave=tilt_db / 2),
        dynamics=DynamicsPlan(threshold_dbfs=-30.0, ratio=1.8, max_reduction_db=4.0),
        width=WidthPlan(side_gain_db=-1.0, side_to_mid_db=-2.0),
        gain_db=gain_db,
        limiter=LimiterPlan(ceiling_dbtp=target.ceiling_dbtp),
        predicted_lufs=target.lufs,
    )


def _render(
    plan: MasteringPlan, audio: AudioArray, *, block_frames: int = BLOCK_FRAMES
) -> AudioArray:
    """The whole aligned output of a fresh chain for ``plan``."""
    chain = MasteringChain(plan)
    parts = list(render_blocks(chain, blocks_of(audio, block_frames), channels=audio.shape[0]))
    return np.concatenate(parts, axis=1)


def _read(path: Path) -> tuple[npt.NDArray[np.float64], int, str]:
    """Samples (float64 holds PCM and float32 exactly), rate and subtype of a written file."""
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    return data, int(rate), sf.info(path).subtype


# ---------------------------------------------------------------------------------------------
# Audio processing thread safety (plan tests 11-20)
# ---------------------------------------------------------------------------------------------


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_audio_processing(tmp_path: Path, bach_excerpt: Excerpt) -> None:
    """master_file on 4 distinct files from 4 threads = the same 4 masters made one by one."""
    rate = bach_excerpt.sample_rate
    targets = [PRESETS[name] for name in ("spotify", "apple", "amazon", "deezer")]
    inputs = []
    for i, audio in enumerate(variants(bach_excerpt, len(targets), seconds=5.0, seed=11)):
        path = tmp_path / f"mix_{i}.wav"
        sf.write(path, audio.T, rate, subtype="PCM_24")  # soundfile wants (frames, channels)
        inputs.append(path)

    def master(job: tuple[int, str]) -> MasteringReport:
        i, tag = job
        settings = MasterSettings(target=targets[i], block_frames=16384)
        return master_file(inputs[i], tmp_path / f"{tag}_{i}.wav", settings=settings)

    # Concurrent first, so the engine's lazily filled caches are filled under contention.
    parallel = map_concurrent(
        master, [(i, "parallel") for i in range(4)], timeout_s=THREAD_TIMEOUT_S
    )
    sequential = [master((i, "sequential")) for i in range(4)]

    for i, (par, seq) in enumerate(zip(parallel, sequential, strict=True)):
        par_data, par_rate, par_subtype = _read(Path(par.output_path))
        seq_data, seq_rate, seq_subtype = _read(Path(seq.output_path))
        assert (par_rate, par_subtype) == (seq_rate, seq_subtype) == (rate, "PCM_24")
        assert par_data.shape == (5 * rate, 2)
        assert np.array_equal(par_data, seq_data), f"file {i}: concurrent master differs"
        assert par.plan == seq.plan
        assert par.input == seq.input
        assert par.output == seq.output
        assert (par.limiter, par.compressor, par.render_passes) == (
            seq.limiter,
            seq.compressor,
            seq.render_passes,
        )
        # The report describes the file that was written, and the file meets the target.
        assert measure_file(par.output_path) == par.output
        target = targets[i]
        assert abs(par.output.integrated_lufs - target.lufs) <= 0.5
        assert par.output.true_peak_dbtp <= target.ceiling_dbtp
    assert len({report.output.integrated_lufs for report in parallel}) > 1  # distinct jobs


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_processor_instance_isolation(bach_excerpt: Excerpt) -> None:
    """Two chains in lockstep on two threads = each chain alone; reset() repeats the output."""
    rate = bach_excerpt.sample_rate
    signal_a, signal_b = variants(bach_excerpt, 2, seconds=4.0, seed=12)
    plan_a = make_plan(analyze_audio(signal_a, sample_rate=rate), PRESETS["spotify"], strength=1.0)
    plan_b = _full_plan(rate, PRESETS["ebu"], gain_db=-6.0, tilt_db=2.0)
    assert plan_a != plan_b

    def alone(plan: MasteringPlan, audio: AudioArray) -> AudioArray:
        chain = MasteringChain(plan)
        return np.concatenate([chain.process(b) for b in blocks_of(audio, BLOCK_FRAMES)], axis=1)

    expected = [alone(plan_a, signal_a), alone(plan_b, signal_b)]
    chains = [MasteringChain(plan_a), MasteringChain(plan_b)]
    signals = [signal_a, signal_b]
    lockstep = threading.Barrier(2, timeout=30)

    def drive(index: int) -> AudioArray:
        out = []
        for block in blocks_of(signals[index], BLOCK_FRAMES):
            out.append(chains[index].process(block))
            lockstep.wait()  # the other chain processes its block before either goes on
        return np.concatenate(out, axis=1)

    first = map_concurrent(drive, [0, 1], timeout_s=THREAD_TIMEOUT_S)
    assert not np.array_equal(first[0], first[1])
    for got, want in zip(first, expected, strict=True):
        assert_identical(got, want)

    for chain in chains:
        chain.reset()
    again = map_concurrent(drive, [0, 1], timeout_s=THREAD_TIMEOUT_S)
    for got, want in zip(again, first, strict=True):
        assert_identical(got, want)


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_eq_processing(
    bach_excerpt: Excerpt, thread_pool: ThreadPoolExecutor, barrier: threading.Barrier
) -> None:
    """10 threads design and run their own FIR and M/S EQ: same samples as one at a time."""
    rate = bach_excerpt.sample_rate
    signals = variants(bach_excerpt, barrier.parties, seconds=2.0, seed=13)
    freqs = (50.0, 200.0, 1000.0, 4000.0, 12000.0)

    def equalise(i: int) -> tuple[AudioArray, AudioArray]:
        gains = (0.5 * i - 2.0, -0.3 * i, 1.0, 0.2 * i, 0.3 * i - 1.5)
        fir = design_linear_phase_fir(freqs, gains, sample_rate=rate)
        side = design_linear_phase_fir(freqs, gains[::-1], sample_rate=rate)
        convolved = process_stream(FirConvolver(np.stack((fir, side))), signals[i])
        plan = _full_plan(rate, PRESETS["spotify"], gain_db=0.0, tilt_db=0.25 * i - 1.0)
        mid_side = process_stream(MidSideEq(plan), signals[i])
        return convolved, mid_side

    def at_barrier(i: int) -> tuple[AudioArray, AudioArray]:
        barrier.wait()
        return equalise(i)

    futures = [thread_pool.submit(at_barrier, i) for i in range(barrier.parties)]
    parallel = [future.result(timeout=THREAD_TIMEOUT_S) for future in futures]
    sequential = [equalise(i) for i in range(barrier.parties)]
    assert_identical(parallel, sequential)
    assert not np.array_equal(parallel[0][0], parallel[1][0])


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_dynamics_processing(bach_excerpt: Excerpt) -> None:
    """Compressor and limiter per thread = sequential; each limited output is under its ceiling."""
    rate = bach_excerpt.sample_rate
    n_threads = 8
    signals = variants(bach_excerpt, n_threads, seconds=3.0, seed=14)
    ceilings = [-1.0 - 0.25 * i for i in range(n_threads)]

    def dynamics(i: int) -> tuple[AudioArray, GainReductionStats, AudioArray, GainReductionStats]:
        compressor = Compressor(
            sample_rate=rate,
            channels=2,
            threshold_dbfs=-30.0 - 1.75 * i,
            ratio=2.0 + 0.25 * i,
            max_reduction_db=6.0,
        )
        compressed = process_stream(compressor, signals[i])
        limiter = TruePeakLimiter(
            sample_rate=rate, channels=2, ceiling_dbtp=ceilings[i], input_gain_db=18.0 + 2.0 * i
        )
        limited = process_stream(limiter, compressed)
        return compressed, compressor.stats, limited, limiter.stats

    parallel = map_concurrent(dynamics, range(n_threads), timeout_s=THREAD_TIMEOUT_S)
    sequential = [dynamics(i) for i in range(n_threads)]
    assert_identical(parallel, sequential)
    for i, (_, compressor_stats, limited, limiter_stats) in enumerate(parallel):
        assert compressor_stats.max_db > 0.0, f"thread {i}: the compressor never engaged"
        assert limiter_stats.max_db > 0.0, f"thread {i}: the limiter never engaged"
        assert true_peak_dbtp(limited) <= ceilings[i], f"thread {i}: over the ceiling"


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_fingerprint_extraction(
    bach_excerpt: Excerpt, thread_pool: ThreadPoolExecutor, barrier: threading.Barrier
) -> None:
    """fingerprint_of and a block-fed FingerprintAccumulator per thread = sequential."""
    rate = bach_excerpt.sample_rate
    signals = variants(bach_excerpt, barrier.parties, seconds=4.0, seed=15)

    def fingerprints(i: int) -> tuple[Fingerprint, Fingerprint]:
        lufs = -30.0 + i  # stored as given: a per-thread value makes cross-talk visible
        whole = fingerprint_of(signals[i], sample_rate=rate, integrated_lufs=lufs)
        accumulator = FingerprintAccumulator(sample_rate=rate, channels=2)
        for block in blocks_of(signals[i], 3000 + 500 * i):
            accumulator.push(block)
        return whole, accumulator.result(integrated_lufs=lufs)

    def at_barrier(i: int) -> tuple[Fingerprint, Fingerprint]:
        barrier.wait()
        return fingerprints(i)

    futures = [thread_pool.submit(at_barrier, i) for i in range(barrier.parties)]
    parallel = [future.result(timeout=THREAD_TIMEOUT_S) for future in futures]
    sequential = [fingerprints(i) for i in range(barrier.parties)]
    for got, want in zip(parallel, sequential, strict=True):
        for got_fp, want_fp in zip(got, want, strict=True):
            assert_identical(got_fp.as_vector(), want_fp.as_vector())
            assert got_fp == want_fp
    assert len({fp.crest_db for fp, _ in parallel}) == barrier.parties


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_spectrum_analysis(
    bach_excerpt: Excerpt, thread_pool: ThreadPoolExecutor, barrier: threading.Barrier
) -> None:
    """spectrum_of per thread: identical frequencies, mid/side powers and frame counts."""
    rate = bach_excerpt.sample_rate
    signals = variants(bach_excerpt, barrier.parties, seconds=4.0, seed=16)

    def at_barrier(i: int) -> MidSideSpectrum:
        barrier.wait()
        return spectrum_of(signals[i], sample_rate=rate)

    futures = [thread_pool.submit(at_barrier, i) for i in range(barrier.parties)]
    parallel = [future.result(timeout=THREAD_TIMEOUT_S) for future in futures]
    sequential = [spectrum_of(signal, sample_rate=rate) for signal in signals]
    assert_identical(parallel, sequential)
    assert all(spectrum.frames_used > 0 for spectrum in parallel)
    assert not np.array_equal(parallel[0].mid_power, parallel[1].mid_power)


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_content_analysis(bach_excerpt: Excerpt) -> None:
    """analyze_audio per thread: every field (loudness, true peak, levels, spectrum, fingerprint,
    chunk levels) identical to sequential."""
    rate = bach_excerpt.sample_rate
    n_threads = 6
    signals = variants(bach_excerpt, n_threads, seconds=4.0, seed=17)

    def analyse(signal: AudioArray) -> TrackAnalysis:
        return analyze_audio(signal, sample_rate=rate)

    parallel = map_concurrent(analyse, signals, timeout_s=THREAD_TIMEOUT_S)
    sequential = [analyse(signal) for signal in signals]
    for got, want in zip(parallel, sequential, strict=True):
        assert got.loudness.integrated_lufs == want.loudness.integrated_lufs
        assert got.loudness.loudness_range_lu == want.loudness.loudness_range_lu
        assert got.true_peak_dbtp == want.true_peak_dbtp
        assert got.fingerprint is not None
        assert want.fingerprint is not None
        assert_identical(got.fingerprint.as_vector(), want.fingerprint.as_vector())
        assert_identical(got.spectrum, want.spectrum)
        assert_identical(got.chunks, want.chunks)
        assert_identical(got, want)  # and every other field
    assert len({analysis.loudness.integrated_lufs for analysis in parallel}) == n_threads


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_target_generation(bach_excerpt: Excerpt) -> None:
    """make_plan from shared analyses for every preset and two strengths: plans = sequential."""
    rate = bach_excerpt.sample_rate
    analyses = [
        analyze_audio(signal, sample_rate=rate)
        for signal in variants(bach_excerpt, 2, seconds=4.0, seed=18)
    ]
    jobs = [
        (a, target, strength)
        for a in range(len(analyses))
        for target in PRESETS.values()
        for strength in (1.0, 0.5)
    ]
    n_threads = 10
    shares = [jobs[t::n_threads] for t in range(n_threads)]

    def plan_all(share: list[tuple[int, LoudnessTarget, float]]) -> list[MasteringPlan]:
        return [make_plan(analyses[a], target, strength=strength) for a, target, strength in share]

    parallel = map_concurrent(plan_all, shares, timeout_s=THREAD_TIMEOUT_S)
    sequential = [plan_all(share) for share in shares]
    assert parallel == sequential
    texts = [plan.to_json() for plans in parallel for plan in plans]
    assert texts == [plan.to_json() for plans in sequential for plan in plans]
    assert len(set(texts)) == len(jobs)  # every (analysis, target, strength) planned apart


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_processing_state_isolation(bach_excerpt: Excerpt) -> None:
    """Shared analysis and plan are not mutated by 8 threads; cached tables are read-only."""
    rate = bach_excerpt.sample_rate
    n_threads = 8
    signals = variants(bach_excerpt, n_threads, seconds=3.0, seed=19)
    analysis = analyze_audio(signals[0], sample_rate=rate)
    plan = make_plan(analysis, PRESETS["spotify"])
    analysis_before = copy.deepcopy(analysis)
    analysis_text = json.dumps(analysis.to_dict(), sort_keys=True)
    plan_text = plan.to_json()
    tables: dict[str, Any] = {
        "k_weighting_sos": lambda: k_weighting_sos(rate),
        "interpolation_phase_matrix": interpolation_phase_matrix,
        "hann_window": lambda: hann_window(8192),
    }
    tables_before = {name: np.array(get(), copy=True) for name, get in tables.items()}

    def use_shared(i: int) -> tuple[MasteringPlan, AudioArray, dict[str, int]]:
        replanned = make_plan(analysis, PRESETS["apple" if i % 2 else "spotify"])
        rendered = _render(plan, signals[i])
        return replanned, rendered, {name: id(get()) for name, get in tables.items()}

    parallel = map_concurrent(use_shared, range(n_threads), timeout_s=THREAD_TIMEOUT_S)
    sequential = [use_shared(i) for i in range(n_threads)]

    # The same shared plan on different signals: each thread's output is its own.
    for (par_plan, par_audio, _), (seq_plan, seq_audio, _) in zip(
        parallel, sequential, strict=True
    ):
        assert par_plan == seq_plan
        assert_identical(par_audio, seq_audio)
    # Nothing shared was written to.
    assert plan.to_json() == plan_text
    assert json.dumps(analysis.to_dict(), sort_keys=True) == analysis_text
    assert_identical(analysis, analysis_before)
    with pytest.raises(FrozenInstanceError):
        plan.gain_db = 0.0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        analysis.frames = 0  # type: ignore[misc]
    # Module-level caches: one object for every thread, read-only, unchanged.
    for name, get in tables.items():
        assert {ids[name] for _, _, ids in parallel} == {id(get())}, f"{name}: rebuilt per thread"
        table = get()
        assert not table.flags.writeable, f"{name} is writeable"
        with pytest.raises(ValueError, match="read-only"):
            table.flat[0] = 0.0
        assert_identical(np.array(table, copy=True), tables_before[name])


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_memory_allocation(bach_excerpt: Excerpt) -> None:
    """8 threads stream 8 signals through their chains: traced peak memory stays within a
    per-block budget, and every output (hashed block by block) equals the sequential one."""
    rate = bach_excerpt.sample_rate
    n_threads = 8
    seconds = 8.0
    block_frames = 8192
    signals = variants(bach_excerpt, n_threads, seconds=seconds, seed=20)
    plans = [
        _full_plan(rate, PRESETS["spotify"], gain_db=6.0 + 0.5 * i, tilt_db=0.5 * i - 2.0)
        for i in range(n_threads)
    ]

    def stream(i: int) -> tuple[str, int]:
        chain = MasteringChain(plans[i])
        digest = hashlib.sha256()
        frames = 0
        for out in render_blocks(chain, blocks_of(signals[i], block_frames), channels=2):
            digest.update(np.ascontiguousarray(out).tobytes())
            frames += out.shape[1]
        return digest.hexdigest(), frames

    sequential = [stream(i) for i in range(n_threads)]  # also fills every lazy cache first

    # Budget: 20 blocks of stereo float64 (8192 x 2 x 8 B = 131 kB) per thread, 21 MB in all.
    # One stream alone peaks at about 12 such blocks (chain set-up, the M/S EQ's overlap-save
    # FFT buffers of block + 4096 taps, 4x-oversampled true-peak detection, envelopes), so 8
    # threads at their worst moment together need about 13 MB. A render that kept its whole
    # output, or a copy of its input, would add 8 s x 2 ch x 4 B = 2.8 MB (21 blocks) per
    # thread and break the budget.
    block_bytes = block_frames * 2 * 8
    budget = n_threads * 20 * block_bytes
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        parallel = map_concurrent(stream, range(n_threads), timeout_s=THREAD_TIMEOUT_S)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert parallel == sequential
    assert all(frames == signals[0].shape[1] for _, frames in parallel)
    assert len({digest for digest, _ in parallel}) == n_threads
    assert peak <= budget, f"peak {peak / 1e6:.1f} MB over the {budget / 1e6:.1f} MB budget"


# ---------------------------------------------------------------------------------------------
# Shared resource access: the music library (plan tests 1-10)
# ---------------------------------------------------------------------------------------------
#
# These run against the real library on both backends of ``database_url`` (a SQLite file in WAL
# mode and a throwaway PostgreSQL server): threads share one LibraryManager, its connection pool
# and its QueryCache, the way the CLI, the job engine and the server do. Threads record what
# they saw instead of asserting inside the thread; the test asserts once they are all joined.

# mutagen's functions are unannotated: call them through an Any-typed name (mypy --strict)
_open_mutagen: Callable[..., Any] = mutagen.File

LIBRARY_TIMEOUT_S = 60.0
"""Bound on every group of library threads (each group normally finishes in a few seconds)."""


def _track(library: LibraryManager, track_id: int) -> TrackRecord:
    record = library.tracks.get(track_id)
    assert record is not None, f"track {track_id} vanished"
    return record


def _play_counts(db: Database) -> dict[int, int]:
    """``track id -> play count`` straight from the database (no cache)."""
    with db.read() as session:
        rows = session.execute(select(PlayCount.track_id, PlayCount.count))
        return {int(track_id): int(count) for track_id, count in rows}


def _favourite_ids(db: Database) -> set[int]:
    with db.read() as session:
        return {int(track_id) for track_id in session.scalars(select(Favourite.track_id))}


def _playlist_rows(db: Database, playlist_id: int) -> list[tuple[int, int]]:
    """``(position, track id)`` of a playlist's entries, by position, straight from the database."""
    with db.read() as session:
        rows = session.execute(
            select(PlaylistEntry.position, PlaylistEntry.track_id)
            .where(PlaylistEntry.playlist_id == playlist_id)
            .order_by(PlaylistEntry.position)
        )
        return [(int(position), int(track_id)) for position, track_id in rows]


def _all_tracks_page(library: LibraryManager) -> dict[int, TrackRecord]:
    """Every track as ``tracks.list`` shows it (one page, by id)."""
    page = library.tracks.list(limit=500, order="id")
    assert page.total == len(page.items)
    return {record.id: record for record in page.items}


class _Countdown:
    """``done`` is set once ``finished()`` was called ``n`` times (call it in a ``finally``)."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()
        self.done = threading.Event()

    def finished(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self.done.set()


def _run_roles(roles: Sequence[Callable[[], Any]], *, timeout_s: float = LIBRARY_TIMEOUT_S) -> Any:
    """Run different callables in one thread each, all released together; their results."""
    return map_concurrent(lambda role: role(), roles, timeout_s=timeout_s)


def _until(done: threading.Event, *, minimum: int, count: int, deadline: float) -> bool:
    """Loop condition of a background thread: go on until ``done`` and ``minimum`` iterations,
    never past ``deadline`` (so a failed partner cannot leave it spinning)."""
    return (not done.is_set() or count < minimum) and time.monotonic() < deadline


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_cache_access(library: LibraryManager) -> None:
    """16 threads read the same tracks, then the same pages, through a cold cache: every thread
    gets the very same record objects (one load per key: single flight), equal to a sequential
    read, and every call that did not miss is a cache hit."""
    ids = add_tracks(library.db, 60)
    hot = ids[:12]
    expected = {t: _track(library, t) for t in hot}
    expected_pages = [library.tracks.list(offset=o, limit=20, order="id") for o in (0, 20, 40)]
    assert [r.id for page in expected_pages for r in page.items] == ids
    library.cache.clear()
    n_threads = 16

    def get_twice(seed: int) -> dict[int, list[TrackRecord]]:
        rng = random.Random(seed)
        order = hot * 2
        rng.shuffle(order)
        got: dict[int, list[TrackRecord]] = {}
        for track_id in order:
            got.setdefault(track_id, []).append(_track(library, track_id))
        return got

    before = library.cache.stats
    results = map_concurrent(get_twice, range(n_threads), timeout_s=LIBRARY_TIMEOUT_S)
    stats = library.cache.stats

    for track_id, want in expected.items():
        seen = [record for got in results for record in got[track_id]]
        assert len(seen) == 2 * n_threads
        assert all(record == want for record in seen), f"track {track_id}: a wrong record"
        assert len({id(record) for record in seen}) == 1, f"track {track_id}: loaded twice"
    calls = n_threads * 2 * len(hot)
    hits, misses = stats.hits - before.hits, stats.misses - before.misses
    assert hits + misses == calls
    assert misses <= n_threads * len(hot)  # a thread misses a key once at most: then it is held
    assert hits >= calls // 2
    assert stats.uncached_loads == before.uncached_loads  # no invalidation raced any load

    def pages(seed: int) -> list[Page[TrackRecord]]:
        offsets = [0, 20, 40] * 2
        random.Random(seed).shuffle(offsets)
        return [library.tracks.list(offset=o, limit=20, order="id") for o in offsets]

    before = library.cache.stats
    seen_pages = map_concurrent(pages, range(n_threads), timeout_s=LIBRARY_TIMEOUT_S)
    for k, offset in enumerate((0, 20, 40)):
        got = [page for thread in seen_pages for page in thread if page.offset == offset]
        assert len(got) == 2 * n_threads
        assert all(page == expected_pages[k] for page in got)
        assert len({id(page) for page in got}) == 1, f"page at {offset} loaded twice"
    assert library.cache.stats.hits - before.hits >= n_threads * 3  # every second call at least
    # Warm cache, many rounds: every round gives every thread the same answer.
    assert not detect_race_condition(
        lambda: tuple(_track(library, t) for t in hot),
        n_iterations=10,
        n_threads=8,
        timeout_s=LIBRARY_TIMEOUT_S,
    )


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_cache_writes(database_url: str) -> None:
    """Threads fill a 32-entry cache at once with distinct keys (each thread its own tracks and
    raw keys) and the same keys (shared tracks, shared raw keys): the bound holds at every
    moment, every value returned is the right one, and one cold key is loaded once for 12
    threads asking at the same instant."""
    capacity = 32
    n_threads = 12
    own_per_thread = 15
    with LibraryManager(database_url, cache_entries=capacity) as library:
        ids = add_tracks(library.db, 20 + own_per_thread * n_threads)
        expected = {t: _track(library, t) for t in ids}
        library.cache.clear()

        # The same cold keys, all threads at the same instant: one load per key, one object.
        hot = ids[:5]
        first = run_concurrent(
            lambda: tuple(_track(library, t) for t in hot), n_threads, timeout_s=LIBRARY_TIMEOUT_S
        )
        for i, track_id in enumerate(hot):
            assert len({id(records[i]) for records in first}) == 1
            assert first[0][i] == expected[track_id]

        # Distinct and shared keys from every thread, far more than the cache holds.
        shared = ids[:20]
        own = [
            ids[20 + own_per_thread * i : 20 + own_per_thread * (i + 1)] for i in range(n_threads)
        ]
        raw_keys = 10
        before = library.cache.stats
        writers = _Countdown(n_threads)
        over: list[int] = []
        deadline = time.monotonic() + LIBRARY_TIMEOUT_S

        def monitor() -> int:
            samples = 0
            while _until(writers.done, minimum=1, count=samples, deadline=deadline):
                entries = library.cache.stats.entries
                if entries > capacity:
                    over.append(entries)
                samples += 1
                time.sleep(0.0005)
            return samples

        def raw_value(i: int, j: int) -> tuple[str, int, int]:
            return ("own", i, j) if j % 2 else ("shared", -1, j)

        def writer(i: int) -> list[str]:
            wrong: list[str] = []
            try:
                rng = random.Random(i)
                keys = own[i] + shared * 2
                for _ in range(2):
                    rng.shuffle(keys)
                    for track_id in keys:
                        if _track(library, track_id) != expected[track_id]:
                            wrong.append(f"track {track_id}")
                    for j in range(raw_keys):
                        key = ("raw", i, j) if j % 2 else ("raw", -1, j)
                        value = library.cache.get_or_load(
                            key, (f"raw:{j}",), functools.partial(raw_value, i, j)
                        )
                        if value != raw_value(i, j):
                            wrong.append(f"raw key {key}: {value}")
            finally:
                writers.finished()
            return wrong

        roles: list[Callable[[], Any]] = [monitor]
        roles += [functools.partial(writer, i) for i in range(n_threads)]
        samples, *wrong = _run_roles(roles)

        assert [w for thread_wrong in wrong for w in thread_wrong] == []
        assert samples > 0
        assert over == [], f"the cache held {max(over)} entries, its bound is {capacity}"
        stats = library.cache.stats
        assert stats.entries <= capacity
        assert stats.hits > before.hits  # the shared keys were hit while they were held
        # Every key asked for was stored at some point (nothing was invalidated) and at most
        # ``capacity`` are left, so all but those (and the ``hot`` ones already held) were evicted.
        distinct = len(ids) + n_threads * (raw_keys // 2) + raw_keys // 2
        assert stats.evictions - before.evictions >= distinct - capacity - len(hot)
        assert stats.invalidations == before.invalidations


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_cache_invalidation_race_condition(library: LibraryManager) -> None:
    """Readers hammer ``tracks.get`` and ``tracks.list`` while one writer per track updates its
    title with increasing versions: a read never returns a title older than the last update that
    had returned before the read began, nor one newer than the last update begun."""
    ids = add_tracks(library.db, 20)
    targets = ids[:3]
    updates = 40
    n_readers = 6
    lock = threading.Lock()
    started = dict.fromkeys(targets, 0)  # version of the last update() called
    committed = dict.fromkeys(targets, 0)  # version of the last update() that returned
    violations: list[str] = []
    writers = _Countdown(len(targets))
    deadline = time.monotonic() + LIBRARY_TIMEOUT_S

    def title(track_id: int, version: int) -> str:
        return f"T{track_id} v{version:06d}"

    def version_of(text: str | None) -> int:
        match = re.fullmatch(r"T\d+ v(\d{6})", text or "")
        return int(match.group(1)) if match else 0  # the original titles are version 0

    def writer(track_id: int) -> None:
        try:
            for version in range(1, updates + 1):
                with lock:
                    started[track_id] = version
                record = library.tracks.update(track_id, title=title(track_id, version))
                if record.title != title(track_id, version):  # its own read, after its write
                    violations.append(f"update v{version} returned {record.title!r}")
                with lock:
                    committed[track_id] = version
        finally:
            writers.finished()

    def reader(seed: int) -> int:
        rng = random.Random(seed)
        reads = 0
        while _until(writers.done, minimum=20, count=reads, deadline=deadline):
            track_id = rng.choice(targets)
            with lock:
                floor = committed[track_id]
            if rng.random() < 0.75:
                how, seen = "get", version_of(_track(library, track_id).title)
            else:
                page = library.tracks.list(limit=50, order="id")
                (record,) = [r for r in page.items if r.id == track_id]
                how, seen = "list", version_of(record.title)
            with lock:
                ceiling = started[track_id]
            if not floor <= seen <= ceiling:
                violations.append(f"{how} of {track_id}: v{seen} outside [v{floor}, v{ceiling}]")
            reads += 1
        return reads

    roles: list[Callable[[], Any]] = [functools.partial(writer, t) for t in targets]
    roles += [functools.partial(reader, seed) for seed in range(n_readers)]
    results = _run_roles(roles)

    assert violations == []
    reads = results[len(targets) :]
    assert all(n >= 20 for n in reads)
    assert committed == dict.fromkeys(targets, updates)
    for track_id in targets:
        assert _track(library, track_id).title == title(track_id, updates)
    page = _all_tracks_page(library)
    assert [page[t].title for t in targets] == [title(t, updates) for t in targets]
    print(f"\n{sum(reads)} checked reads; cache {library.cache.stats}")


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_database_connection_pool(database_url: str) -> None:
    """12 threads on a pool of 2 + 2 overflow: all their queries complete, the pool is full at
    one moment but never hands out more than 4 connections, and all come back at the end."""
    pool = PoolSettings(pool_size=2, max_overflow=2, pool_timeout_s=30)
    limit = pool.pool_size + pool.max_overflow
    n_threads = 12
    rounds = 5
    with LibraryManager(database_url, pool=pool) as library:
        ids = add_tracks(library.db, 40)
        lock = threading.Lock()
        checked_out = 0
        peak = 0
        checkouts = 0

        def on_checkout(*_args: Any) -> None:
            nonlocal checked_out, peak, checkouts
            with lock:
                checked_out += 1
                checkouts += 1
                peak = max(peak, checked_out)

        def on_checkin(*_args: Any) -> None:
            nonlocal checked_out
            with lock:
                checked_out -= 1

        event.listen(library.db.engine, "checkout", on_checkout)
        event.listen(library.db.engine, "checkin", on_checkin)
        # The first 4 threads to get a connection hold it until all 4 are out: the pool is then
        # provably full, and the others wait for a connection (pool_timeout_s) meanwhile.
        full = threading.Event()
        all_out = threading.Barrier(limit, action=full.set, timeout=30)

        def worker(i: int) -> list[int]:
            with library.db.read() as session:
                total = session.execute(select(func.count(Track.id))).scalar_one()
                if not full.is_set():
                    all_out.wait()
            seen = [int(total)]
            for j in range(rounds):
                track_id = ids[(i * rounds + j) % len(ids)]
                seen.append(_track(library, track_id).id)
                library.tracks.record_play(track_id)
                with library.db.read() as session:
                    seen.append(int(session.scalar(select(func.count(PlaylistEntry.id))) or 0))
            return seen

        results = map_concurrent(worker, range(n_threads), timeout_s=LIBRARY_TIMEOUT_S)

        for i, seen in enumerate(results):
            assert seen[0] == len(ids)
            assert seen[1::2] == [ids[(i * rounds + j) % len(ids)] for j in range(rounds)]
        assert full.is_set()
        assert peak == limit, f"{peak} connections out at once; the pool allows {limit}"
        assert checkouts >= n_threads * (1 + 2 * rounds)
        assert checked_out == 0, f"{checked_out} connections never came back"
        assert library.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        counts = _play_counts(library.db)
        assert sum(counts.values()) == n_threads * rounds
        assert counts == dict(
            Counter(
                ids[(i * rounds + j) % len(ids)] for i in range(n_threads) for j in range(rounds)
            )
        )


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_database_writes(library: LibraryManager) -> None:
    """20 threads x 100 ``record_play`` on one track, plus 5 on each thread's own track between
    them: nothing is lost, and every call got its own count (1..2000, each exactly once)."""
    ids = add_tracks(library.db, 21)
    shared, own = ids[0], ids[1:]
    n_threads, plays, own_plays = 20, 100, 5

    def player(i: int) -> tuple[list[int], list[int]]:
        counts, mine = [], []
        for k in range(plays):
            counts.append(library.tracks.record_play(shared))
            if k % (plays // own_plays) == 0:
                mine.append(library.tracks.record_play(own[i]))
        return counts, mine

    results = map_concurrent(player, range(n_threads), timeout_s=LIBRARY_TIMEOUT_S)

    total = n_threads * plays
    returned = sorted(count for counts, _ in results for count in counts)
    assert returned == list(range(1, total + 1)), "two plays got the same count: one was lost"
    for counts, mine in results:
        assert counts == sorted(counts)  # a thread's own plays are in order
        assert mine == list(range(1, own_plays + 1))
    assert _track(library, shared).play_count == total
    assert [_track(library, t).play_count for t in own] == [own_plays] * n_threads
    assert _play_counts(library.db) == {shared: total} | dict.fromkeys(own, own_plays)


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_database_transactions(library: LibraryManager) -> None:
    """A writer changes four rows per transaction (two settings that sum to 100, and a track
    moved from one playlist to the other, its side given by the parity of the first setting)
    while readers look: a read session (several statements in one ``db.read()``) and
    ``playlists.list()`` only ever see whole transactions. Then a transaction that raises,
    and one that breaks a constraint, leave nothing behind, and nobody saw their changes."""
    ids = add_tracks(library.db, 5)
    base_one, base_two, mover = ids[:2], ids[2:4], ids[4]
    one = library.playlists.create("one", [*base_one, mover]).id
    two = library.playlists.create("two", base_two).id
    library.settings.set("balance.a", 0)  # even: the mover is in "one"
    library.settings.set("balance.b", 100)
    n_session_readers, n_list_readers, reads_each = 4, 2, 120
    readers = _Countdown(n_session_readers + n_list_readers)
    deadline = time.monotonic() + LIBRARY_TIMEOUT_S
    torn: list[str] = []

    def set_balance(session: Session, a: int) -> None:
        for key, value in (("balance.a", a), ("balance.b", 100 - a)):
            session.execute(
                update(Setting).where(Setting.key == key).values(value=json.dumps(value))
            )

    def writer() -> int:
        transactions = 0
        while _until(readers.done, minimum=10, count=transactions, deadline=deadline):
            transactions += 1
            a = transactions % 100  # odd: the mover goes to "two"
            source, target = (one, two) if a % 2 else (two, one)
            with library.db.write() as session:
                set_balance(session, a)
                session.execute(
                    delete(PlaylistEntry).where(
                        PlaylistEntry.playlist_id == source, PlaylistEntry.track_id == mover
                    )
                )
                session.add(PlaylistEntry(playlist_id=target, position=2, track_id=mover))
            library.cache.invalidate(
                "playlists", f"playlist:{one}", f"playlist:{two}", "setting:balance.a"
            )
        return transactions

    def session_reader() -> int:
        try:
            for _ in range(reads_each):
                with library.db.read() as session:  # one statement at a time, as code does
                    a = json.loads(
                        session.scalar(select(Setting.value).where(Setting.key == "balance.a"))
                    )
                    entries = {
                        playlist: list(
                            session.scalars(
                                select(PlaylistEntry.track_id)
                                .where(PlaylistEntry.playlist_id == playlist)
                                .order_by(PlaylistEntry.position)
                            )
                        )
                        for playlist in (one, two)
                    }
                    b = json.loads(
                        session.scalar(select(Setting.value).where(Setting.key == "balance.b"))
                    )
                where = two if a % 2 else one
                want = {one: [*base_one], two: [*base_two]}
                want[where].append(mover)
                if a + b != 100 or entries != want:
                    torn.append(f"db.read(): a={a} b={b} entries={entries}")
        finally:
            readers.finished()
        return reads_each

    def list_reader() -> int:
        try:
            for _ in range(reads_each):
                lists = {p.id: p.track_ids for p in library.playlists.list()}
                holding = [p for p in (one, two) if mover in lists[p]]
                if len(holding) != 1 or lists[one][:2] != tuple(base_one):
                    torn.append(f"playlists.list(): {lists}")
        finally:
            readers.finished()
        return reads_each

    roles: list[Callable[[], int]] = [writer]
    roles += [session_reader] * n_session_readers + [list_reader] * n_list_readers
    transactions, *reads = _run_roles(roles)

    assert transactions >= 10
    assert sum(reads) == (n_session_readers + n_list_readers) * reads_each
    assert torn == [], f"{len(torn)} reads saw half a transaction, e.g. {torn[:3]}"

    # A transaction that raises is rolled back entirely; readers never saw its changes.
    def snapshot() -> tuple[object, ...]:
        with library.db.read() as session:
            settings = sorted(session.execute(select(Setting.key, Setting.value)).tuples())
        return (
            settings,
            _playlist_rows(library.db, one),
            _playlist_rows(library.db, two),
            _play_counts(library.db),
        )

    before = snapshot()
    during: list[tuple[object, ...]] = []

    def change_then_raise() -> None:
        with library.db.write() as session:
            set_balance(session, 37)  # breaks a + b == 100 until the next statement
            session.execute(update(Setting).where(Setting.key == "balance.b").values(value="0"))
            session.execute(delete(PlaylistEntry).where(PlaylistEntry.playlist_id == one))
            session.add(PlaylistEntry(playlist_id=two, position=9, track_id=ids[0]))
            session.add(PlayCount(track_id=ids[1], count=5))
            session.flush()
            look = threading.Thread(target=lambda: during.append(snapshot()), daemon=True)
            look.start()
            look.join(timeout=30)
            assert not look.is_alive()
            raise RuntimeError("changed my mind")

    def change_then_break_a_constraint() -> None:
        with library.db.write() as session:
            set_balance(session, 11)
            session.add(PlaylistEntry(playlist_id=one, position=0, track_id=ids[3]))  # taken
            session.flush()

    with pytest.raises(RuntimeError, match="changed my mind"):
        change_then_raise()
    assert during == [before], "a reader saw uncommitted changes"
    assert snapshot() == before
    # So is one whose later statement breaks a constraint (the earlier ones are undone too).
    with pytest.raises(IntegrityError):
        change_then_break_a_constraint()
    assert snapshot() == before
    assert library.tracks.record_play(ids[1]) == 1  # the database still takes writes


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_library_manager_concurrent_access(library: LibraryManager) -> None:
    """10 threads share one LibraryManager for a mix of reads (list, search, get, favourites,
    playlists, settings) and writes (record_play, set_favourite on the same tracks from every
    thread, playlist appends, settings): no errors, and the final state, through every read path
    and in the database, is exactly what the operations imply."""
    ids = add_tracks(library.db, 30)
    fav_on, fav_off, played = ids[:5], ids[5:10], ids[10:30]
    for track_id in fav_off:
        library.tracks.set_favourite(track_id, True)
    mix = library.playlists.create("mix").id
    preludes = library.tracks.search("prelude", limit=100).total
    assert len(_all_tracks_page(library)) == len(ids)  # the page the threads and the end read
    n_threads = 10
    errors: list[str] = []

    def plan(i: int) -> list[tuple[str, tuple[Any, ...]]]:
        rng = random.Random(i)
        steps: list[tuple[str, tuple[Any, ...]]] = []
        steps += [("play", (played[(3 * i + k) % len(played)],)) for k in range(6)]
        steps += [("favourite", (t, True)) for t in fav_on]
        steps += [("favourite", (t, False)) for t in fav_off]
        steps += [("append", (ids[i], played[i])), ("append", (played[i], ids[i]))]
        steps += [("set", (f"thread.{i}", k)) for k in range(3)] + [("set", ("shared", "same"))]
        steps += [("read", (kind,)) for kind in ("list", "search", "get", "favs", "mix", "get")]
        rng.shuffle(steps)
        # keep this thread's writes of one kind in their planned order (last one wins)
        for kind in ("append", "set"):
            slots = [n for n, (k, _) in enumerate(steps) if k == kind]
            ordered = sorted((steps[n] for n in slots), key=lambda s: (s[1][0] == "shared", s))
            for n, step in zip(slots, ordered, strict=True):
                steps[n] = step
        return steps

    def run(i: int) -> list[tuple[int, ...]]:
        appended: list[tuple[int, ...]] = []
        rng = random.Random(100 + i)
        for kind, args in plan(i):
            try:
                if kind == "play":
                    assert library.tracks.record_play(args[0]) >= 1
                elif kind == "favourite":
                    library.tracks.set_favourite(*args)
                elif kind == "append":
                    record = library.playlists.append(mix, list(args))
                    assert record.track_ids[-2:] == args
                    appended.append(args)
                elif kind == "set":
                    library.settings.set(*args)
                    assert library.settings.get(args[0]) is not None
                elif args[0] == "list":
                    assert sorted(_all_tracks_page(library)) == sorted(ids)
                elif args[0] == "search":
                    assert library.tracks.search("prelude", limit=100).total == preludes
                elif args[0] == "get":
                    track_id = rng.choice(ids)
                    assert _track(library, track_id).id == track_id
                elif args[0] == "favs":
                    assert set(library.tracks.favourites()) <= set(fav_on) | set(fav_off)
                else:
                    assert library.playlists.get(mix) is not None
            except Exception as exc:  # recorded; asserted below
                errors.append(f"thread {i} {kind}{args}: {type(exc).__name__}: {exc}"[:300])
        return appended

    appended = map_concurrent(run, range(n_threads), timeout_s=LIBRARY_TIMEOUT_S)

    assert errors == [], f"{len(errors)} operations failed, e.g. {errors[:3]}"
    plays = Counter(played[(3 * i + k) % len(played)] for i in range(n_threads) for k in range(6))
    # The database itself.
    assert _play_counts(library.db) == dict(plays)
    assert _favourite_ids(library.db) == set(fav_on)
    rows = _playlist_rows(library.db, mix)
    assert [position for position, _ in rows] == list(range(4 * n_threads))
    entries = [track_id for _, track_id in rows]
    pairs = [tuple(entries[n : n + 2]) for n in range(0, len(entries), 2)]
    assert sorted(pairs) == sorted(pair for thread in appended for pair in thread)
    for i in range(n_threads):  # each thread's two appends, in its order
        assert [p for p in pairs if set(p) == {ids[i], played[i]}] == appended[i]
    # The repositories (get, favourites, playlists, settings).
    for track_id in ids:
        record = _track(library, track_id)
        assert (record.play_count, record.favourite) == (plays[track_id], track_id in fav_on)
    assert set(library.tracks.favourites()) == set(fav_on)
    playlist = library.playlists.get(mix)
    assert playlist is not None
    assert list(playlist.track_ids) == entries
    assert [p.track_ids for p in library.playlists.list()] == [tuple(entries)]
    assert [library.settings.get(f"thread.{i}") for i in range(n_threads)] == [2] * n_threads
    assert library.settings.get("shared") == "same"
    # Pages and search results show the same play counts and favourites as get().
    page = _all_tracks_page(library)
    stale = [
        (t, page[t].play_count, plays[t], page[t].favourite)
        for t in ids
        if (page[t].play_count, page[t].favourite) != (plays[t], t in fav_on)
    ]
    assert stale == [], f"tracks.list() is stale after record_play/set_favourite: {stale[:5]}"


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_metadata_updates(library: LibraryManager) -> None:
    """One thread per (track, field) for 4 tracks x 4 fields updates its field 25 times: no
    errors, no lost update (each field ends with its thread's last value), every ``update()``
    returns its own value, and the other fields it shows are never older than their writers'
    last returned update."""
    ids = add_tracks(library.db, 6)
    tracks, untouched = ids[:4], ids[4:]
    fields = ("title", "track_number", "disc_number", "year")
    updates = 25
    lock = threading.Lock()
    started = {(t, f): -1 for t in tracks for f in fields}  # -1: the original value
    committed = dict(started)
    violations: list[str] = []
    originals = {t: _track(library, t) for t in ids}

    def value(field: str, k: int) -> str | int:
        return (
            f"title {k:03d}"
            if field == "title"
            else {"track_number": 100, "disc_number": 200, "year": 1900}[field] + k
        )

    def version(record: TrackRecord, field: str) -> int:
        shown = getattr(record, field)
        if shown == getattr(originals[record.id], field):
            return -1
        if field == "title":
            match = re.fullmatch(r"title (\d{3})", shown or "")
            return int(match.group(1)) if match else -2
        base = value(field, 0)
        assert isinstance(base, int)
        k = int(shown) - base if isinstance(shown, int) else -2
        return k if 0 <= k < updates else -2

    def updater(job: tuple[int, str]) -> None:
        track_id, field = job
        for k in range(updates):
            with lock:
                started[job] = k
                floors = {f: committed[(track_id, f)] for f in fields}
            record = library.tracks.update(track_id, **{field: value(field, k)})
            with lock:
                committed[job] = k
                ceilings = {f: started[(track_id, f)] for f in fields}
            if getattr(record, field) != value(field, k):
                violations.append(f"{job} k={k}: update returned {getattr(record, field)!r}")
            for other in fields:
                seen = version(record, other)
                if not floors[other] <= seen <= ceilings[other]:
                    violations.append(f"{job} k={k}: {other} v{seen} not in {floors[other]}..")

    jobs = [(t, f) for t in tracks for f in fields]
    map_concurrent(updater, jobs, timeout_s=LIBRARY_TIMEOUT_S)

    assert violations == []
    with library.db.read() as session:
        stored = {
            row.id: row
            for row in session.execute(
                select(Track.id, Track.title, Track.track_number, Track.disc_number, Track.year)
            )
        }
    for track_id in tracks:
        want = {f: value(f, updates - 1) for f in fields}
        assert {f: getattr(stored[track_id], f) for f in fields} == want
        record = _track(library, track_id)
        assert {f: getattr(record, f) for f in fields} == want
        assert record.path == originals[track_id].path  # nothing else changed
        assert record.duration_s == originals[track_id].duration_s
    for track_id in untouched:
        assert _track(library, track_id) == originals[track_id]


def _replaygain_text(path: Path) -> str | None:
    """The ``REPLAYGAIN_TRACK_GAIN`` text of a FLAC (Vorbis comment) or WAV (ID3 TXXX) file."""
    audio = _open_mutagen(os.fspath(path))
    tags = audio.tags if audio is not None else None
    if tags is None:
        return None
    if isinstance(tags, mutagen.id3.ID3):
        frames = tags.getall("TXXX:REPLAYGAIN_TRACK_GAIN")
        return str(frames[0].text[0]) if frames else None
    values = tags.get("REPLAYGAIN_TRACK_GAIN")
    return str(values[0]) if values else None


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(120)
def test_concurrent_file_operations(tmp_path: Path, library: LibraryManager) -> None:
    """Threads rewrite the ReplayGain tags of 8 FLAC and WAV files (one writer per file, two on
    one file) while readers read their tags: every read sees a whole file, every file ends with
    its last tags and its audio intact, and no temporary file is left. The library then scans
    the folder, and two threads write the tags of disjoint tracks through the manager at once."""
    folder = tmp_path / "music"
    folder.mkdir()
    rate, frames = 44100, 22050
    originals: dict[Path, npt.NDArray[np.int16]] = {}
    for i in range(8):
        rng = np.random.default_rng(500 + i)
        audio = rng.integers(-8000, 8000, size=(frames, 2), dtype=np.int16)
        path = folder / (f"song_{i}.flac" if i % 2 == 0 else f"song_{i}.wav")
        sf.write(path, audio, rate, subtype="PCM_16")
        originals[path] = audio
    files = sorted(originals)
    rewrites = 6

    def gain_of(i: int, k: int, contender: bool = False) -> float:
        return (5.0 + 0.25 * k if contender else -1.0 - 0.5 * k) + i / 100

    allowed = {
        path: {f"{gain_of(i, k):.2f} dB" for k in range(rewrites)} for i, path in enumerate(files)
    }
    allowed[files[0]] |= {f"{gain_of(0, k, True):.2f} dB" for k in range(rewrites)}
    writers = _Countdown(len(files) + 1)
    deadline = time.monotonic() + LIBRARY_TIMEOUT_S
    bad: list[str] = []

    def writer(i: int, contender: bool = False) -> str:
        try:
            for k in range(rewrites):
                write_replaygain(files[i], ReplayGain(gain_of(i, k, contender), 0.5))
        finally:
            writers.finished()
        return f"{gain_of(i, rewrites - 1, contender):.2f} dB"

    def reader(seed: int) -> int:
        rng = random.Random(seed)
        reads = 0
        while _until(writers.done, minimum=len(files), count=reads, deadline=deadline):
            path = rng.choice(files)
            try:
                found = read_file_tags(path)
                gain = _replaygain_text(path)
            except Exception as exc:
                bad.append(f"{path.name}: {type(exc).__name__}: {exc}")
                continue
            stream = found.stream
            if (stream.sample_rate, stream.channels, stream.bit_depth) != (rate, 2, 16):
                bad.append(f"{path.name}: stream {stream}")
            if abs(stream.duration_s - frames / rate) > 1e-3:
                bad.append(f"{path.name}: {stream.duration_s} s")
            if gain is not None and gain not in allowed[path]:
                bad.append(f"{path.name}: gain {gain!r} was never written")
            reads += 1
        return reads

    roles: list[Callable[[], Any]] = [functools.partial(writer, i) for i in range(len(files))]
    roles.append(functools.partial(writer, 0, True))
    roles += [functools.partial(reader, seed) for seed in range(3)]
    results = _run_roles(roles)

    assert bad == []
    last = results[: len(files)]
    assert all(n >= len(files) for n in results[len(files) + 1 :])
    assert _replaygain_text(files[0]) in {last[0], results[len(files)]}  # either writer last
    for i, path in enumerate(files[1:], start=1):
        assert _replaygain_text(path) == last[i]
    for path in files:
        data, file_rate = sf.read(path, dtype="int16", always_2d=True)
        assert file_rate == rate
        assert np.array_equal(data, originals[path]), f"{path.name}: audio changed"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in files)

    # The library scans the folder, then tags disjoint tracks from two threads at once.
    scanned = library.scan([folder])
    assert (scanned.added, scanned.errors) == (len(files), ())
    by_path = {record.path: record for record in _all_tracks_page(library).values()}
    assert sorted(by_path) == [str(p) for p in files]
    lufs = {record.id: -20.0 - (n % 4) for n, record in enumerate(by_path.values())}
    with library.db.write() as session:
        for track_id, value in lufs.items():
            session.execute(
                update(Track)
                .where(Track.id == track_id)
                .values(integrated_lufs=value, true_peak_dbtp=-1.0)
            )
    library.cache.invalidate("tracks")
    halves = [sorted(lufs)[0::2], sorted(lufs)[1::2]]
    summaries = map_concurrent(library.write_replaygain_tags, halves, timeout_s=LIBRARY_TIMEOUT_S)
    assert [(s.written, s.errors) for s in summaries] == [(len(h), ()) for h in halves]
    for path_text, record in by_path.items():
        assert _replaygain_text(Path(path_text)) == f"{-18.0 - lufs[record.id]:.2f} dB"
        assert np.array_equal(
            sf.read(path_text, dtype="int16", always_2d=True)[0], originals[Path(path_text)]
        )
    again = library.scan([folder])
    assert (again.added, again.updated, again.unchanged) == (0, 0, len(files))
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in files)


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.stress
@pytest.mark.timeout(180)
def test_shared_state_corruption(library: LibraryManager) -> None:
    """8 threads x 120 seeded random operations (plays, favourites, title edits, playlist appends
    and rewrites, settings, and reads) against the library and a lock-protected model of it.
    Plays commute, so they run unlocked; other writes to one entity are ordered by that entity's
    lock, so the model sees them in commit order. At the end the database, every repository read
    path and the model agree exactly, and no read during the run was stale."""
    n_tracks, n_playlists, n_keys = 24, 4, 4
    n_threads, steps = 8, 120
    ids = add_tracks(library.db, n_tracks)
    playlists = [library.playlists.create(f"list {p}").id for p in range(n_playlists)]
    keys = [f"key.{k}" for k in range(n_keys)]
    originals = {t: _track(library, t) for t in ids}

    model_lock = threading.Lock()
    plays_started = dict.fromkeys(ids, 0)
    plays_done = dict.fromkeys(ids, 0)
    favourites = dict.fromkeys(ids, False)
    titles = {t: originals[t].title for t in ids}
    contents: dict[int, list[int]] = {p: [] for p in playlists}
    settings: dict[str, Any] = {}
    track_locks = {t: threading.Lock() for t in ids}
    playlist_locks = {p: threading.Lock() for p in playlists}
    key_locks = {k: threading.Lock() for k in keys}
    violations: list[str] = []
    errors: list[str] = []

    def step(rng: random.Random, thread: int, n: int) -> None:
        roll = rng.random()
        track_id = rng.choice(ids)
        if roll < 0.30:
            with model_lock:
                plays_started[track_id] += 1
            count = library.tracks.record_play(track_id)
            with model_lock:
                plays_done[track_id] += 1
                if not 1 <= count <= plays_started[track_id]:
                    violations.append(f"record_play({track_id}) returned {count}")
        elif roll < 0.45:
            flag = rng.random() < 0.5
            with track_locks[track_id]:
                library.tracks.set_favourite(track_id, flag)
                favourites[track_id] = flag
        elif roll < 0.50:
            text = f"edit {thread}.{n}"
            with track_locks[track_id]:
                assert library.tracks.update(track_id, title=text).title == text
                titles[track_id] = text
        elif roll < 0.60:
            playlist = rng.choice(playlists)
            new = rng.sample(ids, rng.randint(1, 3))
            with playlist_locks[playlist]:
                appended = library.playlists.append(playlist, new)
                contents[playlist].extend(new)
                if list(appended.track_ids) != contents[playlist]:
                    violations.append(f"append to {playlist} returned {appended.track_ids}")
        elif roll < 0.65:
            playlist = rng.choice(playlists)
            with playlist_locks[playlist]:
                kept = contents[playlist][-rng.randint(0, 4) :] if contents[playlist] else []
                new = [*rng.sample(kept, len(kept)), rng.choice(ids)]
                library.playlists.set_tracks(playlist, new)
                contents[playlist] = new
        elif roll < 0.75:
            key = rng.choice(keys)
            value = {"thread": thread, "step": n, "list": [thread, n]}
            with key_locks[key]:
                library.settings.set(key, value)
                settings[key] = value
        elif roll < 0.85:  # exact reads: the entity's lock keeps its writers out meanwhile
            with model_lock:
                floor = plays_done[track_id]
            with track_locks[track_id]:
                record = _track(library, track_id)
                expect = (favourites[track_id], titles[track_id])
            with model_lock:
                ceiling = plays_started[track_id]
            if (record.favourite, record.title) != expect:
                violations.append(f"get({track_id}) = {record.favourite, record.title}, {expect}")
            if not floor <= record.play_count <= ceiling:
                violations.append(f"get({track_id}).play_count {record.play_count} < {floor}")
            playlist = rng.choice(playlists)
            with playlist_locks[playlist]:
                got = library.playlists.get(playlist)
                if got is None or list(got.track_ids) != contents[playlist]:
                    violations.append(f"playlists.get({playlist}) = {got}")
            key = rng.choice(keys)
            with key_locks[key]:
                if library.settings.get(key) != settings.get(key):
                    violations.append(f"settings.get({key}) stale")
        else:  # a page: play counts at least those of the plays done before it began
            with model_lock:
                floors = dict(plays_done)
            page = _all_tracks_page(library)
            low = [t for t in ids if page[t].play_count < floors[t]]
            if low:
                violations.append(f"tracks.list() play counts below plays done: {low[:5]}")

    def worker(thread: int) -> int:
        rng = random.Random(20251108 + thread)
        for n in range(steps):
            try:
                step(rng, thread, n)
            except Exception as exc:  # recorded; asserted below
                errors.append(f"thread {thread} step {n}: {type(exc).__name__}: {exc}"[:300])
        return steps

    map_concurrent(worker, range(n_threads), timeout_s=120.0)

    assert errors == [], f"{len(errors)} operations failed, e.g. {errors[:3]}"
    assert plays_started == plays_done
    # The database equals the model.
    assert _play_counts(library.db) == {t: c for t, c in plays_done.items() if c}
    assert _favourite_ids(library.db) == {t for t, flag in favourites.items() if flag}
    for playlist in playlists:
        rows = _playlist_rows(library.db, playlist)
        assert [position for position, _ in rows] == list(range(len(contents[playlist])))
        assert [track_id for _, track_id in rows] == contents[playlist]
    with library.db.read() as session:
        stored = {str(k): str(v) for k, v in session.execute(select(Setting.key, Setting.value))}
        stored_titles = {int(t): v for t, v in session.execute(select(Track.id, Track.title))}
    assert {k: json.loads(v) for k, v in stored.items()} == settings
    assert stored_titles == titles
    # So does every repository read path.
    for track_id in ids:
        record = _track(library, track_id)
        assert (record.play_count, record.favourite, record.title) == (
            plays_done[track_id],
            favourites[track_id],
            titles[track_id],
        )
    assert set(library.tracks.favourites()) == {t for t, flag in favourites.items() if flag}
    assert {p.id: list(p.track_ids) for p in library.playlists.list()} == contents
    assert {k: library.settings.get(k) for k in settings} == settings
    # Reads during the run, and pages now (last: they depend on the cache's invalidation).
    assert violations == [], f"{len(violations)} stale or wrong reads, e.g. {violations[:3]}"
    page = _all_tracks_page(library)
    assert {t: (page[t].play_count, page[t].favourite) for t in ids} == {
        t: (plays_done[t], favourites[t]) for t in ids
    }


# ---------------------------------------------------------------------------------------------
# Thread pool management: the job engine's workers (plan tests 21-25)
# ---------------------------------------------------------------------------------------------

JOB_RATE = 44100
JOB_TIMEOUT_S = 120.0
"""Bound on every wait for engine jobs (they normally finish in a fraction of a second)."""
ENGINE_THREAD_PREFIXES = ("tonearm-job-", "tonearm-render", "tonearm-encode", "tonearm-reference")


def _job_inputs(folder: Path, count: int, seconds: float, *, channels: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        synth.write(
            folder / f"in{i:03d}.wav",
            synth.noise(JOB_RATE, seconds, channels=channels, level_db=-20.0 - i % 5, seed=i),
            JOB_RATE,
        )
        for i in range(count)
    ]


def _job_frames(path: Path) -> tuple[int, int]:
    info = sf.info(str(path))
    return int(info.frames), int(info.channels)


def _engine_threads() -> set[threading.Thread]:
    return {
        t
        for t in threading.enumerate()
        if t.is_alive() and t.name.startswith(ENGINE_THREAD_PREFIXES)
    }


def _engine_threads_gone(baseline: set[threading.Thread], *, timeout_s: float) -> set[str]:
    """Wait up to ``timeout_s`` for every engine thread not in ``baseline`` to end; the names
    of those still alive then."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = _engine_threads() - baseline
        if not left or time.monotonic() > deadline:
            return {t.name for t in left}
        time.sleep(0.02)


class _RunningCounter:
    """Counts the jobs running at once, from the engine's events (RUNNING .. finished)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.most = 0
        self.started: list[str] = []

    def __call__(self, event: JobEvent) -> None:
        with self.lock:
            if event.state is JobState.RUNNING and event.job_id not in self.running:
                if event.job_id not in self.started:
                    self.started.append(event.job_id)
                self.running.add(event.job_id)
                self.most = max(self.most, len(self.running))
            elif event.state.finished:
                self.running.discard(event.job_id)


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(180)
def test_thread_pool_saturation(tmp_path: Path) -> None:
    inputs = _job_inputs(tmp_path / "in", 40, 0.5)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    counter = _RunningCounter()
    gate = threading.Event()
    both_running = threading.Event()

    def on_event(event: JobEvent) -> None:
        counter(event)
        if event.state is JobState.RUNNING and event.stage == "analyse" and event.fraction == 0:
            with counter.lock:
                held = len(counter.started) <= 2
                if len(counter.started) == 2:
                    both_running.set()
            if held:
                gate.wait(timeout=60)  # hold both workers on their first job

    ids: list[str] = []
    with JobEngine(workers=2, queue_size=5, on_event=on_event) as engine:
        spec = [JobSpec(str(p), str(out_dir / p.name)) for p in inputs]
        ids += [engine.submit(spec[0]), engine.submit(spec[1])]
        assert both_running.wait(timeout=60)
        ids += [engine.submit(s) for s in spec[2:7]]  # fills the queue
        asked = time.monotonic()
        with pytest.raises(QueueFull):
            engine.submit(spec[7])
        assert time.monotonic() - asked < 5.0  # at once: no waiting for room
        gate.set()
        # Then keep it saturated: submit the rest as fast as the queue takes them.
        deadline = time.monotonic() + JOB_TIMEOUT_S
        refusals = 0
        for s in spec[7:]:
            while True:
                try:
                    ids.append(engine.submit(s))
                    break
                except QueueFull:
                    refusals += 1
                    assert time.monotonic() < deadline, "the queue never drained"
                    time.sleep(0.005)
        # Wait for the accepted jobs only (not wait_all: see the last assertion).
        statuses = {job_id: engine.wait(job_id, timeout_s=JOB_TIMEOUT_S) for job_id in ids}
        ghosts = [s for s in engine.jobs() if s.job_id not in statuses]
        print(f"{refusals} QueueFull refusals while saturated")
    assert len(ids) == len(inputs)
    assert all(s.state is JobState.DONE for s in statuses.values())
    assert counter.most == 2  # both workers busy at once, never more
    for path in inputs:
        assert _job_frames(out_dir / path.name) == (JOB_RATE // 2, 1)
    # A refused submit must leave no job behind: a record stuck in QUEUED (never in the queue)
    # would make wait_all() time out and jobs() report work that will never run.
    assert [(s.spec.input_path, s.state) for s in ghosts] == []


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(180)
def test_thread_pool_cleanup(tmp_path: Path) -> None:
    inputs = _job_inputs(tmp_path / "in", 3, 1.0, channels=2)
    baseline = _engine_threads()
    for round_ in range(6):
        engine = JobEngine(workers=3)
        mine = _engine_threads() - baseline
        assert sorted(t.name for t in mine) == [f"tonearm-job-{i}" for i in range(3)]
        ids = [
            engine.submit(JobSpec(str(p), str(tmp_path / f"out-{round_}-{p.name}"))) for p in inputs
        ]
        engine.wait_all(timeout_s=JOB_TIMEOUT_S)
        assert all(engine.status(i).state is JobState.DONE for i in ids)
        engine.shutdown(timeout_s=30)
        assert not any(t.is_alive() for t in mine)  # shutdown joined its workers
        assert _engine_threads_gone(baseline, timeout_s=10) == set()
    # An engine that never ran a job, and one used as a context manager, clean up too.
    JobEngine(workers=4).shutdown(timeout_s=30)
    with JobEngine(workers=2) as engine:
        engine.wait(engine.submit(JobSpec(str(inputs[0]), str(tmp_path / "cm.wav"))), timeout_s=60)
    assert _engine_threads_gone(baseline, timeout_s=10) == set()


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(180)
def test_thread_pool_exception_handling(tmp_path: Path) -> None:
    good = _job_inputs(tmp_path / "in", 4, 0.5)
    not_audio = tmp_path / "in" / "notes.wav"
    not_audio.write_text("these are not samples\n")
    missing = tmp_path / "in" / "missing.wav"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    seen: list[tuple[str, JobEvent]] = []

    def on_event(event: JobEvent) -> None:
        seen.append((threading.current_thread().name, event))
        raise RuntimeError("a listener with a bug")

    with JobEngine(workers=1, on_event=on_event) as engine:
        bad = {
            "not audio": engine.submit(JobSpec(str(not_audio), str(out_dir / "notes.wav"))),
            "no folder": engine.submit(
                JobSpec(str(good[0]), str(tmp_path / "nowhere" / "out.wav"))
            ),
            "no input": engine.submit(JobSpec(str(missing), str(out_dir / "missing.wav"))),
        }
        fine = [engine.submit(JobSpec(str(p), str(out_dir / p.name))) for p in good]
        engine.wait_all(timeout_s=JOB_TIMEOUT_S)
        failures = {name: engine.status(job_id) for name, job_id in bad.items()}
        results = [engine.status(job_id) for job_id in fine]
        assert engine.cancel(fine[0]) is False  # the engine still answers
    for name, status in failures.items():
        assert status.state is JobState.FAILED, name
        assert status.error, name
        assert "\n" not in status.error
        assert "internal error" not in status.error, status.error
    assert "notes.wav" in (failures["not audio"].error or "")
    assert "nowhere" in (failures["no folder"].error or "")
    assert "missing.wav" in (failures["no input"].error or "")
    assert [s.state for s in results] == [JobState.DONE] * len(good)
    for path in good:
        assert _job_frames(out_dir / path.name) == (JOB_RATE // 2, 1)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in good)
    assert not (tmp_path / "nowhere").exists()
    # The one worker survived every failure (and every listener error) and ran the rest.
    workers = {name for name, e in seen if e.state is not JobState.QUEUED}
    assert workers == {"tonearm-job-0"}
    finished = [e.job_id for _, e in seen if e.state.finished]
    assert finished == [*bad.values(), *fine]  # every job reported its end, in order


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(180)
def test_thread_local_storage(tmp_path: Path) -> None:
    inputs = _job_inputs(tmp_path / "in", 12, 1.0, channels=2)
    local = threading.local()
    registry_lock = threading.Lock()
    per_thread: dict[str, list[str]] = {}  # each worker's own list, made in that thread
    emitters: dict[str, set[str]] = {}
    second_started = threading.Event()

    def on_event(event: JobEvent) -> None:
        name = threading.current_thread().name
        with registry_lock:
            emitters.setdefault(event.job_id, set()).add(name)
        if event.state is not JobState.RUNNING or not name.startswith("tonearm-job-"):
            return
        if not hasattr(local, "jobs"):
            local.jobs = []
            local.count = 0
            with registry_lock:
                assert name not in per_thread, "a thread's local state was lost"
                per_thread[name] = local.jobs
        if event.job_id in local.jobs:
            return
        local.jobs.append(event.job_id)
        local.count += 1
        assert local.count == len(local.jobs)
        if local.count == 1:
            with registry_lock:
                first_jobs = len(per_thread)
            if first_jobs == 2:
                second_started.set()
            else:
                second_started.wait(timeout=30)  # make sure the second worker gets a job too

    with JobEngine(workers=2, on_event=on_event) as engine:
        ids = [engine.submit(JobSpec(str(p), str(tmp_path / f"out-{p.name}"))) for p in inputs]
        engine.wait_all(timeout_s=JOB_TIMEOUT_S)
        assert all(engine.status(job_id).state is JobState.DONE for job_id in ids)
    assert second_started.is_set()
    assert sorted(per_thread) == ["tonearm-job-0", "tonearm-job-1"]
    counted = [job for jobs in per_thread.values() for job in jobs]
    assert len(counted) == len(ids)  # the per-thread counts add up to the job count
    assert sorted(counted) == sorted(ids)  # and no job was seen by two threads
    for job_id in ids:
        workers = emitters[job_id] - {"MainThread"}  # QUEUED comes from the submitter
        assert len(workers) == 1, f"job {job_id} had events from {workers}"
        owner = next(iter(workers))
        assert job_id in per_thread[owner]


@pytest.mark.concurrency
@pytest.mark.thread_safety
@pytest.mark.timeout(240)
def test_thread_pool_graceful_shutdown(tmp_path: Path) -> None:
    # Without cancel: everything queued and running still finishes.
    inputs = _job_inputs(tmp_path / "in", 10, 0.5)
    drained = tmp_path / "drained"
    drained.mkdir()
    baseline = _engine_threads()
    engine = JobEngine(workers=2)
    ids = [engine.submit(JobSpec(str(p), str(drained / p.name))) for p in inputs]
    engine.shutdown(timeout_s=JOB_TIMEOUT_S)
    statuses = [engine.status(job_id) for job_id in ids]
    assert [s.state for s in statuses] == [JobState.DONE] * len(inputs)
    for path in inputs:
        assert _job_frames(drained / path.name) == (JOB_RATE // 2, 1)
    assert _engine_threads_gone(baseline, timeout_s=10) == set()

    # With cancel, under load: returns within a bound; each job done (complete) or cancelled.
    heavy = _job_inputs(tmp_path / "heavy", 12, 10.0, channels=2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rendering = threading.Event()

    def on_event(event: JobEvent) -> None:
        if event.stage == "render":
            rendering.set()

    engine = JobEngine(workers=2, on_event=on_event)
    ids = [engine.submit(JobSpec(str(p), str(out_dir / p.name))) for p in heavy]
    assert rendering.wait(timeout=60)
    asked = time.monotonic()
    engine.shutdown(cancel=True, timeout_s=60)
    took = time.monotonic() - asked
    print(f"shutdown(cancel=True) under load took {took:.2f} s")
    assert took < 30  # normally well under a second
    final: dict[Path, JobStatus] = {p: engine.status(i) for p, i in zip(heavy, ids, strict=True)}
    states = [s.state for s in final.values()]
    assert set(states) <= {JobState.DONE, JobState.CANCELLED}, states
    assert states.count(JobState.CANCELLED) >= len(heavy) - 4  # the queue was not drained
    for path, status in final.items():
        if status.state is JobState.DONE:
            assert _job_frames(out_dir / path.name) == _job_frames(path)
        else:
            assert not (out_dir / path.name).exists()
    leftovers = [p.name for p in out_dir.iterdir() if "tonearm" in p.name or p.name[0] == "."]
    assert leftovers == []
    assert _engine_threads_gone(baseline, timeout_s=10) == set()
