"""The report plot of a master: one PNG a person reads to see what was done.

:func:`plot_master_report` draws four panels (``tonearm master ... --plot report.png``):

1. Mid spectrum of the mix, the reference (if any) and the result.
2. Side spectrum of the same three, on the mid's level scale, so the width shows.
3. The EQ applied: mid and side gain against frequency.
4. Short-term loudness (3 s windows) over time, before and after.

Spectra are 1/6-octave band levels: the per-bin power averaged over a sixth of an octave around
each frequency, times the number of bins such a band holds, so pink noise draws flat whatever
the FFT size. Each track's curves are shifted by the mean of its mid curve over 100 Hz-10 kHz
(on a log-frequency grid), for mid and side alike: shapes compare across tracks, and a side
curve sits as far below zero as the side is quieter than the mid.

matplotlib is imported only when a plot is made (the CLI must not pay its import time
otherwise), and only through its object-oriented API with the Agg canvas: no pyplot, no global
figure state, so threads may plot at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tonearm.dsp.eq import design_linear_phase_fir, fir_taps_for, frequency_response_db
from tonearm.dsp.spectrum import smooth_fractional_octave_db
from tonearm.errors import EncodeError, ParameterError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tonearm.dsp.spectrum import MidSideSpectrum
    from tonearm.mastering.plan import EqPlan

__all__ = ["master_report_figure", "plot_master_report"]

FIGSIZE_IN = (12.0, 10.0)
DPI = 100
SMOOTHING_FRACTION = 6.0  # 1/6-octave bands
F_MIN_HZ, F_MAX_HZ = 20.0, 20000.0
NORM_BAND_HZ = (100.0, 10000.0)
SPECTRUM_RANGE_DB = 66.0  # the spectrum panels show at most this far below their top
LOUDNESS_RANGE_LU = 40.0  # the loudness panel shows at most this far below its top
_TICKS_HZ = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
_COLORS = {"mix": "tab:blue", "reference": "tab:gray", "result": "tab:orange"}
_WIDTHS = {"mix": 1.3, "reference": 1.3, "result": 2.4}
_ZORDERS = {"mix": 2.6, "reference": 2.4, "result": 2.2}
_NORM_NOTE = "dB re mean mid level 100 Hz–10 kHz"
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
FloatArray = NDArray[np.float64]


def _grid_hz(f_max_hz: float) -> FloatArray:
    """1/48-octave points from 20 Hz up to ``f_max_hz``."""
    octaves = np.log2(f_max_hz / F_MIN_HZ)
    return F_MIN_HZ * 2.0 ** np.linspace(0.0, octaves, max(2, int(48 * octaves) + 1))


def _band_curves(spec: MidSideSpectrum) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Grid, mid and side 1/6-octave band levels (dB) of one spectrum."""
    freqs = spec.freqs_hz
    grid = _grid_hz(min(F_MAX_HZ, spec.sample_rate / 2.0))
    # A moving average of the linear power over +-1/12 octave (the helper averages any values),
    # then scaled by the bins a 1/6-octave band holds: a band level, independent of the FFT size.
    mean_power = smooth_fractional_octave_db(
        freqs, np.stack((spec.mid_power, spec.side_power)), fraction=SMOOTHING_FRACTION
    )
    bin_hz = freqs[1] - freqs[0]
    width = 2.0 ** (0.5 / SMOOTHING_FRACTION) - 2.0 ** (-0.5 / SMOOTHING_FRACTION)
    with np.errstate(divide="ignore"):
        level = 10.0 * np.log10(mean_power[:, 1:] * (freqs[1:] * width / bin_hz))
    log_f = np.log2(freqs[1:])
    mid = np.interp(np.log2(grid), log_f, level[0])
    side = np.interp(np.log2(grid), log_f, level[1])
    return grid, mid, side


def _log_freq_axis(ax: Axes, f_max_hz: float) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(F_MIN_HZ, f_max_hz)
    ticks = [f for f in _TICKS_HZ if f <= f_max_hz * 1.001]
    ax.set_xticks(ticks, [f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("Frequency (Hz)")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)


def _note(ax: Axes, text: str) -> None:
    box = {"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.4"}
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=16, bbox=box)


def _corner_note(ax: Axes, text: str) -> None:
    ax.text(0.99, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=9)


