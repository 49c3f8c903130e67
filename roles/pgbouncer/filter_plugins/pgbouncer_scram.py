"""SCRAM-SHA-256 secrets in PostgreSQL's format, for PgBouncer's auth_file.

`password | pgbouncer_scram_secret(existing)` returns `existing` when it is a valid
SCRAM secret for `password` (so re-runs are idempotent), else a new secret with a
random salt — the same construction as PostgreSQL's scram_build_secret().
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_SECRET_RE = re.compile(
    r"^SCRAM-SHA-256\$(?P<iter>\d+):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)$"
)
_ITERATIONS = 4096
_SALT_BYTES = 16


def _build(password: str, salt: bytes, iterations: int) -> str:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def pgbouncer_scram_secret(password: str, existing: str = "") -> str:
    """Return a SCRAM-SHA-256 secret for password, reusing `existing` if it matches."""
    if not isinstance(password, str) or not password:
        raise ValueError("pgbouncer_scram_secret: the password is empty")
    match = _SECRET_RE.match(existing or "")
    if match:
        candidate = _build(password, base64.b64decode(match["salt"]), int(match["iter"]))
        if hmac.compare_digest(candidate, existing):
            return existing
    return _build(password, secrets.token_bytes(_SALT_BYTES), _ITERATIONS)


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, object]:
        return {"pgbouncer_scram_secret": pgbouncer_scram_secret}
