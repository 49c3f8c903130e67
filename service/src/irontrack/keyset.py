"""The JWT signing keyset: several Ed25519 keys, exactly one of them signs.

A keyset file is JSON, ``{"keys": [{"private_pem": "...", "state": "signing"}, ...]}``;
every key is identified by its ``kid``, the RFC 7638 thumbprint of its public key. The
signing key signs every new token; every key (the signing one and the ``verifying`` ones)
verifies the tokens that name its ``kid``. Rotation (``irontrack-keyset``) stages a new key
as verifying everywhere first, then makes it signing while the old one keeps verifying
until no token it signed can be alive, then retires the old one.

Optional fields a key may carry (written by ``irontrack-keyset``, informative for the
service): ``kid`` (checked against the key when present), ``created`` and
``signing_until`` (Unix seconds: when the key stopped signing).
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import OKPKey

from .keys import KeyError_, KeyPair, load_key_files

SIGNING = "signing"
VERIFYING = "verifying"
State = Literal["signing", "verifying"]
_FIELDS = frozenset({"private_pem", "state", "kid", "created", "signing_until"})
# A private key file may be read by its owner and its group (root:service 0640), nothing more.
_TOO_OPEN = stat.S_IWGRP | stat.S_IRWXO


@dataclass(frozen=True, slots=True)
class KeyEntry:
    kid: str
    state: State
    private: OKPKey
    public: OKPKey
    private_pem: str
    created: int | None = None
    signing_until: int | None = None


@dataclass(frozen=True, slots=True)
class Keyset:
    """Every key of a keyset; ``signing`` is the one key that signs."""

    signing: KeyEntry
    keys: tuple[KeyEntry, ...]

    def by_kid(self) -> dict[str, OKPKey]:
        return {entry.kid: entry.public for entry in self.keys}


def check_private_file_mode(path: Path) -> None:
    """Refuse a private key file that the world can read or the group can write."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise KeyError_(f"cannot read JWT key file: {error}") from None
    if mode & _TOO_OPEN:
        raise KeyError_(
            f"{path}: mode {stat.S_IMODE(mode):04o} is too open for a private key "
            "(at most 0640: owner read/write, group read)"
        )


def read_private_text(path: Path, what: str) -> str:
    """The text of a private key file (`what` names it in the error), after its mode check."""
    check_private_file_mode(path)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as error:
        raise KeyError_(f"cannot read {what}: {error}") from None


def _entry(raw: object, where: str) -> KeyEntry:
    if not isinstance(raw, dict):
        raise KeyError_(f"{where}: must be an object with private_pem and state")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise KeyError_(f"{where}: unknown field(s) {', '.join(unknown)}")
    pem, state = raw.get("private_pem"), raw.get("state")
    if state not in (SIGNING, VERIFYING):
        raise KeyError_(f"{where}: state must be 'signing' or 'verifying', not {state!r}")
    if not isinstance(pem, str) or not pem.strip():
        raise KeyError_(f"{where}: private_pem must be a PEM string")
    try:
        loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise KeyError_(f"{where}: not a valid unencrypted PEM private key: {error}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyError_(f"{where}: JWT keys must be Ed25519")
    private = OKPKey.import_key(pem)
    public = OKPKey.import_key(private.as_dict(private=False))
    kid = public.thumbprint()
    if "kid" in raw and raw["kid"] != kid:
        raise KeyError_(f"{where}: kid {raw['kid']!r} does not match the key (its kid is {kid})")
    times: dict[str, int | None] = {}
    for name in ("created", "signing_until"):
        value = raw.get(name)
        if value is not None and type(value) is not int:
            raise KeyError_(f"{where}: {name} must be Unix seconds (an integer)")
        times[name] = value
    return KeyEntry(kid, state, private, public, pem, times["created"], times["signing_until"])


def keyset_from_data(data: object, source: str) -> Keyset:
    """Check a decoded keyset: every key Ed25519, no key twice, exactly one signing key."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeyError_(f'{source}: a keyset is an object {{"keys": [...]}}')
    unknown = sorted(set(data) - {"keys"})
    if unknown:
        raise KeyError_(f"{source}: unknown field(s) {', '.join(unknown)}")
    entries = tuple(_entry(raw, f"{source}: key {i}") for i, raw in enumerate(data["keys"]))
    if not entries:
        raise KeyError_(f"{source}: the keyset has no key")
    seen: set[str] = set()
    for entry in entries:
        if entry.kid in seen:
            raise KeyError_(f"{source}: key {entry.kid} appears twice")
        seen.add(entry.kid)
    signing = [entry for entry in entries if entry.state == SIGNING]
    if len(signing) != 1:
        found = ", ".join(entry.kid for entry in signing) or "none"
        raise KeyError_(f"{source}: exactly one key must be 'signing' (found {found})")
    return Keyset(signing=signing[0], keys=entries)


def load_keyset(path: Path) -> Keyset:
    """Read and check a keyset file (mode at most 0640); KeyError_ for an operator."""
    text = read_private_text(path, "JWT keyset")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise KeyError_(f"{path}: not valid JSON: {error}") from None
    return keyset_from_data(data, str(path))


def load_configured_keyset(
    keyset_path: Path | None, private_path: Path | None, public_path: Path | None
) -> Keyset:
    """The keyset the settings name: the keyset file, or the single pair as a one-key set."""
    if keyset_path is not None:
        return load_keyset(keyset_path)
    if private_path is None or public_path is None:
        raise KeyError_("no JWT keys configured")
    check_private_file_mode(private_path)
    return keyset_from_pair(load_key_files(private_path, public_path))


def keyset_from_pair(pair: KeyPair) -> Keyset:
    """A one-key keyset from the single key pair of earlier releases (its kid is unchanged)."""
    return keyset_from_data(
        {"keys": [{"private_pem": pair.private_pem.decode(), "state": SIGNING}]}, "JWT key pair"
    )


# --- Writing keysets (irontrack-keyset, on the controller) ---------------------------


def new_private_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def entry_record(entry: KeyEntry) -> dict[str, Any]:
    record: dict[str, Any] = {"kid": entry.kid, "state": entry.state}
    if entry.created is not None:
        record["created"] = entry.created
    if entry.signing_until is not None:
        record["signing_until"] = entry.signing_until
    record["private_pem"] = entry.private_pem
    return record


def write_keyset(path: Path, records: list[dict[str, Any]]) -> Keyset:
    """Check, then atomically replace ``path`` (mode 0600) with the keyset ``records``."""
    keyset = keyset_from_data({"keys": records}, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"keys": [entry_record(entry) for entry in keyset.keys]}, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return keyset


def now() -> int:
    return int(time.time())
