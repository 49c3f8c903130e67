"""The hot read paths, answered in pure ASGI before FastAPI's router.

``GET /ping`` and ``GET /api/v1/access/me`` are the report's throughput probes. They take no
body and need no validation, so they are dispatched by exact path and answered with
pre-encoded (``/ping``) or msgspec-encoded (``/me``) bytes. The FastAPI routes of the same
paths stay (they document the API in OpenAPI and call the very same functions below).
"""

from __future__ import annotations

from cashews.exceptions import CacheBackendInteractionError
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import access_token_from
from .responses import encode
from .services import Services

ME_PATH = "/api/v1/access/me"
PING_PATH = "/ping"
PONG = encode({"ping": "pong"})
_JSON = (b"content-type", b"application/json")
_UNAUTHORIZED = encode({"detail": "not authenticated"})
_UNAVAILABLE = encode({"detail": "session store unavailable"})
_WWW_AUTH = (b"www-authenticate", b"Bearer")
_NO_STORE = (b"cache-control", b"no-store")

Answer = tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]


async def me_answer(svc: Services, scope: Scope) -> Answer:
    """Status, body and extra headers of ``GET /me`` for this request."""
    token = access_token_from(scope)
    if token is None:
        return 401, _UNAUTHORIZED, (_WWW_AUTH,)
    claims = svc.tokens.verify(token)
    if claims is None:
        return 401, _UNAUTHORIZED, (_WWW_AUTH,)
    try:
        session = await svc.sessions.get(claims.jti)
    except (CacheBackendInteractionError, RedisError, OSError, TimeoutError):
        return 503, _UNAVAILABLE, ()
    if session is None or session.sub != claims.sub:
        return 401, _UNAUTHORIZED, (_WWW_AUTH,)
    body = encode({"id": claims.sub, "email": claims.email, "session_expires_at": claims.exp})
    return 200, body, (_NO_STORE,)


async def send_answer(send: Send, status: int, body: bytes, extra=()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


class EdgeMiddleware:
    """Answers ``GET /ping`` and ``GET /me`` directly; everything else goes to FastAPI."""

    __slots__ = ("app", "svc")

    def __init__(self, app: ASGIApp, svc: Services) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            if path == PING_PATH:
                await send_answer(send, 200, PONG)
                return
            if path == ME_PATH:
                status, body, extra = await me_answer(self.svc, scope)
                await send_answer(send, status, body, extra)
                return
        await self.app(scope, receive, send)
