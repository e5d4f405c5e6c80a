"""A throwaway PostgreSQL server for the test session.

``PostgresServer().start()`` runs ``initdb`` into a fresh temporary directory and starts a
``postgres`` on a free TCP port of 127.0.0.1 (and a Unix socket in the same directory); ``stop()``
shuts it down and deletes the directory. Nothing of the machine's own PostgreSQL setup is used
or touched: no cluster under ``/var/lib/postgresql``, no system service.

* **Binaries**: the folder named by ``$TONEARM_PG_BIN``, else the newest
  ``/usr/lib/postgresql/<version>/bin`` (Debian's layout), else ``initdb`` and ``pg_ctl`` on
  ``PATH``. If none is found, ``start()`` raises ``RuntimeError`` telling how to install
  PostgreSQL: the tests that need it fail, they are never skipped.
* **Root**: PostgreSQL refuses to run as root. Run as root (as CI does), ``initdb`` and
  ``pg_ctl`` run as the unprivileged ``postgres`` user that Debian's package creates (or, where
  there is none, a system user ``tonearm-pg`` created for the purpose), and the temporary
  directory is handed to that user. Otherwise they run as the current user.
* **Cluster**: superuser ``tonearm``, ``trust`` authentication (no password), UTF-8,
  locale ``C.UTF-8`` (``--no-locale`` where that locale is missing). The server runs with
  ``fsync``, ``synchronous_commit`` and ``full_page_writes`` off: the data is thrown away, so
  durability only costs time.
* **Databases**: ``create_database(name)`` makes an empty database and returns its SQLAlchemy
  URL (``postgresql+psycopg://tonearm@127.0.0.1:PORT/NAME``); ``drop_database(name)`` drops it
  even while clients are still connected.

Every subprocess has a timeout; a failed start reports the tail of the server's log. An
``atexit`` hook stops a server that was never stopped (a session that crashed), so none is
left running behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql

SUPERUSER = "tonearm"
HOST = "127.0.0.1"
#: The user the server runs as when the tests run as root: Debian's package creates ``postgres``.
SERVICE_USERS = ("postgres",)
#: Created (``useradd --system``) when the tests run as root and no service user exists.
FALLBACK_USER = "tonearm-pg"

INITDB_TIMEOUT_S = 120.0
START_WAIT_S = 60  # pg_ctl -w -t: how long pg_ctl waits for the server to accept connections
STOP_WAIT_S = 30
CONNECT_TIMEOUT_S = 10
START_ATTEMPTS = 3  # a free port can be taken by someone else between probing and binding

INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install them "
    "(`apt-get install postgresql` on Debian/Ubuntu) or set TONEARM_PG_BIN to the folder "
    "that holds them"
)
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def find_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``; ``RuntimeError`` if none."""
    named = os.environ.get("TONEARM_PG_BIN")
    if named:
        folder = Path(named)
        if not _has_server_binaries(folder):
            raise RuntimeError(f"TONEARM_PG_BIN={named} holds no initdb and pg_ctl. {INSTALL_HINT}")
        return folder
    debian = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if _has_server_binaries(p.parent)
    ]
    if debian:
        return max(debian, key=lambda folder: _version_key(folder.parent.name))
    initdb = shutil.which("initdb")
    if initdb:
        folder = Path(initdb).resolve().parent
        if _has_server_binaries(folder):
            return folder
    raise RuntimeError(INSTALL_HINT)


