"""Behind a load balancer (``listen.trusted_proxies``): protections key on the forwarded client, not the balancer.

The test client connects from 127.0.0.1 and plays the balancer, sending
``X-Forwarded-For`` like HAProxy's ``option forwardfor``.  With 127.0.0.1
trusted, two forwarded clients are two sources for the throttles, spray
detection, device networks, the console's sign-in limiter, the printer and
the audit; without the setting, the header changes nothing.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from pyipp.enums import IppOperation as Op

from bridge.console.passwords import hash_console_password
from bridge.console.security import PRE_COOKIE
from bridge.idpsim.server import RunningSimulator
from tests.connectors.openapi_check import check_response
from tests.flows.conftest import KNOWN_SECRETS, Bridge, BridgeFactory, tenant_yaml
from tests.flows.print_support import ALICE, PrintBridgeFactory, ipp_request, make_print_bridge

__all__ = ["make_print_bridge"]

BALANCER = {"trusted_proxies": ["127.0.0.1/32"]}
MALLORY = "203.0.113.10"  # the attacker's address, as the balancer forwards it
OFFICE = "198.51.100.20"  # everybody else
APPS = "/v1/apps/login"
PROMPT = "/v1/mfp/user-prompt"
GOOD = {"email": "alice@example.com", "password": "alice-demo-pass"}


async def call(bridge: Bridge, path: str, body: dict[str, str], *forwarded_for: str,
               device: tuple[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """POST JSON with one ``X-Forwarded-For`` line per value (checked against the OpenAPI document)."""
    KNOWN_SECRETS.add(body["password"])
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded_for)
    if device is not None:
        KNOWN_SECRETS.add(device[1])
        headers["Authorization"] = "Basic " + base64.b64encode(f"{device[0]}:{device[1]}".encode()).decode()
    async with bridge.http.post(bridge.url + path, json=body, headers=headers) as resp:
        answer = await resp.json(content_type=None)
        check_response("POST", path, resp.status, answer)
        token = answer.get("session", {}).get("token") if isinstance(answer, dict) else None
        if token:
            KNOWN_SECRETS.add(token)
        return resp.status, answer


async def login_sources(bridge: Bridge) -> list[str | None]:
    return [e.source for e in await bridge.store.audit_events() if e.kind.value == "login"]


async def test_spray_detection_keys_on_the_forwarded_client(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(listen=BALANCER, throttle={"spray_distinct_users": 3})
    for name in ("ann", "ben", "cat"):
        # Mallory also writes OFFICE's address on the left: only the balancer's own entry (rightmost) counts.
        status, body = await call(bridge, APPS, {"email": f"{name}@example.com", "password": "Spring2024!"},
                                  OFFICE, MALLORY)
        assert (status, body["error"]) == (403, "user_not_provisioned")
    status, body = await call(bridge, APPS, GOOD, MALLORY)
    assert (status, body["error"]) == (429, "device_throttled")
    # Everybody else behind the same balancer still signs in.
    status, body = await call(bridge, APPS, GOOD, OFFICE)
    assert status == 200, body
    status, body = await call(bridge, APPS, GOOD)  # a client on the balancer's own host: not Mallory either
    assert status == 200, body

    events = await bridge.store.audit_events()
    sprays = [e for e in events if e.kind.value == "spray_detected"]
    assert [(e.source, e.distinct_users) for e in sprays] == [(MALLORY, 3)]
    assert await login_sources(bridge) == [MALLORY] * 4 + [OFFICE, "127.0.0.1"]


async def test_the_source_throttle_counts_each_forwarded_client_apart(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(listen=BALANCER, throttle={"source_failures": 3, "spray_distinct_users": 50})
    for i, email in enumerate(["alice@example.com", "mallory@example.com", "frontdesk@example.com"]):
        status, body = await call(bridge, APPS, {"email": email, "password": f"Src-Wrong-{i}"}, MALLORY)
        assert (status, body["error"]) == (401, "invalid_credentials")
    status, body = await call(bridge, APPS, GOOD, MALLORY)
    assert (status, body["error"]) == (429, "temporarily_locked")
    status, body = await call(bridge, APPS, GOOD, OFFICE)
    assert status == 200, body
    assert await login_sources(bridge) == [MALLORY] * 4 + [OFFICE]


async def test_without_the_setting_the_header_changes_nothing(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(throttle={"source_failures": 3, "spray_distinct_users": 50})
    for i, email in enumerate(["alice@example.com", "mallory@example.com", "frontdesk@example.com"]):
        status, body = await call(bridge, APPS, {"email": email, "password": f"Src-Wrong-{i}"}, MALLORY)
        assert (status, body["error"]) == (401, "invalid_credentials")
    # Another forwarded address is the same TCP peer: still locked.
    status, body = await call(bridge, APPS, GOOD, OFFICE)
    assert (status, body["error"]) == (429, "temporarily_locked")
    assert await login_sources(bridge) == ["127.0.0.1"] * 4


async def test_device_networks_see_the_forwarded_client(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(listen=BALANCER)
    device = ("office-mfp", "office-mfp-secret")
    await bridge.store.add_device("example", name="Office MFP", mode="user-prompt", device_id=device[0],
                                  secret=device[1], allowed_networks=["198.51.100.0/24"])
    status, body = await call(bridge, PROMPT, GOOD, OFFICE, device=device)
    assert status == 200, body
    status, body = await call(bridge, PROMPT, GOOD, MALLORY, device=device)
    assert (status, body["error"]) == (403, "source_not_allowed")
    status, body = await call(bridge, PROMPT, GOOD, device=device)  # the balancer itself is not in the office
    assert (status, body["error"]) == (403, "source_not_allowed")


TECH = ("tech", "tech-test-pass-0002")
KNOWN_SECRETS.add(TECH[1])
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def console_sign_in(bridge: Bridge, password: str, client: str) -> int:
    """One sign-in as ``client``; cookies by hand, since the console's are Secure (public_url is https)."""
    KNOWN_SECRETS.add(password)
    forwarded = {"X-Forwarded-For": client}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(bridge.url + "/console/login", headers=forwarded) as resp:
            match = _CSRF.search(await resp.text())
            assert match is not None
            pre = resp.cookies[PRE_COOKIE].value
        async with http.post(bridge.url + "/console/login", allow_redirects=False,
                             headers={**forwarded, "Cookie": f"{PRE_COOKIE}={pre}"},
                             data={"csrf": match.group(1), "name": TECH[0], "password": password}) as resp:
            return resp.status


