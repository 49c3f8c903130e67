"""The real Argon2id defaults (t=3, m=64 MiB, p=1), under Uvicorn with the report's flags."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import PASSWORD, me, unique_email
from harness import Server, Stack
from irontrack.passwords import PasswordService
from irontrack.settings import Settings, default_hash_workers

PARAMS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")


@pytest.fixture(scope="module")
def uvicorn_defaults(stack: Stack) -> Iterator[Server]:
    env = stack.app_env()
    for key in ("IRONTRACK_ARGON2_TIME_COST", "IRONTRACK_ARGON2_MEMORY_COST"):
        env.pop(key)
    env.pop("IRONTRACK_HASH_WORKERS")
    server = Server(env, stack.root, "uvicorn-defaults", server="uvicorn", workers=2)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_defaults_end_to_end_under_uvicorn(uvicorn_defaults: Server, stack: Stack) -> None:
    with httpx.Client(base_url=uvicorn_defaults.base_url, timeout=60) as http:
        email = unique_email("defaults")
        created = http.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201
        stored = stack.postgres.psql(
            f"SELECT password_hash FROM users WHERE email = '{email}'", database="irontrack"
        ).strip()
        assert PARAMS.match(stored).groups() == ("65536", "3", "1")
        login = http.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200
        assert me(http, login.json()["access_token"]).status_code == 200
        wrong = http.post("/api/v1/access/login", json={"email": email, "password": "x" * 12})
        assert wrong.status_code == 401


def _settings(stack: Stack, **over: object) -> Settings:
    env = stack.app_env()
    base = {
        "database_url": env["IRONTRACK_DATABASE_URL"],
        "valkey_url": env["IRONTRACK_VALKEY_URL"],
        "jwt_keyset_path": env["IRONTRACK_JWT_KEYSET_PATH"],
    }
    return Settings(**{**base, **over})


def test_default_settings_match_the_report(stack: Stack) -> None:
    settings = _settings(stack)
    assert (settings.argon2_time_cost, settings.argon2_memory_cost) == (3, 65536)
    assert settings.argon2_parallelism == 1
    assert settings.hash_workers == default_hash_workers()
    assert 1 <= settings.hash_workers <= 4
    assert settings.access_token_ttl == 1800


@pytest.mark.asyncio
async def test_unknown_email_costs_a_real_verify(stack: Stack) -> None:
    """Login of an unknown email verifies against a dummy hash of the same parameters."""
    service = PasswordService(_settings(stack, hash_workers=1))
    try:
        assert PARAMS.match(service.dummy_hash).groups() == ("65536", "3", "1")
        stored = await service.hash(PASSWORD)
        assert PARAMS.match(stored).groups() == ("65536", "3", "1")
        assert await service.verify(PASSWORD, stored)

        async def timed(password: str, target: str | None) -> tuple[bool, float]:
            start = time.perf_counter()
            ok = await service.verify(password, target)
            return ok, time.perf_counter() - start

        wrong = [await timed("wrong password!", stored) for _ in range(3)]
        unknown = [await timed(PASSWORD, None) for _ in range(3)]
        assert not any(ok for ok, _ in wrong + unknown)
        # Same work, so the same order of magnitude (loose: this machine is shared and noisy).
        w = sorted(t for _, t in wrong)[1]
        u = sorted(t for _, t in unknown)[1]
        assert 0.2 < u / w < 5.0, (u, w)
    finally:
        service.close()


@pytest.mark.asyncio
async def test_pool_is_bounded(stack: Stack) -> None:
    """More concurrent hashes than workers queue up; never more than hash_workers threads."""
    import threading

    service = PasswordService(
        _settings(stack, hash_workers=2, argon2_time_cost=1, argon2_memory_cost=1024)
    )
    try:
        await asyncio.gather(*(service.hash(PASSWORD) for _ in range(16)))
        argon_threads = [t for t in threading.enumerate() if t.name.startswith("argon2")]
        assert 1 <= len(argon_threads) <= 2
    finally:
        service.close()
