"""The session invariants under real concurrency: two server processes (A and B), one Valkey.

Every round sends its racing requests from separate threads, released together by a barrier,
half of them to each process. Rounds: ``IRONTRACK_RACE_ROUNDS`` (default 50).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from conftest import me, signup_and_login
from harness import Server, Stack

ROUNDS = int(os.environ.get("IRONTRACK_RACE_ROUNDS", "50"))
REFRESH = "/api/v1/access/refresh"
LOGOUT = "/api/v1/access/logout"


@pytest.fixture
def admin(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.valkey.admin_url)
    yield client
    client.close()


@pytest.fixture
def clients(server_a: Server, server_b: Server) -> Iterator[list[httpx.Client]]:
    """Four keep-alive clients: two on A, two on B."""
    made = [
        httpx.Client(base_url=server.base_url, timeout=30)
        for server in (server_a, server_b, server_a, server_b)
    ]
    try:
        yield made
    finally:
        for client in made:
            client.close()


def race(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run ``calls`` at the same moment, one thread each."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _refresh(client: httpx.Client, token: str) -> Callable[[], httpx.Response]:
    return lambda: client.post(REFRESH, json={"refresh_token": token})


def _dead_everywhere(clients: list[httpx.Client], access: str, refresh: str | None) -> None:
    for client in clients[:2]:
        assert me(client, access).status_code == 401
    if refresh is not None:
        assert clients[1].post(REFRESH, json={"refresh_token": refresh}).status_code == 401


def test_one_refresh_token_yields_at_most_one_pair(clients: list[httpx.Client]) -> None:
    """Four concurrent refreshes of one token: at most one 200; once reuse is detected, no token
    of the family works anywhere — the winner's new pair included."""
    winners_revoked = 0
    for round_ in range(ROUNDS):
        user = signup_and_login(clients[0], f"dbl{round_}")
        answers = race([_refresh(c, user.refresh) for c in clients])
        ok = [a for a in answers if a.status_code == 200]
        assert len(ok) <= 1, f"round {round_}: {len(ok)} pairs from one refresh token"
        assert all(a.status_code in (200, 401) for a in answers), [a.text for a in answers]
        reuse = any("reuse" in a.text for a in answers if a.status_code == 401)
        if reuse:
            for answer in ok:
                pair = answer.json()
                _dead_everywhere(clients, pair["access_token"], pair["refresh_token"])
                winners_revoked += 1
            _dead_everywhere(clients, user.access, user.refresh)
        elif ok:
            assert me(clients[1], ok[0].json()["access_token"]).status_code == 200
    assert winners_revoked > 0  # the race really happened


def test_logout_racing_refresh_leaves_nothing_alive(clients: list[httpx.Client]) -> None:
    """Logout on A races a refresh on B: once logout answered 204, no token of the session
    works anywhere, including a pair the racing refresh handed out."""
    refresh_won = 0
    for round_ in range(ROUNDS):
        user = signup_and_login(clients[0], f"lvr{round_}")
        out, rotated = race(
            [
                lambda u=user: clients[0].post(
                    LOGOUT, headers={"Authorization": f"Bearer {u.access}"}
                ),
                _refresh(clients[1], user.refresh),
            ]
        )
        assert rotated.status_code in (200, 401), rotated.text
        if out.status_code == 401:
            # The refresh ran first and ended the access token logout presented; the new pair
            # is alive and must still be revocable.
            assert rotated.status_code == 200
            pair = rotated.json()
            again = clients[0].post(
                LOGOUT, headers={"Authorization": f"Bearer {pair['access_token']}"}
            )
            assert again.status_code == 204
        else:
            assert out.status_code == 204, out.text
        _dead_everywhere(clients, user.access, user.refresh)
        if rotated.status_code == 200:
            refresh_won += 1
            pair = rotated.json()
            _dead_everywhere(clients, pair["access_token"], pair["refresh_token"])
    assert refresh_won > 0


def _family(admin: redis.Redis, refresh: str) -> tuple[str, dict[bytes, bytes], bool]:
    raw = admin.get("it:r:" + hashlib.sha256(refresh.encode()).hexdigest())
    assert raw is not None
    sid = raw.decode().split('"sid":"', 1)[1].split('"', 1)[0]
    return sid, admin.hgetall(f"it:f:{sid}"), bool(admin.exists(f"it:t:{sid}"))


