"""OidcIdp against a small OpenID provider over real HTTPS on 127.0.0.1: the flows, the caches, the refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from bridge.config import TenantConfig, load_tenant_text
from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpNotWhitelisted,
    IdpProtocolError,
    IdpRefused,
    IdpRejectedRequest,
    IdpUnreachable,
    InvalidCredentials,
    MfaRequired,
    PasswordLoginUnsupported,
)
from bridge.idp.assertion import MemoryReplayCache
from bridge.idp.http import IdpHttp, make_ssl_context
from bridge.idp.oidc.client import OidcIdp
from tests.bridge.idp.oidc.fakeidp import FakeIdp, serving
from tests.bridge.idp.oidc.helpers import CLIENT_ID, rsa_key

SECRET = "s3cr:et% with+specials"
PASSWORD = "correct horse battery staple"
PKCE_KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[FakeIdp]:
    async with serving(tmp_path) as running:
        yield running


def tenant(idp: FakeIdp, tmp_path: Path, *, whitelist: str = "127.0.0.1/32", extra: str = "",
           auth: str = "client_secret_basic", password_grant: bool = True) -> TenantConfig:
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "secret").chmod(0o600)
    auth_lines = {"client_secret_basic": "  client_secret_file: secret\n", "none": "",
                  "private_key_jwt": "  private_key_file: client.key\n  private_key_id: bridge-key\n"
                                     "  private_key_algorithm: ES256\n"}[auth]
    text = (f"id: acme\nname: Acme\ndomains: [example.com]\nprotocol: oidc\nidp_whitelist: [{whitelist}]\n"
            f"oidc:\n  issuer: {idp.issuer}\n  client_id: {CLIENT_ID}\n  client_auth: {auth}\n{auth_lines}"
            f"  ca_file: {idp.ca_file}\n  password_grant: {str(password_grant).lower()}\n  discovery_refresh_seconds: 60\n"
            f"  jwks_refresh_seconds: 30\n{extra}")
    loaded, _ = load_tenant_text(text, shown="acme.yaml", base_dir=tmp_path, default_ttl=timedelta(hours=1))
    return loaded


@pytest.fixture
async def http(idp: FakeIdp) -> AsyncIterator[IdpHttp]:
    client = IdpHttp(whitelist=(ip_network("127.0.0.1/32"),), ssl_context=make_ssl_context(idp.ca_file),
                     connect_timeout=2, timeout=5, max_connections=4)
    yield client
    await client.close()


def client_for(idp: FakeIdp, tmp_path: Path, http: IdpHttp, clock: Clock | None = None, **kw: Any) -> OidcIdp:
    return OidcIdp(tenant(idp, tmp_path, **kw), http, "https://bridge.example/", pkce_key=PKCE_KEY,
                   clock=clock or Clock())


def basic_pair(headers: dict[str, str]) -> tuple[str, str]:
    raw = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    client_id, _, secret = raw.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


async def test_browser_signin_exchanges_the_code_with_the_pkce_verifier(idp: FakeIdp, tmp_path: Path,
                                                                        http: IdpHttp) -> None:
    client = client_for(idp, tmp_path, http)
    assert client.redirect_uri == "https://bridge.example/oidc/acme/callback"
    redirect = await client.begin_browser_signin(state="state-123", login_hint="alice@example.com")
    query = parse_qs(urlsplit(redirect.url).query)
    assert redirect.url.startswith(idp.issuer + "/protocol/openid-connect/auth?")
    assert query["nonce"] == [redirect.request_id] and query["state"] == ["state-123"]
    assert query["code_challenge_method"] == ["S256"] and query["login_hint"] == ["alice@example.com"]
    assert query["redirect_uri"] == [client.redirect_uri] and query["scope"] == ["openid email profile"]
    idp.nonce = redirect.request_id
    replay = MemoryReplayCache()
    token = await client.finish_browser_signin(form={"code": "the-code", "state": "state-123", "iss": idp.issuer},
                                               request_id=redirect.request_id, replay=replay)
    assert (token.subject, token.issuer, token.sub) == ("alice@example.com", idp.issuer, "248289761001")
    form, headers = idp.token_requests[-1]
    assert form["grant_type"] == "authorization_code" and form["code"] == "the-code"
    assert form["redirect_uri"] == client.redirect_uri and "client_secret" not in form
    verifier = form["code_verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert [challenge] == query["code_challenge"] and len(verifier) == 43
    assert basic_pair(headers) == (CLIENT_ID, SECRET)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded" and headers["Accept"] == "application/json"
    assert len(replay) == 1


async def test_browser_answers_that_are_refused(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    client = client_for(idp, tmp_path, http)
    redirect = await client.begin_browser_signin(state="s1")
    replay = MemoryReplayCache()
    with pytest.raises(AccessDenied) as denied:
        await client.finish_browser_signin(form={"error": "access_denied", "error_description": "User said no",
                                                 "state": "s1"}, request_id=redirect.request_id, replay=replay)
    assert denied.value.cause == "IdP answered access_denied"
    with pytest.raises(AssertionRejected) as mixed_up:
        await client.finish_browser_signin(form={"code": "c", "state": "s1", "iss": "https://evil.example"},
                                           request_id=redirect.request_id, replay=replay)
    assert mixed_up.value.reason == "issuer"
    assert idp.hits["token"] == 0
    idp.nonce = "another sign-in's nonce"
    with pytest.raises(AssertionRejected) as wrong_nonce:
        await client.finish_browser_signin(form={"code": "c", "state": "s1"}, request_id=redirect.request_id,
                                           replay=replay)
    assert wrong_nonce.value.reason == "nonce"
    idp.token_answer = lambda form: (400, {"error": "invalid_grant", "error_description": "Code not valid"})
    with pytest.raises(AssertionRejected) as used:
        await client.finish_browser_signin(form={"code": "c", "state": "s1"}, request_id=redirect.request_id,
                                           replay=replay)
    assert used.value.reason == "code_refused"
    with pytest.raises(IdpProtocolError):
        await client.finish_browser_signin(form={"state": "s1"}, request_id=redirect.request_id, replay=replay)


async def test_password_grant_and_a_replayed_token(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    client = client_for(idp, tmp_path, http)
    replay = MemoryReplayCache()
    token = await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    assert token.subject == "alice@example.com" and token.amr == ("pwd", "mfa")
    form, headers = idp.token_requests[-1]
    assert form == {"grant_type": "password", "username": "alice@example.com", "password": PASSWORD,
                    "scope": "openid email profile"}
    assert basic_pair(headers) == (CLIENT_ID, SECRET)
    idp.fixed_id_token = idp.id_token()
    await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    with pytest.raises(AssertionRejected) as info:
        await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    assert info.value.reason == "replayed"


async def test_the_password_grant_off_makes_no_request(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    client = client_for(idp, tmp_path, http, password_grant=False)
    with pytest.raises(PasswordLoginUnsupported) as info:
        await client.authenticate(username="alice@example.com", password=PASSWORD, replay=MemoryReplayCache())
    assert "pairing" in info.value.detail and sum(idp.hits.values()) == 0


ENTRA = "AADSTS{}: Due to a configuration change made by your administrator. Trace ID: 1"


@pytest.mark.parametrize(("status", "body", "kind"), [
    (400, {"error": "invalid_grant", "error_description": "Invalid user credentials"}, InvalidCredentials),
    (400, {"error": "invalid_grant", "error_description": "The credentials provided were invalid."},
     InvalidCredentials),
    (400, {"error": "invalid_grant", "error_description": "Account disabled"}, AccessDenied),
    (400, {"error": "invalid_grant", "error_description": ENTRA.format(50126), "error_codes": [50126]},
     InvalidCredentials),
    (400, {"error": "interaction_required", "error_description": ENTRA.format(50076), "error_codes": [50076]},
     MfaRequired),
    (400, {"error": "invalid_grant", "error_description": ENTRA.format(53003), "error_codes": [53003]}, AccessDenied),
    (400, {"error": "invalid_grant", "error_description": ENTRA.format(99999), "error_codes": [99999]}, IdpRefused),
    (401, {"error": "invalid_client", "error_description": "Invalid client credentials"}, IdpRejectedRequest),
    (400, {"error": "unauthorized_client", "error_description": "Client not allowed for direct access grants"},
     IdpRejectedRequest),
    (503, b"<html>maintenance</html>", IdpUnreachable),
    (200, b"<html>not json</html>", IdpProtocolError),
])
async def test_password_grant_error_dialects(idp: FakeIdp, tmp_path: Path, http: IdpHttp, status: int, body: Any,
                                            kind: type[BridgeError]) -> None:
    idp.token_answer = lambda form: (status, body)
    client = client_for(idp, tmp_path, http)
    with pytest.raises(BridgeError) as info:
        await client.authenticate(username="alice@example.com", password=PASSWORD, replay=MemoryReplayCache())
    assert type(info.value) is kind
    assert PASSWORD not in str(info.value) + info.value.detail + info.value.cause


async def test_private_key_jwt_client_assertion(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "client.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    (tmp_path / "client.key").chmod(0o600)
    client = client_for(idp, tmp_path, http, auth="private_key_jwt")
    await client.authenticate(username="alice@example.com", password=PASSWORD, replay=MemoryReplayCache())
    form, headers = idp.token_requests[-1]
    assert "Authorization" not in headers and form["client_id"] == CLIENT_ID
    public = ECKey.import_key(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    assertion = jwt.decode(form["client_assertion"], public, algorithms=["ES256"])
    assert assertion.header["kid"] == "bridge-key"
    assert assertion.claims["aud"] == idp.token_endpoint and assertion.claims["iss"] == CLIENT_ID


async def test_a_public_client_sends_only_its_id(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    client = client_for(idp, tmp_path, http, auth="none")
    await client.authenticate(username="alice@example.com", password=PASSWORD, replay=MemoryReplayCache())
    form, headers = idp.token_requests[-1]
    assert form["client_id"] == CLIENT_ID and "Authorization" not in headers and "client_assertion" not in form


async def test_jwks_is_reread_on_an_unknown_kid_at_most_once_per_interval(idp: FakeIdp, tmp_path: Path,
                                                                          http: IdpHttp) -> None:
    clock = Clock()
    client = client_for(idp, tmp_path, http, clock)
    replay = MemoryReplayCache()
    await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    assert idp.hits["jwks"] == 1
    # The provider rotates: the new key is found by one re-read.
    idp.keys = [rsa_key(), rsa_key("rotated")]
    idp.signing_key = rsa_key("rotated")
    await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    assert idp.hits["jwks"] == 2
    # Tokens with made-up kids: no further re-read within jwks_refresh_interval (30 s).
    idp.signing_key = rsa_key("made-up")
    for _ in range(5):
        with pytest.raises(AssertionRejected) as info:
            await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
        assert info.value.reason == "unknown_key"
    assert idp.hits["jwks"] == 2
    clock.now += 31
    with pytest.raises(AssertionRejected):
        await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    assert idp.hits["jwks"] == 3 and idp.hits["discovery"] == 1


async def test_concurrent_unknown_kids_share_one_reread(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    client = client_for(idp, tmp_path, http)
    await client.signing_keys()
    idp.keys = [rsa_key("rotated")]
    idp.signing_key = rsa_key("rotated")
    replay = MemoryReplayCache()
    results = await asyncio.gather(*(client.authenticate(username="alice@example.com", password=PASSWORD,
                                                         replay=replay) for _ in range(6)))
    assert {r.subject for r in results} == {"alice@example.com"} and idp.hits["jwks"] == 2


async def test_discovery_is_cached_refreshed_and_the_last_good_copy_kept(
        idp: FakeIdp, tmp_path: Path, http: IdpHttp, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    client = client_for(idp, tmp_path, http, clock)
    first = await asyncio.gather(*(client.provider() for _ in range(5)))
    assert all(meta is first[0] for meta in first) and idp.hits["discovery"] == 1
    assert await client.provider() is first[0] and idp.hits["discovery"] == 1
    clock.now += 61
    await client.provider()
    assert idp.hits["discovery"] == 2
    idp.discovery_status = 500
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger="bridge.idp.oidc.client"):
        kept = await client.provider()
    assert kept.token_endpoint == idp.token_endpoint and idp.hits["discovery"] == 3
    assert any("keeping the previous one" in r.getMessage() for r in caplog.records)
    await client.provider(refresh=True)
    assert idp.hits["discovery"] == 4
    fresh = client_for(idp, tmp_path, http)
    with pytest.raises(IdpUnreachable):
        await fresh.provider()


async def test_a_discovery_document_for_another_issuer_is_refused(idp: FakeIdp, tmp_path: Path,
                                                                  http: IdpHttp) -> None:
    idp.extra_discovery = {"issuer": "https://127.0.0.1/other"}
    with pytest.raises(IdpProtocolError) as info:
        await client_for(idp, tmp_path, http).provider()
    assert "https://127.0.0.1/other" in info.value.detail and idp.issuer in info.value.detail


async def test_userinfo_supplies_a_missing_email_claim(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    idp.claim_overrides = {"email": None}
    client = client_for(idp, tmp_path, http)
    replay = MemoryReplayCache()
    token = await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    assert token.subject == "alice@example.com" and idp.hits["userinfo"] == 1
    assert idp.userinfo_requests[-1]["Authorization"] == "Bearer AT-1"
    idp.userinfo = {"sub": "someone-else", "email": "mallory@example.com"}
    with pytest.raises(AssertionRejected) as info:
        await client.authenticate(username="alice@example.com", password=PASSWORD, replay=replay)
    assert info.value.reason == "subject_mismatch"


async def test_an_idp_outside_the_whitelist_is_never_contacted(idp: FakeIdp, tmp_path: Path) -> None:
    configured = tenant(idp, tmp_path, whitelist="10.9.0.0/16")
    outside = IdpHttp(whitelist=configured.idp_whitelist, ssl_context=make_ssl_context(idp.ca_file),
                      connect_timeout=2, timeout=5, max_connections=2)
    try:
        client = OidcIdp(configured, outside, "https://bridge.example", pkce_key=PKCE_KEY)
        with pytest.raises(IdpNotWhitelisted):
            await client.authenticate(username="alice@example.com", password=PASSWORD, replay=MemoryReplayCache())
        with pytest.raises(IdpNotWhitelisted):
            await client.begin_browser_signin(state="s")
    finally:
        await outside.close()
    assert sum(idp.hits.values()) == 0


async def test_a_sign_in_page_outside_the_whitelist_is_refused(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    idp.extra_discovery = {"authorization_endpoint": "https://10.9.9.9/auth"}
    client = client_for(idp, tmp_path, http)
    with pytest.raises(IdpNotWhitelisted):
        await client.begin_browser_signin(state="s")
    assert idp.hits["discovery"] == 1 and idp.hits["token"] == 0


async def test_a_provider_that_promises_iss_must_send_it(idp: FakeIdp, tmp_path: Path, http: IdpHttp) -> None:
    """RFC 9207 section 2.4: with authorization_response_iss_parameter_supported, an answer without iss is refused."""
    idp.extra_discovery["authorization_response_iss_parameter_supported"] = True
    client = client_for(idp, tmp_path, http)
    redirect = await client.begin_browser_signin(state="s-iss")
    idp.nonce = redirect.request_id
    with pytest.raises(AssertionRejected) as missing:
        await client.finish_browser_signin(form={"code": "c", "state": "s-iss"}, request_id=redirect.request_id,
                                           replay=MemoryReplayCache())
    assert missing.value.reason == "issuer" and idp.hits["token"] == 0
    token = await client.finish_browser_signin(form={"code": "c", "state": "s-iss", "iss": idp.issuer},
                                               request_id=redirect.request_id, replay=MemoryReplayCache())
    assert token.subject == "alice@example.com"
