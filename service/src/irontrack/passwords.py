"""Argon2id hashing in a bounded thread pool, never on the event loop."""

from __future__ import annotations

import asyncio
import functools
import secrets
from concurrent.futures import ThreadPoolExecutor

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from .settings import Settings


class PasswordService:
    """Hashes and verifies passwords with Argon2id in at most ``hash_workers`` threads.

    The argon2-cffi binding releases the GIL while hashing, so the pool gives real parallelism;
    its bound keeps a burst of signups from starving the event loops, PostgreSQL and the proxy.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.argon2_time_cost,
                    memory_cost=settings.argon2_memory_cost,
                    parallelism=settings.argon2_parallelism,
                ),
            )
        )
        self.workers = settings.hash_workers
        self._executor = ThreadPoolExecutor(
            max_workers=settings.hash_workers, thread_name_prefix="argon2"
        )
        # A real hash of a random password: verifying against it makes a login with an unknown
        # email cost exactly what a wrong password costs (no user enumeration by timing).
        self.dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hasher.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """True when ``password`` matches; with ``password_hash=None`` burn one verify, False."""
        loop = asyncio.get_running_loop()
        target = password_hash if password_hash is not None else self.dummy_hash
        call = functools.partial(self._safe_verify, password, target)
        ok = await loop.run_in_executor(self._executor, call)
        return ok and password_hash is not None

    def _safe_verify(self, password: str, password_hash: str) -> bool:
        try:
            return self._hasher.verify(password, password_hash)
        except Exception:  # a corrupt stored hash is a failed login, never a 500
            return False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
