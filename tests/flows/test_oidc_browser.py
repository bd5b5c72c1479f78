"""OpenID Connect phone pairing in a real phone browser: Debian's Chromium at 390x844, driven by Playwright.

The authorization code flow crosses three origins: the bridge's confirmation page POSTs and is
redirected to the provider; the provider's login and TOTP pages POST to themselves and are
redirected back to the bridge's callback (a GET), which redirects to ``/signin/done``.  Chromium
applies each page's CSP ``form-action`` to such redirects, and sends the Lax sign-in cookie on the
top-level return: this is what a plain HTTP client cannot show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyotp

from bridge.idpsim.config import SimConfig
from bridge.idpsim.server import RunningSimulator
from tests.flows.conftest import KNOWN_SECRETS, Bridge
from tests.flows.oidc_support import DEVICE, NINA, NINA_PASSWORD, totp_secret
from tests.flows.pairing_support import poll, start_pairing
from tests.flows.test_console_browser import _OVERFLOW, CHROMIUM, FLAGS, _require_browser
from tests.flows.test_oidc import bridge, bridge_port, sim  # noqa: F401 - the fixtures, used by name

PHONE = {"width": 390, "height": 844}


async def test_an_oidc_pairing_in_a_phone_browser(bridge: Bridge, sim: RunningSimulator,  # noqa: F811
                                                  sim_config: SimConfig, tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import async_playwright

    async def shot(page: Any, name: str) -> None:
        assert await page.evaluate(_OVERFLOW) == [], name
        await page.screenshot(path=str(tmp_path / name), full_page=True)

    KNOWN_SECRETS.add(NINA_PASSWORD)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                                ignore_https_errors=True)
            page = await context.new_page()
            started = await start_pairing(bridge, DEVICE)
            await page.goto(started["verification_uri_complete"])
            text = await page.inner_text("main")
            assert "Sign in on this device?" in text and "Example Net" in text and "Annex, copy corner" in text
            await shot(page, "oidc-1-confirm.png")
            await page.click("button[value=yes]")
            await page.wait_for_selector("input[name=username]")
            assert page.url.startswith(f"{sim.base_url}/oidc/authorize")
            await shot(page, "oidc-2-login.png")
            await page.fill("input[name=username]", NINA)
            await page.fill("input[name=password]", NINA_PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector("input[name=otp]")
            await page.fill("input[name=otp]", pyotp.TOTP(totp_secret(sim_config, NINA)).now())
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{bridge.url}/signin/done**")
            done = await page.inner_text("main")
            assert "You can return to the device" in done and NINA in done
            await shot(page, "oidc-3-done.png")
        finally:
            await browser.close()
    status, body = await poll(bridge, started["device_code"], DEVICE)
    assert status == 200, body
    assert body["user"]["email"] == NINA and body["user"]["tenant"] == "example-net"
    KNOWN_SECRETS.add(body["session"]["token"])
