"""OAuth error answers mapped to the bridge's errors: Entra ID codes, Keycloak and Okta wording, the rest."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    IdpRefused,
    IdpRejectedRequest,
    IdpUnreachable,
    InvalidCredentials,
    MfaRequired,
)
from bridge.idp.oidc.dialects import Grant, OAuthError, authorization_error, token_error
from bridge.idp.oidc.tokens import read_token_response, read_userinfo

ENTRA = "AADSTS{code}: Something happened. Trace ID: 0000 Correlation ID: 1111 Timestamp: 2026-01-01 00:00:00Z"


def password(error: str, description: str = "", codes: tuple[int, ...] = ()) -> BridgeError:
    return token_error(OAuthError(error=error, description=description, error_codes=codes), grant=Grant.PASSWORD)


@pytest.mark.parametrize(("code", "kind"), [
    (50126, InvalidCredentials), (50034, InvalidCredentials), (50053, AccessDenied), (50057, AccessDenied),
    (50055, AccessDenied), (50076, MfaRequired), (50079, MfaRequired), (50074, MfaRequired), (50158, MfaRequired),
    (53003, AccessDenied), (7000218, IdpRejectedRequest), (700016, IdpRejectedRequest),
    (7000215, IdpRejectedRequest), (65001, IdpRejectedRequest), (90099, IdpRefused),
])
def test_entra_codes_decide_first(code: int, kind: type[BridgeError]) -> None:
    by_array = password("invalid_grant", ENTRA.format(code=code), (code,))
    by_text = password("invalid_request", ENTRA.format(code=code))
    assert type(by_array) is kind and type(by_text) is kind
    assert f"AADSTS{code}" in by_array.cause and "Correlation" not in by_array.cause  # no IdP text in the cause
    if code == 53003:
        assert "conditional access" in by_array.cause


@pytest.mark.parametrize(("description", "kind"), [
    ("Invalid user credentials", InvalidCredentials),
    ("Account disabled", AccessDenied),
    ("Account temporarily disabled", AccessDenied),
    ("Account is not fully set up", AccessDenied),
    ("The credentials provided were invalid.", InvalidCredentials),
    ("Your account is locked out", AccessDenied),  # the shared wording of bridge.idp.refusals
    ("Multi-factor authentication is required", MfaRequired),
    ("Something the bridge has never seen", IdpRefused),
    ("", IdpRefused),
])
def test_keycloak_okta_and_shared_wording(description: str, kind: type[BridgeError]) -> None:
    assert type(password("invalid_grant", description)) is kind


@pytest.mark.parametrize(("error", "words"), [
    ("invalid_client", "client authentication"),
    ("unauthorized_client", "password_grant: false"),
    ("unsupported_grant_type", "Direct Access Grants"),
    ("invalid_scope", "oidc.scopes"),
])
def test_configuration_errors_tell_the_administrator_what_to_change(error: str, words: str) -> None:
    mapped = password(error, "whatever")
    assert isinstance(mapped, IdpRejectedRequest) and words in mapped.detail


def test_outages_and_interaction() -> None:
    assert isinstance(password("temporarily_unavailable"), IdpUnreachable)
    assert isinstance(password("server_error"), IdpUnreachable)
    assert isinstance(password("interaction_required", "do MFA"), MfaRequired)
    assert isinstance(password("consent_required"), IdpRejectedRequest)
    assert isinstance(password("access_denied"), AccessDenied)


def test_the_code_exchange_refuses_a_bad_code_as_an_assertion() -> None:
    for description in ("Code not valid", ENTRA.format(code=54005), ENTRA.format(code=70008)):
        mapped = token_error(OAuthError(error="invalid_grant", description=description),
                             grant=Grant.AUTHORIZATION_CODE)
        assert isinstance(mapped, AssertionRejected) and mapped.reason == "code_refused"
    ca = token_error(OAuthError(error="invalid_grant", description=ENTRA.format(code=53003)),
                     grant=Grant.AUTHORIZATION_CODE)
    assert type(ca) is AccessDenied
    assert type(token_error(OAuthError(error="invalid_request", description="Incorrect redirect_uri"),
                            grant=Grant.AUTHORIZATION_CODE)) is IdpRejectedRequest


@pytest.mark.parametrize(("error", "kind"), [
    ("access_denied", AccessDenied), ("interaction_required", AccessDenied), ("login_required", AccessDenied),
    ("consent_required", AccessDenied), ("account_selection_required", AccessDenied),
    ("user_cancelled_something", AccessDenied),
    ("unauthorized_client", IdpRejectedRequest), ("invalid_request", IdpRejectedRequest),
    ("invalid_scope", IdpRejectedRequest), ("unsupported_response_type", IdpRejectedRequest),
    ("invalid_request_uri", IdpRejectedRequest),
    ("server_error", IdpUnreachable), ("temporarily_unavailable", IdpUnreachable),
])
def test_authorization_endpoint_errors(error: str, kind: type[BridgeError]) -> None:
    mapped = authorization_error(OAuthError(error=error, description="The user said no\x00\n" + "x" * 500))
    assert type(mapped) is kind
    assert mapped.cause == f"IdP answered {error}" and "\x00" not in mapped.detail and len(mapped.detail) < 400


def test_an_entra_code_in_the_browser_description_decides() -> None:
    mfa = authorization_error(OAuthError(error="interaction_required", description=ENTRA.format(code=50076)))
    assert type(mfa) is AccessDenied  # a browser could have done MFA: it is a refusal, not "use the phone"
    consent = authorization_error(OAuthError(error="access_denied", description=ENTRA.format(code=65001)))
    assert type(consent) is IdpRejectedRequest


def test_an_unreadable_error_code_is_not_echoed() -> None:
    mapped = authorization_error(OAuthError(error="bad\x00code\"<script>", description=""))
    assert "<script>" not in mapped.cause and "unreadable" in mapped.cause


# --- the token and userinfo answers -------------------------------------------------------------


def answer(status: int, doc: object, content_type: str = "application/json") -> object:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return read_token_response(status, body, content_type, grant=Grant.PASSWORD)


def test_a_good_token_answer_keeps_its_tokens_out_of_repr() -> None:
    tokens = answer(200, {"token_type": "bearer", "id_token": "a.b.c", "access_token": "AT-secret"})
    assert "AT-secret" not in repr(tokens) and "a.b.c" not in repr(tokens)


@pytest.mark.parametrize(("status", "doc", "kind"), [
    (200, {"token_type": "Bearer", "access_token": "x"}, IdpProtocolError),  # no id_token
    (200, {"token_type": "mac", "id_token": "a.b.c", "access_token": "x"}, IdpProtocolError),
    (200, {"id_token": "a.b.c", "access_token": "x"}, IdpProtocolError),
    (200, {"token_type": "Bearer", "id_token": "a.b.c"}, IdpProtocolError),
    (200, {"token_type": "Bearer", "id_token": 5, "access_token": "x"}, IdpProtocolError),
    (200, b"<html>", IdpProtocolError),
    # Error pages instead of RFC 6749 JSON are judged by status, as the other protocols' pages are:
    # 401/403 feed the lockout throttles, other 4xx refuse our request.
    (400, b"<html>bad</html>", IdpRejectedRequest),
    (401, b"<html>unauthorized</html>", InvalidCredentials),
    (403, b"", AccessDenied),
    (502, b"<html>bad gateway</html>", IdpUnreachable),
    # Okta's rate limit answer is its own JSON; Entra ID's is RFC 6749's with a 429: an outage either way.
    (429, {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."},
     IdpUnreachable),
    (429, {"error": "invalid_grant", "error_description": "AADSTS50196: loop detected"}, IdpUnreachable),
    (503, {"error": "invalid_grant"}, IdpUnreachable),
    (400, {"error": "invalid_grant", "error_description": "Invalid user credentials"}, InvalidCredentials),
    (401, {"error": "invalid_client"}, IdpRejectedRequest),
    (400, {"error": 5}, IdpRejectedRequest),
    (400, {"no": "error"}, IdpRejectedRequest),
    (200, {"error": "invalid_grant", "error_description": "Invalid user credentials"}, InvalidCredentials),
])
def test_token_answers(status: int, doc: object, kind: type[BridgeError]) -> None:
    with pytest.raises(kind):
        answer(status, doc)


def test_userinfo_answers() -> None:
    def info(status: int, doc: object, content_type: str = "application/json") -> str:
        return read_userinfo(status, json.dumps(doc).encode(), content_type, sub="s1", email_claim="email")

    assert info(200, {"sub": "s1", "email": "a@b.example"}) == "a@b.example"
    for status, doc, content_type, reason in [
        (200, {"sub": "s2", "email": "a@b.example"}, "application/json", "subject_mismatch"),
        (200, {"email": "a@b.example"}, "application/json", "subject_mismatch"),
        (200, {"sub": "s1"}, "application/json", "claim_missing"),
        (200, {"sub": "s1", "email": ["a"]}, "application/json", "malformed"),
        (200, {"sub": "s1", "email": "a@b.example", "email_verified": False}, "application/json", "email_unverified"),
    ]:
        with pytest.raises(AssertionRejected) as caught:
            info(status, doc, content_type)
        assert caught.value.reason == reason
    with pytest.raises(IdpRejectedRequest):
        info(401, {})
    with pytest.raises(IdpUnreachable):
        info(500, {})
    with pytest.raises(IdpProtocolError):
        info(200, {"sub": "s1"}, "application/jwt")


@settings(max_examples=300, deadline=None)
@given(st.integers(100, 599), st.one_of(
    st.binary(max_size=100),
    st.dictionaries(st.sampled_from(["error", "error_description", "error_codes", "token_type", "id_token",
                                     "access_token"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30),
                              st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3)))
    .map(lambda d: json.dumps(d).encode())))
def test_random_token_answers_only_raise_bridge_errors(status: int, body: bytes) -> None:
    for grant in Grant:
        try:
            read_token_response(status, body, "application/json", grant=grant)
        except BridgeError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.text(max_size=300))
def test_random_authorization_errors_only_give_bridge_errors(error: str, description: str) -> None:
    assert isinstance(authorization_error(OAuthError(error=error, description=description)), BridgeError)
    assert isinstance(password(error, description), BridgeError)
