"""The report plot: a valid PNG written atomically, four readable panels, thread-safe."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from tests.mastering import synth
from tonearm.dsp.loudness import measure_loudness
from tonearm.dsp.spectrum import spectrum_of
from tonearm.errors import EncodeError, ParameterError
from tonearm.mastering.plan import EqPlan
from tonearm.mastering.plot import master_report_figure, plot_master_report

RATE = 44100
SIDE_BELOW_MID_DB = 20.0 * np.log10(1.0 / 0.3)  # M = a, S = 0.3 b: 10.5 dB quieter


def _stereo(seed: int, *, bright: bool = False) -> np.ndarray:
    """5 s of pink-ish noise with a side 10.5 dB below the mid (optionally brighter)."""
    a, b = synth.noise(RATE, 5.0, channels=2, level_db=-20.0, seed=seed)
    if bright:  # add the first difference: a rising high end
        a = a + 3.0 * np.diff(a, prepend=0.0)
        b = b + 3.0 * np.diff(b, prepend=0.0)
    return np.stack((a + 0.3 * b, a - 0.3 * b)).astype(np.float32)


@pytest.fixture(scope="module")
def tracks() -> dict[str, Any]:
    mix = _stereo(1)
    result = (2.0 * _stereo(1, bright=True)).astype(np.float32)
    mono = np.clip(2.0 * mix[:1], -1.0, 1.0).astype(np.float32)
    return {
        "mix": spectrum_of(mix, sample_rate=RATE),
        "reference": spectrum_of(_stereo(2, bright=True), sample_rate=RATE),
        "result": spectrum_of(result, sample_rate=RATE),
        "mono": spectrum_of(mono, sample_rate=RATE),
        "before": measure_loudness(mix, sample_rate=RATE).short_term_lufs,
        "after": measure_loudness(result, sample_rate=RATE).short_term_lufs,
    }


EQ = EqPlan(freqs_hz=(100.0, 1000.0), mid_db=(0.0, 6.0), side_db=(-3.0, -3.0))


def _kwargs(tracks: dict[str, Any], **changes: Any) -> dict[str, Any]:
    kwargs = {
        "mix": tracks["mix"],
        "result": tracks["result"],
        "reference": tracks["reference"],
        "eq": EQ,
        "short_term_before_lufs": tracks["before"],
        "short_term_after_lufs": tracks["after"],
        "title": "mix.wav → mix.master.wav",
    }
    kwargs.update(changes)
    return kwargs


def _texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


def _labelled_lines(ax) -> dict[str, Any]:
    return {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }


def test_writes_a_png_of_the_expected_size_and_no_temp(tmp_path, tracks):
    out = tmp_path / "report.png"
    plot_master_report(out, **_kwargs(tracks))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(out)
    assert image.shape[:2] == (1000, 1200)  # 12 x 10 in at 100 dpi
    assert image[..., :3].std() > 0.05  # something drawn, not a blank canvas
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]


def test_figure_has_four_labelled_panels(tracks):
    fig = master_report_figure(**_kwargs(tracks))
    mid, side, eq, loud = fig.axes
    assert len(fig.axes) == 4
    assert fig.get_suptitle() == "mix.wav → mix.master.wav"
    for ax in (mid, side, eq):
        assert ax.get_xlabel() == "Frequency (Hz)"
        assert ax.get_xscale() == "log"
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["20", "50", "100", "200", "500", "1k", "2k", "5k", "10k", "20k"]
    assert "Mid" in mid.get_title()
    assert "Side" in side.get_title()
    assert mid.get_ylabel().startswith("Level (dB")
    assert "100 Hz–10 kHz" in mid.get_ylabel()
    assert eq.get_ylabel() == "Gain (dB)"
    assert loud.get_xlabel() == "Time (s)"
    assert loud.get_ylabel() == "Short-term loudness (LUFS)"
    for ax in (mid, side):
        assert list(_labelled_lines(ax)) == ["mix", "reference", "result"]
        assert ax.get_legend() is not None
    eq_lines = _labelled_lines(eq)
    assert list(eq_lines) == ["mid", "mid (FIR)", "side", "side (FIR)"]
    assert list(_labelled_lines(loud)) == ["before", "after"]
    # the FIR's response follows the plan where its resolution allows (here 500 Hz to 5 kHz)
    for name in ("mid", "side"):
        planned, applied = eq_lines[name], eq_lines[f"{name} (FIR)"]
        freqs = np.asarray(planned.get_xdata(), dtype=float)
        inside = (freqs > 500) & (freqs < 5000)
        gap = np.asarray(planned.get_ydata())[inside] - np.asarray(applied.get_ydata())[inside]
        assert np.max(np.abs(gap)) < 1.5


def test_spectra_are_aligned_on_the_mid_and_side_keeps_its_distance(tracks):
    mid_ax, side_ax, _, _ = master_report_figure(**_kwargs(tracks)).axes
    for name in ("mix", "reference", "result"):
        mid = _labelled_lines(mid_ax)[name]
        side = _labelled_lines(side_ax)[name]
        f = np.asarray(mid.get_xdata())
        band = (f >= 100.0) & (f <= 10000.0)
        assert np.mean(np.asarray(mid.get_ydata())[band]) == pytest.approx(0.0, abs=1e-9)
        # the side is shifted by the mid's offset, not its own: it stays ~10.5 dB below
        side_mean = np.mean(np.asarray(side.get_ydata())[band])
        assert side_mean == pytest.approx(-SIDE_BELOW_MID_DB, abs=1.0)
    # the brighter result rises towards the top, the pink mix stays flat
    mix_y = np.asarray(_labelled_lines(mid_ax)["mix"].get_ydata())
    res_y = np.asarray(_labelled_lines(mid_ax)["result"].get_ydata())
    f = np.asarray(_labelled_lines(mid_ax)["mix"].get_xdata())
    assert abs(np.interp(8000.0, f, mix_y) - np.interp(200.0, f, mix_y)) < 2.0
    assert np.interp(8000.0, f, res_y) - np.interp(200.0, f, res_y) > 10.0
    low, high = mid_ax.get_ylim()
    assert high - low <= 66.0 + 1e-9
    assert high >= max(np.nanmax(res_y), np.nanmax(mix_y))


def test_eq_curve_is_interpolated_in_log_frequency_and_held_flat(tracks):
    eq_ax = master_report_figure(**_kwargs(tracks)).axes[2]
    mid, side = _labelled_lines(eq_ax)["mid"], _labelled_lines(eq_ax)["side"]
    f, gain = np.asarray(mid.get_xdata()), np.asarray(mid.get_ydata())
    assert f[0] == pytest.approx(20.0)
    assert f[-1] == pytest.approx(20000.0)
    assert np.interp(np.sqrt(100.0 * 1000.0), f, gain) == pytest.approx(3.0, abs=0.05)
    assert gain[f < 100.0] == pytest.approx(0.0)
    assert gain[f > 1000.0] == pytest.approx(6.0)
    assert np.asarray(side.get_ydata()) == pytest.approx(-3.0)
    assert "no EQ" not in _texts(eq_ax)


def test_short_term_loudness_is_drawn_at_window_centres_without_inf(tracks):
    before = tracks["before"].copy()
    before[:5] = -np.inf
    loud = master_report_figure(**_kwargs(tracks, short_term_before_lufs=before)).axes[3]
    line = _labelled_lines(loud)["before"]
    t, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert t[0] == pytest.approx(1.5)  # value 0 covers 0..3 s
    assert np.diff(t) == pytest.approx(0.1)
    assert t.size == before.size
    assert np.isnan(y[:5]).all()
    assert np.isfinite(y[5:]).all()
    low, high = loud.get_ylim()
    assert low <= np.nanmin(y)
    assert high >= np.nanmax(y)


def test_mono_without_reference_or_eq_still_plots(tmp_path, tracks):
    kwargs = _kwargs(tracks, mix=tracks["mono"], result=tracks["mono"], reference=None, eq=None)
    mid, side, eq, _ = master_report_figure(**kwargs).axes
    assert list(_labelled_lines(mid)) == ["mix", "result"]
    assert not side.get_lines()
    assert "mono" in _texts(side)
    assert "no EQ" in _texts(eq)
    out = tmp_path / "mono.png"
    plot_master_report(out, **kwargs)
    assert imread(out).shape[:2] == (1000, 1200)


def test_mono_result_of_stereo_mix_is_noted_on_the_side_panel(tracks):
    _, side, _, _ = master_report_figure(**_kwargs(tracks, result=tracks["mono"])).axes
    assert list(_labelled_lines(side)) == ["mix", "reference"]
    assert "mono: result" in _texts(side)


def test_silent_and_short_inputs_do_not_fail(tmp_path, tracks):
    silent = spectrum_of(np.zeros((2, RATE), dtype=np.float32), sample_rate=RATE)
    empty = np.zeros(0, dtype=np.float32)
    kwargs = _kwargs(
        tracks, result=silent, short_term_before_lufs=empty, short_term_after_lufs=empty
    )
    mid, _, _, loud = master_report_figure(**kwargs).axes
    assert "result" not in _labelled_lines(mid)
    assert "silent: result" in _texts(mid)
    assert "shorter than 3 s or silent" in _texts(loud)
    plot_master_report(tmp_path / "silent.png", **kwargs)
    assert (tmp_path / "silent.png").is_file()


def test_bad_paths_raise_and_write_nothing(tmp_path, tracks):
    with pytest.raises(EncodeError, match=r"^plot folder '.*/missing/' does not exist$"):
        plot_master_report(tmp_path / "missing" / "report.png", **_kwargs(tracks))
    with pytest.raises(ParameterError, match=r"^plot must be a \.png file$"):
        plot_master_report(tmp_path / "report.jpg", **_kwargs(tracks))
    with pytest.raises(ParameterError):
        plot_master_report(tmp_path / "report", **_kwargs(tracks))
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(EncodeError, match="is a directory"):
        plot_master_report(tmp_path / "folder.png", **_kwargs(tracks))
    assert [p.name for p in tmp_path.iterdir()] == ["folder.png"]


def test_a_failed_render_leaves_nothing_and_keeps_an_old_file(tmp_path, tracks, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "report.png"
    out.write_bytes(b"old")

    def broken_savefig(self, stream, **kwargs):
        stream.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(EncodeError, match="no space left on device"):
        plot_master_report(out, **_kwargs(tracks))
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]
    assert out.read_bytes() == b"old"


def _pixels(kwargs: dict[str, Any]) -> np.ndarray:
    """The figure drawn in memory (no PNG), as 8-bit RGBA."""
    canvas = master_report_figure(**kwargs).canvas
    assert isinstance(canvas, FigureCanvasAgg)  # no pyplot: an Agg canvas of its own
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


def _png_pixels(path) -> np.ndarray:
    return np.round(imread(path) * 255.0).astype(np.uint8)


def test_two_threads_plot_at_once(tmp_path, tracks):
    jobs = {
        "a.png": _kwargs(tracks),
        "b.png": _kwargs(tracks, mix=tracks["mono"], reference=None, eq=None, title="other"),
    }
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            barrier.wait()
            plot_master_report(tmp_path / name, **jobs[name])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(jobs)
    for name, kwargs in jobs.items():  # each is exactly what a lone render draws
        image = _png_pixels(tmp_path / name)
        assert image.shape == (1000, 1200, 4)
        np.testing.assert_array_equal(image, _pixels(kwargs))
    assert not np.array_equal(_png_pixels(tmp_path / "a.png"), _png_pixels(tmp_path / "b.png"))


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, tonearm.mastering.plot; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
