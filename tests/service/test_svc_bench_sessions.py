"""bench/host/sessions.py, the /me benchmark's seeder, against the real stack: it opens N
sessions through the service's own token and session code, every token is accepted by a
running server, and the cleanup deletes exactly those sessions (a real login's survives)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
from conftest import me, signup_and_login
from harness import Server, Stack

SEEDER = Path(__file__).resolve().parents[2] / "bench" / "host" / "sessions.py"
COUNT = 10_000  # the benchmark's minimum


def _seeder(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SEEDER), *args],
        env={**os.environ, **stack.app_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_seeded_sessions_work_and_the_cleanup_removes_them(
    stack: Stack, server_a: Server, client: httpx.Client, tmp_path: Path
) -> None:
    tokens_file, manifest = tmp_path / "tokens.txt", tmp_path / "sessions.keys"
    real = signup_and_login(client, "bench-seed")
    out = _seeder(
        stack, "seed", f"--count={COUNT}", f"--tokens={tokens_file}", f"--manifest={manifest}"
    )
    assert f"seeded {COUNT} sessions" in out
    assert tokens_file.stat().st_mode & 0o077 == 0, "tokens are credentials: owner only"
    tokens = tokens_file.read_text().split()
    keys = manifest.read_text().split()
    assert len(set(tokens)) == COUNT
    assert len(set(keys)) == 3 * COUNT
    assert {k.split(":")[1] for k in keys} == {"s", "r", "f"}  # session, refresh, family

    valkey = redis.Redis.from_url(stack.valkey.url)
    try:
        assert sum(valkey.exists(*keys[i : i + 1000]) for i in range(0, len(keys), 1000)) == len(
            keys
        )
        sample = [tokens[0], tokens[-1], *random.sample(tokens, 48)]
        users = set()
        for token in sample:
            answer = me(client, token)
            assert answer.status_code == 200, answer.text
            users.add(answer.json()["id"])
        assert len(users) == len(set(sample)), "one distinct user per session"

        out = _seeder(stack, "cleanup", f"--manifest={manifest}")
        assert f"deleted {3 * COUNT} of {3 * COUNT} keys" in out
        assert not manifest.exists()
        assert sum(valkey.exists(*keys[i : i + 1000]) for i in range(0, len(keys), 1000)) == 0
    finally:
        valkey.close()
    # The server's session L1 is told by Valkey's tracking: a removed session is refused soon.
    deadline = time.monotonic() + 5
    while me(client, sample[0]).status_code != 401:
        assert time.monotonic() < deadline, "a deleted session is still accepted"
        time.sleep(0.05)
    for token in sample:
        assert me(client, token).status_code == 401
    assert me(client, real.access).status_code == 200, "other sessions are left alone"
