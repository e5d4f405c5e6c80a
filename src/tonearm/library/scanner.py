"""``tonearm scan``: walk music folders into the library database.

For each audio file (by extension) under the roots:

* **unchanged** (same path, size and mtime as stored): skipped after one ``stat``;
* **new or changed**: tags and stream info read (mutagen), a content hash taken, and the row
  added or updated; a new path whose content hash matches a stored track whose file is gone is
  a **move**: the stored row takes the new path and keeps its id, play count, favourite and
  playlist entries;
* files that cannot be read (not audio, unreadable, broken beyond its tags) are skipped with
  a one-line reason in the scan run's error log; broken tags alone only cost the tags.

After a complete walk, stored tracks under the roots that were not seen are marked
``missing`` (never deleted: their history stays); a file that comes back is unmarked.

Writes go in batches of ``batch_size`` files, each one transaction: a scan killed at any moment
leaves a database that opens (SQLite in WAL mode, PostgreSQL transactional) with every
committed batch in it, and the next scan finishes the job. Directory symlink loops are cut
(each directory is entered once, by device and inode); paths with any bytes, newlines
included, are kept exactly (see :func:`~tonearm.library.records.path_to_db`).

A scan can be cancelled from another thread (``cancel.set()``): it stops at the next file,
commits what it has, and marks nothing missing. Progress goes to ``on_progress`` as
:class:`ScanProgress` events, at most every ``progress_interval_s``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from tonearm.errors import TagError
from tonearm.library.models import Album, Artist, Genre, ScanRun, Track, utc_now
from tonearm.library.records import display_path, path_from_db, path_to_db
from tonearm.library.tags import read_file_tags

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator, Sequence

    from sqlalchemy.orm import Session

    from tonearm.library.db import Database
    from tonearm.library.tags import FileTags

__all__ = [
    "AUDIO_EXTENSIONS",
    "ScanProgress",
    "ScanResult",
    "content_hash",
    "scan",
    "walk_audio_files",
]

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".opus", ".mp3", ".m4a"}
)
HASH_SAMPLE_BYTES = 64 * 1024
MAX_ERROR_LOG = 1000


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """Where a scan is: ``files_seen`` so far, the current file, the rate (files/s)."""

    files_seen: int
    current_path: str
    files_per_s: float
    added: int
    updated: int
    unchanged: int
    errors: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan did (also stored as its ``scan_runs`` row)."""

    run_id: int
    status: str
    files_seen: int
    added: int
    updated: int
    unchanged: int
    moved: int
    missing: int
    errors: tuple[tuple[str, str], ...]
    elapsed_s: float

    @property
    def files_per_s(self) -> float:
        return self.files_seen / self.elapsed_s if self.elapsed_s > 0 else 0.0


