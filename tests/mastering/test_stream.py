"""Streamed masters: exact from frame 0, within a stated tolerance from any other frame."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.mastering import synth
from tonearm.audio_io import AudioReader, read_audio
from tonearm.errors import ParameterError
from tonearm.mastering.analysis import analyze_file
from tonearm.mastering.chain import MasteringChain, render_blocks
from tonearm.mastering.stream import (
    FIRST_BLOCK_FRAMES,
    STREAM_BLOCK_FRAMES,
    StreamPlan,
    plan_for_stream,
    render_gain_matched,
    render_mastered,
    stream_block_sizes,
)
from tonearm.mastering.targets import PRESETS
from tonearm.types import AudioArray

SEEK_TOLERANCE = 1e-4
"""Max absolute difference between a stream started at frame N and the one from 0, at and after
N (the measured figure is ~1e-6, float rounding; see tonearm.mastering.stream)."""


@pytest.fixture(scope="module")
def bach_plan() -> StreamPlan:
    return plan_for_stream(synth.BACH, PRESETS["spotify"], 1.0)


@pytest.fixture(scope="module")
def joplin_loud() -> tuple[StreamPlan, AudioArray]:
    """A loud master (the compressor works as well as the limiter) and its from-0 render."""
    plan = plan_for_stream(synth.JOPLIN, PRESETS["cd"], 1.0)
    full = np.concatenate(list(render_mastered(synth.JOPLIN, plan.plan, info=plan.info)), axis=1)
    return plan, full


def _cut(audio: AudioArray, sizes: list[int]) -> list[AudioArray]:
    starts = np.cumsum([0, *sizes[:-1]])
    return [audio[:, start : start + size] for start, size in zip(starts, sizes, strict=True)]


def test_from_zero_is_render_blocks_exactly(bach_plan: StreamPlan) -> None:
    source = read_audio(synth.BACH).audio
    frames = source.shape[1]
    streamed = list(render_mastered(synth.BACH, bach_plan.plan))
    sizes = stream_block_sizes(frames)
    assert sizes[:2] == [FIRST_BLOCK_FRAMES, STREAM_BLOCK_FRAMES]
    expected = np.concatenate(
        list(render_blocks(MasteringChain(bach_plan.plan), _cut(source, sizes), channels=2)),
        axis=1,
    )
    got = np.concatenate(streamed, axis=1)
    assert got.shape == (2, frames) == (2, bach_plan.info.frames)
    assert np.array_equal(got, expected)
    latency = MasteringChain(bach_plan.plan).latency_frames
    assert streamed[0].shape[1] == FIRST_BLOCK_FRAMES - latency  # a small first block
    # then full blocks, the input's short last one, and what the chain's flush pushes out
    assert {block.shape[1] for block in streamed[1:-2]} == {STREAM_BLOCK_FRAMES}
    # cut into uniform blocks instead, only float rounding differs
    uniform = np.concatenate(
        list(render_blocks(MasteringChain(bach_plan.plan), _cut(source, [65536] * 23), channels=2)),
        axis=1,
    )
    assert np.abs(uniform - got).max() < 1e-5


def _take(blocks: Iterator[AudioArray], frames: int) -> AudioArray:
    """At least ``frames`` frames of a stream (all if it is shorter), then close it."""
    got: list[AudioArray] = []
    for block in blocks:
        got.append(block)
        if sum(b.shape[1] for b in got) >= frames:
            break
    close = getattr(blocks, "close", None)
    if close is not None:
        close()
    return np.concatenate(got, axis=1)


def _worst_difference(
    plan: StreamPlan, full: AudioArray, starts: list[int], *, preroll_frames: int | None = None
) -> float:
    """Max difference over the first 10 s (or to the end) of streams from ``starts``."""
    worst = 0.0
    for start in starts:
        blocks = render_mastered(
            synth.JOPLIN, plan.plan, start_frame=start, preroll_frames=preroll_frames
        )
        wanted = min(10 * 44100, full.shape[1] - start)
        part = _take(blocks, wanted)
        assert part.shape[1] >= wanted
        if wanted < 10 * 44100:  # runs to the end: exactly the frames left
            assert part.shape[1] == wanted
        worst = max(worst, float(np.abs(part[:, :wanted] - full[:, start : start + wanted]).max()))
    return worst


@pytest.mark.timeout(120)
def test_mid_stream_starts_match_the_stream_from_zero(
    joplin_loud: tuple[StreamPlan, AudioArray],
) -> None:
    plan, full = joplin_loud
    assert plan.plan.dynamics is not None  # compressor and limiter both carry state
    frames = full.shape[1]
    starts = [1, 1000, 44_100, 1_573_559, 2_981_257, 4_961_351, frames - 5]
    worst = _worst_difference(plan, full, starts)
    print(f"max |stream from N - stream from 0| after the pre-roll: {worst:.2e}")
    assert worst < SEEK_TOLERANCE
    # without a pre-roll the envelopes start cold: the tolerance above is the pre-roll's doing
    cold = _worst_difference(plan, full, starts[3:5], preroll_frames=0)
    print(f"... and without one: {cold:.2e}")
    assert cold > 1e-2


def test_mp3_mid_stream_start(joplin_loud: tuple[StreamPlan, AudioArray]) -> None:
    plan = joplin_loud[0].plan  # a plan is a preset: any 44.1 kHz stereo track can take it
    start, length = 40 * 44100 + 123, 5 * 44100
    from_zero = _take(render_mastered(synth.BEETHOVEN, plan), start + length)[:, start:]
    part = _take(render_mastered(synth.BEETHOVEN, plan, start_frame=start), length)
    from_zero, part = from_zero[:, :length], part[:, :length]
    assert from_zero.shape == part.shape == (2, length)
    assert np.abs(part - from_zero).max() < SEEK_TOLERANCE


def test_first_block_comes_fast(joplin_loud: tuple[StreamPlan, AudioArray]) -> None:
    plan = joplin_loud[0]
    timings = {}
    for start in (0, 3_000_000):
        began = time.perf_counter()
        blocks = render_mastered(synth.JOPLIN, plan.plan, start_frame=start, info=plan.info)
        first = next(blocks)
        timings[start] = time.perf_counter() - began
        blocks.close()
        assert 0 < first.shape[1] <= FIRST_BLOCK_FRAMES
    print(f"first block: {timings[0] * 1e3:.1f} ms from 0, {timings[3_000_000] * 1e3:.1f} ms mid")
    assert max(timings.values()) < 2.0  # ~10-50 ms; generous for a loaded CI box


def test_gain_matched_is_the_original_times_the_gain(bach_plan: StreamPlan) -> None:
    source = read_audio(synth.BACH).audio
    gain_db = bach_plan.match_gain_db
    factor = np.float32(10 ** (gain_db / 20))
    for start in (0, 12_345):
        blocks = list(render_gain_matched(synth.BACH, gain_db, start_frame=start))
        assert [b.shape[1] for b in blocks] == stream_block_sizes(source.shape[1] - start)
        assert np.array_equal(np.concatenate(blocks, axis=1), source[:, start:] * factor)


def test_plan_for_stream(bach_plan: StreamPlan) -> None:
    analysis = analyze_file(synth.BACH, fingerprint=False)
    assert bach_plan.input_lufs == analysis.loudness.integrated_lufs
    assert bach_plan.plan.target == PRESETS["spotify"]
    assert bach_plan.info.frames == analysis.frames
    expected = bach_plan.plan.predicted_lufs - analysis.loudness.integrated_lufs
    assert bach_plan.match_gain_db == pytest.approx(expected)
    assert abs(bach_plan.plan.predicted_lufs - -14.0) < 0.2
    with pytest.raises(ParameterError, match="strength"):
        plan_for_stream(synth.BACH, PRESETS["spotify"], 1.5)
    silent = dataclasses.replace(bach_plan, input_lufs=float("-inf"))
    assert silent.match_gain_db == 0.0


def test_bad_starts_and_plans(bach_plan: StreamPlan) -> None:
    frames = bach_plan.info.frames
    assert list(render_mastered(synth.BACH, bach_plan.plan, start_frame=frames)) == []
    assert list(render_gain_matched(synth.BACH, 0.0, start_frame=frames)) == []
    with pytest.raises(ParameterError, match="start_frame"):
        next(render_mastered(synth.BACH, bach_plan.plan, start_frame=frames + 1))
    with pytest.raises(ParameterError, match="start_frame"):
        next(render_gain_matched(synth.BACH, 0.0, start_frame=-1))
    mono = dataclasses.replace(bach_plan.plan, channels=1)
    with pytest.raises(ParameterError, match="the plan is for 1 channel"):
        next(render_mastered(synth.BACH, mono))
    with pytest.raises(ParameterError, match="block_frames"):
        next(render_mastered(synth.BACH, bach_plan.plan, block_frames=0))
    with AudioReader(synth.BACH) as reader:
        assert reader.info.frames == frames
