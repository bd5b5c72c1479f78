"""The simulator on loopback TLS with the demo users file, for the simulator's own tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.idpsim.config import SimConfig, load_config
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
