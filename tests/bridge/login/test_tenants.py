"""Tenants as live data: files applied to the store, every instance following its version (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import BridgeConfig, load_config
from bridge.errors import ConfigError
from bridge.login.tenants import LiveTenants
from bridge.state.store import Store
from bridge.state.tenants import delete_tenant, get_tenant_record, put_tenant, tenants_version
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]  # the real-server fixtures, used by name below


def tenant_doc(tenant_id: str, domain: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": tenant_id, "name": tenant_id.title(), "domains": [domain], "protocol": "wstrust",
        "idp_whitelist": ["127.0.0.1/32"],
        "wstrust": {"adfs_url": "https://127.0.0.1:9443", "applies_to": f"urn:loginbridge:{domain}",
                    "signature_algorithms": ["rsa-sha256"], "federation_metadata": True},
    }
    doc.update(extra)
    return doc


def write_conf(root: Path, *tenants: dict[str, Any]) -> Path:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    main = {"state_dir": str(root / "state"),
            "secrets": {"hmac_key": {"file": str(root / "state" / "hmac.key"), "generate": True}}}
    (root / "bridge.yaml").write_text(yaml.safe_dump(main))
    for tenant in tenants:
        (root / "tenants" / f"{tenant['id']}.yaml").write_text(yaml.safe_dump(tenant))
    return root / "bridge.yaml"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await Store.open(store_url) as opened:
        yield opened


@pytest.fixture
def config(tmp_path: Path) -> BridgeConfig:
    return load_config(write_conf(tmp_path, tenant_doc("alpha", "alpha.test"), tenant_doc("beta", "beta.test")),
                       require_files=False)


async def test_files_are_applied_once_and_every_instance_follows(store: Store, config: BridgeConfig) -> None:
    one, two = LiveTenants(config), LiveTenants(config)
    first = await one.apply_files(store, require_files=False)
    assert (first.written, first.unchanged) == (("alpha", "beta"), ())
    again = await two.apply_files(store, require_files=False)  # a second instance starting: nothing to write
    assert (again.written, again.unchanged) == ((), ("alpha", "beta"))
    version = await tenants_version(store.database)
    assert await one.refresh(store) is False and one.version == version  # the first load is not a "change"
    assert [t.id for t in one.config.tenants] == ["alpha", "beta"]

    gamma = json.dumps(tenant_doc("gamma", "gamma.test"))  # made through the API on another instance
    await put_tenant(store.database, tenant_id="gamma", document=gamma, base_dir=str(config.tenants_dir),
                     origin="api:ops", from_file=False)
    assert await one.refresh(store) is True
    assert [t.id for t in one.config.tenants] == ["alpha", "beta", "gamma"]
    assert one.config.tenant_for_domain("gamma.test") is not None and one.config.tenant("gamma").name == "Gamma"
    assert await one.refresh(store) is False  # the version did not move: one primary-key read, no reload
    assert await delete_tenant(store.database, "gamma") and await one.refresh(store) is True
    assert [t.id for t in one.config.tenants] == ["alpha", "beta"]


async def test_the_newer_change_wins_between_a_file_and_the_api(store: Store, config: BridgeConfig,
                                                                 tmp_path: Path) -> None:
    live = LiveTenants(config)
    await live.apply_files(store, require_files=False)
    edited = json.dumps(tenant_doc("alpha", "alpha.test", name="Alpha (edited by API)"))
    await put_tenant(store.database, tenant_id="alpha", document=edited, base_dir=str(config.tenants_dir),
                     origin="api:ops", from_file=False)
    assert (await live.apply_files(store, require_files=False)).written == ()  # the file did not change
    await live.refresh(store)
    assert live.config.tenant("alpha").name == "Alpha (edited by API)"

    write_conf(tmp_path, tenant_doc("alpha", "alpha.test", name="Alpha (edited in the file)"))
    assert (await live.apply_files(store, require_files=False)).written == ("alpha",)
    await live.refresh(store)
    assert live.config.tenant("alpha").name == "Alpha (edited in the file)"
    record = await get_tenant_record(store.database, "alpha")
    assert record is not None and record.origin.startswith("file:") and record.origin.endswith("alpha.yaml")


async def test_a_bad_file_is_refused_with_file_key_and_line_and_nothing_is_written(
        store: Store, config: BridgeConfig, tmp_path: Path) -> None:
    live = LiveTenants(config)
    await live.apply_files(store, require_files=False)
    version = await tenants_version(store.database)
    write_conf(tmp_path, tenant_doc("alpha", "alpha.test", name="Changed"),
               tenant_doc("beta", "beta.test", idp_whitelist=["not-a-network"]))
    with pytest.raises(ConfigError) as refused:
        await live.apply_files(store, require_files=False)
    text = str(refused.value)
    assert "beta.yaml:5: idp_whitelist[0]:" in text, text  # file, line, key
    assert await tenants_version(store.database) == version  # all or nothing: alpha's change was not written


async def test_a_domain_claimed_by_an_api_tenant_and_a_file_names_both(store: Store, config: BridgeConfig,
                                                                       tmp_path: Path) -> None:
    other = json.dumps(tenant_doc("other", "beta.test"))
    await put_tenant(store.database, tenant_id="other", document=other, base_dir=str(tmp_path), origin="api:ops",
                     from_file=False)
    with pytest.raises(ConfigError) as refused:
        await LiveTenants(config).apply_files(store, require_files=False)
    text = str(refused.value)
    assert "beta.test" in text and "tenant other (api:ops)" in text and "beta.yaml" in text, text


async def test_a_stored_document_that_no_longer_parses_keeps_the_previous_settings(
        store: Store, config: BridgeConfig, caplog: pytest.LogCaptureFixture) -> None:
    live = LiveTenants(config)
    await live.apply_files(store, require_files=False)
    await live.refresh(store)
    await put_tenant(store.database, tenant_id="alpha", document="id: alpha\nname: [unclosed",
                     base_dir=str(config.tenants_dir), origin="api:broken-tool", from_file=False)
    await live.refresh(store)
    assert live.config.tenant("alpha").name == "Alpha"
    assert any("not valid" in r.getMessage() and "alpha" in r.getMessage() for r in caplog.records)
    fresh = LiveTenants(config)  # an instance that never saw it valid serves without it
    await fresh.refresh(store, force=True)
    assert [t.id for t in fresh.config.tenants] == ["beta"]


def test_session_ttl_default_reaches_stored_tenants(config: BridgeConfig) -> None:
    assert config.session_ttl == timedelta(hours=8)
