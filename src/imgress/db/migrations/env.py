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
        if connection.dialect.name == "postgresql":
            # Several API servers may start at once: one migrates, the others wait.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727100)")
        context.run_migrations()
engine.dispose()
