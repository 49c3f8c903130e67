"""Ed25519 JWTs with joserfc: only ``alg: Ed25519`` is signed and accepted.

Tokens are signed by the keyset's signing key and carry its ``kid`` (RFC 7638 thumbprint);
a token is verified with the key its ``kid`` names, and one without a ``kid`` or with a
``kid`` outside the keyset is rejected."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from uuid_utils import uuid4

from .keyset import Keyset

ALGORITHM = "Ed25519"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068: an access token, not an ID token or another JWT of ours
_ALGORITHMS = (ALGORITHM,)
_MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    email: str
    iat: int
    exp: int
    jti: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: AccessClaims


class _UnknownKidError(ValueError):
    """The token names no key of the keyset (or no key at all)."""


class TokenService:
    """Signs and verifies access tokens; key objects are built once, at start."""

    def __init__(
        self,
        keyset: Keyset,
        ttl: int,
        issuer: str | None = None,
        audience: str = "irontrack",
        cache_size: int = 10000,
    ):
        self._private = keyset.signing.private
        self.kid = keyset.signing.kid
        self._verifying: dict[str, OKPKey] = keyset.by_kid()
        self._header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self.kid}
        self._audience = audience
        self._ttl = ttl
        self._issuer = issuer
        # Verified token -> claims. A token string is immutable and its signature was checked
        # once; expiry is re-checked on every hit and revocation is the session store's job.
        self._verified: dict[str, AccessClaims] = {}
        self._cache_size = cache_size
        # The signing key first, then every key that still verifies.
        ordered = sorted(keyset.keys, key=lambda entry: entry.kid != self.kid)
        self.jwks: dict[str, Any] = {
            "keys": [
                entry.public.as_dict(private=False, kid=entry.kid, use="sig", alg=ALGORITHM)
                for entry in ordered
            ]
        }

    def issue(self, sub: str, email: str, now: int | None = None) -> IssuedToken:
        iat = int(time.time()) if now is None else now
        claims = AccessClaims(sub=sub, email=email, iat=iat, exp=iat + self._ttl, jti=str(uuid4()))
        payload: dict[str, Any] = {
            "sub": claims.sub,
            "email": claims.email,
            "iat": claims.iat,
            "exp": claims.exp,
            "jti": claims.jti,
            "aud": self._audience,
        }
        if self._issuer:
            payload["iss"] = self._issuer
        token = jwt.encode(self._header, payload, self._private, algorithms=_ALGORITHMS)
        return IssuedToken(token=token, claims=claims)

    def verify(self, token: str) -> AccessClaims | None:
        """The claims of a valid, unexpired token signed with Ed25519 by the keyset's key that
        its ``kid`` names; else None."""
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            if cached.exp > now:
                return cached
            self._verified.pop(token, None)
            return None
        if len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 2:
            return None
        try:
            decoded = jwt.decode(token, self._key_for, algorithms=_ALGORITHMS)
        except (JoseError, ValueError, TypeError, UnicodeError):
            return None
        if decoded.header.get("alg") != ALGORITHM:  # defence in depth; joserfc enforces it
            return None
        if decoded.header.get("typ") != TOKEN_TYPE:
            return None
        aud = decoded.claims.get("aud")
        if not (aud == self._audience or (isinstance(aud, list) and self._audience in aud)):
            return None
        claims = _claims(decoded.claims, now, self._issuer)
        if claims is None:
            return None
        if len(self._verified) >= self._cache_size:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = claims
        return claims

    def _key_for(self, obj: Any) -> OKPKey:
        kid = obj.headers().get("kid")
        key = self._verifying.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise _UnknownKidError("no key of the keyset has this kid")
        return key


def _claims(raw: dict[str, Any], now: float, issuer: str | None) -> AccessClaims | None:
    sub, email, iat, exp, jti = (raw.get(k) for k in ("sub", "email", "iat", "exp", "jti"))
    if not (isinstance(sub, str) and isinstance(email, str) and isinstance(jti, str)):
        return None
    if not (type(iat) is int and type(exp) is int):
        return None
    if exp <= now or iat > now + 60:
        return None
    if issuer and raw.get("iss") != issuer:
        return None
    return AccessClaims(sub=sub, email=email, iat=iat, exp=exp, jti=jti)
