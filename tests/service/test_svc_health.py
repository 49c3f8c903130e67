"""``/health`` names the failed component with 503, never hangs, and recovers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import PASSWORD, me, unique_email
from harness import Server, Stack, Valkey
from irontrack.release import current_release

# What a loaded shared machine may add to a bound measured from outside the server.
SLACK = 1.0


def _poll_health(
    http: httpx.Client, want: int, within: float, every: float = 0.2
) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        answer = http.get("/health")
        if answer.status_code == want or time.monotonic() > deadline:
            return answer
        time.sleep(every)


def test_health_ok(client: httpx.Client) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    age = body.pop("age_ms")
    assert body == {
        "status": "ok",
        "components": {"postgresql": "ok", "valkey": "ok"},
        "release": current_release(),
    }
    assert isinstance(age, int)
    assert 0 <= age <= 1000  # the default IRONTRACK_HEALTH_MAX_AGE
    head = client.head("/health")
    assert head.status_code == 200
    assert head.content == b""


@pytest.fixture
def own_valkey(stack: Stack) -> Iterator[tuple[Valkey, Server]]:
    """A server on a Valkey of its own, so stopping that Valkey disturbs no other test."""
    valkey = Valkey(stack.root, stack.account)
    valkey.start()
    server = Server(
        stack.app_env(IRONTRACK_VALKEY_URL=valkey.url), stack.root, f"valkey-{valkey.port}"
    )
    try:
        server.start()
        yield valkey, server
    finally:
        server.stop()
        valkey.stop()


def test_valkey_down_is_503_naming_valkey_and_recovers(own_valkey) -> None:
    valkey, server = own_valkey
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        email = unique_email("vdown")
        assert (
            http.post(
                "/api/v1/access/signup", json={"email": email, "password": PASSWORD}
            ).status_code
            == 201
        )
        login = http.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
        token = login.json()["access_token"]

        valkey.stop()
        started = time.monotonic()
        # A result may be reused for up to HEALTH_MAX_AGE (1 s), then the probe's timeout (1 s).
        answer = _poll_health(http, 503, within=2.0 + SLACK)
        assert time.monotonic() - started < 2.0 + SLACK  # short timeouts, never hangs
        assert answer.status_code == 503
        body = answer.json()
        assert body["failed"] == ["valkey"]
        assert body["components"]["postgresql"] == "ok"
        assert body["components"]["valkey"] != "ok"

        # No session store: no authentication — a clean 503, and never a stale L1 "yes".
        who = http.get("/api/v1/access/me", headers={"Authorization": f"Bearer {token}"})
        assert who.status_code == 503, server.log_tail()
        again = http.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
        assert again.status_code == 503

        valkey.start()  # same port, empty: the old session is gone
        assert _poll_health(http, 200, within=15).status_code == 200
        who = http.get("/api/v1/access/me", headers={"Authorization": f"Bearer {token}"})
        assert who.status_code == 401


def test_postgresql_down_is_503_naming_postgresql_and_recovers(
    stack: Stack, server_a: Server
) -> None:
    with httpx.Client(base_url=server_a.base_url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        stack.postgres.stop()
        try:
            started = time.monotonic()
            answer = _poll_health(http, 503, within=2.0 + SLACK)
            assert time.monotonic() - started < 2.0 + SLACK
            assert answer.status_code == 503
            body = answer.json()
            assert body["failed"] == ["postgresql"]
            assert body["components"]["valkey"] == "ok"
            assert body["components"]["postgresql"] in ("timeout", "error")
            signup = http.post(
                "/api/v1/access/signup",
                json={"email": unique_email("pgdown"), "password": PASSWORD},
            )
            assert signup.status_code == 503
        finally:
            stack.postgres.start()
        assert _poll_health(http, 200, within=30).status_code == 200
        email = unique_email("pgback")
        assert (
            http.post(
                "/api/v1/access/signup", json={"email": email, "password": PASSWORD}
            ).status_code
            == 201
        )


def test_valkey_down_at_start_then_up(stack: Stack) -> None:
    """The service starts without Valkey (503 from /health), and once Valkey is there it
    works — including the L1 listener, started by the background retry."""
    import redis

    valkey = Valkey(stack.root, stack.account)
    server = Server(
        stack.app_env(IRONTRACK_VALKEY_URL=valkey.url), stack.root, f"late-valkey-{valkey.port}"
    )
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            down = http.get("/health")
            assert down.status_code == 503
            assert down.json()["failed"] == ["valkey"]
            valkey.start()
            assert _poll_health(http, 200, within=10).status_code == 200
            email = unique_email("latevalkey")
            http.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
            login = http.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
            token = login.json()["access_token"]
            admin = redis.Redis.from_url(valkey.admin_url)
            try:
                deadline = time.monotonic() + 15
                while True:  # the retry runs every 5 s; then /me is served from L1
                    assert me(http, token).status_code == 200
                    before = admin.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
                    for _ in range(5):
                        assert me(http, token).status_code == 200
                    after = admin.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
                    if after == before or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                assert after == before, "L1 never started after Valkey came up"
            finally:
                admin.close()
    finally:
        server.stop()
        valkey.stop()
