"""The directory sync's tests: a real slapd (tests/servers/slapd.py) and the store on SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import BridgeConfig, TenantConfig, load_config
from bridge.localservers.slapd import SlapdServer
from tests.servers.postgres import pg_database, postgres_server, store_url
from tests.servers.slapd import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, slapd_server

__all__ = ["PASSWORD_ENV", "pg_database", "postgres_server", "slapd_server", "store_url", "write_config"]

PASSWORD_ENV = "LB_TEST_DIRECTORY_PASSWORD"

MAIN = """\
listen: {host: 127.0.0.1, port: 8181}
state_dir: ../state
tenants_dir: tenants
secrets:
  hmac_key: {file: ../state/hmac.key, generate: true}
logging: {level: debug}
"""


def directory_yaml(slapd: SlapdServer, **overrides: Any) -> dict[str, Any]:
    """The tenant's ``directory:`` section for the test slapd: LDAPS, its CA, the service account, ou=people."""
    section: dict[str, Any] = {
        "url": slapd.ldaps_url,
        "ca_file": str(slapd.ca.ca_file),
        "bind_dn": SERVICE_DN,
        "bind_password_env": PASSWORD_ENV,
        "base_dn": PEOPLE,
        "user_filter": "(objectClass=inetOrgPerson)",
        "page_size": 50,  # smaller than the directory (and than the server's size limit of 100)
    }
    section.update(overrides)
    return {key: value for key, value in section.items() if value is not None}


def write_config(root: Path, directory: dict[str, Any] | None, *, domains: tuple[str, ...] = ("example.com",)
                 ) -> BridgeConfig:
    """conf/bridge.yaml and conf/tenants/example.yaml (a WS-Trust tenant with ``directory``) under ``root``."""
    conf = root / "conf"
    (conf / "tenants").mkdir(parents=True, exist_ok=True)
    (conf / "bridge.yaml").write_text(MAIN)
    tenant: dict[str, Any] = {
        "id": "example", "name": "Example Corp", "domains": list(domains), "protocol": "wstrust",
        "idp_whitelist": ["127.0.0.1/32"],
        "wstrust": {"adfs_url": "https://127.0.0.1:9443", "applies_to": "urn:loginbridge:example.com",
                    "federation_metadata": True},
    }
    if directory is not None:
        tenant["directory"] = directory
    (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant, sort_keys=False))
    return load_config(conf / "bridge.yaml", require_files=False)


@pytest.fixture
def bind_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, SERVICE_PASSWORD)
    return SERVICE_PASSWORD


@pytest.fixture
def config(tmp_path: Path, slapd_server: SlapdServer, bind_password: str) -> BridgeConfig:
    return write_config(tmp_path, directory_yaml(slapd_server))


@pytest.fixture
def tenant(config: BridgeConfig) -> TenantConfig:
    return config.tenant("example")
