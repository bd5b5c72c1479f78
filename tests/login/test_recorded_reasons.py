"""The audit trail records, at the time of the attempt, the specific reason of a refusal.

End to end against the IdP simulator: which throttle refused (per user, device, source
address, spray block), the stale-password guard answering for the IdP, the address
outside ``idp_whitelist`` with the line to add, and the IdP's timeout, TLS failure or
HTTP status.  The reason is read back from the store, and the console's attempts page
shows it as recorded (an old event without one gets the looked-up-now fallback).
"""

from __future__ import annotations

import html
import ipaddress
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bridge.console.passwords import hash_console_password
from bridge.idpsim.server import RunningSimulator
from bridge.idpsim.state import FailMode
from bridge.state.audit import AuditEvent, AuditKind
from tests.flows.conftest import KNOWN_SECRETS, Bridge, BridgeFactory, saml_tenant_yaml, tenant_yaml
from tests.flows.modes_support import request
from tests.keys import make_key_and_cert

PROMPT = "/v1/mfp/user-prompt"
APPS = "/v1/apps/login"
DEVICE = ("demo-mfp", "demo-mfp-secret")
ORG_DEVICE = ("demo-mfp-org", "demo-mfp-org-secret")
ALICE, ALICE_PASS = "alice@example.com", "alice-demo-pass"
TECH = ("tech", "tech-reasons-pass-0001")
KNOWN_SECRETS.add(TECH[1])

STALE = ("stale password: the IdP was not asked again (stale-password guard: it rejected this password "
         "within stale_password_ttl, 1 h)")
REFUSED_BEFORE = ("refused before: the IdP was not asked again (stale-password guard: it refused this account "
                  "with this password within stale_password_ttl, 1 h)")


async def login(bridge: Bridge, email: str, password: str, *, path: str = PROMPT,
                device: tuple[str, str] | None = DEVICE) -> str:
    """One attempt through the device (or app) API: its result code."""
    status, body, _ = await request(bridge, "POST", path, json={"email": email, "password": password},
                                    auth=device if path == PROMPT else None)
    return "ok" if status == 200 else str(body["error"])


async def last_attempt(bridge: Bridge, tenant_id: str = "example") -> AuditEvent:
    """The newest login event of the tenant, as the store holds it; no reason ever holds a secret."""
    events = await bridge.store.audit_page(tenant_id, limit=1000)
    assert events, "no login was audited"
    for event in events:
        assert not any(secret in (event.reason or "") for secret in KNOWN_SECRETS), event.reason
    return events[0]


def throttle(**values: int) -> dict[str, Any]:
    return {"throttle": {"spray_distinct_users": 50, **values}}


# -- the stale-password guard ------------------------------------------------------------------------


