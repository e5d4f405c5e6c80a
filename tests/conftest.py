"""Suite-wide checks: the shared test music must be there."""

from __future__ import annotations

import pytest

from tests.music_paths import MUSIC_DIR


def pytest_sessionstart(session: pytest.Session) -> None:
    if not (MUSIC_DIR / "bach_bwv66_6.flac").is_file():
        pytest.exit(
            f"test music not found in {MUSIC_DIR}: clone beside ../shared or set TONEARM_MUSIC",
            returncode=2,
        )
