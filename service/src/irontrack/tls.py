"""TLS to PgBouncer and Valkey on another host, verified against a private CA.

A CA file setting turns TLS on for that link with full verification (certificate chain and
host name, libpq's ``verify-full``): the host in the URL (an IP address in a fleet) must be in
the server certificate's subjectAltName. Unset, the link is plain (loopback or a unix socket).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import Settings


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file`` and checks the server's host name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_ca_file(path: Path) -> Path:
    """``path`` if it is a readable PEM file holding at least one CA certificate."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the CA file {path}: {error}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{path} holds no PEM certificate")
    try:
        client_context(path)
    except ssl.SSLError as error:
        raise ValueError(f"{path} is not a usable CA file: {error}") from None
    return path


def database_ssl(settings: Settings) -> ssl.SSLContext | None:
    """asyncpg's ``ssl`` argument: a verifying context when database_ca_file is set."""
    if settings.database_ca_file is None:
        return None
    return client_context(settings.database_ca_file)


def valkey_ssl(settings: Settings) -> dict[str, Any]:
    """redis-py connection arguments for a rediss:// URL verified against valkey_ca_file."""
    if settings.valkey_ca_file is None:
        return {}
    return {
        "ssl_ca_certs": str(settings.valkey_ca_file),
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }
