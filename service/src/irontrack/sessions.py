"""Sessions in Valkey: every change of a session family is one Lua script (atomic).

Keys (all with a TTL, nothing lives forever; standalone Valkey — the scripts build key names
from the family, so they are not cluster-safe):

* ``it:s:<jti>``   access session ``{sid, sub}``, TTL = access-token life. Read on every
  ``/me`` through the L1 (:mod:`irontrack.l1`), which Valkey's client tracking keeps true.
* ``it:r:<sha256(refresh)>``  refresh record ``{sid, sub, email, jti}``. Records of rotated
  tokens stay (no longer than the family) so that a second use is recognised as reuse.
* ``it:f:<sid>``   the family (one login): hash ``r`` = digest of the *current* refresh token,
  ``jti`` = the current access session, ``exp`` = absolute end (unix s). Only the current pair
  is named, so a family never grows with rotations (rotated members are pruned at once).
* ``it:t:<sid>``   revocation tombstone, as long as any refresh record of the family can live;
  every rotation checks it first.

Rotation (``ROTATE``): tombstone → revoked; family gone → invalid; presented token not the
current one → reuse: the family is revoked (current access session and refresh record deleted,
tombstone set) in the same script; else the new pair is written and the old access session
deleted, in the same script. A retry of the same rotation (lost reply, redis-py's retry on a
killed connection) finds its own new digest and answers ``ok`` again, so the client never
sees a committed rotation as reuse. No grace window: a second use of a rotated token is
always reuse.
"""

from __future__ import annotations

import collections
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import ConnectionError, TimeoutError
from uuid_utils import uuid4

from .l1 import TrackedCache
from .settings import Settings
from .tls import valkey_ssl

SESSION_PREFIX = "it:s:"
REFRESH_PREFIX = "it:r:"
FAMILY_PREFIX = "it:f:"
TOMBSTONE_PREFIX = "it:t:"


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

# KEYS: session, refresh, family. ARGV: session json, refresh json, jti, digest,
# access ttl, refresh ttl, absolute lifetime.
_OPEN = """
local now = tonumber(redis.call('TIME')[1])
local life = tonumber(ARGV[7])
local rttl = math.min(tonumber(ARGV[6]), life)
redis.call('SET', KEYS[1], ARGV[1], 'EX', math.min(tonumber(ARGV[5]), rttl))
redis.call('SET', KEYS[2], ARGV[2], 'EX', rttl)
redis.call('HSET', KEYS[3], 'r', ARGV[4], 'jti', ARGV[3], 'exp', now + life)
redis.call('EXPIRE', KEYS[3], rttl)
return 1
"""

# KEYS: old refresh, family, tombstone, new session, new refresh.
# ARGV: old digest, new digest, new jti, new session json, new refresh json,
# access ttl, refresh ttl.
_ROTATE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {'revoked'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'invalid'} end
local fam = redis.call('HMGET', KEYS[2], 'r', 'jti', 'exp')
if not fam[1] then return {'invalid'} end
if fam[1] == ARGV[2] then return {'ok'} end
if fam[1] ~= ARGV[1] then
  redis.call('DEL', 'it:s:' .. fam[2], 'it:r:' .. fam[1], KEYS[2])
  redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[7]))
  return {'reuse', fam[2]}
