"""Sort orders, keyset cursors and indexed substring search for track queries.

**Keyset paging.** ``OFFSET n`` makes the database walk past ``n`` rows, so deep pages get
slower the deeper they are (over a second at 100,000 tracks). A cursor instead carries the
sort key of the last row of a page; the next page is ``WHERE (key, id) > (:key, :id)``, one
index range scan at any depth. Cursors are opaque URL-safe strings; a malformed one is a
``ParameterError``. A cursor also carries a short digest of its *listing* (the order, and what
the caller says selects the rows: a search, filters), so one from another listing is refused
with a ``ParameterError`` instead of continuing the wrong rows.

**Search.** ``tracks.search_text`` holds the lower-cased title, artist, album, album artist
and genre. It is indexed for substring matching: an FTS5 table with the trigram tokenizer on
SQLite (``tracks_search``, kept in step by triggers), a ``pg_trgm`` GIN index on PostgreSQL
(migration 0002). Queries of 3 characters or more use the index; shorter ones, and text with
``%``, ``_`` or ``\\`` in it, scan the column.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, literal_column, select, text, tuple_

from tonearm.errors import ParameterError
from tonearm.library.models import Album, Track

if TYPE_CHECKING:
    from sqlalchemy.orm import InstrumentedAttribute, Session

__all__ = [
    "ALBUM_ORDER",
    "FEW_MATCHES",
    "TRACK_ORDERS",
    "TrackOrder",
    "after_cursor",
    "cursor_for",
    "few_matching_ids",
    "like_contains",
    "search_condition",
]

FEW_MATCHES = 1000
"""Up to this many matches a search is driven by its matches (fetched by id, then sorted);
beyond it, by the sort-order index, stopping at the page (SQLite's planner cannot tell)."""


@dataclass(frozen=True, slots=True)
class TrackOrder:
    """A sort order: ``columns`` (the last one unique), all ascending or all descending."""

    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool = False
    keyset: bool = True
    """Whether cursors work for this order (its columns are never NULL)."""
    indexed: bool = True
    """Whether an index (``missing`` first, for tracks) hands out rows in this order, so a
    page can be read off it without sorting."""

    def order_by(self) -> list[Any]:
        return [c.desc() if self.descending else c.asc() for c in self.columns]


TRACK_ORDERS = {
    "title": TrackOrder((Track.title, Track.id)),
    "path": TrackOrder((Track.path, Track.id)),
    "added": TrackOrder((Track.added_at, Track.id), descending=True),
    "duration": TrackOrder((Track.duration_s, Track.id), indexed=False),
    "loudness": TrackOrder((Track.integrated_lufs, Track.id), keyset=False, indexed=False),
    "id": TrackOrder((Track.id,)),
}
"""Sort keys a caller may ask for, each ending in the unique id so pages never overlap."""


ALBUM_ORDER = TrackOrder((Album.title, Album.id))
"""Albums page by title (keyset cursors, index ``ix_albums_title_id``)."""


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"}:
        return dt.datetime.fromisoformat(str(value["t"]))
    return value


def _signature(order: TrackOrder, listing: str) -> str:
    """A short digest naming the order and the listing a cursor belongs to."""
    direction = "desc" if order.descending else "asc"
    named = ",".join(str(column) for column in order.columns) + f"|{direction}|{listing}"
    return hashlib.blake2b(named.encode(), digest_size=6).hexdigest()


def cursor_for(order: TrackOrder, row_values: tuple[Any, ...], *, listing: str = "") -> str:
    """The cursor that continues after a row with these sort-key values.

    ``listing`` names what selects the rows (a search, filters; empty for everything): the
    cursor continues only the listing it was made for (see :func:`after_cursor`)."""
    payload = json.dumps(
        {"k": [_encode(v) for v in row_values], "l": _signature(order, listing)},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def after_cursor(order: TrackOrder, cursor: str, *, listing: str = "") -> ColumnElement[bool]:
    """The WHERE condition for the rows after ``cursor`` in ``order``; a cursor made for
    another order or ``listing`` is a ``ParameterError``."""
    if not order.keyset:
        raise ParameterError("this order has no cursors; page it with offsets")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded))
        values = [_decode(v) for v in payload["k"]]
    except (ValueError, binascii.Error, TypeError, KeyError):
        raise ParameterError("malformed page cursor") from None
    if not isinstance(payload, dict) or len(values) != len(order.columns):
        raise ParameterError("malformed page cursor")
    if payload.get("l") != _signature(order, listing):
        raise ParameterError(
            "page cursor of another listing (order, search or filters differ): "
            "start again from the first page"
        )
    key = tuple_(*order.columns)
    bound = tuple_(*values)
    return key < bound if order.descending else key > bound


def like_contains(query: str) -> str:
    """A LIKE pattern (``ESCAPE '\\'``) for text containing ``query``, stripped and lower-cased,
    with its own ``%``, ``_`` and ``\\`` taken literally."""
    needle = query.strip().lower()
    return "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _literal_like(query: str) -> str | None:
    """``%query%`` (lower-cased) when it needs no escaping (so an index can serve it), else
    None."""
    needle = query.strip().lower()
    if any(char in needle for char in "%_\\"):
        return None
    return f"%{needle}%"


def search_condition(dialect: str, query: str, *, many: bool = False) -> ColumnElement[bool]:
    """Tracks whose ``search_text`` contains ``query`` (lower-cased), through the index.

    ``many``: on SQLite, test the column row by row instead; right when matches are so common
    that walking the sort-order index finds a page of them at once."""
    pattern = _literal_like(query)
    if pattern is None:
        return Track.search_text.like(like_contains(query), escape="\\")
    if dialect == "sqlite" and not many:
        matching: Select[Any] = (
            select(literal_column("rowid"))
            .select_from(text("tracks_search"))
            .where(literal_column("search_text").like(pattern))
        )
        return Track.id.in_(matching)
    return Track.search_text.like(pattern)


def few_matching_ids(session: Session, query: str) -> list[int] | None:
    """On SQLite, the ids of the tracks matching ``query`` when there are at most
    ``FEW_MATCHES`` of them (one trigram-index lookup), else None."""
    pattern = _literal_like(query)
    if pattern is None:  # LIKE metacharacters in the text: escape them, scan the column
        statement = text(
            "SELECT id FROM tracks WHERE search_text LIKE :pattern ESCAPE '\\' LIMIT :n"
        )
        pattern = like_contains(query)
    else:
        statement = text("SELECT rowid FROM tracks_search WHERE search_text LIKE :pattern LIMIT :n")
    rows = session.execute(statement, {"pattern": pattern, "n": FEW_MATCHES + 1}).all()
    return None if len(rows) > FEW_MATCHES else [int(row[0]) for row in rows]
