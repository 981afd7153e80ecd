"""Alembic environment: runs keyturn's migrations on the connection it is handed.

keyturn calls Alembic from :func:`keyturn.store.migrate.migrate`, which opens the
async connection (and takes the migration lock) and passes its sync face here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from keyturn.store.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run keyturn's migrations with `keyturn migrate`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
