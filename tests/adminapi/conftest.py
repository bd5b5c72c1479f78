"""The admin API on a real bridge over loopback (the flows' fixtures); every answer is checked against
/admin/v1/openapi.json's document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.adminapi import PREFIX
from bridge.idpsim.server import RunningSimulator
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.tokens import create_token
from tests.adminapi.openapi_check import check_admin_response
from tests.flows.conftest import (
    KNOWN_SECRETS,
    Bridge,
    BridgeFactory,
    make_bridge,
    no_secrets_in_logs,
    sim,
    sim_config,
    sim_keys_dir,
    tenant_yaml,
)

__all__ = ["make_bridge", "no_secrets_in_logs", "sim", "sim_config", "sim_keys_dir"]

CAROL = "carol@acme.test"  # at the simulator (conf/idp-sim/users.yaml), in no tenant until the API makes one
CAROL_PASS = "carol-demo-pass"
_DEFAULT = "default"


def acme_tenant(sim: RunningSimulator, **overrides: Any) -> dict[str, Any]:
    """Tenant acme: domain acme.test, WS-Trust to the simulator (its relying party urn:loginbridge:acme.test)."""
    wstrust = {"applies_to": "urn:loginbridge:acme.test", **overrides.pop("wstrust", {})}
    return tenant_yaml(sim, **{"id": "acme", "name": "Acme", "domains": ["acme.test"], "wstrust": wstrust,
                               **overrides})


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Admin:
    bridge: Bridge
    token: str  # global, named "ops"
    scoped: str  # tenant example only, named "example-admin"

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = _DEFAULT,
                   raw: bytes | None = None, content_type: str = "application/json") -> Answer:
        headers = {}
        bearer = self.token if token == _DEFAULT else token
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = content_type
        url = self.bridge.url + PREFIX + path
        async with self.bridge.http.request(method, url, data=data, headers=headers) as resp:
            text = await resp.text()
            answer = Answer(resp.status, dict(resp.headers), json.loads(text) if text else None)
        check_admin_response(method, PREFIX + path, answer.status, answer.body, resp.headers)
        framework = isinstance(answer.body, dict) and answer.body.get("error") in ("not_found", "method_not_allowed")
        assert framework or answer.headers.get("Cache-Control") == "no-store"  # aiohttp's own 404/405 aside
        for found in _secrets(answer.body):
            KNOWN_SECRETS.add(found)  # device secrets: never in a log record
        return answer

    async def ok(self, method: str, path: str, body: Any = None, *, status: int = 200, **kwargs: Any) -> Any:
        answer = await self.call(method, path, body, **kwargs)
        assert answer.status == status, (answer.status, answer.body)
        return answer.body

    async def changes(self) -> list[AuditEvent]:
        """Every admin_change event so far, oldest first."""
        events = await self.bridge.store.audit_events()
        return [e for e in events if e.kind is AuditKind.ADMIN_CHANGE]


def _secrets(body: Any) -> list[str]:
    if isinstance(body, dict) and isinstance(body.get("secret"), str):
        return [body["secret"]]
    return []


@pytest.fixture
async def admin(make_bridge: BridgeFactory) -> AsyncIterator[Admin]:
    bridge = await make_bridge()
    db = bridge.store.database
    _, token = await create_token(db, kind="admin", name="ops", tenant_id=None)
    _, scoped = await create_token(db, kind="admin", name="example-admin", tenant_id="example")
    KNOWN_SECRETS.update((token, scoped))
    yield Admin(bridge=bridge, token=token, scoped=scoped)
