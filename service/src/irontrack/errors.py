"""Exception handlers: every client mistake is a clear 4xx, a dependency outage a 503."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cashews.exceptions import CacheBackendInteractionError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .middleware import BodyTooLarge
from .responses import MsgspecResponse, error

log = logging.getLogger("irontrack.errors")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for item in exc.errors():
        out.append(
            {
                "loc": [str(p) for p in item.get("loc", ())],
                "msg": str(item.get("msg", "")),
                "type": str(item.get("type", "")),
            }
        )
    return out


async def _on_validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return MsgspecResponse({"detail": _validation_errors(exc)}, status_code=422)


async def _on_http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-reading errors in a 400
        return error(413, "request body too large", {"Connection": "close"})
    headers = dict(exc.headers) if exc.headers else None
    return MsgspecResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _on_too_large(_: Request, exc: Exception) -> Response:
    return error(413, "request body too large", {"Connection": "close"})


async def _on_database(_: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s: %s", exc.__class__.__name__, exc)
    return error(503, "database unavailable")


async def _on_valkey(_: Request, exc: Exception) -> Response:
    log.error("valkey unavailable: %s: %s", exc.__class__.__name__, exc)
    return error(503, "session store unavailable")


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error(500, "internal error")


async def _on_timeout(_: Request, exc: Exception) -> Response:
    log.error("dependency timed out: %r", exc)
    return error(503, "dependency timed out")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(BodyTooLarge, _on_too_large)
    app.add_exception_handler(DBAPIError, _on_database)
    app.add_exception_handler(SQLAlchemyError, _on_database)
    app.add_exception_handler(RedisError, _on_valkey)
    app.add_exception_handler(CacheBackendInteractionError, _on_valkey)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_exception_handler(asyncio.TimeoutError, _on_timeout)
    app.add_exception_handler(ConnectionError, _on_database)
