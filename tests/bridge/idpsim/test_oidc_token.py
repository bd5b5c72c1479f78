"""The OpenID Provider's token endpoint: client authentication and the password grant's dialects.

Each refusal is checked against the product's real answer: status, ``error``,
``error_description`` and, for Entra, ``error_codes``, trace ids and ``suberror``.
"""

from __future__ import annotations

import base64
import secrets
import time

import aiohttp
import pytest
from joserfc import jwt

from bridge.idpsim.server import RunningSimulator
from bridge.idpsim.state import OidcDialect, OidcRefusal
from tests.bridge.idpsim.conftest import OIDC_REDIRECT, OIDC_SECRET, OidcClients
from tests.bridge.idpsim.oidc_browser import Rp, basic

OSCAR, OSCAR_PASSWORD = "oscar@example.net", "oscar-demo-pass"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def rp(oidc_http: aiohttp.ClientSession, oidc_sim: RunningSimulator) -> Rp:
    return Rp(oidc_http, oidc_sim)


# --------------------------------------------------------------------------- the password grant


async def test_password_grant_issues_tokens(rp: Rp, oidc_sim: RunningSimulator) -> None:
    status, tokens, response = await rp.password_grant(OSCAR, OSCAR_PASSWORD)
    assert status == 200, tokens
    assert response.headers["Cache-Control"] == "no-store"
    assert set(tokens) == {"access_token", "token_type", "expires_in", "scope", "id_token"}
    claims = await rp.verified_claims(str(tokens["id_token"]))
    assert claims["iss"] == rp.issuer and claims["aud"] == "rp-basic"
    assert claims["preferred_username"] == OSCAR and claims["amr"] == ["pwd"]
    assert "nonce" not in claims
    assert oidc_sim.state.counters["oidc.token.password"] == 1


async def test_client_secret_post_and_id_token_without_email(rp: Rp) -> None:
    data = {"grant_type": "password", "username": OSCAR, "password": OSCAR_PASSWORD, "scope": "openid email profile",
            "client_id": "rp-post", "client_secret": "rp-post-secret"}
    status, tokens, _ = await rp.token(data)
    assert status == 200, tokens
    claims = await rp.verified_claims(str(tokens["id_token"]))
    assert "email" not in claims and "email_verified" not in claims
    async with rp.http.get(rp.issuer + "/userinfo",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"}) as answer:
        assert (await answer.json())["email"] == OSCAR  # the relying party falls back to userinfo


async def test_client_without_password_grant_is_unauthorized(rp: Rp) -> None:
    status, body, _ = await rp.password_grant(OSCAR, OSCAR_PASSWORD, client_id="rp-no-password",
                                              secret="rp-np-secret")
    assert status == 400 and body["error"] == "unauthorized_client"


async def test_unknown_grant_type(rp: Rp) -> None:
    status, body, _ = await rp.token({"grant_type": "client_credentials"},
                                     authorization=basic("rp-basic", OIDC_SECRET))
    assert status == 400 and body["error"] == "unsupported_grant_type"


async def test_form_must_be_urlencoded_without_repeats(rp: Rp) -> None:
    async with rp.http.post(rp.issuer + "/token", json={"grant_type": "password"}) as answer:
        assert answer.status == 400 and (await answer.json())["error"] == "invalid_request"
    body = "grant_type=password&grant_type=authorization_code"
    async with rp.http.post(rp.issuer + "/token", data=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded",
                                     "Authorization": basic("rp-basic", OIDC_SECRET)}) as answer:
        assert answer.status == 400 and (await answer.json())["error"] == "invalid_request"


ENTRA_MFA = ("Due to a configuration change made by your administrator, or because you moved to a new location, "
             "you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.")
ENTRA_ENROL = ("Due to a configuration change made by your administrator, or because you moved to a new location, "
               "you must enroll in multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.")

