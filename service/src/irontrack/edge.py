"""The hot read paths, answered in pure ASGI before FastAPI's router.

``GET``/``HEAD`` of ``/ping``, ``/health`` and ``/api/v1/access/me`` are the report's throughput
probes. They take no body and need no validation, so they are dispatched by exact path and
answered with pre-encoded (``/ping``, ``/health``: :mod:`irontrack.probe`) or msgspec-encoded
(``/me``) bytes, by the same policy as the routes (:mod:`irontrack.answers`). The FastAPI
routes of the same paths stay (they document the API in OpenAPI and call the very same
function); other methods fall through to FastAPI (405 with ``Allow``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .answers import JSON, PONG, me_answer

ME_PATH = "/api/v1/access/me"
PING_PATH = "/ping"
HEALTH_PATH = "/health"
_READ = ("GET", "HEAD")


async def send_answer(send: Send, status: int, body: bytes, extra=(), head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


class EdgeMiddleware:
    """Answers ``GET``/``HEAD`` of ``/ping``, ``/health`` and ``/me`` directly; the rest goes to
    FastAPI."""

    __slots__ = ("app", "svc")

    def __init__(self, app: ASGIApp, svc: object) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _READ:
            path = scope["path"]
            if path == PING_PATH:
                await send_answer(send, 200, PONG, (), scope["method"] == "HEAD")
                return
            if path == ME_PATH:
                status, body, extra = await me_answer(self.svc, scope)
                await send_answer(send, status, body, extra, scope["method"] == "HEAD")
                return
            if path == HEALTH_PATH:
                status, body = await self.svc.health.answer()
                await send_answer(send, status, body, (), scope["method"] == "HEAD")
                return
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # HEAD wherever GET works: FastAPI's routes are GET only; answer as GET, no body.
            get_scope = {**scope, "method": "GET"}
            try:
                await self.app(get_scope, receive, _bodyless(send))
            finally:
                if "route" in get_scope:  # the matched route, for the metrics
                    scope["route"] = get_scope["route"]
            return
        await self.app(scope, receive, send)


def _bodyless(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_head