async def test_the_console_limiter_and_audit_see_the_forwarded_client(make_bridge: BridgeFactory,
                                                                      sim: RunningSimulator) -> None:
    bridge = await make_bridge(listen=BALANCER, tenants=[tenant_yaml(sim)], main_extra={
        "public_url": "https://bridge.example.com",  # TLS ends at the balancer
        "console": {"users": [{"name": TECH[0], "password_hash": hash_console_password(TECH[1])}]}})
    for _ in range(10):
        assert await console_sign_in(bridge, "not-the-tech-password", MALLORY) == 401
    assert await console_sign_in(bridge, TECH[1], MALLORY) == 429  # blocked: even the right password
    assert await console_sign_in(bridge, TECH[1], OFFICE) == 303  # another client is not
    events = [e for e in await bridge.store.audit_events() if e.mode == "console"]
    assert [(e.source, e.result) for e in events] == [(MALLORY, "invalid_credentials")] * 10 + [(OFFICE, "ok")]


@pytest.mark.parametrize("expect", [False, True])
async def test_the_printer_sees_the_forwarded_client(make_print_bridge: PrintBridgeFactory, expect: bool) -> None:
    """Both ways a print queue authenticates: plain, and before 100 Continue (the expect handler)."""
    bridge = await make_print_bridge(listen=BALANCER)
    KNOWN_SECRETS.add(ALICE[1])
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    headers = {"Content-Type": "application/ipp", "Authorization": f"Basic {token}", "X-Forwarded-For": OFFICE}
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{bridge.port}/ipp/print", data=ipp_request(Op.GET_JOBS), headers=headers,
            expect100=expect) as resp:
        assert resp.status == 200
    events = [e for e in await bridge.store.audit_events() if e.kind.value == "login"]
    assert [(e.mode, e.source, e.result) for e in events] == [("printer", OFFICE, "ok")]
