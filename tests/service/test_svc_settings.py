"""Settings: separate passwords override the URLs; bounds are enforced."""

from __future__ import annotations

import pytest
from irontrack.db import database_url
from irontrack.sessions import valkey_url
from irontrack.settings import ConfigError, load_settings

BASE = {
    "database_url": "postgresql+asyncpg://irontrack:old@127.0.0.1:6432/irontrack",
    "valkey_url": "redis://irontrack:old@127.0.0.1:6379/0",
    "jwt_private_key_path": "/nonexistent/private.pem",
    "jwt_public_key_path": "/nonexistent/public.pem",
}


def test_password_overrides() -> None:
    settings = load_settings(**BASE, database_password="n3w/p@ss", valkey_password="v@l:key")
    assert database_url(settings).startswith("postgresql+asyncpg://irontrack:n3w%2Fp%40ss@")
    assert "prepared_statement_cache_size=0" in database_url(settings)
    assert valkey_url(settings) == "redis://irontrack:v%40l%3Akey@127.0.0.1:6379/0"


def test_plain_postgresql_scheme_is_normalised() -> None:
    settings = load_settings(**{**BASE, "database_url": "postgresql://u:p@h:5432/d"})
    assert settings.database_url == "postgresql+asyncpg://u:p@h:5432/d"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hash_workers", 0),
        ("argon2_memory_cost", 4),
        ("password_max_length", 5000),
        ("cookie_samesite", "sideways"),
        ("valkey_url", "http://x"),
        ("health_timeout", 0),
        ("health_max_age", -1),
        ("health_max_age", 61),
    ],
)
def test_bad_values_are_named(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"IRONTRACK_{field.upper()}"):
        load_settings(**{**BASE, field: value})


def test_samesite_none_needs_secure() -> None:
    with pytest.raises(ConfigError, match="cookie_samesite=none requires cookie_secure"):
        load_settings(**BASE, cookie_samesite="none", cookie_secure=False)
