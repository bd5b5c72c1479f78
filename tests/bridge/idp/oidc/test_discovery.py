"""The OpenID provider configuration: what is read, what is refused (another issuer, http, wrong types)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import IdpProtocolError
from bridge.idp.oidc.discovery import discovery_url, parse_provider_metadata
from tests.bridge.idp.oidc.helpers import ISSUER


def document(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth?tenant=x",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "userinfo_endpoint": f"{ISSUER}/protocol/openid-connect/userinfo",
        "response_types_supported": ["code", "id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["plain", "S256"],
    }
    for name, value in overrides.items():
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
    return doc


def parse(doc: Any, issuer: str = ISSUER) -> Any:
    return parse_provider_metadata(json.dumps(doc).encode(), issuer=issuer)


def test_a_keycloak_like_document_is_read_with_the_defaults_for_what_it_omits() -> None:
    meta = parse(document())
    assert meta.issuer == ISSUER and meta.token_endpoint.endswith("/token")
    assert meta.authorization_endpoint.endswith("/auth?tenant=x")
    assert meta.userinfo_endpoint is not None and meta.code_challenge_methods_supported == ("plain", "S256")
    assert meta.id_token_signing_alg_values_supported == ("RS256", "ES256")
    assert meta.token_endpoint_auth_methods_supported == ("client_secret_basic",)
    assert meta.grant_types_supported == ("authorization_code", "implicit")
    assert parse(document(userinfo_endpoint=None, code_challenge_methods_supported=None)).userinfo_endpoint is None


def test_the_discovery_url_drops_a_trailing_slash() -> None:
    assert discovery_url("https://a.example/x/") == "https://a.example/x/.well-known/openid-configuration"
    assert discovery_url("https://a.example") == "https://a.example/.well-known/openid-configuration"


def test_another_issuer_is_refused_naming_both() -> None:
    with pytest.raises(IdpProtocolError) as info:
        parse(document(issuer="https://evil.example/realms/acme"))
    assert "https://evil.example/realms/acme" in info.value.detail and ISSUER in info.value.detail
    with pytest.raises(IdpProtocolError):
        parse(document(issuer=ISSUER + "/"))  # exactly equal, not "the same after normalising"


@pytest.mark.parametrize("member", ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"])
@pytest.mark.parametrize("url", ["http://idp.example/x", "ftp://idp.example/x", "/relative", "https://", "https://h:x/",
                                 "https://idp.example/x#frag"])
def test_endpoints_must_be_https(member: str, url: str) -> None:
    with pytest.raises(IdpProtocolError) as info:
        parse(document(**{member: url}))
    assert member in info.value.detail


@pytest.mark.parametrize("member", ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                                    "response_types_supported", "id_token_signing_alg_values_supported"])
def test_missing_required_members_are_refused(member: str) -> None:
    with pytest.raises(IdpProtocolError):
        parse(document(**{member: None}))


@pytest.mark.parametrize("member", [*document(), "token_endpoint_auth_methods_supported", "grant_types_supported"])
@pytest.mark.parametrize("value", [5, True, {"a": 1}, ["https://x", 3], [None], 1.5])
def test_wrong_types_in_every_member_are_refused(member: str, value: Any) -> None:
    if member == "subject_types_supported":
        parse(document(**{member: value}))  # the bridge does not use it: any value passes
        return
    with pytest.raises(IdpProtocolError):
        parse(document(**{member: value}))


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'"text"', b"<html>", b"{", b'{"issuer": NaN}', b"\xff\xfe",
                                  b"[" * 50000 + b"]" * 50000, b'{"a": "' + b"x" * 300_000 + b'"}'])
def test_hostile_bodies_are_idp_protocol_errors(body: bytes) -> None:
    with pytest.raises(IdpProtocolError):
        parse_provider_metadata(body, issuer=ISSUER)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                  st.sampled_from(list(document())), inner, max_size=8), max_leaves=20)
                 .map(lambda v: json.dumps(v).encode())))
def test_random_input_gives_metadata_or_idp_protocol_error(body: bytes) -> None:
    try:
        parse_provider_metadata(body, issuer=ISSUER)
    except IdpProtocolError:
        pass
