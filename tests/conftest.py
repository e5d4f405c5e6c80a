"""Suite-wide fixtures: the shared test music must be there; the database backends.

The backend fixtures live here, not under ``tests/library``, so that every folder that needs a
database (library, concurrency, later jobs and server) shares one PostgreSQL server a session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.music_paths import MUSIC_DIR
from tests.pgserver import PostgresServer


def pytest_sessionstart(session: pytest.Session) -> None:
    if not (MUSIC_DIR / "bach_bwv66_6.flac").is_file():
        pytest.exit(
            f"test music not found in {MUSIC_DIR}: clone beside ../shared or set TONEARM_MUSIC",
            returncode=2,
        )


# --- Database backends: every test that takes ``database_url`` runs on SQLite and PostgreSQL ---
#
# ``postgres_server`` (session): one throwaway PostgreSQL server (``tests/pgserver.py``), started
#   the first time a test needs it and stopped at the end of the session. A machine without
#   PostgreSQL fails those tests with a message saying what to install; they are never skipped.
# ``database_url`` (function, ids ``sqlite`` and ``postgresql``): the SQLAlchemy URL of a fresh,
#   empty database, deleted after the test: a SQLite file in ``tmp_path``, or a database
#   ``t_<12 hex digits>`` on the session's server. ``-k sqlite`` never starts PostgreSQL.

DATABASE_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=DATABASE_BACKENDS, ids=DATABASE_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+pysqlite:///{tmp_path}/library.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


# --- end of database backends ---
