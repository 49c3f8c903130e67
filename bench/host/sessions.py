"""Seed many distinct sessions for the /me benchmark, and remove them again.

No signup, no login, no Argon2id: each session is issued by the service's own code, as a login
would issue it — an access token signed by ``TokenService.issue`` with the configured keyset and
a session family opened by ``SessionStore.open`` (the same Lua script, keys and TTLs) — for a
synthetic user. ``GET /me`` reads no database row (the token's claims and the Valkey session),
so nothing is written to PostgreSQL and there is nothing to delete there.

    python sessions.py seed --count 20000 --tokens tokens.txt --manifest keys.txt
    python sessions.py cleanup --manifest keys.txt

``seed`` writes one access token per line to ``--tokens`` (read by ``tokens.lua``) and every
Valkey key it created to ``--manifest``; ``cleanup`` deletes exactly those keys. Settings come
from the environment and ``IRONTRACK_ENV_FILE``, as the service reads them; run it with the
service's interpreter (on a host: the release's). Standard library and ``irontrack`` only, so
the playbook runs this very file on the application host.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from irontrack.keyset import load_configured_keyset
from irontrack.sessions import (
    FAMILY_PREFIX,
    REFRESH_PREFIX,
    SESSION_PREFIX,
    SessionStore,
    digest,
)
from irontrack.settings import Settings, load_settings
from irontrack.tokens import TokenService
from uuid_utils import uuid4

EMAIL_DOMAIN = "sessions.bench.irontrack.example.com"


@dataclass(frozen=True, slots=True)
class Seeded:
    token: str
    keys: tuple[str, str, str]  # access session, refresh record, family


def token_service(settings: Settings) -> TokenService:
    keyset = load_configured_keyset(
        settings.jwt_keyset_path, settings.jwt_private_key_path, settings.jwt_public_key_path
    )
    return TokenService(
        keyset, settings.access_token_ttl, settings.jwt_issuer, audience=settings.jwt_audience
    )


async def seed(settings: Settings, count: int, concurrency: int = 64) -> list[Seeded]:
    """``count`` sessions of ``count`` distinct synthetic users, opened in Valkey."""
    if count < 1:
        raise ValueError("count must be at least 1")
    tokens = token_service(settings)
    store = SessionStore(settings)  # the listener of its L1 is never started: writes only
    seeded: list[Seeded] = []
    issued = [tokens.issue(str(uuid4()), f"s{n}@{EMAIL_DOMAIN}") for n in range(count)]
    gate = asyncio.Semaphore(concurrency)

    async def open_one(n: int) -> None:
        claims = issued[n].claims
        async with gate:
            new = await store.open(claims.sub, claims.email, claims.jti)
        seeded.append(
            Seeded(
                token=issued[n].token,
                keys=(
                    SESSION_PREFIX + claims.jti,
                    REFRESH_PREFIX + digest(new.refresh_token),
                    FAMILY_PREFIX + new.sid,
                ),
            )
        )

    try:
        await asyncio.gather(*(open_one(n) for n in range(count)))
    except BaseException:
        await _delete(store, [key for s in seeded for key in s.keys])
        raise
    finally:
        await store.close()
    return seeded


async def _delete(store: SessionStore, keys: list[str], batch: int = 1000) -> int:
    deleted = 0
    for start in range(0, len(keys), batch):
        deleted += int(await store.client.unlink(*keys[start : start + batch]))
    return deleted


async def cleanup(settings: Settings, keys: Iterable[str]) -> int:
    """Delete the given session keys; the number that still existed."""
    wanted = [k for k in keys if k.startswith((SESSION_PREFIX, REFRESH_PREFIX, FAMILY_PREFIX))]
    store = SessionStore(settings)
    try:
        return await _delete(store, wanted)
    finally:
        await store.close()


def _write_private(path: Path, lines: Iterable[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.writelines(line + "\n" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    seed_cmd = sub.add_parser("seed", help="open COUNT sessions; write tokens and keys")
    seed_cmd.add_argument("--count", type=int, required=True)
    seed_cmd.add_argument("--tokens", type=Path, required=True, help="one access token a line")
    seed_cmd.add_argument("--manifest", type=Path, required=True, help="the keys created")
    clean_cmd = sub.add_parser("cleanup", help="delete the keys of a manifest")
    clean_cmd.add_argument("--manifest", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.command == "seed":
        if args.count < 1:
            parser.error("--count must be at least 1")
        started = time.perf_counter()
        seeded = asyncio.run(seed(settings, args.count))
        _write_private(args.manifest, (key for s in seeded for key in s.keys))
        _write_private(args.tokens, (s.token for s in seeded))
        print(f"seeded {len(seeded)} sessions in {time.perf_counter() - started:.1f} s")
        return 0
    keys = args.manifest.read_text(encoding="ascii").split()
    deleted = asyncio.run(cleanup(settings, keys))
    args.manifest.unlink()
    print(f"deleted {deleted} of {len(keys)} keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
