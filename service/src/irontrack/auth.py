"""Reading the access token from a request: cookie (quoted or not) or ``Authorization: Bearer``."""

from __future__ import annotations

from starlette.types import Scope

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of cookie ``name``; surrounding double quotes (as wrk sends them) removed."""
    for chunk in cookie_header.split(";"):
        key, sep, value = chunk.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            return value or None
    return None


def access_token_from(scope: Scope) -> str | None:
    """Bearer header first (explicit), else the ``access_token`` cookie."""
    cookie: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif name == b"cookie":
            found = cookie_value(value.decode("latin-1"), ACCESS_COOKIE)
            if found is not None:
                cookie = found
    return cookie


def refresh_token_from(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            found = cookie_value(value.decode("latin-1"), REFRESH_COOKIE)
            if found is not None:
                return found
    return None
