"""The render chain: threaded stages give the single-threaded result, and stop when asked."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from tests.mastering import synth
from tonearm.mastering.analysis import analyze_audio
from tonearm.mastering.chain import MasteringChain, render_blocks
from tonearm.mastering.plan import DynamicsPlan, EqPlan, MasteringPlan
from tonearm.mastering.planner import make_plan
from tonearm.mastering.targets import PRESETS

RATE = 44100


def _full_plan(audio: np.ndarray) -> MasteringPlan:
    """A plan with every stage: tonal EQ, a side gain, compression and limiting."""
    plan = make_plan(analyze_audio(audio, sample_rate=RATE), PRESETS["spotify"])
    freqs = (60.0, 250.0, 1000.0, 4000.0, 12000.0)
    return dataclasses.replace(
        plan,
        eq=EqPlan(freqs, (2.0, -1.0, 0.0, 1.5, 3.0), (0.0, 0.0, -1.0, 1.0, 2.0)),
        dynamics=DynamicsPlan(threshold_dbfs=-24.0, ratio=2.0, max_reduction_db=4.0),
        width=dataclasses.replace(plan.width, side_gain_db=-1.5),
        gain_db=plan.gain_db + 6.0,  # the limiter works hard
    )


def _blocks(audio: np.ndarray, size: int) -> list[np.ndarray]:
    return [audio[:, start : start + size] for start in range(0, audio.shape[1], size)]


def _render(plan: MasteringPlan, audio: np.ndarray, *, size: int, threaded: bool) -> np.ndarray:
    chain = MasteringChain(plan)
    out = render_blocks(chain, _blocks(audio, size), channels=audio.shape[0], threaded=threaded)
    return np.concatenate(list(out), axis=1)


def _render_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tonearm-render")]


@pytest.mark.parametrize("size", [4096, 65536, 262144])
def test_threaded_render_is_bit_identical_to_sequential(size: int) -> None:
    audio = synth.noise(RATE, 8.0, level_db=-16.0, seed=3)
    plan = _full_plan(audio)
    assert len(MasteringChain(plan).stages()) == 2
    sequential = _render(plan, audio, size=size, threaded=False)
    threaded = _render(plan, audio, size=size, threaded=True)
    assert threaded.shape == audio.shape
    assert np.array_equal(threaded, sequential)
    assert np.abs(threaded).max() > 0.1  # it is music, not silence


def test_stages_applied_in_turn_are_the_chain() -> None:
    audio = synth.noise(RATE, 3.0, level_db=-16.0, seed=4)
    plan = _full_plan(audio)
    whole, staged = MasteringChain(plan), MasteringChain(plan)
    stages = staged.stages()
    for block in _blocks(audio, 32768):
        expected = whole.process(block)
        for stage in stages:
            block = stage(block)
        assert np.array_equal(block, expected)


def test_a_plan_without_eq_has_one_stage() -> None:
    audio = synth.noise(RATE, 3.0, level_db=-16.0, seed=5)
    plan = dataclasses.replace(_full_plan(audio), eq=None)
    plan = dataclasses.replace(plan, width=dataclasses.replace(plan.width, side_gain_db=0.0))
    assert len(MasteringChain(plan).stages()) == 1
    assert np.array_equal(
        _render(plan, audio, size=16384, threaded=True),
        _render(plan, audio, size=16384, threaded=False),
    )


def test_closing_the_render_early_stops_its_threads() -> None:
    audio = synth.noise(RATE, 30.0, level_db=-16.0, seed=6)
    plan = _full_plan(audio)
    stream = render_blocks(MasteringChain(plan), _blocks(audio, 8192), channels=2, threaded=True)
    next(stream)
    assert _render_threads(), "the stages run on their own threads"
    stream.close()
    deadline = time.monotonic() + 5.0
    while _render_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _render_threads()
