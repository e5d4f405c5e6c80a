"""The library facade end to end: scan, analyse (resumable), similarity, ReplayGain tags."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mutagen.flac import FLAC

from tests.library.test_scanner import _tone
from tonearm.errors import DecodeError
from tonearm.jobs.library_analysis import mastering_analysis
from tonearm.library.analysis import AnalysisValues
from tonearm.library.manager import LibraryManager
from tonearm.mastering.analysis import analyze_file


@pytest.fixture
def library(database_url: str) -> Iterator[LibraryManager]:
    with LibraryManager(database_url) as manager:
        yield manager


def _music(folder: Path, count: int = 6) -> list[Path]:
    return [
        _tone(folder / f"{i}.flac", 1.0, freq=110.0 * (i + 1), title=f"Tone {i}")
        for i in range(count)
    ]


def test_analysis_fills_loudness_and_fingerprints_with_the_engines_figures(
    library: LibraryManager, tmp_path: Path
) -> None:
    files = _music(tmp_path / "music")
    library.scan([tmp_path / "music"])
    summary = library.analyse(mastering_analysis, workers=2)
    assert (summary.analysed, summary.failed, summary.remaining) == (6, 0, 0)
    for track in library.tracks.list().items:
        expected = analyze_file(track.path)
        assert track.integrated_lufs == pytest.approx(expected.loudness.integrated_lufs, abs=1e-9)
        assert track.true_peak_dbtp == pytest.approx(expected.true_peak_dbtp, abs=1e-9)
        assert track.analysed_at is not None
    again = library.analyse(mastering_analysis)
    assert again.analysed == 0  # nothing pending
    first = library.tracks.list(order="path").items[0]
    neighbours = library.similar(first.id, k=3)
    assert len(neighbours) == 3
    assert first.id not in {n.track_id for n in neighbours}
    assert [n.distance for n in neighbours] == sorted(n.distance for n in neighbours)
    assert len(files) == 6


def test_analysis_resumes_after_a_crash_and_records_failures(
    library: LibraryManager, tmp_path: Path
) -> None:
    _music(tmp_path / "music", 6)
    library.scan([tmp_path / "music"])
    calls: list[str] = []
    crash_after = 3

    def crashing(path: str) -> AnalysisValues:
        if len(calls) >= crash_after:
            raise KeyboardInterrupt  # the process dies mid-analysis
        calls.append(path)
        return mastering_analysis(path)

    with pytest.raises(KeyboardInterrupt):
        library.analyse(crashing, workers=1)
    analysed = [t for t in library.tracks.list().items if t.analysed_at is not None]
    # what was stored before the crash stays stored (a result still in flight is redone)
    assert 1 <= len(analysed) <= crash_after
    done_before = {t.id for t in analysed}

    def failing_on_one(path: str) -> AnalysisValues:
        if path.endswith("4.flac"):
            raise DecodeError("'4.flac' is truncated")
        return mastering_analysis(path)

    summary = library.analyse(failing_on_one, workers=2)
    assert (summary.analysed, summary.failed) == (5 - len(done_before), 1)
    after = {t.id: t for t in library.tracks.list().items}
    assert {i for i, t in after.items() if t.analysed_at is not None} >= done_before
    assert library.analyse(mastering_analysis).analysed == 0  # a failure is not retried
    assert library.analyse(mastering_analysis, retry_failed=True).analysed == 1


def test_cancelling_analysis_leaves_the_rest_pending(
    library: LibraryManager, tmp_path: Path
) -> None:
    _music(tmp_path / "music", 6)
    library.scan([tmp_path / "music"])
    cancel = threading.Event()

    def slow(path: str) -> AnalysisValues:
        cancel.set()
        return mastering_analysis(path)

    summary = library.analyse(slow, workers=1, cancel=cancel)
    assert summary.cancelled
    assert summary.analysed + summary.remaining == 6
    assert summary.remaining > 0
    assert library.analyse(mastering_analysis).analysed == summary.remaining


def test_replaygain_tags_are_written_and_the_next_scan_sees_no_change(
    library: LibraryManager, tmp_path: Path
) -> None:
    files = _music(tmp_path / "music", 3)
    library.scan([tmp_path / "music"])
    library.analyse(mastering_analysis)
    result = library.write_replaygain_tags()
    assert (result.written, result.errors) == (3, ())
    for path in files:
        tags = FLAC(path)
        track = next(t for t in library.tracks.list().items if t.path == str(path))
        assert track.integrated_lufs is not None
        gain = float(tags["REPLAYGAIN_TRACK_GAIN"][0].split()[0])
        assert gain == pytest.approx(-18.0 - track.integrated_lufs, abs=0.006)
        assert float(tags["REPLAYGAIN_TRACK_PEAK"][0]) > 0
    rescan = library.scan([tmp_path / "music"])
    assert (rescan.unchanged, rescan.updated) == (3, 0)


def test_similarity_index_follows_new_fingerprints(library: LibraryManager, tmp_path: Path) -> None:
    _music(tmp_path / "music", 4)
    library.scan([tmp_path / "music"])
    library.analyse(mastering_analysis)
    ids = [t.id for t in library.tracks.list(order="path").items]
    before = library.similar(ids[0], k=10)
    assert len(before) == 3
    _tone(tmp_path / "music" / "9.flac", 1.0, freq=3000.0, title="New")
    library.scan([tmp_path / "music"])
    library.analyse(mastering_analysis)
    after = library.similar(ids[0], k=10)
    assert len(after) == 4
    assert np.isfinite([n.distance for n in after]).all()
