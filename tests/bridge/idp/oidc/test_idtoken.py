"""ID token validation: every refusal reason, algorithm confusion, and hostile tokens never escape as other errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OctKey
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from bridge.errors import AssertionRejected
from bridge.idp.oidc.idtoken import IdTokenClaims, identify, token_digest, verify_id_token
from bridge.idp.oidc.jwks import SigningKeys, parse_jwks
from tests.bridge.idp.oidc.helpers import (
    CLIENT_ID,
    ISSUER,
    SECRET,
    claims,
    ec_key,
    ed_key,
    expectations,
    jwks_bytes,
    rsa_key,
    sign,
)

NOW = datetime.now(UTC)


def keys() -> SigningKeys:
    return parse_jwks(jwks_bytes(rsa_key(), ec_key(), ed_key()))


def verify(token: str, **expect: Any) -> IdTokenClaims:
    return verify_id_token(token, keys(), expectations(**expect), now=NOW)


def reason(token: str, **expect: Any) -> str:
    with pytest.raises(AssertionRejected) as info:
        verify(token, **expect)
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(("key", "alg"), [(rsa_key(), "RS256"), (ec_key(), "ES256"), (ed_key(), "EdDSA")])
def test_a_good_token_of_each_key_type_is_accepted(key: Any, alg: str) -> None:
    got = verify(sign(claims(NOW), key, alg))
    assert (got.issuer, got.sub, got.email, got.token_id) == (ISSUER, "248289761001", "alice@example.com", "id-token-1")
    assert got.amr == ("pwd", "mfa") and got.auth_time is not None
    assert got.expires_at == datetime.fromtimestamp(int((NOW + timedelta(minutes=5)).timestamp()), UTC)
    validated = identify(got)
    assert validated.subject == "alice@example.com" and validated.sub == "248289761001"


def test_without_kid_the_keys_of_the_right_type_are_tried() -> None:
    assert verify(sign(claims(NOW), ec_key(), "ES256", kid=None)).sub == "248289761001"
    other = parse_jwks(jwks_bytes(rsa_key("old"), rsa_key("rsa1")))
    token = sign(claims(NOW), rsa_key(), "RS256", kid=None)
    assert verify_id_token(token, other, expectations(), now=NOW).sub == "248289761001"


def test_hs256_uses_the_client_secret_as_key() -> None:
    secret_key = OctKey.import_key(SECRET.encode())
    token = sign(claims(NOW), secret_key, "HS256")
    got = verify(token, algorithms=("RS256", "HS256"), client_secret=SECRET)
    assert got.sub == "248289761001"
    assert reason(token, algorithms=("RS256", "HS256"), client_secret="another secret") == "signature"
    assert reason(token, algorithms=("RS256", "HS256"), client_secret=None) == "algorithm"
    assert reason(token) == "algorithm"  # HS256 not in the allow-list


def test_algorithm_confusion_hs256_keyed_with_the_rsa_public_key_is_refused() -> None:
    # joserfc will not even make such a key, so the attacker's token is put together by hand.
    public_pem = rsa_key().as_bytes(private=False)
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'rsa1'}).encode())}.{b64(json.dumps(claims(NOW)).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(mac)}"
    assert reason(forged) == "algorithm"
    # Even a tenant that allows HS256 verifies it with its secret, never with a JWK Set key.
    assert reason(forged, algorithms=("RS256", "HS256"), client_secret=SECRET) == "signature"


def test_alg_none_and_unlisted_algorithms_are_refused() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims(NOW)).encode())
    assert reason(f"{header}.{payload}.") == "algorithm"
    assert reason(f"{header}.{payload}.c2ln") == "algorithm"
    header = b64(json.dumps({"alg": "NONE"}).encode())
    assert reason(f"{header}.{payload}.") == "algorithm"
    assert reason(sign(claims(NOW), rsa_key(), "RS256"), algorithms=("ES256",)) == "algorithm"
    assert reason(sign(claims(NOW), rsa_key(), "PS256"), algorithms=("RS256",)) == "algorithm"


def test_alg_must_fit_the_key_kid_names() -> None:
    # An ES256 header naming the RSA key's kid: the kid's key cannot verify ES256.
    token = sign(claims(NOW), ec_key(), "ES256", kid="rsa1")
    assert reason(token) == "algorithm"


def test_unknown_kid_and_a_key_outside_the_set() -> None:
    assert reason(sign(claims(NOW), rsa_key("rotated"), "RS256")) == "unknown_key"
    # Re-signed with a key of no kid the provider has: tried against the RSA keys, none verifies.
    assert reason(sign(claims(NOW), rsa_key("rotated"), "RS256", kid=None)) == "signature"
    # Same kid as the provider's key, another key: the signature does not verify.
    assert reason(sign(claims(NOW), rsa_key("impostor"), "RS256", kid="rsa1")) == "signature"


def test_tampered_payload_fails_the_signature() -> None:
    header, _, signature = sign(claims(NOW), rsa_key(), "RS256").split(".")
    evil = b64(json.dumps(claims(NOW, sub="admin")).encode())
    assert reason(f"{header}.{evil}.{signature}") == "signature"


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d", "a.b.c.d.e.f", "ey.ey.ey", "not a token at all", "é.é.é",
    b64(b'{"alg":"RS256"}') + ".", b64(b"[1]") + "." + b64(b"{}") + ".sig", "x" * 70000,
])
def test_malformed_tokens(token: str) -> None:
    assert reason(token) == "malformed"


def test_jwe_and_two_segment_tokens_are_refused() -> None:
    jwe = ".".join(b64(part) for part in (b'{"alg":"RSA-OAEP","enc":"A256GCM"}', b"k", b"iv", b"ct", b"tag"))
    with pytest.raises(AssertionRejected) as info:
        verify(jwe)
    assert info.value.reason == "malformed" and "JWE" in info.value.detail
    header, payload, _ = sign(claims(NOW), rsa_key()).split(".")
    assert reason(f"{header}.{payload}") == "malformed"


def test_a_payload_that_is_not_a_json_object_is_malformed() -> None:
    assert reason(sign(b"[1,2,3]", rsa_key())) == "malformed"
    assert reason(sign(b"\xff\xfe", rsa_key())) == "malformed"
    assert reason(sign(b'{"exp": NaN}', rsa_key())) == "malformed"
    assert reason(sign(b"[" * 100000 + b"]" * 100000, rsa_key())) == "malformed"


def test_an_access_token_typ_is_not_an_id_token() -> None:
    assert reason(sign(claims(NOW), rsa_key(), typ="at+jwt")) == "malformed"
    assert verify(sign(claims(NOW), rsa_key(), typ="application/jwt")).sub == "248289761001"


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"iss": "https://evil.example/realms/acme"}, "issuer"),
    ({"iss": ISSUER + "/"}, "issuer"),
    ({"iss": None}, "claim_missing"),
    ({"aud": "another-client"}, "audience"),
    ({"aud": ["another-client", "third"]}, "audience"),
    ({"aud": None}, "claim_missing"),
    ({"aud": 5}, "malformed"),
    ({"aud": [CLIENT_ID, "another-client"]}, "azp"),
    ({"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}, "azp"),
    ({"azp": "another-client"}, "azp"),
    ({"exp": int((NOW - timedelta(minutes=6)).timestamp())}, "expired"),
    ({"exp": None}, "claim_missing"),
    ({"exp": "tomorrow"}, "malformed"),
    ({"exp": True}, "malformed"),
    ({"exp": 10**30}, "malformed"),
    ({"iat": int((NOW + timedelta(minutes=6)).timestamp())}, "issued_in_future"),
    ({"nbf": int((NOW + timedelta(minutes=6)).timestamp())}, "issued_in_future"),
    ({"iat": int((NOW - timedelta(hours=25)).timestamp())}, "stale"),
    ({"iat": None}, "claim_missing"),
    ({"nonce": "another nonce"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"nonce": 12}, "nonce"),
    ({"sub": None}, "claim_missing"),
    ({"sub": 42}, "malformed"),
    ({"email": 42}, "malformed"),
    ({"email_verified": False}, "email_unverified"),
    ({"email_verified": "false"}, "email_unverified"),
    ({"amr": "pwd"}, "malformed"),
    ({"jti": "x" * 300}, "malformed"),
])
def test_each_claim_check_has_its_reason(overrides: dict[str, Any], expected: str) -> None:
    assert reason(sign(claims(NOW, **overrides), rsa_key())) == expected


def test_within_the_skew_is_accepted_and_several_audiences_with_our_azp_pass() -> None:
    edge = claims(NOW, exp=int((NOW - timedelta(minutes=4)).timestamp()),
                  iat=int((NOW + timedelta(minutes=4)).timestamp()))
    assert verify(sign(edge, rsa_key())).sub == "248289761001"
    many = claims(NOW, aud=[CLIENT_ID, "https://graph.example"], azp=CLIENT_ID)
    assert verify(sign(many, rsa_key())).sub == "248289761001"
    assert verify(sign(claims(NOW, email_verified=True), rsa_key())).email == "alice@example.com"


def test_the_password_grant_ignores_a_nonce_and_the_email_claim_is_configurable() -> None:
    got = verify(sign(claims(NOW, nonce="whatever"), rsa_key()), nonce=None)
    assert got.sub == "248289761001"
    upn = verify(sign(claims(NOW, upn="alice@corp.example", email_verified=False), rsa_key()), email_claim="upn")
    assert upn.email == "alice@corp.example"  # email_verified only speaks for the email claim


def test_without_jti_the_replay_key_is_the_token_digest_and_missing_email_needs_userinfo() -> None:
    token = sign(claims(NOW, jti=None, email=None), rsa_key())
    got = verify(token)
    expected = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    assert got.token_id == token_digest(token) == expected and got.email is None
    with pytest.raises(AssertionRejected) as info:
        identify(got)
    assert info.value.reason == "claim_missing"
    assert identify(got, email="alice@example.com").subject == "alice@example.com"


def test_a_crit_header_joserfc_does_not_know_is_refused() -> None:
    registry = JWSRegistry(header_registry={"exp": HeaderParameter("expiry", "int")}, algorithms=["RS256"])
    token = jws.serialize_compact({"alg": "RS256", "kid": "rsa1", "crit": ["exp"], "exp": 1},
                                  json.dumps(claims(NOW)).encode(), rsa_key(), registry=registry)
    assert reason(token) == "malformed"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                 st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
                                  max_size=40), min_size=1, max_size=6).map(".".join)))
def test_random_text_is_refused_as_assertion_rejected(token: str) -> None:
    with pytest.raises(AssertionRejected):
        verify(token)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["iss", "aud", "sub", "exp", "iat", "nbf", "nonce", "azp", "jti", "amr",
                                        "email", "email_verified", "auth_time"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                 st.text(max_size=20), st.lists(st.text(max_size=5), max_size=3))))
def test_random_claims_are_accepted_or_refused_never_crash(values: dict[str, Any]) -> None:
    token = sign(values, rsa_key())
    try:
        verify(token)
    except AssertionRejected:
        pass


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64", "x5t", "jku", "cty"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                                 st.lists(st.text(max_size=5), max_size=2))))
def test_random_headers_are_refused_never_crash(header: dict[str, Any]) -> None:
    _, payload, signature = sign(claims(NOW), rsa_key()).split(".")
    token = f"{b64(json.dumps(header).encode())}.{payload}.{signature}"
    with pytest.raises(AssertionRejected):
        verify(token)


def test_google_names_its_issuer_with_or_without_the_scheme_and_nobody_else_may() -> None:
    """Google's ID tokens say iss "accounts.google.com" or "https://accounts.google.com" (its OIDC guide)."""
    google = "https://accounts.google.com"
    for said in ("accounts.google.com", google):
        assert verify(sign(claims(NOW, iss=said), rsa_key()), issuer=google).issuer == said
    assert reason(sign(claims(NOW, iss="accounts.google.com"), rsa_key())) == "issuer"  # only for Google's issuer
    assert reason(sign(claims(NOW, iss="accounts.google.com.evil.example"), rsa_key()), issuer=google) == "issuer"


