"""The L1's in-flight race, in process against the real Valkey: a GET answered before a
revocation but resumed after its invalidation was handled must not be cached."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis
from harness import Stack
from irontrack.l1 import TrackedCache
from irontrack.sessions import SESSION_PREFIX, valkey_client
from irontrack.settings import Settings


def _settings(stack: Stack) -> Settings:
    env = stack.app_env()
    return Settings(**{k.removeprefix("IRONTRACK_").lower(): v for k, v in env.items()})


class _RacingClient:
    """GETs through the real client; before handing a value back, the key is deleted by
    another client and the invalidation is handled (the worst interleaving)."""

    def __init__(self, real: aredis.Redis, writer: aredis.Redis) -> None:
        self.real = real
        self.writer = writer
        self.cache: TrackedCache | None = None
        self.race = True
        self.gets = 0

    async def get(self, name: str) -> bytes | None:
        self.gets += 1
        value = await self.real.get(name)
        if self.race and self.cache is not None:
            before = self.cache.invalidations
            await self.writer.delete(name)
            for _ in range(2000):
                if self.cache.invalidations != before:
                    break
                await asyncio.sleep(0.001)
            assert self.cache.invalidations != before, "invalidation never arrived"
        return value


@pytest.mark.asyncio
async def test_in_flight_get_racing_an_invalidation_is_not_cached(stack: Stack) -> None:
    settings = _settings(stack)
    writer = aredis.Redis.from_url(stack.valkey.admin_url)
    real = valkey_client(settings, "test-l1")
    racing = _RacingClient(real, writer)
    listener = valkey_client(settings, "test-l1-listen", protocol=2)
    cache = TrackedCache(racing, listener, SESSION_PREFIX, 100, 30.0)  # type: ignore[arg-type]
    racing.cache = cache
    try:
        assert await cache.start(5.0)
        for round_ in range(50):
            key = f"race-{round_}"
            await writer.set(SESSION_PREFIX + key, b'{"sid":"s","sub":"u"}', ex=60)
            racing.race = True
            # This request was answered before the delete: it may see the session ...
            assert await cache.get(key) is not None
            # ... but the copy must not outlive the invalidation it raced.
            racing.race = False
            assert await cache.get(key) is None, f"round {round_}: stale L1 copy served"
        # And without a race, the L1 does serve from memory (no Valkey GET).
        await writer.set(SESSION_PREFIX + "steady", b'{"sid":"s","sub":"u"}', ex=60)
        await asyncio.sleep(0.05)
        assert await cache.get("steady") is not None
        gets = racing.gets
        for _ in range(10):
            assert await cache.get("steady") is not None
        assert racing.gets == gets
    finally:
        await cache.close()
        await writer.aclose()
        await real.aclose()
