"""Each ``oidc_mischief`` produces the defect it advertises, and only while it is set."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import aiohttp
import pytest
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, UnsupportedAlgorithmError

from bridge.idpsim.server import RunningSimulator
from tests.bridge.idpsim.oidc_browser import Rp, unverified

OSCAR, OSCAR_PASSWORD = "oscar@example.net", "oscar-demo-pass"


@pytest.fixture
def rp(oidc_http: aiohttp.ClientSession, oidc_sim: RunningSimulator) -> Rp:
    return Rp(oidc_http, oidc_sim)


async def _token_with(rp: Rp, mischief: str) -> tuple[str, str]:
    """(ID token, nonce asked for) of a code flow while ``mischief`` is set."""
    async with rp.http.post(rp.sim.base_url + "/_sim/control", json={"oidc_mischief": mischief}) as answer:
        assert answer.status == 200
    flow = await rp.sign_in(OSCAR, OSCAR_PASSWORD)
    status, tokens, _ = await rp.redeem(flow)
    assert status == 200, tokens
    return str(tokens["id_token"]), flow.nonce


async def test_claim_mischief(rp: Rp, oidc_sim: RunningSimulator) -> None:
    token, _ = await _token_with(rp, "wrong_aud")
    assert (await rp.verified_claims(token))["aud"] == "some-other-client"
    token, nonce = await _token_with(rp, "wrong_nonce")
    claims = await rp.verified_claims(token)
    assert claims["nonce"] and claims["nonce"] != nonce
    token, _ = await _token_with(rp, "wrong_iss")
    assert (await rp.verified_claims(token))["iss"] == "https://evil.example/oidc"
    token, _ = await _token_with(rp, "no_email")
    claims = await rp.verified_claims(token)
    assert "email" not in claims and "email_verified" not in claims and claims["preferred_username"] == OSCAR
    token, _ = await _token_with(rp, "email_unverified")
    claims = await rp.verified_claims(token)
    assert claims["email"] == OSCAR and claims["email_verified"] is False
    token, _ = await _token_with(rp, "other_user")
    claims = await rp.verified_claims(token)
    assert claims["email"] == "mallory@example.com" and claims["preferred_username"] == "mallory@example.com"
    for name in ("wrong_aud", "wrong_nonce", "wrong_iss", "no_email", "email_unverified", "other_user"):
        assert oidc_sim.state.counters[f"oidc.mischief.{name}"] == 1


async def test_time_mischief(rp: Rp) -> None:
    now = time.time()
    token, _ = await _token_with(rp, "expired")
    claims = await rp.verified_claims(token)
    assert claims["exp"] < now - 3600  # type: ignore[operator]
    assert claims["iat"] < claims["exp"]  # type: ignore[operator]
    token, _ = await _token_with(rp, "future_iat")
    claims = await rp.verified_claims(token)
    assert claims["iat"] > now + 3600  # type: ignore[operator]


async def test_alg_none_is_unsigned(rp: Rp) -> None:
    token, nonce = await _token_with(rp, "alg_none")
    header, claims = unverified(token)
    assert header["alg"] == "none" and "kid" not in header
    assert token.endswith(".") and token.count(".") == 2
    assert claims["nonce"] == nonce
    with pytest.raises(UnsupportedAlgorithmError):  # a careful relying party refuses it
        jwt.decode(token, await rp.jwks(), algorithms=["RS256"])


async def test_unknown_key_names_a_kid_not_in_the_jwks(rp: Rp) -> None:
    token, _ = await _token_with(rp, "unknown_key")
    header, _ = unverified(token)
    assert header["alg"] == "RS256"
    assert header["kid"] not in [k.kid for k in (await rp.jwks()).keys]
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(token, await rp.jwks(), algorithms=["RS256"])


async def test_hs256_with_public_key_is_the_algorithm_confusion_forgery(rp: Rp) -> None:
    token, _ = await _token_with(rp, "hs256_with_public_key")
    header, claims = unverified(token)
    assert header["alg"] == "HS256"
    rsa_key = next(k for k in (await rp.jwks()).keys if k.kid == header["kid"])
    pem = rsa_key.as_pem(private=False)
    signing_input, signature = token.rsplit(".", 1)
    expected = base64.urlsafe_b64encode(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=")
    assert signature.encode() == expected  # an HMAC keyed with the published public key's PEM
    assert claims["preferred_username"] == OSCAR


async def test_mischief_is_cleared_by_null(rp: Rp) -> None:
    await _token_with(rp, "wrong_aud")
    token, _ = await _token_with(rp, None)  # type: ignore[arg-type]
    assert (await rp.verified_claims(token))["aud"] == "rp-basic"


async def test_unknown_mischief_is_refused(rp: Rp) -> None:
    async with rp.http.post(rp.sim.base_url + "/_sim/control", json={"oidc_mischief": "sneaky"}) as answer:
        assert answer.status == 400
