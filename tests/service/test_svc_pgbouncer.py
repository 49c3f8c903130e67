"""asyncpg through a real PgBouncer in transaction mode: no prepared-statement surprises.

The harness's PgBouncer has a small server pool (3), so concurrent transactions of one client
connection are served by different server connections. The service's engine settings must
survive that; asyncpg's defaults (named, cached statements) must not — which proves the
scenario really exercises the failure."""

from __future__ import annotations

import asyncio

import pytest
from harness import Stack
from irontrack.db import create_engine, create_sessionmaker
from irontrack.models import User
from irontrack.settings import Settings
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import load_only, raiseload


def _settings(stack: Stack, url: str) -> Settings:
    env = stack.app_env(IRONTRACK_DATABASE_URL=url, IRONTRACK_DB_POOL_SIZE="8")
    return Settings(**{k.removeprefix("IRONTRACK_").lower(): v for k, v in env.items()})


async def _hammer(engine: AsyncEngine, rounds: int = 40, width: int = 12) -> None:
    maker = create_sessionmaker(engine)

    async def one(i: int) -> None:
        async with maker() as db:
            stmt = (
                select(User)
                .options(load_only(User.id, User.email, User.password_hash), raiseload("*"))
                .where(func.lower(User.email) == f"nobody-{i}@example.com")
            )
            assert (await db.execute(stmt)).scalar_one_or_none() is None
            assert (
                await db.execute(text("SELECT CAST(:x AS integer) + 1"), {"x": i})
            ).scalar() == i + 1

    for r in range(rounds):
        # Let every task finish (and return its connection) before reporting a failure.
        results = await asyncio.gather(
            *(one(r * width + i) for i in range(width)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result


@pytest.mark.asyncio
async def test_service_engine_is_safe_through_pgbouncer(stack: Stack) -> None:
    engine = create_engine(_settings(stack, stack.pgbouncer.url()))
    try:
        await _hammer(engine)
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_asyncpg_defaults_break_through_pgbouncer(stack: Stack) -> None:
    """Negative control: the same load with asyncpg's statement caches on fails."""
    engine = create_async_engine(stack.pgbouncer.url(), pool_size=8)
    try:
        with pytest.raises(DBAPIError, match=r"prepared statement"):
            await _hammer(engine)
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_service_engine_directly_against_postgresql(stack: Stack) -> None:
    engine = create_engine(_settings(stack, stack.postgres.url()))
    try:
        await _hammer(engine, rounds=5)
    finally:
        await engine.dispose()
