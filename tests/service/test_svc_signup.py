"""Signup/login data path: one INSERT (no refresh SELECT), 409 from the unique constraint,
narrow login SELECT, and exactly one winner among concurrent signups of one email."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import pytest_asyncio
from conftest import PASSWORD, unique_email
from harness import Stack
from irontrack.app import create_fastapi
from irontrack.settings import Settings
from sqlalchemy import event


def settings_for(stack: Stack, **extra: str) -> Settings:
    env = stack.app_env(**extra)
    return Settings(**{k.removeprefix("IRONTRACK_").lower(): v for k, v in env.items()})


@pytest_asyncio.fixture
async def in_process(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """The FastAPI app in this process (lifespan run), with every SQL statement recorded."""
    app = create_fastapi(settings_for(stack))
    statements: list[str] = []
    async with app.router.lifespan_context(app):
        engine = app.state.services.engine

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _record(conn, cursor, statement, parameters, context, executemany):
            statements.append(" ".join(statement.split()))

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, statements


@pytest.mark.asyncio
async def test_signup_is_one_insert_and_login_one_narrow_select(in_process) -> None:
    http, statements = in_process
    email = unique_email("sql")
    created = await http.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT INTO users")
    assert "RETURNING" not in statements[0]

    statements.clear()
    login = await http.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    assert len(statements) == 1, statements
    select = statements[0]
    assert select.startswith("SELECT users.id, users.email, users.password_hash FROM users")
    assert "created_at" not in select  # load_only
    assert "JOIN" not in select
    # The normalised address against the unique index on the column itself.
    assert "WHERE users.email = $1" in select

    statements.clear()
    me = await http.get(
        "/api/v1/access/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.status_code == 200
    assert statements == []  # /me never touches PostgreSQL


@pytest.mark.asyncio
async def test_duplicate_is_409_from_the_constraint_not_a_precheck(in_process) -> None:
    http, statements = in_process
    email = unique_email("dup")
    first = await http.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
    assert first.status_code == 201
    statements.clear()
    second = await http.post(
        "/api/v1/access/signup", json={"email": email.upper(), "password": PASSWORD}
    )
    assert second.status_code == 409
    assert second.json() == {"detail": "email already registered"}
    # No SELECT-then-INSERT race: the INSERT itself was attempted and refused.
    assert [s.split()[0] for s in statements] == ["INSERT"], statements


def test_duplicate_email_case_insensitive(client: httpx.Client) -> None:
    email = unique_email("Mixed")
    assert (
        client.post(
            "/api/v1/access/signup", json={"email": email, "password": PASSWORD}
        ).status_code
        == 201
    )
    for variant in (email, email.lower(), email.upper()):
        answer = client.post("/api/v1/access/signup", json={"email": variant, "password": PASSWORD})
        assert answer.status_code == 409, variant


def test_concurrent_signups_of_one_email_exactly_one_wins(
    client: httpx.Client, stack: Stack
) -> None:
    email = unique_email("race")
    n = 12

    def attempt(i: int) -> int:
        variant = email if i % 2 else email.upper()
        with httpx.Client(base_url=str(client.base_url), timeout=60) as http:
            return http.post(
                "/api/v1/access/signup", json={"email": variant, "password": PASSWORD}
            ).status_code

    with ThreadPoolExecutor(max_workers=n) as pool:
        codes = list(pool.map(attempt, range(n)))
    assert sorted(codes) == [201] + [409] * (n - 1), codes
    rows = stack.postgres.psql(
        f"SELECT count(*) FROM users WHERE lower(email) = lower('{email}')", database="irontrack"
    )
    assert rows.strip() == "1"


def test_unique_index_is_on_the_normalised_column(stack: Stack) -> None:
    definition = stack.postgres.psql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'users_email_key'",
        database="irontrack",
    )
    assert "UNIQUE INDEX" in definition
    assert "(email)" in definition
    old = stack.postgres.psql(
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_lower_key'",
        database="irontrack",
    )
    assert old.strip() == "0"


@pytest.mark.asyncio
async def test_hashing_never_blocks_the_event_loop(stack: Stack) -> None:
    """While Argon2id (real default parameters) runs, the loop keeps ticking."""
    from irontrack.passwords import PasswordService

    service = PasswordService(Settings(**{**_minimal(stack), "hash_workers": 1}))
    try:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ticks = 0
        await service.hash(PASSWORD)
        done = True
        await task
        assert ticks >= 5  # a 64 MiB/t=3 hash takes ~0.2 s; a blocked loop would tick ~once
    finally:
        service.close()


def _minimal(stack: Stack) -> dict[str, object]:
    env = stack.app_env()
    return {
        "database_url": env["IRONTRACK_DATABASE_URL"],
        "valkey_url": env["IRONTRACK_VALKEY_URL"],
        "jwt_keyset_path": env["IRONTRACK_JWT_KEYSET_PATH"],
    }


def test_non_ascii_emails_normalise_one_way(client: httpx.Client) -> None:
    """NFC and lower-case, in signup and login alike: É (one code point), E + U+0301 and é
    are one address; ß is not folded to ss (casefold would merge distinct mailboxes)."""
    tag = unique_email("x").split("@")[0]
    composed = f"\u00c9lodie-{tag}@example.com"  # É
    decomposed = f"E\u0301lodie-{tag}@example.com"  # E + combining acute
    lower = f"\u00e9lodie-{tag}@example.com"  # é
    created = client.post("/api/v1/access/signup", json={"email": composed, "password": PASSWORD})
    assert created.status_code == 201, created.text
    assert created.json()["email"] == lower
    for variant in (decomposed, lower, composed.upper()):
        again = client.post("/api/v1/access/signup", json={"email": variant, "password": PASSWORD})
        assert again.status_code == 409, (variant, again.text)
        login = client.post("/api/v1/access/login", json={"email": variant, "password": PASSWORD})
        assert login.status_code == 200, (variant, login.text)
    strasse = f"stra\u00dfe-{tag}@example.com"
    ss = f"strasse-{tag}@example.com"
    for email in (strasse, ss):
        made = client.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
        assert made.status_code == 201, (email, made.text)