end
local now = tonumber(redis.call('TIME')[1])
local rttl = math.min(tonumber(ARGV[7]), tonumber(fam[3]) - now)
if rttl <= 0 then return {'invalid'} end
redis.call('DEL', 'it:s:' .. fam[2])
redis.call('SET', KEYS[4], ARGV[4], 'EX', math.min(tonumber(ARGV[6]), rttl))
redis.call('SET', KEYS[5], ARGV[5], 'EX', rttl)
redis.call('EXPIRE', KEYS[1], rttl, 'LT')
redis.call('HSET', KEYS[2], 'r', ARGV[2], 'jti', ARGV[3])
redis.call('EXPIRE', KEYS[2], rttl)
return {'ok', fam[2]}
"""

# KEYS: family, tombstone. ARGV: tombstone ttl.
_REVOKE = """
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[1]))
local fam = redis.call('HMGET', KEYS[1], 'r', 'jti')
if fam[1] then redis.call('DEL', 'it:r:' .. fam[1]) end
if fam[2] then redis.call('DEL', 'it:s:' .. fam[2]) end
redis.call('DEL', KEYS[1])
return fam[2] or false
"""


class RefreshReuse(Exception):
    """A rotated refresh token was presented again; its family is revoked."""


class FamilyRevoked(Exception):
    """The family was revoked (logout or reuse) or ended; the token is dead."""


def digest(token: str) -> str:
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


def valkey_client(settings: Settings, name: str, retries: int = 1, **extra: Any) -> redis.Redis:
    """A client on a blocking pool: the 65th concurrent caller waits up to
    ``valkey_pool_timeout`` for a connection instead of failing at once.

    A command that meets a dead connection (Valkey restarted, ``CLIENT KILL``, an idle
    timeout) is sent once more on a fresh one. Safe for every script here: a retried rotation
    finds its own result (see ``_ROTATE``), open and revoke are idempotent; a retried failed
    login may count twice. ``retries=0`` for the L1 listener: a connection that redis-py
    re-opened by itself would be subscribed again but no longer tracked.
    """
    pool = redis.BlockingConnectionPool.from_url(
        valkey_url(settings),
        max_connections=settings.valkey_max_connections,
        timeout=settings.valkey_pool_timeout,
        socket_timeout=settings.valkey_timeout,
        socket_connect_timeout=settings.valkey_timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), retries),
        retry_on_error=[ConnectionError, TimeoutError],
        client_name=name,
        **valkey_ssl(settings),
        **extra,
    )
    return redis.Redis(connection_pool=pool)


@dataclass(frozen=True, slots=True)
class NewSession:
    sid: str
    refresh_token: str


# Valkey failures seen by this process, by operation (published by irontrack.metrics).
ERRORS: collections.Counter[str] = collections.Counter()


def note_error(operation: str) -> None:
    ERRORS[operation] += 1


class SessionStore:
    """Opens, checks, rotates and revokes sessions."""

    def __init__(self, settings: Settings) -> None:
        self._access_ttl = settings.access_token_ttl
        self._refresh_ttl = settings.refresh_token_ttl
        self._lifetime = settings.session_max_lifetime
        self.client = valkey_client(settings, "irontrack")
        # Its own connection, RESP2: Valkey delivers tracking invalidations to a RESP2 client
        # as pub/sub messages (RESP3 would get them as pushes on a data connection).
        listener = valkey_client(
            settings, "irontrack-l1", retries=0, protocol=2, health_check_interval=10
        )
        self.l1 = TrackedCache(
            self.client, listener, SESSION_PREFIX, settings.l1_size, settings.l1_max_ttl
        )
        self._wait = settings.valkey_timeout
        self._open = self.client.register_script(_OPEN)
        self._rotate = self.client.register_script(_ROTATE)
        self._revoke = self.client.register_script(_REVOKE)

    async def init(self) -> None:
        """Start the L1 listener; if Valkey is down it keeps retrying in the background and
        every read goes to Valkey meanwhile."""
        await self.l1.start(self._wait)

    async def close(self) -> None:
        await self.l1.close()
        await self.client.aclose()

    @property
    def l1_active(self) -> bool:
        return self.l1.live

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
        rdigest = digest(refresh)
        await self._open(
            keys=[SESSION_PREFIX + jti, REFRESH_PREFIX + rdigest, FAMILY_PREFIX + sid],
            args=[
                _encode(SessionData(sid=sid, sub=sub)),
                _encode(RefreshData(sid=sid, sub=sub, email=email, jti=jti)),
                jti,
                rdigest,
                self._access_ttl,
                self._refresh_ttl,
                self._lifetime,
            ],
        )
        return NewSession(sid=sid, refresh_token=refresh)

    # --- refresh rotation ------------------------------------------------------------------

    async def lookup_refresh(self, refresh: str) -> RefreshData | None:
        raw = await self.client.get(REFRESH_PREFIX + digest(refresh))
        if raw is None:
            return None
        try:
            return _refresh_decoder.decode(raw)
        except msgspec.DecodeError:
            return None

    async def rotate(self, refresh: str, data: RefreshData, new_jti: str) -> str:
        """Consume ``refresh`` (looked up as ``data``): the new refresh token, bound to the
        new access session ``new_jti``, written in the same script.

        RefreshReuse (the family is then revoked) when ``refresh`` was already rotated;
        FamilyRevoked when the family was revoked or ended meanwhile.
        """
        new_refresh = secrets.token_urlsafe(32)
        new_digest = digest(new_refresh)
        old_digest = digest(refresh)
        answer = await self._rotate(
            keys=[
                REFRESH_PREFIX + old_digest,
                FAMILY_PREFIX + data.sid,
                TOMBSTONE_PREFIX + data.sid,
                SESSION_PREFIX + new_jti,
                REFRESH_PREFIX + new_digest,
            ],
            args=[
                old_digest,
                new_digest,
                new_jti,
                _encode(SessionData(sid=data.sid, sub=data.sub)),
                _encode(RefreshData(sid=data.sid, sub=data.sub, email=data.email, jti=new_jti)),
                self._access_ttl,
                self._refresh_ttl,
            ],
        )
        verdict = _text(answer[0])
        ended = [_text(j) for j in answer[1:2] if j]
        if ended:
            self.l1.drop(*ended)
        if verdict == "ok":
            return new_refresh
        if verdict == "reuse":
            raise RefreshReuse
        raise FamilyRevoked

    # --- revocation ------------------------------------------------------------------------

    async def revoke_family(self, sid: str) -> None:
        """End every access session and refresh token of one login, at once, everywhere; a
        rotation racing this one either ran before (its pair is deleted here) or finds the
        tombstone."""
        jti = await self._revoke(
            keys=[FAMILY_PREFIX + sid, TOMBSTONE_PREFIX + sid], args=[self._refresh_ttl]
        )
        if jti:
            self.l1.drop(_text(jti))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
