"""Every kind of bad access token is a clean 401, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from conftest import me, signup_and_login
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import Stack
from joserfc import jwt
from joserfc.jwk import OKPKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _our_key(stack: Stack) -> OKPKey:
    """The signing key of the service's keyset."""
    (entry,) = json.loads(stack.keyset_path.read_text())["keys"]
    return OKPKey.import_key(entry["private_pem"])


_HEADER = {"alg": "Ed25519", "typ": "at+jwt"}


def _header(key: OKPKey, header: dict[str, object] = _HEADER) -> dict[str, object]:
    """``header`` naming our key's kid: only what the test changes is wrong."""
    return {**header, "kid": _our_kid(key)}


def _our_kid(key: OKPKey) -> str:
    return OKPKey.import_key(key.as_dict(private=False)).thumbprint()


def _claims(sub: str, email: str, **over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "email": email,
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "aud": "irontrack",
    }
    claims.update(over)
    return claims


def _unsigned(header: dict[str, object], claims: dict[str, object], signature: bytes) -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _assert_401(http: httpx.Client, token: str) -> None:
    for how in ("quoted", "plain", "bearer") if token.strip() else ("quoted", "plain"):
        answer = me(http, token, how)
        assert answer.status_code == 401, (how, answer.status_code, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "a.b", "....", "ey.ey.ey", "x" * 5000, "%00.%00.%00", '"', "a=b;c"],
)
def test_garbage(client: httpx.Client, token: str) -> None:
    _assert_401(client, token)


def test_no_token(client: httpx.Client) -> None:
    assert client.get("/api/v1/access/me").status_code == 401
    assert (
        client.get("/api/v1/access/me", headers={"Authorization": "Basic Zm9vOmJhcg=="}).status_code
        == 401
    )


def test_expired(client: httpx.Client, stack: Stack) -> None:
    user = signup_and_login(client, "expired")
    genuine = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    past = int(time.time()) - 3600
    claims = {**genuine, "iat": past - 1800, "exp": past}  # live jti: only expiry is wrong
    key = _our_key(stack)
    token = jwt.encode(_header(key), claims, key, algorithms=["Ed25519"])
    _assert_401(client, token)


def test_tampered_payload(client: httpx.Client) -> None:
    user = signup_and_login(client, "tamper")
    head, _, sig = user.access.split(".")
    forged = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    forged["email"] = "admin@example.com"
    token = f"{head}.{_b64(json.dumps(forged).encode())}.{sig}"
    _assert_401(client, token)
    assert me(client, user.access).status_code == 200  # the genuine one still works


def test_tampered_signature(client: httpx.Client) -> None:
    user = signup_and_login(client, "tampersig")
    head, body, sig = user.access.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[0] ^= 0x01
    _assert_401(client, f"{head}.{body}.{_b64(bytes(raw))}")


def test_alg_none(client: httpx.Client) -> None:
    user = signup_and_login(client, "none")
    claims = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    for alg in ("none", "None", "NONE"):
        _assert_401(client, _unsigned({"alg": alg, "typ": "JWT"}, claims, b""))


def test_hs256_signed_with_the_public_key(client: httpx.Client, stack: Stack) -> None:
    """The classic algorithm-confusion attack: HMAC keyed with the (public) verification key."""
    user = signup_and_login(client, "hs256")
    claims = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    public_pem = OKPKey.import_key(_our_key(stack).as_dict(private=False)).as_pem()
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
    )
    for secret in (public_pem, public_pem.strip(), b"secret"):
        signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
        _assert_401(client, f"{signing_input.decode()}.{_b64(signature)}")


def test_eddsa_alg_is_not_accepted(client: httpx.Client, stack: Stack) -> None:
    """Only the fully-specified ``Ed25519`` is accepted, not the polymorphic ``EdDSA``."""
    user = signup_and_login(client, "eddsa")
    claims = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    key = Ed25519PrivateKey.from_private_bytes(_our_key(stack).private_key.private_bytes_raw())
    header = {"alg": "EdDSA", "typ": "JWT"}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
    )
    token = f"{signing_input.decode()}.{_b64(key.sign(signing_input))}"
    _assert_401(client, token)


