"""Phone pairing with a real phone browser: Debian's Chromium at 390x844, driven by Playwright.

A device asks for a pairing; the "phone" opens ``verification_uri_complete``, checks the device and
company, answers Yes, signs in at the simulator's IdP page with password and TOTP (WS-Federation for
the AD FS tenant, SAML Web SSO for the SAML tenant) and is told to return to the device; the device's
poll then gets the user's session.  A "No" gives the device ``access_denied``.  A badge sent with a
pairing logs in afterwards without the IdP, until the user is disabled.  Screenshots of every phone
page go to tmp, artifacts/ (gitignored) and /tmp/console-shots/.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyotp

from bridge.idpsim.config import SimConfig
from bridge.idpsim.server import RunningSimulator
from tests.flows.conftest import KNOWN_SECRETS, Bridge, BridgeFactory
from tests.flows.pairing_support import DEVICE, ORG_DEVICE, pairing_bridge, poll, start_pairing
from tests.flows.test_console_browser import _OVERFLOW, ARTIFACTS, CHROMIUM, FLAGS, SHOTS, _require_browser

PHONE = {"width": 390, "height": 844}


def _totp(sim_config: SimConfig, email: str) -> str:
    user = sim_config.find_user(email)
    assert user is not None and user.totp_secret, f"{email} has no TOTP in the demo users file"
    return pyotp.TOTP(user.totp_secret).now()


async def _sign_in_at_idp(page: Any, bridge: Bridge, sim_config: SimConfig, email: str, password: str,
                          shot: Any, prefix: str) -> None:
    KNOWN_SECRETS.add(password)
    await page.wait_for_selector("input[name=username]")
    assert page.url.startswith(bridge.sim.base_url)
    await shot(page, f"{prefix}-3-idp-login.png")
    await page.fill("input[name=username]", email)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_selector("input[name=otp]")
    await shot(page, f"{prefix}-4-idp-otp.png")
    await page.fill("input[name=otp]", _totp(sim_config, email))
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{bridge.url}/signin/done**")


async def _paired(bridge: Bridge, device: tuple[str, str], device_code: str) -> dict[str, Any]:
    status, body = await poll(bridge, device_code, device)
    assert status == 200, body
    return body


async def test_pairing_with_a_phone_browser(make_bridge: BridgeFactory, sim: RunningSimulator, sim_config: SimConfig,
                                           tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import async_playwright

    bridge = await pairing_bridge(make_bridge, sim)
    shots: list[Path] = []

    async def shot(page: Any, name: str) -> None:
        assert await page.evaluate(_OVERFLOW) == [], name
        path = tmp_path / name
        await page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            # The simulator's certificate comes from the test CA; a phone would trust the real IdP's.
            context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                                ignore_https_errors=True)
            page = await context.new_page()

            # 1. AD FS tenant (WS-Federation passive), with a badge: alice, password + TOTP.
            started = await start_pairing(bridge, DEVICE, badge="04:A2:19:7F:11")
            await page.goto(started["verification_uri_complete"])
            text = await page.inner_text("main")
            device = await bridge.store.get_device(DEVICE[0])
            assert device is not None
            assert "Sign in on this device?" in text and device.name in text and "Example Corp" in text
            assert started["user_code"] in text
            await shot(page, "pair-wsfed-1-confirm.png")
            assert await poll(bridge, started["device_code"]) == (400, {
                "error": "authorization_pending", "message": "Waiting for you to sign in on your phone."})
            await page.click("button[value=yes]")
            await _sign_in_at_idp(page, bridge, sim_config, "alice@example.com", "alice-demo-pass", shot,
                                  "pair-wsfed")
            done = await page.inner_text("main")
            assert "You can return to the device" in done and "alice@example.com" in done
            await shot(page, "pair-wsfed-5-done.png")
            body = await _paired(bridge, DEVICE, started["device_code"])
            assert body["user"] == {"email": "alice@example.com", "display_name": "Alice Example",
                                    "tenant": "example"}
            # Single use.
            status, again = await poll(bridge, started["device_code"])
            assert (status, again["error"]) == (400, "invalid_grant")

            # 2. The badge now opens alice's session without the IdP ...
            calls = dict(sim.state.counters)
            status, badge = await bridge.call("POST", "/v1/mfp/badge-login", json={"badge": "04:A2:19:7F:11"},
                                              auth=DEVICE)
            assert status == 200 and badge["user"]["email"] == "alice@example.com", badge
            KNOWN_SECRETS.add(badge["session"]["token"])
            assert dict(sim.state.counters) == calls, "a badge login must not call the IdP"
            # ... until alice is disabled, which revokes the binding at once.
            await bridge.store.deactivate_user("example", "alice@example.com")
            status, refused = await bridge.call("POST", "/v1/mfp/badge-login", json={"badge": "04:A2:19:7F:11"},
                                                auth=DEVICE)
            assert (status, refused["error"]) == (401, "badge_unknown")

            # 3. SAML tenant (Web Browser SSO, Redirect then POST): erin, password + TOTP.
            started = await start_pairing(bridge, ORG_DEVICE)
            await page.goto(started["verification_uri_complete"])
            assert "Example Org" in await page.inner_text("main")
            await shot(page, "pair-saml-1-confirm.png")
            await page.click("button[value=yes]")
            await _sign_in_at_idp(page, bridge, sim_config, "erin@example.org", "erin-demo-pass", shot, "pair-saml")
            await shot(page, "pair-saml-5-done.png")
            body = await _paired(bridge, ORG_DEVICE, started["device_code"])
            assert body["user"]["email"] == "erin@example.org" and body["user"]["tenant"] == "example-org"

            # 4. "No, I did not start this": the device is told access_denied.
            started = await start_pairing(bridge, ORG_DEVICE)
            await page.goto(bridge.url + "/pair")
            await shot(page, "pair-0-enter-code.png")
            await page.fill("input[name=code]", started["user_code"].lower())
            await page.click("button[type=submit]")
            await page.wait_for_selector("button[value=no]")
            await page.click("button[value=no]")
            assert "Nothing was signed in" in await page.inner_text("main")
            await shot(page, "pair-refused.png")
            status, refused = await poll(bridge, started["device_code"], ORG_DEVICE)
            assert (status, refused["error"]) == (400, "access_denied")
        finally:
            await browser.close()

    ARTIFACTS.mkdir(exist_ok=True)
    SHOTS.mkdir(exist_ok=True)
    for path in shots:
        shutil.copy(path, ARTIFACTS / path.name)
        shutil.copy(path, SHOTS / path.name)
