"""The SCIM endpoint on a real bridge over loopback (the flows' fixtures), with one IdP user only SCIM provisions."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.idpsim.config import SimConfig, SimUser
from bridge.idpsim.config import load_config as load_sim_config
from bridge.state.tokens import create_token
from tests.flows.conftest import (
    KNOWN_SECRETS,
    SIM_USERS,
    Bridge,
    BridgeFactory,
    make_bridge,
    no_secrets_in_logs,
    saml_tenant_yaml,
    sim,
    sim_keys_dir,
    tenant_yaml,
)

__all__ = ["make_bridge", "no_secrets_in_logs", "sim", "sim_keys_dir"]

DANA = "dana@example.com"  # at the IdP, not in the demo seed: only SCIM gives her an account
DANA_PASS = "dana-demo-pass-1"
SCIM = "application/scim+json"


@pytest.fixture(scope="session")
def sim_config() -> SimConfig:
    base = load_sim_config(SIM_USERS)
    dana = SimUser(username="dana", upn=DANA, email=DANA, password=DANA_PASS, display_name="Dana Example")
    KNOWN_SECRETS.update(user.password for user in (*base.users, dana))
    return dataclasses.replace(base, users=(*base.users, dana))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class ScimBridge:
    bridge: Bridge
    token: str  # tenant example's SCIM token ("entra-prod")
    other_token: str  # tenant example-org's

    @property
    def base(self) -> str:
        return f"{self.bridge.url}/scim/v2/example"

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = "default",
                   tenant: str = "example", raw: bytes | None = None) -> Answer:
        headers = {"Accept": SCIM}
        bearer = self.token if token == "default" else token
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = SCIM
        url = f"{self.bridge.url}/scim/v2/{tenant}{path}"
        async with self.bridge.http.request(method, url, data=data, headers=headers) as resp:
            text = await resp.text()
            return Answer(resp.status, dict(resp.headers), json.loads(text) if text else None)

    async def create_user(self, user_name: str, **attributes: Any) -> dict[str, Any]:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, **attributes}
        answer = await self.call("POST", "/Users", body)
        assert answer.status == 201, answer.body
        return dict(answer.body)

    async def patch(self, user_id: str, *operations: dict[str, Any]) -> Answer:
        return await self.call("PATCH", f"/Users/{user_id}", {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)})


@pytest.fixture
async def scim(make_bridge: BridgeFactory, sim: Any) -> ScimBridge:
    bridge = await make_bridge(tenants=[tenant_yaml(sim), saml_tenant_yaml(sim)])
    _, token = await create_token(bridge.store.database, kind="scim", name="entra-prod", tenant_id="example")
    _, other = await create_token(bridge.store.database, kind="scim", name="okta", tenant_id="example-org")
    KNOWN_SECRETS.update((token, other))
    return ScimBridge(bridge=bridge, token=token, other_token=other)
