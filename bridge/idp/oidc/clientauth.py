"""How the bridge authenticates itself at the token endpoint (OIDC Core 9; RFC 6749 2.3.1; RFC 7523).

``client_secret_basic``: HTTP Basic with the client id and secret, each
form-urlencoded first (RFC 6749 section 2.3.1 and Appendix B): a secret with
":" or "%" in it is otherwise read wrongly by the server.  ``private_key_jwt``:
a short-lived JWT signed with the tenant's key (RFC 7523 sections 2.2 and 3),
built and signed by joserfc.  ``none``: a public client, which sends its
client_id in the form and proves the flow with PKCE.

The secret and the key are read when first needed, the files off the event
loop, and kept; a missing one is :class:`~bridge.errors.IdpRejectedRequest`
naming the setting to fix, never the secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote_plus

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from bridge.config import OidcClientAuth, OidcConfig
from bridge.errors import IdpRejectedRequest

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 section 2.2
ASSERTION_LIFETIME_SECONDS = 60
MAX_SECRET_BYTES = 4096

SigningKey = RSAKey | ECKey | OKPKey
_KTY_FOR_ALG: dict[str, Literal["RSA", "EC", "OKP"]] = {
    **{f"{family}{bits}": "RSA" for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": "EC", "ES384": "EC", "ES512": "EC", "EdDSA": "OKP",
}


def basic_authorization(client_id: str, secret: str) -> str:
    """The ``Authorization`` header value of client_secret_basic (RFC 6749 section 2.3.1)."""
    pair = f"{quote_plus(client_id, safe='*')}:{quote_plus(secret, safe='*')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def certificate_thumbprints(pem: bytes, *, shown: str) -> dict[str, str]:
    """The JWS headers naming a certificate (RFC 7515 4.1.7 and 4.1.8): base64url SHA-256 and SHA-1 of its DER.

    Entra ID finds the credential of a private_key_jwt assertion by these, not by ``kid``
    (``x5t#S256`` now; ``x5t``, SHA-1, is what older registrations know).
    """
    try:
        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    except ValueError as exc:
        raise IdpRejectedRequest(f"client_certificate_file {shown} is not a PEM certificate") from exc

    def b64(digest: bytes) -> str:
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    return {"x5t#S256": b64(hashlib.sha256(der).digest()),
            "x5t": b64(hashlib.sha1(der, usedforsecurity=False).digest())}


def client_assertion(key: SigningKey, *, algorithm: str, key_id: str | None, client_id: str, audience: str,
                     now: datetime, thumbprints: dict[str, str] | None = None) -> str:
    """A private_key_jwt client assertion: iss = sub = client_id, aud = the token endpoint, 60 s, a fresh jti."""
    issued = int(now.timestamp())
    header: dict[str, str] = {"alg": algorithm, "typ": "JWT", **(thumbprints or {})}
    if key_id:
        header["kid"] = key_id
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "jti": secrets.token_urlsafe(24),
              "iat": issued, "exp": issued + ASSERTION_LIFETIME_SECONDS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA's new name (RFC 9864): the tenant chose it
        return jwt.encode(header, claims, key, algorithms=[algorithm])


def load_signing_key(pem: bytes, *, algorithm: str, shown: str) -> SigningKey:
    """The PEM private key for ``algorithm``; a key of another type is IdpRejectedRequest naming the file."""
    kty = _KTY_FOR_ALG.get(algorithm)
    if kty is None:
        raise IdpRejectedRequest(f"private_key_algorithm {algorithm} cannot sign a client assertion")
    try:
        key: SigningKey = import_key(pem, kty)
    except (JoseError, ValueError, TypeError) as exc:
        raise IdpRejectedRequest(f"private_key_file {shown} does not hold a {kty} private key, which "
                                 f"private_key_algorithm {algorithm} needs") from exc
    if not key.is_private:
        raise IdpRejectedRequest(f"private_key_file {shown} holds a public key; a private key is needed")
    try:
        client_assertion(key, algorithm=algorithm, key_id=None, client_id="check", audience="https://check/",
                         now=datetime.fromtimestamp(0, UTC))
    except (JoseError, ValueError, TypeError) as exc:
        raise IdpRejectedRequest(f"the key in private_key_file {shown} cannot sign {algorithm} "
                                 "(another curve or size)") from exc
    return key


@dataclass(kw_only=True, slots=True)
class TokenRequestAuth:
    """What a token request carries to authenticate the client: form fields and headers."""

    form: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # it carries the secret or the assertion
        return f"TokenRequestAuth(form={sorted(self.form)}, headers={sorted(self.headers)})"


class ClientCredentials:
    """The tenant's client secret or key, read once when first needed."""

    def __init__(self, cfg: OidcConfig) -> None:
        self._cfg = cfg
        self._secret: str | None = None
        self._key: SigningKey | None = None
        self._thumbprints: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def secret(self) -> str | None:
        """The client secret (client_secret_basic), also the HMAC key of HS* ID tokens; None for other clients."""
        cfg = self._cfg
        if cfg.client_auth is not OidcClientAuth.CLIENT_SECRET_BASIC:
            return None
        if self._secret is None:
            async with self._lock:
                if self._secret is None:
                    self._secret = await self._read_secret()
        return self._secret

    async def _read_secret(self) -> str:
        cfg = self._cfg
        if cfg.client_secret_env is not None:
            value = os.environ.get(cfg.client_secret_env, "")
            if not value.strip():
                raise IdpRejectedRequest(f"the client secret is missing: environment variable "
                                         f"{cfg.client_secret_env} (oidc.client_secret_env) is not set or empty")
            return value.strip()
        path = cfg.client_secret_file
        if path is None:
            raise IdpRejectedRequest("client_secret_basic needs oidc.client_secret_env or oidc.client_secret_file")
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise IdpRejectedRequest(f"the client secret file {path} (oidc.client_secret_file) cannot be read: "
                                     f"{exc.strerror or type(exc).__name__}") from exc
        try:
            value = raw[:MAX_SECRET_BYTES + 1].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise IdpRejectedRequest(f"the client secret file {path} is not UTF-8 text") from exc
        if not value or len(raw) > MAX_SECRET_BYTES:
            raise IdpRejectedRequest(f"the client secret file {path} (oidc.client_secret_file) is empty or "
                                     f"over {MAX_SECRET_BYTES} bytes")
        return value

    async def _signing_key(self) -> SigningKey:
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    path = self._cfg.private_key_file
                    if path is None:
                        raise IdpRejectedRequest("private_key_jwt needs oidc.private_key_file")
                    try:
                        pem = await asyncio.to_thread(path.read_bytes)
                    except OSError as exc:
                        raise IdpRejectedRequest(f"the private key file {path} (oidc.private_key_file) cannot be "
                                                 f"read: {exc.strerror or type(exc).__name__}") from exc
                    cert = self._cfg.client_certificate_file
                    if cert is not None:
                        try:
                            cert_pem = await asyncio.to_thread(cert.read_bytes)
                        except OSError as exc:
                            raise IdpRejectedRequest(f"the client certificate {cert} (oidc.client_certificate_file) "
                                                     f"cannot be read: {exc.strerror or type(exc).__name__}") from exc
                        self._thumbprints = certificate_thumbprints(cert_pem, shown=str(cert))
                    self._key = load_signing_key(pem, algorithm=self._cfg.private_key_algorithm, shown=str(path))
        return self._key

    async def for_token_request(self, token_endpoint: str, *, now: datetime) -> TokenRequestAuth:
        """The form fields and headers that authenticate the client at ``token_endpoint``."""
        cfg = self._cfg
        if cfg.client_auth is OidcClientAuth.CLIENT_SECRET_BASIC:
            secret = await self.secret()
            assert secret is not None
            return TokenRequestAuth(headers={"Authorization": basic_authorization(cfg.client_id, secret)})
        if cfg.client_auth is OidcClientAuth.PRIVATE_KEY_JWT:
            key = await self._signing_key()
            assertion = client_assertion(key, algorithm=cfg.private_key_algorithm, key_id=cfg.private_key_id,
                                         client_id=cfg.client_id, audience=token_endpoint, now=now,
                                         thumbprints=self._thumbprints)
            return TokenRequestAuth(form={"client_id": cfg.client_id, "client_assertion_type": ASSERTION_TYPE,
                                          "client_assertion": assertion})
        return TokenRequestAuth(form={"client_id": cfg.client_id})
