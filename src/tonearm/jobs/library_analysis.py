"""The bridge from the mastering engine's analysis to the library's stored values.

The library never imports the engine: its analysis pool is handed :func:`mastering_analysis`
by the callers (``tonearm scan`` and the server), which may import both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tonearm.library.analysis import AnalysisValues

__all__ = ["mastering_analysis"]


def mastering_analysis(path: str) -> AnalysisValues:
    """Loudness, true peak, LRA and the 25-value fingerprint of one file (mastering engine)."""
    from tonearm.library.analysis import AnalysisValues
    from tonearm.mastering.analysis import analyze_file

    result = analyze_file(path)
    fingerprint = result.fingerprint
    return AnalysisValues(
        integrated_lufs=result.loudness.integrated_lufs,
        true_peak_dbtp=result.true_peak_dbtp,
        loudness_range_lu=result.loudness.loudness_range_lu,
        fingerprint=None if fingerprint is None else tuple(fingerprint.as_vector().tolist()),
    )
