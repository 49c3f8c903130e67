"""Argon2id hashing in a bounded thread pool, never on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from .settings import Settings

T = TypeVar("T")


class Overloaded(Exception):
    """Every hash thread is busy and the queue is full: answer 503 at once."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("password hashing saturated")
        self.retry_after = retry_after


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
        # Admission: at most `workers` jobs run and `hash_queue` wait; the next one is refused
        # at once (503 + Retry-After) instead of queueing without bound behind an anonymous
        # flood. The count is touched only on the event loop: no lock needed.
        self.capacity = settings.hash_workers + settings.hash_queue
        self.retry_after = settings.hash_retry_after
        self.pending = 0
        self.rejected = 0  # refused jobs (published as a metric)
        # Called in the hash thread with the seconds a job waited for it (metrics), or None.
        self.on_wait: Callable[[float], None] | None = None
        self._idle = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.hash_workers, thread_name_prefix="argon2"
        )
        # A real hash of a random password: verifying against it makes a login with an unknown
        # email cost exactly what a wrong password costs (no user enumeration by timing).
        self.dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def admit(self) -> None:
        """Raise Overloaded when no job could be queued now."""
        if self.pending >= self.capacity:
            self.rejected += 1
            raise Overloaded(self.retry_after)

    async def _run(self, call: Callable[[], T]) -> T:
        self.admit()
        self.pending += 1
        self._idle.clear()
        on_wait = self.on_wait
        if on_wait is not None:
            call = _timed(call, on_wait, time.perf_counter())
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            self.pending -= 1
            if not self.pending:
                self._idle.set()

    async def hash(self, password: str) -> str:
        return await self._run(functools.partial(self._hasher.hash, password))

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """True when ``password`` matches; with ``password_hash=None`` burn one verify, False."""
        target = password_hash if password_hash is not None else self.dummy_hash
        ok = await self._run(functools.partial(self._safe_verify, password, target))
        return ok and password_hash is not None

    def _safe_verify(self, password: str, password_hash: str) -> bool:
        try:
            return self._hasher.verify(password, password_hash)
        except Exception:  # a corrupt stored hash is a failed login, never a 500
            return False

    async def drain(self, grace: float) -> None:
        """Let running and queued hashes finish (up to ``grace`` s), then stop the pool."""
        if self.pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _timed(
    call: Callable[[], T], on_wait: Callable[[float], None], since: float
) -> Callable[[], T]:
    def run() -> T:
        on_wait(time.perf_counter() - since)
        return call()

    return run
