"""Async SQLAlchemy engine and session factory, safe behind PgBouncer in transaction mode."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .settings import Settings
from .tls import database_ssl


def statement_name() -> str:
    # PgBouncer in transaction mode may hand each transaction a different server connection.
    # PgBouncer < 1.21 (or max_prepared_statements = 0) passes prepared statements through
    # untracked: asyncpg's cached, sequentially named statements ("__asyncpg_stmt_1__") would
    # then collide or vanish, so the caches are off and every prepare gets a unique name.
    # PgBouncer >= 1.21 with max_prepared_statements > 0 re-prepares a client's statements on
    # whichever server connection it hands out: settings.db_statement_cache turns the caches on.
    return f"__asyncpg_{uuid4().hex}__"


def statement_cache_size(settings: Settings) -> int:
    """Prepared statements cached per connection: 0 unless the pooler tracks them."""
    return settings.db_statement_cache_size if settings.db_statement_cache else 0


def database_url(settings: Settings) -> str:
    """The asyncpg URL with the separate password setting applied."""
    url = make_url(settings.database_url)
    if settings.database_password is not None:
        url = url.set(password=settings.database_password.get_secret_value())
    # SQLAlchemy's own LRU of asyncpg prepared statements (see statement_name).
    url = url.update_query_dict(
        {"prepared_statement_cache_size": str(statement_cache_size(settings))}
    )
    return url.render_as_string(hide_password=False)


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine whose pool holds client connections to PgBouncer (or PostgreSQL directly)."""
    return create_async_engine(
        database_url(settings),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        pool_pre_ping=False,
        hide_parameters=True,  # emails and hashes never reach a log through an error message
        connect_args={
            "timeout": settings.db_connect_timeout,  # asyncpg's connect (and auth) timeout
            "statement_cache_size": statement_cache_size(settings),  # asyncpg's own cache
            "prepared_statement_name_func": statement_name,
            "command_timeout": max(1.0, settings.db_statement_timeout_ms / 1000)
            if settings.db_statement_timeout_ms
            else None,
            "server_settings": {"application_name": "irontrack"},
            "ssl": database_ssl(settings),  # None: no TLS (loopback or a unix socket)
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that never expire loaded state on commit (no refresh SELECT after INSERT)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
