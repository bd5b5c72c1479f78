"""Lockout protection end to end: the IdP's request counters prove what never reached it."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.idpsim.server import RunningSimulator
from tests.flows.conftest import BridgeFactory
from tests.flows.modes_support import CASES, PROTOCOLS, idp_calls, metric, metric_samples, request, two_tenant_bridge

PROMPT = "/v1/mfp/user-prompt"
APPS = "/v1/apps/login"
BADGE = "/v1/mfp/device-login"


def throttle(**values: int) -> dict[str, dict[str, int]]:
    return {"throttle": values}


@pytest.mark.parametrize(("protocol", "retries"), [("wstrust", 1000), ("saml2", 200)])
async def test_stale_password_never_reaches_the_idp_again(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                          protocol: str, retries: int) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim)
    threshold = bridge.config.tenant(case.tenant).throttle.user_failures
    stale = {"email": case.email, "password": "Autumn-2023-old!"}
    answers = set()
    for _ in range(retries):
        status, body, _ = await request(bridge, "POST", PROMPT, json=stale, auth=case.prompt_device)
        answers.add((status, json.dumps(body, sort_keys=True)))
    # Always the IdP's own answer, but the IdP saw the password once.
    assert answers == {(401, json.dumps({"error": "invalid_credentials",
                                         "message": "Wrong email address or password."}, sort_keys=True))}
    assert idp_calls(bridge, case) == 1 <= threshold
    # The user is not locked out by the stale device: the right password still works.
    status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": case.password},
                                    auth=case.prompt_device)
    assert status == 200, body
    samples = await metric_samples(bridge)
    assert metric(samples, "loginbridge_stale_password_hits_total", tenant=case.tenant) == retries - 1


async def test_concurrent_retries_are_bounded_by_the_user_threshold(make_bridge: BridgeFactory,
                                                                   sim: RunningSimulator) -> None:
    case = CASES["wstrust"]
    bridge = await two_tenant_bridge(make_bridge, sim, example=throttle(user_failures=3))
    sim.state.delay_seconds = 0.3  # keep them in flight together
    stale = {"email": case.email, "password": "Concurrent-Wrong-1"}
    results = await asyncio.gather(*[request(bridge, "POST", PROMPT, json=stale, auth=case.prompt_device)
                                     for _ in range(20)])
    codes = sorted({body["error"] for _, body, _ in results})
    assert codes == ["invalid_credentials", "temporarily_locked"]
    assert idp_calls(bridge, case) <= 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_user_throttle_locks_before_the_idp_does(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                       protocol: str) -> None:
    case = CASES[protocol]
    limits = throttle(user_failures=3, spray_distinct_users=50)
    bridge = await two_tenant_bridge(make_bridge, sim, example=limits, org=limits)
    for i in range(3):
        status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": f"Guess-{i}"},
                                        auth=case.prompt_device)
        assert (status, body["error"]) == (401, "invalid_credentials")
    for password in ("Guess-3", case.password):
        status, body, headers = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": password},
                                              auth=case.prompt_device)
        assert (status, body["error"]) == (429, "temporarily_locked")
        assert 1 <= int(headers["Retry-After"]) <= 15 * 60
    # The same user from an app is locked too: the lock is the user's.
    status, body, _ = await request(bridge, "POST", APPS, json={"email": case.email, "password": case.password})
    assert (status, body["error"]) == (429, "temporarily_locked")
    assert idp_calls(bridge, case) == 3
    samples = await metric_samples(bridge)
    assert metric(samples, "loginbridge_throttle_hits_total", tenant=case.tenant, kind="user") == 3


async def test_device_throttle(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    case = CASES["wstrust"]
    bridge = await two_tenant_bridge(make_bridge, sim, example=throttle(device_failures=4, spray_distinct_users=50))
    users = ["alice@example.com", "mallory@example.com", "frontdesk@example.com", "alice@example.com"]
    for i, email in enumerate(users):
        status, body, _ = await request(bridge, "POST", PROMPT, json={"email": email, "password": f"Dev-Wrong-{i}"},
                                        auth=case.prompt_device)
        assert (status, body["error"]) == (401, "invalid_credentials")
    status, body, headers = await request(bridge, "POST", PROMPT,
                                          json={"email": "mallory@example.com", "password": "mallory-demo-pass"},
                                          auth=case.prompt_device)
    assert (status, body["error"]) == (429, "temporarily_locked")
    assert int(headers["Retry-After"]) >= 1
    assert idp_calls(bridge, case) == 4
    # Only this device is held back: the same user signs in from an app.
    status, body, _ = await request(bridge, "POST", APPS,
                                    json={"email": "mallory@example.com", "password": "mallory-demo-pass"})
    assert status == 200, body


async def test_source_throttle_for_apps(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    case = CASES["wstrust"]
    bridge = await two_tenant_bridge(make_bridge, sim, example=throttle(source_failures=3, spray_distinct_users=50))
    for i, email in enumerate(["alice@example.com", "mallory@example.com", "frontdesk@example.com"]):
        status, body, _ = await request(bridge, "POST", APPS, json={"email": email, "password": f"Src-Wrong-{i}"})
        assert (status, body["error"]) == (401, "invalid_credentials")
    status, body, _ = await request(bridge, "POST", APPS, json={"email": case.email, "password": case.password})
    assert (status, body["error"]) == (429, "temporarily_locked")
    assert idp_calls(bridge, case) == 3
    # Another source address is not affected.
    status, body, _ = await request(bridge, "POST", APPS, json={"email": case.email, "password": case.password},
                                    local_addr="127.0.0.3")
    assert status == 200, body


async def test_spray_detection(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    case = CASES["wstrust"]
    bridge = await two_tenant_bridge(make_bridge, sim, example=throttle(spray_distinct_users=4))
    for name in ("ann", "ben", "cat", "dan"):
        status, body, _ = await request(bridge, "POST", PROMPT,
                                        json={"email": f"{name}@example.com", "password": "Spring2024!"},
                                        auth=case.prompt_device)
        assert (status, body["error"]) == (403, "user_not_provisioned")
    status, body, headers = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": case.password},
                                          auth=case.prompt_device)
    assert (status, body["error"]) == (429, "device_throttled")
    assert int(headers["Retry-After"]) >= 1
    assert idp_calls(bridge, case) == 0
    # Device-login from the badge reader, and apps, are other actors.
    status, _, _ = await request(bridge, "POST", BADGE, json={"user": case.email}, auth=case.badge_device)
    assert status == 200
    status, _, _ = await request(bridge, "POST", APPS, json={"email": case.email, "password": case.password})
    assert status == 200

    events = await bridge.store.audit_events()
    sprays = [e for e in events if e.kind.value == "spray_detected"]
    assert len(sprays) == 1
    assert (sprays[0].device_id, sprays[0].tenant_id, sprays[0].distinct_users, sprays[0].result) == (
        "demo-mfp", "example", 4, "device_throttled")
    assert bridge.config.audit_file is not None
    lines = [json.loads(line) for line in bridge.config.audit_file.read_text().splitlines()]
    assert [e["event"] for e in lines].count("spray_detected") == 1
    samples = await metric_samples(bridge)
    assert metric(samples, "loginbridge_spray_detections_total", tenant="example") == 1
    assert metric(samples, "loginbridge_throttle_hits_total", tenant="example", kind="spray") == 1
    assert metric(samples, "loginbridge_logins_total", tenant="example", mode="user-prompt",
                  result="device_throttled") == 1


async def test_device_login_spray(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    case = CASES["wstrust"]
    bridge = await two_tenant_bridge(make_bridge, sim, example=throttle(spray_distinct_users=3))
    for name in ("x1", "x2", "x3"):
        status, body, _ = await request(bridge, "POST", BADGE, json={"user": f"{name}@example.com"},
                                        auth=case.badge_device)
        assert (status, body["error"]) == (403, "user_not_provisioned")
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": case.email}, auth=case.badge_device)
    assert (status, body["error"]) == (429, "device_throttled")
