"""The mastering engine: analyse -> plan -> render -> verify.

- ``targets``: platform presets (Spotify -14 LUFS / -1 dBTP, ...) and custom targets.
- ``analysis``: the one streaming analysis pass (loudness, LRA, true peak, levels, spectrum,
  fingerprint, chunk levels) and ``measure_file`` for verification.
- ``fingerprint``: the 25-value fingerprint used by the library's similarity search.
- ``rhythm``: onset count, tempo and rhythm stability from the fingerprint's onset envelope.
- ``plan``: the frozen, JSON-serialisable ``MasteringPlan``.
- ``planner``: analysis + target -> plan (tonal balance, dynamics, width, gain).
- ``gain_model``: predicts the limited output's loudness to solve the make-up gain.
- ``reference``: reference tracks reduced to loudness and normalised M/S band levels.
- ``matching``: plans a master matched to references (tonal balance, width, loudness) and
  re-solves a saved plan's gain for another track.
- ``metrics``: tonal distance and side/mid ratio, the measures matching is judged by.
- ``plot``: the report figure (spectra, EQ curve, loudness over time), matplotlib on demand.
- ``chain``: the plan as streaming stages (M/S EQ, compressor, true-peak limiter).
- ``render``: ``master_file`` — file to file, verified, atomic.
- ``stream``: a plan rendered as a stream of blocks from any frame (the server's player).
- ``report``: the ``MasteringReport`` and its JSON.
"""

from tonearm.mastering.plan import MasteringPlan
from tonearm.mastering.render import MasterSettings, master_file
from tonearm.mastering.report import MasteringReport
from tonearm.mastering.targets import PRESETS, LoudnessTarget, resolve_target

__all__ = [
    "PRESETS",
    "LoudnessTarget",
    "MasterSettings",
    "MasteringPlan",
    "MasteringReport",
    "master_file",
    "resolve_target",
]
