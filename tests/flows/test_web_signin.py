"""Browser sign-in without a browser: web sign-in for the platform's apps, IdP refusals, MFA at the password prompt.

A small form-following client plays the browser over real HTTP and TLS: it submits the simulator's
login and code pages and the auto-post page as a browser would, with cookies kept per host.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from bridge.idpsim.config import SimConfig
from bridge.idpsim.server import RunningSimulator
from tests.flows.conftest import KNOWN_SECRETS, BridgeFactory
from tests.flows.pairing_support import (
    APP_ORIGIN,
    DEVICE,
    ORG_DEVICE,
    Browser,
    idp_sign_in,
    pairing_bridge,
    phone,
    poll,
    start_pairing,
    text_of,
)


def _secret(sim_config: SimConfig, email: str) -> str:
    user = sim_config.find_user(email)
    assert user is not None and user.totp_secret
    return user.totp_secret


async def test_a_web_app_gets_a_session_through_the_idp(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                        sim_config: SimConfig) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    async with phone() as http:
        browser = Browser(http, sim)
        await browser.go("GET", bridge.url + "/v1/web/login?" + "email=alice%40example.com&return_to="
                         + APP_ORIGIN + "%2Fafter%3Ftab%3D2")
        assert browser.url.startswith(sim.base_url + "/adfs/ls/") and browser.status == 200
        await idp_sign_in(browser, "alice@example.com", "alice-demo-pass", _secret(sim_config, "alice@example.com"),
                           stop_at=APP_ORIGIN)
    back = urlsplit(browser.url)
    assert f"{back.scheme}://{back.netloc}" == APP_ORIGIN and back.path == "/after"
    query = parse_qs(back.query)
    assert query["tab"] == ["2"] and len(query["code"][0]) >= 43
    code = query["code"][0]
    KNOWN_SECRETS.add(code)
    status, body = await bridge.call("POST", "/v1/web/session", json={"code": code})
    assert status == 200 and body["user"]["email"] == "alice@example.com", body
    KNOWN_SECRETS.add(body["session"]["token"])
    status, again = await bridge.call("POST", "/v1/web/session", json={"code": code})
    assert (status, again["error"]) == (400, "invalid_grant")
    events = [e for e in await bridge.store.audit_page("example", limit=20) if e.mode == "web"]
    assert [e.result for e in events] == ["ok", "ok", "ok"]  # the IdP's answer, the browser's return, the exchange
    assert all(e.email == "alice@example.com" for e in events)


async def test_the_idp_signing_in_someone_else_is_refused(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                          sim_config: SimConfig) -> None:
    """/v1/web/login for alice, but the person at the IdP signs in as frontdesk: no code, no session."""
    bridge = await pairing_bridge(make_bridge, sim)
    async with phone() as http:
        browser = Browser(http, sim)
        await browser.go("GET", bridge.url + "/v1/web/login?email=alice%40example.com&return_to=" + APP_ORIGIN)
        await idp_sign_in(browser, "frontdesk@example.com", "frontdesk-demo-pass", None, stop_at=APP_ORIGIN)
    assert not browser.url.startswith(APP_ORIGIN)
    assert browser.status == 403 and "code=" not in browser.url
    events = await bridge.store.audit_page("example", limit=20)
    assert any(e.mode == "web" and e.result == "access_denied" for e in events)


async def test_cancel_at_the_saml_idp_denies_the_pairing(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    started = await start_pairing(bridge, ORG_DEVICE)
    async with phone() as http:
        browser = Browser(http, sim)
        await browser.go("GET", started["verification_uri_complete"])
        await browser.submit(button="yes")
        assert browser.url.startswith(sim.base_url + "/idp/profile/SAML2/Redirect/SSO")
        await browser.submit(button="cancel")
        await browser.submit()  # the auto-post page carries the refusal to the ACS
    assert browser.status == 403 and "refused" in text_of(browser.html)
    status, body = await poll(bridge, started["device_code"], ORG_DEVICE)
    assert (status, body["error"]) == (400, "access_denied")


async def test_another_browser_cannot_finish_a_sign_in(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                      sim_config: SimConfig) -> None:
    """The IdP's answer is bound to the browser that said Yes: sent to a victim, it approves nothing."""
    bridge = await pairing_bridge(make_bridge, sim)
    started = await start_pairing(bridge, DEVICE)
    async with phone() as attacker_http:
        attacker = Browser(attacker_http, sim)
        await attacker.go("GET", started["verification_uri_complete"])
        await attacker.submit(button="yes")
        idp_url = attacker.url
    async with phone() as victim_http:
        victim = Browser(victim_http, sim)
        await victim.go("GET", idp_url)
        await idp_sign_in(victim, "alice@example.com", "alice-demo-pass", _secret(sim_config, "alice@example.com"))
    assert victim.status == 400 and "another browser" in text_of(victim.html)
    status, body = await poll(bridge, started["device_code"])
    assert (status, body["error"]) == (400, "access_denied")


async def test_mfa_required_at_the_password_prompt_is_not_a_bad_password(
        make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    for email, password, device in (("dave@example.com", "dave-demo-pass", DEVICE),
                                    ("erin@example.org", "erin-demo-pass", ORG_DEVICE)):
        for _ in range(7):  # more than user_failures (5): still no lock, still asked of the IdP
            status, body = await bridge.user_prompt(email, password, device)
            assert (status, body["error"]) == (403, "mfa_required"), body
            assert "Sign in with phone" in body["message"]
    assert sim.state.counters["fault.mfa_required"] + sim.state.counters.get("ecp.mfa_required", 0) >= 7 \
        or sim.state.counters["trust13"] + sim.state.counters["trust2005"] >= 7
    rows = await bridge.store.database.fetchval("SELECT count(*) FROM throttle_failures")
    assert rows == 0
    # A wrong password for the same user is still a wrong password.
    status, body = await bridge.user_prompt("dave@example.com", "not-daves-password")
    assert (status, body["error"]) == (401, "invalid_credentials")
