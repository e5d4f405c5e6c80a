"""The database test infrastructure itself: both backends are real, separate and usable.

Every test here takes ``database_url`` (``tests/library/conftest.py``), so it runs once on a
SQLite file and once on the session's throwaway PostgreSQL server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text

from tests.pgserver import PostgresServer

THREADS = 20
INCREMENTS = 50  # per thread, each its own transaction


def make_engine(url: str) -> Engine:
    """An engine with a connection per thread; SQLite in WAL mode, waiting up to 30 s for locks."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=THREADS, max_overflow=0)

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_size=THREADS, max_overflow=0)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_dialect_matches_backend(request: pytest.FixtureRequest, engine: Engine) -> None:
    backend = request.node.callspec.params["database_url"]
    assert engine.dialect.name == backend


def test_create_insert_read_back(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE track (id INTEGER PRIMARY KEY, title VARCHAR(200))"))
        conn.execute(
            text("INSERT INTO track (id, title) VALUES (:id, :title)"),
            [{"id": 1, "title": "Wachet auf"}, {"id": 2, "title": "Erschallet, ihr Lieder — ü"}],
        )
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, title FROM track ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [(1, "Wachet auf"), (2, "Erschallet, ihr Lieder — ü")]


def test_database_starts_empty(engine: Engine) -> None:
    """Each test gets its own database: the table made by another test is not there."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE track (id INTEGER PRIMARY KEY)"))
        assert conn.execute(text("SELECT count(*) FROM track")).scalar_one() == 0


def test_concurrent_increments_lose_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter (id, n) VALUES (1, 0)"))
    start = threading.Barrier(THREADS, timeout=30)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(INCREMENTS):
                with engine.begin() as conn:
                    conn.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with engine.connect() as conn:
        total = conn.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
    assert total == THREADS * INCREMENTS


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_file_database_in_wal_mode(engine: Engine) -> None:
    """The SQLite backend is a real file in the test's temporary folder, in WAL mode."""
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    assert engine.url.database is not None
    assert Path(engine.url.database).name == "library.db"
    assert Path(engine.url.database).is_file()


def test_postgres_is_a_separate_server_process(postgres_server: PostgresServer) -> None:
    """The session's server is a real PostgreSQL: its own process, not ours, answering on TCP."""
    database = postgres_server.url("postgres")
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            assert "PostgreSQL" in conn.execute(text("SELECT version()")).scalar_one()
            assert conn.execute(text("SHOW fsync")).scalar_one() == "off"
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert pid != os.getpid()
            if Path("/proc/self").exists():  # Linux: a live process of its own, named postgres
                assert Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    finally:
        engine.dispose()
