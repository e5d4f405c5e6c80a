"""The library database: engine, connection pool, short sessions, and the schema by Alembic.

:func:`open_database` takes a SQLAlchemy URL (or a file path for SQLite), checks that it is a
usable database, brings its schema to the current revision with ``alembic upgrade head`` (a
fresh database too: never ``create_all``), and returns a :class:`Database`.

**SQLite** (the embedded default): a file in WAL mode, so readers never block the writer;
``synchronous=NORMAL`` (durable across application crashes; the last transactions may roll back
on power loss); foreign keys on; a busy timeout of ``busy_timeout_s`` (30 s) so a writer waits
for another instead of failing. Write transactions start with ``BEGIN IMMEDIATE``: they take the
write lock at once, so two writers queue on the busy timeout rather than deadlock when both
try to upgrade a read lock (SQLite then fails one at once, whatever the timeout).

**PostgreSQL** (``postgresql+psycopg://user@host/db``): the same code; ``pool_pre_ping``
replaces connections the server closed.

**Pool**: ``pool_size`` connections kept open (default 5) plus up to ``max_overflow`` (10)
more under load; a caller waits at most ``pool_timeout_s`` (30 s) for one, then gets an error.
Sessions are short: one unit of work each (:meth:`Database.read` / :meth:`Database.write`),
committed or rolled back as the ``with`` block ends, and ORM objects do not outlive them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tonearm.errors import DatabaseError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Database", "PoolSettings", "database_url", "open_database"]

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Connection pool and lock waits (seconds)."""

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout_s: float = 30.0
    busy_timeout_s: float = 30.0


def database_url(location: str | os.PathLike[str]) -> URL:
    """A SQLAlchemy URL from a URL string or a path to a SQLite file (``DatabaseError`` when
    it is neither)."""
    text_location = os.fspath(location)
    if "://" in text_location:
        try:
            return make_url(text_location)
        except ArgumentError:
            raise DatabaseError(f"'{text_location}' is not a database URL") from None
    path = Path(text_location).expanduser().resolve()
    return URL.create("sqlite+pysqlite", database=str(path))


class Database:
    """An open library database: an engine and its session factories (thread-safe)."""

    def __init__(self, url: URL, *, pool: PoolSettings | None = None) -> None:
        self.url = url
        self.pool = pool or PoolSettings()
        self.dialect = url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url, self.pool)
        else:
            self.engine = create_engine(
                url,
                pool_size=self.pool.pool_size,
                max_overflow=self.pool.max_overflow,
                pool_timeout=self.pool.pool_timeout_s,
                pool_pre_ping=True,
            )
        # a read session sees one snapshot: SQLite's read transactions are; PostgreSQL's
        # default READ COMMITTED lets each statement see newer commits, so reads there run at
        # REPEATABLE READ (a snapshot from their first statement; they never write)
        read_engine = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.dialect == "postgresql"
            else self.engine
        )
        self._reads = sessionmaker(read_engine, expire_on_commit=False)
        write_engine = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.dialect == "sqlite"
            else self.engine
        )
        self._writes = sessionmaker(write_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading, on one consistent snapshot (rolled back at the end: it never
        writes)."""
        with self._reads() as session:
            yield session
            session.rollback()

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session for one atomic write: committed when the block ends, rolled back on an
        exception. On SQLite it holds the write lock from its first statement."""
        with self._writes() as session, session.begin():
            yield session

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_engine(url: URL, pool: PoolSettings) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool.pool_size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.pool_timeout_s,
        connect_args={"timeout": pool.busy_timeout_s, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # transactions are begun by the "begin" hook below, not by the driver
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={round(pool.busy_timeout_s * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _alembic_config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _describe(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"'{url.database}'"
    return url.render_as_string(hide_password=True)


def open_database(
    location: str | os.PathLike[str] | URL,
    *,
    pool: PoolSettings | None = None,
    upgrade: bool = True,
) -> Database:
    """Open (creating when missing) and migrate the library database at ``location``.

    Raises
    ------
    DatabaseError
        The file is not a database, the database was made by a newer tonearm (its schema
        revision is unknown here), its folder does not exist, or the server is unreachable.
        Nothing is changed in those cases.
    """
    url = location if isinstance(location, URL) else database_url(location)
    name = _describe(url)
    if url.get_backend_name() == "sqlite" and url.database:
        folder = Path(url.database).parent
        if not folder.is_dir():
            raise DatabaseError(f"cannot create the library database: no folder '{folder}'")
    database = Database(url, pool=pool)
    try:
        _check_and_upgrade(database, name, upgrade=upgrade)
    except BaseException:
        database.close()
        raise
    return database


def _check_and_upgrade(database: Database, name: str, *, upgrade: bool) -> None:
    script = ScriptDirectory.from_config(_alembic_config(None))
    known = {revision.revision for revision in script.walk_revisions()}
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = MigrationContext.configure(connection).get_current_heads()
            newer = [revision for revision in current if revision not in known]
            if newer:
                raise DatabaseError(
                    f"library database {name} has schema revision {', '.join(newer)}, made "
                    "by a newer tonearm; upgrade tonearm to open it"
                )
            connection.rollback()  # end the read; the upgrade runs in its own transaction
            if upgrade and set(current) != set(script.get_heads()):
                with connection.begin():
                    command.upgrade(_alembic_config(connection), "head")
    except (OperationalError, DBAPIError, sqlite3.DatabaseError) as exc:
        raise DatabaseError(f"cannot open library database {name}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
