"""Admission control for Argon2id and login throttling, on real server processes.

Each server here uses its own Valkey database, so its throttling counters never meet the
other tests' (which all log in from 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from conftest import PASSWORD, me, signup_and_login, unique_email
from harness import Server, Stack

LOGIN = "/api/v1/access/login"


def _db_url(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="module")
def flood_server(stack: Stack) -> Iterator[Server]:
    """Real Argon2id cost, one hash thread and a queue of 2 per worker."""
    env = stack.app_env(
        IRONTRACK_VALKEY_URL=_db_url(stack.valkey.url, 2),
        IRONTRACK_ARGON2_TIME_COST="3",
        IRONTRACK_ARGON2_MEMORY_COST="65536",
        IRONTRACK_HASH_WORKERS="1",
        IRONTRACK_HASH_QUEUE="2",
        IRONTRACK_HASH_RETRY_AFTER="2",
    )
    server = Server(env, stack.root, "flood")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_login_flood_gets_fast_503s_while_me_stays_fast(flood_server: Server) -> None:
    with httpx.Client(base_url=flood_server.base_url, timeout=60) as http:
        user = signup_and_login(http, "flood")
        quiet = [_timed(lambda: me(http, user.access)) for _ in range(20)]
    n = 40
    barrier = threading.Barrier(n + 1)

    def attempt(i: int) -> tuple[int, float, str | None]:
        with httpx.Client(base_url=flood_server.base_url, timeout=60) as http:
            barrier.wait()
            start = time.perf_counter()
            answer = http.post(
                LOGIN,
                json={"email": unique_email("flood"), "password": PASSWORD},
                headers={"X-Real-IP": f"198.51.100.{i}"},  # every one from its own address
            )
            took = time.perf_counter() - start
            assert answer.headers["content-type"] == "application/json"
            assert "detail" in answer.json()
            return answer.status_code, took, answer.headers.get("retry-after")

    during: list[float] = []
    with ThreadPoolExecutor(n) as pool, httpx.Client(base_url=flood_server.base_url) as probe:
        futures = [pool.submit(attempt, i) for i in range(n)]
        barrier.wait()
        while not all(f.done() for f in futures):
            during.append(_timed(lambda: me(probe, user.access)))
        results = [f.result() for f in futures]
    statuses = [status for status, _, _ in results]
    refused = [took for status, took, _ in results if status == 503]
    assert set(statuses) <= {401, 503}, statuses
    # One hash thread + two queued: at most 3 ran the Argon2id verify, the rest were refused.
    assert statuses.count(401) <= 3 + 3, statuses  # + what finished while the flood arrived
    assert len(refused) >= n - 6, statuses
    assert all(ra == "2" for status, _, ra in results if status == 503)
    # Refused at once, not queued: an unbounded queue would make the average request wait
    # n/2 hashes; the refusals' median is a fraction of that (ratio, not a fixed time: the
    # machine is shared).
    hashed = [took for status, took, _ in results if status == 401]
    hash_s = min(hashed) if hashed else 0.2
    print(f"hash {hash_s:.3f}s, refused median {statistics.median(refused):.3f}s")
    assert statistics.median(refused) < 0.25 * (n / 2) * hash_s, (hash_s, refused)
    # /me kept answering while the hash thread was busy, from the same process.
    assert len(during) >= 3
    assert statistics.median(during) < max(0.1, 10 * statistics.median(quiet)), (quiet, during)


def _timed(call) -> float:
    start = time.perf_counter()
    answer = call()
    assert answer.status_code == 200
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def throttle_env(stack: Stack) -> dict[str, str]:
    return stack.app_env(
        IRONTRACK_VALKEY_URL=_db_url(stack.valkey.url, 3),
        IRONTRACK_LOGIN_FREE_FAILURES="3",
        IRONTRACK_LOGIN_BACKOFF_BASE="0.2",
    )


@pytest.fixture
def admin(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(_db_url(stack.valkey.admin_url, 3))
    yield client
    client.close()


def _lock_left(admin: redis.Redis, key: str) -> float:
    seconds, micros = admin.time()
    until = int(admin.hget(key, "until") or 0)
    return (until - (seconds * 1000 + micros // 1000)) / 1000


def test_failed_logins_back_off_exponentially_shared_and_across_restarts(
    stack: Stack, throttle_env: dict[str, str], admin: redis.Redis
) -> None:
    a = Server(throttle_env, stack.root, "throttle-a")
    b = Server(throttle_env, stack.root, "throttle-b")
    a.start()
    b.start()
    try:
        with a.client() as on_a, b.client() as on_b:
            user = signup_and_login(on_a, "throttle")
            wrong = {"email": user.email, "password": "not the password"}
            right = {"email": user.email, "password": PASSWORD}
            me_addr = {"X-Real-IP": "203.0.113.7"}
            # Free failures, spread over both processes: the counter is shared.
            for i in range(3):
                http = on_a if i % 2 else on_b
                assert http.post(LOGIN, json=wrong, headers=me_addr).status_code == 401
            assert on_a.post(LOGIN, json=wrong, headers=me_addr).status_code == 401  # 4th: lock
            locked = on_b.post(LOGIN, json=right, headers=me_addr)  # even the right password
            assert locked.status_code == 429, locked.text
            assert int(locked.headers["retry-after"]) >= 1
            assert locked.json() == {"detail": "too many failed logins; try again later"}
            key = "it:l:a:" + hashlib.sha256(user.email.encode()).hexdigest()
            # The length each failure set (the hash's `lock`, ms), not the time left when the
            # test reads it: that shrinks with however long the machine takes to get there.
            locks = []
            for _ in range(3):
                locks.append(int(admin.hget(key, "lock")))
                assert _lock_left(admin, key) <= locks[-1] / 1000
                time.sleep(max(0.0, _lock_left(admin, key)) + 0.05)
                assert on_a.post(LOGIN, json=wrong, headers=me_addr).status_code == 401
            locks.append(int(admin.hget(key, "lock")))
            # Every further failure doubles the lock (0.2, 0.4, 0.8, 1.6 s).
            assert locks == [200, 400, 800, 1600], locks
            # The counter lives in Valkey: a restarted server continues it.
            before = int(admin.hget(key, "n"))
            a.stop()
            a.start()
            time.sleep(max(0.0, _lock_left(admin, key)) + 0.05)
            assert on_a.post(LOGIN, json=wrong, headers=me_addr).status_code == 401
            assert int(admin.hget(key, "n")) == before + 1
            # The address is locked too: another account from it is refused ...
            other = signup_and_login(on_a, "throttle-other")
            refused = on_a.post(
                LOGIN, json={"email": other.email, "password": PASSWORD}, headers=me_addr
            )
            assert refused.status_code == 429
            # ... while the account from another address waits only for its own lock.
            time.sleep(max(0.0, _lock_left(admin, key)) + 0.05)
            ok = on_b.post(LOGIN, json=right, headers={"X-Real-IP": "192.0.2.55"})
            assert ok.status_code == 200, ok.text
            assert not admin.exists(key)  # success clears the account's counter
    finally:
        a.stop()
        b.stop()
