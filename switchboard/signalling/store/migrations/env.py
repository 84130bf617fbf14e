"""Alembic's environment: migrations run on the connection ``Store.open`` hands over
(``config.attributes["connection"]``, a synchronous facade of the async engine's connection).

To write a new revision: ``alembic -c switchboard/signalling/store/alembic.ini revision -m "..."``
then edit it by hand (SQLite needs ``op.batch_alter_table`` for column changes).
"""

from __future__ import annotations

from alembic import context

from switchboard.signalling.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic revision` from the command line
    raise SystemExit("run migrations through switchboard.signalling.store.Store.open")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
