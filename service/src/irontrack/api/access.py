"""``/api/v1/access/*``: signup, login, me, refresh, logout."""

# No ``from __future__ import annotations``: FastAPI must see the request model, built per
# application from the settings, as a real object in the signatures below.

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import load_only, raiseload
from starlette.responses import Response
from uuid_utils.compat import uuid7

from ..answers import NO_STORE_HEADERS, UNAUTHORIZED_HEADERS, me_answer, retry_after
from ..auth import ACCESS_COOKIE, REFRESH_COOKIE, access_token_from, refresh_token_from
from ..emails import normalize_email
from ..models import EMAIL_UNIQUE_INDEX, User
from ..responses import MsgspecResponse, PreEncodedResponse, error
from ..schemas import Detail, ProfileOut, RefreshRequest, TokenOut, UserOut, credentials_model
from ..services import Services, get_services
from ..sessions import FamilyRevoked, RefreshReuse
from ..settings import Settings
from ..throttle import client_address

PREFIX = "/api/v1/access"
SVC = Annotated[Services, Depends(get_services)]

# Documentation only (schemes declared in app.py): how the access token may be presented.
_SECURITY: list[dict[str, list[str]]] = [{"accessCookie": []}, {"bearer": []}]


def _unauthorized(detail: str) -> MsgspecResponse:
    return error(401, detail, UNAUTHORIZED_HEADERS)


def _is_unique_email_violation(exc: IntegrityError) -> bool:
    """By SQLSTATE and the index's name (asyncpg's ``constraint_name``), never message text."""
    chain = (exc.orig, getattr(exc.orig, "__cause__", None))
    states = {getattr(c, "sqlstate", None) for c in chain}
    names = {getattr(c, "constraint_name", None) for c in chain}
    return "23505" in states and EMAIL_UNIQUE_INDEX in names


