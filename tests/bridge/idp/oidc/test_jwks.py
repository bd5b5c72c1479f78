"""The JWK Set: signing keys kept, encryption/private/unknown keys skipped, nothing usable refused."""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.errors import SecurityWarning
from joserfc.jwk import RSAKey

from bridge.errors import IdpProtocolError
from bridge.idp.oidc.jwks import parse_jwks
from tests.bridge.idp.oidc.helpers import ec_key, ed_key, jwks_doc, rsa_key


def parse(doc: Any) -> Any:
    return parse_jwks(json.dumps(doc).encode())


def test_rsa_ec_and_ed25519_keys_are_read_in_order() -> None:
    keys = parse(jwks_doc(rsa_key(), ec_key(), ed_key()))
    assert [(k.kid, k.kty, k.crv) for k in keys.keys] == [("rsa1", "RSA", None), ("ec1", "EC", "P-256"),
                                                          ("ed1", "OKP", "Ed25519")]
    assert keys.kids() == {"rsa1", "ec1", "ed1"}


def test_keys_not_for_signatures_are_skipped_with_an_info_line(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        small = RSAKey.generate_key(1024)
    doc = jwks_doc(rsa_key())
    doc["keys"] += [
        {**rsa_key("enc").as_dict(), "use": "enc"},
        {**rsa_key("ops").as_dict(), "key_ops": ["encrypt"]},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
        {"kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AAAA"},
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "kid": "k1"},
        {"kty": "RSA", "kid": "broken", "n": "!!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "small", **small.as_dict()},
        "not an object",
        {"kty": "RSA", "kid": 7},
    ]
    with caplog.at_level(logging.INFO, logger="bridge.idp.oidc.jwks"):
        keys = parse(doc)
    assert keys.kids() == {"rsa1"}
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 9


def test_a_private_key_in_the_set_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    doc = jwks_doc(rsa_key(), ec_key("leaked"), private=True)
    doc["keys"] = [doc["keys"][1], jwks_doc(rsa_key())["keys"][0]]
    with caplog.at_level(logging.INFO, logger="bridge.idp.oidc.jwks"):
        keys = parse(doc)
    assert keys.kids() == {"rsa1"}
    assert any(r.levelno == logging.WARNING and "private" in r.getMessage() for r in caplog.records)
    with pytest.raises(IdpProtocolError):
        parse(jwks_doc(rsa_key(), private=True))


@pytest.mark.parametrize("doc", [
    {}, {"keys": []}, {"keys": {}}, {"keys": "x"}, [], {"keys": [{"kty": "oct", "k": "AAAA"}]},
    {"keys": [{"kty": "RSA"}]}, {"keys": [jwks_doc(rsa_key())["keys"][0]] * 101},
])
def test_no_usable_key_is_an_idp_protocol_error(doc: Any) -> None:
    with pytest.raises(IdpProtocolError):
        parse(doc)


def test_hostile_bodies() -> None:
    for body in (b"", b"{", b"\x00" * 10, b"[" * 100000, b'{"keys": [' + b"{}," * 200_000 + b"{}]}"):
        with pytest.raises(IdpProtocolError):
            parse_jwks(body)


_MEMBER = st.sampled_from(["kty", "kid", "use", "key_ops", "alg", "crv", "n", "e", "x", "y", "d", "k"])
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
                   st.sampled_from(["RSA", "EC", "OKP", "oct", "sig", "P-256", "Ed25519", "AQAB"]),
                   st.lists(st.text(max_size=6), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.dictionaries(_MEMBER, _VALUE, max_size=8), _VALUE), max_size=5))
def test_random_key_sets_give_keys_or_idp_protocol_error(entries: list[Any]) -> None:
    try:
        parse({"keys": entries})
    except IdpProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_idp_protocol_error(body: bytes) -> None:
    with pytest.raises(IdpProtocolError):
        parse_jwks(body)
