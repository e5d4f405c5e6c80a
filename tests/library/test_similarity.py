"""Similarity search: exact k-NN over robustly normalised fingerprints, snapshots, the service."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from tonearm.errors import ParameterError
from tonearm.library.similarity import (
    FINGERPRINT_SIZE,
    Neighbour,
    SimilarityIndex,
    SimilarityService,
)


def _ids_of(neighbours: list[Neighbour]) -> list[int]:
    return [n.track_id for n in neighbours]


def _random_library(n: int, d: int = FINGERPRINT_SIZE, seed: int = 0) -> np.ndarray:
    """Features in unrelated units: offsets and spreads from 0.01 to 1000."""
    rng = np.random.default_rng(seed)
    spread = 10.0 ** rng.uniform(-2, 3, d)
    return rng.normal(size=(n, d)) * spread + rng.uniform(-100, 100, d)


def _reference_scaling(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q25, q50, q75 = np.percentile(data, [25, 50, 75], axis=0)
    return q50, (q75 - q25) / 1.349


def _brute_force(
    normalised: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int, skip: set[int]
) -> tuple[list[int], np.ndarray]:
    """k nearest by np.linalg.norm over every row, ties by id."""
    distances = np.linalg.norm(normalised - query, axis=1)
    distances[np.isin(ids, list(skip))] = np.inf
    order = np.lexsort((ids, distances))[:k]
    return [int(i) for i in ids[order]], distances[order]


# --- nearest on small hand-made sets ---


def test_nearest_order_excludes_the_query_and_scales_by_iqr() -> None:
    values = np.array([0.0, 1.0, 3.0, 7.0, 15.0])
    vectors = np.column_stack([values, np.full(5, 2.5)])  # the second feature is constant
    index = SimilarityIndex.build([10, 20, 30, 40, 50], vectors)
    result = index.nearest(10, k=3)
    assert _ids_of(result) == [20, 30, 40]
    scale = (7.0 - 1.0) / 1.349
    np.testing.assert_allclose([n.distance for n in result], np.array([1, 3, 7]) / scale, rtol=1e-6)
    assert all(n.similarity == pytest.approx(1 / (1 + n.distance)) for n in result)
    assert _ids_of(index.nearest(30, k=3)) == [20, 10, 40]  # |3-1| < |3-0| < |7-3| < |15-3|
    assert _ids_of(index.nearest(50, k=1)) == [40]


def test_ties_are_broken_by_track_id_whatever_the_insertion_order() -> None:
    # median 0, so +x and -x normalise to exact negatives: distances from 0 tie exactly
    ids = [9, 5, 3, 7, 1]
    values = np.array([[-1.0], [0.0], [1.0], [-2.0], [2.0]])
    index = SimilarityIndex.build(ids, values)
    result = index.nearest(5, k=4)
    assert _ids_of(result) == [3, 9, 1, 7]
    assert result[0].distance == result[1].distance
    assert result[2].distance == result[3].distance
    # identical fingerprints tie too, at distance 0 from each other
    twins = SimilarityIndex.build([4, 2, 8, 6], [[5.0, 1.0], [5.0, 1.0], [0.0, 0.0], [5.0, 1.0]])
    assert _ids_of(twins.nearest(8, k=3)) == [2, 4, 6]
    first = twins.nearest(6, k=2)
    assert _ids_of(first) == [2, 4]
    assert [n.distance for n in first] == [0.0, 0.0]
    assert [n.similarity for n in first] == [1.0, 1.0]


def test_k_larger_than_the_index_returns_every_other_track() -> None:
    index = SimilarityIndex.build([1, 2, 3], [[0.0, 0.0], [1.0, 0.0], [3.0, 1.0]])
    assert _ids_of(index.nearest(1, k=100)) == [2, 3]
    assert _ids_of(index.nearest(1, k=2)) == [2, 3]
    assert _ids_of(index.nearest_to_vector([0.0, 0.0], k=100)) == [1, 2, 3]
    assert index.nearest_to_vector([0.0, 0.0], exclude=[1, 2, 3, 99]) == []
    lonely = SimilarityIndex.build([7], [[1.0, 2.0]])
    assert lonely.nearest(7) == []


def test_neighbour_is_a_frozen_slots_dataclass() -> None:
    neighbour = Neighbour(track_id=1, distance=3.0, similarity=0.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        neighbour.distance = 0.0  # type: ignore[misc]
    assert not hasattr(neighbour, "__dict__")
    assert FINGERPRINT_SIZE == 25


# --- exactness against brute force ---


def test_matches_brute_force_on_random_data() -> None:
    data = _random_library(2000, seed=1)
    ids = np.random.default_rng(2).permutation(np.arange(5000, 7000)) * 3
    index = SimilarityIndex.build(ids, data)
    centre, scale = _reference_scaling(data)
    np.testing.assert_allclose(index.centre, centre, rtol=1e-12)
    np.testing.assert_allclose(index.scale, scale, rtol=1e-12)
    normalised = (data - centre) / scale
    for row in range(0, 2000, 97):
        expected_ids, expected = _brute_force(normalised, ids, normalised[row], 10, {ids[row]})
        result = index.nearest(int(ids[row]), k=10)
        assert _ids_of(result) == expected_ids
        np.testing.assert_allclose([n.distance for n in result], expected, rtol=1e-4)
    rng = np.random.default_rng(3)
    for query in _random_library(5, seed=4):  # vectors that are not in the index
        skip = set(rng.choice(ids, 50).tolist())
        expected_ids, expected = _brute_force(normalised, ids, (query - centre) / scale, 15, skip)
        result = index.nearest_to_vector(query, k=15, exclude=skip)
        assert _ids_of(result) == expected_ids
        np.testing.assert_allclose([n.distance for n in result], expected, rtol=1e-4)


def test_exact_for_a_tight_cluster_far_from_the_centre() -> None:
    # |x|^2 ~ 1e6 while neighbours are 1e-3 apart: float32 |x|^2 - 2 x.q + |q|^2 alone cannot
    # rank them; candidates are re-measured exactly. Duplicates must tie by id.
    rng = np.random.default_rng(5)
    bulk = rng.normal(size=(700, 4))
    cluster = 1000.0 + 1e-3 * rng.normal(size=(300, 4))
    cluster[100:110] = cluster[99]  # eleven identical fingerprints
    data = np.vstack([bulk, cluster])
    ids = np.arange(1000)[::-1].copy()
    index = SimilarityIndex.build(ids, data)
    stored = index.normalise(data).astype(np.float32).astype(np.float64)
    for row in [*range(700, 1000, 23), 799, 805]:
        expected_ids, expected = _brute_force(stored, ids, stored[row], 12, {ids[row]})
        result = index.nearest(int(ids[row]), k=12)
        assert _ids_of(result) == expected_ids
        np.testing.assert_allclose([n.distance for n in result], expected, rtol=1e-9, atol=1e-12)
    twins = index.nearest(int(ids[799]), k=10)
    assert _ids_of(twins) == sorted(int(i) for i in ids[800:810])
    assert all(n.distance == 0.0 for n in twins)


# --- normalisation ---


def test_one_huge_outlier_leaves_the_other_tracks_neighbours_alone() -> None:
    data = _random_library(400, d=6, seed=6)
    ids = np.arange(400)
    with_outlier = np.vstack([data, data[0]])
    with_outlier[-1, 0] = 1e9
    clean = SimilarityIndex.build(ids, data)
    dirty = SimilarityIndex.build(np.append(ids, 999), with_outlier)
    assert dirty.scale[0] == pytest.approx(clean.scale[0], rel=0.02)
    assert dirty.centre[0] == pytest.approx(clean.centre[0], abs=0.02 * clean.scale[0])
    # z-scores by mean and std, for contrast: the outlier squashes feature 0 to nothing
    z = (with_outlier - with_outlier.mean(axis=0)) / with_outlier.std(axis=0)
    overlap_robust, overlap_std = [], []
    for row in range(400):
        expected = set(_ids_of(clean.nearest(row, k=10)))
        robust = _ids_of(dirty.nearest(row, k=10))
        assert 999 not in robust
        overlap_robust.append(len(expected & set(robust)) / 10)
        std_ids, _ = _brute_force(z, np.append(ids, 999), z[row], 10, {row})
        overlap_std.append(len(expected & set(std_ids)) / 10)
    assert np.mean(overlap_robust) >= 0.95
    assert np.mean(overlap_std) < 0.8


def test_constant_and_mostly_constant_features() -> None:
    rng = np.random.default_rng(7)
    data = rng.normal(size=(100, 3))
    data[:, 1] = 42.0  # constant: scale 1.0, normalises to 0
    data[:, 2] = 0.0
    data[:5, 2] = [1.0, 2.0, 3.0, 4.0, 5.0]  # IQR 0, not constant: standard deviation
    index = SimilarityIndex.build(np.arange(100), data)
    assert index.scale[1] == 1.0
    assert index.centre[1] == 42.0
    assert index.scale[2] == pytest.approx(np.std(data[:, 2]))
    assert np.all(index.normalise(data)[:, 1] == 0.0)


def test_non_finite_values_count_as_the_median() -> None:
    rng = np.random.default_rng(8)
    data = rng.normal(size=(50, 4))
    data[3, 0] = np.nan
    data[7, 1] = np.inf
    data[:, 3] = np.nan  # a feature no track has: centre 0, scale 1
    index = SimilarityIndex.build(np.arange(50), data)
    finite = np.delete(data[:, 0], 3)
    assert index.centre[0] == np.median(finite)
    q25, q75 = np.percentile(finite, [25, 75])
    assert index.scale[0] == pytest.approx((q75 - q25) / 1.349)
    assert (index.centre[3], index.scale[3]) == (0.0, 1.0)
    normalised = index.normalise(data)
    assert np.isfinite(normalised).all()
    assert normalised[3, 0] == 0.0
    assert normalised[7, 1] == 0.0
    # a query's missing values also count as the median
    query = np.array([np.nan, 0.3, -np.inf, 5.0])
    filled = np.array([index.centre[0], 0.3, index.centre[2], 5.0])
    assert index.nearest_to_vector(query, k=5) == index.nearest_to_vector(filled, k=5)
    assert len(index.nearest(3, k=49)) == 49


def test_zero_weight_makes_a_feature_irrelevant() -> None:
    data = _random_library(600, d=8, seed=9)
    ids = np.arange(600) + 100
    weights = np.ones(8)
    weights[3] = 0.0
    weighted = SimilarityIndex.build(ids, data, weights=weights)
    dropped = SimilarityIndex.build(ids, np.delete(data, 3, axis=1))
    np.testing.assert_array_equal(weighted.weights, weights)
    for track in ids[::37]:
        a, b = weighted.nearest(int(track), k=10), dropped.nearest(int(track), k=10)
        assert _ids_of(a) == _ids_of(b)
        np.testing.assert_allclose([n.distance for n in a], [n.distance for n in b], rtol=1e-9)
    # a weight of 2 doubles that feature's contribution
    weights[3] = 2.0
    doubled = SimilarityIndex.build(ids, data, weights=weights)
    centre, scale = _reference_scaling(data)
    normalised = (data - centre) / scale * weights
    expected_ids, expected = _brute_force(normalised, ids, normalised[5], 10, {int(ids[5])})
    result = doubled.nearest(int(ids[5]), k=10)
    assert _ids_of(result) == expected_ids
    np.testing.assert_allclose([n.distance for n in result], expected, rtol=1e-4)


# --- immutable snapshots ---


def test_with_rows_and_without_return_new_indexes() -> None:
    data = _random_library(300, d=5, seed=10)
    index = SimilarityIndex.build(np.arange(300), data)
    before = index.nearest(0, k=5)
    ids_before = index.ids.copy()
    assert not index.ids.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        index.ids[0] = 5

    # add a twin of track 0 and move track 1 onto track 0
    grown = index.with_rows([1000, 1], np.vstack([data[0], data[0]]))
    assert len(grown) == 301
    assert len(index) == 300
    assert grown.contains(1000)
    assert not index.contains(1000)
    assert _ids_of(grown.nearest(0, k=2)) == [1, 1000]
    assert all(n.distance == 0.0 for n in grown.nearest(0, k=2))
    np.testing.assert_array_equal(grown.centre, index.centre)  # scaling reused
    assert index.nearest(0, k=5) == before
    np.testing.assert_array_equal(index.ids, ids_before)

    rescaled = index.with_rows([1000], data[:1] + 50.0, rescale=True)
    fresh = SimilarityIndex.build(np.arange(301), np.vstack([data, data[:1] + 50.0]))
    np.testing.assert_allclose(rescaled.scale, fresh.scale)
    np.testing.assert_allclose(rescaled.centre, fresh.centre)

    shrunk = index.without([_ids_of(before)[0], 12345])
    assert len(shrunk) == 299
    assert not shrunk.contains(_ids_of(before)[0])
    assert index.contains(_ids_of(before)[0])
    assert _ids_of(shrunk.nearest(0, k=4)) == _ids_of(before)[1:5]
    assert index.nearest(0, k=5) == before

    empty = SimilarityIndex.build([], np.empty((0, 5)))
    assert len(empty) == 0
    assert empty.nearest_to_vector(np.zeros(5)) == []
    filled = empty.with_rows(np.arange(300), data)  # an empty index has no scaling to keep
    np.testing.assert_allclose(filled.scale, index.scale)


# --- the service ---


class _Loader:
    def __init__(self, data: np.ndarray, delay: float = 0.0) -> None:
        self.data = data
        self.delay = delay
        self.calls = 0
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(5)
        time.sleep(self.delay)
        return np.arange(len(self.data)), self.data.copy()


def test_service_builds_once_under_concurrent_first_use() -> None:
    loader = _Loader(_random_library(500, seed=11), delay=0.05)
    service = SimilarityService(loader)
    barrier = threading.Barrier(16)
    snapshots: list[SimilarityIndex] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        snapshot = service.index()
        with lock:
            snapshots.append(snapshot)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert loader.calls == 1
    assert len(snapshots) == 16
    assert all(s is snapshots[0] for s in snapshots)
    assert service.nearest(0, k=3) == snapshots[0].nearest(0, k=3)
    assert loader.calls == 1


def test_invalidate_rebuilds_while_old_snapshot_holders_stay_consistent() -> None:
    data = _random_library(500, seed=12)
    loader = _Loader(data)
    service = SimilarityService(loader)
    old = service.index()
    expected = old.nearest(0, k=10)
    stop = threading.Event()
    answers: list[list[Neighbour]] = []

    def reader() -> None:
        while not stop.is_set() or not answers:
            answers.append(old.nearest(0, k=10))

    thread = threading.Thread(target=reader)
    thread.start()
    loader.data = data.copy()
    loader.data[expected[0].track_id] += 1000.0  # the old nearest track moves far away
    service.invalidate()
    new = service.index()
    stop.set()
    thread.join(5)
    assert loader.calls == 2
    assert new is not old
    assert service.index() is new
    assert expected[0].track_id not in _ids_of(new.nearest(0, k=10))
    assert answers
    assert all(answer == expected for answer in answers)
    assert old.nearest(0, k=10) == expected


def test_invalidate_during_a_build_and_loader_errors_are_not_cached() -> None:
    loader = _Loader(_random_library(50, seed=13))
    loader.gate = threading.Event()
    service = SimilarityService(loader)
    built: list[SimilarityIndex] = []
    thread = threading.Thread(target=lambda: built.append(service.index()))
    thread.start()
    deadline = time.monotonic() + 5
    while loader.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    service.invalidate()  # the data changed while it was being read
    loader.gate.set()
    thread.join(5)
    assert len(built) == 1
    assert len(built[0]) == 50
    assert service.index() is not built[0]
    assert loader.calls == 2

    attempts: list[int] = []

    def flaky() -> tuple[np.ndarray, np.ndarray]:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("database gone")
        return loader()

    failing = SimilarityService(flaky)
    with pytest.raises(OSError, match="database gone"):
        failing.index()
    assert len(failing.index()) == 50  # nothing was cached: the next call tries again
    assert len(attempts) == 2


# --- parameter errors ---


def test_parameter_errors() -> None:
    data = _random_library(10, d=4, seed=14)
    with pytest.raises(ParameterError, match="shape"):
        SimilarityIndex.build(np.arange(9), data)
    with pytest.raises(ParameterError, match="shape"):
        SimilarityIndex.build(np.arange(10), data.reshape(10, 2, 2))
    with pytest.raises(ParameterError, match="duplicate"):
        SimilarityIndex.build([1, 2, 3, 4, 5, 6, 7, 8, 9, 1], data)
    with pytest.raises(ParameterError, match="integers"):
        SimilarityIndex.build(np.arange(10.0), data)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="weights"):
        SimilarityIndex.build(np.arange(10), data, weights=[1.0, -0.5, 1.0, 1.0])
    with pytest.raises(ParameterError, match="weights"):
        SimilarityIndex.build(np.arange(10), data, weights=[1.0, np.nan, 1.0, 1.0])
    with pytest.raises(ParameterError, match="4 weights"):
        SimilarityIndex.build(np.arange(10), data, weights=[1.0, 1.0])
    index = SimilarityIndex.build(np.arange(10), data)
    with pytest.raises(ParameterError, match="track 77 has no fingerprint"):
        index.nearest(77)
    for k in (0, -3):
        with pytest.raises(ParameterError, match="k must be"):
            index.nearest(1, k=k)
    with pytest.raises(ParameterError, match="k must be"):
        index.nearest_to_vector(data[0], k=0)
    with pytest.raises(ParameterError, match="4 values"):
        index.nearest_to_vector(np.zeros(5))
    with pytest.raises(ParameterError, match="4 values"):
        index.with_rows([20], np.zeros((1, 3)))
    with pytest.raises(ParameterError, match="duplicate"):
        index.with_rows([20, 20], np.zeros((2, 4)))
    assert not index.contains(77)
    assert index.contains(9)
