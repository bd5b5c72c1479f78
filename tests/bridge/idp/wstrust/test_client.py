"""WsTrustIdp against the AD FS simulator: what it expects of tokens, the replay cache it is handed, one shared lookup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest

from bridge.config import Protocol, TenantConfig, TokenTypeSetting, WsTrustConfig, WsTrustVersionSetting
from bridge.errors import AssertionRejected
from bridge.idp.assertion import MemoryReplayCache
from bridge.idp.http import IdpHttp, make_ssl_context
from bridge.idp.wstrust.client import WsTrustIdp
from bridge.idpsim.config import load_config as load_sim_config
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.idpsim.state import Mischief
from tests.paths import REPO

APPLIES_TO = "urn:loginbridge:example.com"


@pytest.fixture
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSimulator]:
    config = load_sim_config(REPO / "conf" / "idp-sim" / "users.yaml")
    async with run_simulator(config, tmp_path_factory.mktemp("wstrust-client-keys")) as running:
        yield running


def tenant(sim: RunningSimulator, **overrides: object) -> TenantConfig:
    values: dict[str, object] = {
        "adfs_url": sim.base_url, "endpoint": None, "version": WsTrustVersionSetting.AUTO,
        "applies_to": APPLIES_TO, "token_type": TokenTypeSetting.SAML2, "issuer": None,
        "signing_certificates": (), "federation_metadata": True, "signature_algorithms": ("rsa-sha256",),
        "clock_skew": timedelta(seconds=300), "subject_claim": "upn", "ca_file": sim.ca_file,
    }
    values.update(overrides)
    return TenantConfig(id="example", name="Example", domains=("example.com",), protocol=Protocol.WSTRUST,
                        idp_whitelist=(ip_network("127.0.0.1/32"),), session_ttl=timedelta(hours=1),
                        wstrust=WsTrustConfig(**values), saml2=None, source=Path("/dev/null"))  # type: ignore[arg-type]


@pytest.fixture
async def http(sim: RunningSimulator) -> AsyncIterator[IdpHttp]:
    client = IdpHttp(whitelist=(ip_network("127.0.0.1/32"),), ssl_context=make_ssl_context(sim.ca_file),
                     connect_timeout=2, timeout=5, max_connections=4)
    yield client
    await client.close()


async def test_a_token_naming_a_recipient_must_name_this_relying_party(sim: RunningSimulator, http: IdpHttp) -> None:
    default = await WsTrustIdp(tenant(sim), http).resolve()
    assert (default.expectations.recipient, default.expectations.recipient_required) == (APPLIES_TO, False)
    configured = await WsTrustIdp(tenant(sim, recipient="https://bridge.example.com/rp"), http).resolve()
    assert configured.expectations.recipient == "https://bridge.example.com/rp"


async def test_the_replay_cache_handed_in_refuses_a_replayed_token(sim: RunningSimulator, http: IdpHttp) -> None:
    idp = WsTrustIdp(tenant(sim), http)
    replay = MemoryReplayCache()
    accepted = await idp.authenticate(username="alice@example.com", password="alice-demo-pass", replay=replay)
    assert accepted.subject == "alice@example.com" and len(replay) == 1
    sim.state.mischief = Mischief.REPLAY
    with pytest.raises(AssertionRejected) as info:
        await idp.authenticate(username="alice@example.com", password="alice-demo-pass", replay=replay)
    assert info.value.reason == "replayed"
    # Another cache (another bridge without the store) would have taken it: the cache is what refuses.
    again = await idp.authenticate(username="alice@example.com", password="alice-demo-pass",
                                   replay=MemoryReplayCache())
    assert again.assertion_id == accepted.assertion_id


async def test_concurrent_logins_share_one_discovery(sim: RunningSimulator, http: IdpHttp) -> None:
    idp = WsTrustIdp(tenant(sim), http)
    resolved = await asyncio.gather(*(idp.resolve() for _ in range(8)))
    assert all(r is resolved[0] for r in resolved)
    assert (sim.state.counters["mex"], sim.state.counters["metadata"]) == (1, 1)
