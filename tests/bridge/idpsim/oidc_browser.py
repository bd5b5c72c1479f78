"""Test helper: a relying party and a browser for the simulator's OpenID Provider, over real loopback https.

The browser is aiohttp's client plus the standard library's HTML parser (browser_forms):
it reads the login page's form and posts it back; redirects are read, never followed
(the redirect URI's host does not exist).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, quote_plus, urlsplit

import aiohttp
import pyotp
from joserfc import jwt
from joserfc.jwk import KeySet

from bridge.idpsim.server import RunningSimulator
from tests.bridge.idpsim.browser_forms import Form, only_form
from tests.bridge.idpsim.conftest import OIDC_REDIRECT, OIDC_SECRET

OIDC = "/oidc"


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 2.3.1: form-urlencode both, then base64 of id:secret."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


@dataclass(kw_only=True)
class Flow:
    """One authorization request and what came of it."""

    verifier: str
    challenge: str
    state: str
    nonce: str
    location: str = ""

    @property
    def answer(self) -> dict[str, str]:
        return query_of(self.location)


class Rp:
    """The relying party and the user's browser, driving the simulator's OP."""

    def __init__(self, http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
        self.http = http
        self.sim = sim
        self.issuer = sim.base_url + OIDC

    async def get_json(self, path: str) -> dict[str, object]:
        async with self.http.get(self.sim.base_url + path) as answer:
            assert answer.status == 200, await answer.text()
            body = await answer.json()
            assert isinstance(body, dict)
            return body

    async def jwks(self) -> KeySet:
        return KeySet.import_key_set(await self.get_json(OIDC + "/jwks"))  # type: ignore[arg-type]

    async def authorize(self, *, client_id: str = "rp-basic", redirect_uri: str = OIDC_REDIRECT,
                        extra: dict[str, str] | None = None, pkce: bool = True,
                        scope: str = "openid email profile") -> tuple[int, str, Flow]:
        """GET /oidc/authorize: (status, body or Location, flow)."""
        verifier, challenge = pkce_pair()
        flow = Flow(verifier=verifier, challenge=challenge, state=secrets.token_urlsafe(8) + " &=é",
                    nonce=secrets.token_urlsafe(12))
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
                  "state": flow.state, "nonce": flow.nonce}
        if pkce:
            params.update(code_challenge=challenge, code_challenge_method="S256")
        params.update(extra or {})
        async with self.http.get(self.issuer + "/authorize", params=params, allow_redirects=False) as answer:
            if answer.status == 302:
                flow.location = answer.headers["Location"]
                return answer.status, flow.location, flow
            return answer.status, await answer.text(), flow

    async def submit(self, form: Form, **fields: str) -> tuple[int, str]:
        """Post a page's form (its hidden fields plus ``fields``): (status, body or Location)."""
        data = {**form.fields, **fields}
        url = self.sim.base_url + form.action
        async with self.http.post(url, data=data, allow_redirects=False) as answer:
            if answer.status == 302:
                return answer.status, answer.headers["Location"]
            return answer.status, await answer.text()

    async def sign_in(self, username: str, password: str, *, totp_secret: str | None = None,
                      client_id: str = "rp-basic", scope: str = "openid email profile") -> Flow:
        """The whole browser trip up to the redirect back with a code."""
        status, page, flow = await self.authorize(client_id=client_id, scope=scope)
        assert status == 200, page
        status, result = await self.submit(only_form(page), username=username, password=password, action="signin")
        if totp_secret is not None:
            assert status == 200, result
            status, result = await self.submit(only_form(result), otp=pyotp.TOTP(totp_secret).now(),
                                               action="signin")
        assert status == 302, result
        flow.location = result
        return flow

    async def token(self, data: dict[str, str], *, authorization: str | None = None) -> tuple[int, dict[str, object],
                                                                                               aiohttp.ClientResponse]:
        headers = {} if authorization is None else {"Authorization": authorization}
        async with self.http.post(self.issuer + "/token", data=data, headers=headers) as answer:
            body = await answer.json(content_type=None)
            return answer.status, body, answer

    async def redeem(self, flow: Flow, *, client_id: str = "rp-basic", secret: str | None = None,
                     verifier: str | None = None) -> tuple[int, dict[str, object], aiohttp.ClientResponse]:
        data = {"grant_type": "authorization_code", "code": flow.answer["code"], "redirect_uri": OIDC_REDIRECT,
                "code_verifier": verifier if verifier is not None else flow.verifier}
        return await self.token(data, authorization=basic(client_id, secret or OIDC_SECRET))

    async def password_grant(self, username: str, password: str, *, client_id: str = "rp-basic",
                             secret: str | None = None, scope: str = "openid email profile",
                             ) -> tuple[int, dict[str, object], aiohttp.ClientResponse]:
        data = {"grant_type": "password", "username": username, "password": password, "scope": scope}
        return await self.token(data, authorization=basic(client_id, secret or OIDC_SECRET))

    async def verified_claims(self, id_token: str, *, algorithms: tuple[str, ...] = ("RS256",)) -> dict[str, object]:
        """The ID token's claims, its signature verified against the published JWKS."""
        token = jwt.decode(id_token, await self.jwks(), algorithms=list(algorithms))
        return dict(token.claims)


def unverified(id_token: str) -> tuple[dict[str, object], dict[str, object]]:
    """(header, claims) of a compact JWT, read without any check (to look at a broken token)."""
    def part(text: str) -> dict[str, object]:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        assert isinstance(value, dict)
        return value

    header, payload, _ = id_token.split(".")
    return part(header), part(payload)
