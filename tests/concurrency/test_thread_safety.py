"""Thread safety: shared resources, audio processing and thread-pool management under load.

Every test runs real tonearm processors from many threads at once (released together by a
barrier) and compares the results bit for bit with a sequential run of the same work: any
shared mutable state, cache race or cross-talk between threads shows as a difference. Inputs
differ per thread (offset, gain-scaled, channel-swapped variants of the Bach excerpt plus seeded
noise), so a thread that picked up another thread's data could not go unnoticed. All waits are
bounded; each test has an explicit timeout.

Sections follow the concurrency test plan; this file holds the audio-processing tests now, the
shared-resource and thread-pool-management tests join it later.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from tests.concurrency.helpers import (
    AudioArray,
    Excerpt,
    assert_identical,
    blocks_of,
    map_concurrent,
    process_stream,
    variants,
)
from tonearm.dsp.dynamics import Compressor, GainReductionStats, TruePeakLimiter
from tonearm.dsp.eq import FirConvolver, design_linear_phase_fir
from tonearm.dsp.filters import k_weighting_sos
from tonearm.dsp.spectrum import MidSideSpectrum, hann_window, spectrum_of
from tonearm.dsp.true_peak import interpolation_phase_matrix, true_peak_dbtp
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
