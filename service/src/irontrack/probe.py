"""The dependency probe behind ``/health``: one probe in flight per worker, its result reused for
at most ``health_max_age`` seconds.

A probe is PostgreSQL ``SELECT 1`` (simple query protocol on a raw pooled asyncpg connection,
through PgBouncer: one round trip, no transaction, no prepared statement) and Valkey ``PING``,
concurrently, each cut at ``health_timeout`` — a dependency that hangs cannot hold the answer.

* **Bounded probe rate.** A result younger than ``max_age`` is served as it is; the first
  request after that starts the next probe, and every request arriving while it runs awaits
  that same probe (single-flight). So each worker starts at most one probe per ``max_age``
  (and never two at once), whatever the request rate.
* **Honest age.** A result is dated by the moment its probe *started* (an upper bound of how old
  the dependencies' answers are); the body reports ``age_ms`` from that moment. A failed result
  is reused like a good one — never longer — so a dependency that fails turns ``/health`` to
  503 within ``max_age + health_timeout``, and back to 200 as quickly once it recovers.
* ``max_age = 0``: no reuse and no sharing; every request runs its own probe.

The bodies are encoded once per result; a request only formats its age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .release import current_release
from .responses import encode
from .sessions import note_error

log = logging.getLogger("irontrack.health")

COMPONENTS = ("postgresql", "valkey")
_RELEASE = current_release()
_SELECT_1 = "SELECT 1"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome: when it started (``time.monotonic()``), the status, and the body
    up to (without) the age, encoded once."""

    started: float
    status: int
    head: bytes

    def body(self, now: float) -> bytes:
        age_ms = max(0, int((now - self.started) * 1000))
        return b"%s%d}" % (self.head, age_ms)


def build_result(started: float, states: dict[str, str]) -> ProbeResult:
    """The answer for these component states (``ok``, ``timeout`` or ``error`` each)."""
    failed = [name for name in COMPONENTS if states[name] != "ok"]
    content: dict[str, Any] = {"status": "unavailable" if failed else "ok"}
    if failed:
        content["failed"] = failed
    content["components"] = {name: states[name] for name in COMPONENTS}
    content["release"] = _RELEASE
    content["age_ms"] = 0
    encoded = encode(content)  # ends with "age_ms":0} (the key is last): cut "0}" off
    return ProbeResult(started, 503 if failed else 200, encoded[:-2])


def _consume(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()


class HealthProbe:
    """Probes PostgreSQL and Valkey for ``/health``, single-flight, results reused up to
    ``max_age`` seconds. ``probes`` counts the probes started by this process."""

    __slots__ = ("_inflight", "_result", "max_age", "probes", "svc", "timeout")

    def __init__(self, svc: Any, timeout: float, max_age: float) -> None:
        self.svc = svc  # irontrack.services.Services: its engine and sessions exist once started
        self.timeout = timeout
        self.max_age = max_age
        self.probes = 0
        self._result: ProbeResult | None = None
        self._inflight: asyncio.Task[ProbeResult] | None = None

    async def answer(self) -> tuple[int, bytes]:
        """Status and body of ``GET /health`` now."""
        result = self._result
        now = time.monotonic()
        if result is None or now - result.started >= self.max_age:
            if self.max_age <= 0:
                result = await self.probe()
            else:
                task = self._inflight
                if task is None:
                    task = self._inflight = asyncio.ensure_future(self._shared_probe())
                # shield: a request that goes away does not cancel the probe others await.
                result = await asyncio.shield(task)
            now = time.monotonic()
        return result.status, result.body(now)

    async def _shared_probe(self) -> ProbeResult:
        try:
            result = await self.probe()
            self._result = result
            return result
        finally:
            self._inflight = None

    async def probe(self) -> ProbeResult:
        """One probe of every component (concurrently), each cut at ``timeout``."""
        self.probes += 1
        started = time.monotonic()
        pg, vk = await asyncio.gather(
            self._check("postgresql", self._postgresql),
            self._check("valkey", self.svc.sessions.ping),
        )
        return build_result(started, {"postgresql": pg, "valkey": vk})

    async def _postgresql(self) -> None:
        # A raw pooled connection and the simple query protocol: one round trip through
        # PgBouncer. No ORM session, no transaction, no prepared statement; SQLAlchemy's reset
        # on return has no transaction to roll back.
        async with self.svc.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            try:
                await raw.driver_connection.execute(_SELECT_1)
            except BaseException:
                # SQLAlchemy never saw this failure (nor a cancellation at the timeout, which
                # leaves the connection mid-query): drop the connection (terminated at once,
                # no I/O) rather than hand it to the next caller. The pool opens a new one.
                raw.invalidate()
                raise

    async def _check(self, name: str, probe: Callable[[], Awaitable[object]]) -> str:
        # The probe runs as its own task: on timeout it is cancelled and left to clean up in
        # the background, so a dependency that hangs on close cannot hold the answer.
        task = asyncio.ensure_future(probe())
        done, _ = await asyncio.wait((task,), timeout=self.timeout)
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            log.warning("health: %s timed out after %.2fs", name, self.timeout)
            if name == "valkey":
                note_error("health")
            return "timeout"
        exc = task.exception()
        if exc is not None:  # any failure of a dependency is a state, never a 500
            log.warning("health: %s failed: %s", name, exc.__class__.__name__)
            if name == "valkey":
                note_error("health")
            return "error"
        return "ok"
