"""Benchmark similarity search: ``SimilarityIndex`` against brute force at library scale.

Synthesises ``--tracks`` 25-value fingerprints shaped like real ones (a mixture of "genre"
clusters: Dirichlet band energies that sum to 1, loudness in LUFS, tempo in BPM, spectral
centroid in Hz, shares in 0..1...; ambient clusters without a tempo, and a few silent tracks whose
spectral features are NaN), builds the index (best of three builds and the first), then times
``--queries`` ``nearest(k=10)`` calls on random tracks, one at a time on this thread. The
baseline, in the same process on the first ``--baseline-queries`` of those tracks, is the plain
NumPy way over the same normalised float64 matrix: ``np.linalg.norm(Z - Z[row], axis=1)`` then a
stable ``np.argsort``; the script also counts the queries whose ten ids agree. It prints figures
only and asserts nothing.

    .venv/bin/python benchmarks/similarity.py                    # 100,000 tracks, 1,000 queries
    .venv/bin/python benchmarks/similarity.py --tracks 1000000 --queries 200 --seed 3
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import numpy.typing as npt

from tonearm.library.similarity import FINGERPRINT_SIZE, SimilarityIndex

K = 10
# (low, high) of each non-band feature, in FINGERPRINT_FIELDS order after the 7 band energies
RANGES = np.array(
    [
        (-30.0, -5.0),  # loudness_lufs
        (6.0, 20.0),  # crest_db
        (-10.0, 15.0),  # bass_mid_ratio
        (60.0, 200.0),  # tempo_bpm
        (0.0, 1.0),  # rhythm_stability
        (0.0, 8.0),  # transient_density
        (0.0, 0.3),  # silence_ratio
        (500.0, 5000.0),  # spectral_centroid_hz
        (2000.0, 15000.0),  # spectral_rolloff_hz
        (0.0, 0.5),  # spectral_flatness
        (0.2, 1.0),  # harmonic_ratio
        (0.0, 1.0),  # pitch_stability
        (0.0, 0.5),  # chroma_energy
        (0.0, 5.0),  # dynamic_range_variation
        (0.0, 8.0),  # loudness_variation
        (0.0, 1.0),  # peak_consistency
        (0.0, 0.5),  # stereo_width
        (-0.2, 1.0),  # phase_correlation
    ]
)
N_BANDS = FINGERPRINT_SIZE - len(RANGES)
TEMPO = 3  # tempo_bpm's position in RANGES
SPECTRAL = np.array(
    [7, 8, 9, 10]
)  # centroid, rolloff, flatness, harmonic ratio: NaN for silent tracks


def synthesise(
    n: int, clusters: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``(ids (n,), fingerprints (n, 25))``: a mixture of ``clusters`` genre-like clusters."""
    low, high = RANGES[:, 0], RANGES[:, 1]
    centres = rng.uniform(low, high, size=(clusters, len(RANGES)))
    spreads = rng.uniform(0.03, 0.15, size=(clusters, len(RANGES))) * (high - low)
    band_alpha = rng.uniform(0.5, 8.0, size=(clusters, N_BANDS))
    label = rng.choice(clusters, size=n, p=rng.dirichlet(np.full(clusters, 2.0)))
    bands = rng.gamma(band_alpha[label])
    bands /= bands.sum(axis=1, keepdims=True)
    rest = np.clip(centres[label] + spreads[label] * rng.normal(size=(n, len(RANGES))), low, high)
    ambient = label < max(1, clusters // 8)  # clusters without a beat: no tempo reported
    rest[ambient, TEMPO] = 0.0
    silent = rng.random(n) < 0.001
    rest[np.ix_(silent, SPECTRAL)] = np.nan
    ids = np.sort(rng.choice(10 * n, size=n, replace=False)).astype(np.int64) + 1
    return ids, np.hstack([bands, rest])


def describe(name: str, seconds: npt.NDArray[np.float64]) -> None:
    ms = seconds * 1e3
    print(
        f"{name:<12} n={ms.size:<6} mean {ms.mean():7.3f} ms   p50 {np.percentile(ms, 50):7.3f} ms"
        f"   p99 {np.percentile(ms, 99):7.3f} ms   max {ms.max():7.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tracks", type=int, default=100_000, help="fingerprints to index")
    parser.add_argument("--queries", type=int, default=1000, help="nearest(k=10) calls to time")
    parser.add_argument("--baseline-queries", type=int, default=100, help="brute-force calls")
    parser.add_argument("--clusters", type=int, default=40, help="genre-like clusters")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    ids, vectors = synthesise(args.tracks, args.clusters, rng)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(
        f"numpy {np.__version__}, Python {platform.python_version()}, "
        f"OPENBLAS_NUM_THREADS={threads}, {os.cpu_count()} CPUs"
    )
    print(
        f"{args.tracks} tracks x {FINGERPRINT_SIZE} features, {args.clusters} clusters, "
        f"{int(np.isnan(vectors).any(axis=1).sum())} tracks with NaN, seed {args.seed}"
    )

    builds = []
    for _ in range(3):
        start = time.perf_counter()
        index = SimilarityIndex.build(ids, vectors)
        builds.append(time.perf_counter() - start)
    print(f"build        first {builds[0] * 1e3:.1f} ms, best of 3 {min(builds) * 1e3:.1f} ms")

    queries = rng.choice(ids, size=args.queries)
    for track in queries[:20]:  # warm-up
        index.nearest(int(track), k=K)
    timings = np.empty(args.queries)
    results = []
    for i, track in enumerate(queries):
        start = time.perf_counter()
        result = index.nearest(int(track), k=K)
        timings[i] = time.perf_counter() - start
        results.append([n.track_id for n in result])

    normalised = index.normalise(vectors)  # rows in id order, as in the index
    baseline_count = min(args.baseline_queries, args.queries)
    baseline = np.empty(baseline_count)
    agree = 0
    for i, track in enumerate(queries[:baseline_count]):
        start = time.perf_counter()
        row = int(np.searchsorted(ids, track))
        distances = np.linalg.norm(normalised - normalised[row], axis=1)
        distances[row] = np.inf
        nearest = ids[np.argsort(distances, kind="stable")[:K]]
        baseline[i] = time.perf_counter() - start
        agree += nearest.tolist() == results[i]

    describe("index", timings)
    describe("index (same)", timings[:baseline_count])
    describe("brute force", baseline)
    speed_up = baseline.mean() / timings[:baseline_count].mean()
    print(f"speed-up     {speed_up:.1f}x (mean over the same {baseline_count} queries)")
    print(f"agreement    {agree}/{baseline_count} queries return the same {K} ids")


if __name__ == "__main__":
    main()
