"""asyncpg through a real PgBouncer in transaction mode: no prepared-statement surprises.

The harness's PgBouncer has a small server pool (3), so concurrent transactions of one client
connection are served by different server connections. The service's engine settings must
survive that; asyncpg's defaults (named, cached statements) must not when PgBouncer does not
track prepared statements (< 1.21, or max_prepared_statements = 0) — which proves the scenario
really exercises the failure. With PgBouncer >= 1.21 (`make test-service` runs the PGDG
mirror's) the service's statement cache is on and must survive server connections being
replaced under it (RECONNECT on the admin console)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from harness import PgBouncer, Stack
from irontrack.db import create_engine, create_sessionmaker
from irontrack.models import User
from irontrack.settings import Settings
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import load_only, raiseload


def _settings(stack: Stack, url: str, **extra: str) -> Settings:
    env = stack.app_env(IRONTRACK_DATABASE_URL=url, IRONTRACK_DB_POOL_SIZE="8", **extra)
    return Settings(**{k.removeprefix("IRONTRACK_").lower(): v for k, v in env.items()})


@pytest.fixture(scope="module")
def untracked_pgbouncer(stack: Stack) -> Iterator[PgBouncer]:
    """A second PgBouncer on the same server that does not track prepared statements."""
    bouncer = PgBouncer(
        stack.root, stack.account, pg_port=stack.postgres.port, psql=stack.pgbouncer.psql,
        max_prepared_statements=0, name="pgbouncer-untracked",
    )  # fmt: skip
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


async def _backend_pids(engine: AsyncEngine, width: int = 8) -> set[int]:
    """The server backends that serve a burst of concurrent transactions."""
    maker = create_sessionmaker(engine)

    async def one() -> int:
        async with maker() as db, db.begin():
            pid = (await db.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await db.execute(text("SELECT pg_sleep(0.05)"))
            return int(pid)

    return set(await asyncio.gather(*(one() for _ in range(width))))


def _stats(bouncer: PgBouncer) -> dict[str, int]:
    row = next(r for r in bouncer.admin("SHOW STATS") if r["database"] == "irontrack")
    return {k: int(v) for k, v in row.items() if k.startswith("total_")}


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
async def test_asyncpg_defaults_break_through_pgbouncer(untracked_pgbouncer: PgBouncer) -> None:
    """Negative control: the same load with asyncpg's statement caches on fails when PgBouncer
    does not track prepared statements."""
    engine = create_async_engine(untracked_pgbouncer.url(), pool_size=8)
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


@pytest.mark.asyncio
async def test_service_engine_without_cache_through_untracked_pgbouncer(
    stack: Stack, untracked_pgbouncer: PgBouncer
) -> None:
    """What the app role configures for PgBouncer < 1.21: the cache off, unique names."""
    settings = _settings(stack, untracked_pgbouncer.url(), IRONTRACK_DB_STATEMENT_CACHE="false")
    engine = create_engine(settings)
    try:
        await _hammer(engine, rounds=10)
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_statement_cache_survives_server_connection_changes(stack: Stack) -> None:
    """PgBouncer >= 1.21 with max_prepared_statements: the service's cached prepared statements
    keep working while every server connection is replaced (RECONNECT) between bursts. The
    counters prove what happened: the client parsed each statement once per connection (the
    cache is used), PgBouncer re-prepared them on the new server connections by itself."""
    bouncer = stack.pgbouncer
    if not bouncer.tracks_prepared_statements:
        pytest.skip(
            f"PgBouncer {'.'.join(map(str, bouncer.version))} does not track prepared "
            "statements (needs >= 1.21): IRONTRACK_TEST_PGBOUNCER=$(scripts/mirror-pgbouncer.sh)"
        )
    # No overflow connections: each client connection lives through the test (and prepares
    # each statement once).
    settings = _settings(
        stack, bouncer.url(), IRONTRACK_DB_STATEMENT_CACHE="true", IRONTRACK_DB_MAX_OVERFLOW="0"
    )
    assert settings.db_statement_cache
    engine = create_engine(settings)
    try:
        await _hammer(engine, rounds=5)  # every client connection has its statements cached
        await _backend_pids(engine)
        seen: set[int] = set()
        for _ in range(4):
            before = _stats(bouncer)
            pids_before = await _backend_pids(engine)
            bouncer.admin("RECONNECT irontrack")
            await _hammer(engine, rounds=5)
            pids_after = await _backend_pids(engine)
            after = _stats(bouncer)
            # New server connections served the statements the client had prepared before ...
            assert pids_before.isdisjoint(pids_after), (pids_before, pids_after)
            assert after["total_server_parse_count"] > before["total_server_parse_count"]
            # ... without the client preparing them again: its cached statements were used.
            assert after["total_bind_count"] - before["total_bind_count"] >= 5 * 12 * 2
            assert after["total_client_parse_count"] == before["total_client_parse_count"], (
                before,
                after,
            )
            seen |= pids_before | pids_after
        assert len(seen) >= 5
    finally:
        await engine.dispose()
