"""``tonearm scan``: walk music folders into the library database.

For each audio file (by extension) under the roots:

* **unchanged** (same path, size and mtime as stored): skipped after one ``stat``;
* **new or changed**: tags and stream info read (mutagen), a content hash taken, and the row
  added or updated; a new path whose content hash and size match a stored track whose file is
  gone is a **move** (found in memory; a stored row is taken by one file at most): the row
  takes the new path and keeps its id, play count, favourite and playlist entries;
* files that cannot be read (not audio, unreadable, broken beyond its tags) are skipped with
  a one-line reason in the scan run's error log; broken tags alone only cost the tags.

After a complete walk, stored tracks under the roots that were not seen are marked
``missing`` (never deleted: their history stays); a file that comes back is unmarked.

Writes go in batches of ``batch_size`` files, each one transaction (the new names, one UPDATE
by id of the changed and moved tracks, one INSERT of the new ones): a scan killed at any moment
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

from sqlalchemy import insert, select, update

from tonearm.errors import TagError
from tonearm.library.models import Album, Artist, Genre, ScanRun, Track, utc_now
from tonearm.library.records import display_path, path_from_db, path_to_db, search_text_of
from tonearm.library.tags import read_file_tags

if TYPE_CHECKING:
    import datetime as dt
    import threading
    from collections.abc import Callable, Iterator, Sequence

    from sqlalchemy import Insert
    from sqlalchemy.orm import Session

    from tonearm.library.db import Database
    from tonearm.library.tags import CoverArt, FileTags, TrackTags

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
    content_hash: str


class _Names:
    """Artist, genre and album ids by name: all loaded on first use in a scan (one query
    each), then only the names new to the library inserted, a batch's worth at a time."""

    def __init__(self) -> None:
        self.loaded = False
        self.artists: dict[str, int] = {}
        self.genres: dict[str, int] = {}
        self.albums: dict[tuple[str, int | None], int] = {}
        self.covered: set[int] = set()  # albums known to have a cover

    def ids(self, tags: TrackTags) -> dict[str, int | None]:
        """The artist, album and genre ids of ``tags`` (once :meth:`add` has had them)."""
        artist = self.artists[tags.artist] if tags.artist else None
        by = self.artists[tags.album_artist] if tags.album_artist else artist
        album = self.albums[(tags.album, by)] if tags.album else None
        genre = self.genres[tags.genre] if tags.genre else None
        return {"artist_id": artist, "album_id": album, "genre_id": genre}

    def add(self, session: Session, batch: Sequence[TrackTags]) -> None:
        """Give every name in ``batch`` an id, inserting the new ones."""
        if not self.loaded:
            self.artists = dict(session.execute(select(Artist.name, Artist.id)).tuples().all())
            self.genres = dict(session.execute(select(Genre.name, Genre.id)).tuples().all())
            albums = select(Album.id, Album.title, Album.artist_id, Album.cover.is_not(None))
            for album_id, title, artist_id, has_cover in session.execute(albums):
                self.albums[(title, artist_id)] = album_id
                if has_cover:
                    self.covered.add(album_id)
            self.loaded = True
        artists = {name for t in batch for name in (t.artist, t.album_artist) if name}
        _add_named(session, Artist, self.artists, artists)
        _add_named(session, Genre, self.genres, {t.genre for t in batch if t.genre})
        new: dict[tuple[str, int | None], int | None] = {}  # (title, artist id) -> year
        for t in batch:
            by = t.album_artist or t.artist
            key = (t.album or "", self.artists[by] if by else None)
            if t.album and key not in self.albums:
                new.setdefault(key, t.year)
        if not new:
            return
        titles = sorted({title for title, _ in new})  # albums another writer added meanwhile
        for album_id, title, artist_id in session.execute(
            select(Album.id, Album.title, Album.artist_id).where(Album.title.in_(titles))
        ):
            self.albums.setdefault((title, artist_id), album_id)
        rows = [
            {"title": title, "artist_id": by, "year": year}
            for (title, by), year in new.items()
            if (title, by) not in self.albums
        ]
        if rows:
            inserted = _bulk_insert(Album).returning(Album.id, Album.title, Album.artist_id)
            for album_id, title, by in session.execute(inserted, rows):
                self.albums[(title, by)] = album_id

    def fill_covers(self, session: Session, covers: dict[int, CoverArt]) -> None:
        """Set the cover of each album in ``covers`` (id -> a cover from its files) lacking one."""
        for album_id, cover in covers.items():
            if album_id in self.covered:
                continue
            session.execute(
                update(Album)
                .where(Album.id == album_id, Album.cover.is_(None))
                .values(cover=cover.data, cover_mime=cover.mime)
            )
            self.covered.add(album_id)


def _add_named(
    session: Session, model: type[Artist | Genre], known: dict[str, int], names: set[str]
) -> None:
    if new := sorted(names - known.keys()):  # first those another writer added meanwhile
        known.update(
            session.execute(select(model.name, model.id).where(model.name.in_(new))).tuples().all()
        )
        if rows := [{"name": name} for name in new if name not in known]:
            known.update(
                session.execute(insert(model).returning(model.name, model.id), rows).tuples().all()
            )


