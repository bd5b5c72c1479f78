"""Keys and ID tokens for the OIDC tests, made with joserfc (RSA, EC P-256, Ed25519, HMAC)."""

from __future__ import annotations

import functools
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from bridge.idp.oidc.idtoken import IdTokenExpectations

ISSUER = "https://idp.example/realms/acme"
CLIENT_ID = "bridge-client"
NONCE = "n-0S6_WzA2Mj"
SECRET = "s3cr:et%with spaces+and/such"

AnyKey = RSAKey | ECKey | OKPKey | OctKey


def rsa_key(kid: str = "rsa1") -> RSAKey:
    return _rsa_key(kid)


@functools.cache
def _rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid})


def ec_key(kid: str = "ec1") -> ECKey:
    return _ec_key(kid)


@functools.cache
def _ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def ed_key(kid: str = "ed1") -> OKPKey:
    return _ed_key(kid)


@functools.cache
def _ed_key(kid: str) -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": kid})


def jwks_doc(*keys: RSAKey | ECKey | OKPKey, private: bool = False, **extra: Any) -> dict[str, Any]:
    return {"keys": [{**k.as_dict(private=private), **extra} for k in keys]}


def jwks_bytes(*keys: RSAKey | ECKey | OKPKey, **extra: Any) -> bytes:
    return json.dumps(jwks_doc(*keys, **extra)).encode()


def claims(now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {
        "iss": ISSUER, "aud": CLIENT_ID, "sub": "248289761001", "email": "alice@example.com",
        "iat": int(now.timestamp()), "exp": int((now + timedelta(minutes=5)).timestamp()),
        "nonce": NONCE, "jti": "id-token-1", "amr": ["pwd", "mfa"], "auth_time": int(now.timestamp()) - 10,
    }
    for name, value in overrides.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return values


def sign(payload: dict[str, Any] | bytes, key: AnyKey, alg: str = "RS256", **header: Any) -> str:
    """A JWS compact token; ``kid`` comes from the key unless the header says otherwise (None: no kid)."""
    protected: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    kid = header.pop("kid", key.kid if not isinstance(key, OctKey) else None)
    if kid is not None:
        protected["kid"] = kid
    protected.update(header)
    protected = {name: value for name, value in protected.items() if value is not None}  # None: leave it out
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(protected, body, key, algorithms=[alg])


def expectations(**overrides: Any) -> IdTokenExpectations:
    values: dict[str, Any] = {
        "issuer": ISSUER, "client_id": CLIENT_ID, "algorithms": ("RS256", "ES256", "EdDSA"),
        "clock_skew": timedelta(seconds=300), "email_claim": "email", "nonce": NONCE, "client_secret": None,
    }
    values.update(overrides)
    return IdTokenExpectations(**values)
