"""Exception handlers: every client mistake is a clear 4xx, a dependency outage a 503."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .answers import STORE_RETRY_AFTER, retry_after
from .middleware import BodyTooLarge
from .passwords import Overloaded
from .responses import MsgspecResponse, error
from .sessions import note_error

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
    if headers and exc.status_code == 405:
        allow = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        if "GET" in allow and "HEAD" not in allow:  # the edge answers HEAD wherever GET works
            headers["Allow"] = ", ".join([*allow, "HEAD"])
    return MsgspecResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _on_too_large(_: Request, exc: Exception) -> Response:
    return error(413, "request body too large", {"Connection": "close"})


def _sqlstate(exc: BaseException) -> str:
    for candidate in (getattr(exc, "orig", None), exc, exc.__cause__):
        for inner in (candidate, getattr(candidate, "__cause__", None)):
            state = getattr(inner, "sqlstate", None)
            if isinstance(state, str):
                return state
    return "-"


async def _on_database(_: Request, exc: Exception) -> Response:
    # Class and SQLSTATE only: a message may quote the statement's values (emails, hashes).
    orig = getattr(exc, "orig", None)
    inner = orig.__class__.__name__ if orig is not None else "-"
    log.error(
        "database unavailable: %s (%s) sqlstate=%s", exc.__class__.__name__, inner, _sqlstate(exc)
    )
    return error(503, "database unavailable", retry_after(STORE_RETRY_AFTER))


async def _on_valkey(_: Request, exc: Exception) -> Response:
    note_error("request")
    log.error("valkey unavailable: %s", exc.__class__.__name__)
    return error(503, "session store unavailable", retry_after(STORE_RETRY_AFTER))


async def _on_overloaded(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Overloaded)
    return error(503, "server busy; try again shortly", retry_after(exc.retry_after))


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error(500, "internal error")


async def _on_timeout(_: Request, exc: Exception) -> Response:
    log.error("dependency timed out: %s", exc.__class__.__name__)
    return error(503, "dependency timed out", retry_after(STORE_RETRY_AFTER))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(BodyTooLarge, _on_too_large)
    app.add_exception_handler(Overloaded, _on_overloaded)
    app.add_exception_handler(DBAPIError, _on_database)
    app.add_exception_handler(SQLAlchemyError, _on_database)
    app.add_exception_handler(RedisError, _on_valkey)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_exception_handler(asyncio.TimeoutError, _on_timeout)
    app.add_exception_handler(ConnectionError, _on_database)
