"""Alembic environment: async engine from the IronTrack settings (PgBouncer-safe)."""

from __future__ import annotations

import asyncio

from alembic import context
from irontrack.db import database_url, statement_name
from irontrack.models import Base
from irontrack.settings import load_settings
from irontrack.tls import database_ssl
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # transaction_per_migration keeps each migration in one transaction: PgBouncer in
    # transaction mode then keeps it on one server connection.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    settings = load_settings()
    engine = create_async_engine(
        database_url(settings),
        poolclass=NullPool,
        connect_args={
            "statement_cache_size": 0,
            "prepared_statement_name_func": statement_name,
            "ssl": database_ssl(settings),
        },
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=database_url(load_settings()), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
