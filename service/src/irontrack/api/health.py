"""``/ping`` and ``/health``."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import Response

from ..responses import MsgspecResponse, PreEncodedResponse, encode
from ..schemas import HealthOut, Ping
from ..services import Services

log = logging.getLogger("irontrack.health")
_PONG = encode({"ping": "pong"})
_HEALTHY = encode({"status": "ok", "components": {"postgresql": "ok", "valkey": "ok"}})
_SELECT_1 = text("SELECT 1")


def build_router(svc: Services) -> APIRouter:
    router = APIRouter(tags=["health"])
    timeout = svc.settings.health_timeout

    @router.get("/ping", response_model=None, responses={200: {"model": Ping}})
    async def ping() -> Response:
        return PreEncodedResponse(_PONG)

    async def check(name: str, probe: object) -> str:
        try:
            async with asyncio.timeout(timeout):
                await probe  # type: ignore[misc]
        except TimeoutError:
            log.warning("health: %s timed out after %.2fs", name, timeout)
            return "timeout"
        except Exception as exc:  # any failure of a dependency is a state, never a 500
            log.warning("health: %s failed: %s", name, exc.__class__.__name__)
            return "error"
        return "ok"

    async def postgresql() -> None:
        async with svc.engine.connect() as conn:
            await conn.execute(_SELECT_1)

    @router.get(
        "/health",
        response_model=None,
        responses={
            200: {"model": HealthOut},
            503: {"model": HealthOut, "description": "A component failed (named)"},
        },
        summary="PostgreSQL SELECT 1 and Valkey PING, each with a short timeout",
    )
    async def health() -> Response:
        pg, vk = await asyncio.gather(
            check("postgresql", postgresql()), check("valkey", svc.sessions.ping())
        )
        if pg == "ok" and vk == "ok":
            return PreEncodedResponse(_HEALTHY)
        failed = [n for n, s in (("postgresql", pg), ("valkey", vk)) if s != "ok"]
        return MsgspecResponse(
            {
                "status": "unavailable",
                "failed": failed,
                "components": {"postgresql": pg, "valkey": vk},
            },
            status_code=503,
        )

    return router
