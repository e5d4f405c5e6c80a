"""Fixtures of the library tests."""

from __future__ import annotations

# --- Database backends: every test that takes ``database_url`` runs on SQLite and PostgreSQL ---
#
# ``postgres_server`` (session): one throwaway PostgreSQL server (``tests/pgserver.py``), started
#   the first time a test needs it and stopped at the end of the session. A machine without
#   PostgreSQL fails those tests with a message saying what to install; they are never skipped.
# ``database_url`` (function, ids ``sqlite`` and ``postgresql``): the SQLAlchemy URL of a fresh,
#   empty database, deleted after the test: a SQLite file in ``tmp_path``, or a database
#   ``t_<12 hex digits>`` on the session's server. ``-k sqlite`` never starts PostgreSQL.
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PostgresServer

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
