"""Alembic environment: runs on the connection the daemon hands over (`config.attributes["connection"]`),
or on `sqlalchemy.url` when run from the `alembic` command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from youxu.controller.store import dispatch_store
from youxu.controller.store.schema import metadata

config = context.config
target_metadata = [metadata, dispatch_store.metadata]


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as c:
            _run(c)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
