"""Sessions in Valkey, read through cashews' client-side (L1) cache.

Keys (all with a TTL, nothing lives forever):

* ``it:s:<jti>``   access session, TTL = access-token life. Read on every ``/me`` through cashews
  with ``client_side=True``: an in-process L1 copy, dropped when Valkey's client tracking
  (``CLIENT TRACKING … BCAST PREFIX it:s:``) broadcasts that the key changed or vanished, so a
  logout on one worker is seen by every worker at once.
* ``it:r:<sha256(refresh)>``  refresh record ``{sid, sub, email, jti}``, TTL = refresh life.
* ``it:u:<sha256(refresh)>``  "this refresh token was rotated" marker (``SET NX``): a second use
  of a rotated token is reuse, and revokes the whole session family.
* ``it:f:<sid>``   the family: a set of every key above that belongs to one login.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec
import redis.asyncio as redis
from cashews import Cache
from cashews.backends.memory import Memory
from redis.connection import parse_url
from uuid_utils import uuid4

from .settings import Settings

log = logging.getLogger("irontrack.sessions")

SESSION_PREFIX = "it:s:"
_REFRESH = "it:r:"
_USED = "it:u:"
_FAMILY = "it:f:"


class BoundedMemory(Memory):
    """cashews' in-process store with a ceiling on every entry's life.

    cashews keeps values it read from Valkey without a TTL and relies on invalidation messages;
    a message racing an in-flight GET could leave a stale copy. The ceiling bounds that window.
    """

    def __init__(self, size: int, max_ttl: float) -> None:
        super().__init__(size=size)
        self._max_ttl = max_ttl

    async def set(
        self, key: Any, value: Any, expire: float | None = None, exist: bool | None = None
    ) -> bool:
        ttl = self._max_ttl if expire is None else min(expire, self._max_ttl)
        return await super().set(key, value, ttl, exist)


class SessionData(msgspec.Struct, frozen=True):
    sid: str
    sub: str


class RefreshData(msgspec.Struct, frozen=True):
    sid: str
    sub: str
    email: str
    jti: str


_session_decoder = msgspec.json.Decoder(SessionData)
_refresh_decoder = msgspec.json.Decoder(RefreshData)
_encode = msgspec.json.Encoder().encode


class RefreshReuse(Exception):
    """A rotated refresh token was presented again; its family is revoked."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def valkey_url(settings: Settings) -> str:
    """The Valkey URL with the separate password setting applied."""
    if settings.valkey_password is None:
        return settings.valkey_url
    parts = parse_url(settings.valkey_url)
    username = parts.get("username") or ""
    password = settings.valkey_password.get_secret_value()
    scheme, rest = settings.valkey_url.split("://", 1)
    hostpart = rest.rsplit("@", 1)[-1]
    user = quote(username, safe="")
    return f"{scheme}://{user}:{quote(password, safe='')}@{hostpart}"


@dataclass(frozen=True, slots=True)
class NewSession:
    sid: str
    refresh_token: str


