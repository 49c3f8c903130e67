"""``/ping`` and ``/health``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import text
from starlette.responses import Response

from ..answers import PONG
from ..release import current_release
from ..responses import MsgspecResponse, PreEncodedResponse, encode
from ..schemas import HealthDown, HealthOut, Ping
from ..services import Services, get_services
from ..sessions import note_error
from ..settings import Settings

log = logging.getLogger("irontrack.health")
_RELEASE = current_release()
_HEALTHY = encode(
    {"status": "ok", "components": {"postgresql": "ok", "valkey": "ok"}, "release": _RELEASE}
)
_SELECT_1 = text("SELECT 1")


def _consume(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["health"])
    timeout = settings.health_timeout

    @router.get("/ping", response_model=None, responses={200: {"model": Ping}})
    async def ping() -> Response:
        return PreEncodedResponse(PONG)

    async def check(name: str, probe: Coroutine[Any, Any, object]) -> str:
        # The probe runs as its own task: on timeout it is cancelled and left to clean up in
        # the background, so a dependency that hangs on close cannot hold the answer.
        task = asyncio.ensure_future(probe)
        done, _ = await asyncio.wait((task,), timeout=timeout)
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            log.warning("health: %s timed out after %.2fs", name, timeout)
            if name == "valkey":
                note_error("health")
            return "timeout"
        exc = task.exception()
        if exc is not None:  # any failure of a dependency is a state, never a 500
            log.warning("health: %s failed: %s", name, exc.__class__.__name__)
            if name == "valkey":
                note_error("health")
            return "error"
        return "ok"

    async def postgresql(svc: Services) -> None:
        async with svc.engine.connect() as conn:
            await conn.execute(_SELECT_1)

    @router.get(
        "/health",
        response_model=None,
        responses={
            200: {"model": HealthOut},
            503: {"model": HealthDown, "description": "A component failed (named)"},
        },
        summary="PostgreSQL SELECT 1 and Valkey PING, each with a short timeout",
    )
    async def health(svc: Annotated[Services, Depends(get_services)]) -> Response:
        pg, vk = await asyncio.gather(
            check("postgresql", postgresql(svc)), check("valkey", svc.sessions.ping())
        )
        if pg == "ok" and vk == "ok":
            return PreEncodedResponse(_HEALTHY)
        failed = [n for n, s in (("postgresql", pg), ("valkey", vk)) if s != "ok"]
        return MsgspecResponse(
            {
                "status": "unavailable",
                "failed": failed,
                "components": {"postgresql": pg, "valkey": vk},
                "release": _RELEASE,
            },
            status_code=503,
        )

    return router
