"""The simulator's OpenID Provider: discovery, JWKS, the authorization code flow with PKCE, userinfo, keys.

Real HTTP over loopback TLS; the browser is aiohttp's client and the standard
library's HTML parser; ID tokens are verified with joserfc against the JWKS.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pyotp
import pytest
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import KeySet

from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.idpsim.state import FailMode
from tests.bridge.idpsim.browser_forms import only_form, read_page
from tests.bridge.idpsim.conftest import OIDC_REDIRECT, OIDC_SECRET, OidcClients
from tests.bridge.idpsim.oidc_browser import Rp, basic, query_of

NINA, NINA_PASSWORD, NINA_SECRET = "nina@example.net", "nina-demo-pass", "NINADEMOTOTPKEY3JBSWY3DPEHPK3PXP"
OSCAR, OSCAR_PASSWORD = "oscar@example.net", "oscar-demo-pass"
SECRETS = (NINA_PASSWORD, OSCAR_PASSWORD, NINA_SECRET, OIDC_SECRET)


@pytest.fixture
def rp(oidc_http: aiohttp.ClientSession, oidc_sim: RunningSimulator) -> Rp:
    return Rp(oidc_http, oidc_sim)


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="bridge.idpsim")
    yield
    text = caplog.text
    for secret in SECRETS:
        assert secret not in text
    # No code, token or JWT either: long base64url runs never reach the log.
    assert not re.search(r"eyJ[A-Za-z0-9_-]{20,}", text)


# --------------------------------------------------------------------------- discovery and keys


async def test_discovery_document_describes_the_op(rp: Rp) -> None:
    doc = await rp.get_json("/oidc/.well-known/openid-configuration")
    assert doc["issuer"] == rp.issuer
    assert rp.issuer.startswith("https://127.0.0.1:")
    assert doc["authorization_endpoint"] == rp.issuer + "/authorize"
    assert doc["token_endpoint"] == rp.issuer + "/token"
    assert doc["jwks_uri"] == rp.issuer + "/jwks"
    assert doc["userinfo_endpoint"] == rp.issuer + "/userinfo"
    assert doc["response_types_supported"] == ["code"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
    assert doc["grant_types_supported"] == ["authorization_code", "password"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "openid" in doc["scopes_supported"]  # type: ignore[operator]
    assert {"sub", "email", "preferred_username", "nonce"} <= set(doc["claims_supported"])  # type: ignore[arg-type]
    assert doc["authorization_response_iss_parameter_supported"] is True


async def test_configured_issuer_wins(oidc_clients: OidcClients, keys_dir: Path) -> None:
    config = dataclasses.replace(oidc_clients.config,
                                 oidc=dataclasses.replace(oidc_clients.config.oidc, issuer="https://idp.example/oidc"))
    async with run_simulator(config, keys_dir) as sim:
        context = ssl.create_default_context(cafile=str(sim.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            async with http.get(sim.base_url + "/oidc/.well-known/openid-configuration") as answer:
                doc = await answer.json()
    assert doc["issuer"] == "https://idp.example/oidc"
    assert doc["token_endpoint"] == "https://idp.example/oidc/token"


async def test_jwks_publishes_public_signing_keys(rp: Rp) -> None:
    body = await rp.get_json("/oidc/jwks")
    keys = body["keys"]
    assert isinstance(keys, list) and len(keys) == 2
    by_alg = {k["alg"]: k for k in keys}
    assert set(by_alg) == {"RS256", "ES256"}
    for key in keys:
        assert key["use"] == "sig" and key["kid"]
        assert "d" not in key and "p" not in key  # public halves only
    assert by_alg["RS256"]["kty"] == "RSA" and by_alg["ES256"]["crv"] == "P-256"


# --------------------------------------------------------------------------- the code flow


async def test_code_flow_with_totp_gives_a_verifiable_id_token(rp: Rp, oidc_sim: RunningSimulator) -> None:
    status, page, flow = await rp.authorize(extra={"login_hint": NINA})
    assert status == 200
    form = only_form(page)
    assert form.action == "/oidc/authorize" and form.method == "post"
    assert form.fields["username"] == NINA  # login_hint prefills the user name
    assert {"flow", "username", "password"} <= set(form.fields)
    assert ("action", "cancel", "Cancel") in form.buttons
    status, code_page = await rp.submit(form, username=NINA, password=NINA_PASSWORD, action="signin")
    assert status == 200
    assert "otp" in only_form(code_page).fields
    status, location = await rp.submit(only_form(code_page), otp=pyotp.TOTP(NINA_SECRET).now(), action="signin")
    assert status == 302
    assert location.startswith("https://rp.example/oidc/callback?")
    answer = query_of(location)
    assert answer["tenant"] == "t1"  # the registered URI's own query is kept
    assert answer["state"] == flow.state
    assert answer["iss"] == rp.issuer
    assert len(answer["code"]) >= 32
    flow.location = location
    status, tokens, response = await rp.redeem(flow)
    assert status == 200, tokens
    assert response.headers["Cache-Control"] == "no-store"
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "openid email profile"
    claims = await rp.verified_claims(str(tokens["id_token"]))
    assert claims["iss"] == rp.issuer
    assert claims["aud"] == "rp-basic" and claims["azp"] == "rp-basic"
    assert claims["nonce"] == flow.nonce
    assert claims["email"] == NINA and claims["email_verified"] is True
    assert claims["preferred_username"] == NINA and claims["upn"] == NINA
    assert claims["name"] == "Nina Example"
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    sub = claims["sub"]
    assert isinstance(sub, str) and "@" not in sub and len(sub) == 43
    assert isinstance(claims["exp"], int) and isinstance(claims["iat"], int)
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["auth_time"] <= claims["iat"]  # type: ignore[operator]
    assert claims["jti"]
    # The same user gets the same sub next time (a stable opaque id).
    again = await rp.sign_in(NINA, NINA_PASSWORD, totp_secret=NINA_SECRET)
    status, tokens2, _ = await rp.redeem(again)
    assert (await rp.verified_claims(str(tokens2["id_token"])))["sub"] == sub
    stats = oidc_sim.state.counters
    assert stats["oidc.authorize"] == 2 and stats["oidc.token.code"] == 2 and stats["oidc.issued"] == 2


async def test_password_only_user_gets_pwd_amr_and_userinfo(rp: Rp) -> None:
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD)
    status, tokens, _ = await rp.redeem(flow)
    assert status == 200
    claims = await rp.verified_claims(str(tokens["id_token"]))
    assert claims["amr"] == ["pwd"]
    async with rp.http.get(rp.issuer + "/userinfo",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"}) as answer:
        assert answer.status == 200
        info = await answer.json()
    assert info == {"sub": claims["sub"], "email": OSCAR, "email_verified": True, "name": "Oscar Example",
                    "preferred_username": OSCAR, "upn": OSCAR}
    # RFC 6750 2.2: the token in a form body works as well.
    async with rp.http.post(rp.issuer + "/userinfo", data={"access_token": str(tokens["access_token"])}) as answer:
        assert answer.status == 200


async def test_scope_decides_the_profile_claims(rp: Rp) -> None:
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD, scope="openid")
    status, tokens, _ = await rp.redeem(flow)
    assert status == 200 and tokens["scope"] == "openid"
    claims = await rp.verified_claims(str(tokens["id_token"]))
    assert "email" not in claims and "preferred_username" not in claims


async def test_userinfo_refuses_bad_tokens(rp: Rp) -> None:
    async with rp.http.get(rp.issuer + "/userinfo", headers={"Authorization": "Bearer not-a-token"}) as answer:
        assert answer.status == 401
        challenge = answer.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
        assert (await answer.json())["error"] == "invalid_token"
    async with rp.http.get(rp.issuer + "/userinfo") as answer:
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "error=" not in answer.headers["WWW-Authenticate"]  # RFC 6750 3.1: no token, no error code


async def test_pkce_wrong_verifier_is_invalid_grant(rp: Rp) -> None:
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD)
    status, body, _ = await rp.redeem(flow, verifier="x" * 50)
    assert status == 400 and body["error"] == "invalid_grant"
    # The code is spent even so: a right verifier afterwards is too late.
    status, body, _ = await rp.redeem(flow)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_code_reuse_is_invalid_grant_and_revokes_the_first_tokens(rp: Rp) -> None:
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD)
    status, tokens, _ = await rp.redeem(flow)
    assert status == 200
    status, body, _ = await rp.redeem(flow)
    assert status == 400 and body["error"] == "invalid_grant"
    async with rp.http.get(rp.issuer + "/userinfo",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"}) as answer:
        assert answer.status == 401


async def test_code_is_bound_to_client_and_redirect_uri(rp: Rp) -> None:
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD)
    data = {"grant_type": "authorization_code", "code": flow.answer["code"],
            "redirect_uri": OIDC_REDIRECT + "&x=1", "code_verifier": flow.verifier}
    status, body, _ = await rp.token(data, authorization=basic("rp-basic", OIDC_SECRET))
    assert status == 400 and body["error"] == "invalid_grant"
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD)
    status, body, _ = await rp.redeem(flow, client_id="rp-es256", secret="rp-es256-secret")
    assert status == 400 and body["error"] == "invalid_grant"


async def test_public_client_uses_pkce_only(rp: Rp) -> None:
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD, client_id="rp-public")
    data = {"grant_type": "authorization_code", "code": flow.answer["code"], "redirect_uri": OIDC_REDIRECT,
            "code_verifier": flow.verifier, "client_id": "rp-public"}
    status, tokens, _ = await rp.token(data)
    assert status == 200, tokens
    assert (await rp.verified_claims(str(tokens["id_token"])))["aud"] == "rp-public"


async def test_unregistered_redirect_uri_gets_a_page_not_a_redirect(rp: Rp, oidc_sim: RunningSimulator) -> None:
    for uri in ("https://evil.example/cb", OIDC_REDIRECT + "&more=1", "https://rp.example/oidc/callback"):
        status, body, _ = await rp.authorize(redirect_uri=uri)
        assert status == 400
        page = read_page(body)
        assert not page.forms
        assert "did not register" in page.text
    status, body, _ = await rp.authorize(client_id="nobody")
    assert status == 400 and "not registered" in read_page(body).text
    assert oidc_sim.state.counters["oidc.refused"] == 4


@pytest.mark.parametrize(
    ("extra", "pkce", "scope", "error"),
    [
        ({"response_type": "token"}, True, "openid", "unsupported_response_type"),
        ({}, True, "email profile", "invalid_scope"),
        ({}, False, "openid", "invalid_request"),  # PKCE required
        ({"code_challenge_method": "plain"}, True, "openid", "invalid_request"),
        ({"prompt": "none"}, True, "openid", "login_required"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, True, "openid", "request_not_supported"),
    ],
)
async def test_bad_requests_go_back_with_error_state_and_iss(
    rp: Rp, extra: dict[str, str], pkce: bool, scope: str, error: str
) -> None:
    status, location, flow = await rp.authorize(extra=extra, pkce=pkce, scope=scope)
    assert status == 302
    answer = query_of(location)
    assert answer["error"] == error
    assert answer["error_description"]
    assert answer["state"] == flow.state
    assert answer["iss"] == rp.issuer
    assert "code" not in answer


async def test_cancel_redirects_with_access_denied(rp: Rp, oidc_sim: RunningSimulator) -> None:
    status, page, flow = await rp.authorize()
    status, location = await rp.submit(only_form(page), action="cancel")
    assert status == 302
    answer = query_of(location)
    assert answer["error"] == "access_denied"
    assert answer["state"] == flow.state and answer["iss"] == rp.issuer
    # Cancel on the code page as well.
    status, page, flow = await rp.authorize()
    status, code_page = await rp.submit(only_form(page), username=NINA, password=NINA_PASSWORD, action="signin")
    status, location = await rp.submit(only_form(code_page), action="cancel")
    assert status == 302 and query_of(location)["error"] == "access_denied"
    assert oidc_sim.state.counters["oidc.cancelled"] == 2


async def test_wrong_password_and_disabled_user_stay_on_the_page(rp: Rp) -> None:
    status, page, _ = await rp.authorize()
    status, again = await rp.submit(only_form(page), username=OSCAR, password="wrong", action="signin")
    assert status == 200 and "Incorrect user ID or password." in read_page(again).text
    status, again = await rp.submit(only_form(again), username="disabled@example.com",
                                    password="disabled-demo-pass", action="signin")
    assert status == 200 and "Your account is disabled." in read_page(again).text
    status, location = await rp.submit(only_form(again), username=OSCAR, password=OSCAR_PASSWORD, action="signin")
    assert status == 302 and "code" in query_of(location)


async def test_signin_flow_is_single_use(rp: Rp) -> None:
    status, page, _ = await rp.authorize()
    form = only_form(page)
    status, _ = await rp.submit(form, username=OSCAR, password=OSCAR_PASSWORD, action="signin")
    assert status == 302
    status, body = await rp.submit(form, username=OSCAR, password=OSCAR_PASSWORD, action="signin")
    assert status == 400 and "expired" in read_page(body).text


# --------------------------------------------------------------------------- keys


async def _control(rp: Rp, body: dict[str, object]) -> dict[str, object]:
    async with rp.http.post(rp.sim.base_url + "/_sim/control", json=body) as answer:
        assert answer.status == 200, await answer.text()
        result = await answer.json()
        assert isinstance(result, dict)
        return result


async def test_rotation_keeps_the_old_key_published_then_drops_it(rp: Rp, oidc_sim: RunningSimulator) -> None:
    status, tokens, _ = await rp.password_grant(OSCAR, OSCAR_PASSWORD)
    old_token = str(tokens["id_token"])
    old_kid = jwt.decode(old_token, await rp.jwks(), algorithms=["RS256"]).header["kid"]
    await _control(rp, {"oidc_keys": "rotate"})
    jwks = await rp.jwks()
    kids = [k.kid for k in jwks.keys]
    assert len(kids) == 4 and old_kid in kids
    status, tokens, _ = await rp.password_grant(OSCAR, OSCAR_PASSWORD)
    assert status == 200
    new_token = str(tokens["id_token"])
    new_kid = jwt.decode(new_token, jwks, algorithms=["RS256"]).header["kid"]
    assert new_kid != old_kid and new_kid in kids
    jwt.decode(old_token, jwks, algorithms=["RS256"])  # still verifies: the old key is published
    await _control(rp, {"oidc_keys": "rotate_drop_old"})
    jwks = await rp.jwks()
    assert len(jwks.keys) == 2 and new_kid not in [k.kid for k in jwks.keys]
    with pytest.raises(InvalidKeyIdError):  # the kid it names is no longer published
        jwt.decode(new_token, jwks, algorithms=["RS256"])
    assert oidc_sim.state.counters["oidc.keys.rotate"] == 1
    assert oidc_sim.state.counters["oidc.keys.rotate_drop_old"] == 1


async def test_bad_key_action_changes_nothing(rp: Rp) -> None:
    before = [k.kid for k in (await rp.jwks()).keys]
    async with rp.http.post(rp.sim.base_url + "/_sim/control",
                            json={"oidc_keys": "explode", "oidc_dialect": "okta"}) as answer:
        assert answer.status == 400
    assert [k.kid for k in (await rp.jwks()).keys] == before
    assert rp.sim.state.oidc_dialect.value == "entra"  # the demo users file's oidc.dialect, unchanged


async def test_es256_client_gets_an_es256_token(rp: Rp) -> None:
    status, tokens, _ = await rp.password_grant(OSCAR, OSCAR_PASSWORD, client_id="rp-es256", secret="rp-es256-secret")
    assert status == 200
    token = jwt.decode(str(tokens["id_token"]), await rp.jwks(), algorithms=["ES256"])
    assert token.header["alg"] == "ES256"
    rsa_only = KeySet([k for k in (await rp.jwks()).keys if k.key_type == "RSA"])
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(str(tokens["id_token"]), rsa_only, algorithms=["ES256"])


# --------------------------------------------------------------------------- failure modes


@pytest.mark.parametrize("path", ["/oidc/.well-known/openid-configuration", "/oidc/jwks", "/oidc/userinfo"])
async def test_fail_mode_applies_to_oidc_endpoints(rp: Rp, oidc_sim: RunningSimulator, path: str) -> None:
    oidc_sim.state.fail_mode = FailMode.HTTP_503
    async with rp.http.get(rp.sim.base_url + path) as answer:
        assert answer.status == 503
    oidc_sim.state.fail_mode = FailMode.GARBAGE
    async with rp.http.get(rp.sim.base_url + path) as answer:
        assert answer.status == 200
        with pytest.raises(ValueError):
            await answer.json()
    oidc_sim.state.fail_mode = FailMode.DROP_CONNECTION
    with pytest.raises(aiohttp.ClientError):
        async with rp.http.get(rp.sim.base_url + path) as answer:
            await answer.read()
    oidc_sim.state.fail_mode = None


async def test_fail_mode_applies_to_token_and_authorize(rp: Rp, oidc_sim: RunningSimulator) -> None:
    oidc_sim.state.fail_mode = FailMode.HTTP_500_PAGE
    status, body, _ = await rp.authorize()
    assert status == 500 and "Internal Server Error" in body
    async with rp.http.post(rp.issuer + "/token", data={"grant_type": "password"}) as answer:
        assert answer.status == 500 and "Internal Server Error" in await answer.text()
    oidc_sim.state.fail_mode = None
    assert oidc_sim.state.counters["oidc.token"] == 1
