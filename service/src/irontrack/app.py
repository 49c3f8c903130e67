"""The ASGI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response
from starlette.types import ASGIApp

from . import __version__, errors
from .api import access, health
from .db import create_engine, create_sessionmaker
from .edge import HEALTH_PATH, ME_PATH, PING_PATH, EdgeMiddleware
from .keys import generate_key_files
from .keyset import load_configured_keyset
from .logs import configure_logging
from .middleware import (
    AccessLog,
    AccessLogWriter,
    BodyLimitMiddleware,
    ObserveMiddleware,
    observers,
)
from .passwords import PasswordService
from .probe import HealthProbe
from .responses import PreEncodedResponse, encode
from .schemas import JWKS
from .services import Services
from .sessions import SessionStore
from .settings import Settings, get_settings
from .throttle import LoginThrottle
from .tokens import TokenService

log = logging.getLogger("irontrack")
SHUTDOWN_DRAIN_SECONDS = 10.0

_DETAIL = {"$ref": "#/components/schemas/Detail"}
# Statuses any operation can meet, from the service or from the proxy in front of it.
_COMMON = {
    "405": "Method not allowed on this path; `Allow` lists the methods",
    "429": "Rate limit of the proxy (per client address), or login throttling; `Retry-After`",
    "502": "Proxy: the application is unreachable",
    "503": "A dependency (database, session store, hashing) is unavailable or saturated; "
    "`Retry-After`",
    "504": "Proxy: the application did not answer in time",
}
_WITH_BODY = {
    "400": "Unreadable request (e.g. a body that cannot be parsed)",
    "413": "Request body too large",
    "422": "Invalid input (the detail lists every problem)",
}


def document_common_statuses(schema: dict[str, Any]) -> None:
    """Add every status the stack can answer, with its ``{"detail": ...}`` JSON body, to each
    operation (FastAPI documents only what a route declares)."""
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "Detail",
        {
            "title": "Detail",
            "type": "object",
            "properties": {"detail": {"title": "Detail"}},
            "required": ["detail"],
        },
    )
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            extra = dict(_COMMON)
            if "requestBody" in operation:
                extra.update(_WITH_BODY)
            for code, description in extra.items():
                if code not in responses or "content" not in responses[code]:
                    responses[code] = {
                        "description": responses.get(code, {}).get("description", description),
                        "content": {"application/json": {"schema": _DETAIL}},
                    }


def create_fastapi(settings: Settings, access_log: AccessLogWriter | None = None) -> FastAPI:
    """The FastAPI application (routes, handlers, lifespan) without the outer middleware."""
    configure_logging(settings)
    access_log = access_log or AccessLogWriter()
    private, public = settings.jwt_private_key_path, settings.jwt_public_key_path
    if (
        settings.jwt_generate_dev_keys
        and private
        and public
        and generate_key_files(private, public)
    ):
        log.warning("generated a DEVELOPMENT key pair at %s", private)
    keyset = load_configured_keyset(settings.jwt_keyset_path, private, public)
    tokens = TokenService(
        keyset, settings.access_token_ttl, settings.jwt_issuer, audience=settings.jwt_audience
    )
    svc = Services(settings=settings, tokens=tokens)
    svc.health = HealthProbe(svc, settings.health_timeout, settings.health_max_age)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.engine = create_engine(settings)
        svc.sessionmaker = create_sessionmaker(engine=svc.engine)
        svc.passwords = PasswordService(settings)
        svc.sessions = SessionStore(settings)
        svc.throttle = LoginThrottle(svc.sessions.client, settings)
        await svc.sessions.init()  # Valkey down: serve anyway (/health says so), L1 retries
        publisher = _start_metrics(svc) if settings.metrics else None
        try:
            yield
        finally:
            if publisher is not None:
                await publisher.close()
            # In-flight logins/signups finish their hash and still reach Valkey and the
            # database; then the clients close; the log goes last.
            await svc.passwords.drain(SHUTDOWN_DRAIN_SECONDS)
            await svc.sessions.close()
            await svc.engine.dispose()
            access_log.flush()

    docs = settings.docs_enabled
    app = FastAPI(
        title="IronTrack",
        version=__version__,
        lifespan=lifespan,
        default_response_class=PreEncodedResponse,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    errors.install(app)
    app.include_router(health.build_router(settings))
    app.include_router(access.build_router(settings))

    jwks_body = encode(svc.tokens.jwks)

    @app.get(
        "/.well-known/jwks.json",
        response_model=None,
        responses={200: {"model": JWKS}},
        tags=["keys"],
        summary="Public key(s) to verify access tokens (alg Ed25519)",
    )
    async def jwks() -> Response:
        return PreEncodedResponse(jwks_body, headers={"Cache-Control": "public, max-age=300"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            document_common_statuses(schema)
            schema.setdefault("components", {})["securitySchemes"] = {
                "accessCookie": {"type": "apiKey", "in": "cookie", "name": "access_token"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.services = svc
    return app


def _start_metrics(svc: Services) -> Any:
    """Publish the pools' and caches' numbers once a second (irontrack.metrics)."""
    from . import metrics, sessions

    publisher = metrics.Publisher()
    publisher.add(metrics.RECORDER.flush)
    publisher.add(metrics.l1_source(svc.sessions.l1))
    publisher.add(metrics.db_pool_source(svc.engine, svc.settings.db_pool_size))
    publisher.add(metrics.hash_source(svc.passwords))
    publisher.add(metrics.rejected_source(svc.passwords))
    publisher.add(metrics.valkey_errors_source(sessions.ERRORS))
    publisher.publish()
    publisher.start()
    return publisher


def create_app(settings: Settings | None = None) -> ASGIApp:
    """FastAPI behind pure ASGI layers: request timing for the metrics and the access log
    (outermost), the hot-path edge, the body ceiling."""
    settings = settings or get_settings()
    access_log = AccessLogWriter()
    app = create_fastapi(settings, access_log)
    wrapped: ASGIApp = BodyLimitMiddleware(app, settings.max_body_bytes)
    wrapped = EdgeMiddleware(wrapped, app.state.services)
    metrics = None
    if settings.metrics:  # imported only when on: no metric files are written otherwise
        from .metrics import request_observer

        metrics = request_observer(exact=(PING_PATH, ME_PATH, HEALTH_PATH))
    access = AccessLog(access_log.write) if settings.access_log else None
    observe = observers(metrics, access)
    if observe is not None:
        wrapped = ObserveMiddleware(wrapped, observe)
    return wrapped
