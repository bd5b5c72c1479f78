"""`loginbridge check` for an OpenID Connect tenant, against the simulator's OpenID Provider over loopback TLS.

The simulator gets a client of its own for these tests (client_secret_basic, password grant allowed);
the bridge is the flows' bridge (tests/flows/conftest.py) with one tenant, example-net, whose users are
the demo's.  The pure judgements of the discovery document and the JWK Set are tested on hand-made
documents: a real provider's document is where they differ from the simulator's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.config import OidcClientAuth, OidcConfig, Protocol, TenantConfig
from bridge.idp.http import IdpHttp
from bridge.idp.oidc.client import OidcIdp
from bridge.idp.oidc.discovery import ProviderMetadata
from bridge.idp.oidc.jwks import parse_jwks
from bridge.idpsim.config import SimConfig
from bridge.idpsim.keys import ensure_server_cert
from bridge.idpsim.oidc.settings import ClientAuthMethod, OidcClient
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.toolkit.check import Credentials, check_command, idp_urls, load_report
from bridge.toolkit.oidc import judge_keys, judge_provider, redirect_step
from bridge.toolkit.report import Report, Status, Step
from tests.flows.conftest import (
    KNOWN_SECRETS,
    BridgeFactory,
    make_bridge,
    no_secrets_in_logs,
    sim_config,
    sim_keys_dir,
)
from tests.flows.test_check import _run_cli

__all__ = ["make_bridge", "no_secrets_in_logs", "sim_config", "sim_keys_dir"]

CLIENT_ID = "loginbridge-check-test"
CLIENT_SECRET = "check-test-client-secret-4711"  # the simulator's copy of this test client's secret
KNOWN_SECRETS.add(CLIENT_SECRET)
OSCAR = Credentials(email="oscar@example.net", password="oscar-demo-pass")  # password only, at the simulator


def step(report: Report, prefix: str) -> Step:
    found = [s for s in report.steps if s.name.startswith(prefix)]
    assert found, f"no step {prefix!r} in {[s.name for s in report.steps]}"
    return found[0]


def statuses(report: Report) -> dict[str, str]:
    return {s.name: s.status.value for s in report.steps}


@pytest.fixture
async def sim(sim_config: SimConfig, sim_keys_dir: Path) -> AsyncIterator[RunningSimulator]:
    """The simulator with this file's client registered at its OpenID Provider."""
    client = OidcClient(client_id=CLIENT_ID, auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
                        client_secret=CLIENT_SECRET, redirect_uris=("http://127.0.0.1:8080/oidc/example-net/callback",),
                        password_grant=True)
    config = dataclasses.replace(sim_config, oidc=sim_config.oidc.with_client(client))
    async with run_simulator(config, sim_keys_dir) as running:
        yield running


def oidc_tenant(sim: RunningSimulator, secret_file: Path, **oidc: Any) -> dict[str, Any]:
    """The example-net tenant at the simulator's OpenID Provider (``idp_whitelist`` is the tenant's)."""
    whitelist = oidc.pop("idp_whitelist", ["127.0.0.1/32"])
    section: dict[str, Any] = {
        "issuer": f"{sim.base_url}/oidc",
        "client_id": CLIENT_ID,
        "client_auth": "client_secret_basic",
        "client_secret_file": str(secret_file),
        "email_claim": "email",
        "signing_algorithms": ["RS256"],
        "password_grant": True,
        "ca_file": str(sim.ca_file),
    }
    section.update(oidc)
    return {"id": "example-net", "name": "Example Net", "domains": ["example.net"], "protocol": "oidc",
            "idp_whitelist": whitelist, "oidc": section}


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(CLIENT_SECRET + "\n")
    path.chmod(0o600)
    return path


