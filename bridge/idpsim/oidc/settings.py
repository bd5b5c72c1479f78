"""The ``oidc:`` section of the simulator's users file: the OpenID Provider's issuer, algorithm and clients.

A client here is what an administrator registers at Entra, Okta or Keycloak
for the bridge: its id, how it authenticates at the token endpoint, its exact
redirect URIs (RFC 6749 section 3.1.2.2: no prefixes, no wildcards) and the
grants it may use.  Parsed once at start-up; every mistake is a ConfigError
naming the key, like the rest of the users file.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bridge.errors import ConfigError
from bridge.idpsim.state import OidcDialect
from bridge.idpsim.yamlchecks import flag, mapping, no_unknown, opt_str

_SECTION_KEYS = frozenset({"issuer", "signing_algorithm", "clients", "dialect"})
_CLIENT_KEYS = frozenset(
    {
        "client_id",
        "auth_method",
        "client_secret",
        "public_key_file",
        "jwks",
        "redirect_uris",
        "password_grant",
        "require_pkce",
        "id_token_email",
        "id_token_signed_response_alg",
    }
)


class ClientAuthMethod(enum.Enum):
    """Token endpoint authentication (OpenID Connect Core 1.0 section 9; RFC 6749 section 2.3)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method's name
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - a method's name
    PRIVATE_KEY_JWT = "private_key_jwt"
    NONE = "none"  # a public client: PKCE is all that binds the code to it


class SigningAlgorithm(enum.Enum):
    """JWS algorithms the simulator signs ID tokens with (RFC 7518 section 3.1)."""

    RS256 = "RS256"
    PS256 = "PS256"
    ES256 = "ES256"

    @property
    def is_rsa(self) -> bool:
        return self is not SigningAlgorithm.ES256


@dataclass(frozen=True, kw_only=True, slots=True)
class OidcClient:
    """One registered relying party."""

    client_id: str
    auth_method: ClientAuthMethod
    client_secret: str | None = field(default=None, repr=False)
    # private_key_jwt: the client's public key (PEM of a key or a certificate) or its JWKS, as JSON text.
    public_key_pem: bytes | None = field(default=None, repr=False)
    jwks_json: str | None = field(default=None, repr=False)
    redirect_uris: tuple[str, ...] = ()
    password_grant: bool = False
    require_pkce: bool = True
    id_token_email: bool = True
    id_token_signed_response_alg: SigningAlgorithm | None = None

    def with_redirect_uris(self, *uris: str) -> OidcClient:
        """A copy that also accepts ``uris`` (the demo moves the bridge's port at start)."""
        return dataclasses.replace(self, redirect_uris=tuple(dict.fromkeys((*self.redirect_uris, *uris))))


@dataclass(frozen=True, kw_only=True, slots=True)
class OidcSettings:
    """The OpenID Provider's start-up configuration; no clients means nobody can sign in over OIDC."""

    issuer: str | None = None  # None: https://{host}/oidc as the request reached the simulator
    signing_algorithm: SigningAlgorithm = SigningAlgorithm.RS256
    clients: tuple[OidcClient, ...] = ()
    # Whose words the token endpoint refuses password grants in, from the start and after a reset
    # (the ``oidc_dialect`` control changes it while the simulator runs).
    dialect: OidcDialect = OidcDialect.KEYCLOAK

    def client(self, client_id: str) -> OidcClient | None:
        for client in self.clients:
            if client.client_id == client_id:
                return client
        return None

    @property
    def password_grant_enabled(self) -> bool:
        return any(client.password_grant for client in self.clients)

    def with_redirect_uris(self, client_id: str, *uris: str) -> OidcSettings:
        """A copy where client ``client_id`` also accepts ``uris``; KeyError if no such client."""
        if self.client(client_id) is None:
            raise KeyError(client_id)
        clients = tuple(c.with_redirect_uris(*uris) if c.client_id == client_id else c for c in self.clients)
        return dataclasses.replace(self, clients=clients)

    def with_client(self, client: OidcClient) -> OidcSettings:
        """A copy with ``client`` added, or replacing the one of the same id (tests register their own)."""
        others = tuple(c for c in self.clients if c.client_id != client.client_id)
        return dataclasses.replace(self, clients=(*others, client))


