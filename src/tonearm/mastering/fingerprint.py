"""The 25-value audio fingerprint: similarity search in the library and content-aware planning.

One streaming pass (:class:`FingerprintAccumulator`) over ``(channels, frames)`` blocks of any size
keeps O(1) running sums plus three float32 series that grow by ``3 * sample_rate / hop`` values per
second of audio (about 129 at 44.1 kHz, half a kilobyte). Internally:

- time domain, both channels: overall peak and ``sum(L^2)``, ``sum(R^2)``, ``sum(L R)`` (crest,
  width, correlation), and per ``hop``-sample chunk (23 ms at 44.1 kHz) the peak and mean square;
- a Hann-windowed STFT of the mono downmix ``(L + R) / 2`` (2048 points at 44.1 kHz, scaled to the
  power of two nearest ``2048 * rate / 44100``, hop = half): the long-term power spectrum, chroma,
  spectral flatness, a sustained-energy share and a spectral-flux onset envelope (log-spaced bands
  40 Hz-16 kHz, none narrower than 90 Hz).

Feature definitions, in ``FINGERPRINT_FIELDS`` order ("active" STFT frames are those above -70 dB;
seconds are groups of ``round(sample_rate / hop)`` chunks; floors in brackets are what silence or
too-short audio gives):

1-7. ``*_energy``: share of the long-term spectrum's power in 20-60, 60-250, 250-500, 500-2000,
     2000-4000, 4000-6000 and 6000-20000 Hz (clipped to Nyquist); they sum to 1 [all 0].
8. ``loudness_lufs``: the caller's BS.1770 integrated loudness, floored at -70 [-70].
9. ``crest_db``: overall sample peak over overall RMS (both channels), dB [0].
10. ``bass_mid_ratio``: bass (60-250 Hz) over mid (500-2000 Hz) power of the long-term spectrum,
    dB, clipped to +-60 [0].
11. ``tempo_bpm``: autocorrelation of the smoothed onset envelope over 60-200 BPM, weighted by a
    log-Gaussian prior around 120 BPM (1 octave wide), refined on the peaks at 2-4 periods [0].
12. ``rhythm_stability``: normalised autocorrelation at the tempo's period, 0..1 [0].
13. ``transient_density``: onsets per second, local maxima of the onset envelope above a running
    median plus a margin [0].
14. ``silence_ratio``: share of chunks whose RMS is below -60 dBFS [1 for silence, 0 for no audio].
15. ``spectral_centroid_hz``: power-weighted mean frequency of the long-term spectrum [0].
16. ``spectral_rolloff_hz``: frequency below which 85 % of the long-term power lies [0].
17. ``spectral_flatness``: per-frame geometric over arithmetic mean power (20 Hz-16 kHz),
    averaged over active frames; about 0.55 for white noise, near 0 for a sine [0].
18. ``harmonic_ratio``: share of the power that persists: per bin, the minimum over 4 consecutive
    frames summed against the plain sum (1 for a steady tone, ~0.3 for noise, low for hits) [0].
19. ``pitch_stability``: share of consecutive active frame pairs with the same dominant pitch
    class (chroma from 80 Hz-5 kHz) [0].
20. ``chroma_energy``: ``1 - entropy / log(12)`` of the mean per-frame-normalised chroma [0].
21. ``dynamic_range_variation``: std over non-silent seconds of the per-second crest, dB [0].
22. ``loudness_variation``: std (LU) of 3 s unweighted short-term levels (one per chunk) gated at
    -60 dBFS absolute and -20 LU below their power mean, as EBU Tech 3342 does [0].
23. ``peak_consistency``: ``1 - std / mean`` of the per-second peaks of non-silent seconds,
    clipped to 0..1 [0; 1 for a single second].
24. ``stereo_width``: side energy over mid + side energy, 0..1 [0; 0 for mono].
25. ``phase_correlation``: ``sum(L R) / sqrt(sum(L^2) sum(R^2))``, -1..1 [1 for mono and silence;
    0 when one channel is silent].
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.ndimage

from tonearm.dsp.framing import BlockFramer, Rechunker
from tonearm.dsp.spectrum import hann_window
from tonearm.errors import ParameterError
from tonearm.mastering.rhythm import count_onsets, estimate_tempo
from tonearm.types import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioArray, validate_audio

__all__ = [
    "FINGERPRINT_FIELDS",
    "FINGERPRINT_VERSION",
    "Fingerprint",
    "FingerprintAccumulator",
    "fingerprint_of",
]

FINGERPRINT_VERSION = 1

BAND_EDGES_HZ = (20.0, 60.0, 250.0, 500.0, 2000.0, 4000.0, 6000.0, 20000.0)
"""Edges of the seven contiguous band-energy fields, Hz (bins above Nyquist simply don't exist)."""

LOUDNESS_FLOOR_LUFS = -70.0
BASS_MID_LIMIT_DB = 60.0
"""Below this normalised autocorrelation peak no tempo is reported (``tempo_bpm == 0``)."""

_ACTIVE_MS = 1e-7  # -70 dB: STFT frames quieter than this take no part in spectral features
_SILENT_MS = 1e-6  # -60 dBFS: chunk/second silence threshold
_FLUX_FLOOR = 1e-9  # -90 dB band-power floor of the onset envelope
_N_FLUX_BANDS = 24  # log-spaced candidates, merged to >= _FLUX_MIN_WIDTH_HZ
_FLUX_MIN_WIDTH_HZ = 90.0
_HARMONIC_SPAN = 4  # frames over which a bin must persist to count as sustained
_PIECE = 1 << 16  # samples per channel handled at a time, to keep temporaries small
_CHUNK_FRAMES = 64  # STFT frames per internal batch


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """25 finite floats describing a piece (see the module docstring for each definition).

    The field order is the vector order of :meth:`as_vector` and ``FINGERPRINT_FIELDS``.
    """

    sub_bass_energy: float
    bass_energy: float
    low_mid_energy: float
    mid_energy: float
    upper_mid_energy: float
    presence_energy: float
    air_energy: float
    loudness_lufs: float
    crest_db: float
    bass_mid_ratio: float
    tempo_bpm: float
    rhythm_stability: float
    transient_density: float
    silence_ratio: float
    spectral_centroid_hz: float
    spectral_rolloff_hz: float
    spectral_flatness: float
    harmonic_ratio: float
    pitch_stability: float
    chroma_energy: float
    dynamic_range_variation: float
    loudness_variation: float
    peak_consistency: float
    stereo_width: float
    phase_correlation: float
    version: int = FINGERPRINT_VERSION

    def as_vector(self) -> npt.NDArray[np.float32]:
        """The 25 values in ``FINGERPRINT_FIELDS`` order, shape (25,), float32."""
        return np.array([getattr(self, name) for name in FINGERPRINT_FIELDS], dtype=np.float32)

    def to_dict(self) -> dict[str, float]:
        """``{field: value}`` for the 25 fields (without ``version``), plain floats."""
        values = asdict(self)
        return {name: float(values[name]) for name in FINGERPRINT_FIELDS}

    @classmethod
    def from_vector(cls, vec: npt.ArrayLike, *, version: int = FINGERPRINT_VERSION) -> Fingerprint:
        """Inverse of :meth:`as_vector`: 25 values in ``FINGERPRINT_FIELDS`` order."""
        arr = np.asarray(vec, dtype=np.float64).reshape(-1)
        if arr.shape != (len(FINGERPRINT_FIELDS),):
            raise ParameterError(
                f"expected {len(FINGERPRINT_FIELDS)} fingerprint values, got {arr.size}"
            )
        if not np.isfinite(arr).all():
            raise ParameterError("fingerprint values must be finite")
        values = dict(zip(FINGERPRINT_FIELDS, (float(v) for v in arr), strict=True))
        return cls(**values, version=version)


FINGERPRINT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(Fingerprint) if f.name != "version"
)
"""The 25 field names in vector order (the order of :class:`Fingerprint`'s fields)."""

