"""alembic's environment: runs on the connection :func:`evoroute.storage.migrations.upgrade`
passes (``config.attributes["connection"]``), inside that caller's transaction."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from evoroute.storage import tables  # noqa: F401  (registers the tables on the metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through evoroute.storage.migrations.upgrade(engine)")
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