def supported_algorithms(default: SigningAlgorithm) -> tuple[SigningAlgorithm, ...]:
    """What the key ring can sign with: the default first, the RSA key's algorithm and ES256.

    The key ring holds one RSA key (published with ``alg`` RS256, or PS256 when
    that is the default) and one P-256 key, as Keycloak does with an RSA and an
    EC provider side by side.
    """
    rsa = SigningAlgorithm.PS256 if default is SigningAlgorithm.PS256 else SigningAlgorithm.RS256
    return tuple(dict.fromkeys((default, rsa, SigningAlgorithm.ES256)))


def parse_oidc_settings(data: object, *, source: str = "", base_dir: Path | None = None) -> OidcSettings:
    """Build OidcSettings from the parsed ``oidc:`` YAML section (None: no clients)."""
    if data is None:
        return OidcSettings()
    section = mapping(data, source, "oidc")
    no_unknown(section, _SECTION_KEYS, source, "oidc.")
    issuer = opt_str(section, "issuer", source, "oidc.")
    if issuer is not None:
        _check_url(issuer, source, "oidc.issuer", allow_query=False)
        issuer = issuer.rstrip("/")
    algorithm = _algorithm(section.get("signing_algorithm", SigningAlgorithm.RS256.value), source,
                           "oidc.signing_algorithm")
    raw_clients = section.get("clients", [])
    if not isinstance(raw_clients, list):
        raise ConfigError("must be a list", file=source, key="oidc.clients")
    clients = tuple(
        _client(raw, source, f"oidc.clients[{i}]", base_dir or Path(), algorithm) for i, raw in enumerate(raw_clients)
    )
    seen: set[str] = set()
    for i, client in enumerate(clients):
        if client.client_id in seen:
            raise ConfigError(f"client_id {client.client_id!r} is used twice", file=source, key=f"oidc.clients[{i}]")
        seen.add(client.client_id)
    raw_dialect = section.get("dialect", OidcDialect.KEYCLOAK.value)
    try:
        dialect = OidcDialect(raw_dialect)
    except ValueError as exc:
        choices = ", ".join(d.value for d in OidcDialect)
        raise ConfigError(f"must be one of {choices}, got {raw_dialect!r}", file=source, key="oidc.dialect") from exc
    return OidcSettings(issuer=issuer, signing_algorithm=algorithm, clients=clients, dialect=dialect)