def test_what_entra_okta_and_keycloak_really_send_is_accepted() -> None:
    """Shapes of real providers' keys and tokens (their documented formats), not the simulator's habits.

    Entra ID v2.0: JWKs without ``alg`` but with ``x5t``, ``x5c`` and an ``issuer`` member; ID tokens without
    ``jti`` (``uti`` instead), with ``nbf``, ``ver``, ``oid``, ``tid``, ``rh``.  Okta: no ``typ`` in the header.
    Keycloak: a ``use: enc`` key beside the signing key, and ``typ: "ID"`` as a claim.
    """
    entra_key = {k: v for k, v in rsa_key().as_dict().items() if k != "alg"}
    entra_key.update({"use": "sig", "x5t": "nYwa5dDs0BkzPzDvXE-Oeq1AlBA", "x5c": ["MIIC8DCCAdigAwIBAgIQ"],
                      "issuer": ISSUER, "cloud_instance_name": "microsoftonline.com"})
    keycloak_enc = {**ec_key("enc1").as_dict(), "use": "enc", "alg": "ECDH-ES"}
    keyset = parse_jwks(json.dumps({"keys": [keycloak_enc, entra_key]}).encode())
    now = int(NOW.timestamp())
    entra = claims(NOW, jti=None, uti="AbCdEf", nbf=now - 300, ver="2.0", oid="00000000-0000", tid="t1",
                   rh="0.ARoA", preferred_username="alice@example.com", name="Alice")
    got = verify_id_token(sign(entra, rsa_key()), keyset, expectations(), now=NOW)
    assert got.sub == "248289761001" and len(got.token_id) == 43  # the token digest keys the replay cache
    okta = sign(claims(NOW, ver=1, idp="00o1", at_hash="x"), rsa_key(), typ=None)
    assert verify_id_token(okta, keyset, expectations(), now=NOW).email == "alice@example.com"
    keycloak = claims(NOW, typ="ID", azp=CLIENT_ID, session_state="s", sid="s", acr="1")
    assert verify_id_token(sign(keycloak, rsa_key()), keyset, expectations(), now=NOW).sub == "248289761001"
    early = claims(NOW, nbf=now + 3600)
    with pytest.raises(AssertionRejected):
        verify_id_token(sign(early, rsa_key()), keyset, expectations(), now=NOW)
