"""Shared pieces of the mode and lockout flows: one WS-Trust and one SAML tenant, their devices and users."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridge.idpsim.server import RunningSimulator
from tests.connectors.openapi_check import check_response
from tests.flows.conftest import KNOWN_SECRETS, Bridge, BridgeFactory, saml_tenant_yaml, tenant_yaml

ORG_LOBBY = ("org-lobby", "org-lobby-secret-0001")
ORG_BADGE = ("org-badge", "org-badge-secret-0001")
KNOWN_SECRETS.update({"demo-lobby-secret", "demo-badge-secret", "demo-mfp-org-secret", ORG_LOBBY[1], ORG_BADGE[1]})


@dataclass(frozen=True)
class Case:
    """One tenant and everything a mode test needs from it."""

    protocol: str
    tenant: str
    email: str
    username: str
    password: str
    shared_user: str
    prompt_device: tuple[str, str]
    lobby_device: tuple[str, str]
    badge_device: tuple[str, str]
    idp_counters: tuple[str, ...]


CASES = {
    "wstrust": Case(protocol="wstrust", tenant="example", email="alice@example.com", username="alice",
                    password="alice-demo-pass", shared_user="frontdesk@example.com",
                    prompt_device=("demo-mfp", "demo-mfp-secret"), lobby_device=("demo-lobby", "demo-lobby-secret"),
                    badge_device=("demo-badge", "demo-badge-secret"), idp_counters=("trust13", "trust2005")),
    "saml2": Case(protocol="saml2", tenant="example-org", email="bob@example.org", username="bob",
                  password="bob-demo-pass", shared_user="bob@example.org",
                  prompt_device=("demo-mfp-org", "demo-mfp-org-secret"), lobby_device=ORG_LOBBY,
                  badge_device=ORG_BADGE, idp_counters=("ecp",)),
}
# Every mode runs for a WS-Trust and a SAML (ECP) tenant.
PROTOCOLS = list(CASES)


async def two_tenant_bridge(make_bridge: BridgeFactory, sim: RunningSimulator, *, example: dict[str, Any] | None = None,
                            org: dict[str, Any] | None = None, **overrides: Any) -> Bridge:
    """The example.com (WS-Trust) and example.org (SAML) tenants, with devices in every mode for both."""
    bridge = await make_bridge(
        tenants=[tenant_yaml(sim, **(example or {})), saml_tenant_yaml(sim, **(org or {}))], **overrides)
    await bridge.store.add_device("example-org", name="Org lobby", mode="shared-account", shared_user_email="bob@example.org",
                            device_id=ORG_LOBBY[0], secret=ORG_LOBBY[1])
    await bridge.store.add_device("example-org", name="Org badge", mode="device-login", device_id=ORG_BADGE[0],
                            secret=ORG_BADGE[1])
    return bridge


def idp_calls(bridge: Bridge, case: Case) -> int:
    return sum(bridge.sim.state.counters[name] for name in case.idp_counters)


def all_idp_calls(bridge: Bridge) -> int:
    counters = bridge.sim.state.counters
    return counters["trust13"] + counters["trust2005"] + counters["ecp"]


async def request(
    bridge: Bridge, method: str, path: str, *, json: Any = None, data: bytes | None = None,
    auth: tuple[str, str] | None = None, bearer: str | None = None, session_token: str | None = None,
    local_addr: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Like Bridge.call, plus headers, X-Session-Token and a chosen source address; checked against OpenAPI."""
    headers: dict[str, str] = {}
    if auth is not None:
        KNOWN_SECRETS.add(auth[1])
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if session_token is not None:
        headers["X-Session-Token"] = session_token
    if json is not None and isinstance(json, dict) and isinstance(json.get("password"), str):
        KNOWN_SECRETS.add(json["password"])
    connector = aiohttp.TCPConnector(local_addr=(local_addr, 0)) if local_addr else None
    http = aiohttp.ClientSession(connector=connector) if connector else bridge.http
    try:
        async with http.request(method, bridge.url + path, json=json, data=data, headers=headers) as resp:
            body = await resp.json(content_type=None)
            check_response(method, path, resp.status, body)
            token = body.get("session", {}).get("token") if isinstance(body, dict) else None
            if token:
                KNOWN_SECRETS.add(token)
            return resp.status, body, dict(resp.headers)
    finally:
        if connector:
            await http.close()


async def metric_samples(bridge: Bridge) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: (sample name, sorted labels) -> value."""
    async with bridge.http.get(bridge.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
