"""Alembic environment: the URL comes from imgress, never from an ini file."""

from __future__ import annotations

from alembic import context

from imgress.db.engine import make_engine
from imgress.db.schema import metadata

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