def _client(raw: object, source: str, where: str, base: Path, default_alg: SigningAlgorithm) -> OidcClient:
    data = mapping(raw, source, where)
    prefix = f"{where}."
    no_unknown(data, _CLIENT_KEYS, source, prefix)
    client_id = opt_str(data, "client_id", source, prefix)
    if client_id is None:
        raise ConfigError("is required", file=source, key=f"{prefix}client_id")
    method_raw = data.get("auth_method", ClientAuthMethod.CLIENT_SECRET_BASIC.value)
    try:
        method = ClientAuthMethod(method_raw)
    except ValueError as exc:
        choices = ", ".join(m.value for m in ClientAuthMethod)
        raise ConfigError(f"must be one of: {choices}", file=source, key=f"{prefix}auth_method") from exc
    secret = data.get("client_secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigError("must be a non-empty string", file=source, key=f"{prefix}client_secret")
    uses_secret = method in (ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.CLIENT_SECRET_POST)
    if uses_secret and secret is None:
        raise ConfigError(f"is required with auth_method {method.value}", file=source, key=f"{prefix}client_secret")
    if not uses_secret and secret is not None:
        raise ConfigError(f"is not used with auth_method {method.value}", file=source, key=f"{prefix}client_secret")
    public_key_pem, jwks_json = _client_keys(data, method, source, prefix, base)
    uris_raw = data.get("redirect_uris", [])
    if not isinstance(uris_raw, list) or not uris_raw or not all(isinstance(u, str) and u for u in uris_raw):
        raise ConfigError("must be a non-empty list of URLs", file=source, key=f"{prefix}redirect_uris")
    for uri in uris_raw:
        _check_url(uri, source, f"{prefix}redirect_uris", allow_query=True)
    flags = {name: flag(data, name, default, source, prefix) for name, default in
             (("password_grant", False), ("require_pkce", True), ("id_token_email", True))}
    if method is ClientAuthMethod.NONE and not flags["require_pkce"]:
        raise ConfigError("a public client (auth_method none) must require PKCE", file=source,
                          key=f"{prefix}require_pkce")
    alg_raw = data.get("id_token_signed_response_alg")
    alg = None if alg_raw is None else _algorithm(alg_raw, source, f"{prefix}id_token_signed_response_alg")
    if alg is not None and alg not in supported_algorithms(default_alg):
        choices = ", ".join(a.value for a in supported_algorithms(default_alg))
        raise ConfigError(f"must be one of the keys' algorithms: {choices}", file=source,
                          key=f"{prefix}id_token_signed_response_alg")
    return OidcClient(
        client_id=client_id,
        auth_method=method,
        client_secret=secret,
        public_key_pem=public_key_pem,
        jwks_json=jwks_json,
        redirect_uris=tuple(dict.fromkeys(uris_raw)),
        password_grant=flags["password_grant"],
        require_pkce=flags["require_pkce"],
        id_token_email=flags["id_token_email"],
        id_token_signed_response_alg=alg,
    )


def _client_keys(
    data: Mapping[str, Any], method: ClientAuthMethod, source: str, prefix: str, base: Path
) -> tuple[bytes | None, str | None]:
    """The private_key_jwt client's public key: a PEM file (key or certificate) or an inline JWKS."""
    key_file = opt_str(data, "public_key_file", source, prefix)
    jwks = data.get("jwks")
    if method is not ClientAuthMethod.PRIVATE_KEY_JWT:
        if key_file is not None or jwks is not None:
            raise ConfigError("public_key_file and jwks are only used with auth_method private_key_jwt",
                              file=source, key=f"{prefix}auth_method")
        return None, None
    if (key_file is None) == (jwks is None):
        raise ConfigError("private_key_jwt needs exactly one of public_key_file and jwks", file=source,
                          key=f"{prefix}auth_method")
    if jwks is not None:
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
            raise ConfigError("must be a JWK Set (a mapping with a non-empty keys list)", file=source,
                              key=f"{prefix}jwks")
        return None, json.dumps(jwks, sort_keys=True)
    assert key_file is not None
    path = base / key_file
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror})", file=source, key=f"{prefix}public_key_file") from exc
    try:
        serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise ConfigError("must be a PEM public key or certificate", file=source,
                              key=f"{prefix}public_key_file") from exc
    return pem, None


def _check_url(url: str, source: str, key: str, *, allow_query: bool) -> None:
    """An absolute http(s) URL without a fragment (RFC 6749 section 3.1.2: redirect URIs have none)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment or "#" in url:
        raise ConfigError("must be an absolute http(s) URL without a fragment", file=source, key=key)
    if not allow_query and parts.query:
        raise ConfigError("must have no query", file=source, key=key)


def _algorithm(raw: object, source: str, key: str) -> SigningAlgorithm:
    try:
        return SigningAlgorithm(raw)
    except ValueError as exc:
        choices = ", ".join(a.value for a in SigningAlgorithm)
        raise ConfigError(f"must be one of: {choices}", file=source, key=key) from exc

