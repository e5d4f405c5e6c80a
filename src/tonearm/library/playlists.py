"""Playlists (ordered entries, every change one locked transaction) and settings (JSON)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from tonearm.errors import ParameterError
from tonearm.library.models import (
    Playlist,
    PlaylistEntry,
    Setting,
    Track,
    utc_now,
)
from tonearm.library.records import (
    PlaylistRecord,
)
from tonearm.library.repositories import _Repository, _upsert

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.orm import Session

__all__ = ["PlaylistRepository", "SettingsRepository"]


class PlaylistRepository(_Repository):
    """Playlists with ordered entries; every change is one transaction."""

    def _record(self, session: Session, playlist: Playlist) -> PlaylistRecord:
        ids = session.scalars(
            select(PlaylistEntry.track_id)
            .where(PlaylistEntry.playlist_id == playlist.id)
            .order_by(PlaylistEntry.position)
        )
        return PlaylistRecord(
            playlist.id,
            playlist.name,
            tuple(ids),
            playlist.created_at,
            playlist.updated_at,
        )

    def create(self, name: str, track_ids: Sequence[int] = ()) -> PlaylistRecord:
        if not name.strip():
            raise ParameterError("a playlist needs a name")
        with self._db.write() as session:
            if session.scalar(select(Playlist.id).where(Playlist.name == name)) is not None:
                raise ParameterError(f"a playlist named '{name}' exists already")
            playlist = Playlist(name=name)
            session.add(playlist)
            session.flush()
            self._check_tracks(session, track_ids)
            session.add_all(
                PlaylistEntry(playlist_id=playlist.id, position=i, track_id=t)
                for i, t in enumerate(track_ids)
            )
            session.flush()
            record = self._record(session, playlist)
        self._cache.invalidate("playlists")
        return record

    @staticmethod
    def _check_tracks(session: Session, track_ids: Sequence[int]) -> None:
        wanted = set(track_ids)
        if not wanted:
            return
        found = set(session.scalars(select(Track.id).where(Track.id.in_(wanted))))
        if wanted - found:
            raise ParameterError(f"no track {min(wanted - found)}")

    def get(self, playlist_id: int) -> PlaylistRecord | None:
        def load() -> PlaylistRecord | None:
            with self._db.read() as session:
                playlist = session.get(Playlist, playlist_id)
                return None if playlist is None else self._record(session, playlist)

        tags = ("playlists", f"playlist:{playlist_id}")
        return self._cache.get_or_load(("playlist", playlist_id), tags, load)

    def list(self) -> tuple[PlaylistRecord, ...]:
        def load() -> tuple[PlaylistRecord, ...]:
            with self._db.read() as session:
                playlists = session.scalars(select(Playlist).order_by(Playlist.name))
                return tuple(self._record(session, p) for p in playlists)

        return self._cache.get_or_load(("playlists",), ("playlists",), load)

    def _locked(self, session: Session, playlist_id: int) -> Playlist:
        statement = select(Playlist).where(Playlist.id == playlist_id)
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update()  # SQLite's write lock covers the file
        playlist = session.scalars(statement).first()
        if playlist is None:
            raise ParameterError(f"no playlist {playlist_id}")
        return playlist

    def _change(
        self, playlist_id: int, change: Callable[[Session, Playlist], None]
    ) -> PlaylistRecord:
        """Apply ``change`` to the locked playlist in one transaction; the new record."""
        with self._db.write() as session:
            playlist = self._locked(session, playlist_id)
            change(session, playlist)
            playlist.updated_at = utc_now()
            session.flush()
            record = self._record(session, playlist)
        self._cache.invalidate("playlists", f"playlist:{playlist_id}")
        return record

    def set_tracks(self, playlist_id: int, track_ids: Sequence[int]) -> PlaylistRecord:
        """Replace the whole order of a playlist (add, remove, move are all this)."""

        def replace(session: Session, playlist: Playlist) -> None:
            self._check_tracks(session, track_ids)
            session.execute(delete(PlaylistEntry).where(PlaylistEntry.playlist_id == playlist.id))
            session.add_all(
                PlaylistEntry(playlist_id=playlist.id, position=i, track_id=t)
                for i, t in enumerate(track_ids)
            )

        return self._change(playlist_id, replace)

    def append(self, playlist_id: int, track_ids: Sequence[int]) -> PlaylistRecord:
        """Add tracks at the end, atomically with respect to other writers."""

        def extend(session: Session, playlist: Playlist) -> None:
            self._check_tracks(session, track_ids)
            end = session.scalar(
                select(func.coalesce(func.max(PlaylistEntry.position) + 1, 0)).where(
                    PlaylistEntry.playlist_id == playlist.id
                )
            )
            session.add_all(
                PlaylistEntry(playlist_id=playlist.id, position=int(end or 0) + i, track_id=t)
                for i, t in enumerate(track_ids)
            )

        return self._change(playlist_id, extend)

    def rename(self, playlist_id: int, name: str) -> PlaylistRecord:
        if not name.strip():
            raise ParameterError("a playlist needs a name")

        def retitle(session: Session, playlist: Playlist) -> None:
            clash = session.scalar(
                select(Playlist.id).where(Playlist.name == name, Playlist.id != playlist.id)
            )
            if clash is not None:
                raise ParameterError(f"a playlist named '{name}' exists already")
            playlist.name = name

        return self._change(playlist_id, retitle)

    def delete(self, playlist_id: int) -> None:
        with self._db.write() as session:
            session.delete(self._locked(session, playlist_id))
        self._cache.invalidate("playlists", f"playlist:{playlist_id}")


class SettingsRepository(_Repository):
    """Key → JSON value."""

    def get(self, key: str, default: Any = None) -> Any:
        def load() -> str | None:
            with self._db.read() as session:
                return session.scalar(select(Setting.value).where(Setting.key == key))

        stored = self._cache.get_or_load(("setting", key), ("settings", f"setting:{key}"), load)
        return default if stored is None else json.loads(stored)

    def set(self, key: str, value: Any) -> None:
        text = json.dumps(value)
        with self._db.write() as session:
            _upsert(session, Setting, {"key": key, "value": text}, key="key", set_={"value": text})
        self._cache.invalidate(f"setting:{key}")
