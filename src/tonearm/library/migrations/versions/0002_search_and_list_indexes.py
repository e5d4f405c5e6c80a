"""Fast lists and search: list-order indexes and an indexed ``tracks.search_text``.

The search text is indexed for substring search: an FTS5 table with the trigram tokenizer
(kept in step by triggers) on SQLite, a ``pg_trgm`` GIN index on PostgreSQL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE tracks_search USING fts5("
    "search_text, content='tracks', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER tracks_search_insert AFTER INSERT ON tracks BEGIN "
    "INSERT INTO tracks_search(rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER tracks_search_delete AFTER DELETE ON tracks BEGIN "
    "INSERT INTO tracks_search(tracks_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER tracks_search_update AFTER UPDATE OF search_text ON tracks BEGIN "
    "INSERT INTO tracks_search(tracks_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO tracks_search(rowid, search_text) VALUES (new.id, new.search_text); END",
    "INSERT INTO tracks_search(tracks_search) VALUES ('rebuild')",
)
SQLITE_SEARCH_DROP = (
    "DROP TRIGGER IF EXISTS tracks_search_update",
    "DROP TRIGGER IF EXISTS tracks_search_delete",
    "DROP TRIGGER IF EXISTS tracks_search_insert",
    "DROP TABLE IF EXISTS tracks_search",
)
BACKFILL = """
UPDATE tracks SET search_text = lower(
    coalesce(title, '')
    || coalesce(' | ' || (SELECT name FROM artists WHERE artists.id = tracks.artist_id), '')
    || coalesce(' | ' || (SELECT title FROM albums WHERE albums.id = tracks.album_id), '')
    || coalesce(' | ' || (SELECT name FROM genres WHERE genres.id = tracks.genre_id), '')
)
"""


def upgrade() -> None:
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
        batch_op.create_index("ix_tracks_missing_title_id", ["missing", "title", "id"])
        batch_op.create_index("ix_tracks_missing_added_at_id", ["missing", "added_at", "id"])
        batch_op.create_index("ix_tracks_album_id_missing", ["album_id", "missing"])
    op.execute(BACKFILL)
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_tracks_search_text_trgm ON tracks USING gin (search_text gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH_DROP:
            op.execute(statement)
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_tracks_search_text_trgm")
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.drop_index("ix_tracks_album_id_missing")
        batch_op.drop_index("ix_tracks_missing_added_at_id")
        batch_op.drop_index("ix_tracks_missing_title_id")
        batch_op.drop_column("search_text")
