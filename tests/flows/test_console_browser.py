"""The console in headless Chromium (Debian's package, driven by Playwright; no browser download).

Signs in, runs a check, finds a failed login with its reason in the attempts
list, and saves screenshots under tmp and in artifacts/ (gitignored) for a
human to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.flows.test_console import TECH, ConsoleFactory, console_bridge
from tests.paths import REPO

__all__ = ["console_bridge"]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _require_browser() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail("Debian's chromium is missing: .ci/run must install it (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed here (apt-get install chromium); CI installs it")


async def test_console_in_chromium(console_bridge: ConsoleFactory, tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import async_playwright

    bridge = await console_bridge()
    status, _ = await bridge.device_login("alice@example.com", "alice-typed-this-wrong")
    assert status == 401
    status, _ = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1440, "height": 900})
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(bridge.url + "/console/tenants")
            assert page.url.endswith("/console/login")  # a session is needed
            await page.fill("input[name=name]", TECH[0])
            await page.fill("input[name=password]", TECH[1])
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/tenants")
            assert "never run" in await page.inner_text("table")

            await page.click("text=Run check")
            await page.wait_for_selector("table.steps")
            steps = await page.inner_text("table.steps")
            for name in ("whitelist 127.0.0.1", "tls 127.0.0.1", "usernamemixed endpoints", "signing certificates",
                         "clock skew"):
                assert name in steps
            assert "FAIL" not in steps
            await page.screenshot(path=str(tmp_path / "console-check.png"), full_page=True)

            await page.click("nav >> text=Login attempts")
            await page.wait_for_url("**/console/attempts")
            await page.fill("input[name=device]", "demo-mfp")
            await page.click("text=Filter")
            await page.wait_for_url("**/console/attempts?*device=demo-mfp*")
            failed = page.locator("table.attempts tr.row-fail").first
            row = await failed.inner_text()
            assert "invalid_credentials" in row and "Wrong email address or password." in row
            assert "The IdP refused the password" in row and "alice@example.com" in row and "demo-mfp" in row
            assert "alice-typed-this-wrong" not in await page.content()
            shot = tmp_path / "console.png"
            await page.screenshot(path=str(shot), full_page=True)
        finally:
            await context.close()

    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "console.png")
    shutil.copyfile(tmp_path / "console-check.png", ARTIFACTS / "console-check.png")