def _has_server_binaries(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(name: str) -> tuple[int, ...]:
    """``"15"`` → ``(15,)``, ``"9.6"`` → ``(9, 6)``; a name that is no version sorts first."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _service_user() -> pwd.struct_passwd:
    """The unprivileged user to run the server as when we are root; created if need be."""
    for name in (*SERVICE_USERS, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return pwd.getpwnam(FALLBACK_USER)


class PostgresServer:
    """One throwaway PostgreSQL server: ``start()``, databases, ``stop()``.

    Use it as a context manager (``with PostgresServer() as server:``) or call ``start()`` and
    ``stop()``; ``stop()`` may be called more than once.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        self._bin_dir = bin_dir
        self._root: Path | None = None
        self._port: int | None = None
        self._user: pwd.struct_passwd | None = None
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None or not self._running:
            raise RuntimeError("the PostgreSQL server is not running")
        return self._port

    @property
    def log_path(self) -> Path:
        if self._root is None:
            raise RuntimeError("the PostgreSQL server was never started")
        return self._root / "server.log"

    def start(self) -> Self:
        """Create the cluster and start the server; ``RuntimeError`` (with the log) on failure."""
        if self._running:
            return self
        bin_dir = self._bin_dir or find_bin_dir()
        self._bin_dir = bin_dir
        if os.geteuid() == 0:
            self._user = _service_user()
        root = Path(tempfile.mkdtemp(prefix="tonearm-pg-"))
        self._root = root
        atexit.register(self.stop)
        try:
            if self._user is not None:
                os.chown(root, self._user.pw_uid, self._user.pw_gid)
            self._initdb(root / "data")
            (root / "sock").mkdir()
            if self._user is not None:
                os.chown(root / "sock", self._user.pw_uid, self._user.pw_gid)
            self._start_server(root)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown, immediate if that hangs) and delete its files."""
        root, self._root = self._root, None
        if root is None:
            return
        atexit.unregister(self.stop)
        self._running = False
        # postmaster.pid exists from the server's start until its shutdown (or crash).
        if (root / "data" / "postmaster.pid").exists() and self._bin_dir is not None:
            pg_ctl = self._bin_dir / "pg_ctl"
            for mode, wait in (("fast", STOP_WAIT_S), ("immediate", 10)):
                stop: list[str | Path] = [
                    pg_ctl,
                    "-D",
                    root / "data",
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(wait),
                    "stop",
                ]
                try:
                    self._run(stop, timeout=wait + 15, cwd=root)
                    break
                except (subprocess.SubprocessError, OSError):
                    continue
        shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------------

    def url(self, name: str) -> str:
        """SQLAlchemy URL of database ``name`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{_checked_name(name)}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A plain psycopg connection (autocommit) to ``dbname`` as the superuser."""
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
        )

    def create_database(self, name: str) -> str:
        """Create the empty database ``name``; its SQLAlchemy URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_checked_name(name))))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting whoever is still connected to it."""
        ident = sql.Identifier(_checked_name(name))
        with self.connect() as conn:
            if conn.info.server_version >= 130000:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            else:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))

    # -- internals -----------------------------------------------------------------------------

    def _run(
        self, args: Sequence[str | Path], *, timeout: float, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """Run a server tool as the server's user; ``CalledProcessError`` carries its output."""
        # Our PG* variables (PGDATA, PGPORT, PGHOST...) are meant for some other server.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        user = self._user
        return subprocess.run(
            [str(arg) for arg in args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,  # the tools need a working directory their user can enter
            env=env,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,  # drop root's supplementary groups too
        )

    def _initdb(self, data: Path) -> None:
        assert self._bin_dir is not None
        assert self._root is not None
        initdb = self._bin_dir / "initdb"
        base = [str(initdb), "-D", str(data), "-A", "trust", "-U", SUPERUSER, "--encoding=UTF8"]
        base.append("--no-sync")  # the cluster is thrown away: no need to flush it to disk
        failures: list[str] = []
        for locale in (["--locale=C.UTF-8"], ["--no-locale"]):
            try:
                self._run(base + locale, timeout=INITDB_TIMEOUT_S, cwd=self._root)
                return
            except subprocess.CalledProcessError as error:
                failures.append(
                    f"$ {shlex.join(map(str, error.cmd))}\n{error.stdout}{error.stderr}"
                )
                shutil.rmtree(data, ignore_errors=True)
            except subprocess.TimeoutExpired as error:
                raise RuntimeError(f"initdb took more than {error.timeout:.0f} s") from error
        raise RuntimeError("initdb failed:\n" + "\n".join(failures))

    def _start_server(self, root: Path) -> None:
        assert self._bin_dir is not None
        failure = ""
        for _ in range(START_ATTEMPTS):
            port = free_port()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            options = [
                "-F",  # fsync off
                *("-k", str(root / "sock")),
                *("-p", str(port)),
                *("-c", f"listen_addresses={HOST}"),
                *("-c", "synchronous_commit=off"),
                *("-c", "full_page_writes=off"),
                *("-c", "max_connections=200"),
            ]
            args: list[str | Path] = [
                self._bin_dir / "pg_ctl",
                "-D",
                root / "data",
                "-l",
                self.log_path,
            ]
            args += ["-w", "-t", str(START_WAIT_S), "-o", shlex.join(options), "start"]
            try:
                self._run(args, timeout=START_WAIT_S + 30, cwd=root)
            except subprocess.CalledProcessError as error:
                failure = f"{error.stdout}{error.stderr}".strip()
                if "already in use" in self._log_tail(since=log_start):  # lost the port: again
                    continue
                break
            except subprocess.TimeoutExpired:
                failure = f"pg_ctl start did not return within {START_WAIT_S + 30} s"
                break
            self._port, self._running = port, True
            return
        raise RuntimeError(
            f"PostgreSQL did not start: {failure}\n--- tail of {self.log_path} ---\n"
            + self._log_tail()
        )

    def _log_tail(self, lines: int = 40, since: int = 0) -> str:
        """The last ``lines`` lines of the server log, from byte ``since`` on."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _checked_name(name: str) -> str:
    """``name`` if it is a plain identifier (letters, digits, ``_``); ``ValueError`` otherwise."""
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name