def _track_values(
    path: str, info: os.stat_result, tags: FileTags, digest: str, now: dt.datetime
) -> dict[str, object]:
    stream, text = tags.stream, tags.tags
    title = text.title or os.path.splitext(os.path.basename(path))[0]
    return {
        "path": path_to_db(path),
        "title": title,
        "track_number": text.track_number,
        "disc_number": text.disc_number,
        "year": text.year,
        "duration_s": stream.duration_s,
        "sample_rate": stream.sample_rate,
        "channels": stream.channels,
        "bit_depth": stream.bit_depth,
        "codec": stream.codec,
        "size_bytes": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "content_hash": digest,
        "missing": False,
        "search_text": search_text_of(
            title, text.artist, text.album, text.album_artist, text.genre
        ),
        "updated_at": now,
    }


def _bulk_insert(model: type[Album | Track]) -> Insert:
    """An ORM bulk INSERT: one statement (per ~1000 rows), RETURNING rows in any order (in the
    rows' order costs a statement per row on SQLite). ``render_nulls``: None is sent as NULL,
    not left out (which splits the rows into a statement per run of the same None columns)."""
    return insert(model).execution_options(render_nulls=True)


_Entry = tuple[str, os.stat_result, "FileTags", str, int | None]
"""A file to write: path, stat, tags, content hash, id of the row it updates (None: new)."""


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
        self.seen: set[int] = set()  # rows of files found (or claimed by a move) in this run
        self.known: dict[str, _Known] = {}
        self.by_content: dict[tuple[str, int], list[tuple[int, str]]] | None = None
        self.started = time.monotonic()
        self.last_progress = 0.0

    def error(self, path: str, reason: str) -> None:
        self.counts.errors.append((display_path(path), reason))

    def known_tracks(self) -> dict[str, _Known]:
        t = Track
        with self.db.read() as session:
            rows = session.execute(
                select(t.path, t.id, t.size_bytes, t.mtime_ns, t.missing, t.content_hash)
            )
            return {path_from_db(p): _Known(i, s, m, bool(g), h) for p, i, s, m, g, h in rows}

    def progress(self, path: str) -> None:
        now = time.monotonic()
        if self.on_progress is None or now - self.last_progress < self.progress_interval_s:
            return
        self.last_progress = now
        c = self.counts
        rate = c.files_seen / max(now - self.started, 1e-9)
        shown = display_path(path)
        counts = (c.added, c.updated, c.unchanged, len(c.errors))
        self.on_progress(ScanProgress(c.files_seen, shown, rate, *counts))

    def write_batch(self, batch: list[_Entry]) -> None:
        """One transaction: the batch's new names, one UPDATE (by id) of its changed and moved
        tracks, one INSERT of its new ones."""
        if not batch:
            return
        now = utc_now()
        with self.db.write() as session:
            self.names.add(session, [tags.tags for _, _, tags, _, _ in batch])
            new: list[dict[str, object]] = []
            changed: list[dict[str, object]] = []
            covers: dict[int, CoverArt] = {}
            for path, info, tags, digest, target in batch:
                ids = self.names.ids(tags.tags)
                if (album := ids["album_id"]) is not None and tags.cover is not None:
                    covers.setdefault(album, tags.cover)
                values = _track_values(path, info, tags, digest, now) | ids
                if target is None:
                    values["added_at"] = now
                    new.append(values)
                else:
                    values["id"] = target
                    changed.append(values)
            if changed:  # first: a moved row may free the path of a new one
                session.execute(update(Track), changed)
            if new:
                added = session.scalars(_bulk_insert(Track).returning(Track.id), new).all()
                self.seen.update(added)
                self.counts.added += len(added)
            self.names.fill_covers(session, covers)

    def moved_from(self, digest: str, size: int) -> int | None:
        """A stored track with this content whose file is gone and that no other file of this
        run has claimed (so this file is it, moved); claimed by this call."""
        if self.by_content is None:  # built on the first new file: a rescan may have none
            self.by_content = {}
            for stored, known in self.known.items():
                key = (known.content_hash, known.size_bytes)
                self.by_content.setdefault(key, []).append((known.id, stored))
        for track_id, stored in self.by_content.get((digest, size), ()):
            if track_id not in self.seen and not os.path.exists(stored):
                self.seen.add(track_id)
                return track_id
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
        known = self.known = self.known_tracks()
        batch: list[_Entry] = []
        for path, info in walk_audio_files(self.roots, on_error=self.error):
            if self.cancel is not None and self.cancel.is_set():
                self.write_batch(batch)
                return "cancelled"
            self.counts.files_seen += 1
            self.progress(path)
            stored = known.get(path)
            if stored is not None and stored.id in self.seen:
                stored = None  # its row was taken by a move, and a file is back here: a new one
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
                target: int | None = stored.id
                self.seen.add(stored.id)
                self.counts.updated += 1
            else:
                target = self.moved_from(digest, info.st_size)
                self.counts.moved += target is not None
            batch.append((path, info, tags, digest, target))
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
        figures = {name: value for name, value in vars(c).items() if name != "errors"}
        with db.write() as session:
            session.execute(
                update(ScanRun)
                .where(ScanRun.id == run_id)
                .values(
                    status=status,
                    finished_at=utc_now(),
                    **figures,
                    errors=len(c.errors),
                    error_log=json.dumps(c.errors[:MAX_ERROR_LOG]),
                )
            )
    elapsed_s = time.monotonic() - job.started
    return ScanResult(run_id, status, **figures, errors=tuple(c.errors), elapsed_s=elapsed_s)