# (dialect, user, password, refusal) -> (status, error, description, entra code or None, suberror)
CASES = [
    ("entra", OSCAR, "wrong", None, 400, "invalid_grant",
     "Error validating credentials due to invalid username or password.", 50126, None),
    ("entra", "nobody@example.net", "x", None, 400, "invalid_grant",
     "Error validating credentials due to invalid username or password.", 50126, None),
    ("entra", "disabled@example.com", "disabled-demo-pass", None, 400, "invalid_grant",
     "The user account is disabled.", 50057, None),
    ("entra", "dave@example.com", "dave-demo-pass", None, 400, "invalid_grant", ENTRA_MFA, 50076, "basic_action"),
    ("entra", OSCAR, OSCAR_PASSWORD, "locked", 400, "invalid_grant",
     "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
     50053, None),
    ("entra", OSCAR, OSCAR_PASSWORD, "ca_blocked", 400, "invalid_grant",
     "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
     53003, None),
    ("entra", OSCAR, OSCAR_PASSWORD, "mfa_required", 400, "invalid_grant", ENTRA_ENROL, 50079, "basic_action"),
    ("entra", OSCAR, OSCAR_PASSWORD, "not_set_up", 400, "invalid_grant", ENTRA_ENROL, 50079, "basic_action"),
    ("keycloak", OSCAR, "wrong", None, 401, "invalid_grant", "Invalid user credentials", None, None),
    ("keycloak", "disabled@example.com", "disabled-demo-pass", None, 400, "invalid_grant", "Account disabled",
     None, None),
    ("keycloak", "dave@example.com", "dave-demo-pass", None, 400, "invalid_grant", "Account is not fully set up",
     None, None),
    ("keycloak", "erin@example.org", "erin-demo-pass", None, 401, "invalid_grant", "Invalid user credentials",
     None, None),
    ("keycloak", OSCAR, OSCAR_PASSWORD, "locked", 400, "invalid_grant", "Account temporarily disabled", None, None),
    ("keycloak", OSCAR, OSCAR_PASSWORD, "not_set_up", 400, "invalid_grant", "Account is not fully set up",
     None, None),
    ("keycloak", OSCAR, OSCAR_PASSWORD, "mfa_required", 400, "invalid_grant", "Account is not fully set up",
     None, None),
    ("keycloak", OSCAR, OSCAR_PASSWORD, "ca_blocked", 400, "access_denied", "Access denied", None, None),
    ("okta", OSCAR, "wrong", None, 400, "invalid_grant", "The credentials provided were invalid.", None, None),
    ("okta", "disabled@example.com", "disabled-demo-pass", None, 400, "invalid_grant",
     "The credentials provided were invalid.", None, None),
    ("okta", "dave@example.com", "dave-demo-pass", None, 400, "access_denied",
     "Policy evaluation failed for this request, please check the policy configurations.", None, None),
    ("okta", OSCAR, OSCAR_PASSWORD, "locked", 400, "invalid_grant", "The credentials provided were invalid.",
     None, None),
    ("okta", OSCAR, OSCAR_PASSWORD, "ca_blocked", 400, "access_denied",
     "Policy evaluation failed for this request, please check the policy configurations.", None, None),
    ("okta", OSCAR, OSCAR_PASSWORD, "mfa_required", 400, "access_denied",
     "Policy evaluation failed for this request, please check the policy configurations.", None, None),
    ("okta", OSCAR, OSCAR_PASSWORD, "not_set_up", 400, "invalid_grant", "The credentials provided were invalid.",
     None, None),
]


@pytest.mark.parametrize(
    ("dialect", "user", "password", "refusal", "status", "error", "description", "code", "suberror"), CASES
)
async def test_password_refusals_speak_the_products_dialect(
    rp: Rp, oidc_sim: RunningSimulator, dialect: str, user: str, password: str, refusal: str | None,
    status: int, error: str, description: str, code: int | None, suberror: str | None,
) -> None:
    async with rp.http.post(rp.sim.base_url + "/_sim/control",
                            json={"oidc_dialect": dialect, "oidc_refusal": refusal}) as answer:
        assert answer.status == 200
    got_status, body, response = await rp.password_grant(user, password)
    assert got_status == status
    assert response.headers["Cache-Control"] == "no-store"
    assert body["error"] == error
    if code is None:
        assert body == {"error": error, "error_description": description}
        return
    text = body["error_description"]
    assert isinstance(text, str) and text.startswith(f"AADSTS{code}: {description} Trace ID: ")
    assert "Correlation ID: " in text and "Timestamp: " in text
    assert body["error_codes"] == [code]
    assert body["error_uri"] == f"https://login.microsoftonline.com/error?code={code}"
    for field in ("timestamp", "trace_id", "correlation_id"):
        assert body[field]
    assert body.get("suberror") == suberror


async def test_refusal_control_is_cleared_by_null(rp: Rp, oidc_sim: RunningSimulator) -> None:
    oidc_sim.state.oidc_dialect, oidc_sim.state.oidc_refusal = OidcDialect.ENTRA, OidcRefusal.LOCKED
    status, _, _ = await rp.password_grant(OSCAR, OSCAR_PASSWORD)
    assert status == 400
    async with rp.http.post(rp.sim.base_url + "/_sim/control", json={"oidc_refusal": None}) as answer:
        assert (await answer.json())["oidc_refusal"] is None
    status, _, _ = await rp.password_grant(OSCAR, OSCAR_PASSWORD)
    assert status == 200


# --------------------------------------------------------------------------- client authentication