def _spectrum_panels(
    mid_ax: Axes, side_ax: Axes, tracks: list[tuple[str, MidSideSpectrum]], f_max_hz: float
) -> None:
    """Mid and side band levels of each track, both shifted by the track's mid mean."""
    tops: dict[str, list[float]] = {"mid": [], "side": []}
    lows_db: dict[str, list[float]] = {"mid": [], "side": []}
    mono, silent = [], []
    for name, spec in tracks:
        grid, mid, side = _band_curves(spec)
        in_band = (grid >= NORM_BAND_HZ[0]) & (grid <= NORM_BAND_HZ[1]) & np.isfinite(mid)
        if spec.frames_used == 0 or not in_band.any():
            silent.append(name)
            continue
        offset = float(np.mean(mid[in_band]))
        # The thick result underneath, so a mix it barely changed still shows on top of it.
        z = _ZORDERS[name]
        curves = [("mid", mid_ax, mid)]
        if np.isfinite(side).any():
            curves.append(("side", side_ax, side))
        else:
            mono.append(name)
        for key, ax, curve in curves:
            shifted = np.where(np.isfinite(curve), curve - offset, np.nan)
            ax.plot(grid, shifted, label=name, color=_COLORS[name], lw=_WIDTHS[name], zorder=z)
            tops[key].append(float(np.nanmax(shifted)))
            lows_db[key].append(float(np.nanmin(shifted)))
    # One scale for both panels, so the side's distance below the mid reads directly.
    highs, lows = [*tops["mid"], *tops["side"]], [*lows_db["mid"], *lows_db["side"]]
    for key, ax in (("mid", mid_ax), ("side", side_ax)):
        ax.set_title(f"{key.capitalize()} spectrum (1/6-octave bands)")
        _log_freq_axis(ax, f_max_hz)
        ax.set_ylabel(f"Level ({_NORM_NOTE})")
        if highs:
            top = 3.0 * np.ceil((max(highs) + 3.0) / 3.0)
            bottom = max(top - SPECTRUM_RANGE_DB, 3.0 * np.floor((min(lows) - 3.0) / 3.0))
            ax.set_ylim(min(bottom, top - 30.0), top)  # 30 dB at least: ripples look small
        if tops[key]:
            ax.legend(loc="best", fontsize=9)
    if not tops["side"]:
        _note(side_ax, "mono" if mono else "silent")
    elif mono:
        _corner_note(side_ax, "mono: " + ", ".join(mono))
    if not tops["mid"]:
        _note(mid_ax, "silent")
    elif silent:
        _corner_note(mid_ax, "silent: " + ", ".join(silent))


def _eq_panel(ax: Axes, eq: EqPlan | None, f_max_hz: float, sample_rate: int) -> None:
    """Mid and side gains as planned (linear in log2 f, flat beyond) and as the FIR applies them.

    The linear-phase FIR cannot follow the plan closer than its resolution (about
    ``6 / eq.fir_duration_s`` Hz), so in the bass the applied response is smoother: both show.
    """
    ax.set_title("EQ applied")
    _log_freq_axis(ax, f_max_hz)
    ax.set_ylabel("Gain (dB)")
    ax.axhline(0.0, color="black", linewidth=0.8)
    if eq is None or not eq.freqs_hz:
        ax.set_ylim(-6.0, 6.0)
        _note(ax, "no EQ")
        return
    grid = _grid_hz(f_max_hz)
    points = np.asarray(eq.freqs_hz, dtype=np.float64)
    for label, gains, color in (("mid", eq.mid_db, "tab:green"), ("side", eq.side_db, "tab:red")):
        curve = np.interp(np.log2(grid), np.log2(points), np.asarray(gains, dtype=np.float64))
        ax.plot(grid, curve, color=color, linewidth=1.8, label=label)
        if points.size <= 40:  # the plan's points, where they are few enough to read
            shown = points <= f_max_hz
            ax.plot(points[shown], np.asarray(gains)[shown], "o", color=color, markersize=3)
        taps = fir_taps_for(sample_rate, duration_s=eq.fir_duration_s)
        fir = design_linear_phase_fir(eq.freqs_hz, gains, sample_rate=sample_rate, taps=taps)
        applied = frequency_response_db(fir, sample_rate=sample_rate, freqs_hz=grid)
        ax.plot(grid, applied, color=color, linewidth=1.0, linestyle=":", label=f"{label} (FIR)")
    limit = max(3.0, float(np.ceil(eq.max_abs_db + 1.0)))
    ax.set_ylim(-limit, limit)
    tilt = eq.tilt_db_per_octave
    ax.legend(loc="best", fontsize=9, title=f"tilt {tilt:+.2f} dB/oct" if tilt else None)


