"""The JWT keyset: kid on every token, verification by kid, rotation without a 401, retirement,
JWKS content, the migration of an earlier release's single key pair, and clear startup
errors for a bad keyset. Real servers (Granian) on the shared stack; sessions in Valkey."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import me, signup_and_login
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import Server, Stack
from joserfc import jwt
from joserfc.jwk import OKPKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _header(token: str) -> dict[str, object]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))


def _keyset(stack: Stack, *args: str) -> dict:
    done = stack.run_cli("irontrack-keyset", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _kids(path: Path) -> list[tuple[str, str]]:
    keys = json.loads(path.read_text())["keys"]
    return [(OKPKey.import_key(k["private_pem"]).thumbprint(), k["state"]) for k in keys]


@contextmanager
def _serving(stack: Stack, name: str, **env: str) -> Iterator[httpx.Client]:
    server = Server(stack.app_env(**env), stack.root, name)
    try:
        server.start()
        with server.client() as http:
            yield http
    finally:
        server.stop()


def _jwks(http: httpx.Client) -> list[str]:
    answer = http.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    keys = answer.json()["keys"]
    for jwk in keys:
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (
            "OKP",
            "Ed25519",
            "Ed25519",
            "sig",
        )
        assert "d" not in jwk
        assert OKPKey.import_key(jwk).thumbprint() == jwk["kid"]  # kid = RFC 7638 thumbprint
    return [jwk["kid"] for jwk in keys]


def test_rotation_keeps_live_tokens_and_retirement_ends_them(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "keyset.json"
    first = _keyset(stack, "init", str(path))
    assert first["changed"] is True
    old = first["signing"]
    assert _keyset(stack, "init", str(path))["changed"] is False  # never overwritten
    env = {"IRONTRACK_JWT_KEYSET_PATH": str(path)}

    with _serving(stack, "ks1", **env) as http:
        assert _jwks(http) == [old]
        user = signup_and_login(http, "rotate")
        assert _header(user.access)["kid"] == old
        assert me(http, user.access).status_code == 200

    # Phase 1: the new key verifies everywhere, the old one still signs.
    staged = _keyset(stack, "stage", str(path))
    new = staged["staged"]
    assert new != old
    assert staged["signing"] == old
    assert _keyset(stack, "stage", str(path))["changed"] is False  # one staged key at a time
    with _serving(stack, "ks2", **env) as http:
        assert _jwks(http) == [old, new]
        assert me(http, user.access).status_code == 200
        assert _header(signup_and_login(http, "phase1").access)["kid"] == old

    # Phase 2: the new key signs; the old one keeps verifying the tokens it signed.
    promoted = _keyset(stack, "promote", str(path))
    assert promoted["signing"] == new
    assert _kids(path) == [(old, "verifying"), (new, "signing")]
    refused = stack.run_cli("irontrack-keyset", "retire", str(path), old, "--min-age", "1800")
    assert refused.returncode == 1
    assert "tokens live up to 1800 s" in refused.stderr
    with _serving(stack, "ks3", **env) as http:
        assert _jwks(http) == [new, old]
        assert me(http, user.access).status_code == 200
        fresh = signup_and_login(http, "phase2")
        assert _header(fresh.access)["kid"] == new
        assert me(http, fresh.access).status_code == 200

    # Retired: the old key's tokens are refused, the new key's still pass.
    assert _keyset(stack, "retire", str(path), old)["retired"] == [old]
    assert _keyset(stack, "retire", str(path), old, "--missing-ok")["changed"] is False
    with _serving(stack, "ks4", **env) as http:
        assert _jwks(http) == [new]
        assert me(http, user.access).status_code == 401
        assert me(http, fresh.access).status_code == 200


def test_kid_selects_the_key_and_unknown_or_missing_kid_is_refused(
    stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "keyset.json"
    _keyset(stack, "init", str(path))
    _keyset(stack, "stage", str(path))
    signing, verifying = (
        OKPKey.import_key(k["private_pem"]) for k in json.loads(path.read_text())["keys"]
    )
    with _serving(stack, "kid", IRONTRACK_JWT_KEYSET_PATH=str(path)) as http:
        user = signup_and_login(http, "kid")
        claims = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
        base = {"alg": "Ed25519", "typ": "at+jwt"}

        def token(key: OKPKey, **header: object) -> str:
            return jwt.encode({**base, **header}, claims, key, algorithms=["Ed25519"])

        def raw(key: OKPKey, **header: object) -> str:
            """Signed by hand: joserfc itself refuses to encode a non-string kid."""
            head = {**base, **header}
            parts = [_b64(json.dumps(part).encode()) for part in (head, claims)]
            signing_input = ".".join(parts).encode()
            signer = Ed25519PrivateKey.from_private_bytes(key.private_key.private_bytes_raw())
            return f"{signing_input.decode()}.{_b64(signer.sign(signing_input))}"

        # The hand-signed control passes: only the kid below is wrong.
        assert me(http, raw(signing, kid=signing.thumbprint())).status_code == 200

        # Each key verifies what it signed when the kid names it (a fresh token string each).
        assert me(http, token(verifying, kid=verifying.thumbprint())).status_code == 200
        assert me(http, token(signing, kid=signing.thumbprint())).status_code == 200
        # The kid names the other key of the set: refused (the kid picks, nothing else is tried).
        assert me(http, token(verifying, kid=signing.thumbprint())).status_code == 401
        assert me(http, token(signing, kid=verifying.thumbprint())).status_code == 401
        # No kid, a kid nobody has, a kid of the wrong type: refused.
        assert me(http, token(signing)).status_code == 401
        assert me(http, token(signing, kid="A" * 43)).status_code == 401
        assert me(http, raw(signing, kid=["x"])).status_code == 401
        assert me(http, raw(signing, kid=None)).status_code == 401
        assert me(http, raw(signing, kid=42)).status_code == 401
        assert me(http, user.access).status_code == 200


def test_an_earlier_releases_key_pair_migrates_with_its_tokens(
    stack: Stack, tmp_path: Path
) -> None:
    """The single key pair of earlier releases becomes the keyset's signing key: same kid,
    so tokens issued before the migration stay valid."""
    private, public = tmp_path / "jwt_ed25519.pem", tmp_path / "jwt_ed25519.pub.pem"
    made = stack.run_cli(
        "irontrack-keygen", "--private-key", str(private), "--public-key", str(public)
    )
    assert made.returncode == 0, made.stderr
    pair = {
        "IRONTRACK_JWT_PRIVATE_KEY_PATH": str(private),
        "IRONTRACK_JWT_PUBLIC_KEY_PATH": str(public),
    }
    env = {k: v for k, v in stack.app_env(**pair).items() if k != "IRONTRACK_JWT_KEYSET_PATH"}
    server = Server(env, stack.root, "pair")
    try:
        server.start()
        with server.client() as http:
            (legacy_kid,) = _jwks(http)
            user = signup_and_login(http, "legacy")
            assert _header(user.access)["kid"] == legacy_kid
    finally:
        server.stop()

    path = tmp_path / "keyset.json"
    imported = _keyset(stack, "init", str(path), "--import-private-key", str(private))
    assert imported["signing"] == legacy_kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with _serving(stack, "migrated", IRONTRACK_JWT_KEYSET_PATH=str(path)) as http:
        assert _jwks(http) == [legacy_kid]
        assert me(http, user.access).status_code == 200


def _pem(key: object) -> str:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _good(stack: Stack, tmp_path: Path) -> list[dict]:
    path = tmp_path / "good.json"
    _keyset(stack, "init", str(path))
    _keyset(stack, "stage", str(path))
    return json.loads(path.read_text())["keys"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no signing key", "exactly one key must be 'signing' (found none)"),
        ("two signing keys", "exactly one key must be 'signing' (found "),
        ("mode 0644", "is too open for a private key"),
        ("group-writable", "is too open for a private key"),
        ("missing file", "cannot read JWT key"),
        ("not JSON", "not valid JSON"),
        ("no keys", "the keyset has no key"),
        ("unknown state", "state must be 'signing' or 'verifying'"),
        ("not Ed25519", "JWT keys must be Ed25519"),
        ("bad PEM", "not a valid unencrypted PEM private key"),
        ("wrong kid", "does not match the key"),
        ("same key twice", "appears twice"),
        ("typo in a field", "unknown field(s) sate"),
        ("pair and keyset", "not both"),
    ],
)
def test_a_bad_keyset_stops_the_start_with_a_clear_message(
    stack: Stack, tmp_path: Path, case: str, message: str
) -> None:
    keys = _good(stack, tmp_path)
    signing, verifying = keys
    mode = 0o640
    data: object = {"keys": keys}
    if case == "no signing key":
        data = {"keys": [{**signing, "state": "verifying"}, verifying]}
    elif case == "two signing keys":
        data = {"keys": [signing, {**verifying, "state": "signing"}]}
    elif case == "mode 0644":
        mode = 0o644
    elif case == "group-writable":
        mode = 0o660
    elif case == "no keys":
        data = {"keys": []}
    elif case == "unknown state":
        data = {"keys": [signing, {**verifying, "state": "retired"}]}
    elif case == "not Ed25519":
        data = {
            "keys": [
                signing,
                {**verifying, "private_pem": _pem(ec.generate_private_key(ec.SECP256R1()))},
            ]
        }
    elif case == "bad PEM":
        data = {
            "keys": [signing, {**verifying, "private_pem": "-----BEGIN PRIVATE KEY-----\nxx\n"}]
        }
    elif case == "wrong kid":
        data = {"keys": [{**signing, "kid": verifying["kid"]}, verifying]}
    elif case == "same key twice":
        data = {"keys": [signing, {**signing, "state": "verifying"}]}
    elif case == "typo in a field":
        data = {"keys": [signing, {"private_pem": verifying["private_pem"], "sate": "verifying"}]}
    path = tmp_path / "keyset.json"
    if case != "missing file":
        path.write_text(json.dumps(data) if case != "not JSON" else "{keys: ")
        os.chmod(path, mode)
    env = stack.app_env(IRONTRACK_JWT_KEYSET_PATH=str(path))
    if case == "pair and keyset":
        env["IRONTRACK_JWT_PRIVATE_KEY_PATH"] = str(tmp_path / "x.pem")
        env["IRONTRACK_JWT_PUBLIC_KEY_PATH"] = str(tmp_path / "x.pub.pem")
    result = stack.run_cli("irontrack-check-config", env=env)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # The server itself refuses to start on the same keyset.
    if case in ("two signing keys", "mode 0644"):
        server = Server(env, stack.root, f"bad-{case.replace(' ', '-')}")
        with pytest.raises((RuntimeError, TimeoutError)):
            server.start(timeout=20)
        server.stop()
        assert message in server.log_path.read_text()


def test_check_config_names_the_keyset(stack: Stack) -> None:
    result = stack.run_cli("irontrack-check-config")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(stack.keyset_path.read_text())["keys"]
    assert f"signing {entry['kid']}, 0 more verifying" in result.stdout
