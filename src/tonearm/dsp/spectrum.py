"""Long-term mid/side power spectra of the loud parts, and fractional-octave bands.

The mastering planner needs the tonal balance of what a listener hears, not of the fade-out or
the silence between tracks. :class:`SpectrumAccumulator` runs a Hann-windowed STFT (about 186 ms
frames, 50 % overlap) over the mid and side signals (``M = (L + R) / 2``, ``S = (L - R) / 2``; mono
has no side) and keeps, per 1 dB bin of frame level, the sum of the frames' power spectra. At
:meth:`SpectrumAccumulator.result` it computes the power-mean level of the frames above -70 dB and
averages only the frames within ``gate_lu`` of it, without ever storing a frame. Memory is
``80 x channels x (fft_frames / 2 + 1)`` float64 values (5.2 MB for stereo at 44.1 kHz) plus about
5 MB of reused scratch buffers, whatever the length of the file. A frame's level is its
Hann-weighted mean square of mid plus side, in dB.

Scaling: a bin holds mean-square power (the window-weighted Parseval normalisation
``2 |X_k|^2 / (N * sum(w^2))``, once for DC and Nyquist), so the bins of a sine of amplitude ``A``
sum to ``A^2 / 2`` (0.5 for a full-scale sine) and the bins of white noise sum to its variance.

Blocks are regrouped into fixed pieces and cut into frames by :mod:`tonearm.dsp.framing`.
Accumulator instances are independent (one per stream and thread); nothing is shared but
read-only cached windows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from tonearm.dsp.framing import BlockFramer, Rechunker
from tonearm.errors import ParameterError
from tonearm.types import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioArray, validate_audio

__all__ = [
    "MidSideSpectrum",
    "SpectrumAccumulator",
    "band_levels_db",
    "default_fft_frames",
    "hann_window",
    "smooth_fractional_octave_db",
    "spectral_tilt_db_per_octave",
    "spectrum_of",
    "third_octave_centers_hz",
]

FloatArray = npt.NDArray[np.float64]

LEVEL_FLOOR_DB = -70.0
"""Frames quieter than this (mid + side mean square, dB) never count as music."""
LEVEL_CEIL_DB = 10.0
"""Frames louder than this fall into the top level bin."""
LEVEL_STEP_DB = 1.0
"""Width of one level-histogram bin: the gate is resolved to this step (frames up to one step
below the threshold can be included)."""
SILENT_BAND_DB = -200.0
"""Level reported for a band with no power."""

_N_LEVELS = round((LEVEL_CEIL_DB - LEVEL_FLOOR_DB) / LEVEL_STEP_DB)
_CHUNK_SAMPLES = 1 << 19  # float32 samples of windowed frames per internal batch (2 MB)


def default_fft_frames(sample_rate: int, *, seconds: float = 0.186) -> int:
    """Power of two nearest (in log2) to ``seconds * sample_rate``: 8192 at 44.1 and 48 kHz."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ParameterError(
            f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return int(2 ** round(np.log2(seconds * sample_rate)))


