"""Request models (validated by FastAPI/pydantic) and response models (documentation only:
responses themselves are encoded by msgspec)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, create_model

from .settings import Settings

_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


def credentials_model(settings: Settings) -> type[BaseModel]:
    """``{email, password}`` with the configured password bounds (they appear in OpenAPI)."""
    password = Annotated[
        str,
        StringConstraints(
            min_length=settings.password_min_length, max_length=settings.password_max_length
        ),
    ]
    return create_model(
        "Credentials",
        __config__=_STRICT,
        email=(Annotated[EmailStr, Field(max_length=254)], ...),
        password=(password, ...),
    )


class RefreshRequest(BaseModel):
    model_config = _STRICT
    refresh_token: Annotated[str | None, Field(default=None, min_length=1, max_length=256)] = None


class UserOut(BaseModel):
    id: str = Field(description="UUIDv7")
    email: str


class TokenOut(BaseModel):
    access_token: str
    token_type: str = Field(default="bearer", description="always bearer")
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class ProfileOut(BaseModel):
    id: str = Field(description="UUIDv7 of the user (the token's `sub`)")
    email: str
    session_expires_at: int = Field(description="Unix time the access token expires")


class Detail(BaseModel):
    detail: str


class Ping(BaseModel):
    ping: str = "pong"


class HealthOut(BaseModel):
    status: str = Field(description='"ok" or "unavailable"')
    components: dict[str, str] = Field(
        description='{"postgresql": "ok"|"timeout"|"error", "valkey": ...}'
    )
    release: str = Field(description="The release this process runs (the app role's id), or dev")


class HealthDown(HealthOut):
    failed: list[str] = Field(description='The components that failed, e.g. ["valkey"]')


class JWK(BaseModel):
    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str


class JWKS(BaseModel):
    keys: list[JWK]
