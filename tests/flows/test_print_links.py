"""Personal printer URLs: /print/setup hands one out, it prints with no credentials, and it stops when it should.

Real HTTP on loopback, real IPP bytes, the simulator as the IdP; ipptool prints
through a personal URL over ipps:// with no user name or password at all.
"""

from __future__ import annotations

import re
import shutil
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from bridge.state.audit import AuditKind
from bridge.state.printlinks import create_link, list_links, resolve_link
from bridge.state.tokens import create_token
from printers.auth import LINK_GUESS_LIMIT
from printers.ipp import Attribute, IppMessage, ValueTag, decode
from tests.adminapi.openapi_check import check_admin_response
from tests.flows.print_support import ALICE, IPPTOOL, PrintBridge, PrintBridgeFactory, ipp_request, make_print_bridge
from tests.flows.test_console import TECH, ConsoleFactory, browser_like, console_bridge, csrf_of, sign_in
from tests.flows.test_console_browser import _OVERFLOW, ARTIFACTS, CHROMIUM, FLAGS, SHOTS, _require_browser
from tests.flows.test_print_tls import SUITES, client_context, ipptool, pki, post, print_job, tls_bridge

__all__ = ["browser_like", "console_bridge", "make_print_bridge", "pki"]

NOT_FOUND = 0x0406  # client-error-not-found
URL = re.compile(r"<code>((?:ipps?)://[^<]+/ipp/print/u/(lbp_[A-Za-z0-9_-]{32}))</code>")


def api_url(bridge: PrintBridge) -> str:
    return f"http://127.0.0.1:{bridge.runner.addresses[0][1]}"