def test_valkey_connections_killed_mid_rotation_never_leave_half_a_family(
    clients: list[httpx.Client], admin: redis.Redis
) -> None:
    """CLIENT KILL of every service connection while rotations are in flight: each family ends
    either untouched (old pair works), rotated (new pair works, old refresh is reuse) or wholly
    revoked — never an old token refused while a part of the family lives on."""
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        while not stop.is_set():
            kills += int(admin.execute_command("CLIENT", "KILL", "USER", "irontrack"))
            time.sleep(0.005)

    outcomes: dict[str, int] = {"rotated": 0, "untouched": 0, "revoked": 0, "errors": 0}
    users = [signup_and_login(clients[0], f"kill{round_}") for round_ in range(ROUNDS)]
    thread = threading.Thread(target=killer)
    thread.start()
    try:
        answers = []
        for start in range(0, len(users), 4):
            batch = users[start : start + 4]
            answers += race([_refresh(c, u.refresh) for c, u in zip(clients, batch, strict=False)])
    finally:
        stop.set()
        thread.join()
    assert kills > 0
    assert len(answers) == len(users) == ROUNDS
    for user, answer in zip(users, answers, strict=True):
        assert answer.status_code in (200, 401, 503), answer.text
        sid, family, tombstone = _family(admin, user.refresh)
        digest = hashlib.sha256(user.refresh.encode()).hexdigest().encode()
        live = [k for k in admin.scan_iter("it:s:*") if f'"sid":"{sid}"'.encode() in admin.get(k)]
        if answer.status_code == 200:
            outcomes["rotated"] += 1
            pair = answer.json()
            new = hashlib.sha256(pair["refresh_token"].encode()).hexdigest().encode()
            assert family[b"r"] == new
            assert not tombstone
            assert me(clients[1], pair["access_token"]).status_code == 200
            assert me(clients[0], user.access).status_code == 401
            continue
        outcomes["errors"] += 1
        if family.get(b"r") == digest:  # nothing committed: the old pair still works
            outcomes["untouched"] += 1
            assert not tombstone
            assert me(clients[1], user.access).status_code == 200
            assert clients[0].post(REFRESH, json={"refresh_token": user.refresh}).status_code == 200
        elif family:  # committed, reply lost: the old token is now reuse, and revokes it all
            outcomes["rotated"] += 1
            assert len(live) == 1
            assert clients[0].post(REFRESH, json={"refresh_token": user.refresh}).status_code == 401
            assert admin.exists(f"it:t:{sid}")
            assert not admin.exists(f"it:f:{sid}")
        else:
            outcomes["revoked"] += 1
            assert tombstone
            assert live == [], "a revoked family still has a live access session"
    print(f"kills={kills} outcomes={outcomes}")
    assert outcomes["rotated"] + outcomes["untouched"] + outcomes["revoked"] == ROUNDS


def test_l1_never_serves_a_session_after_its_invalidation(clients: list[httpx.Client]) -> None:
    """A and B hold the session in their L1; logout on one, then at once /me on both: 401 on
    the very first request, every round (the window between 204 and the drop is measured as the
    number of stale answers: 0)."""
    stale = 0
    for round_ in range(ROUNDS):
        user = signup_and_login(clients[0], f"l1{round_}")
        for client in clients[:2]:
            for _ in range(3):
                assert me(client, user.access).status_code == 200
        by = clients[round_ % 2]
        out = by.post(LOGOUT, headers={"Authorization": f"Bearer {user.access}"})
        assert out.status_code == 204
        for client in (clients[(round_ + 1) % 2], by):
            stale += me(client, user.access).status_code == 200
    assert stale == 0, f"{stale} stale L1 answers after logout in {ROUNDS} rounds"


def test_l1_listener_killed_comes_back_tracked(
    clients: list[httpx.Client], admin: redis.Redis
) -> None:
    """CLIENT KILL of every L1 listener: redis-py would re-open and re-subscribe such a
    connection by itself, but CLIENT TRACKING died with the old one — the listener must notice,
    go blind, and come back tracked. Afterwards a logout on one process is still seen by the
    other on the very next request (the L1 is in use again: its copy was served first)."""

    def listeners() -> list[str]:
        return [str(c["id"]) for c in admin.client_list() if c.get("name") == "irontrack-l1"]

    before = listeners()
    assert len(before) >= 2, "each server process has its own listener"
    for client_id in before:
        admin.execute_command("CLIENT", "KILL", "ID", client_id)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = listeners()
        tracked = [
            c for c in admin.client_list() if c.get("name") == "irontrack-l1" and "t" in c["flags"]
        ]
        if len(now) >= len(before) and not set(now) & set(before) and len(tracked) == len(now):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the L1 listeners did not come back tracked: {admin.client_list()}")
    stale = 0
    for round_ in range(10):
        user = signup_and_login(clients[0], f"relisten{round_}")
        for client in clients[:2]:
            for _ in range(3):
                assert me(client, user.access).status_code == 200
        by = clients[round_ % 2]
        assert (
            by.post(LOGOUT, headers={"Authorization": f"Bearer {user.access}"}).status_code == 204
        )
        for client in (clients[(round_ + 1) % 2], by):
            stale += me(client, user.access).status_code == 200
    assert stale == 0, f"{stale} stale L1 answers after the listeners were killed"
