"""Typed settings from the environment (prefix ``IRONTRACK_``) and an optional env file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .tls import check_ca_file

ENV_FILE_VARIABLE = "IRONTRACK_ENV_FILE"

# Argon2id threads are CPU-bound and each holds 64 MiB while it hashes. Every server worker
# process has its own pool, and the kernel spreads connections unevenly over the workers: a
# pool sized to a share of the cores (the report's "half") can leave cores idle whenever the
# busy worker is the one holding the signups. So one thread per core, capped at the report's
# 4 per process (at most 4 x 64 MiB per worker, and no thread storm on big machines).
HASH_WORKERS_CAP = 4


def default_hash_workers() -> int:
    """One Argon2id thread per usable CPU, at least 1, at most ``HASH_WORKERS_CAP``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, min(HASH_WORKERS_CAP, cpus))


PositiveInt = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="IRONTRACK_",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    database_url: str = Field(
        description="SQLAlchemy URL, postgresql+asyncpg://user:pass@host:port/db (PgBouncer)."
    )
    database_password: SecretStr | None = Field(
        default=None, description="Overrides the password in database_url when set."
    )
    database_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed PgBouncer's certificate: connect over TLS "
        "and verify the certificate and the URL's host (verify-full). Unset: no TLS (loopback).",
    )
    valkey_url: str = Field(description="redis://user:pass@host:port/db of Valkey.")
    valkey_password: SecretStr | None = Field(
        default=None, description="Overrides the password in valkey_url when set."
    )
    valkey_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed Valkey's certificate (needs a rediss:// "
        "valkey_url): the certificate and the URL's host are verified.",
    )
    jwt_keyset_path: Path | None = Field(
        default=None,
        description="JSON keyset file (irontrack-keyset): several Ed25519 keys, one signing.",
    )
    jwt_private_key_path: Path | None = Field(
        default=None,
        description="PEM file of the single Ed25519 private key (earlier releases; one-key "
        "keyset). Use jwt_keyset_path instead.",
    )
    jwt_public_key_path: Path | None = Field(
        default=None, description="PEM file of that key's public key."
    )
    jwt_generate_dev_keys: bool = Field(
        default=False, description="Generate a missing key pair at start (development only)."
    )
    jwt_issuer: str | None = Field(default=None, description="Optional `iss` claim.")
    jwt_audience: str = Field(
        default="irontrack", min_length=1, description="`aud` claim, signed and required."
    )
    access_token_ttl: PositiveInt = Field(default=1800, description="Access token life, s.")
    refresh_token_ttl: PositiveInt = Field(default=7 * 86400, description="Refresh life, s.")
    session_max_lifetime: PositiveInt = Field(
        default=30 * 86400,
        description="Absolute life of a login, s: no rotation extends a session beyond it.",
    )

    db_pool_size: PositiveInt = 10
    db_max_overflow: Annotated[int, Field(ge=0)] = 5
    db_pool_timeout: Annotated[float, Field(gt=0)] = 5.0
    db_statement_timeout_ms: Annotated[int, Field(ge=0)] = 5000
    db_connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    db_statement_cache: bool = Field(
        default=False,
        description=(
            "Cache prepared statements per connection (asyncpg + SQLAlchemy). Only safe when "
            "the pooler tracks protocol-level prepared statements: PgBouncer >= 1.21 with "
            "max_prepared_statements > 0, or PostgreSQL directly. Off: every statement is "
            "prepared under a unique name and not reused."
        ),
    )
    db_statement_cache_size: PositiveInt = Field(
        default=256, description="Statements kept per connection when db_statement_cache is on."
    )
    health_timeout: Annotated[float, Field(gt=0, le=30)] = Field(
        default=1.0, description="Seconds each /health probe (PostgreSQL, Valkey) may take."
    )
    health_max_age: Annotated[float, Field(ge=0, le=60)] = Field(
        default=1.0,
        description="Seconds a /health probe result is reused (one probe in flight per worker; "
        "0: a probe per request).",
    )
    valkey_timeout: Annotated[float, Field(gt=0, le=30)] = 1.0
    valkey_max_connections: PositiveInt = 64
    valkey_pool_timeout: Annotated[float, Field(gt=0, le=30)] = 1.0

    hash_workers: PositiveInt = Field(default_factory=default_hash_workers)
    hash_queue: Annotated[int, Field(ge=0)] = Field(
        default=16,
        description="Argon2id jobs that may wait per worker beyond the busy threads; more: 503.",
    )
    hash_retry_after: PositiveInt = Field(default=1, description="Retry-After of that 503, s.")
    login_throttle: bool = True
    login_free_failures: Annotated[int, Field(ge=0)] = Field(
        default=5, description="Failed logins per account or address before backoff starts."
    )
    login_backoff_base: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="First backoff, s; doubles with every further failure."
    )
    login_backoff_max: Annotated[float, Field(gt=0)] = Field(default=900.0)
    login_failure_window: PositiveInt = Field(
        default=3600, description="A failure counter is forgotten this long after its last use."
    )
    client_ip_header: str | None = Field(
        default="x-real-ip",
        description="Header the proxy sets to the client address; read only when the peer is "
        "a unix socket or loopback.",
    )
    argon2_time_cost: PositiveInt = 3
    argon2_memory_cost: Annotated[int, Field(ge=8)] = 65536
    argon2_parallelism: PositiveInt = 1
    password_min_length: PositiveInt = 8
    password_max_length: Annotated[int, Field(gt=0, le=1024)] = 128
    max_body_bytes: Annotated[int, Field(ge=256)] = 4096

    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_domain: str | None = None
    access_log: bool = True
    metrics: bool = Field(
        default=True,
        description="Record Prometheus metrics (served by irontrack-metrics, not by the app; "
        "multiprocess when PROMETHEUS_MULTIPROC_DIR is set).",
    )
    docs_enabled: bool = Field(
        default=False, description="Serve /docs and /openapi.json (off in production)."
    )
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = "INFO"
    l1_size: PositiveInt = 10000
    l1_max_ttl: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("client_ip_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        return value.strip().lower() or None if value is not None else None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str) -> str:
        if not value.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
            raise ValueError("must be a postgresql+asyncpg:// URL")
        _, rest = value.split("://", 1)
        return "postgresql+asyncpg://" + rest

    @field_validator("valkey_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("database_ca_file", "valkey_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        return None if value is None else check_ca_file(value)

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.valkey_ca_file is not None and not self.valkey_url.startswith("rediss://"):
            raise ValueError("valkey_ca_file is set: valkey_url must be a rediss:// URL (TLS)")
        pair = (self.jwt_private_key_path, self.jwt_public_key_path)
        if self.jwt_keyset_path is not None and any(path is not None for path in pair):
            raise ValueError(
                "set jwt_keyset_path or the jwt_private_key_path/jwt_public_key_path pair, not both"
            )
        if self.jwt_keyset_path is None and any(path is None for path in pair):
            raise ValueError(
                "no JWT keys: set jwt_keyset_path (or both jwt_private_key_path and "
                "jwt_public_key_path)"
            )
        if self.jwt_generate_dev_keys and self.jwt_keyset_path is not None:
            raise ValueError("jwt_generate_dev_keys works with the key pair, not a keyset")
        if self.password_min_length > self.password_max_length:
            raise ValueError("password_min_length exceeds password_max_length")
        if self.session_max_lifetime < self.access_token_ttl:
            raise ValueError("session_max_lifetime is shorter than access_token_ttl")
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise ValueError("cookie_samesite=none requires cookie_secure=true")
        return self


class ConfigError(RuntimeError):
    """Settings could not be loaded; the message is meant for an operator."""


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``$IRONTRACK_ENV_FILE``; raise ConfigError."""
    env_file = os.environ.get(ENV_FILE_VARIABLE) or None
    if env_file is not None and not Path(env_file).is_file():
        raise ConfigError(f"{ENV_FILE_VARIABLE}={env_file}: no such file")
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as error:
        lines = []
        for item in error.errors():
            loc = "_".join(str(p) for p in item["loc"]).upper()
            lines.append(f"  {'IRONTRACK_' + loc if loc else '(settings)'}: {item['msg']}")
        raise ConfigError("invalid IronTrack configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (loaded once)."""
    return load_settings()
