"""Ed25519 key files: generation (irontrack-keygen, dev keys) and loading."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyError_(RuntimeError):
    """A key file is missing or unusable; the message is meant for an operator."""


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes


def generate_key_files(private_path: Path, public_path: Path) -> bool:
    """Write a new key pair unless both files exist; never overwrite. True when written."""
    if private_path.exists() and public_path.exists():
        return False
    if private_path.exists() or public_path.exists():
        present = private_path if private_path.exists() else public_path
        raise KeyError_(f"{present} exists but its pair does not; refusing to overwrite")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(public_pem)
    return True


def load_key_files(private_path: Path, public_path: Path) -> KeyPair:
    """Read and check both PEM files: Ed25519, and the public key belongs to the private one."""
    try:
        private_pem = private_path.read_bytes()
        public_pem = public_path.read_bytes()
    except OSError as error:
        raise KeyError_(f"cannot read JWT key file: {error}") from None
    try:
        private = serialization.load_pem_private_key(private_pem, password=None)
        public = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as error:
        raise KeyError_(f"JWT key file is not a valid unencrypted PEM key: {error}") from None
    if not isinstance(private, Ed25519PrivateKey) or not isinstance(public, Ed25519PublicKey):
        raise KeyError_("JWT keys must be Ed25519")
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if private.public_key().public_bytes(*raw) != public.public_bytes(*raw):
        raise KeyError_(f"{public_path} is not the public key of {private_path}")
    return KeyPair(private_pem=private_pem, public_pem=public_pem)
