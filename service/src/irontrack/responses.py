"""msgspec-encoded JSON responses (no jsonable_encoder, no pydantic serialisation on hot paths)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import JSONResponse

_encode = msgspec.json.Encoder().encode


class MsgspecResponse(JSONResponse):
    """A JSON response whose body is encoded by msgspec (structs, dicts, UUIDs, datetimes)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


class PreEncodedResponse(JSONResponse):
    """A JSON response whose body was encoded once, at import time."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else _encode(content)


def encode(content: Any) -> bytes:
    """Encode ``content`` as JSON bytes."""
    return _encode(content)


def error(status_code: int, detail: str, headers: dict[str, str] | None = None) -> MsgspecResponse:
    """A ``{"detail": ...}`` error response."""
    return MsgspecResponse({"detail": detail}, status_code=status_code, headers=headers)
