"""Synthetic library rows for tests of the layers above the scanner (real database, no files)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tonearm.library.db import Database
from tonearm.library.models import Album, Artist, Genre, Track, utc_now
from tonearm.library.records import search_text_of

GENRES = ("Baroque", "Ragtime", "Classical", "Jazz", "Ambient")
N = TypeVar("N", Artist, Genre)


def _named(session: Session, model: type[N], name: str) -> N:
    found = session.scalars(select(model).where(model.name == name)).first()
    if found is None:
        found = model(name=name)
        session.add(found)
        session.flush()
    return found


def add_tracks(
    db: Database, count: int, *, start: int = 0, albums: int = 10, artists: int = 5
) -> list[int]:
    """Insert ``count`` tracks (ids returned) spread over ``albums`` albums and ``artists``
    artists (track ``i``: album ``i % albums``, artist ``i % artists``, genre ``i % 5``)."""
    now = utc_now()
    with db.write() as session:
        names = [_named(session, Artist, f"Artist {i}") for i in range(artists)]
        genres = [_named(session, Genre, name) for name in GENRES]
        album_rows = [
            Album(title=f"Album {start + i}", artist_id=names[i % 5 % artists].id, year=1900 + i)
            for i in range(albums)
        ]
        session.add_all(album_rows)
        session.flush()
        rows = [
            {
                "path": f"/music/album{(start + i) % albums}/track{start + i:06d}.flac",
                "title": (title := f"Track {start + i:06d} {'Prelude' if i % 7 == 0 else 'Rag'}"),
                "search_text": search_text_of(
                    title, names[i % artists].name, album_rows[i % albums].title, genres[i % 5].name
                ),
                "artist_id": names[i % artists].id,
                "album_id": album_rows[i % albums].id,
                "genre_id": genres[i % 5].id,
                "track_number": i % 12 + 1,
                "duration_s": 120.0 + i % 240,
                "sample_rate": 44100,
                "channels": 2,
                "bit_depth": 16,
                "codec": "flac",
                "size_bytes": 20_000_000 + i,
                "mtime_ns": 1_700_000_000_000_000_000 + i,
                "content_hash": f"{start + i:064x}",
                "integrated_lufs": -14.0 - (i % 10),
                "missing": False,
                "added_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        for chunk in range(0, len(rows), 5000):
            session.execute(insert(Track), rows[chunk : chunk + 5000])
        session.flush()
        return list(session.scalars(select(Track.id).order_by(Track.id)))[-count:]
