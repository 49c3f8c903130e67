"""Settings: separate passwords override the URLs; bounds are enforced."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from irontrack.db import database_url
from irontrack.sessions import valkey_url
from irontrack.settings import ConfigError, load_settings
from irontrack.tls import database_ssl, valkey_ssl

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


def _ca(tmp_path, name: str = "ca.pem"):
    """A real self-signed CA certificate (PEM) written to tmp_path/name."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test internal CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_ca_files_turn_on_verified_tls(tmp_path) -> None:
    ca = _ca(tmp_path)
    url = "rediss://irontrack:p@10.0.0.5:6379/0"
    settings = load_settings(**{**BASE, "valkey_url": url}, database_ca_file=ca, valkey_ca_file=ca)
    context = database_ssl(settings)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname  # verify-full: the URL's host must be in the certificate
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "test internal CA"),),)
    assert valkey_ssl(settings)["ssl_ca_certs"] == str(ca)
    assert valkey_ssl(settings)["ssl_check_hostname"] is True
    assert valkey_ssl(settings)["ssl_cert_reqs"] == "required"
    # Without the settings: no TLS at all (the single box's loopback links).
    plain = load_settings(**BASE)
    assert database_ssl(plain) is None
    assert valkey_ssl(plain) == {}


@pytest.mark.parametrize("field", ["database_ca_file", "valkey_ca_file"])
def test_a_missing_or_unreadable_ca_file_is_named(tmp_path, field: str) -> None:
    extra = {"valkey_url": "rediss://irontrack:p@10.0.0.5:6379/0"}
    with pytest.raises(ConfigError, match=f"IRONTRACK_{field.upper()}.*cannot read the CA file"):
        load_settings(**{**BASE, **extra, field: tmp_path / "absent.pem"})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"IRONTRACK_{field.upper()}.*holds no PEM certificate"):
        load_settings(**{**BASE, **extra, field: garbage})
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=f"IRONTRACK_{field.upper()}.*not a usable CA file"):
        load_settings(**{**BASE, **extra, field: broken})


def test_a_valkey_ca_file_needs_a_rediss_url(tmp_path) -> None:
    with pytest.raises(ConfigError, match="valkey_url must be a rediss:// URL"):
        load_settings(**BASE, valkey_ca_file=_ca(tmp_path))
