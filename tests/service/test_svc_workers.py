"""Logout takes effect at once on every worker: two real server processes, one Valkey.

Server B serves /me from its in-process L1 (proved: Valkey sees no GET for it), and still
answers 401 on the very next request after server A revoked the session — the invalidation
reached B through Valkey's client tracking, not through a TTL."""

from __future__ import annotations

import httpx
import pytest
import redis
from conftest import me, signup_and_login
from harness import Server, Stack


def _get_calls(admin: redis.Redis) -> int:
    stats = admin.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


@pytest.fixture
def admin(stack: Stack):
    client = redis.Redis.from_url(stack.valkey.admin_url)
    yield client
    client.close()


def test_logout_on_a_is_seen_by_b_at_once(
    server_a: Server, server_b: Server, admin: redis.Redis
) -> None:
    with (
        httpx.Client(base_url=server_a.base_url, timeout=30) as a,
        httpx.Client(base_url=server_b.base_url, timeout=30) as b,
    ):
        for round_ in range(10):
            user = signup_and_login(a, f"workers{round_}")
            assert me(b, user.access).status_code == 200  # B caches the session in L1

            before = _get_calls(admin)
            for _ in range(20):
                assert me(b, user.access).status_code == 200
            assert _get_calls(admin) == before, "B should answer from its L1, not Valkey"

            out = a.post("/api/v1/access/logout", headers={"Cookie": f"access_token={user.access}"})
            assert out.status_code == 204
            answer = me(b, user.access)  # no sleep, no retry
            assert answer.status_code == 401, f"round {round_}: B still accepts a revoked token"


def test_refresh_on_a_ends_the_old_token_on_b(server_a: Server, server_b: Server) -> None:
    with (
        httpx.Client(base_url=server_a.base_url, timeout=30) as a,
        httpx.Client(base_url=server_b.base_url, timeout=30) as b,
    ):
        user = signup_and_login(a, "workers-refresh")
        assert me(b, user.access).status_code == 200
        rotated = a.post("/api/v1/access/refresh", json={"refresh_token": user.refresh})
        assert rotated.status_code == 200
        assert me(b, user.access).status_code == 401
        assert me(b, rotated.json()["access_token"]).status_code == 200


def test_session_opened_on_a_is_valid_on_b(server_a: Server, server_b: Server) -> None:
    with (
        httpx.Client(base_url=server_a.base_url, timeout=30) as a,
        httpx.Client(base_url=server_b.base_url, timeout=30) as b,
    ):
        user = signup_and_login(a, "workers-open")
        # B looked this jti up before? No: but a negative L1 entry must not outlive a SET either.
        assert me(b, user.access, "bearer").status_code == 200
