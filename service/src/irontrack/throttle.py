"""Login throttling per account and per client address, kept in Valkey.

Counters live in Valkey (``it:l:a:<sha256(email)>``, ``it:l:i:<address>``), so every worker and
every app host shares them and they survive a restart of the service. After
``login_free_failures`` failures a key is locked for ``base · 2^(n - free - 1)`` seconds (capped
at ``login_backoff_max``); a login on a locked key is refused with 429 and ``Retry-After``
*before* any Argon2id work. A successful login clears the account's counter (never the
address's: one's own account must not reset a scan of others). A counter is forgotten
``login_failure_window`` seconds after its last failure. A key's hash holds ``n`` (failures),
``until`` (the lock's end, Valkey's clock, ms) and ``lock`` (its length, ms).
"""

from __future__ import annotations

import hashlib
import ipaddress

import redis.asyncio as redis
from starlette.types import Scope

from .settings import Settings

ACCOUNT_PREFIX = "it:l:a:"
ADDRESS_PREFIX = "it:l:i:"

# KEYS: the keys to check. Returns the longest remaining lock, ms (0: allowed).
_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for _, key in ipairs(KEYS) do
  local untl = tonumber(redis.call('HGET', key, 'until') or '0')
  if untl - now > wait then wait = untl - now end
end
return wait
"""

# KEYS: the keys that failed. ARGV: free failures, base ms, max ms, window s.
_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local free, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
for _, key in ipairs(KEYS) do
  local n = redis.call('HINCRBY', key, 'n', 1)
  if n > free then
    local lock = math.min(cap, base * 2 ^ math.min(n - free - 1, 40))
    redis.call('HSET', key, 'until', now + lock, 'lock', lock)
    if lock > wait then wait = lock end
  end
  redis.call('EXPIRE', key, tonumber(ARGV[4]))
end
return wait
"""

_LOOPBACK = ("127.0.0.1", "::1")


def client_address(scope: Scope, header: str | None) -> str:
    """The client's address: the peer, or — when the peer is the local proxy (unix socket or
    loopback) — the proxy's ``header``, if it holds an IP address."""
    client = scope.get("client")
    peer = client[0] if client else ""
    if header and (not peer or peer in _LOOPBACK):
        wanted = header.encode("latin-1")
        for name, value in scope["headers"]:
            if name == wanted:
                candidate = value.decode("latin-1").strip()
                try:
                    return str(ipaddress.ip_address(candidate))
                except ValueError:
                    break
    return peer or "unknown"


class LoginThrottle:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.enabled = settings.login_throttle
        self._free = settings.login_free_failures
        self._base_ms = int(settings.login_backoff_base * 1000)
        self._max_ms = int(settings.login_backoff_max * 1000)
        self._window = settings.login_failure_window
        self._client = client
        self._check = client.register_script(_CHECK)
        self._fail = client.register_script(_FAIL)

    @staticmethod
    def keys(email: str, address: str) -> list[str]:
        return [
            ACCOUNT_PREFIX + hashlib.sha256(email.encode()).hexdigest(),
            ADDRESS_PREFIX + address,
        ]

    async def wait(self, keys: list[str]) -> float:
        """Seconds until a login on these keys is allowed again (0: now)."""
        if not self.enabled:
            return 0.0
        return int(await self._check(keys=keys)) / 1000

    async def failed(self, keys: list[str]) -> None:
        if self.enabled:
            await self._fail(
                keys=keys, args=[self._free, self._base_ms, self._max_ms, self._window]
            )

    async def succeeded(self, account_key: str) -> None:
        if self.enabled:
            await self._client.delete(account_key)
