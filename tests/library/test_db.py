"""Opening the library database: migrations, pragmas, bad files, newer schemas."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tonearm.errors import DatabaseError
from tonearm.library.db import database_url, open_database
from tonearm.library.models import Base

TABLES = {
    "albums",
    "artists",
    "favourites",
    "fingerprints",
    "genres",
    "jobs",
    "play_counts",
    "playlist_entries",
    "playlists",
    "scan_runs",
    "settings",
    "tracks",
}


SEARCH_INDEX = {"tracks_search", "ix_tracks_search_text_trgm"}
"""Objects the migration owns and the models do not describe: the substring-search index
(FTS5 on SQLite, with its shadow tables; pg_trgm GIN on PostgreSQL)."""


def _not_search_index(name: str | None, kind: str, *_: object) -> bool:
    return not (name and any(name.startswith(prefix) for prefix in SEARCH_INDEX))


def test_upgrade_head_builds_the_schema_the_models_describe(database_url: str) -> None:
    with open_database(database_url) as db:
        names = {n for n in inspect(db.engine).get_table_names() if _not_search_index(n, "")}
        assert names == TABLES | {"alembic_version"}
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": _not_search_index}
            )
            differences = compare_metadata(context, Base.metadata)
            assert differences == []
            assert context.get_current_revision() == "0004"


def test_search_has_its_substring_index(database_url: str) -> None:
    with open_database(database_url) as db, db.read() as session:
        if db.dialect == "sqlite":
            query = "SELECT rowid FROM tracks_search WHERE search_text LIKE '%rag%'"
            plan = session.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()
            assert "VIRTUAL TABLE INDEX" in str(plan)
        else:
            indexes = {i["name"] for i in inspect(db.engine).get_indexes("tracks")}
            assert "ix_tracks_search_text_trgm" in indexes


def test_opening_twice_keeps_the_data(database_url: str) -> None:
    with open_database(database_url) as db, db.write() as session:
        session.execute(text("INSERT INTO settings (key, value) VALUES ('k', '1')"))
    with open_database(database_url) as db, db.read() as session:
        assert session.execute(text("SELECT value FROM settings")).scalar_one() == "1"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    with open_database(tmp_path / "lib.db") as db, db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert session.execute(text("PRAGMA busy_timeout")).scalar_one() == 30000
        assert session.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    assert (tmp_path / "lib.db").exists()


def test_a_file_that_is_not_a_database_is_a_clear_error_and_is_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "library.db"
    path.write_bytes(b"these are not the bytes of a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match=r"cannot open library database .*library\.db"):
        open_database(path)
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused_and_left_alone(database_url: str) -> None:
    with open_database(database_url) as db, db.write() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(DatabaseError, match="9999_future, made by a newer tonearm"):
        open_database(database_url)
    engine = create_engine(database_url)  # read without tonearm: nothing was changed
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert [row[0] for row in rows] == ["9999_future"]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no folder"):
        open_database(tmp_path / "nope" / "library.db")


def test_urls_and_paths() -> None:
    assert database_url("postgresql+psycopg://u@h/db").get_backend_name() == "postgresql"
    url = database_url("relative/lib.db")
    assert url.get_backend_name() == "sqlite"
    assert Path(str(url.database)).is_absolute()
    with pytest.raises(DatabaseError, match="not a database URL"):
        database_url("bad url://x")


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="cannot open library database"):
        open_database("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")


def test_a_sqlite_file_really_is_sqlite(tmp_path: Path) -> None:
    with open_database(tmp_path / "lib.db"):
        pass
    connection = sqlite3.connect(tmp_path / "lib.db")
    try:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    finally:
        connection.close()
    assert "tracks" in tables
