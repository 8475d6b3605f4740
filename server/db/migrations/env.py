"""Alembic environment: runs migrations on the connection the host hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from kohakuriver_lab.server.db.orm import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    """Migrate over ``config.attributes['connection']`` or a URL given to Alembic."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url")
        assert url, "set sqlalchemy.url or pass a connection"
        with create_engine(url).connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        return
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
