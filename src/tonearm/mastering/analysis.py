"""The analysis pass: one streaming read of a track gives everything the planner needs.

:class:`TrackAnalyzer` takes float32 ``(channels, frames)`` blocks and feeds, in one pass:
BS.1770-4 loudness and EBU Tech 3342 loudness range, 4x true peak, level/width statistics, the
loud-part mid/side spectrum, the 25-value fingerprint, and per-5 ms chunk levels for the gain
model. Memory is bounded whatever the length: loudness keeps 10 values per second (0.6 MB for
two hours) and the chunk levels at most ``MAX_CHUNKS`` (5 ms chunks up to about 17 minutes,
coarser beyond).

:func:`measure_file` is the light version used to verify a written file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tonearm.audio_io import AudioInfo, AudioReader
from tonearm.dsp.loudness import KWeighting, LoudnessMeter, LoudnessResult
from tonearm.dsp.spectrum import MidSideSpectrum, SpectrumAccumulator
from tonearm.dsp.stats import LevelStats, LevelStatsAccumulator
from tonearm.dsp.true_peak import TruePeakMeter
from tonearm.events import ProgressCallback, ProgressEvent
from tonearm.mastering.fingerprint import Fingerprint, FingerprintAccumulator
from tonearm.types import AudioArray, validate_audio

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

__all__ = [
    "MAX_CHUNKS",
    "ChunkLevels",
    "MeasuredLevels",
    "TrackAnalysis",
    "TrackAnalyzer",
    "Verification",
    "VerificationMeters",
    "analyze_audio",
    "analyze_file",
    "measure_file",
    "verify_file",
]

MAX_CHUNKS = 200_000  # bounds the gain model's memory (~2.4 MB stored, ~16 MB while solving)
MAX_CHUNKS_PER_SUBBLOCK = 20  # 5 ms chunks; a whole number of them make a 100 ms sub-block


def chunks_per_subblock_for(frames: int, *, sample_rate: int) -> int:
    """Chunk resolution for a track: 20 per 100 ms, fewer when that would pass MAX_CHUNKS."""
    subblocks = max(1.0, 10.0 * frames / sample_rate)
    return int(min(MAX_CHUNKS_PER_SUBBLOCK, max(1, MAX_CHUNKS // subblocks)))


DEFAULT_BLOCK_FRAMES = 65536
LONG_TRACK_S = 60.0
"""From this length on, the loud-part spectrum is taken from adjacent frames, not overlapping."""


def finite_or_none(value: float) -> float | None:
    """JSON has no infinities: -inf loudness (silence) is reported as null."""
    return float(value) if np.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class ChunkLevels:
    """Per-5 ms levels of a track, the input of the gain model.

    All arrays have shape ``(chunks,)``. ``peak`` is the channel-linked sample peak (linear),
    ``k_energy`` the sum over channels of the K-weighted squared samples (BS.1770-4 eq. 2 with
    G = 1), ``mean_square`` the unweighted mean square over channels and frames, and
    ``frames`` the chunk lengths. There are ``chunks_per_subblock`` chunks per BS.1770 100 ms
    sub-block (20, i.e. 5 ms chunks, unless the track is long); with ``c`` chunks per second,
    chunk ``j`` starts at frame ``(2 j rate + c) // (2 c)``.
    """

    peak: npt.NDArray[np.float32]
    k_energy: npt.NDArray[np.float32]
    mean_square: npt.NDArray[np.float32]
    frames: npt.NDArray[np.int32]
    chunks_per_subblock: int = MAX_CHUNKS_PER_SUBBLOCK

    @property
    def chunk_ms(self) -> float:
        """Duration of one chunk in milliseconds."""
        return 100.0 / self.chunks_per_subblock


@dataclass(frozen=True, slots=True)
class MeasuredLevels:
    """The headline measurements of a signal (input or output of a master)."""

    integrated_lufs: float
    true_peak_dbtp: float
    loudness_range_lu: float
    sample_peak_dbfs: float
    crest_db: float
    side_to_mid_db: float
    correlation: float
    short_term_max_lufs: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-safe mapping (infinities become None)."""
        return {name: finite_or_none(getattr(self, name)) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class TrackAnalysis:
    """Everything the analysis pass learned about one track."""

    sample_rate: int
    channels: int
    frames: int
    loudness: LoudnessResult
    true_peak_dbtp: float
    levels: LevelStats
    spectrum: MidSideSpectrum
    fingerprint: Fingerprint | None
    chunks: ChunkLevels

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    @property
    def measured(self) -> MeasuredLevels:
        """Headline measurements."""
        return _measured(self.loudness, self.true_peak_dbtp, self.levels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the ``tonearm analyze --json`` object, less the path)."""
        return {
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "duration_s": self.duration_s,
            **self.measured.to_dict(),
            "momentary_max_lufs": finite_or_none(self.loudness.momentary_max_lufs),
            "rms_dbfs": finite_or_none(self.levels.rms_dbfs),
            "width": self.levels.width,
            "fingerprint": None if self.fingerprint is None else self.fingerprint.to_dict(),
            "fingerprint_version": None if self.fingerprint is None else self.fingerprint.version,
        }


def _measured(
    loudness: LoudnessResult, true_peak_dbtp: float, levels: LevelStats
) -> MeasuredLevels:
    return MeasuredLevels(
        integrated_lufs=loudness.integrated_lufs,
        true_peak_dbtp=true_peak_dbtp,
        loudness_range_lu=loudness.loudness_range_lu,
        sample_peak_dbfs=levels.sample_peak_dbfs,
        crest_db=levels.crest_db,
        side_to_mid_db=levels.side_to_mid_db,
        correlation=levels.correlation,
        short_term_max_lufs=loudness.short_term_max_lufs,
    )


class _ChunkAccumulator:
    """Reduces K-weighted and plain blocks to :class:`ChunkLevels`."""

    def __init__(self, *, sample_rate: int, chunks_per_subblock: int) -> None:
        self._rate = sample_rate
        self._per_subblock = chunks_per_subblock
        self._per_second = 10 * chunks_per_subblock
        self.reset()

    def reset(self) -> None:
        self._position = 0
        self._parts: list[tuple[npt.NDArray[np.float32], ...]] = []
        self._open = (0.0, 0.0, 0.0, 0)  # peak, k_energy, square sum, frames of the open chunk
        self._open_chunk = -1  # index of the chunk the open sums belong to

    def _start(self, chunk: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return (2 * chunk * self._rate + self._per_second) // (2 * self._per_second)

    def push(self, block: AudioArray, weighted: AudioArray) -> None:
        n = block.shape[1]
        if n == 0:
            return
        first = self._position
        last = first + n
        # chunk j starts at (2 j rate + c) // (2 c): frame f is in chunk (2 c f + c - 1) // (2 rate)
        per_second = self._per_second
        first_chunk = (2 * per_second * first + per_second - 1) // (2 * self._rate)
        last_chunk = (2 * per_second * (last - 1) + per_second - 1) // (2 * self._rate)
        chunk_ids = np.arange(first_chunk + 1, last_chunk + 1, dtype=np.int64)
        starts = self._start(chunk_ids) - first
        cuts = np.concatenate(([0], starts)).astype(np.intp)
        peak = np.maximum.reduceat(np.abs(block).max(axis=0), cuts)
        k_energy = np.add.reduceat(np.square(weighted).sum(axis=0), cuts)
        squares = np.add.reduceat(np.square(block).sum(axis=0), cuts)
        frames = np.diff(np.append(cuts, n))
        if self._open_chunk == first_chunk:  # the block continues the open chunk
            open_peak, open_k, open_sq, open_frames = self._open
            peak[0] = max(peak[0], open_peak)
            k_energy[0] += open_k
            squares[0] += open_sq
            frames[0] += open_frames
        else:  # the previous block ended exactly where a chunk ends: it is complete
            self._close_open(channels=block.shape[0])
        self._open = (float(peak[-1]), float(k_energy[-1]), float(squares[-1]), int(frames[-1]))
        self._open_chunk = last_chunk
        if peak.shape[0] > 1:
            self._parts.append(
                (
                    peak[:-1].astype(np.float32),
                    k_energy[:-1].astype(np.float32),
                    (squares[:-1] / (frames[:-1] * block.shape[0])).astype(np.float32),
                    frames[:-1].astype(np.float32),
                )
            )
        self._position = last

    def _open_part(self, *, channels: int) -> list[tuple[npt.NDArray[np.float32], ...]]:
        """The open chunk as a finished part (empty list if nothing is open)."""
        open_peak, open_k, open_sq, open_frames = self._open
        if not open_frames:
            return []
        values = (open_peak, open_k, open_sq / (open_frames * channels), open_frames)
        return [tuple(np.array([value], dtype=np.float32) for value in values)]

    def _close_open(self, *, channels: int) -> None:
        """Move the open chunk's sums, if any, to the finished chunks."""
        self._parts.extend(self._open_part(channels=channels))
        self._open = (0.0, 0.0, 0.0, 0)
        self._open_chunk = -1

    def result(self, *, channels: int) -> ChunkLevels:
        parts = self._parts + self._open_part(channels=channels)
        if not parts:
            empty = np.zeros(0, dtype=np.float32)
            return ChunkLevels(empty, empty, empty, np.zeros(0, dtype=np.int32), self._per_subblock)
        peak, k_energy, mean_square, frames = (
            np.concatenate(col) for col in zip(*parts, strict=True)
        )
        return ChunkLevels(peak, k_energy, mean_square, frames.astype(np.int32), self._per_subblock)


class TrackAnalyzer:
    """Streaming analysis of one track; ``push`` blocks, then ``result()``; ``reset()`` to reuse.

    ``fingerprint=False`` skips the 25-value fingerprint (the library needs it, a master does
    not); the result's ``fingerprint`` is then None. ``chunks=False`` skips the 5 ms chunk
    levels the gain model of a master needs (a reference does not); the result's ``chunks`` is
    then empty. ``expected_frames`` (the probed length)
    sets the chunk resolution so that memory stays bounded for long tracks.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int,
        fingerprint: bool = True,
        expected_frames: int = 0,
        chunks: bool = True,
    ) -> None:
        self.sample_rate = sample_rate
        self._with_chunks = chunks
        self.channels = channels
        self._weighting = KWeighting(sample_rate=sample_rate, channels=channels)
        self._loudness = LoudnessMeter(sample_rate=sample_rate, channels=channels)
        self._true_peak = TruePeakMeter(channels=channels)
        self._levels = LevelStatsAccumulator(channels=channels)
        # frames overlap on short tracks, where every frame counts; a long one has frames
        # enough without (a minute holds ~320), for half the FFT work
        long_track = expected_frames >= LONG_TRACK_S * sample_rate
        self._spectrum = SpectrumAccumulator(
            sample_rate=sample_rate, channels=channels, overlap=not long_track
        )
        self._fingerprint = (
            FingerprintAccumulator(sample_rate=sample_rate, channels=channels)
            if fingerprint
            else None
        )
        self._chunks = _ChunkAccumulator(
            sample_rate=sample_rate,
            chunks_per_subblock=chunks_per_subblock_for(expected_frames, sample_rate=sample_rate),
        )
        self._frames = 0

    def reset(self) -> None:
        """Forget everything pushed so far."""
        for part in (
            self._weighting,
            self._loudness,
            self._true_peak,
            self._levels,
            self._spectrum,
            self._chunks,
        ):
            part.reset()
        if self._fingerprint is not None:
            self._fingerprint.reset()
        self._frames = 0

    def push(self, block: AudioArray) -> None:
        """Analyse the next block of the stream."""
        weighted = self._weighting.process(block)
        self._loudness.push_k_weighted(weighted)
        self._true_peak.push(block)
        self._levels.push(block)
        self._spectrum.push(block)
        if self._fingerprint is not None:
            self._fingerprint.push(block)
        if self._with_chunks:
            self._chunks.push(block, weighted)
        self._frames += block.shape[1]

    def result(self) -> TrackAnalysis:
        """The analysis of everything pushed so far."""
        loudness = self._loudness.result()
        return TrackAnalysis(
            sample_rate=self.sample_rate,
            channels=self.channels,
            frames=self._frames,
            loudness=loudness,
            true_peak_dbtp=self._true_peak.peak_dbtp,
            levels=self._levels.result(),
            spectrum=self._spectrum.result(),
            fingerprint=None
            if self._fingerprint is None
            else self._fingerprint.result(integrated_lufs=loudness.integrated_lufs),
            chunks=self._chunks.result(channels=self.channels),
        )


def _report(
    on_progress: ProgressCallback | None, stage: str, done: int, total: int, attempt: int = 1
) -> None:
    if on_progress is not None:
        on_progress(ProgressEvent(stage, done, total, attempt))  # type: ignore[arg-type]


def analyze_blocks(
    blocks: Iterable[AudioArray],
    *,
    sample_rate: int,
    channels: int,
    frames_total: int = 0,
    on_progress: ProgressCallback | None = None,
    fingerprint: bool = True,
    chunks: bool = True,
) -> TrackAnalysis:
    """Run the analysis pass over a stream of blocks (see :class:`TrackAnalyzer`)."""
    analyzer = TrackAnalyzer(
        sample_rate=sample_rate,
        channels=channels,
        fingerprint=fingerprint,
        expected_frames=frames_total,
        chunks=chunks,
    )
    done = 0
    for block in blocks:
        analyzer.push(block)
        done += block.shape[1]
        _report(on_progress, "analyse", done, frames_total)
    return analyzer.result()


def analyze_audio(audio: AudioArray, *, sample_rate: int) -> TrackAnalysis:
    """Analyse an in-memory signal (float32, shape (channels, frames))."""
    validate_audio(audio, sample_rate=sample_rate)
    blocks = (
        audio[:, start : start + DEFAULT_BLOCK_FRAMES]
        for start in range(0, audio.shape[1], DEFAULT_BLOCK_FRAMES)
    )
    return analyze_blocks(
        blocks, sample_rate=sample_rate, channels=audio.shape[0], frames_total=audio.shape[1]
    )


def analyze_file(
    path: str | os.PathLike[str],
    *,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    on_progress: ProgressCallback | None = None,
    info: AudioInfo | None = None,
    fingerprint: bool = True,
    chunks: bool = True,
) -> TrackAnalysis:
    """Analyse a file in one streaming pass (flat memory); ``info`` skips a repeated probe."""
    with AudioReader(path, info=info) as reader:
        info = reader.info
        return analyze_blocks(
            reader.blocks(block_frames=block_frames),
            sample_rate=info.sample_rate,
            channels=info.channels,
            frames_total=info.frames,
            on_progress=on_progress,
            fingerprint=fingerprint,
            chunks=chunks,
        )


@dataclass(frozen=True, slots=True)
class Verification:
    """What the verify pass measured on a written file."""

    levels: MeasuredLevels
    short_term_lufs: npt.NDArray[np.float32]
    spectrum: MidSideSpectrum | None


class VerificationMeters:
    """The verify pass's meters over a stream of output blocks: loudness, LRA, true peak,
    levels, and the spectrum when asked.

    Fed either by decoding a written file (:func:`verify_file`) or, for lossless formats, with
    the exact samples the encoder stored (``AtomicAudioWriter(on_written=...)``): a PCM or float
    file decodes to those samples bit for bit, so both give the same figures.
    """

    def __init__(self, *, sample_rate: int, channels: int, spectrum: bool = False) -> None:
        self._loudness = LoudnessMeter(sample_rate=sample_rate, channels=channels)
        self._true_peak = TruePeakMeter(channels=channels)
        self._levels = LevelStatsAccumulator(channels=channels)
        # the verified spectrum is only reported: frames without overlap halve its cost
        self._spectrum = (
            SpectrumAccumulator(sample_rate=sample_rate, channels=channels, overlap=False)
            if spectrum
            else None
        )
        self.frames = 0

    def push(self, block: AudioArray) -> None:
        """Measure one block, float32 ``(channels, frames)``."""
        self._loudness.push(block)
        self._true_peak.push(block)
        self._levels.push(block)
        if self._spectrum is not None:
            self._spectrum.push(block)
        self.frames += block.shape[1]

    def result(self) -> Verification:
        """What was measured over every block pushed."""
        loudness = self._loudness.result()
        return Verification(
            levels=_measured(loudness, self._true_peak.peak_dbtp, self._levels.result()),
            short_term_lufs=loudness.short_term_lufs,
            spectrum=None if self._spectrum is None else self._spectrum.result(),
        )


def verify_file(
    path: str | os.PathLike[str],
    *,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    on_progress: ProgressCallback | None = None,
    attempt: int = 1,
    spectrum: bool = False,
) -> Verification:
    """Measure a written file: loudness, LRA, true peak, levels (and its spectrum if asked)."""
    with AudioReader(path) as reader:
        info = reader.info
        meters = VerificationMeters(
            sample_rate=info.sample_rate, channels=info.channels, spectrum=spectrum
        )
        for block in reader.blocks(block_frames=block_frames):
            meters.push(block)
            _report(on_progress, "verify", meters.frames, info.frames, attempt)
    return meters.result()


def measure_file(
    path: str | os.PathLike[str],
    *,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    on_progress: ProgressCallback | None = None,
    attempt: int = 1,
) -> MeasuredLevels:
    """Measure loudness, loudness range, true peak and levels of a written file."""
    return verify_file(
        path, block_frames=block_frames, on_progress=on_progress, attempt=attempt
    ).levels