def _loudness_panel(ax: Axes, before: NDArray[np.float32], after: NDArray[np.float32]) -> None:
    """Short-term loudness at the window centres (value j covers 0.1 j .. 0.1 j + 3 s)."""
    ax.set_title("Short-term loudness (3 s windows)")
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Short-term loudness (LUFS)")
    ax.grid(True, alpha=0.3)
    finite: list[FloatArray] = []
    for label, series, color in (("before", before, "tab:blue"), ("after", after, "tab:orange")):
        values = np.asarray(series, dtype=np.float64).ravel()
        values = np.where(np.isfinite(values), values, np.nan)
        if np.isnan(values).all():
            continue
        ax.plot(1.5 + 0.1 * np.arange(values.size), values, color=color, label=label)
        finite.append(values[np.isfinite(values)])
    if not finite:
        _note(ax, "shorter than 3 s or silent")
        return
    every = np.concatenate(finite)
    top = float(np.ceil(every.max() + 2.0))
    bottom = max(float(np.floor(every.min() - 2.0)), top - LOUDNESS_RANGE_LU)
    ax.set_ylim(min(bottom, top - 12.0), top)
    ax.legend(loc="best", fontsize=9)


def master_report_figure(
    *,
    mix: MidSideSpectrum,
    result: MidSideSpectrum,
    reference: MidSideSpectrum | None,
    eq: EqPlan | None,
    short_term_before_lufs: NDArray[np.float32],
    short_term_after_lufs: NDArray[np.float32],
    title: str,
) -> Figure:
    """Build the four-panel report figure (Agg canvas, no pyplot); see :func:`plot_master_report`.

    Returns
    -------
    matplotlib.figure.Figure
        Axes in order: mid spectrum, side spectrum, EQ, short-term loudness.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    named = [("mix", mix), ("reference", reference), ("result", result)]
    tracks = [(name, spec) for name, spec in named if spec is not None]
    f_max_hz = min(F_MAX_HZ, max(spec.sample_rate / 2.0 for _, spec in tracks))
    _spectrum_panels(axes[0, 0], axes[0, 1], tracks, f_max_hz)
    _eq_panel(axes[1, 0], eq, f_max_hz, result.sample_rate)
    _loudness_panel(axes[1, 1], short_term_before_lufs, short_term_after_lufs)
    fig.suptitle(title, fontsize=14)
    return fig


def plot_master_report(
    path: str | os.PathLike[str],
    *,
    mix: MidSideSpectrum,
    result: MidSideSpectrum,
    reference: MidSideSpectrum | None,
    eq: EqPlan | None,
    short_term_before_lufs: NDArray[np.float32],
    short_term_after_lufs: NDArray[np.float32],
    title: str,
) -> None:
    """Write the report plot of a master as a PNG (1200 x 1000 pixels), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; must end in ``.png`` and its folder must exist. Rendered to a temporary
        file beside it and renamed into place; on any error nothing is left behind.
    mix, result : MidSideSpectrum
        Long-term spectra of the input and of the master.
    reference : MidSideSpectrum or None
        Spectrum of the reference track, drawn when given.
    eq : EqPlan or None
        The EQ the plan applied; ``None`` draws "no EQ".
    short_term_before_lufs, short_term_after_lufs : ndarray, shape (windows,), float32
        Short-term loudness at 100 ms hop (:attr:`LoudnessResult.short_term_lufs`); ``-inf``
        values (silence) are left out.
    title : str
        Figure title, e.g. the file names and the target.

    Raises
    ------
    ParameterError
        ``path`` does not end in ``.png``.
    EncodeError
        The folder does not exist, or the file cannot be written.
    """
    out = Path(os.fspath(path))
    if out.suffix.lower() != ".png":
        raise ParameterError("plot must be a .png file")
    folder = out.parent
    shown = os.fspath(folder).rstrip("/") or "/"
    if not folder.is_dir():
        raise EncodeError(f"plot folder '{shown}/' does not exist")
    if out.is_dir():
        raise EncodeError(f"plot '{out}' is a directory")
    fig = master_report_figure(
        mix=mix,
        result=result,
        reference=reference,
        eq=eq,
        short_term_before_lufs=short_term_before_lufs,
        short_term_after_lufs=short_term_after_lufs,
        title=title,
    )
    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    fd = -1
    try:
        # 0o666 less umask (not mkstemp's 0o600): the PNG gets the permissions of any new file.
        fd = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666
        )
        with os.fdopen(fd, "wb") as stream:
            fig.savefig(stream, format="png", dpi=DPI)
        os.replace(temp, out)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise EncodeError(f"cannot write plot '{out}': {reason}") from None
    finally:
        if fd >= 0:  # never remove a file this call did not create
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
