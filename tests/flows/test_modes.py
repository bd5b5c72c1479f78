"""Every device mode, device identity, sessions and tenant isolation, end to end over loopback.

Each mode runs for the WS-Trust tenant (example.com, AD FS simulator) and the
SAML tenant (example.org, the simulator's ECP IdP).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bridge.idpsim.server import RunningSimulator
from bridge.state.audit import AuditKind
from tests.flows.conftest import KNOWN_SECRETS, BridgeFactory
from tests.flows.modes_support import (
    CASES,
    PROTOCOLS,
    all_idp_calls,
    idp_calls,
    metric,
    metric_samples,
    request,
    two_tenant_bridge,
)

SHARED = "/v1/mfp/shared-account"
BADGE = "/v1/mfp/device-login"
PROMPT = "/v1/mfp/user-prompt"
APPS = "/v1/apps/login"
SESSION = "/v1/session"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_shared_account_needs_only_the_device(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                    protocol: str) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim)
    status, body, _ = await request(bridge, "POST", SHARED, auth=case.lobby_device)
    assert status == 200, body
    assert body["user"]["email"] == case.shared_user
    assert body["user"]["tenant"] == case.tenant
    assert all_idp_calls(bridge) == 0
    status, session, _ = await request(bridge, "GET", SESSION, bearer=body["session"]["token"])
    assert status == 200
    assert session["session"]["device_id"] == case.lobby_device[0]
    assert session["user"] == {"email": case.shared_user, "tenant": case.tenant}
    device = await bridge.store.get_device(case.lobby_device[0])
    assert device is not None and device.last_seen_addr == "127.0.0.1" and device.last_seen_at is not None


async def test_shared_account_user_disabled(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    await bridge.store.disable_user("example", "frontdesk@example.com")
    status, body, _ = await request(bridge, "POST", SHARED, auth=CASES["wstrust"].lobby_device)
    assert (status, body["error"]) == (403, "user_disabled")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_device_login_maps_the_reported_email(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                    protocol: str) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim)
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": case.email.upper()}, auth=case.badge_device)
    assert status == 200, body
    assert (body["user"]["email"], body["user"]["tenant"]) == (case.email, case.tenant)
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": f"nobody@{case.email.split('@')[1]}"},
                                    auth=case.badge_device)
    assert (status, body["error"]) == (403, "user_not_provisioned")
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": case.username}, auth=case.badge_device)
    assert (status, body["error"]) == (400, "email_required")  # the tenant maps by email
    status, body, _ = await request(bridge, "POST", BADGE, json={"name": case.email}, auth=case.badge_device)
    assert (status, body["error"]) == (400, "bad_request")
    assert all_idp_calls(bridge) == 0


async def test_device_login_disabled_user(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": "disabled@example.com"},
                                    auth=CASES["wstrust"].badge_device)
    assert (status, body["error"]) == (403, "user_disabled")


async def test_device_login_by_username(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim, example={"device_login_identity": "username"})
    badge = CASES["wstrust"].badge_device
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": " Alice "}, auth=badge)
    assert status == 200, body
    assert body["user"]["email"] == "alice@example.com"
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": "alice@example.com"}, auth=badge)
    assert (status, body["error"]) == (403, "user_not_provisioned")
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": "bob"}, auth=badge)  # bob is example.org's
    assert (status, body["error"]) == (403, "user_not_provisioned")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_user_prompt_checks_the_password_at_the_idp(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                          protocol: str) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim)
    status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": case.password},
                                    auth=case.prompt_device)
    assert status == 200, body
    assert body["user"]["email"] == case.email
    assert idp_calls(bridge, case) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_app_login_without_device(make_bridge: BridgeFactory, sim: RunningSimulator, protocol: str) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim)
    status, body, _ = await request(bridge, "POST", APPS, json={"email": case.email, "password": case.password})
    assert status == 200, body
    status, session, _ = await request(bridge, "GET", SESSION, bearer=body["session"]["token"])
    assert status == 200
    assert session["session"]["device_id"] is None
    assert session["user"] == {"email": case.email, "tenant": case.tenant}
    status, body, _ = await request(bridge, "POST", APPS, json={"email": case.email, "password": "not-it-at-all"})
    assert (status, body["error"]) == (401, "invalid_credentials")
    status, body, _ = await request(bridge, "POST", APPS, json={"email": case.username, "password": case.password})
    assert (status, body["error"]) == (400, "email_required")
    assert idp_calls(bridge, case) == 2


async def test_wrong_mode(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    case = CASES["wstrust"]
    bridge = await two_tenant_bridge(make_bridge, sim)
    prompt_body = {"email": case.email, "password": case.password}
    for path, device, payload in [
        (PROMPT, case.lobby_device, prompt_body),
        (PROMPT, case.badge_device, prompt_body),
        (SHARED, case.prompt_device, None),
        (SHARED, case.badge_device, None),
        (BADGE, case.prompt_device, {"user": case.email}),
        (BADGE, case.lobby_device, {"user": case.email}),
    ]:
        status, body, _ = await request(bridge, "POST", path, json=payload, auth=device)
        assert (status, body["error"]) == (403, "wrong_mode"), (path, device[0])
    assert all_idp_calls(bridge) == 0


async def test_wrong_rotated_and_disabled_secrets(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    lobby_id, lobby_secret = CASES["wstrust"].lobby_device
    status, body, _ = await request(bridge, "POST", SHARED, auth=(lobby_id, lobby_secret + "x"))
    assert (status, body["error"]) == (401, "device_unauthorized")
    status, body, _ = await request(bridge, "POST", SHARED)
    assert (status, body["error"]) == (401, "device_unauthorized")

    status, opened, _ = await request(bridge, "POST", SHARED, auth=(lobby_id, lobby_secret))
    assert status == 200
    new_secret = await bridge.store.rotate_device_secret(lobby_id)
    KNOWN_SECRETS.add(new_secret)
    status, body, _ = await request(bridge, "POST", SHARED, auth=(lobby_id, lobby_secret))
    assert (status, body["error"]) == (401, "device_unauthorized")
    status, _, _ = await request(bridge, "POST", SHARED, auth=(lobby_id, new_secret))
    assert status == 200

    await bridge.store.disable_device(lobby_id)
    status, body, _ = await request(bridge, "POST", SHARED, auth=(lobby_id, new_secret))
    assert (status, body["error"]) == (401, "device_unauthorized")
    status, body, _ = await request(bridge, "GET", SESSION, bearer=opened["session"]["token"])
    assert (status, body["error"]) == (401, "session_invalid")  # disabling the device ended its sessions
    await bridge.store.enable_device(lobby_id)
    status, _, _ = await request(bridge, "POST", SHARED, auth=(lobby_id, new_secret))
    assert status == 200


async def test_source_outside_the_device_networks(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    _, secret = await bridge.store.add_device("example", name="Branch office", mode="user-prompt",
                                        allowed_networks=["192.0.2.0/24"], device_id="branch-mfp")
    # Refused on the headers alone: the (malformed) body is never read, nothing reaches the IdP.
    status, body, _ = await request(bridge, "POST", PROMPT, data=b"{not json", auth=("branch-mfp", secret))
    assert (status, body["error"]) == (403, "source_not_allowed")
    assert all_idp_calls(bridge) == 0
    assert (await bridge.store.get_device("branch-mfp")).last_seen_addr == "127.0.0.1"  # type: ignore[union-attr]

    # Another loopback address: allowed for this one device only.
    _, secret = await bridge.store.add_device("example", name="Lab", mode="shared-account",
                                        shared_user_email="frontdesk@example.com",
                                        allowed_networks=["127.0.0.2/32"], device_id="lab-lobby")
    status, body, _ = await request(bridge, "POST", SHARED, auth=("lab-lobby", secret), local_addr="127.0.0.2")
    assert status == 200, body
    status, body, _ = await request(bridge, "POST", SHARED, auth=("lab-lobby", secret), local_addr="127.0.0.1")
    assert (status, body["error"]) == (403, "source_not_allowed")


async def test_tenant_device_networks_apply_to_every_device_not_to_apps(make_bridge: BridgeFactory,
                                                                       sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim, example={"device_networks": ["10.0.0.0/8"]})
    case = CASES["wstrust"]
    for path, device, payload in [(SHARED, case.lobby_device, None), (BADGE, case.badge_device, {"user": case.email}),
                                  (PROMPT, case.prompt_device, {"email": case.email, "password": case.password})]:
        status, body, _ = await request(bridge, "POST", path, json=payload, auth=device)
        assert (status, body["error"]) == (403, "source_not_allowed"), path
    status, body, _ = await request(bridge, "POST", SHARED, auth=CASES["saml2"].lobby_device)
    assert status == 200, body  # the other tenant has no such restriction
    status, body, _ = await request(bridge, "POST", APPS, json={"email": case.email, "password": case.password})
    assert status == 200, body  # apps roam: device networks are for devices


async def test_logout_and_session_expiry(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim, example={"session_ttl_seconds": 120})
    before = datetime.now(UTC)
    status, body, _ = await request(bridge, "POST", SHARED, auth=CASES["wstrust"].lobby_device)
    assert status == 200
    token = body["session"]["token"]
    expires = datetime.fromisoformat(body["session"]["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=119) <= expires <= datetime.now(UTC) + timedelta(seconds=121)
    status, org, _ = await request(bridge, "POST", SHARED, auth=CASES["saml2"].lobby_device)
    org_expires = datetime.fromisoformat(org["session"]["expires_at"].replace("Z", "+00:00"))
    assert org_expires - expires > timedelta(hours=1)  # the other tenant keeps the default lifetime

    from bridge.login.sessions import token_hash
    assert await bridge.store.get_session(token_hash(token), expires + timedelta(seconds=1)) is None  # expired then

    status, body, _ = await request(bridge, "DELETE", SESSION, bearer=token)
    assert (status, body) == (200, {"status": "logged_out"})
    status, body, _ = await request(bridge, "GET", SESSION, bearer=token)
    assert (status, body["error"]) == (401, "session_invalid")
    status, body, _ = await request(bridge, "DELETE", SESSION, bearer=token)
    assert (status, body["error"]) == (401, "session_invalid")


async def test_disabling_a_user_ends_the_session(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": "alice@example.com"},
                                    auth=CASES["wstrust"].badge_device)
    assert status == 200
    await bridge.store.disable_user("example", "alice@example.com")
    status, body, _ = await request(bridge, "GET", SESSION, bearer=body["session"]["token"])
    assert (status, body["error"]) == (401, "session_invalid")


async def test_tenant_isolation(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    com, org = CASES["wstrust"], CASES["saml2"]
    # A device of example.com cannot open a session for a user of example.org ...
    status, body, _ = await request(bridge, "POST", PROMPT, json={"email": org.email, "password": org.password},
                                    auth=com.prompt_device)
    assert (status, body["error"]) == (403, "user_not_provisioned")
    status, body, _ = await request(bridge, "POST", BADGE, json={"user": org.email}, auth=com.badge_device)
    assert (status, body["error"]) == (403, "user_not_provisioned")
    assert all_idp_calls(bridge) == 0
    # ... nor read or end one of its sessions.
    status, opened, _ = await request(bridge, "POST", SHARED, auth=org.lobby_device)
    assert status == 200
    org_token = opened["session"]["token"]
    for method in ("GET", "DELETE"):
        status, body, _ = await request(bridge, method, SESSION, auth=com.lobby_device, session_token=org_token)
        assert (status, body["error"]) == (401, "session_invalid"), method
    status, body, _ = await request(bridge, "GET", SESSION, auth=org.badge_device, session_token=org_token)
    assert status == 200 and body["user"]["tenant"] == "example-org"
    status, body, _ = await request(bridge, "DELETE", SESSION, auth=org.badge_device, session_token=org_token)
    assert (status, body) == (200, {"status": "logged_out"})


async def test_every_attempt_is_audited_without_secrets(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    com = CASES["wstrust"]
    tokens = []
    _, body, _ = await request(bridge, "POST", PROMPT, json={"email": com.email, "password": com.password},
                               auth=com.prompt_device)
    tokens.append(body["session"]["token"])
    await request(bridge, "POST", PROMPT, json={"email": com.email, "password": "Audit-Wrong-1"},
                  auth=com.prompt_device)
    _, body, _ = await request(bridge, "POST", SHARED, auth=com.lobby_device)
    tokens.append(body["session"]["token"])
    await request(bridge, "POST", SHARED, auth=("demo-lobby", "not-the-secret"))
    await request(bridge, "POST", APPS, json={"email": "ghost@example.com", "password": "Audit-Wrong-2"})

    assert bridge.config.audit_file is not None
    text = bridge.config.audit_file.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    got = [(e["event"], e["mode"], e["device"], e["email"], e["result"]) for e in lines]
    assert got == [
        ("login", "user-prompt", "demo-mfp", com.email, "ok"),
        ("login", "user-prompt", "demo-mfp", com.email, "invalid_credentials"),
        ("login", "shared-account", "demo-lobby", com.shared_user, "ok"),
        ("login", "shared-account", "demo-lobby", None, "device_unauthorized"),
        ("login", "app", None, "ghost@example.com", "user_not_provisioned"),
    ]
    for event in lines:
        assert event["source"] == "127.0.0.1"
        assert event["time"].endswith("Z") and event["request_id"]
    # An unauthenticated device is not trusted to say its tenant; its claimed id is kept.
    assert [e["tenant"] for e in lines] == ["example", "example", "example", None, "example"]
    assert isinstance(lines[0]["idp_latency_ms"], int) and isinstance(lines[1]["idp_latency_ms"], int)
    assert lines[2]["idp_latency_ms"] is None  # no IdP call in shared-account mode
    for secret in [com.password, "Audit-Wrong-1", "Audit-Wrong-2", "demo-lobby-secret", "not-the-secret", *tokens]:
        assert secret not in text
    stored = await bridge.store.audit_events()
    assert [e.to_json() for e in stored] == lines  # the file and the database hold the same events
    assert len(await bridge.store.audit_events(tenant_id="example")) == 4
    assert [e.result for e in await bridge.store.audit_events(last=2)] == ["device_unauthorized", "user_not_provisioned"]
    assert all(e.kind is AuditKind.LOGIN for e in stored)


async def test_metrics_count_logins_and_idp_latency(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await two_tenant_bridge(make_bridge, sim)
    com, org = CASES["wstrust"], CASES["saml2"]
    await request(bridge, "POST", PROMPT, json={"email": com.email, "password": com.password}, auth=com.prompt_device)
    await request(bridge, "POST", PROMPT, json={"email": com.email, "password": "Metric-Wrong-1"},
                  auth=com.prompt_device)
    await request(bridge, "POST", SHARED, auth=org.lobby_device)
    await request(bridge, "POST", SHARED, auth=org.lobby_device)
    samples = await metric_samples(bridge)
    assert metric(samples, "loginbridge_logins_total", tenant="example", mode="user-prompt", result="ok") == 1
    assert metric(samples, "loginbridge_logins_total", tenant="example", mode="user-prompt",
                  result="invalid_credentials") == 1
    assert metric(samples, "loginbridge_logins_total", tenant="example-org", mode="shared-account", result="ok") == 2
    assert metric(samples, "loginbridge_idp_latency_seconds_count", tenant="example") == 2
    assert metric(samples, "loginbridge_idp_latency_seconds_count", tenant="example-org") == 0
    assert metric(samples, "loginbridge_idp_latency_seconds_sum", tenant="example") > 0
    async with bridge.http.get(bridge.url + "/metrics") as resp:
        text = await resp.text()
    assert "@" not in text  # no email in any label
    assert com.password not in text and "Metric-Wrong-1" not in text


async def test_openapi_document_is_served(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    from openapi_spec_validator import validate

    from bridge.openapi import build_document

    bridge = await two_tenant_bridge(make_bridge, sim)
    status, body, _ = await request(bridge, "GET", "/v1/openapi.json")
    assert status == 200
    assert body == json.loads(json.dumps(build_document()))
    validate(body)
