"""Where the shared test music lives.

``../shared/fixtures/music`` beside the checkout (how developers and CI have it), or the folder
named by ``$TONEARM_MUSIC``. ``tests/conftest.py`` stops the run with one clear line if it is
missing.
"""

from __future__ import annotations

import os
from pathlib import Path

MUSIC_DIR = Path(
    os.environ.get("TONEARM_MUSIC")
    or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "music"
)
