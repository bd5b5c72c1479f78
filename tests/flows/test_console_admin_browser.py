"""The administrators' console pages in headless Chromium (Debian's package, driven by Playwright).

At a laptop's viewport (1366x768): create a tenant with a mistake, see the message at the field, fix
it; edit a tenant declared by a file; find and disable a user (a real session ends); add a device and
use its secret; rotate it; revoke an API token.  Nothing may stick out sideways.  Screenshots go under
tmp, to artifacts/ (gitignored) and to /tmp/console-shots/, as in test_console_browser.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import aiohttp

from bridge.idpsim.server import RunningSimulator
from bridge.state.audit import AuditKind
from bridge.state.tenants import get_tenant_record
from bridge.state.tokens import create_token
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.test_console import TECH, ConsoleFactory, console_bridge
from tests.flows.test_console_browser import (
    _OVERFLOW,
    ARTIFACTS,
    CHROMIUM,
    FLAGS,
    SHOTS,
    VIEWPORT,
    _require_browser,
)

__all__ = ["console_bridge"]


async def _admin_status(url: str, token: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/admin/v1/tenants",
                                                         headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def _secret(page: Any) -> str:
    secret = (await page.inner_text("#secret")).strip()
    KNOWN_SECRETS.add(secret)
    return secret


async def test_admin_pages_in_chromium(console_bridge: ConsoleFactory, sim: RunningSimulator, tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import async_playwright

    bridge = await console_bridge()
    ops, ops_plain = await create_token(bridge.store.database, kind="admin", name="ops", tenant_id=None)
    KNOWN_SECRETS.add(ops_plain)
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200
    shots: list[Path] = []

    async def shot(page: Any, name: str, *, full_page: bool = False) -> None:
        assert await page.evaluate(_OVERFLOW) == [], name
        path = tmp_path / name
        await page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport=VIEWPORT)
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(bridge.url + "/console/tenants")
            await page.fill("input[name=name]", TECH[0])
            await page.fill("input[name=password]", TECH[1])
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/tenants")

            # A new tenant with a mistake: refused, the message right under the field, the input kept.
            await page.click("text=New tenant")
            await page.wait_for_url("**/console/tenants/new")
            await page.fill("#f-id", "acme")
            await page.fill("#f-name", "Acme")
            await page.fill("#f-domains", "acme.test")
            await page.fill("#f-idp_whitelist", "127.0.0.1/32\n10.1.2.3/8")
            await page.select_option("#f-protocol", "wstrust")
            await page.fill("#f-wstrust-adfs_url", sim.base_url)
            await page.fill("#f-wstrust-applies_to", "urn:loginbridge:acme.test")
            await page.check("#f-wstrust-federation_metadata")
            await page.fill("#f-yaml", f"wstrust:\n  ca_file: {sim.ca_file}\n  signature_algorithms: [rsa-sha256]\n"
                                       "throttle:\n  user_failures: 3\n")
            await page.click("form.tenant-form button[type=submit]")
            await page.wait_for_selector("#e-f-idp_whitelist")
            message = await page.inner_text("#e-f-idp_whitelist")
            assert "10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?" in message
            field_box = await page.locator("#f-idp_whitelist").bounding_box()
            error_box = await page.locator("#e-f-idp_whitelist").bounding_box()
            assert field_box and error_box
            assert 0 <= error_box["y"] - (field_box["y"] + field_box["height"]) < 16, "the message is at the field"
            assert abs(error_box["x"] - field_box["x"]) < 2
            assert await page.locator(".field-error").count() == 1
            assert await page.input_value("#f-name") == "Acme"  # nothing typed is lost
            assert await get_tenant_record(bridge.store.database, "acme") is None
            await page.locator("#f-idp_whitelist").scroll_into_view_if_needed()
            await shot(page, "console-admin-tenant-error.png")
            await shot(page, "console-admin-tenant-error-full.png", full_page=True)

            await page.fill("#f-idp_whitelist", "127.0.0.1/32")
            await page.click("form.tenant-form button[type=submit]")
            await page.wait_for_url("**/console/tenants/acme/edit?saved=created")
            assert "Tenant created: it is live now" in await page.inner_text("p.notice")
            assert "user_failures: 3" in await page.input_value("#f-yaml")
            await shot(page, "console-admin-tenant-saved.png")
            await page.click("nav >> text=Tenants")
            assert "acme.test" in await page.inner_text("table")
            await shot(page, "console-admin-tenants.png")

            # A tenant of a file: editable, with the note that the file wins when it changes.
            await page.click("a[href='/console/tenants/example/edit']")
            await page.wait_for_url("**/console/tenants/example/edit")
            assert "the file wins" in await page.inner_text("p.file-note")
            await shot(page, "console-admin-tenant-file.png")

            # Users: find alice, disable her (her device session ends), see how many sessions ended.
            await page.click("nav >> text=Users")
            await page.wait_for_url("**/console/users")
            await page.select_option("select[name=tenant]", "example")
            await page.fill("input[name=q]", "ali")
            await page.click("form.search button[type=submit]")
            await page.wait_for_url("**/console/users?*q=ali*")
            rows = page.locator("table.users tbody tr")
            assert await rows.count() == 1 and "alice@example.com" in await rows.first.inner_text()
            await rows.first.locator("button", has_text="Disable").click()
            await page.wait_for_url("**/console/users/disable")
            assert "1 session ended at once" in await page.inner_text("p.notice")
            assert "disabled" in await page.locator("table.users tbody tr").first.inner_text()
            await shot(page, "console-admin-users.png")
            async with aiohttp.ClientSession() as http, http.get(
                    bridge.url + "/v1/session", headers={"Authorization": f"Bearer {body['session']['token']}"}) as resp:
                assert resp.status == 401
            await page.locator("table.users tbody tr").first.locator("button", has_text="Enable").click()
            await page.wait_for_url("**/console/users/enable")

            # A new device: its secret shown once, with the command to try it; the secret works.
            await page.click("nav >> text=Devices")
            await page.click("text=Add a device")
            await page.wait_for_url("**/console/devices/new")
            await page.select_option("#f-tenant", "example")
            await page.fill("#f-name", "3rd floor MFP")
            await page.select_option("#f-mode", "shared-account")
            await page.fill("#f-networks", "127.0.0.0/8")
            await page.click("form.device-form button[type=submit]")
            await page.wait_for_selector("#e-shared_user")  # shared-account needs its user
            await shot(page, "console-admin-device-error.png")
            await page.select_option("#f-mode", "user-prompt")
            await page.fill("#f-device_id", "floor3-mfp")
            await page.click("form.device-form button[type=submit]")
            await page.wait_for_selector("#secret")
            first = await _secret(page)
            command = await page.locator("pre.command").first.inner_text()
            assert f"floor3-mfp:{first}" in command and command.endswith("/v1/mfp/user-prompt")
            await shot(page, "console-admin-device-secret.png")
            status, answer = await bridge.device_login("alice@example.com", "alice-demo-pass", ("floor3-mfp", first))
            assert status == 200, answer

            # Rotate: from the devices list, behind a disclosure (no script, no accidental click).
            await page.click("a[href='/console/devices']")
            await page.wait_for_url("**/console/devices")
            assert first not in await page.content()
            row = page.locator("tr", has_text="floor3-mfp")
            await row.locator("summary", has_text="rotate secret").click()
            await shot(page, "console-admin-devices.png")
            await row.locator("button", has_text="Rotate now").click()
            await page.wait_for_selector("#secret")
            second = await _secret(page)
            assert second != first and "New secret for device floor3-mfp" in await page.inner_text("h1")
            await shot(page, "console-admin-device-rotated.png")
            status, answer = await bridge.device_login("alice@example.com", "alice-demo-pass", ("floor3-mfp", first))
            assert (status, answer["error"]) == (401, "device_unauthorized")
            status, _ = await bridge.device_login("alice@example.com", "alice-demo-pass", ("floor3-mfp", second))
            assert status == 200

            # API tokens: revoke one; the admin API refuses it at once.
            assert await _admin_status(bridge.url, ops_plain) == 200
            await page.click("nav >> text=API tokens")
            await page.wait_for_url("**/console/tokens")
            token_row = page.locator(f"tr#t{ops.id}")
            await token_row.locator("summary", has_text="revoke").click()
            await shot(page, "console-admin-tokens.png")
            await token_row.locator("button", has_text="Revoke now").click()
            await page.wait_for_url(f"**/console/tokens/{ops.id}/revoke")
            assert "is revoked" in await page.inner_text("p.notice")
            await shot(page, "console-admin-token-revoked.png")
            assert await _admin_status(bridge.url, ops_plain) == 401
        finally:
            await context.close()

    events = [e for e in await bridge.store.audit_events() if e.kind is AuditKind.ADMIN_CHANGE]
    assert [e.result for e in events] == ["tenant_created", "user_disabled", "user_enabled", "device_created",
                                          "device_secret_rotated", "token_revoked"]
    assert {e.actor for e in events} == {"tech"}
    assert all(path.stat().st_size > 10_000 for path in shots)
    for target in (ARTIFACTS, SHOTS):
        target.mkdir(exist_ok=True)
        for path in shots:
            shutil.copyfile(path, target / path.name)
