"""GainEnvelope: the lookahead guarantee, the release law, and block-split invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tonearm.dsp.envelope import (
    ControlRateGainEnvelope,
    GainEnvelope,
    causal_moving_average,
    running_max,
)
from tonearm.errors import ParameterError


def _reference(required: np.ndarray, lookahead: int, release: float) -> np.ndarray:
    """Loop implementation of the same three steps, for comparison."""
    padded = np.concatenate((np.zeros(lookahead - 1), required, np.zeros(lookahead - 1)))
    n = required.shape[0] + lookahead - 1
    held = np.array([padded[i : i + lookahead].max() for i in range(n)])
    decay = math.exp(-1.0 / release)
    released = np.empty(n)
    state = 0.0
    for i in range(n):
        state = max(held[i], state * decay)
        released[i] = state
    b1 = (lookahead + 1) // 2
    b2 = lookahead - b1 + 1
    first = np.array(
        [np.concatenate((np.zeros(b1 - 1), released))[i : i + b1].mean() for i in range(n)]
    )
    second = np.array(
        [np.concatenate((np.zeros(b2 - 1), first))[i : i + b2].mean() for i in range(n)]
    )
    return second


def test_running_max_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(1000)
    for window in (1, 2, 7, 64, 1000):
        expected = np.array([values[i : i + window].max() for i in range(1001 - window)])
        np.testing.assert_array_equal(running_max(values, window=window), expected)


def test_running_max_rejects_bad_window() -> None:
    with pytest.raises(ParameterError):
        running_max(np.zeros(3), window=4)


def test_causal_moving_average_uses_history() -> None:
    out = causal_moving_average(np.array([3.0, 6.0]), history=np.array([0.0, 3.0]))
    np.testing.assert_allclose(out, [2.0, 4.0])


@pytest.mark.parametrize(("lookahead", "release"), [(1, 5.0), (8, 20.0), (33, 300.0)])
def test_envelope_matches_loop_reference(lookahead: int, release: float) -> None:
    rng = np.random.default_rng(lookahead)
    required = np.where(rng.random(700) > 0.95, rng.random(700) * 12.0, 0.0)
    env = GainEnvelope(lookahead_frames=lookahead, release_frames=release)
    out = np.concatenate((env.process(required), env.process(np.zeros(lookahead - 1))))
    np.testing.assert_allclose(out, _reference(required, lookahead, release), atol=1e-9)


def test_envelope_never_below_requirement_after_latency() -> None:
    rng = np.random.default_rng(7)
    required = np.where(rng.random(20_000) > 0.99, rng.random(20_000) * 20.0, 0.0)
    env = GainEnvelope(lookahead_frames=132, release_frames=4410.0)
    out = np.concatenate((env.process(required), env.process(np.zeros(131))))
    aligned = out[env.latency_frames :]
    assert np.all(aligned >= required - 1e-9)
    assert aligned.max() == pytest.approx(required.max(), abs=1e-9)


def test_envelope_block_split_invariance() -> None:
    rng = np.random.default_rng(3)
    required = np.where(rng.random(50_000) > 0.98, rng.random(50_000) * 6.0, 0.0)
    whole = GainEnvelope(lookahead_frames=64, release_frames=2000.0).process(required)
    env = GainEnvelope(lookahead_frames=64, release_frames=2000.0)
    cuts = np.sort(rng.choice(np.arange(1, 50_000), size=40, replace=False))
    parts = [env.process(p) for p in np.split(required, cuts)]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-9)


def test_release_decays_exponentially() -> None:
    env = GainEnvelope(lookahead_frames=1, release_frames=100.0)
    out = env.process(np.concatenate(([10.0], np.zeros(300))))
    assert out[0] == pytest.approx(10.0)
    assert out[100] == pytest.approx(10.0 * math.exp(-1.0), rel=1e-9)
    assert out[300] == pytest.approx(10.0 * math.exp(-3.0), rel=1e-9)


def test_short_release_does_not_overflow() -> None:
    env = GainEnvelope(lookahead_frames=4, release_frames=0.5)
    out = env.process(np.full(100_000, 3.0))
    assert np.all(np.isfinite(out))
    assert out[-1] == pytest.approx(3.0)


def test_reset_forgets_state() -> None:
    env = GainEnvelope(lookahead_frames=16, release_frames=1000.0)
    first = env.process(np.full(100, 6.0))
    env.reset()
    again = env.process(np.full(100, 6.0))
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize(("decimation", "lookahead"), [(1, 10), (8, 132), (16, 20), (8, 3)])
def test_control_rate_envelope_keeps_the_guarantee(decimation: int, lookahead: int) -> None:
    rng = np.random.default_rng(decimation)
    required = np.where(rng.random(30_000) > 0.995, rng.random(30_000) * 15.0, 0.0)
    env = ControlRateGainEnvelope(
        lookahead_frames=lookahead, release_frames=2000.0, decimation=decimation
    )
    cuts = np.sort(rng.choice(np.arange(1, 30_000), size=25, replace=False))
    out = np.concatenate(
        [env.process(p) for p in (*np.split(required, cuts), np.zeros(env.latency_frames))]
    )
    assert out.shape[0] == 30_000 + env.latency_frames
    aligned = out[env.latency_frames :]
    assert np.all(aligned >= required - 1e-9)
    assert aligned.max() <= required.max() + 1e-9  # never more than the loudest requirement


def test_control_rate_envelope_is_block_split_invariant() -> None:
    rng = np.random.default_rng(5)
    required = np.where(rng.random(20_000) > 0.99, rng.random(20_000) * 6.0, 0.0)

    def run(sizes: int) -> np.ndarray:
        env = ControlRateGainEnvelope(lookahead_frames=132, release_frames=4410.0, decimation=8)
        return np.concatenate(
            [env.process(required[i : i + sizes]) for i in range(0, 20_000, sizes)]
        )

    np.testing.assert_allclose(run(20_000), run(333), atol=1e-9)
    np.testing.assert_allclose(run(20_000), run(1), atol=1e-9)