async def test_every_step_passes_and_the_password_grant_signs_oscar_in(
        make_bridge: BridgeFactory, sim: RunningSimulator, secret_file: Path) -> None:
    bridge = await make_bridge(tenants=[oidc_tenant(sim, secret_file)])
    report = await check_command(bridge.config, "example-net", OSCAR)
    assert all(s.status is Status.PASS for s in report.steps), statuses(report)
    names = [s.name for s in report.steps]
    for expected in ("configuration", "resolve 127.0.0.1", "whitelist 127.0.0.1", "tcp 127.0.0.1:", "tls 127.0.0.1",
                     "discovery", "jwks", "clock skew", "redirect uri", "login oscar@example.net"):
        assert any(n.startswith(expected) for n in names), (expected, names)
    # The endpoints share the issuer's host: its network steps run once.
    assert sum(n.startswith("tls ") for n in names) == 1
    discovery = step(report, "discovery")
    assert f"{sim.base_url}/oidc/.well-known/openid-configuration" in discovery.summary
    assert "issuer matches" in discovery.summary and "RS256" in discovery.summary
    jwks = step(report, "jwks")
    assert "usable signing key(s)" in jwks.summary and "RS256" in jwks.summary
    assert report.tls_not_after is not None

    # The redirect URI shown is the one the client sends (OidcIdp.redirect_uri), to register at the provider.
    tenant = bridge.config.tenant("example-net")
    http = IdpHttp(whitelist=tenant.idp_whitelist, ssl_context=ssl.create_default_context(), connect_timeout=1,
                   timeout=1, max_connections=1)
    idp = OidcIdp(tenant, http, bridge.config.public_url, pkce_key=b"k" * 32)
    try:
        assert f"register {idp.redirect_uri} " in step(report, "redirect uri").summary
    finally:
        idp.close()
        await http.close()

    login = step(report, "login")
    assert "oscar@example.net" in login.summary
    assert sim.state.counters["oidc.token.password"] == 1  # one real password grant
    events = await bridge.store.audit_events(tenant_id="example-net", last=1)
    assert events and events[-1].result == "ok" and events[-1].email == OSCAR.email  # audited like a device's
    saved = load_report(bridge.config.state_dir, "example-net")
    assert saved is not None and saved.ok and [s.name for s in saved.steps] == names


async def test_the_command_exits_0_and_prints_every_step(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                          secret_file: Path) -> None:
    bridge = await make_bridge(tenants=[oidc_tenant(sim, secret_file)])
    conf = str(bridge.config.source)
    code, text = await asyncio.to_thread(
        _run_cli, ["check", "example-net", "--config", conf, "--email", OSCAR.email, "--password-stdin", "--json"],
        OSCAR.password + "\n")
    assert code == 0, text
    body = json.loads(text)
    assert body["result"] == "ok" and body["worst"] == "PASS"
    assert [s["name"] for s in body["steps"]][-2:] == ["redirect uri", "login oscar@example.net"]
    assert OSCAR.password not in text and CLIENT_SECRET not in text


async def test_issuer_outside_the_whitelist_contacts_nothing(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                             secret_file: Path) -> None:
    bridge = await make_bridge(tenants=[oidc_tenant(sim, secret_file, idp_whitelist=["10.0.0.0/8"])])
    report = await check_command(bridge.config, "example-net", OSCAR)
    assert not report.ok
    wl = step(report, "whitelist")
    assert wl.status is Status.FAIL and wl.code == "idp_not_whitelisted"
    assert "- 127.0.0.1/32" in wl.hint.splitlines()
    for name in ("discovery", "jwks", "clock skew"):
        skipped = step(report, name)
        assert skipped.status is Status.SKIP and "outside idp_whitelist" in skipped.summary, skipped
    assert not any(s.name.startswith(("tcp", "tls")) for s in report.steps)
    assert step(report, "redirect uri").status is Status.PASS  # needs no contact
    login = step(report, "login")
    assert login.status is Status.FAIL and login.code == "idp_not_whitelisted"
    counters = sim.state.counters
    assert counters["oidc.discovery"] + counters["oidc.jwks"] + counters["oidc.token"] == 0  # nothing was sent