@functools.lru_cache(maxsize=32)
def hann_window(n: int) -> npt.NDArray[np.float32]:
    """Periodic Hann window of ``n`` samples, float32, read-only (cached)."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)
    w.flags.writeable = False
    return w


@dataclass(frozen=True, slots=True)
class MidSideSpectrum:
    """Long-term power spectrum of the loud frames of the mid and side signals.

    Attributes
    ----------
    freqs_hz : ndarray, shape (nbins,), float64
        Bin centre frequencies, 0 .. Nyquist, Hz. All arrays are read-only.
    mid_power, side_power : ndarray, shape (nbins,), float64
        Mean-square power per bin averaged over the used frames (see the module docstring for
        the scaling: a full-scale sine sums to 0.5). ``side_power`` is all zeros for mono input.
    frames_used : int
        STFT frames that passed the gates (0 for silence or audio shorter than one frame).
    sample_rate : int
        Hz.
    """

    freqs_hz: FloatArray
    mid_power: FloatArray
    side_power: FloatArray
    frames_used: int
    sample_rate: int


class SpectrumAccumulator:
    """Streaming long-term mid/side spectrum of the loud parts of a signal.

    Parameters
    ----------
    sample_rate : int
        Hz, 8000..192000.
    channels : int
        1 or 2; every pushed block must have this many.
    fft_frames : int, optional
        STFT size in samples (even, >= 16); default :func:`default_fft_frames` (8192 at
        44.1/48 kHz).
    overlap : bool, optional
        True (default): frames overlap by half, so every sample weighs the same (Welch's
        method). False: frames follow each other, for half the work; the average stays unbiased
        with somewhat more variance (fine for long programme material, such as a verify pass
        whose spectrum is only reported).
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int,
        fft_frames: int | None = None,
        overlap: bool = True,
    ) -> None:
        n_fft = default_fft_frames(sample_rate) if fft_frames is None else int(fft_frames)
        if channels not in (1, 2):
            raise ParameterError(f"expected 1 or 2 channels, got {channels}")
        if n_fft < 16 or n_fft % 2:
            raise ParameterError(f"fft_frames must be even and >= 16, got {fft_frames}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.fft_frames = n_fft
        hop = n_fft // 2 if overlap else n_fft
        self._framer = BlockFramer(channels=channels, frame_length=n_fft, hop=hop)
        n_bins = n_fft // 2 + 1
        window = hann_window(n_fft)
        self._window = window * np.float32(0.5) if channels == 2 else window
        # Raw |X_k|^2 -> mean-square power per bin (one-sided, window-power normalised).
        scale = np.full(n_bins, 2.0 / (n_fft * float(np.sum(np.square(window, dtype=np.float64)))))
        scale[0] *= 0.5
        scale[-1] *= 0.5
        self._scale = scale
        # Scratch buffers reused batch after batch (fresh large temporaries cost page faults).
        self._piece = max(n_fft, _CHUNK_SAMPLES // channels)
        self._step = max(1, _CHUNK_SAMPLES // (n_fft * channels))
        self._mid_side = np.empty((channels, self._piece), dtype=np.float32)
        self._rechunker = Rechunker(channels=channels, piece=self._piece)
        self._windowed = np.empty((channels, self._step, n_fft), dtype=np.float32)
        self._power = np.empty((channels, self._step, n_bins), dtype=np.float32)
        self._hist = np.zeros((_N_LEVELS, channels, n_bins), dtype=np.float64)
        self._energy = np.zeros(_N_LEVELS, dtype=np.float64)
        self._count = np.zeros(_N_LEVELS, dtype=np.int64)

    def reset(self) -> None:
        """Forget everything pushed so far."""
        self._framer.reset()
        self._rechunker.reset()
        self._hist.fill(0.0)
        self._energy.fill(0.0)
        self._count.fill(0)

    def push(self, block: AudioArray) -> None:
        """Add a block, shape ``(channels, frames)`` float32, any number of frames.

        NaN/Inf samples are not checked here (the decoder edge does that).
        """
        validate_audio(block, check_finite=False)
        if block.shape[0] != self.channels:
            raise ParameterError(f"expected {self.channels} channels, got {block.shape[0]}")
        # Regroup into fixed pieces: temporaries stay small and the batches stay large, whatever
        # the block size.
        for part in self._rechunker.push(block):
            self._push_piece(part)

    def _push_piece(self, part: AudioArray) -> None:
        if self.channels == 2:
            # 2M and 2S: the factor 1/2 is folded into the window.
            doubled = self._mid_side[:, : part.shape[1]]
            np.add(part[0], part[1], out=doubled[0])
            np.subtract(part[0], part[1], out=doubled[1])
            part = doubled
        for span in self._framer.push(part):
            frames = self._framer.frames(span)
            for start in range(0, frames.shape[1], self._step):
                self._accumulate(frames[:, start : start + self._step])

    def _accumulate(self, frames: AudioArray) -> None:
        """Add the power spectra of mid/side ``frames`` (channels, n, fft_frames)."""
        n = frames.shape[1]
        windowed = self._windowed[:, :n]
        np.multiply(frames, self._window, out=windowed)
        spec = scipy.fft.rfft(windowed, axis=-1)
        # |X|^2 in place on the interleaved float view, into the scratch buffer.
        flat = spec.view(np.float32)
        np.square(flat, out=flat)
        power = self._power[:, :n]
        np.add(flat[..., 0::2], flat[..., 1::2], out=power)  # (channels, n, nbins)
        del spec, flat
        raw_sum = power.sum(axis=-1, dtype=np.float64)
        edges = self._scale[1] * (power[..., 0] + power[..., -1]).astype(np.float64)
        frame_ms = (self._scale[1] * raw_sum - 0.5 * edges).sum(axis=0)  # (n,)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = 10.0 * np.log10(frame_ms)
        idx = np.floor((level - LEVEL_FLOOR_DB) / LEVEL_STEP_DB)
        keep = idx >= 0  # False for NaN and for frames below the floor
        if not keep.all():
            if not keep.any():
                return
            power, frame_ms, idx = power[:, keep], frame_ms[keep], idx[keep]
        bins = np.minimum(idx, _N_LEVELS - 1).astype(np.intp)
        self._energy += np.bincount(bins, weights=frame_ms, minlength=_N_LEVELS)
        self._count += np.bincount(bins, minlength=_N_LEVELS)
        # Sum the frames of each level bin: a loop over the few distinct levels of this batch
        # (not over frames). Plain reductions, no BLAS: tiny matrix products would spawn
        # threads that fight the caller's own pool.
        for level_bin in np.unique(bins).tolist():
            self._hist[level_bin] += power[:, bins == level_bin].sum(axis=1)

    def result(self, *, gate_lu: float = -10.0) -> MidSideSpectrum:
        """Average spectrum of the frames within ``gate_lu`` of the power-mean loud level.

        Parameters
        ----------
        gate_lu : float
            Relative gate in dB (<= 0): frames below ``mean_level + gate_lu`` are left out, where
            ``mean_level`` is the power mean of the frames above -70 dB. ``-inf`` keeps every
            frame above -70 dB. Resolved to the 1 dB level bins.

        Returns
        -------
        MidSideSpectrum
            All zeros with ``frames_used == 0`` if no frame rose above -70 dB.

        May be called at any time; pushing more afterwards continues the same stream.
        """
        if not gate_lu <= 0.0:
            raise ParameterError(f"gate_lu must be <= 0 dB, got {gate_lu}")
        for part in self._rechunker.flush():
            self._push_piece(part)
        n_bins = self.fft_frames // 2 + 1
        freqs = np.arange(n_bins, dtype=np.float64) * (self.sample_rate / self.fft_frames)
        total_count = int(self._count.sum())
        if total_count == 0:
            zeros = _read_only(np.zeros(n_bins))
            return MidSideSpectrum(_read_only(freqs), zeros, zeros, 0, self.sample_rate)
        mean_db = 10.0 * np.log10(self._energy.sum() / total_count)
        threshold = mean_db + gate_lu
        upper_edges = LEVEL_FLOOR_DB + LEVEL_STEP_DB * np.arange(1, _N_LEVELS + 1)
        upper_edges[-1] = np.inf
        use = (self._count > 0) & (upper_edges > threshold)
        used = int(self._count[use].sum())
        avg = self._hist[use].sum(axis=0) * (self._scale / used)
        side = avg[1] if self.channels == 2 else np.zeros(n_bins)
        return MidSideSpectrum(
            _read_only(freqs), _read_only(avg[0]), _read_only(side), used, self.sample_rate
        )


def _read_only(arr: FloatArray) -> FloatArray:
    arr.flags.writeable = False
    return arr


def spectrum_of(audio: AudioArray, *, sample_rate: int, gate_lu: float = -10.0) -> MidSideSpectrum:
    """Long-term mid/side spectrum of a whole ``(channels, frames)`` array (see the accumulator)."""
    validate_audio(audio, sample_rate=sample_rate, check_finite=False)
    acc = SpectrumAccumulator(sample_rate=sample_rate, channels=audio.shape[0])
    acc.push(audio)
    return acc.result(gate_lu=gate_lu)


def third_octave_centers_hz(*, f_min_hz: float = 20.0, f_max_hz: float = 20000.0) -> FloatArray:
    """Exact base-2 third-octave centres ``1000 * 2**(k/3)`` whose band holds ``f_min..f_max``.

    A centre is kept when it lies within a sixth of an octave of the range, so the defaults give
    the 31 IEC 61260 bands with nominal centres 20 Hz .. 20 kHz (exact 19.69 .. 20159 Hz).
    """
    if not 0.0 < f_min_hz <= f_max_hz:
        raise ParameterError(f"need 0 < f_min_hz <= f_max_hz, got {f_min_hz}, {f_max_hz}")
    k_lo = int(np.ceil(3.0 * np.log2(f_min_hz / 1000.0) - 0.5 - 1e-9))
    k_hi = int(np.floor(3.0 * np.log2(f_max_hz / 1000.0) + 0.5 + 1e-9))
    return 1000.0 * 2.0 ** (np.arange(k_lo, k_hi + 1) / 3.0)


def band_levels_db(
    freqs_hz: npt.ArrayLike,
    power: npt.ArrayLike,
    *,
    centers_hz: npt.ArrayLike,
    fraction: float = 3.0,
) -> FloatArray:
    """Power summed in fractional-octave bands, in dB.

    Parameters
    ----------
    freqs_hz : array, shape (nbins,)
        Increasing bin frequencies, Hz; the last one is taken as Nyquist.
    power : array, shape (..., nbins)
        Power per bin (e.g. :attr:`MidSideSpectrum.mid_power`).
    centers_hz : array, shape (nbands,)
        Band centres, Hz.
    fraction : float
        Bands per octave: band ``[fc * 2**(-1/(2 fraction)), fc * 2**(1/(2 fraction)))``.

    Returns
    -------
    ndarray, shape (..., nbands), float64
        ``10 log10`` of the band sums, floored at -200 dB for empty or silent bands. Bands whose
        centre is above Nyquist are NaN; a band that straddles Nyquist sums only the bins below it.
    """
    if fraction <= 0:
        raise ParameterError(f"fraction must be > 0, got {fraction}")
    f = np.asarray(freqs_hz, dtype=np.float64)
    p = np.asarray(power, dtype=np.float64)
    fc = np.asarray(centers_hz, dtype=np.float64)
    if p.shape[-1] != f.shape[0]:
        raise ParameterError(f"power has {p.shape[-1]} bins but freqs_hz has {f.shape[0]}")
    half = 2.0 ** (1.0 / (2.0 * fraction))
    lo = np.searchsorted(f, fc / half, side="left")
    hi = np.searchsorted(f, fc * half, side="left")
    csum = np.concatenate((np.zeros((*p.shape[:-1], 1)), np.cumsum(p, axis=-1)), axis=-1)
    sums = csum[..., hi] - csum[..., lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.where(sums > 0.0, 10.0 * np.log10(sums), SILENT_BAND_DB)
    levels = np.maximum(levels, SILENT_BAND_DB)
    nyquist = f[-1] if f.size else 0.0
    return np.where(fc > nyquist, np.nan, levels)


def smooth_fractional_octave_db(
    freqs_hz: npt.ArrayLike, values_db: npt.ArrayLike, *, fraction: float
) -> FloatArray:
    """Smooth a dB curve over frequency: each bin becomes the mean of the bins within
    ``+-1/(2 fraction)`` octave of it.

    Parameters
    ----------
    freqs_hz : array, shape (nbins,)
        Increasing bin frequencies, Hz, the first one DC (0 Hz) or positive.
    values_db : array, shape (..., nbins)
        Finite values (dB) to smooth along the last axis.
    fraction : float
        1/fraction-octave smoothing (3 for third-octave).

    Returns
    -------
    ndarray, shape (..., nbins), float64
        Smoothed values; a bin at 0 Hz is returned unchanged (and takes no part in the others).
    """
    if fraction <= 0:
        raise ParameterError(f"fraction must be > 0, got {fraction}")
    f = np.asarray(freqs_hz, dtype=np.float64)
    v = np.asarray(values_db, dtype=np.float64)
    if v.shape[-1] != f.shape[0]:
        raise ParameterError(f"values_db has {v.shape[-1]} bins but freqs_hz has {f.shape[0]}")
    half = 2.0 ** (1.0 / (2.0 * fraction))
    first = int(np.searchsorted(f, 0.0, side="right"))  # skip DC bins
    fp = f[first:]
    lo = first + np.searchsorted(fp, fp / half, side="left")
    hi = first + np.searchsorted(fp, fp * half, side="right")
    csum = np.concatenate((np.zeros((*v.shape[:-1], 1)), np.cumsum(v, axis=-1)), axis=-1)
    out = v.copy()
    out[..., first:] = (csum[..., hi] - csum[..., lo]) / (hi - lo)
    return out


def spectral_tilt_db_per_octave(
    centers_hz: npt.ArrayLike,
    band_db: npt.ArrayLike,
    *,
    f_min_hz: float = 50.0,
    f_max_hz: float = 16000.0,
) -> float:
    """Least-squares slope of band levels against log2 frequency, dB per octave.

    Uses the bands with centres in ``[f_min_hz, f_max_hz]`` whose level is finite and above the
    -200 dB silent floor. White noise gives about +3 dB/octave on third-octave band levels, pink
    noise about 0. Returns 0.0 when fewer than two bands qualify.
    """
    fc = np.asarray(centers_hz, dtype=np.float64)
    db = np.asarray(band_db, dtype=np.float64)
    ok = (fc >= f_min_hz) & (fc <= f_max_hz) & np.isfinite(db) & (db > SILENT_BAND_DB)
    if np.count_nonzero(ok) < 2:
        return 0.0
    x = np.log2(fc[ok])
    y = db[ok]
    x = x - x.mean()
    return float(np.dot(x, y - y.mean()) / np.dot(x, x))
