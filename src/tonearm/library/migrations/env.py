"""Alembic environment: migrations run on the connection :func:`tonearm.library.db.open_database`
passes in (``config.attributes["connection"]``), or on ``sqlalchemy.url`` from the command line
(``alembic -x`` is not needed: ``alembic.ini`` is not used by tonearm itself)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tonearm.library.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url to the library database")
    with create_engine(url).connect() as connection:
        _run(connection)
