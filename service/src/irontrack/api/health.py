"""``/ping`` and ``/health``.

Both are answered by the pure-ASGI edge (:mod:`irontrack.edge`) for ``GET``/``HEAD``; these
routes document them in OpenAPI and answer with the very same bytes (``/health``: the same
:class:`irontrack.probe.HealthProbe`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from ..answers import PONG
from ..responses import PreEncodedResponse
from ..schemas import HealthDown, HealthOut, Ping
from ..services import Services, get_services
from ..settings import Settings


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/ping", response_model=None, responses={200: {"model": Ping}})
    async def ping() -> Response:
        return PreEncodedResponse(PONG)

    @router.get(
        "/health",
        response_model=None,
        responses={
            200: {"model": HealthOut},
            503: {"model": HealthDown, "description": "A component failed (named)"},
        },
        summary="PostgreSQL SELECT 1 and Valkey PING, each with a short timeout; one probe in "
        f"flight per worker, its result reused for at most IRONTRACK_HEALTH_MAX_AGE "
        f"({settings.health_max_age:g} s here)",
    )
    async def health(svc: Annotated[Services, Depends(get_services)]) -> Response:
        status, body = await svc.health.answer()
        return PreEncodedResponse(body, status_code=status)

    return router
