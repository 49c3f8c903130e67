"""The in-process (L1) copy of access sessions, kept true by Valkey's client tracking.

One connection per process listens for invalidations (``CLIENT TRACKING on REDIRECT <own id>
BCAST PREFIX it:s:``, delivered as RESP2 messages on ``__redis__:invalidate``): whenever a key
under the prefix is written, deleted or expires — by any client, Lua scripts included — every
process drops its copy.

The in-flight race: a GET answered by Valkey *before* a DEL may be resumed by the event loop
*after* the DEL's invalidation was handled; storing its value then would resurrect the session.
Every invalidation bumps ``epoch``; a value read from Valkey is stored only when the epoch did
not move while the GET was in flight. So once an invalidation has been handled, no value read
before it can be served again. Valkey writes a broadcast invalidation before the reply of the
command that caused it (both leave in the same event-loop turn, the invalidation first), so a
logout's ``204`` reaches the client after every listener's socket holds the invalidation; the
remaining window is this process's own scheduling (measured by test_svc_races).

Until the listener runs (Valkey down at start, connection lost), the L1 is bypassed and
cleared: every read goes to Valkey, nothing stale is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as redis

log = logging.getLogger("irontrack.l1")

INVALIDATE_CHANNEL = "__redis__:invalidate"
_MISSING = b""  # cached "no such session" (a real value is never empty JSON)


class TrackedCache:
    """A bounded ``key → bytes`` copy of Valkey keys under ``prefix``."""

    def __init__(
        self,
        client: redis.Redis,
        listener: redis.Redis,
        prefix: str,
        size: int,
        max_ttl: float,
    ) -> None:
        self._client = client
        self._listener = listener  # its own client: RESP2 (invalidations as pub/sub messages)
        self._prefix = prefix
        self._size = size
        self._max_ttl = max_ttl
        self._entries: dict[str, tuple[bytes, float]] = {}
        self.epoch = 0
        self.live = False
        self.invalidations = 0
        # Lookups by result (plain integers, published by irontrack.metrics).
        self.hits = 0
        self.misses = 0
        self.bypasses = 0
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._reconnected = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, wait: float) -> bool:
        """Start the listener; True when it is subscribed within ``wait`` seconds (else it
        keeps retrying in the background and the L1 stays bypassed)."""
        self._task = asyncio.create_task(self._run(), name="irontrack-l1")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._started.wait(), wait)
        return self.live

    async def close(self) -> None:
        self.live = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._entries.clear()
        await self._listener.aclose()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                was_live = self.live
                self._go_blind()
                if was_live:
                    log.error("valkey: invalidation listener lost (%s); L1 bypassed", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:  # pragma: no cover - _listen only returns by raising
                return

    def _go_blind(self) -> None:
        self.live = False
        self._entries.clear()
        self.epoch += 1

    async def _listen(self) -> None:
        pubsub = self._listener.pubsub()
        try:
            await pubsub.execute_command("CLIENT", "ID")
            client_id = await pubsub.parse_response()
            await pubsub.execute_command(
                "CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", "PREFIX", self._prefix
            )
            await pubsub.parse_response()
            await pubsub.subscribe(INVALIDATE_CHANNEL)
            # CLIENT TRACKING belongs to this connection. Should redis-py ever re-open it by
            # itself (CLIENT KILL, a dropped socket), it would subscribe again, untracked, and
            # no invalidation would come: treat any reconnect as a lost listener.
            self._reconnected = False
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(self._on_reconnect)
            self._entries.clear()
            self.epoch += 1
            self.live = True
            self._started.set()
            log.info("valkey: invalidation listener subscribed (L1 on)")
            while True:
                if self._reconnected:
                    raise ConnectionError("listener connection re-opened without tracking")
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is None:
                    await pubsub.ping()  # a dead connection shows up here, not as silence
                    continue
                if message.get("type") != "message":
                    continue
                self._invalidate(message.get("data"))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _on_reconnect(self, _connection: object) -> None:
        self._go_blind()
        self._reconnected = True

    def _invalidate(self, keys: list[bytes] | None) -> None:
        self.epoch += 1
        self.invalidations += 1
        if keys is None:  # FLUSHDB / FLUSHALL
            self._entries.clear()
            return
        cut = len(self._prefix)
        for key in keys:
            name = key.decode() if isinstance(key, bytes) else str(key)
            self._entries.pop(name[cut:], None)

    # --- reads and local drops ---------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        if self.live:
            hit = self._entries.get(key)
            if hit is not None:
                value, until = hit
                if until > time.monotonic():
                    self.hits += 1
                    return value or None
                del self._entries[key]
            self.misses += 1
        else:
            self.bypasses += 1
        epoch = self.epoch
        raw = await self._client.get(self._prefix + key)
        if self.live and epoch == self.epoch:  # no invalidation while the GET was in flight
            if len(self._entries) >= self._size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (raw or _MISSING, time.monotonic() + self._max_ttl)
        return raw

    def drop(self, *keys: str) -> None:
        """Forget ``keys`` here at once (this process just deleted them in Valkey)."""
        self.epoch += 1
        for key in keys:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
