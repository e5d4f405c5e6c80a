"""Where the library lives by default (no heavy imports: the CLI reads it for its help)."""

from __future__ import annotations

import os

import platformdirs

__all__ = ["default_database_path"]


def default_database_path() -> str:
    """``library.db`` in the user's data folder (e.g. ``~/.local/share/tonearm``)."""
    return os.path.join(platformdirs.user_data_dir("tonearm", appauthor=False), "library.db")
