"""Reference matching, end to end: the issue's "must hold" list, measured on the written files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import soxr

from tests.mastering import synth
from tonearm.dsp.channels import from_mid_side, to_mid_side
from tonearm.dsp.loudness import integrated_loudness
from tonearm.dsp.spectrum import MidSideSpectrum, spectrum_of
from tonearm.dsp.true_peak import true_peak_dbtp
from tonearm.errors import ParameterError
from tonearm.mastering.matching import MatchSettings
from tonearm.mastering.metrics import side_to_mid_db, tonal_distance_db
from tonearm.mastering.plan import MasteringPlan
from tonearm.mastering.render import MasterSettings, master_file
from tonearm.mastering.report import MasteringReport


def _read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate


def _spectrum(path: Path) -> MidSideSpectrum:
    audio, rate = _read(path)
    return spectrum_of(audio, sample_rate=rate)


def _at_lufs(audio: np.ndarray, rate: int, lufs: float) -> np.ndarray:
    gain = 10 ** ((lufs - integrated_loudness(audio, sample_rate=rate)) / 20)
    return (audio * gain).astype(np.float32)


def _dull_narrow_quiet(audio: np.ndarray, rate: int) -> np.ndarray:
    """About -8 dB above 3 kHz (a high shelf, as a dull mix has), side -6 dB, -26 LUFS."""
    sos = scipy.signal.butter(2, 3000, "high", fs=rate, output="sos")
    dull = audio - 0.6 * scipy.signal.sosfilt(sos, audio, axis=1)
    mid_side = to_mid_side(dull.astype(np.float32))
    mid_side[1] *= np.float32(10 ** (-6 / 20))
    return _at_lufs(from_mid_side(mid_side), rate, -26.0)


def _bright_wide_loud(audio: np.ndarray, rate: int) -> np.ndarray:
    """About +4 dB above 4 kHz, side +3 dB, soft-clipped to -10 LUFS."""
    sos = scipy.signal.butter(2, 4000, "high", fs=rate, output="sos")
    bright = audio + 0.6 * scipy.signal.sosfilt(sos, audio, axis=1)
    mid_side = to_mid_side(bright.astype(np.float32))
    mid_side[1] *= np.float32(10 ** (3 / 20))
    wide = from_mid_side(mid_side)
    loud = np.tanh(1.5 * wide / np.abs(wide).max()).astype(np.float32) * np.float32(0.9)
    return _at_lufs(loud, rate, -10.0)


def _master(mix: Path, references: list[Path], out: Path, **options: object) -> MasteringReport:
    match = MatchSettings(**{k: v for k, v in options.items() if k != "strength"})  # type: ignore[arg-type]
    settings = MasterSettings(
        references=tuple(str(r) for r in references),
        match=match,
        strength=float(options.get("strength", 1.0)),  # type: ignore[arg-type]
    )
    return master_file(mix, out, settings=settings)


def _check_match(
    report: MasteringReport, mix: Path, reference: Path, out: Path, *, ceiling: float = -1.0
) -> None:
    result, rate = _read(out)
    original, original_rate = _read(mix)
    assert rate == original_rate
    assert result.shape == original.shape
    assert true_peak_dbtp(result) <= ceiling
    reference_audio, reference_rate = _read(reference)
    reference_lufs = integrated_loudness(reference_audio, sample_rate=reference_rate)
    output_lufs = integrated_loudness(result, sample_rate=rate)
    assert report.match is not None
    if report.match.max_lufs_at_ceiling is None:
        assert output_lufs == pytest.approx(reference_lufs, abs=0.5)
    else:  # the ceiling caps it: the report states the most that fits, and the output hits it
        assert output_lufs == pytest.approx(report.match.max_lufs_at_ceiling, abs=0.5)
        assert report.match.max_lufs_at_ceiling < reference_lufs
    ref_spectrum, mix_spectrum, out_spectrum = _spectrum(reference), _spectrum(mix), _spectrum(out)
    before = tonal_distance_db(mix_spectrum, ref_spectrum)
    after = tonal_distance_db(out_spectrum, ref_spectrum)
    assert after <= 0.7 * before, (before, after)
    assert side_to_mid_db(out_spectrum) <= side_to_mid_db(ref_spectrum) + 1.0
    assert report.match.tonal_distance_after_db == pytest.approx(after, abs=0.3)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    mix, rate = synth.excerpt(synth.BACH, 20.0)
    reference, reference_rate = synth.excerpt(synth.JOPLIN, 30.0, offset_s=10.0)
    return (
        synth.write(folder / "bach.wav", mix, rate),
        synth.write(folder / "joplin.wav", reference, reference_rate),
    )


@pytest.fixture(scope="module")
def extreme_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("extreme")
    # the same kind of music (strings, which have a real high end, as most mixes do), mixed
    # dull and narrow, and mastered bright and wide
    mix, rate = synth.excerpt(synth.BACH, 15.0)
    reference, _ = synth.excerpt(synth.BACH, 15.0, offset_s=16.0)
    return (
        synth.write(folder / "dull.wav", _dull_narrow_quiet(mix, rate), rate),
        synth.write(folder / "bright.wav", _bright_wide_loud(reference, rate), rate),
    )


def test_fixture_pair_matches(pair: tuple[Path, Path], tmp_path: Path) -> None:
    mix, reference = pair
    out = tmp_path / "out.wav"
    report = _master(mix, [reference], out)
    _check_match(report, mix, reference, out)


def test_dull_narrow_quiet_mix_to_bright_wide_loud_reference(
    extreme_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    mix, reference = extreme_pair
    out = tmp_path / "out.wav"
    report = _master(mix, [reference], out)
    _check_match(report, mix, reference, out)
    assert report.plan.eq is not None
    assert max(report.plan.eq.mid_db) <= 12.0
    assert min(report.plan.eq.mid_db) >= -12.0


def test_strength_zero_changes_only_loudness(pair: tuple[Path, Path], tmp_path: Path) -> None:
    mix, reference = pair
    out = tmp_path / "out.wav"
    report = _master(mix, [reference], out, strength=0.0)
    assert report.plan.eq is None
    assert report.plan.dynamics is None
    mix_spectrum, out_spectrum = _spectrum(mix), _spectrum(out)
    assert tonal_distance_db(out_spectrum, mix_spectrum) < 0.3
    assert side_to_mid_db(out_spectrum) == pytest.approx(side_to_mid_db(mix_spectrum), abs=0.2)
    result, rate = _read(out)
    reference_audio, _ = _read(reference)
    assert integrated_loudness(result, sample_rate=rate) == pytest.approx(
        integrated_loudness(reference_audio, sample_rate=rate), abs=0.5
    )


def test_strength_scales_the_curve_itself(pair: tuple[Path, Path], tmp_path: Path) -> None:
    mix, reference = pair
    full = _master(mix, [reference], tmp_path / "full.wav")
    half = _master(mix, [reference], tmp_path / "half.wav", strength=0.5)
    assert full.plan.eq is not None
    assert half.plan.eq is not None
    np.testing.assert_allclose(np.array(half.plan.eq.mid_db) * 2, full.plan.eq.mid_db, atol=0.01)


def test_switches(pair: tuple[Path, Path], tmp_path: Path) -> None:
    mix, reference = pair
    no_width = _master(mix, [reference], tmp_path / "a.wav", match_width=False)
    assert no_width.plan.eq is not None
    assert no_width.plan.eq.side_db == no_width.plan.eq.mid_db
    no_eq = _master(mix, [reference], tmp_path / "b.wav", match_eq=False, match_width=False)
    assert no_eq.plan.eq is None
    kept = _master(mix, [reference], tmp_path / "c.wav", match_loudness=False)
    result, rate = _read(tmp_path / "c.wav")
    original, _ = _read(mix)
    assert integrated_loudness(result, sample_rate=rate) == pytest.approx(
        integrated_loudness(original, sample_rate=rate), abs=0.5
    )
    assert kept.plan.target.name == "mix loudness"
    coarse = _master(mix, [reference], tmp_path / "d.wav", smoothing_octaves=2.0)
    assert coarse.plan.eq is not None
    assert no_width.plan.eq.mid_db != coarse.plan.eq.mid_db  # smoother curve, other values


def test_reference_at_another_sample_rate(pair: tuple[Path, Path], tmp_path: Path) -> None:
    mix, reference = pair
    audio, rate = _read(reference)
    resampled = soxr.resample(audio.T, rate, 48000).T.astype(np.float32)
    reference_48k = synth.write(tmp_path / "ref48.wav", resampled, 48000)
    out = tmp_path / "out.wav"
    report = _master(mix, [reference_48k], out)
    assert sf.info(out).samplerate == sf.info(mix).samplerate
    _check_match(report, mix, reference_48k, out)


def test_several_references_weighted_by_loudness(
    pair: tuple[Path, Path], extreme_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    mix, reference = pair
    _, loud_reference = extreme_pair
    report = _master(mix, [reference, loud_reference], tmp_path / "out.wav")
    assert report.match is not None
    quiet_lufs = integrated_loudness(_read(reference)[0], sample_rate=44100)
    loud_lufs = integrated_loudness(_read(loud_reference)[0], sample_rate=44100)
    # the loudness-weighted mean lies between the two, much nearer the louder one
    assert quiet_lufs < report.match.reference_lufs < loud_lufs
    assert loud_lufs - report.match.reference_lufs < report.match.reference_lufs - quiet_lufs


def test_saved_plan_gives_another_track_the_same_treatment(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    mix, reference = pair
    first = _master(mix, [reference], tmp_path / "first.wav")
    saved = json.loads(json.dumps(first.plan.to_dict()))
    plan = MasteringPlan.from_dict(saved)
    other, rate = synth.excerpt(synth.JOPLIN, 12.0, offset_s=60.0)
    other_path = synth.write(tmp_path / "other.wav", other * np.float32(0.5), rate)
    out = tmp_path / "other.out.wav"
    report = master_file(other_path, out, settings=MasterSettings(plan=plan))
    assert report.plan.eq is not None
    assert first.plan.eq is not None
    same_curve = (report.plan.eq.freqs_hz, report.plan.eq.mid_db, report.plan.eq.side_db)
    assert same_curve == (first.plan.eq.freqs_hz, first.plan.eq.mid_db, first.plan.eq.side_db)
    assert report.plan.dynamics == first.plan.dynamics
    assert report.plan.gain_db != first.plan.gain_db  # solved again for this track
    result, _ = _read(out)
    assert integrated_loudness(result, sample_rate=rate) == pytest.approx(plan.target.lufs, abs=0.5)


def test_identical_reference_changes_little(pair: tuple[Path, Path], tmp_path: Path) -> None:
    mix, _ = pair
    out = tmp_path / "out.wav"
    report = _master(mix, [mix], out)
    assert report.plan.eq is not None
    assert max(abs(v) for v in report.plan.eq.mid_db) < 1.0
    assert tonal_distance_db(_spectrum(out), _spectrum(mix)) < 0.5


def test_mono_reference_for_a_stereo_mix_keeps_the_width(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    mix, reference = pair
    audio, rate = _read(reference)
    mono = synth.write(tmp_path / "mono.wav", audio.mean(axis=0, keepdims=True), rate)
    out = tmp_path / "out.wav"
    report = _master(mix, [mono], out)
    assert report.plan.eq is not None
    assert report.plan.eq.side_db == report.plan.eq.mid_db
    assert any("mono" in note for note in report.notes)
    assert side_to_mid_db(_spectrum(out)) == pytest.approx(side_to_mid_db(_spectrum(mix)), abs=1.0)


def test_mono_mix_with_a_stereo_reference_states_the_fallback(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    mix, reference = pair
    audio, rate = _read(mix)
    mono = synth.write(tmp_path / "mono.wav", audio.mean(axis=0, keepdims=True), rate)
    out = tmp_path / "out.wav"
    report = _master(mono, [reference], out)
    assert sf.info(out).channels == 1
    assert any("the mix is mono" in note for note in report.notes)
    result, _ = _read(out)
    reference_audio, _ = _read(reference)
    assert integrated_loudness(result, sample_rate=rate) == pytest.approx(
        integrated_loudness(reference_audio, sample_rate=rate), abs=0.5
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda rate: np.zeros((2, rate * 5), np.float32), "silent"),
        (lambda rate: synth.noise(rate, 2.0), "at least 3 s"),
    ],
)
def test_bad_references_are_clear_errors(
    pair: tuple[Path, Path], tmp_path: Path, make: object, message: str
) -> None:
    mix, _ = pair
    bad = synth.write(tmp_path / "bad.wav", make(44100), 44100)  # type: ignore[operator]
    with pytest.raises(ParameterError, match=message):
        _master(mix, [bad], tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


def test_max_eq_sets_the_clamp(extreme_pair: tuple[Path, Path], tmp_path: Path) -> None:
    mix, reference = extreme_pair
    wide = _master(mix, [reference], tmp_path / "wide.wav", max_eq_db=20.0)
    narrow = _master(mix, [reference], tmp_path / "narrow.wav", max_eq_db=4.0)
    assert wide.plan.eq is not None
    assert narrow.plan.eq is not None
    assert max(abs(g) for g in narrow.plan.eq.mid_db) <= 4.0 + 1e-9
    # this pair needs more than 12 dB somewhere: a wider clamp uses it
    assert max(abs(g) for g in wide.plan.eq.mid_db) > 12.0
    assert max(abs(g) for g in wide.plan.eq.mid_db) <= 20.0 + 1e-9


@pytest.mark.parametrize("max_eq_db", [-1.0, 24.5])
def test_max_eq_out_of_range_is_refused(max_eq_db: float) -> None:
    with pytest.raises(ParameterError, match="max EQ must be between 0 and 24 dB"):
        MatchSettings(max_eq_db=max_eq_db)