_UNIT_FIELDS = [  # the 0..1 fields
    FINGERPRINT_FIELDS.index(name)
    for name in [
        "rhythm_stability",
        "silence_ratio",
        "spectral_flatness",
        "harmonic_ratio",
        "pitch_stability",
        "chroma_energy",
        "peak_consistency",
        "stereo_width",
    ]
]


@dataclass(frozen=True, slots=True)
class _Layout:
    """Per-rate analysis constants (read-only, cached).

    Band sums use ``np.add.reduceat`` over contiguous bin ranges, not matrix products: tiny BLAS
    calls spawn threads that fight the caller's own thread pool.
    """

    n_fft: int
    hop: int
    freqs_hz: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]  # raw |X|^2 -> mean-square power per bin
    flux_cuts: npt.NDArray[np.intp]  # bin ranges of the onset bands (last cut = end of last band)
    semitone_cuts: npt.NDArray[np.intp]  # bin ranges of the semitones 80 Hz-5 kHz, same layout
    semitone_order: npt.NDArray[np.intp]  # semitones sorted by pitch class
    class_cuts: npt.NDArray[np.intp]  # start of each of the 12 classes in that order
    band_lo: int  # bins [band_lo, band_hi) feed flatness and the sustained share
    band_hi: int


@functools.lru_cache(maxsize=16)
def _layout(sample_rate: int) -> _Layout:
    n_fft = int(2 ** round(math.log2(2048 * sample_rate / 44100)))
    n_bins = n_fft // 2 + 1
    freqs = np.arange(n_bins, dtype=np.float64) * (sample_rate / n_fft)
    window = hann_window(n_fft).astype(np.float64)
    # The STFT sees L + R (twice the downmix): a factor 1/4 in power.
    scale = np.full(n_bins, 2.0 / (4.0 * n_fft * float(np.sum(window**2))))
    scale[0] *= 0.5
    scale[-1] *= 0.5
    nyquist = sample_rate / 2.0
    flux_cuts = np.unique(np.searchsorted(freqs, _flux_band_edges(min(16000.0, 0.95 * nyquist))))
    chroma_bins = np.flatnonzero((freqs >= 80.0) & (freqs <= min(5000.0, 0.95 * nyquist)))
    semitone = np.round(12.0 * np.log2(freqs[chroma_bins] / 440.0)).astype(np.intp)
    _, first = np.unique(semitone, return_index=True)
    semitone_cuts = np.append(chroma_bins[first], chroma_bins[-1] + 1)
    pitch_class = (semitone[first] + 9) % 12  # C = 0
    order = np.argsort(pitch_class, kind="stable")
    class_cuts = np.searchsorted(pitch_class[order], np.arange(12))
    band_lo = int(np.searchsorted(freqs, 20.0))
    band_hi = max(band_lo + 1, int(np.searchsorted(freqs, min(16000.0, nyquist))))
    arrays = (freqs, scale, flux_cuts, semitone_cuts, order, class_cuts)
    for arr in arrays:
        arr.flags.writeable = False
    return _Layout(n_fft, n_fft // 2, *arrays, band_lo, band_hi)


def _flux_band_edges(f_max_hz: float) -> npt.NDArray[np.float64]:
    """Log-spaced onset bands from 40 Hz, merged so none is narrower than 90 Hz.

    Narrow bands hold few bins whose random power fluctuations would read as onsets in noise.
    """
    candidates = np.geomspace(40.0, f_max_hz, _N_FLUX_BANDS + 1)
    edges = [float(candidates[0])]
    for edge in candidates[1:-1]:
        if edge - edges[-1] >= _FLUX_MIN_WIDTH_HZ and candidates[-1] - edge >= _FLUX_MIN_WIDTH_HZ:
            edges.append(float(edge))
    edges.append(float(candidates[-1]))
    return np.asarray(edges)


class _Series:
    """A growable float32 vector (amortised doubling)."""

    __slots__ = ("_data", "_size")

    def __init__(self) -> None:
        self._data = np.zeros(1024, dtype=np.float32)
        self._size = 0

    def clear(self) -> None:
        self._size = 0

    def extend(self, values: npt.NDArray[np.float32]) -> None:
        end = self._size + values.size
        if end > self._data.size:
            grown = np.zeros(max(end, 2 * self._data.size), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = values
        self._size = end

    def view(self) -> npt.NDArray[np.float32]:
        return self._data[: self._size]


class FingerprintAccumulator:
    """Streaming computation of :class:`Fingerprint` (all but the integrated loudness).

    Parameters
    ----------
    sample_rate : int
        Hz, 8000..192000.
    channels : int
        1 or 2; every pushed block must have this many.
    """

    def __init__(self, *, sample_rate: int, channels: int) -> None:
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise ParameterError(
                f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
            )
        if channels not in (1, 2):
            raise ParameterError(f"expected 1 or 2 channels, got {channels}")
        self.sample_rate = sample_rate
        self.channels = channels
        self._lay = _layout(sample_rate)
        hop, n_fft = self._lay.hop, self._lay.n_fft
        self._window = hann_window(n_fft)
        self._rechunker = Rechunker(channels=channels, piece=_PIECE)
        self._stft = BlockFramer(channels=1, frame_length=n_fft, hop=hop)
        self._chunks = BlockFramer(channels=channels, frame_length=hop, hop=hop)
        n_bins = n_fft // 2 + 1
        n_band = self._lay.band_hi - self._lay.band_lo
        self._power_sum = np.zeros(n_bins, dtype=np.float64)
        # Scratch buffers, reused batch after batch (large temporaries would be page-faulted
        # in afresh on every allocation). The first rows of _pad carry the last frames' band
        # power from one batch to the next.
        self._mono = np.empty((1, _PIECE), dtype=np.float32)
        self._windowed = np.empty((_CHUNK_FRAMES, n_fft), dtype=np.float32)
        self._power = np.empty((_CHUNK_FRAMES, n_bins), dtype=np.float32)
        self._pad = np.zeros((_CHUNK_FRAMES + _HARMONIC_SPAN - 1, n_band), dtype=np.float32)
        self._scratch = np.empty((_CHUNK_FRAMES, n_band), dtype=np.float32)
        self._prev_flux_db = np.zeros(self._lay.flux_cuts.size - 1, dtype=np.float32)
        self._chroma_sum = np.zeros(12, dtype=np.float64)
        self._onset = _Series()
        self._chunk_peak = _Series()
        self._chunk_ms = _Series()
        self.reset()

    def reset(self) -> None:
        """Forget everything pushed so far."""
        self._rechunker.reset()
        self._stft.reset()
        self._chunks.reset()
        self._onset.clear()
        self._chunk_peak.clear()
        self._chunk_ms.clear()
        self._n_samples = self._n_frames = self._active_frames = 0
        self._peak = self._sum_ll = self._sum_rr = self._sum_lr = 0.0
        self._flatness_sum = self._sustained_sum = self._plain_sum = 0.0
        self._pitch_pairs = self._pitch_same = 0
        self._prev_pitch = -1  # dominant pitch class of the previous frame, -1 if not active
        for array in (self._power_sum, self._pad, self._prev_flux_db, self._chroma_sum):
            array.fill(0.0)

    def push(self, block: AudioArray) -> None:
        """Add a block, shape ``(channels, frames)`` float32, any number of frames.

        NaN/Inf samples are not checked here (the decoder edge does that).
        """
        validate_audio(block, check_finite=False)
        if block.shape[0] != self.channels:
            raise ParameterError(f"expected {self.channels} channels, got {block.shape[0]}")
        for part in self._rechunker.push(block):  # fixed pieces, whatever the block size
            self._push_piece(part)

    def _push_piece(self, part: AudioArray) -> None:
        self._n_samples += part.shape[1]
        self._peak = max(self._peak, float(part.max()), -float(part.min()))
        left = part[0]  # einsum, not np.dot: BLAS would thread even these
        self._sum_ll += float(np.einsum("i,i->", left, left))
        if self.channels == 2:
            right = part[1]
            self._sum_rr += float(np.einsum("i,i->", right, right))
            self._sum_lr += float(np.einsum("i,i->", left, right))
            mono = self._mono[:, : part.shape[1]]
            np.add(left, right, out=mono[0])
        else:
            mono = self._mono[:, : part.shape[1]]
            np.add(left, left, out=mono[0])  # the STFT works on L + R: 2x the mono signal
        hop = self._lay.hop
        for span in self._chunks.push(part):
            chunks = span.reshape(self.channels, -1, hop)
            peaks = np.maximum(chunks.max(axis=(0, 2)), -chunks.min(axis=(0, 2)))
            self._chunk_peak.extend(peaks)
            ms = np.einsum("cnh,cnh->n", chunks, chunks) / np.float32(self.channels * hop)
            self._chunk_ms.extend(ms.astype(np.float32))
        for span in self._stft.push(mono):
            frames = self._stft.frames(span)[0]
            for start in range(0, frames.shape[0], _CHUNK_FRAMES):
                self._analyse(frames[start : start + _CHUNK_FRAMES])

    def _analyse(self, frames: npt.NDArray[np.float32]) -> None:
        """Spectral features of a batch of STFT frames, shape (n, n_fft)."""
        lay = self._lay
        n = frames.shape[0]
        windowed = self._windowed[:n]
        np.multiply(frames, self._window, out=windowed)
        spec = scipy.fft.rfft(windowed, axis=-1)
        flat = spec.view(np.float32)
        np.square(flat, out=flat)
        power = self._power[:n]
        np.add(flat[:, 0::2], flat[:, 1::2], out=power)  # raw |X|^2, (n, nbins)
        del spec, flat
        scale = lay.scale[1]
        frame_ms = scale * (power.sum(axis=1) - 0.5 * (power[:, 0] + power[:, -1]))
        active = frame_ms > _ACTIVE_MS
        n_active = int(np.count_nonzero(active))
        self._n_frames += n
        if n_active == n:
            self._power_sum += power.sum(axis=0)
        elif n_active:
            self._power_sum += power[active].sum(axis=0)
        # Onset envelope: mean positive dB rise per band against the previous frame.
        bands = np.add.reduceat(power, lay.flux_cuts, axis=1)[:, :-1]
        flux_db = 10.0 * np.log10(np.maximum(scale * bands, _FLUX_FLOOR))
        if self._n_frames == n:
            self._prev_flux_db = flux_db[0].copy()
        rise = np.diff(flux_db, axis=0, prepend=self._prev_flux_db[np.newaxis])
        self._onset.extend(np.maximum(rise, 0.0).mean(axis=1, dtype=np.float32))
        self._prev_flux_db = flux_db[-1].copy()
        # Sustained share: per bin, the minimum over the last _HARMONIC_SPAN frames.
        carry = _HARMONIC_SPAN - 1
        padded = self._pad[: n + carry]
        padded[carry:] = power[:, lay.band_lo : lay.band_hi]
        band = padded[carry:]
        floor = self._scratch[:n]
        np.minimum(padded[:n], padded[1 : n + 1], out=floor)
        for k in range(2, _HARMONIC_SPAN):
            np.minimum(floor, padded[k : k + n], out=floor)
        self._sustained_sum += float(floor.sum(axis=1)[active].sum())
        band_sum = band.sum(axis=1, dtype=np.float64)
        self._plain_sum += float(band_sum[active].sum())
        # Flatness: geometric / arithmetic mean power, with a tiny per-frame floor.
        mean_power = band_sum / band.shape[1]
        eps = (1e-10 * mean_power + 1e-30).astype(np.float32)
        logs = np.add(band, eps[:, np.newaxis], out=floor)
        np.log(logs, out=logs)
        flatness = np.exp(logs.mean(axis=1, dtype=np.float64)) / (mean_power + 1e-30)
        self._flatness_sum += float(np.sum(flatness[active]))
        self._active_frames += n_active
        padded[:carry] = padded[n : n + carry].copy()
        # Chroma: mean of per-frame normalised pitch-class vectors, and the dominant class.
        semitones = np.add.reduceat(power, lay.semitone_cuts, axis=1)[:, :-1]
        chroma = np.add.reduceat(semitones[:, lay.semitone_order], lay.class_cuts, axis=1)
        chroma_total = chroma.sum(axis=1)
        tonal = active & (chroma_total > 0.0)
        self._chroma_sum += (chroma[tonal] / chroma_total[tonal, np.newaxis]).sum(axis=0)
        pitch = np.where(tonal, np.argmax(chroma, axis=1), -1)
        previous = np.concatenate(([self._prev_pitch], pitch[:-1]))
        valid = (pitch >= 0) & (previous >= 0)
        self._pitch_pairs += int(np.count_nonzero(valid))
        self._pitch_same += int(np.count_nonzero(valid & (pitch == previous)))
        self._prev_pitch = int(pitch[-1])

    def result(self, *, integrated_lufs: float) -> Fingerprint:
        """The fingerprint of everything pushed since construction or :meth:`reset`.

        Parameters
        ----------
        integrated_lufs : float
            BS.1770 integrated loudness the caller measured; ``-inf``/NaN and values below
            -70 LUFS are reported as -70.

        May be called at any time; pushing more afterwards continues the same stream.
        """
        for part in self._rechunker.flush():
            self._push_piece(part)
        lay = self._lay
        loudness = float(integrated_lufs)
        if not math.isfinite(loudness) or loudness < LOUDNESS_FLOOR_LUFS:
            loudness = LOUDNESS_FLOOR_LUFS
        bands, bass_mid, centroid, rolloff = self._spectral_shape()
        tempo, rhythm = estimate_tempo(self._onset.view(), self.sample_rate / lay.hop)
        duration = self._n_samples / self.sample_rate
        onsets = count_onsets(self._onset.view(), self.sample_rate / lay.hop)
        silence, crest_std, loudness_std, peak_consistency = _level_features(
            self._chunk_peak.view(), self._chunk_ms.view(), round(self.sample_rate / lay.hop)
        )
        frames = max(self._active_frames, 1)
        chroma = self._chroma_sum
        chroma_energy = 0.0
        if chroma.sum() > 0.0:
            p = chroma / chroma.sum()
            nz = p[p > 0.0]
            chroma_energy = 1.0 - float(-np.sum(nz * np.log(nz))) / math.log(12.0)
        total_ms = (self._sum_ll + self._sum_rr) / max(self.channels * self._n_samples, 1)
        crest = 0.0
        if total_ms > 0.0 and self._peak > 0.0:
            crest = 20.0 * math.log10(self._peak) - 10.0 * math.log10(total_ms)
        if self._chunk_ms.view().size == 0 and self._n_samples:
            silence = 1.0 if total_ms < _SILENT_MS else 0.0
        width, correlation = 0.0, 1.0
        if self.channels == 2:
            mid = self._sum_ll + self._sum_rr + 2.0 * self._sum_lr
            side = self._sum_ll + self._sum_rr - 2.0 * self._sum_lr
            if mid + side > 0.0:
                width = max(0.0, side) / (max(0.0, mid) + max(0.0, side))
            if self._sum_ll > 0.0 and self._sum_rr > 0.0:
                correlation = self._sum_lr / math.sqrt(self._sum_ll * self._sum_rr)
            elif self._sum_ll > 0.0 or self._sum_rr > 0.0:
                correlation = 0.0
        values = [
            *bands,
            loudness,
            crest,
            bass_mid,
            tempo,
            rhythm,
            onsets / duration if duration > 0 else 0.0,
            silence,
            centroid,
            rolloff,
            self._flatness_sum / frames,
            self._sustained_sum / self._plain_sum if self._plain_sum > 0 else 0.0,
            self._pitch_same / self._pitch_pairs if self._pitch_pairs else 0.0,
            chroma_energy,
            crest_std,
            loudness_std,
            peak_consistency,
            width,
            correlation,
        ]
        clipped = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
        clipped[_UNIT_FIELDS] = np.clip(clipped[_UNIT_FIELDS], 0.0, 1.0)
        clipped[-1] = float(np.clip(clipped[-1], -1.0, 1.0))
        return Fingerprint.from_vector(clipped)

    def _spectral_shape(self) -> tuple[list[float], float, float, float]:
        """Band shares, bass/mid ratio (dB), centroid and 85 % rolloff of the long-term spectrum."""
        lay = self._lay
        power = self._power_sum * lay.scale
        power[0] = 0.0  # DC says nothing about timbre
        total = float(power.sum())
        if total <= 0.0:
            return [0.0] * (len(BAND_EDGES_HZ) - 1), 0.0, 0.0, 0.0
        csum = np.concatenate(([0.0], np.cumsum(power)))
        band = np.diff(csum[np.searchsorted(lay.freqs_hz, BAND_EDGES_HZ, side="left")])
        shares = band / band.sum() if band.sum() > 0 else np.zeros(band.size)
        bass, mid = band[1], band[3]
        bass_mid = 0.0
        if bass > 0.0 or mid > 0.0:
            ratio = 10.0 * math.log10(max(bass, 1e-30) / max(mid, 1e-30))
            bass_mid = float(np.clip(ratio, -BASS_MID_LIMIT_DB, BASS_MID_LIMIT_DB))
        centroid = float(np.dot(lay.freqs_hz, power) / total)
        rolloff_bin = int(np.searchsorted(csum[1:], 0.85 * total, side="left"))
        rolloff = float(lay.freqs_hz[min(rolloff_bin, lay.freqs_hz.size - 1)])
        return [float(v) for v in shares], bass_mid, centroid, rolloff


def _level_features(
    peaks: npt.NDArray[np.float32], ms: npt.NDArray[np.float32], chunks_per_second: int
) -> tuple[float, float, float, float]:
    """Silence ratio, per-second crest std (dB), short-term level std (LU), peak consistency."""
    n = ms.size
    if n == 0:
        return 0.0, 0.0, 0.0, 0.0
    ms64 = ms.astype(np.float64)
    silence = float(np.count_nonzero(ms64 < _SILENT_MS)) / n
    per = max(1, chunks_per_second)
    n_sec = n // per
    if n - n_sec * per >= per // 2 or n_sec == 0:
        n_sec += 1  # keep a trailing partial second of at least half a second
    total = n_sec * per
    filler = np.full(max(total - n, 0), np.nan)
    sec_ms = np.nanmean(np.concatenate((ms64, filler))[:total].reshape(n_sec, per), axis=1)
    sec_pk = np.concatenate((peaks.astype(np.float64), filler))[:total].reshape(n_sec, per)
    sec_pk = np.nanmax(sec_pk, axis=1)
    loud = (sec_ms >= _SILENT_MS) & (sec_pk > 0.0)
    crest_std = 0.0
    peak_consistency = 0.0
    if np.count_nonzero(loud) >= 1:
        crest = 20.0 * np.log10(sec_pk[loud]) - 10.0 * np.log10(sec_ms[loud])
        crest_std = float(np.std(crest))
        pk = sec_pk[loud]
        peak_consistency = float(np.clip(1.0 - np.std(pk) / np.mean(pk), 0.0, 1.0))
    # Short-term (3 s) levels, one per chunk.
    width = min(n, max(1, 3 * per))
    csum = np.concatenate(([0.0], np.cumsum(ms64)))
    short = (csum[width:] - csum[:-width]) / width
    gated = short[short >= _SILENT_MS]
    loudness_std = 0.0
    if gated.size:
        relative = 10.0 * np.log10(np.mean(gated)) - 20.0
        levels = 10.0 * np.log10(gated)
        levels = levels[levels >= relative]
        loudness_std = float(np.std(levels))
    return silence, crest_std, loudness_std, peak_consistency


def fingerprint_of(audio: AudioArray, *, sample_rate: int, integrated_lufs: float) -> Fingerprint:
    """Fingerprint of a whole ``(channels, frames)`` float32 array (see the accumulator)."""
    validate_audio(audio, sample_rate=sample_rate, check_finite=False)
    acc = FingerprintAccumulator(sample_rate=sample_rate, channels=audio.shape[0])
    acc.push(audio)
    return acc.result(integrated_lufs=integrated_lufs)
