"""Whole journeys: the bridge and the IdP simulator on loopback, real HTTP and TLS.

Every flow test also proves that no password, device secret or session token
reached any log record at any level: the ``no_secrets_in_logs`` fixture
captures everything at DEBUG and checks it at teardown.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from bridge.app import make_app
from bridge.appkeys import STORE
from bridge.config import BridgeConfig, load_config
from bridge.demo import seed
from bridge.idpsim.config import SimConfig
from bridge.idpsim.config import load_config as load_sim_config
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.state.store import Store
from tests.connectors.openapi_check import check_response
from tests.paths import REPO

SIM_USERS = REPO / "conf" / "idp-sim" / "users.yaml"
DEMO_SEED = REPO / "conf" / "demo"

# Every secret a flow may send; none may appear in a log record.
KNOWN_SECRETS: set[str] = {"demo-mfp-secret"}


@pytest.fixture(scope="session")
def sim_config() -> SimConfig:
    config = load_sim_config(SIM_USERS)
    KNOWN_SECRETS.update(user.password for user in config.users)
    return config


@pytest.fixture(scope="session")
def sim_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-keys")


@pytest.fixture
async def sim(sim_config: SimConfig, sim_keys_dir: Path) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(sim_config, sim_keys_dir) as running:
        yield running


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG)
    yield
    text = "\n".join(
        caplog.handler.format(record) + " " + repr(record.args) for record in caplog.records
    )
    leaked = sorted(secret for secret in KNOWN_SECRETS if secret and secret in text)
    assert not leaked, f"secrets written to the log: {len(leaked)}"
    # Nor any token: no assertion, no signature value, no WS-Security header.
    for marker in ("Assertion ", "Assertion>", "SignatureValue", "UsernameToken", "RequestedSecurityToken"):
        assert marker not in text, f"token material ({marker}) written to the log"


@dataclass
class Bridge:
    url: str
    config: BridgeConfig
    store: Store
    sim: RunningSimulator
    http: aiohttp.ClientSession
    tokens: list[str] = field(default_factory=list)

    async def call(
        self, method: str, path: str, *, json: Any = None, auth: tuple[str, str] | None = None,
        bearer: str | None = None, data: bytes | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {}
        if auth is not None:
            KNOWN_SECRETS.add(auth[1])
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        if data is not None:
            headers["Content-Type"] = "application/json"  # raw bytes meant as JSON (the API takes nothing else)
        async with self.http.request(method, self.url + path, json=json, data=data, headers=headers) as resp:
            body = await resp.json(content_type=None)
            check_response(method, path, resp.status, body)  # every answer must match the OpenAPI document
            return resp.status, body

    async def user_prompt(
        self, email: str, password: str, device: tuple[str, str] = ("demo-mfp", "demo-mfp-secret")
    ) -> tuple[int, dict[str, Any]]:
        KNOWN_SECRETS.add(password)
        status, body = await self.call("POST", "/v1/mfp/user-prompt", json={"email": email, "password": password}, auth=device)
        token = body.get("session", {}).get("token") if isinstance(body, dict) else None
        if token:
            KNOWN_SECRETS.add(token)
            self.tokens.append(token)
        return status, body

    def trust_calls(self) -> int:
        counters = self.sim.state.counters
        return counters["trust13"] + counters["trust2005"]


def tenant_yaml(sim: RunningSimulator, **overrides: Any) -> dict[str, Any]:
    wstrust: dict[str, Any] = {
        "adfs_url": sim.base_url,
        "version": "auto",
        "applies_to": "urn:loginbridge:example.com",
        "token_type": "saml2",
        "federation_metadata": True,
        "signature_algorithms": ["rsa-sha256"],
        "clock_skew_seconds": 300,
        "subject_claim": "upn",
        "ca_file": str(sim.ca_file),
    }
    wstrust.update(overrides.pop("wstrust", {}))
    tenant: dict[str, Any] = {
        "id": "example",
        "name": "Example Corp",
        "domains": ["example.com"],
        "protocol": "wstrust",
        "idp_whitelist": ["127.0.0.1/32"],
        "wstrust": wstrust,
    }
    tenant.update(overrides)
    return tenant


def saml_tenant_yaml(sim: RunningSimulator, **overrides: Any) -> dict[str, Any]:
    """The example.org tenant: SAML 2.0 over ECP at the simulator's Shibboleth-style IdP."""
    saml2: dict[str, Any] = {
        "metadata_url": f"{sim.base_url}/idp/shibboleth",
        "sp_entity_id": "urn:loginbridge:example.org",
        "signature_algorithms": ["rsa-sha256"],
        "clock_skew_seconds": 300,
        "subject_claim": "nameid",
        "ca_file": str(sim.ca_file),
    }
    saml2.update(overrides.pop("saml2", {}))
    tenant: dict[str, Any] = {
        "id": "example-org",
        "name": "Example Org",
        "domains": ["example.org"],
        "protocol": "saml2",
        "idp_whitelist": ["127.0.0.1/32"],
        "saml2": saml2,
    }
    tenant.update(overrides)
    return tenant


async def sim_control(sim: RunningSimulator, path: str, body: Any, *, raw: bytes | None = None) -> Any:
    """POST to one of the simulator's loopback-only control endpoints, over its TLS."""
    context = ssl.create_default_context(cafile=str(sim.ca_file))
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with http.post(sim.base_url + path, ssl=context, **kwargs) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json(content_type=None)


BridgeFactory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def make_bridge(tmp_path: Path, sim: RunningSimulator) -> AsyncIterator[BridgeFactory]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def factory(
        *, tenants: list[dict[str, Any]] | None = None, timeout_seconds: float = 15,
        listen: dict[str, Any] | None = None, main_extra: dict[str, Any] | None = None, **overrides: Any
    ) -> Bridge:
        conf = tmp_path / "conf"
        (conf / "tenants").mkdir(parents=True, exist_ok=True)
        main = {
            "listen": {"host": "127.0.0.1", "port": 0, **(listen or {})},
            "state_dir": str(tmp_path / "state"),
            "secrets": {"hmac_key": {"file": str(tmp_path / "state" / "hmac.key"), "generate": True}},
            "idp_client": {"connect_timeout_seconds": 2, "timeout_seconds": timeout_seconds},
        }
        main.update(main_extra or {})
        (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
        for tenant in tenants or [tenant_yaml(sim, **overrides)]:
            (conf / "tenants" / f"{tenant['id']}.yaml").write_text(yaml.safe_dump(tenant))
        config = load_config(conf / "bridge.yaml")
        app = make_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", int((listen or {}).get("port", 0)))
        await site.start()
        port = runner.addresses[0][1]
        store = app[STORE]
        await seed(config, store, DEMO_SEED)
        http = aiohttp.ClientSession()

        async def close() -> None:
            await http.close()
            await runner.cleanup()

        cleanups.append(close)
        return Bridge(url=f"http://127.0.0.1:{port}", config=config, store=store, sim=sim, http=http)

    yield factory
    for close in reversed(cleanups):
        await close()

