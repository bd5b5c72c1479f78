"""Tenants change while the bridge runs: a change in the store is served within seconds, without a restart;
SIGHUP re-reads the tenant files, and a broken one is refused (file, line, key) while the service goes on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from bridge.idpsim.server import RunningSimulator
from bridge.login.tenants import POLL_SECONDS
from bridge.state.store import Store
from bridge.state.tenants import get_tenant_record, put_tenant
from tests.flows.conftest import BridgeFactory, tenant_yaml
from tests.flows.test_cluster import _wait_ready, free_port, stop_instances
from tests.paths import REPO

ALICE = "alice@example.com"
ALICE_PASS = "alice-demo-pass"


async def eventually(check: object, within: float = POLL_SECONDS * 3 + 2) -> None:
    deadline = time.monotonic() + within
    while True:
        assert callable(check)
        result = await check()
        if result is True:
            return
        assert time.monotonic() < deadline, result
        await asyncio.sleep(0.2)


async def test_a_tenant_changed_in_the_store_is_served_within_seconds(make_bridge: BridgeFactory,
                                                                       sim: RunningSimulator) -> None:
    bridge = await make_bridge()
    assert (await bridge.user_prompt(ALICE, ALICE_PASS))[0] == 200
    base_dir = str(bridge.config.tenants_dir)

    # Another instance (or the admin API) narrows the IdP whitelist: the next logins are refused before any IdP call.
    narrowed = json.dumps(tenant_yaml(sim, idp_whitelist=["192.0.2.0/24"]))
    await put_tenant(bridge.store.database, tenant_id="example", document=narrowed, base_dir=base_dir,
                     origin="api:test", from_file=False)

    async def refused() -> bool | object:
        status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
        return True if (status, body.get("error")) == (502, "idp_not_whitelisted") else (status, body)

    await eventually(refused)  # until this instance polled the change, logins ran on the old settings
    calls = bridge.trust_calls()
    assert await refused() is True
    assert bridge.trust_calls() == calls  # no password goes to an address the tenant no longer allows

    # A new tenant appears: its domain is known at once (its user is not provisioned yet).
    acme = json.dumps(tenant_yaml(sim, id="acme", name="Acme", domains=["acme.test"]))
    await put_tenant(bridge.store.database, tenant_id="acme", document=acme, base_dir=base_dir, origin="api:test",
                     from_file=False)

    async def acme_known() -> bool | object:
        status, body = await bridge.user_prompt("kim@acme.test", "whatever-pass")
        return True if body.get("error") == "user_not_provisioned" else (status, body)

    await eventually(acme_known)

    # Back to the file's settings: served again.
    await put_tenant(bridge.store.database, tenant_id="example", document=json.dumps(tenant_yaml(sim)),
                     base_dir=base_dir, origin="api:test", from_file=False)

    async def served() -> bool | object:
        status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
        return True if status == 200 else (status, body)

    await eventually(served)


async def test_sighup_reloads_the_files_and_a_broken_one_leaves_the_service_running(
        tmp_path: Path, sim: RunningSimulator) -> None:
    conf = tmp_path / "conf"
    (conf / "tenants").mkdir(parents=True)
    state = tmp_path / "state"
    main = {"listen": {"host": "127.0.0.1", "port": 8080}, "state_dir": str(state),
            "secrets": {"hmac_key": {"file": str(state / "hmac.key"), "generate": True}}}
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
    tenant_file = conf / "tenants" / "example.yaml"
    tenant_file.write_text(yaml.safe_dump(tenant_yaml(sim)))
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOGINBRIDGE_STORE_URL", None)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 (the service runs beside this loop)
            [sys.executable, "-m", "bridge", "serve", "--config", str(conf / "bridge.yaml"), "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", proc)
        broken = tenant_yaml(sim, name="Renamed")
        broken["idp_whitelist"] = ["127.0.0.1/33"]
        tenant_file.write_text(yaml.safe_dump(broken))
        other_file = conf / "tenants" / "other.yaml"
        other = tenant_yaml(sim, id="other", domains=["other.test"])
        other["protocol"] = "kerberos"
        other_file.write_text(yaml.safe_dump(other))
        proc.send_signal(signal.SIGHUP)

        async def logged(text: str) -> bool | object:
            return True if text in log_path.read_text(errors="replace") else "not yet"

        await eventually(lambda: logged("configuration not reloaded, the running one stays"))
        await eventually(lambda: logged("other.yaml"))
        lines = [line for line in log_path.read_text().splitlines() if "configuration not reloaded" in line]
        assert "example.yaml:" in lines[0] and "idp_whitelist[0]" in lines[0], lines  # every bad file, one reload
        assert "(and 1 more below)" in lines[0] and "other.yaml:" in lines[1] and "protocol" in lines[1], lines
        assert proc.poll() is None
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            assert resp.status == 200

        tenant_file.write_text(yaml.safe_dump(tenant_yaml(sim, name="Renamed")))
        other_file.unlink()
        proc.send_signal(signal.SIGHUP)
        await eventually(lambda: logged("configuration reloaded: tenants example written"))
        async with await Store.open(state) as store:
            record = await get_tenant_record(store.database, "example")
        assert record is not None and "Renamed" in record.document
        assert proc.poll() is None
    finally:
        await stop_instances([proc])
