"""A small OpenID provider over real HTTPS on 127.0.0.1 for the client tests (its CA made here, trusted by ca_file)."""

from __future__ import annotations

import ipaddress
import json
import secrets
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tests.bridge.idp.oidc.helpers import CLIENT_ID, claims, rsa_key, sign

REALM = "/realms/acme"


def write_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """(ca_file, cert_file, key_file): a CA, and a server certificate for 127.0.0.1 that it signed."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oidc test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


TokenAnswer = Callable[[dict[str, str]], tuple[int, Any]]


@dataclass
class FakeIdp:
    """What the provider serves, what it was sent, and how often each document was read."""

    base: str = ""
    ca_file: Path = Path()
    hits: Counter[str] = field(default_factory=Counter)
    keys: list[RSAKey | ECKey | OKPKey] = field(default_factory=lambda: [rsa_key()])
    signing_key: RSAKey | ECKey | OKPKey = field(default_factory=rsa_key)
    extra_discovery: dict[str, Any] = field(default_factory=dict)
    discovery_status: int = 200
    token_requests: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)
    userinfo_requests: list[dict[str, str]] = field(default_factory=list)
    claim_overrides: dict[str, Any] = field(default_factory=dict)
    token_answer: TokenAnswer | None = None  # None: issue an ID token for whatever was asked
    fixed_id_token: str | None = None
    userinfo: dict[str, Any] = field(default_factory=lambda: {"sub": "248289761001", "email": "alice@example.com"})
    nonce: str | None = None

    @property
    def issuer(self) -> str:
        return self.base + REALM

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/protocol/openid-connect/token"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/protocol/openid-connect/auth",
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.issuer + "/protocol/openid-connect/certs",
            "userinfo_endpoint": self.issuer + "/protocol/openid-connect/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
            **self.extra_discovery,
        }

    def id_token(self, **overrides: Any) -> str:
        values = {"iss": self.issuer, "aud": CLIENT_ID, "nonce": self.nonce, "jti": secrets.token_hex(8),
                  **self.claim_overrides, **overrides}
        alg = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[self.signing_key.key_type]
        return sign(claims(**values), self.signing_key, alg)

    async def _discovery(self, _: web.Request) -> web.Response:
        self.hits["discovery"] += 1
        if self.discovery_status != 200:
            return web.Response(status=self.discovery_status, text="<html>down</html>", content_type="text/html")
        return web.json_response(self.discovery())

    async def _jwks(self, _: web.Request) -> web.Response:
        self.hits["jwks"] += 1
        return web.json_response({"keys": [k.as_dict(private=False) for k in self.keys]})

    async def _token(self, request: web.Request) -> web.Response:
        self.hits["token"] += 1
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_requests.append((form, dict(request.headers)))
        if self.token_answer is not None:
            status, body = self.token_answer(form)
            if isinstance(body, bytes):
                return web.Response(status=status, body=body, content_type="text/html")
            return web.json_response(body, status=status)
        token = self.fixed_id_token or self.id_token()
        return web.json_response({"token_type": "Bearer", "access_token": "AT-1", "expires_in": 300,
                                  "id_token": token})

    async def _userinfo(self, request: web.Request) -> web.Response:
        self.hits["userinfo"] += 1
        self.userinfo_requests.append(dict(request.headers))
        return web.Response(text=json.dumps(self.userinfo), content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(REALM + "/.well-known/openid-configuration", self._discovery)
        app.router.add_get(REALM + "/protocol/openid-connect/certs", self._jwks)
        app.router.add_post(REALM + "/protocol/openid-connect/token", self._token)
        app.router.add_get(REALM + "/protocol/openid-connect/userinfo", self._userinfo)
        return app


@asynccontextmanager
async def serving(folder: Path) -> AsyncIterator[FakeIdp]:
    ca_file, cert_file, key_file = write_tls_files(folder)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    idp = FakeIdp(ca_file=ca_file)
    runner = web.AppRunner(idp.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    idp.base = f"https://127.0.0.1:{port}"
    try:
        yield idp
    finally:
        await runner.cleanup()
