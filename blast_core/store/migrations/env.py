"""Alembic environment: run by `blast_core.store.engine.migrate` on a connection it passes in.

There is no alembic.ini: the store builds the Alembic config in code and hands over a connection
that already holds the database's write lock, so concurrent `Store.open` calls migrate once.
To write a new revision by hand, see docs/experiments.md ("Changing the schema").
"""

from alembic import context

from blast_core.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most columns in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