class SessionStore:
    """Opens, checks, rotates and revokes sessions."""

    def __init__(self, settings: Settings) -> None:
        url = valkey_url(settings)
        self._retry: asyncio.Task[None] | None = None
        self._access_ttl = settings.access_token_ttl
        self._refresh_ttl = settings.refresh_token_ttl
        self._cache = Cache()
        self.l1 = self._cache.setup(
            url,
            client_side=True,
            client_side_prefix=SESSION_PREFIX,
            local_cache=BoundedMemory(settings.l1_size, settings.l1_max_ttl),
            pickle_type="null",
            suppress=False,
            socket_timeout=settings.health_timeout,
            socket_connect_timeout=settings.health_timeout,
            max_connections=64,
            wait_for_connection_timeout=settings.health_timeout,
            client_name="irontrack-l1",
            # cashews listens for invalidations as RESP2 pub/sub messages on __redis__:invalidate
            # (CLIENT TRACKING … REDIRECT <own id> BCAST). redis-py >= 8 speaks RESP3 by default,
            # and then Valkey delivers them as RESP3 "invalidate" pushes that cashews never sees:
            # L1 copies would silently outlive a logout. Pin RESP2 (proved by test_svc_workers).
            protocol=2,
        )
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=settings.health_timeout,
            socket_connect_timeout=settings.health_timeout,
            max_connections=64,
            client_name="irontrack",
        )

    async def init(self, retry_interval: float = 5.0) -> None:
        """Start the L1 invalidation listener; if Valkey is down, keep retrying in the
        background (until then every read goes to Valkey, so nothing stale is served)."""
        try:
            await self._cache.init()
        except Exception as exc:
            log.error("valkey: client-side cache not started (%s); retrying", exc)
            self._retry = asyncio.create_task(self._retry_init(retry_interval))

    async def _retry_init(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._cache.init()
            except Exception as exc:
                log.warning("valkey: client-side cache still not started: %s", exc)
                continue
            log.warning("valkey: client-side cache started")
            return

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retry
        # cashews awaits its listener, which may sit in a 10 s reconnect sleep: cancel it first.
        task = getattr(self.l1, "_listen_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self.l1._listen_task = None  # type: ignore[attr-defined]
        await self._cache.close()
        await self.client.aclose()

    @property
    def l1_active(self) -> bool:
        """True while the invalidation listener runs (L1 in use)."""
        return bool(getattr(self.l1, "_listen_started", None) and self.l1._listen_started.is_set())

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    # --- access sessions -------------------------------------------------------------------

    async def get(self, jti: str) -> SessionData | None:
        raw = await self.l1.get(jti)
        if raw is None:
            return None
        try:
            return _session_decoder.decode(raw)
        except (msgspec.DecodeError, TypeError):
            return None

    async def open(self, sub: str, email: str, jti: str) -> NewSession:
        """A new family with one access session and one refresh token."""
        sid = str(uuid4())
        refresh = secrets.token_urlsafe(32)
        await self._write(sid, sub, email, jti, refresh)
        return NewSession(sid=sid, refresh_token=refresh)

    async def _write(self, sid: str, sub: str, email: str, jti: str, refresh: str) -> None:
        rkey = _REFRESH + _digest(refresh)
        fkey = _FAMILY + sid
        await self.l1.set(jti, _encode(SessionData(sid=sid, sub=sub)), expire=self._access_ttl)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(
            rkey, _encode(RefreshData(sid=sid, sub=sub, email=email, jti=jti)), ex=self._refresh_ttl
        )
        pipe.sadd(fkey, SESSION_PREFIX + jti, rkey, _USED + rkey[len(_REFRESH) :])
        pipe.expire(fkey, self._refresh_ttl)
        await pipe.execute()

    # --- refresh rotation ------------------------------------------------------------------

    async def rotate(self, refresh: str, data: RefreshData, new_jti: str) -> str | None:
        """Consume ``refresh`` (already looked up as ``data``); a new refresh token bound to
        ``new_jti``, or None when the family was revoked meanwhile.

        RefreshReuse (after revoking the whole family) when the token was already rotated.
        """
        first = await self.client.set(_USED + _digest(refresh), b"1", nx=True, ex=self._refresh_ttl)
        if not first:
            await self.revoke_family(data.sid)
            raise RefreshReuse
        if not await self.client.exists(_FAMILY + data.sid):
            return None  # family revoked meanwhile (logout)
        new_refresh = secrets.token_urlsafe(32)
        await self.l1.delete(data.jti)  # the access token of the rotated pair ends now
        await self._write(data.sid, data.sub, data.email, new_jti, new_refresh)
        return new_refresh

    async def lookup_refresh(self, refresh: str) -> RefreshData | None:
        raw = await self.client.get(_REFRESH + _digest(refresh))
        if raw is None:
            return None
        try:
            return _refresh_decoder.decode(raw)
        except msgspec.DecodeError:
            return None

    # --- revocation ------------------------------------------------------------------------

    async def revoke_family(self, sid: str) -> None:
        """End every access session and refresh token of one login, at once, everywhere."""
        fkey = _FAMILY + sid
        members: set[Any] = await self.client.smembers(fkey)
        names = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        jtis = [n[len(SESSION_PREFIX) :] for n in names if n.startswith(SESSION_PREFIX)]
        others = [n for n in names if not n.startswith(SESSION_PREFIX)]
        if jtis:
            # Through cashews: marks this process's L1 at once; Valkey's tracking broadcast
            # drops the L1 copy in every other process.
            await self.l1.delete_many(*jtis)
        await self.client.delete(fkey, *others)
