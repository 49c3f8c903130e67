"""One error and header policy for the pure-ASGI fast path and the FastAPI routes.

Every error is ``{"detail": ...}`` JSON; 401 carries ``WWW-Authenticate: Bearer``; 429 and 503
carry ``Retry-After``; anything holding a token or a profile carries ``Cache-Control:
no-store``. ``me_answer`` is the one implementation of ``GET /me`` (the edge serves it, the
route documents and serves the same bytes).
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError
from starlette.types import Scope

from .auth import access_token_from
from .responses import encode
from .sessions import note_error

Headers = tuple[tuple[bytes, bytes], ...]
Answer = tuple[int, bytes, Headers]

JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")
WWW_AUTH = (b"www-authenticate", b"Bearer")
NO_STORE_HEADERS = {"Cache-Control": "no-store"}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}

PONG = encode({"ping": "pong"})
UNAUTHORIZED = encode({"detail": "not authenticated"})
STORE_UNAVAILABLE = "session store unavailable"
_UNAVAILABLE = encode({"detail": STORE_UNAVAILABLE})
STORE_ERRORS = (RedisError, OSError, TimeoutError)
STORE_RETRY_AFTER = 1


def detail(message: Any) -> bytes:
    return encode({"detail": message})


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


async def me_answer(svc: Any, scope: Scope) -> Answer:
    """Status, body and extra headers of ``GET /me`` for this request."""
    token = access_token_from(scope)
    if token is None:
        return 401, UNAUTHORIZED, (WWW_AUTH, NO_STORE)
    claims = svc.tokens.verify(token)
    if claims is None:
        return 401, UNAUTHORIZED, (WWW_AUTH, NO_STORE)
    try:
        session = await svc.sessions.get(claims.jti)
    except STORE_ERRORS:
        note_error("session_get")
        return 503, _UNAVAILABLE, ((b"retry-after", str(STORE_RETRY_AFTER).encode()),)
    if session is None or session.sub != claims.sub:
        return 401, UNAUTHORIZED, (WWW_AUTH, NO_STORE)
    body = encode({"id": claims.sub, "email": claims.email, "session_expires_at": claims.exp})
    return 200, body, (NO_STORE,)
