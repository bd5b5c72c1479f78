"""The technician console over real HTTP: sign-in, CSRF, checks, devices, attempts, test login."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml
from aiohttp import web

from bridge.app import make_app
from bridge.appkeys import STORE
from bridge.config import BridgeConfig, load_config
from bridge.console.attempts import LiveFacts, Reason, attempt_row, reason_of
from bridge.console.guide import guide
from bridge.console.passwords import hash_console_password
from bridge.demo import seed
from bridge.errorcatalog import all_codes
from bridge.idpsim.server import RunningSimulator
from bridge.idpsim.state import FailMode, Mischief
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.store import Store
from tests.flows.conftest import DEMO_SEED, KNOWN_SECRETS, saml_tenant_yaml, tenant_yaml
from tests.paths import REPO

TECH = ("tech", "tech-test-pass-0001")
KNOWN_SECRETS.add(TECH[1])
_TECH_HASH = hash_console_password(TECH[1])


@dataclass
class ConsoleBridge:
    url: str
    config: BridgeConfig
    store: Store
    sim: RunningSimulator

    async def device_login(self, email: str, password: str,
                           device: tuple[str, str] = ("demo-mfp", "demo-mfp-secret")) -> tuple[int, dict[str, Any]]:
        KNOWN_SECRETS.update({password, device[1]})
        auth = "Basic " + base64.b64encode(f"{device[0]}:{device[1]}".encode()).decode()
        async with aiohttp.ClientSession() as http, http.post(
                self.url + "/v1/mfp/user-prompt", json={"email": email, "password": password},
                headers={"Authorization": auth}) as resp:
            body = await resp.json()
            token = body.get("session", {}).get("token")
            if token:
                KNOWN_SECRETS.add(token)
            return resp.status, body


ConsoleFactory = Callable[..., Awaitable[ConsoleBridge]]

# A second tenant whose IdP (the simulator, on 127.0.0.1) is outside its whitelist: its logins are refused.
UNLISTED_ORG = "10.9.0.0/16"


def unlisted_org_tenant(sim: RunningSimulator) -> dict[str, Any]:
    return saml_tenant_yaml(sim, idp_whitelist=[UNLISTED_ORG])


async def varied_attempts(bridge: ConsoleBridge) -> list[str]:
    """Twenty-eight attempts through the real device API (the simulator as IdP): every result a technician meets.

    Returns the result codes, oldest first.  The bridge needs the tenant of :func:`unlisted_org_tenant`.
    """
    results: list[str] = []

    async def attempt(email: str, password: str, device: tuple[str, str] = ("demo-mfp", "demo-mfp-secret")) -> None:
        status, body = await bridge.device_login(email, password, device)
        results.append("ok" if status == 200 else body["error"])

    for _ in range(3):
        await attempt("alice@example.com", "alice-demo-pass")
    await attempt("alice@example.com", "alice-typed-this-wrong")
    await attempt("alice@example.com", "alice-typed-this-wrong")  # the stale-password guard answers
    await attempt("frontdesk@example.com", "frontdesk-demo-pass")
    await attempt("nobody@example.com", "whatever-password-1")
    await attempt("carol@unknown-company.test", "whatever-password-2")
    await attempt("alice", "alice-demo-pass")
    await attempt("alice@example.com", "alice-demo-pass", ("demo-mfp", "not-the-device-secret"))
    await attempt("alice@example.com", "alice-demo-pass", ("retired-mfp", "retired-mfp-secret"))
    await attempt("disabled@example.com", "disabled-demo-pass")
    for mischief in (Mischief.EXPIRED, Mischief.WRONG_KEY, Mischief.WRONG_AUDIENCE):
        bridge.sim.state.mischief = mischief
        await attempt("mallory@example.com", "mallory-demo-pass")
    bridge.sim.state.reset()
    bridge.sim.state.fail_mode = FailMode.HTTP_503
    await attempt("frontdesk@example.com", "frontdesk-demo-pass")
    bridge.sim.state.reset()
    for _ in range(2):
        await attempt("bob@example.org", "bob-demo-pass", ("demo-mfp-org", "demo-mfp-org-secret"))
    for n in range(4):
        await attempt("mallory@example.com", f"mallory-guess-{n}")
    for _ in range(5):
        await attempt("alice@example.com", "alice-demo-pass")
    await attempt("frontdesk@example.com", "frontdesk-demo-pass")
    return results


@pytest.fixture
async def console_bridge(tmp_path: Path, sim: RunningSimulator) -> AsyncIterator[ConsoleFactory]:
    runners: list[web.AppRunner] = []

    async def factory(*, public_url: str | None = None,
                      extra_tenants: tuple[dict[str, Any], ...] = ()) -> ConsoleBridge:
        conf = tmp_path / "conf"
        (conf / "tenants").mkdir(parents=True, exist_ok=True)
        main: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": 0},
            "state_dir": str(tmp_path / "state"),
            "secrets": {"hmac_key": {"file": str(tmp_path / "state" / "hmac.key"), "generate": True}},
            "idp_client": {"connect_timeout_seconds": 2, "timeout_seconds": 15},
            "console": {"users": [{"name": TECH[0], "password_hash": _TECH_HASH}]},
        }
        if public_url:
            main["public_url"] = public_url
        (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
        (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant_yaml(sim)))
        for extra in extra_tenants:
            (conf / "tenants" / f"{extra['id']}.yaml").write_text(yaml.safe_dump(extra))
        config = load_config(conf / "bridge.yaml")
        app = make_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        await seed(config, app[STORE], DEMO_SEED)
        port = runner.addresses[0][1]
        return ConsoleBridge(url=f"http://127.0.0.1:{port}", config=config, store=app[STORE], sim=sim)

    yield factory
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def browser_like() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe=True: aiohttp's jar otherwise ignores cookies of IP-address hosts such as 127.0.0.1.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield http


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def sign_in(http: aiohttp.ClientSession, bridge: ConsoleBridge, password: str = TECH[1]) -> tuple[int, str]:
    async with http.get(bridge.url + "/console/login") as resp:
        token = csrf_of(await resp.text())
    async with http.post(bridge.url + "/console/login", data={"csrf": token, "name": TECH[0],
                                                              "password": password}) as resp:
        return resp.status, await resp.text()


async def test_pages_need_a_session(console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    for path in ("/console/tenants", "/console/devices", "/console/attempts", "/console/test-login", "/console/"):
        async with browser_like.get(bridge.url + path, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/console/login", path
    async with browser_like.get(bridge.url + "/console", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/console/"


async def test_sign_in_cookie_flags_and_security_headers(console_bridge: ConsoleFactory,
                                                         browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    async with browser_like.get(bridge.url + "/console/login") as resp:
        token = csrf_of(await resp.text())
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    async with browser_like.post(bridge.url + "/console/login", allow_redirects=False,
                                 data={"csrf": token, "name": TECH[0], "password": TECH[1]}) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/tenants"
        cookie = next(v for v in resp.headers.getall("Set-Cookie") if v.startswith("lb_console="))
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert "secure" not in flags  # plain http on loopback: the demo
    async with browser_like.get(bridge.url + "/console/tenants") as resp:
        assert resp.status == 200 and "Tenants and IdP health" in await resp.text()
        assert resp.headers["Cache-Control"] == "no-store"


async def test_secure_cookie_when_public_url_is_https(console_bridge: ConsoleFactory,
                                                      browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge(public_url="https://bridge.example.com")
    async with browser_like.get(bridge.url + "/console/login") as resp:
        token = csrf_of(await resp.text())
        assert "secure" in resp.headers["Set-Cookie"].lower()
    # Like a browser, the jar does not send a Secure cookie over plain http: no sign-in without TLS.
    async with browser_like.post(bridge.url + "/console/login", allow_redirects=False,
                                 data={"csrf": token, "name": TECH[0], "password": TECH[1]}) as resp:
        assert resp.status == 403 and "expired" in await resp.text()


async def test_wrong_password_and_missing_csrf_are_refused_and_audited(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    KNOWN_SECRETS.add("not-the-tech-password")
    status, page = await sign_in(browser_like, bridge, "not-the-tech-password")
    assert status == 401 and "Wrong console user or password." in page
    async with browser_like.post(bridge.url + "/console/login", data={"name": TECH[0], "password": TECH[1]}) as resp:
        assert resp.status == 403 and "expired" in await resp.text()
    events = await bridge.store.audit_events(last=5)
    assert [(e.mode, e.email, e.result) for e in events] == [("console", "tech", "invalid_credentials")]
    status, _ = await sign_in(browser_like, bridge)
    assert status == 200
    assert (await bridge.store.audit_events(last=1))[0].result == "ok"
    # Signed in, a form without the session's token is still refused.
    async with browser_like.post(bridge.url + "/console/tenants/example/check", data={"csrf": "forged"}) as resp:
        assert resp.status == 403
    assert bridge.sim.state.counters["mex"] == 0


async def test_run_check_and_see_health(console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    async with browser_like.get(bridge.url + "/console/tenants") as resp:
        page = await resp.text()
        assert "never run" in page
    async with browser_like.post(bridge.url + "/console/tenants/example/check", data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 200
        result = await resp.text()
    assert "usernamemixed endpoints" in result and "clock skew" in result and ">OK<" in result
    assert ">FAIL<" not in result
    async with browser_like.get(bridge.url + "/console/tenants") as resp:
        page = await resp.text()
    assert "all PASS" in page and "days)" in page
    async with browser_like.get(bridge.url + "/console/tenants/nope/check") as resp:
        assert resp.status == 404


async def test_devices_enable_disable(console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200
    await sign_in(browser_like, bridge)
    async with browser_like.get(bridge.url + "/console/devices") as resp:
        page = await resp.text()
    assert "demo-mfp" in page and "user-prompt" in page and "from 127.0.0.1" in page
    async with browser_like.post(bridge.url + "/console/devices/demo-mfp/disable", data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 200 and resp.url.path == "/console/devices"
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 401 and body["error"] == "device_unauthorized"
    async with browser_like.post(bridge.url + "/console/devices/demo-mfp/enable", data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 200
    status, _ = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200
    changes = [e for e in await bridge.store.audit_events(tenant_id="example") if e.kind.value == "device_changed"]
    assert [(e.device_id, e.result) for e in changes] == [("demo-mfp", "disabled"), ("demo-mfp", "enabled")]
    assert all(e.email == "tech" for e in changes)  # who did it


_ROW = re.compile(r'<tr class="row-(\w+)" id="a(\d+)">')
_TAGS = re.compile(r"<[^>]+>")


def _rows(page: str) -> list[tuple[str, int]]:
    return [(css, int(n)) for css, n in _ROW.findall(page)]


def _text(page: str) -> str:
    """What a reader sees: no tags; code spans are HTML, so a backtick or ** left here is raw Markdown."""
    return html.unescape(_TAGS.sub(" ", page))


async def _get(http: aiohttp.ClientSession, bridge: ConsoleBridge, path: str, **params: str) -> str:
    async with http.get(bridge.url + path, params=params) as resp:
        assert resp.status == 200, path
        return await resp.text()


async def test_attempts_one_line_each_with_its_reason_and_paging(
        console_bridge: ConsoleFactory, sim: RunningSimulator, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge(extra_tenants=(unlisted_org_tenant(sim),))
    results = await varied_attempts(bridge)
    await sign_in(browser_like, bridge)
    total = len(results) + 1  # and the technician's sign-in
    page = await _get(browser_like, bridge, "/console/attempts")
    rows = _rows(page)
    assert len(rows) == 10 and [n for _, n in rows] == sorted((n for _, n in rows), reverse=True)
    assert f"1–10 of {total}" in page and 'rel="prev"' not in page
    assert "wrong-password" not in page and "alice-typed-this-wrong" not in page

    seen, text = list(rows), _text(page)
    while (older := re.search(r'href="(/console/attempts\?[^"]*before=\d+[^"]*)" rel="next"', page)):
        page = await _get(browser_like, bridge, html.unescape(older.group(1)))
        more = _rows(page)
        assert more and more[0][1] < seen[-1][1] and 'rel="prev"' in page
        seen += more
        text += _text(page)
    assert len(seen) == total and len({n for _, n in seen}) == total
    assert f"21–{total} of {total}" in page
    newer = re.search(r'href="(/console/attempts\?[^"]*after=\d+[^"]*)" rel="prev"', page)
    assert newer
    back = _rows(await _get(browser_like, bridge, html.unescape(newer.group(1))))
    assert back == seen[10:20]

    # The specific reason, not only the generic advice; the advice is rendered Markdown.
    assert "add 127.0.0.1/32 to idp_whitelist" in text
    assert "stale password: the IdP was not asked again" in text and "the IdP rejected the password" in text
    assert "no such account in tenant example" in text and "no tenant lists the domain unknown-company.test" in text
    assert "no device retired-mfp is enrolled" in text
    # An assertion failure shows the check that failed (recorded with the attempt), not the generic advice.
    recorded = {e.reason for e in await bridge.store.audit_events() if e.result == "assertion_invalid"}
    assert len(recorded) >= 2 and None not in recorded, recorded  # expired, wrong key, wrong audience
    for reason in recorded:
        assert reason is not None and reason in text, reason
    assert "`" not in text and "**" not in text
    assert "<code>idp_whitelist</code>" in page or "<code>idp_whitelist</code>" in await _get(
        browser_like, bridge, "/console/attempts", result="idp_not_whitelisted")

    # Every code links to a section of the guide that exists.
    guide_page = await _get(browser_like, bridge, "/console/troubleshooting")
    every_failure = await _get(browser_like, bridge, "/console/attempts", result="failed", per="100")
    links = set(re.findall(r'href="/console/troubleshooting#([a-z_]+)"', every_failure))
    assert {"invalid_credentials", "idp_not_whitelisted", "assertion_invalid", "user_not_provisioned"} <= links
    for code in links:
        assert f'id="{code}"' in guide_page, code


async def test_attempts_filters_and_time_zone(console_bridge: ConsoleFactory, sim: RunningSimulator,
                                              browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge(extra_tenants=(unlisted_org_tenant(sim),))
    results = await varied_attempts(bridge)
    await sign_in(browser_like, bridge)

    page = await _get(browser_like, bridge, "/console/attempts", result="failed", per="100")
    failed = sum(1 for r in results if r != "ok")
    assert len(_rows(page)) == failed and {css for css, _ in _rows(page)} == {"fail"}
    page = await _get(browser_like, bridge, "/console/attempts", result="idp_not_whitelisted")
    assert len(_rows(page)) == 2 and "bob@example.org" in page and "1–2 of 2 matching" in page
    page = await _get(browser_like, bridge, "/console/attempts", tenant="example-org")
    assert len(_rows(page)) == 2
    page = await _get(browser_like, bridge, "/console/attempts", user="MALLORY", per="25")
    assert len(_rows(page)) == results.count("invalid_credentials") - 2 + results.count("assertion_invalid")
    page = await _get(browser_like, bridge, "/console/attempts", mode="console")
    assert len(_rows(page)) == 1 and "console sign-in" in page
    page = await _get(browser_like, bridge, "/console/attempts", device="retired")
    assert len(_rows(page)) == 1 and "no device retired-mfp is enrolled" in page
    # Filters survive paging.
    page = await _get(browser_like, bridge, "/console/attempts", result="failed")
    older = re.search(r'href="(/console/attempts\?[^"]*)" rel="next"', page)
    assert older and "result=failed" in older.group(1)

    # Times: UTC by default; the zone a technician picks is used and remembered; UTC stays on hover.
    events = await bridge.store.audit_events(last=1)
    at = events[-1].at
    page = await _get(browser_like, bridge, "/console/attempts")
    assert "Time <span class=\"zone\">UTC</span>" in page
    assert f'title="{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"' in page
    assert f">{at.astimezone(UTC):%d %b %H:%M:%S}</time>" in page
    page = await _get(browser_like, bridge, "/console/attempts", tz="Asia/Tokyo")
    assert f">{at.astimezone(ZoneInfo('Asia/Tokyo')):%d %b %H:%M:%S}</time>" in page
    assert f'datetime="{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"' in page
    page = await _get(browser_like, bridge, "/console/attempts")
    assert "<option selected>Asia/Tokyo</option>" in page  # from the cookie
    page = await _get(browser_like, bridge, "/console/attempts", tz="Mars/Olympus_Mons")
    assert "Unknown time zone" in page and "<option selected>UTC</option>" in page
    # A time range, read in the chosen zone.
    tokyo = at.astimezone(ZoneInfo("Asia/Tokyo"))
    page = await _get(browser_like, bridge, "/console/attempts", tz="Asia/Tokyo",
                      since=f"{tokyo + timedelta(minutes=1):%Y-%m-%dT%H:%M}")
    assert _rows(page) == [] and "No login attempts match." in page
    page = await _get(browser_like, bridge, "/console/attempts", tz="Asia/Tokyo",
                      since=f"{tokyo - timedelta(minutes=5):%Y-%m-%dT%H:%M}",
                      until=f"{tokyo + timedelta(minutes=1):%Y-%m-%dT%H:%M}", per="100")
    assert len(_rows(page)) == len(results) + 1
    page = await _get(browser_like, bridge, "/console/attempts", since="yesterday")
    assert "Not a date and time" in page and len(_rows(page)) == 10


async def test_changes_in_the_audit_trail_are_not_listed_as_attempts(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    """SCIM, the directory sync and the admin API write audit events too: changes, not login attempts."""
    bridge = await console_bridge()
    for kind in (AuditKind.PROVISIONING, AuditKind.DIRECTORY_SYNC, AuditKind.ADMIN_CHANGE):
        await bridge.store.add_audit_event(AuditEvent(at=datetime.now(UTC), kind=kind, result="user_created",
                                                      tenant_id="example", email="new@example.com",
                                                      actor="ops-token"))
    await sign_in(browser_like, bridge)
    page = await _get(browser_like, bridge, "/console/attempts")
    assert "new@example.com" not in page and "user_created" not in page
    assert len(_rows(page)) == 1 and "console sign-in" in page  # the sign-in itself is an attempt


def test_a_recorded_reason_comes_first_and_is_escaped(tmp_path: Path) -> None:
    config = load_config(REPO / "conf" / "bridge.yaml", require_files=False)
    event = AuditEvent(at=datetime.now(UTC), kind=AuditKind.LOGIN, result="assertion_invalid",
                       mode="user-prompt", email="mallory@example.com", idp_latency_ms=12, id=7,
                       reason="not_yet_valid: Conditions/@NotBefore is in the future <b>")
    reason = reason_of(event, LiveFacts(), config)
    assert reason == Reason("not_yet_valid: Conditions/@NotBefore is in the future <b>", "recorded")
    row = attempt_row(event, UTC, reason, guide().anchors)
    assert "&lt;b&gt;" in str(row.reason) and row.href == "/console/troubleshooting#assertion_invalid"
    # Without it: the catalogue's note, its Markdown rendered.
    plain = AuditEvent(at=event.at, kind=AuditKind.LOGIN, result="assertion_invalid", idp_latency_ms=12)
    fallback = reason_of(plain, LiveFacts(), config)
    assert fallback == Reason("The signed token failed validation", "catalogue")
    advice = attempt_row(plain, UTC, fallback, guide().anchors).advice
    assert advice is not None and "`" not in advice


def test_the_guide_names_every_code_and_stands_in_when_missing(tmp_path: Path) -> None:
    doc = guide()
    assert doc.from_docs and set(all_codes()) <= doc.anchors
    assert '<h3 id="idp_unreachable">' in doc.html and '<span id="idp_error" class="alias">' in doc.html
    assert "<table>" in doc.html and "`" not in _text(doc.html)
    stand_in = guide(tmp_path / "missing.md")
    assert not stand_in.from_docs and set(all_codes()) <= stand_in.anchors


async def test_test_login_form(console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    async with browser_like.get(bridge.url + "/console/test-login") as resp:
        token = csrf_of(await resp.text())
    KNOWN_SECRETS.add("typo-in-alices-password")
    async with browser_like.post(bridge.url + "/console/test-login", data={
            "csrf": token, "email": "alice@example.com", "password": "typo-in-alices-password"}) as resp:
        page = await resp.text()
    assert "invalid_credentials" in page and "Wrong email address or password." in page
    assert "typo-in-alices-password" not in page
    async with browser_like.post(bridge.url + "/console/test-login", data={
            "csrf": token, "email": "alice@example.com", "password": "alice-demo-pass"}) as resp:
        page = await resp.text()
    assert ">ok<" in page and "Signed in." in page
    results = [e.result for e in await bridge.store.audit_events(tenant_id="example", last=2)]
    assert results == ["invalid_credentials", "ok"]  # audited like any other login


async def test_logout_revokes_the_cookie(console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    cookie = next(c for c in browser_like.cookie_jar if c.key == "lb_console").value
    async with browser_like.get(bridge.url + "/console/tenants") as resp:
        token = csrf_of(await resp.text())
    async with browser_like.post(bridge.url + "/console/logout", data={"csrf": token}) as resp:
        assert resp.url.path == "/console/login"
    async with aiohttp.ClientSession() as other, other.get(
            bridge.url + "/console/tenants", headers={"Cookie": f"lb_console={cookie}"}, allow_redirects=False) as resp:
        assert resp.status == 303  # the old cookie no longer works


async def test_no_console_without_console_users(make_bridge: Any) -> None:
    bridge = await make_bridge()  # conftest's bridge has no console section
    async with aiohttp.ClientSession() as http, http.get(bridge.url + "/console/login") as resp:
        assert resp.status == 404