async def setup_link(bridge: PrintBridge, email: str, password: str, *, label: str = "laptop",
                     csrf: bool = True) -> tuple[int, str]:
    """Sign in at /print/setup as a browser would: (status, page)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(api_url(bridge) + "/print/setup") as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store" and "script-src" not in resp.headers[
                "Content-Security-Policy"]
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', await resp.text())
            assert token is not None
        form = {"email": email, "password": password, "label": label}
        if csrf:
            form["csrf"] = token.group(1)
        async with http.post(api_url(bridge) + "/print/setup", data=form) as resp:
            return resp.status, await resp.text()


def personal_path(url: str) -> str:
    return urlsplit(url).path


async def gpa(bridge: PrintBridge, path: str, *, tls: ssl.SSLContext | None = None) -> tuple[int, IppMessage | None]:
    body = ipp_request(Op.GET_PRINTER_ATTRIBUTES,
                       Attribute.of("requested-attributes", ValueTag.KEYWORD, "printer-uri-supported"),
                       printer_uri=f"ipp://127.0.0.1{path}")
    return await raw_post(bridge, path, body, tls=tls)


async def raw_post(bridge: PrintBridge, path: str, body: bytes, *, tls: ssl.SSLContext | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, IppMessage | None]:
    scheme = "https" if tls else "http"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls if tls else False)) as http, http.post(
            f"{scheme}://127.0.0.1:{bridge.port}{path}", data=body,
            headers={"Content-Type": "application/ipp", **(headers or {})}) as resp:
        raw = await resp.read()
        return resp.status, decode(raw) if resp.content_type == "application/ipp" else None


async def test_a_personal_url_prints_without_credentials_as_its_user(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    status, page = await setup_link(bridge, *ALICE)
    assert status == 200, page
    found = URL.search(page)
    assert found is not None, page
    url, token = found.groups()
    assert url == f"ipp://127.0.0.1:{bridge.port}/ipp/print/u/{token}"  # no printer.tls here: plain, on loopback
    assert f"lpadmin -p Print-to-Web -E -v &#39;{url}&#39; -m everywhere" in page
    assert bridge.trust_calls() == 1  # the setup page asked the IdP once
    (link,) = await list_links(bridge.store.database, tenant_id="example")
    assert (link.email, link.label, link.created_by) == (ALICE[0], "laptop", "print-setup")

    path = personal_path(url)
    code, reply = await raw_post(bridge, path, print_job(f"ipp://127.0.0.1{path}"))
    assert code == 200 and reply is not None and reply.code == IppStatus.OK, reply
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]
    assert bridge.trust_calls() == 1  # printing through the link asks nobody
    code, reply = await gpa(bridge, path)
    assert reply is not None and reply.code == IppStatus.OK
    uris = reply.find(reply.groups[1].tag, "printer-uri-supported")
    assert uris is not None and any(str(v.value).endswith(path) for v in uris.values)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{bridge.port}/") as resp:
        info = await resp.text()  # printer-more-info links the setup page
    assert f'href="{bridge.config.public_url}/print/setup"' in info


async def test_setup_refuses_a_wrong_password_and_a_missing_csrf(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    status, page = await setup_link(bridge, ALICE[0], "not-her-password")
    assert status == 401 and URL.search(page) is None and "password" in page.lower()
    status, page = await setup_link(bridge, *ALICE, csrf=False)
    assert status == 403 and URL.search(page) is None
    assert await list_links(bridge.store.database) == []


async def test_unknown_tokens_are_refused_then_throttled_per_source(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    for i in range(LINK_GUESS_LIMIT):
        code, reply = await gpa(bridge, f"/ipp/print/u/lbp_{i:032d}")
        assert code == 200 and reply is not None and reply.code == NOT_FOUND, (i, reply)
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{bridge.port}/ipp/print/u/lbp_{'x' * 32}", data=b"",
            headers={"Content-Type": "application/ipp"}) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    # a real user's link from the same source is throttled too (the guesser's address is blocked, not the link)
    _, page = await setup_link(bridge, *ALICE)
    found = URL.search(page)
    assert found is not None
    code, _ = await gpa(bridge, personal_path(found.group(1)))
    assert code == 429


async def test_disabling_the_user_or_revoking_ends_the_link_at_once(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    _, page = await setup_link(bridge, *ALICE)
    found = URL.search(page)
    assert found is not None
    path = personal_path(found.group(1))
    code, reply = await gpa(bridge, path)
    assert reply is not None and reply.code == IppStatus.OK
    await bridge.store.deactivate_user("example", ALICE[0])
    code, reply = await raw_post(bridge, path, print_job(f"ipp://127.0.0.1{path}"))
    assert code == 200 and reply is not None and reply.code == NOT_FOUND
    assert bridge.manifests() == []


async def test_the_admin_api_creates_lists_and_revokes_links(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    _, admin = await create_token(bridge.store.database, kind="admin", name="ops", tenant_id=None)
    base = api_url(bridge) + "/admin/v1"

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(
                method, base + path, json=body, headers={"Authorization": f"Bearer {admin}"}) as resp:
            answer = await resp.json()
            check_admin_response(method, "/admin/v1" + path, resp.status, answer, resp.headers)
            return resp.status, answer

    status, made = await call("POST", "/tenants/example/users/alice@example.com/printer-links",
                              {"label": "Windows laptop", "days": 7})
    assert status == 201, made
    path = personal_path(made["url"])
    assert made["link"]["label"] == "Windows laptop" and made["link"]["created_by"] == "api:ops"
    status, too_long = await call("POST", "/tenants/example/users/alice@example.com/printer-links", {"days": 9999})
    assert status == 400 and "printer_link_days" in too_long["message"] + too_long.get("detail", "")
    status, _ = await call("POST", "/tenants/example/users/nobody@example.com/printer-links", {})
    assert status == 404
    _, reply = await raw_post(bridge, path, print_job(f"ipp://127.0.0.1{path}"))
    assert reply is not None and reply.code == IppStatus.OK
    status, listed = await call("GET", "/tenants/example/printer-links?email=alice@example.com")
    assert status == 200 and [x["id"] for x in listed["printer_links"]] == [made["link"]["id"]]
    assert made["url"].rsplit("/", 1)[1] not in str(listed)  # the token is answered once, never listed
    status, _ = await call("DELETE", f"/tenants/example/printer-links/{made['link']['id']}")
    assert status == 200
    _, reply = await gpa(bridge, path)
    assert reply is not None and reply.code == NOT_FOUND
    status, _ = await call("DELETE", f"/tenants/example/printer-links/{made['link']['id']}")
    assert status == 404


@pytest.mark.skipif(IPPTOOL is None, reason="ipptool (cups-ipp-utils) is not installed; CI installs it")
async def test_ipptool_prints_through_a_personal_ipps_url_with_no_credentials(
        make_print_bridge: PrintBridgeFactory, pki: Any, tmp_path: Path) -> None:
    bridge = await tls_bridge(make_print_bridge, pki, plain_http_from=[])  # nobody may use plain ipp
    _, page = await setup_link(bridge, *ALICE)
    found = URL.search(page)
    assert found is not None and found.group(1).startswith("ipps://"), page
    url = found.group(1)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(SUITES / "print-job.test", home)
    pdf = print_job().split(b"%PDF", 1)[1]
    (home / "testfile.pdf").write_bytes(b"%PDF" + pdf)
    code, output = await ipptool(home, "-tv", "-f", "testfile.pdf", url, "print-job.test")
    assert code == 0 and "[PASS]" in output, output[-3000:]
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]
    # the same link over plain http from loopback is refused like a password would be (426), not looked up
    reply = await post(bridge, print_job(), source="127.0.0.1")
    assert reply.status == 426
    code, _ = await raw_post(bridge, personal_path(url), print_job())
    assert code == 426
    code, ok = await gpa(bridge, personal_path(url), tls=client_context(pki))
    assert ok is not None and ok.code == IppStatus.OK


async def test_the_console_lists_and_revokes_links(console_bridge: ConsoleFactory,
                                                   browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    database = bridge.store.database
    alice, alice_token = await create_link(database, tenant_id="example", email=ALICE[0], label="Alice's laptop <x>",
                                           created_by="print-setup", lifetime=timedelta(days=3))
    _, bob_token = await create_link(database, tenant_id="example", email="bob@example.com", label="Bob's phone",
                                     created_by="api:ops", lifetime=timedelta(days=3))
    await sign_in(browser_like, bridge)
    async with browser_like.get(bridge.url + "/console/printer-links") as resp:
        page = await resp.text()
        assert resp.status == 200
    assert "Alice&#39;s laptop &lt;x&gt;" in page and "Bob&#39;s phone" in page and "api:ops" in page
    assert alice_token not in page and bob_token not in page
    async with browser_like.get(bridge.url + "/console/printer-links", params={"q": "phone"}) as resp:
        filtered = await resp.text()
    assert "Bob&#39;s phone" in filtered and "Alice" not in filtered
    async with browser_like.post(bridge.url + f"/console/printer-links/{alice.id}/revoke", data={}) as resp:
        assert resp.status == 403  # no CSRF token
    assert await resolve_link(database, alice_token) is not None
    async with browser_like.post(bridge.url + f"/console/printer-links/{alice.id}/revoke",
                                 data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 200 and "is revoked" in await resp.text()
    assert await resolve_link(database, alice_token) is None
    assert await resolve_link(database, bob_token) is not None
    (event,) = [e for e in await bridge.store.audit_page("example", kinds=(AuditKind.ADMIN_CHANGE,), limit=10)
                if e.result == "printer_link_revoked"]
    assert (event.actor, event.email, event.mode) == (TECH[0], ALICE[0], "console")


PHONE = {"width": 390, "height": 844}  # a phone screen: the setup page is opened where people print from


async def test_the_setup_page_on_a_phone_screen(make_print_bridge: PrintBridgeFactory, tmp_path: Path) -> None:
    """/print/setup in headless Chromium at 390 px: nothing sticks out, the URL is shown once, no script runs."""
    _require_browser()
    from playwright.async_api import async_playwright

    bridge = await make_print_bridge()
    shots: list[Path] = []
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport=PHONE, java_script_enabled=True)
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(api_url(bridge) + "/print/setup")
            assert await page.evaluate(_OVERFLOW) == []
            await page.fill("input[name=email]", ALICE[0])
            await page.fill("input[name=password]", "wrong-password")
            await page.click("button[type=submit]")
            assert "password" in (await page.inner_text("p.error")).lower()
            assert await page.input_value("input[name=email]") == ALICE[0]  # kept; the password is not
            assert await page.input_value("input[name=password]") == ""
            shots.append(tmp_path / "print-setup-error.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)
            await page.fill("input[name=password]", ALICE[1])
            await page.fill("input[name=label]", "Pixel phone")
            await page.click("button[type=submit]")
            url = await page.inner_text("p.url code >> nth=0")
            assert URL.search(f"<code>{url}</code>") is not None, url
            assert await page.evaluate(_OVERFLOW) == []
            shots.append(tmp_path / "print-setup-done.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)
            # the page says it once: going back and reloading shows the form again, never the URL
            await page.goto(api_url(bridge) + "/print/setup")
            assert url not in await page.content()
        finally:
            await context.close()
    assert all(path.stat().st_size > 10_000 for path in shots)
    (link,) = await list_links(bridge.store.database)
    assert link.label == "Pixel phone"
    for target in (ARTIFACTS, SHOTS):
        target.mkdir(exist_ok=True)
        for path in shots:
            shutil.copyfile(path, target / path.name)
