"""The technician console over real HTTP: sign-in, CSRF, checks, devices, attempts, test login."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from bridge.app import make_app
from bridge.appkeys import STORE
from bridge.config import BridgeConfig, load_config
from bridge.console.passwords import hash_console_password
from bridge.demo import seed
from bridge.idpsim.server import RunningSimulator
from bridge.state.store import Store
from tests.flows.conftest import DEMO_SEED, KNOWN_SECRETS, tenant_yaml

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


@pytest.fixture
async def console_bridge(tmp_path: Path, sim: RunningSimulator) -> AsyncIterator[ConsoleFactory]:
    runners: list[web.AppRunner] = []

    async def factory(*, public_url: str | None = None) -> ConsoleBridge:
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


async def test_attempts_list_shows_a_failed_login_with_its_reason(console_bridge: ConsoleFactory,
                                                                  browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    status, _ = await bridge.device_login("alice@example.com", "wrong-password-for-alice")
    assert status == 401
    await bridge.device_login("alice@example.com", "alice-demo-pass")
    await sign_in(browser_like, bridge)
    async with browser_like.get(bridge.url + "/console/attempts", params={"device": "demo-mfp"}) as resp:
        page = await resp.text()
    assert "invalid_credentials" in page and "Wrong email address or password." in page
    assert "The IdP refused the password" in page  # the reason
    assert re.search(r"\d+ ms", page)  # IdP latency
    assert "wrong-password-for-alice" not in page
    async with browser_like.get(bridge.url + "/console/attempts", params={"user": "bob"}) as resp:
        assert "invalid_credentials" not in await resp.text()
    async with browser_like.get(bridge.url + "/console/attempts", params={"tenant": "example",
                                                                           "user": "alice"}) as resp:
        page = await resp.text()
    assert page.count("alice@example.com") >= 2


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