def content_hash(path: str, size: int) -> str:
    """BLAKE2b (32 bytes, hex) of the size and the first, middle and last 64 KiB.

    Cheap (three reads whatever the length) and enough to recognise a moved file: two
    different audio files agreeing on size and on those 192 KiB are not a practical case.
    """
    digest = hashlib.blake2b(str(size).encode(), digest_size=32)
    with open(path, "rb") as handle:
        for offset in sorted(
            {0, max(0, size // 2 - HASH_SAMPLE_BYTES // 2), max(0, size - HASH_SAMPLE_BYTES)}
        ):
            handle.seek(offset)
            digest.update(handle.read(HASH_SAMPLE_BYTES))
    return digest.hexdigest()


def walk_audio_files(
    roots: Sequence[str], *, on_error: Callable[[str, str], None] | None = None
) -> Iterator[tuple[str, os.stat_result]]:
    """Audio files under ``roots`` with their ``stat``, each directory entered once.

    Symlinked directories are followed, but a directory already entered (same device and
    inode) is not entered again, which cuts loops. Unreadable directories are reported to
    ``on_error`` and skipped.
    """
    entered: set[tuple[int, int]] = set()
    stack = [os.path.abspath(root) for root in reversed(roots)]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
        except OSError as exc:
            if on_error is not None:
                on_error(folder, exc.strerror or str(exc))
            continue
        identity = (info.st_dev, info.st_ino)
        if identity in entered:
            continue
        entered.add(identity)
        try:
            with os.scandir(folder) as entries:
                children = sorted(entries, key=lambda entry: entry.name)
        except OSError as exc:
            if on_error is not None:
                on_error(folder, exc.strerror or str(exc))
            continue
        subfolders = []
        for entry in children:
            try:
                if entry.is_dir():
                    subfolders.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in AUDIO_EXTENSIONS:
                    found = entry.stat()
                    if stat.S_ISREG(found.st_mode):
                        yield entry.path, found
            except OSError as exc:  # a dangling link, a file gone meanwhile
                if on_error is not None:
                    on_error(entry.path, exc.strerror or str(exc))
        stack.extend(reversed(subfolders))


@dataclass
class _Counts:
    files_seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    missing: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Known:
    id: int
    size_bytes: int
    mtime_ns: int
    missing: bool


class _Names:
    """Artist, album and genre ids by name, created on first use (within a write session)."""

    def __init__(self) -> None:
        self._artists: dict[str, int] = {}
        self._genres: dict[str, int] = {}
        self._albums: dict[tuple[str, int | None], int] = {}

    def artist(self, session: Session, name: str | None) -> int | None:
        return self._named(session, Artist, self._artists, name)

    def genre(self, session: Session, name: str | None) -> int | None:
        return self._named(session, Genre, self._genres, name)

    @staticmethod
    def _named(
        session: Session, model: type[Artist | Genre], known: dict[str, int], name: str | None
    ) -> int | None:
        if not name:
            return None
        if name not in known:
            found = session.scalar(select(model.id).where(model.name == name))
            if found is None:
                row = model(name=name)
                session.add(row)
                session.flush()
                found = row.id
            known[name] = found
        return known[name]

    def album(self, session: Session, tags: FileTags, artist_id: int | None) -> int | None:
        title = tags.tags.album
        if not title:
            return None
        key = (title, artist_id)
        if key not in self._albums:
            condition = (
                Album.artist_id.is_(None) if artist_id is None else Album.artist_id == artist_id
            )
            album = session.scalars(select(Album).where(Album.title == title, condition)).first()
            if album is None:
                album = Album(title=title, artist_id=artist_id, year=tags.tags.year)
                session.add(album)
                session.flush()
            self._albums[key] = album.id
        album_id = self._albums[key]
        if tags.cover is not None:
            session.execute(
                update(Album)
                .where(Album.id == album_id, Album.cover.is_(None))
                .values(cover=tags.cover.data, cover_mime=tags.cover.mime)
            )
        return album_id


def _track_values(
    path: str, info: os.stat_result, tags: FileTags, digest: str
) -> dict[str, object]:
    stream = tags.stream
    return {
        "path": path_to_db(path),
        "title": tags.tags.title or os.path.splitext(os.path.basename(path))[0],
        "track_number": tags.tags.track_number,
        "disc_number": tags.tags.disc_number,
        "year": tags.tags.year,
        "duration_s": stream.duration_s,
        "sample_rate": stream.sample_rate,
        "channels": stream.channels,
        "bit_depth": stream.bit_depth,
        "codec": stream.codec,
        "size_bytes": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "content_hash": digest,
        "missing": False,
        "updated_at": utc_now(),
    }


class _Scan:
    def __init__(
        self,
        db: Database,
        roots: Sequence[str],
        *,
        batch_size: int,
        cancel: threading.Event | None,
        on_progress: Callable[[ScanProgress], None] | None,
        progress_interval_s: float,
    ) -> None:
        self.db = db
        self.roots = [os.path.abspath(root) for root in roots]
        self.batch_size = batch_size
        self.cancel = cancel
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s
        self.counts = _Counts()
        self.names = _Names()
        self.seen: set[int] = set()
        self.started = time.monotonic()
        self.last_progress = 0.0

    def error(self, path: str, reason: str) -> None:
        self.counts.errors.append((display_path(path), reason))

    def known_tracks(self) -> dict[str, _Known]:
        with self.db.read() as session:
            rows = session.execute(
                select(Track.path, Track.id, Track.size_bytes, Track.mtime_ns, Track.missing)
            )
            return {path_from_db(p): _Known(i, s, m, bool(gone)) for p, i, s, m, gone in rows}

    def progress(self, path: str) -> None:
        now = time.monotonic()
        if self.on_progress is None or now - self.last_progress < self.progress_interval_s:
            return
        self.last_progress = now
        c = self.counts
        rate = c.files_seen / max(now - self.started, 1e-9)
        self.on_progress(
            ScanProgress(
                c.files_seen,
                display_path(path),
                rate,
                c.added,
                c.updated,
                c.unchanged,
                len(c.errors),
            )
        )

    def write_batch(
        self, batch: list[tuple[str, os.stat_result, FileTags, str, _Known | None]]
    ) -> None:
        if not batch:
            return
        with self.db.write() as session:
            for path, info, tags, digest, known in batch:
                values = _track_values(path, info, tags, digest)
                artist_id = self.names.artist(session, tags.tags.artist)
                album_artist = (
                    self.names.artist(session, tags.tags.album_artist)
                    if tags.tags.album_artist
                    else artist_id
                )
                values["artist_id"] = artist_id
                values["album_id"] = self.names.album(session, tags, album_artist)
                values["genre_id"] = self.names.genre(session, tags.tags.genre)
                if known is not None:
                    session.execute(update(Track).where(Track.id == known.id).values(**values))
                    self.seen.add(known.id)
                    continue
                moved = self.moved_from(session, digest, info.st_size)
                if moved is not None:
                    session.execute(update(Track).where(Track.id == moved).values(**values))
                    self.seen.add(moved)
                    self.counts.moved += 1
                    continue
                track = Track(**values)
                session.add(track)
                session.flush()
                self.seen.add(track.id)
                self.counts.added += 1

    def moved_from(self, session: Session, digest: str, size: int) -> int | None:
        """A stored track with this content whose file is gone (so this file is it, moved)."""
        candidates = session.execute(
            select(Track.id, Track.path).where(
                Track.content_hash == digest, Track.size_bytes == size
            )
        )
        for track_id, stored in candidates:
            if track_id not in self.seen and not os.path.exists(path_from_db(stored)):
                return int(track_id)
        return None

    def mark_missing(self) -> None:
        prefixes = [root.rstrip(os.sep) + os.sep for root in self.roots]
        with self.db.read() as session:
            rows = session.execute(select(Track.id, Track.path).where(Track.missing.is_(False)))
            gone = [
                int(track_id)
                for track_id, stored in rows
                if track_id not in self.seen
                and any(path_from_db(stored).startswith(prefix) for prefix in prefixes)
            ]
        for start in range(0, len(gone), 500):
            chunk = gone[start : start + 500]
            with self.db.write() as session:
                session.execute(
                    update(Track)
                    .where(Track.id.in_(chunk))
                    .values(missing=True, updated_at=utc_now())
                )
        self.counts.missing = len(gone)

    def run(self) -> str:
        known = self.known_tracks()
        batch: list[tuple[str, os.stat_result, FileTags, str, _Known | None]] = []
        for path, info in walk_audio_files(self.roots, on_error=self.error):
            if self.cancel is not None and self.cancel.is_set():
                self.write_batch(batch)
                return "cancelled"
            self.counts.files_seen += 1
            self.progress(path)
            stored = known.get(path)
            if (
                stored is not None
                and not stored.missing
                and stored.size_bytes == info.st_size
                and stored.mtime_ns == info.st_mtime_ns
            ):
                self.seen.add(stored.id)
                self.counts.unchanged += 1
                continue
            try:
                tags = read_file_tags(path)
                digest = content_hash(path, info.st_size)
            except TagError as exc:
                self.error(path, str(exc))
                continue
            except OSError as exc:
                self.error(path, exc.strerror or str(exc))
                continue
            if stored is not None:
                self.counts.updated += 1
            batch.append((path, info, tags, digest, stored))
            if len(batch) >= self.batch_size:
                self.write_batch(batch)
                batch = []
        self.write_batch(batch)
        self.mark_missing()
        return "done"


def _start_run(db: Database, roots: Sequence[str]) -> int:
    with db.write() as session:
        # a run still "running" was killed (a live scan in another process would be rare and
        # harmless to mislabel: its own finish overwrites the status)
        session.execute(
            update(ScanRun)
            .where(ScanRun.status == "running")
            .values(status="failed", finished_at=utc_now())
        )
        run = ScanRun(roots=json.dumps([display_path(r) for r in roots]), status="running")
        session.add(run)
        session.flush()
        return int(run.id)


def scan(
    db: Database,
    roots: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 200,
    cancel: threading.Event | None = None,
    on_progress: Callable[[ScanProgress], None] | None = None,
    progress_interval_s: float = 0.1,
) -> ScanResult:
    """Scan ``roots`` into ``db`` (see the module docstring) and record the run."""
    paths = [os.fspath(root) for root in roots]
    run_id = _start_run(db, paths)
    job = _Scan(
        db,
        paths,
        batch_size=max(1, batch_size),
        cancel=cancel,
        on_progress=on_progress,
        progress_interval_s=progress_interval_s,
    )
    status = "failed"
    try:
        status = job.run()
    except KeyboardInterrupt:  # Ctrl-C: what was committed stays, like a cancel
        status = "cancelled"
        raise
    finally:
        c = job.counts
        with db.write() as session:
            session.execute(
                update(ScanRun)
                .where(ScanRun.id == run_id)
                .values(
                    status=status,
                    finished_at=utc_now(),
                    files_seen=c.files_seen,
                    added=c.added,
                    updated=c.updated,
                    unchanged=c.unchanged,
                    moved=c.moved,
                    missing=c.missing,
                    errors=len(c.errors),
                    error_log=json.dumps(c.errors[:MAX_ERROR_LOG]),
                )
            )
    return ScanResult(
        run_id=run_id,
        status=status,
        files_seen=c.files_seen,
        added=c.added,
        updated=c.updated,
        unchanged=c.unchanged,
        moved=c.moved,
        missing=c.missing,
        errors=tuple(c.errors),
        elapsed_s=time.monotonic() - job.started,
    )