def build_router(settings: Settings) -> APIRouter:
    Credentials: Any = credentials_model(settings)
    cookie_kw: dict[str, Any] = {
        "httponly": True,
        "secure": settings.cookie_secure,
        "samesite": settings.cookie_samesite,
        "domain": settings.cookie_domain,
    }
    router = APIRouter(prefix=PREFIX, tags=["access"])
    unauthorized_doc: dict[int | str, dict[str, Any]] = {
        401: {"model": Detail, "description": "Missing, invalid, expired or revoked token"}
    }

    def set_auth_cookies(response: Response, access: str, refresh: str) -> None:
        response.set_cookie(
            ACCESS_COOKIE, access, max_age=settings.access_token_ttl, path="/", **cookie_kw
        )
        response.set_cookie(
            REFRESH_COOKIE,
            refresh,
            max_age=settings.refresh_token_ttl,
            path=PREFIX,
            **cookie_kw,
        )

    def token_body(access: str, refresh: str) -> dict[str, Any]:
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": settings.access_token_ttl,
            "refresh_token": refresh,
            "refresh_expires_in": settings.refresh_token_ttl,
        }

    def token_response(access: str, refresh: str) -> Response:
        response = MsgspecResponse(token_body(access, refresh), headers=NO_STORE_HEADERS)
        set_auth_cookies(response, access, refresh)
        return response

    @router.post(
        "/signup",
        status_code=201,
        response_model=None,
        responses={
            201: {"model": UserOut, "description": "Created"},
            409: {"model": Detail, "description": "Email already registered"},
            413: {"model": Detail, "description": "Body too large"},
        },
        summary="Create a user (Argon2id hash in the worker pool, one INSERT)",
    )
    async def signup(svc: SVC, credentials: Annotated[Credentials, Body()]) -> Response:  # type: ignore[valid-type]
        svc.passwords.admit()
        password_hash = await svc.passwords.hash(credentials.password)
        email = normalize_email(credentials.email)
        user = User(id=uuid7(), email=email, password_hash=password_hash)
        async with svc.sessionmaker() as db:
            db.add(user)
            try:
                await db.commit()
            except IntegrityError as exc:
                await db.rollback()
                if _is_unique_email_violation(exc):
                    return error(409, "email already registered")
                raise
        return MsgspecResponse({"id": str(user.id), "email": user.email}, status_code=201)

    @router.post(
        "/login",
        response_model=None,
        responses={
            200: {"model": TokenOut, "description": "Logged in; cookies set"},
            401: {"model": Detail, "description": "Wrong email or password"},
            429: {
                "model": Detail,
                "description": "Too many failed logins for this account or address; "
                "Retry-After says when to try again",
            },
        },
        summary="Verify the password, open a session, issue an Ed25519 JWT and a refresh token",
    )
    async def login(
        svc: SVC, request: Request, credentials: Annotated[Credentials, Body()]
    ) -> Response:  # type: ignore[valid-type]
        svc.passwords.admit()  # saturated: 503 now, before any Valkey or database work
        email = normalize_email(credentials.email)
        keys = svc.throttle.keys(email, client_address(request.scope, settings.client_ip_header))
        wait = await svc.throttle.wait(keys)
        if wait > 0:
            return error(429, "too many failed logins; try again later", retry_after(wait))
        stmt = (
            select(User)
            .options(load_only(User.id, User.email, User.password_hash), raiseload("*"))
            .where(User.email == email)
        )
        async with svc.sessionmaker() as db:
            user = (await db.execute(stmt)).scalar_one_or_none()
        stored = user.password_hash if user is not None else None
        if not await svc.passwords.verify(credentials.password, stored) or user is None:
            await svc.throttle.failed(keys)
            return _unauthorized("invalid email or password")
        await svc.throttle.succeeded(keys[0])
        issued = svc.tokens.issue(str(user.id), user.email)
        opened = await svc.sessions.open(str(user.id), user.email, issued.claims.jti)
        return token_response(issued.token, opened.refresh_token)

    @router.get(
        "/me",
        response_model=None,
        responses={
            200: {"model": ProfileOut},
            **unauthorized_doc,
            503: {"model": Detail, "description": "Session store unreachable"},
        },
        openapi_extra={"security": _SECURITY},
        summary="The current user (JWT verified, session checked L1 → Valkey; no database)",
    )
    async def me(svc: SVC, request: Request) -> Response:
        status, body, extra = await me_answer(svc, request.scope)
        headers = {k.decode(): v.decode() for k, v in extra}
        return PreEncodedResponse(body, status_code=status, headers=headers)

    @router.post(
        "/refresh",
        response_model=None,
        responses={
            200: {"model": TokenOut, "description": "Rotated: new access and refresh tokens"},
            401: {
                "model": Detail,
                "description": "Unknown/expired refresh token, or reuse of a rotated one "
                "(the whole session is then revoked)",
            },
        },
        summary="Rotate the refresh token (from the body or the refresh_token cookie)",
    )
    async def refresh(
        svc: SVC, request: Request, body: Annotated[RefreshRequest | None, Body()] = None
    ) -> Response:
        token = (body.refresh_token if body is not None else None) or refresh_token_from(
            request.scope
        )
        if not token:
            return _unauthorized("refresh token required")
        record = await svc.sessions.lookup_refresh(token)
        if record is None:
            return _unauthorized("invalid refresh token")
        issued = svc.tokens.issue(record.sub, record.email)
        try:
            new_refresh = await svc.sessions.rotate(token, record, issued.claims.jti)
        except RefreshReuse:
            response = _unauthorized("refresh token reuse detected; session revoked")
            _clear(response)
            return response
        except FamilyRevoked:
            return _unauthorized("invalid refresh token")
        return token_response(issued.token, new_refresh)

    def _clear(response: Response) -> None:
        response.delete_cookie(ACCESS_COOKIE, path="/", **cookie_kw)
        response.delete_cookie(REFRESH_COOKIE, path=PREFIX, **cookie_kw)

    @router.post(
        "/logout",
        status_code=204,
        response_model=None,
        responses={
            204: {"description": "Session revoked on every worker; cookies cleared"},
            **unauthorized_doc,
        },
        openapi_extra={"security": _SECURITY},
        summary="Revoke the session (access token, or refresh token in body/cookie)",
    )
    async def logout(
        svc: SVC, request: Request, body: Annotated[RefreshRequest | None, Body()] = None
    ) -> Response:
        sid: str | None = None
        token = access_token_from(request.scope)
        if token is not None:
            claims = svc.tokens.verify(token)
            if claims is not None:
                session = await svc.sessions.get(claims.jti)
                if session is not None and session.sub == claims.sub:
                    sid = session.sid
        if sid is None:
            refresh_token = (body.refresh_token if body is not None else None) or (
                refresh_token_from(request.scope)
            )
            if refresh_token:
                record = await svc.sessions.lookup_refresh(refresh_token)
                if record is not None:
                    sid = record.sid
        if sid is None:
            return _unauthorized("not authenticated")
        await svc.sessions.revoke_family(sid)
        response = Response(status_code=204, headers=NO_STORE_HEADERS)
        _clear(response)
        return response

    return router