async def test_the_stale_password_guard_is_recorded_apart_from_the_idps_refusal(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    assert await login(bridge, ALICE, "alice-typed-this-wrong") == "invalid_credentials"
    rejected = await last_attempt(bridge)
    assert (rejected.reason, rejected.idp_latency_ms is not None) == (None, True)  # the IdP itself said no
    calls = bridge.trust_calls()
    assert await login(bridge, ALICE, "alice-typed-this-wrong") == "invalid_credentials"
    stale = await last_attempt(bridge)
    assert bridge.trust_calls() == calls and stale.idp_latency_ms is None
    assert stale.reason == STALE

    # A refused account (disabled at the IdP, enabled in the bridge) is remembered too, and recorded as such.
    await bridge.store.enable_user("example", "disabled@example.com")
    assert await login(bridge, "disabled@example.com", "disabled-demo-pass") == "access_denied"
    assert (await last_attempt(bridge)).reason is None
    assert await login(bridge, "disabled@example.com", "disabled-demo-pass") == "access_denied"
    assert (await last_attempt(bridge)).reason == REFUSED_BEFORE


# -- which throttle refused ---------------------------------------------------------------------------


def _retry(reason: str | None, pattern: str) -> int:
    """The Retry-After seconds of a throttle reason matching ``pattern`` (which ends before "; retry after")."""
    match = re.fullmatch(pattern + r"; retry after (\d+) s", reason or "")
    assert match, reason
    return int(match.group(1))


async def test_the_per_user_throttle_is_named(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(**throttle(user_failures=3))
    for n in range(3):
        assert await login(bridge, ALICE, f"user-guess-{n}") == "invalid_credentials"
    assert await login(bridge, ALICE, ALICE_PASS) == "temporarily_locked"
    reason = (await last_attempt(bridge)).reason
    wait = _retry(reason, r"per-user throttle: this account reached 3 IdP-rejected passwords within 15 min "
                          r"\(user_failures, attempts at the IdP included\)")
    assert 1 <= wait <= 15 * 60


async def test_the_per_device_throttle_is_named(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(**throttle(device_failures=4))
    for n, email in enumerate([ALICE, "mallory@example.com", "frontdesk@example.com", ALICE]):
        assert await login(bridge, email, f"device-guess-{n}") == "invalid_credentials"
    assert await login(bridge, "mallory@example.com", "mallory-demo-pass") == "temporarily_locked"
    reason = (await last_attempt(bridge)).reason
    _retry(reason, r"per-device throttle: device demo-mfp reached 4 IdP-rejected passwords within 15 min "
                   r"\(device_failures\)")


async def test_the_per_source_throttle_is_named(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(**throttle(source_failures=3, window_seconds=600))
    for n, email in enumerate([ALICE, "mallory@example.com", "frontdesk@example.com"]):
        assert await login(bridge, email, f"source-guess-{n}", path=APPS) == "invalid_credentials"
    assert await login(bridge, ALICE, ALICE_PASS, path=APPS) == "temporarily_locked"
    reason = (await last_attempt(bridge)).reason
    _retry(reason, r"per-source throttle: source address 127\.0\.0\.1 reached 3 IdP-rejected passwords "
                   r"within 10 min \(source_failures\)")


async def test_the_spray_block_is_named(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(throttle={"spray_distinct_users": 4, "spray_window_seconds": 120})
    for name in ("ann", "ben", "cat", "dan"):
        assert await login(bridge, f"{name}@example.com", "Spring2024!") == "user_not_provisioned"
    assert await login(bridge, ALICE, ALICE_PASS) == "device_throttled"
    reason = (await last_attempt(bridge)).reason
    wait = _retry(reason, r"spray block: device demo-mfp reached 4 distinct failing users within 2 min "
                          r"\(spray_distinct_users\)")
    assert 60 < wait <= 120
    assert bridge.trust_calls() == 0


# -- the whitelist ------------------------------------------------------------------------------------


async def test_a_whitelist_refusal_records_the_address_and_the_line_to_add(make_bridge: BridgeFactory,
                                                                          sim: RunningSimulator) -> None:
    bridge = await make_bridge(tenants=[tenant_yaml(sim), saml_tenant_yaml(sim, idp_whitelist=["192.0.2.0/24"])])
    assert await login(bridge, "bob@example.org", "bob-demo-pass", device=ORG_DEVICE) == "idp_not_whitelisted"
    event = await last_attempt(bridge, "example-org")
    assert event.reason == "127.0.0.1 not in idp_whitelist; add 127.0.0.1/32 to idp_whitelist"
    assert sum(sim.state.counters.values()) == 0


async def test_a_host_name_outside_the_whitelist_is_named_with_what_it_resolved_to(
        make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    by_name = sim.base_url.replace("127.0.0.1", "localhost")
    bridge = await make_bridge(idp_whitelist=["192.0.2.0/24"], wstrust={"adfs_url": by_name})
    assert await login(bridge, ALICE, ALICE_PASS) == "idp_not_whitelisted"
    reason = (await last_attempt(bridge)).reason
    match = re.fullmatch(r"IdP host localhost resolved to (.+): not in idp_whitelist; add (.+) to idp_whitelist",
                         reason or "")
    assert match, reason
    addresses = [ipaddress.ip_address(a) for a in match.group(1).split(", ")]
    assert ipaddress.ip_address("127.0.0.1") in addresses
    assert match.group(2).split(", ") == [f"{a}/{a.max_prefixlen}" for a in addresses]


# -- IdP faults ---------------------------------------------------------------------------------------


async def test_an_idp_timeout_records_the_limit_and_the_remembered_failure(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(timeout_seconds=1, wstrust={"version": "auto"})
    bridge.sim.state.delay_seconds = 30
    assert await login(bridge, ALICE, ALICE_PASS) == "idp_timeout"
    first = (await last_attempt(bridge)).reason
    assert first == "no answer from IdP 127.0.0.1 within 1 s (idp_client.timeout_seconds)"
    # Just after, the failure is remembered and the IdP not asked: the reason says so.
    assert await login(bridge, ALICE, ALICE_PASS) == "idp_timeout"
    again = (await last_attempt(bridge)).reason
    assert re.fullmatch(re.escape(first) + r" \(\d+\.\d s ago; not retried for 5 s\)", again or ""), again


async def test_a_tls_verification_failure_is_recorded(make_bridge: BridgeFactory, tmp_path: Any) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_key_and_cert("some-other-ca")[1])
    bridge = await make_bridge(wstrust={"ca_file": str(other_ca)})
    assert await login(bridge, ALICE, ALICE_PASS) == "idp_unreachable"
    reason = (await last_attempt(bridge)).reason
    assert reason == "TLS: the certificate of IdP 127.0.0.1 did not verify (unable to get local issuer certificate)"


@pytest.mark.parametrize(("fail", "code", "reason"), [
    (FailMode.HTTP_503, "idp_unreachable", "AD FS answered HTTP 503, an error page, not a SOAP answer"),
    (FailMode.HTTP_500_PAGE, "idp_unreachable", "AD FS answered HTTP 500, an error page, not a SOAP answer"),
])
async def test_an_http_error_status_of_the_idp_is_recorded(make_bridge: BridgeFactory, fail: FailMode, code: str,
                                                           reason: str) -> None:
    bridge = await make_bridge(wstrust={"version": "1.3"})
    assert await login(bridge, ALICE, ALICE_PASS) == "ok"
    assert (await last_attempt(bridge)).reason is None
    bridge.sim.state.fail_mode = fail
    assert await login(bridge, ALICE, ALICE_PASS) == code
    assert (await last_attempt(bridge)).reason == reason


# -- the console's attempts page ----------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_RECORDED = 'title="Recorded by the bridge at the time of the attempt"'
_NOW = ">now</span>"


def _row(page: str, event_id: int | None) -> str:
    match = re.search(rf'<tr class="row-\w+" id="a{event_id}">(.*?)</tr>', page, re.DOTALL)
    assert match, f"no line for audit event {event_id}"
    return match.group(1)


async def test_the_attempts_page_shows_the_recorded_reason_first(make_bridge: BridgeFactory,
                                                                 sim: RunningSimulator) -> None:
    console = {"users": [{"name": TECH[0], "password_hash": hash_console_password(TECH[1])}]}
    bridge = await make_bridge(tenants=[tenant_yaml(sim, **throttle(user_failures=2)),
                                        saml_tenant_yaml(sim, idp_whitelist=["10.9.0.0/16"])],
                               main_extra={"console": console})
    assert await login(bridge, ALICE, "page-guess-1") == "invalid_credentials"
    assert await login(bridge, ALICE, "page-guess-1") == "invalid_credentials"  # the stale-password guard
    assert await login(bridge, ALICE, "page-guess-2") == "invalid_credentials"
    assert await login(bridge, ALICE, ALICE_PASS) == "temporarily_locked"
    assert await login(bridge, "bob@example.org", "bob-demo-pass", device=ORG_DEVICE) == "idp_not_whitelisted"
    # An event from before the bridge recorded reasons: the page looks the whitelist up now, and says so.
    old_id = await bridge.store.add_audit_event(AuditEvent(
        at=datetime.now(UTC), kind=AuditKind.LOGIN, result="idp_not_whitelisted", tenant_id="example-org",
        mode="user-prompt", email="bob@example.org", device_id=ORG_DEVICE[0]))
    recorded = [e for e in await bridge.store.audit_page("example", limit=100)
                + await bridge.store.audit_page("example-org", limit=100) if e.reason]
    assert sorted(e.result for e in recorded) == ["idp_not_whitelisted", "invalid_credentials",
                                                  "temporarily_locked"]

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(bridge.url + "/console/login") as resp:
            csrf = _CSRF.search(await resp.text())
            assert csrf
        async with browser.post(bridge.url + "/console/login",
                                data={"csrf": csrf.group(1), "name": TECH[0], "password": TECH[1]}) as resp:
            assert resp.status == 200
        async with browser.get(bridge.url + "/console/attempts", params={"per": "25"}) as resp:
            assert resp.status == 200
            page = await resp.text()

    for event in recorded:
        row = _row(page, event.id)
        assert event.reason and event.reason in html.unescape(row), (event.result, row)
        assert _RECORDED in row and _NOW not in row, row
    whitelist = _row(page, next(e.id for e in recorded if e.result == "idp_not_whitelisted"))
    assert "127.0.0.1 not in idp_whitelist; add 127.0.0.1/32 to idp_whitelist" in html.unescape(whitelist)
    old = _row(page, old_id)
    assert "add 127.0.0.1/32 to idp_whitelist" in html.unescape(old) and _NOW in old and _RECORDED not in old


async def test_an_endpoint_that_is_not_there_is_recorded(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await make_bridge(wstrust={"version": "1.3", "endpoint": f"{sim.base_url}/adfs/services/trust/13/gone"})
    assert await login(bridge, ALICE, ALICE_PASS) == "idp_rejected_request"
    assert (await last_attempt(bridge)).reason == "AD FS answered HTTP 404: the endpoint is not enabled at this URL"


async def test_a_failing_mex_is_recorded(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(wstrust={"version": "auto"})
    bridge.sim.state.fail_mode = FailMode.HTTP_503
    assert await login(bridge, ALICE, ALICE_PASS) == "idp_protocol_error"
    assert (await last_attempt(bridge)).reason == "MEX answered HTTP 503"
