"""The simulator on loopback TLS with the demo users file, for the simulator's own tests."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from joserfc.jwk import RSAKey

from bridge.idpsim.config import SimConfig, load_config, parse_config
from bridge.idpsim.keys import ensure_keys
from bridge.idpsim.server import RunningSimulator, run_simulator
from tests.paths import REPO

USERS_FILE = REPO / "conf" / "idp-sim" / "users.yaml"


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("idp-sim-keys")
    ensure_keys(directory, host="127.0.0.1")
    return directory


@pytest.fixture(scope="session")
def config() -> SimConfig:
    return load_config(USERS_FILE)


@pytest.fixture
async def sim(config: SimConfig, keys_dir: Path) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(config, keys_dir) as running:
        yield running


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that trusts the simulator's CA."""
    context = ssl.create_default_context(cafile=str(sim.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


# --------------------------------------------------------------------------- the OpenID Provider's tests


OIDC_REDIRECT = "https://rp.example/oidc/callback?tenant=t1"
OIDC_SECRET = "rp-basic-secret+/:%é"  # characters RFC 6749 2.3.1's form-urlencoding must carry


@dataclasses.dataclass(frozen=True, kw_only=True)
class OidcClients:
    """The test clients registered on top of the demo users file, and the private_key_jwt client's key."""

    config: SimConfig
    jwt_key: RSAKey


@pytest.fixture(scope="session")
def oidc_clients(config: SimConfig) -> OidcClients:
    jwt_key = RSAKey.generate_key(2048, private=True, auto_kid=True)
    jwks = {"keys": [jwt_key.as_dict(private=False)]}
    data = yaml.safe_load(USERS_FILE.read_text(encoding="utf-8"))
    data["oidc"]["clients"] += [
        {"client_id": "rp-basic", "auth_method": "client_secret_basic", "client_secret": OIDC_SECRET,
         "redirect_uris": [OIDC_REDIRECT], "password_grant": True},
        {"client_id": "rp-post", "auth_method": "client_secret_post", "client_secret": "rp-post-secret",
         "redirect_uris": [OIDC_REDIRECT], "password_grant": True, "id_token_email": False},
        {"client_id": "rp-public", "auth_method": "none", "redirect_uris": [OIDC_REDIRECT]},
        {"client_id": "rp-jwt", "auth_method": "private_key_jwt", "jwks": jwks, "redirect_uris": [OIDC_REDIRECT],
         "password_grant": True},
        {"client_id": "rp-es256", "auth_method": "client_secret_basic", "client_secret": "rp-es256-secret",
         "redirect_uris": [OIDC_REDIRECT], "password_grant": True, "id_token_signed_response_alg": "ES256"},
        {"client_id": "rp-no-password", "auth_method": "client_secret_basic", "client_secret": "rp-np-secret",
         "redirect_uris": [OIDC_REDIRECT], "require_pkce": False},
    ]
    return OidcClients(config=parse_config(data, source=str(USERS_FILE), base_dir=USERS_FILE.parent), jwt_key=jwt_key)


@pytest.fixture
async def oidc_sim(oidc_clients: OidcClients, keys_dir: Path) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(oidc_clients.config, keys_dir) as running:
        yield running


@pytest.fixture
async def oidc_http(oidc_sim: RunningSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the OIDC simulator that trusts its CA (redirects are read, never followed)."""
    context = ssl.create_default_context(cafile=str(oidc_sim.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session
