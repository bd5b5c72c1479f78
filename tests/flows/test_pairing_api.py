"""Phone pairing, the device's side and the phone page up to the IdP (no browser): codes, polls, refusals, throttles."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import aiohttp
import pytest

from bridge.idpsim.server import RunningSimulator
from bridge.login.pairing import GUESSES_PER_SOURCE, USER_CODE_ALPHABET
from bridge.state.pairings import PairingStatus, move_pairing, pairing_by_device_code
from tests.flows.conftest import BridgeFactory
from tests.flows.pairing_support import (
    APP_ORIGIN,
    DEVICE,
    ORG_DEVICE,
    forms_of,
    pairing_bridge,
    phone,
    poll,
    start_pairing,
    text_of,
)

pytestmark = pytest.mark.usefixtures("sim")


async def test_a_pairing_gives_codes_a_panel_can_show(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    body = await start_pairing(bridge)
    assert re.fullmatch(f"[{USER_CODE_ALPHABET}]{{4}}-[{USER_CODE_ALPHABET}]{{4}}", body["user_code"])
    assert body["verification_uri"] == bridge.url + "/pair"
    query = parse_qs(urlsplit(body["verification_uri_complete"]).query)
    assert query == {"code": [body["user_code"].replace("-", "")]}
    assert 0 < body["expires_in"] <= 300 and body["interval"] == 5
    assert len(body["device_code"]) >= 43
    svg = ElementTree.fromstring(body["qr_svg"])
    assert svg.tag.endswith("svg") and "path" in body["qr_svg"]
    # Stored hashed: neither code is in the database.
    row = await bridge.store.database.fetchone("SELECT device_code_hash, user_code_hash FROM pairings")
    assert row is not None and body["device_code"].encode() not in bytes(row[0])
    dump = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                    for r in await bridge.store.database.fetchall("SELECT * FROM pairings") for v in r)
    assert body["user_code"].replace("-", "").encode() not in dump and body["device_code"].encode() not in dump


async def test_polls_wait_then_slow_down_and_another_device_cannot_use_the_code(
        make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    body = await start_pairing(bridge)
    assert await poll(bridge, body["device_code"]) == (400, {"error": "authorization_pending",
                                                             "message": "Waiting for you to sign in on your phone."})
    status, answer = await poll(bridge, body["device_code"])
    assert (status, answer["error"], answer["interval"]) == (400, "slow_down", 10)
    # Bound to the device that asked: another device of another tenant gets invalid_grant.
    status, answer = await poll(bridge, body["device_code"], ORG_DEVICE)
    assert (status, answer["error"]) == (400, "invalid_grant")
    status, answer = await poll(bridge, "made-up-code")
    assert (status, answer["error"]) == (400, "invalid_grant")


async def test_an_expired_code_answers_expired_token(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    body = await start_pairing(bridge)
    await bridge.store.database.execute("UPDATE pairings SET expires_at = ?",
                                        ((datetime.now(UTC) - timedelta(seconds=1)).isoformat(),))
    status, answer = await poll(bridge, body["device_code"])
    assert (status, answer["error"]) == (400, "expired_token")
    # The phone cannot open it either.
    async with bridge.http.get(body["verification_uri_complete"]) as resp:
        assert resp.status == 400 and "not valid" in text_of(await resp.text())


async def test_the_phone_page_names_the_device_and_a_no_denies_the_pairing(
        make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    body = await start_pairing(bridge)
    browser = phone()
    async with browser.get(body["verification_uri_complete"]) as resp:
        assert resp.status == 200
        html = await resp.text()
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert resp.headers["X-Frame-Options"] == "DENY"
        cookie = resp.cookies["lb_pair_csrf"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
    shown = text_of(html)
    device = await bridge.store.get_device(DEVICE[0])
    assert device is not None
    assert "Sign in on this device?" in shown and device.name in shown and "Example Corp" in shown
    assert body["user_code"] in shown
    form = forms_of(html)[0]
    async with browser.post(bridge.url + "/pair", data={**form["fields"], "answer": "no"}) as resp:
        assert resp.status == 200 and "Nothing was signed in" in text_of(await resp.text())
    await browser.close()
    status, answer = await poll(bridge, body["device_code"])
    assert (status, answer["error"]) == (400, "access_denied")
    # Used: the code no longer opens the page.
    async with bridge.http.get(body["verification_uri_complete"]) as resp:
        assert resp.status == 400


async def test_a_form_without_its_csrf_token_is_refused(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    body = await start_pairing(bridge)
    code = body["user_code"]
    async with aiohttp.ClientSession() as fresh, fresh.post(bridge.url + "/pair",
                                                            data={"code": code, "answer": "yes"}) as resp:
        assert resp.status == 403
    pairing = await pairing_by_device_code(bridge.store.database, hashlib.sha256(body["device_code"].encode()).digest())
    assert pairing is not None and pairing.status.value == "pending"


async def test_yes_sends_the_phone_to_the_tenants_idp(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    for device, idp_path in ((DEVICE, "/adfs/ls/"), (ORG_DEVICE, "/idp/profile/SAML2/Redirect/SSO")):
        body = await start_pairing(bridge, device)
        async with phone() as browser:
            async with browser.get(body["verification_uri_complete"]) as resp:
                form = forms_of(await resp.text())[0]
            resp = await browser.post(bridge.url + "/pair", data={**form["fields"], "answer": "yes"},
                                      allow_redirects=False)
            assert resp.status == 303, await resp.text()
            target = urlsplit(resp.headers["Location"])
            cookie = resp.cookies["lb_signin"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
            resp.release()
        assert f"{target.scheme}://{target.netloc}" == sim.base_url and target.path == idp_path
        query = parse_qs(target.query)
        if idp_path == "/adfs/ls/":
            assert query["wa"] == ["wsignin1.0"] and query["wtrealm"] == ["urn:loginbridge:example.com"]
            assert query["wreply"] == [bridge.url + "/wsfed/example"] and len(query["wctx"][0]) >= 43
        else:
            assert "SAMLRequest" in query and len(query["RelayState"][0]) >= 43


async def test_code_guesses_are_throttled_per_source(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    body = await start_pairing(bridge)
    for _ in range(GUESSES_PER_SOURCE):
        async with bridge.http.get(bridge.url + "/pair?code=BBBBBBBB") as resp:
            assert resp.status == 400
    # Now even the right code waits: the guesser cannot tell a hit.
    async with bridge.http.get(body["verification_uri_complete"]) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        assert "Too many" in text_of(await resp.text())


async def test_an_unknown_badge_is_refused_and_counted(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    status, body = await bridge.call("POST", "/v1/mfp/badge-login", json={"badge": "04:A2:19:7F"}, auth=DEVICE)
    assert (status, body["error"]) == (401, "badge_unknown")
    events = await bridge.store.audit_page("example", limit=20)
    assert any(e.mode == "badge" and e.result == "badge_unknown" and e.device_id == DEVICE[0] for e in events)


async def test_web_login_refuses_a_return_address_off_the_allow_list(
        make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await pairing_bridge(make_bridge, sim)
    for bad in ("https://evil.example/cb", "https://app.example.net.evil.example/", "//evil.example/",
                "javascript:alert(1)", "https://app.example.net@evil.example/"):
        async with bridge.http.get(bridge.url + "/v1/web/login", params={"email": "alice@example.com", "return_to": bad},
                                   allow_redirects=False) as resp:
            assert resp.status == 400, bad
            assert "Location" not in resp.headers
    async with bridge.http.get(bridge.url + "/v1/web/login",
                               params={"email": "alice@example.com", "return_to": APP_ORIGIN + "/after"},
                               allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith(sim.base_url + "/adfs/ls/?")


async def test_an_approval_not_taken_in_time_expires(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    """A device that stops polling cannot collect an approved session hours later."""
    bridge = await pairing_bridge(make_bridge, sim)
    body = await start_pairing(bridge)
    db = bridge.store.database
    pairing = await pairing_by_device_code(db, hashlib.sha256(body["device_code"].encode()).digest())
    assert pairing is not None
    for status in (PairingStatus.CONFIRMED, PairingStatus.APPROVED):
        assert await move_pairing(db, pairing.id, from_=(PairingStatus.PENDING, PairingStatus.CONFIRMED), to=status,
                                  now=datetime.now(UTC), email="alice@example.com")
    await db.execute("UPDATE pairings SET expires_at = ?", ((datetime.now(UTC) - timedelta(minutes=3)).isoformat(),))
    status, answer = await poll(bridge, body["device_code"])
    assert (status, answer["error"]) == (400, "expired_token")
    await db.execute("UPDATE pairings SET expires_at = ?", ((datetime.now(UTC) - timedelta(minutes=1)).isoformat(),))
    status, answer = await poll(bridge, body["device_code"])  # within the grace: the session
    assert status == 200 and answer["user"]["email"] == "alice@example.com", answer
