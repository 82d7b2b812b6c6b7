"""Alembic environment: runs on the connection handed over by aed_pipeline.lib.core.warehouse."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `aed-pipeline db upgrade` (or aed_pipeline.lib.core.warehouse.upgrade_schema), "
        "which chooses the database and holds the migration lock"
    )

context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