async def test_an_issuer_with_a_trailing_slash_fails_naming_both(
        make_bridge: BridgeFactory, sim: RunningSimulator, secret_file: Path) -> None:
    configured = f"{sim.base_url}/oidc/"  # the same document is read; it names the issuer without the "/"
    bridge = await make_bridge(tenants=[oidc_tenant(sim, secret_file, issuer=configured)])
    report = await check_command(bridge.config, "example-net", None)
    discovery = step(report, "discovery")
    assert discovery.status is Status.FAIL and discovery.code == "idp_protocol_error", discovery
    assert f"names issuer {sim.base_url}/oidc," in discovery.summary
    assert f"oidc.issuer is {configured}:" in discovery.summary and "trailing /" in discovery.summary
    assert f"set oidc.issuer to {sim.base_url}/oidc exactly" in discovery.hint
    assert step(report, "jwks").status is Status.SKIP
    assert not report.ok


async def test_a_provider_naming_another_issuer_fails_naming_both(
        make_bridge: BridgeFactory, sim_config: SimConfig, sim_keys_dir: Path, secret_file: Path) -> None:
    client = OidcClient(client_id=CLIENT_ID, auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
                        client_secret=CLIENT_SECRET, redirect_uris=("https://bridge.test/cb",))
    other = dataclasses.replace(sim_config, oidc=dataclasses.replace(
        sim_config.oidc.with_client(client), issuer="https://login.other-provider.test/tenant-a/v2.0"))
    async with run_simulator(other, sim_keys_dir) as foreign:
        bridge = await make_bridge(tenants=[oidc_tenant(foreign, secret_file)])
        report = await check_command(bridge.config, "example-net", None)
    discovery = step(report, "discovery")
    assert discovery.status is Status.FAIL, discovery
    assert "names issuer https://login.other-provider.test/tenant-a/v2.0" in discovery.summary
    assert f"oidc.issuer is {foreign.base_url}/oidc" in discovery.summary and "identical" in discovery.summary
    assert step(report, "jwks").status is Status.SKIP


