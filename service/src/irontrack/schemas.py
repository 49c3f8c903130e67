"""Request models (validated by FastAPI/pydantic) and response models (documentation only:
responses themselves are encoded by msgspec)."""

from __future__ import annotations

from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from .settings import Settings

_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


def _email(value: str) -> str:
    """An address as email-validator accepts it (syntax only, no DNS), domain normalised;
    irontrack.emails then normalises the whole address at the routes."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


# Special-use names (RFC 6761 and kin) never hold a mailbox: refused, and documented so.
_SPECIAL_USE = "|".join(_any_case(d) for d in SPECIAL_USE_DOMAIN_NAMES)
Email = Annotated[
    str,
    AfterValidator(_email),
    Field(
        max_length=254,
        json_schema_extra={
            "format": "email",
            "not": {"pattern": rf"[@.]({_SPECIAL_USE})\.?$"},
            "description": "An email address; special-use domains "
            f"({', '.join(SPECIAL_USE_DOMAIN_NAMES)}) are refused.",
        },
    ),
]


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
        email=(Email, ...),
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
    age_ms: int = Field(
        ge=0,
        description="Milliseconds since the probe this answer reports started: results are "
        "reused for at most IRONTRACK_HEALTH_MAX_AGE (default 1 s), one probe in flight per "
        "worker.",
    )


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
