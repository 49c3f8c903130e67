"""The absolute session lifetime: rotation never extends a login beyond it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from conftest import me, signup_and_login
from harness import Server, Stack

REFRESH = "/api/v1/access/refresh"


@pytest.fixture(scope="module")
def short_lived(stack: Stack) -> Iterator[Server]:
    env = stack.app_env(
        IRONTRACK_VALKEY_URL=stack.valkey.url.rsplit("/", 1)[0] + "/5",
        IRONTRACK_ACCESS_TOKEN_TTL="60",
        IRONTRACK_SESSION_MAX_LIFETIME="60",
        IRONTRACK_REFRESH_TOKEN_TTL="3600",
    )
    server = Server(env, stack.root, "lifetime")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_rotation_never_extends_the_absolute_lifetime(short_lived: Server, stack: Stack) -> None:
    admin = redis.Redis.from_url(stack.valkey.admin_url.rsplit("/", 1)[0] + "/5")
    try:
        with short_lived.client() as http:
            user = signup_and_login(http, "lifetime")
            pair = {"refresh_token": user.refresh, "access_token": user.access}
            for _ in range(3):
                time.sleep(1.1)
                answer = http.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
                assert answer.status_code == 200, answer.text
                pair = answer.json()
            assert me(http, pair["access_token"]).status_code == 200
            # Every key of the family ends with the login, whatever the refresh TTL says:
            # ~60 s after login, 3+ s of which have passed.
            keys = list(admin.scan_iter("it:[srf]:*"))
            assert keys
            for key in keys:
                ttl = admin.ttl(key)
                assert 0 < ttl <= 57, (key, ttl)
            # The family hash names only the current pair: rotated members are not kept.
            families = [k for k in keys if k.startswith(b"it:f:")]
            assert len(families) == 1
            assert set(admin.hgetall(families[0])) == {b"r", b"jti", b"exp"}
    finally:
        admin.close()