@pytest.fixture
async def split_provider(sim: RunningSimulator, sim_keys_dir: Path) -> AsyncIterator[str]:
    """A provider whose discovery document is served at https://localhost:P/oidc, its endpoints at the simulator.

    As with Google, the issuer's host is not the host of the keys and the token endpoint.  Yields the issuer.
    """
    cert, key = ensure_server_cert(sim_keys_dir, "split-provider.pem", "split-provider.key", ["localhost"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    port: list[int] = []

    async def discovery(_: web.Request) -> web.Response:
        issuer = f"https://localhost:{port[0]}/oidc"
        at_sim = f"{sim.base_url}/oidc"
        return web.json_response({
            "issuer": issuer, "authorization_endpoint": at_sim + "/authorize", "token_endpoint": at_sim + "/token",
            "jwks_uri": at_sim + "/jwks", "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["public"]})

    app = web.Application()
    app.router.add_get("/oidc/.well-known/openid-configuration", discovery)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port.append(runner.addresses[0][1])
    try:
        yield f"https://localhost:{port[0]}/oidc"
    finally:
        await runner.cleanup()


async def test_every_endpoint_host_gets_its_own_network_steps(
        make_bridge: BridgeFactory, sim: RunningSimulator, secret_file: Path, split_provider: str) -> None:
    bridge = await make_bridge(tenants=[oidc_tenant(sim, secret_file, issuer=split_provider)])
    report = await check_command(bridge.config, "example-net", None)
    assert all(s.status is Status.PASS for s in report.steps), statuses(report)
    names = [s.name for s in report.steps]
    discovery = names.index("discovery")
    # The issuer's host before the document is read; the endpoints' host after it, before the JWK Set.
    assert names.index("tls localhost") < discovery < names.index("tls 127.0.0.1") < names.index("jwks")
    assert names.index("whitelist 127.0.0.1") > discovery
    assert "endpoints also on 127.0.0.1" in step(report, "discovery").summary
    assert f"{sim.base_url}/oidc/jwks" in step(report, "jwks").summary


async def test_a_wrong_password_fails_the_login_step_with_the_device_code(
        make_bridge: BridgeFactory, sim: RunningSimulator, secret_file: Path) -> None:
    bridge = await make_bridge(tenants=[oidc_tenant(sim, secret_file)])
    KNOWN_SECRETS.add("not-oscars-password")
    report = await check_command(bridge.config, "example-net",
                                 Credentials(email=OSCAR.email, password="not-oscars-password"))
    login = step(report, "login")
    assert login.status is Status.FAIL and login.code == "invalid_credentials", login
    assert login.panel_message == "Wrong email address or password."
    assert [s.status for s in report.steps if s is not login] == [Status.PASS] * (len(report.steps) - 1)
    events = await bridge.store.audit_events(tenant_id="example-net", last=1)
    assert events[0].result == "invalid_credentials"


async def test_a_wrong_client_secret_points_at_the_client_registration(
        make_bridge: BridgeFactory, sim: RunningSimulator, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-client-secret\n")
    wrong.chmod(0o600)
    KNOWN_SECRETS.add("not-the-client-secret")
    bridge = await make_bridge(tenants=[oidc_tenant(sim, wrong)])
    report = await check_command(bridge.config, "example-net", OSCAR)
    login = step(report, "login")
    assert login.status is Status.FAIL and login.code == "idp_rejected_request", login
    assert "invalid_client" in login.summary
    assert f"client {CLIENT_ID}" in login.hint and "the client secret (its value" in login.hint
    assert step(report, "discovery").status is Status.PASS  # the document cannot tell a wrong secret


async def test_without_the_password_grant_the_login_is_skipped_not_failed(
        make_bridge: BridgeFactory, sim: RunningSimulator, secret_file: Path) -> None:
    bridge = await make_bridge(tenants=[oidc_tenant(sim, secret_file, password_grant=False)])
    report = await check_command(bridge.config, "example-net", OSCAR)
    login = step(report, "login oscar@example.net")
    assert login.status is Status.SKIP and "phone" in login.hint and "password_grant" in login.summary
    assert report.ok, statuses(report)
    assert await bridge.store.audit_events(tenant_id="example-net", last=1) == []  # no attempt was made
    assert sim.state.counters["oidc.token"] == 0 and sim.state.counters["oidc.discovery"] >= 1


def test_idp_urls_of_an_oidc_tenant(tmp_path: Path) -> None:
    cfg = OidcConfig(issuer="https://accounts.google.com", client_id="c", client_auth=OidcClientAuth.NONE)
    tenant = TenantConfig(id="g", name="G", domains=("g.test",), protocol=Protocol.OIDC, idp_whitelist=(),
                          session_ttl=timedelta(hours=8), wstrust=None, saml2=None, source=tmp_path / "g.yaml",
                          oidc=cfg)
    assert idp_urls(tenant) == ["https://accounts.google.com"]
    assert idp_urls(tenant, GOOGLE) == ["https://accounts.google.com", GOOGLE.authorization_endpoint,
                                        GOOGLE.token_endpoint, GOOGLE.jwks_uri, GOOGLE.userinfo_endpoint]


# -- the pure judgements -----------------------------------------------------------------------------

GOOGLE = ProviderMetadata(
    issuer="https://accounts.google.com",
    authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
    token_endpoint="https://oauth2.googleapis.com/token",
    jwks_uri="https://www.googleapis.com/oauth2/v3/certs",
    userinfo_endpoint="https://openidconnect.googleapis.com/v1/userinfo",
    id_token_signing_alg_values_supported=("RS256",),
    token_endpoint_auth_methods_supported=("client_secret_post", "client_secret_basic"),
    grant_types_supported=("authorization_code", "refresh_token"),
    code_challenge_methods_supported=("plain", "S256"),
    response_types_supported=("code",),
)
ALL_LISTED = frozenset({"token_endpoint_auth_methods_supported", "grant_types_supported",
                        "code_challenge_methods_supported"})


def oidc_cfg(**changes: Any) -> OidcConfig:
    base = OidcConfig(issuer=GOOGLE.issuer, client_id="c", client_auth=OidcClientAuth.CLIENT_SECRET_BASIC,
                      client_secret_env="X")
    return dataclasses.replace(base, **changes)


def test_a_fitting_provider_passes() -> None:
    assert judge_provider(oidc_cfg(), GOOGLE, listed=ALL_LISTED) == (Status.PASS, [])


def test_a_client_auth_the_provider_does_not_list_fails() -> None:
    status, hints = judge_provider(oidc_cfg(client_auth=OidcClientAuth.PRIVATE_KEY_JWT), GOOGLE, listed=ALL_LISTED)
    assert status is Status.FAIL and "private_key_jwt" in hints[0] and "client_secret_basic" in hints[0]
    # Not listed at all: the document says nothing, nothing is held against it.
    assert judge_provider(oidc_cfg(client_auth=OidcClientAuth.PRIVATE_KEY_JWT), GOOGLE,
                          listed=frozenset())[0] is Status.PASS
    # A public client only warns: providers accept them without listing "none" (Entra ID).
    assert judge_provider(oidc_cfg(client_auth=OidcClientAuth.NONE), GOOGLE, listed=ALL_LISTED)[0] is Status.WARN


def test_warnings_for_pkce_the_password_grant_and_the_algorithms() -> None:
    plain_only = dataclasses.replace(GOOGLE, code_challenge_methods_supported=("plain",))
    status, hints = judge_provider(oidc_cfg(), plain_only, listed=ALL_LISTED)
    assert status is Status.WARN and "S256" in hints[0]
    status, hints = judge_provider(oidc_cfg(password_grant=True), GOOGLE, listed=ALL_LISTED)
    assert status is Status.WARN and "not password" in hints[0]
    assert judge_provider(oidc_cfg(password_grant=True), GOOGLE, listed=frozenset())[0] is Status.PASS
    status, hints = judge_provider(oidc_cfg(signing_algorithms=("ES256", "PS256")), GOOGLE, listed=ALL_LISTED)
    assert status is Status.WARN and "ES256, PS256" in hints[0] and "RS256" in hints[0]


def _jwk_set(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def _ec_jwk(kid: str, alg: str | None = None) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc.jwk import ECKey

    key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    jwk: dict[str, Any] = {**key.as_dict(private=False), "kid": kid, "use": "sig"}
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def test_keys_that_cannot_verify_the_allowed_algorithms_fail() -> None:
    keys = parse_jwks(_jwk_set(_ec_jwk("ec-1"), _ec_jwk("ec-2", "ES256")))
    fail = judge_keys(oidc_cfg(signing_algorithms=("RS256",)), keys, "https://idp.test/jwks")
    assert fail.status is Status.FAIL and fail.code == "assertion_invalid" and "RS256" in fail.hint
    assert "ec-1" in fail.summary and "ec-2" in fail.summary and "2 usable" in fail.summary
    assert judge_keys(oidc_cfg(signing_algorithms=("RS256", "ES256")), keys, "x").status is Status.PASS
    # An HMAC algorithm is keyed with the client secret, not the JWK Set: nothing to hold against the keys.
    assert judge_keys(oidc_cfg(signing_algorithms=("HS256",)), keys, "x").status is Status.PASS


@pytest.mark.parametrize(("uri", "status"), [
    ("https://bridge.example.com/oidc/t/callback", Status.PASS),
    ("http://127.0.0.1:8080/oidc/t/callback", Status.PASS),
    ("http://localhost:8080/oidc/t/callback", Status.PASS),
    ("http://bridge.example.com/oidc/t/callback", Status.WARN),
])
def test_the_redirect_uri_step(uri: str, status: Status) -> None:
    shown = redirect_step(uri)
    assert shown.status is status and uri in shown.summary