def test_signed_by_another_key(client: httpx.Client, stack: Stack) -> None:
    """Another key, whether the token names our kid or the other key's own."""
    user = signup_and_login(client, "otherkey")
    claims = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    other = OKPKey.generate_key("Ed25519")
    for header in (_header(_our_key(stack)), _header(other)):
        _assert_401(client, jwt.encode(header, claims, other, algorithms=["Ed25519"]))


def test_unknown_jti(client: httpx.Client, stack: Stack) -> None:
    """Perfectly signed, unexpired — but no such session in Valkey."""
    user = signup_and_login(client, "jti")
    key = _our_key(stack)
    token = jwt.encode(_header(key), _claims(user.user_id, user.email), key, ["Ed25519"])
    _assert_401(client, token)


def test_session_of_another_subject(client: httpx.Client, stack: Stack) -> None:
    """A signed token that reuses a live jti but names another user is refused."""
    user = signup_and_login(client, "subj")
    jti = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))["jti"]
    claims = _claims(str(uuid.uuid4()), "mallory@example.com", jti=jti)
    key = _our_key(stack)
    token = jwt.encode(_header(key), claims, key, ["Ed25519"])
    _assert_401(client, token)


@pytest.mark.parametrize(
    "over",
    [
        {"exp": "9999999999"},
        {"exp": None},
        {"sub": 42},
        {"jti": ["x"]},
        {"iat": 1.5},
    ],
)
def test_malformed_claims(client: httpx.Client, stack: Stack, over: dict[str, object]) -> None:
    """Signed by our key, naming a live session: only the malformed claim is wrong."""
    user = signup_and_login(client, "claims")
    genuine = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    key = _our_key(stack)
    control = jwt.encode(_header(key), dict(genuine), key, ["Ed25519"])
    assert me(client, control).status_code == 200  # the same claims, well-formed, pass
    token = jwt.encode(_header(key), {**genuine, **over}, key, ["Ed25519"])
    _assert_401(client, token)


def test_jwks_publishes_the_verification_key(client: httpx.Client, stack: Stack) -> None:
    answer = client.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    (jwk,) = answer.json()["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "Ed25519")
    assert "d" not in jwk
    user = signup_and_login(client, "jwks")
    decoded = jwt.decode(user.access, OKPKey.import_key(jwk), algorithms=["Ed25519"])
    assert decoded.header["alg"] == "Ed25519"
    assert decoded.header["kid"] == jwk["kid"]
    assert set(decoded.claims) >= {"sub", "email", "iat", "exp", "jti"}
    assert decoded.claims["exp"] - decoded.claims["iat"] == 1800
    assert uuid.UUID(decoded.claims["sub"]).version == 7


@pytest.mark.parametrize(
    ("header", "over"),
    [
        ({"alg": "Ed25519"}, {}),  # no typ: not declared an access token
        ({"alg": "Ed25519", "typ": "JWT"}, {}),
        ({"alg": "Ed25519", "typ": "id+jwt"}, {}),
        (_HEADER, {"aud": "another-service"}),
        (_HEADER, {"aud": ["another-service"]}),
        (_HEADER, {"aud": None}),
    ],
)
def test_typ_and_aud_are_checked(
    client: httpx.Client, stack: Stack, header: dict[str, object], over: dict[str, object]
) -> None:
    """Signed by our key, naming a live session: only typ or aud is wrong."""
    user = signup_and_login(client, "typaud")
    genuine = json.loads(base64.urlsafe_b64decode(user.access.split(".")[1] + "=="))
    key = _our_key(stack)
    control = jwt.encode(_header(key), dict(genuine), key, ["Ed25519"])
    assert me(client, control).status_code == 200
    claims = {k: v for k, v in {**genuine, **over}.items() if v is not None}
    token = jwt.encode(_header(key, header), claims, key, ["Ed25519"])
    _assert_401(client, token)
