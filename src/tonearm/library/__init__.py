"""The music library: database, scanner, tags, cache and similarity search.

- ``db``: engine, pool and short sessions; the schema by Alembic (``migrations/``) only.
- ``models``: the typed ORM tables. ``records``: the frozen records handed out instead.
- ``repositories``: one per entity (list, search, paginate, get, update), through ``cache``.
- ``cache``: the thread-safe LRU + TTL query cache, invalidated by every write.
- ``scanner``: folders to rows (add, skip, update, move, missing), batched, cancellable.
- ``tags``: mutagen tags, stream info, cover art, ReplayGain 2.0 writing.
- ``analysis``: the bounded, resumable analysis pool (the engine's function is handed in).
- ``similarity``: k-NN over normalised fingerprints.
- ``manager``: ``LibraryManager``, the facade the CLI, jobs and server share.

This package imports ``audio_io`` but never ``mastering``, ``jobs`` or ``server``. Importing it
is cheap: ``LibraryManager`` (SQLAlchemy, Alembic, mutagen) loads on first use, so a command
that never opens the library does not pay for it at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tonearm.library.manager import LibraryManager

__all__ = ["LibraryManager"]


def __getattr__(name: str) -> Any:
    if name == "LibraryManager":
        from tonearm.library.manager import LibraryManager

        return LibraryManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