async def test_wrong_secret_is_invalid_client_with_basic_challenge(rp: Rp) -> None:
    status, body, response = await rp.password_grant(OSCAR, OSCAR_PASSWORD, secret="wrong")
    assert status == 401 and body["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_basic_credentials_are_form_urlencoded_before_base64(rp: Rp) -> None:
    # RFC 6749 2.3.1: the secret "rp-basic-secret+/:%é" goes as "rp-basic-secret%2B%2F%3A%25%C3%A9".
    raw = base64.b64encode(f"rp-basic:{OIDC_SECRET}".encode()).decode()
    data = {"grant_type": "password", "username": OSCAR, "password": OSCAR_PASSWORD, "scope": "openid"}
    status, body, _ = await rp.token(data, authorization="Basic " + raw)
    assert status == 401 and body["error"] == "invalid_client"  # "+" decodes to a space: not the secret
    status, body, _ = await rp.token(data, authorization=basic("rp-basic", OIDC_SECRET))
    assert status == 200, body


async def test_client_must_use_its_registered_method(rp: Rp) -> None:
    # rp-basic's secret in the body: right secret, wrong method.
    data = {"grant_type": "password", "username": OSCAR, "password": OSCAR_PASSWORD,
            "client_id": "rp-basic", "client_secret": OIDC_SECRET}
    status, body, response = await rp.token(data)
    assert status == 401 and body["error"] == "invalid_client"
    assert "WWW-Authenticate" not in response.headers
    # A confidential client cannot pass as public.
    status, body, _ = await rp.token({"grant_type": "password", "username": OSCAR, "password": OSCAR_PASSWORD,
                                      "client_id": "rp-basic"})
    assert status == 401 and body["error"] == "invalid_client"
    # Two methods at once is a malformed request (RFC 6749 2.3).
    data = {"grant_type": "password", "username": OSCAR, "password": OSCAR_PASSWORD, "client_secret": "x"}
    status, body, _ = await rp.token(data, authorization=basic("rp-basic", OIDC_SECRET))
    assert status == 400 and body["error"] == "invalid_request"
    status, body, _ = await rp.password_grant(OSCAR, OSCAR_PASSWORD, client_id="nobody")
    assert status == 401 and body["error"] == "invalid_client"


def _assertion(clients: OidcClients, audience: str, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"iss": "rp-jwt", "sub": "rp-jwt", "aud": audience, "exp": now + 60, "iat": now,
                                 "jti": secrets.token_urlsafe(12)}
    claims.update(overrides)
    return jwt.encode({"alg": "RS256", "kid": clients.jwt_key.kid or ""}, claims, clients.jwt_key,
                      algorithms=["RS256"])


async def _jwt_grant(rp: Rp, assertion: str, *, assertion_type: str = JWT_BEARER) -> tuple[int, dict[str, object]]:
    data = {"grant_type": "password", "username": OSCAR, "password": OSCAR_PASSWORD, "scope": "openid",
            "client_assertion_type": assertion_type, "client_assertion": assertion}
    status, body, _ = await rp.token(data)
    return status, body


async def test_private_key_jwt_client_authenticates(rp: Rp, oidc_clients: OidcClients) -> None:
    status, body = await _jwt_grant(rp, _assertion(oidc_clients, rp.issuer + "/token"))
    assert status == 200, body
    claims = await rp.verified_claims(str(body["id_token"]))
    assert claims["aud"] == "rp-jwt"
    status, body = await _jwt_grant(rp, _assertion(oidc_clients, rp.issuer))  # the issuer is a fine audience
    assert status == 200, body


async def test_private_key_jwt_code_flow(rp: Rp, oidc_clients: OidcClients) -> None:
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD, client_id="rp-jwt")
    data = {"grant_type": "authorization_code", "code": flow.answer["code"], "redirect_uri": OIDC_REDIRECT,
            "code_verifier": flow.verifier, "client_assertion_type": JWT_BEARER,
            "client_assertion": _assertion(oidc_clients, rp.issuer + "/token")}
    status, body, _ = await rp.token(data)
    assert status == 200, body
    assert (await rp.verified_claims(str(body["id_token"])))["nonce"] == flow.nonce


async def test_private_key_jwt_refusals(rp: Rp, oidc_clients: OidcClients) -> None:
    endpoint = rp.issuer + "/token"
    replayed = _assertion(oidc_clients, endpoint)
    assert (await _jwt_grant(rp, replayed))[0] == 200
    bad = [
        replayed,  # jti seen before
        _assertion(oidc_clients, "https://elsewhere.example/token"),
        _assertion(oidc_clients, endpoint, exp=int(time.time()) - 5),
        _assertion(oidc_clients, endpoint, sub="someone-else"),
        _assertion(oidc_clients, endpoint, jti=None),
    ]
    stranger = type(oidc_clients.jwt_key).generate_key(2048, private=True, auto_kid=True)
    bad.append(jwt.encode({"alg": "RS256"}, {"iss": "rp-jwt", "sub": "rp-jwt", "aud": endpoint,
                                             "exp": int(time.time()) + 60, "jti": "x1"}, stranger,
                          algorithms=["RS256"]))
    for assertion in bad:
        status, body = await _jwt_grant(rp, assertion)
        assert status == 401 and body["error"] == "invalid_client", body
    status, body = await _jwt_grant(rp, _assertion(oidc_clients, endpoint), assertion_type="urn:other")
    assert status == 401 and body["error"] == "invalid_client"
