"""The audit trail: JSON-lines file plus database, and `loginbridge audit tail` / `devices` commands."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.state.audit import AuditEvent, AuditKind, AuditLog
from bridge.cli import main
from bridge.state.store import Store
from tests.paths import REPO


MAIN = """\
state_dir: ../state
secrets:
  hmac_key: {file: ../state/hmac.key, generate: true}
"""
TENANT = """\
id: {id}
name: {id}
domains: [{id}.example]
protocol: wstrust
idp_whitelist: [192.0.2.0/24]
wstrust:
  adfs_url: https://adfs.{id}.example
  applies_to: urn:{id}
  federation_metadata: true
"""


def event(n: int, *, tenant: str = "acme", result: str = "ok") -> AuditEvent:
    return AuditEvent(at=datetime(2025, 1, 2, 3, 4, n, tzinfo=UTC), kind=AuditKind.LOGIN, result=result,
                      tenant_id=tenant, device_id="mfp-1", mode="user-prompt", email=f"u{n}@{tenant}.example",
                      source="192.0.2.9", idp_latency_ms=12 + n, request_id=f"req{n}")


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    root = tmp_path / "conf"
    (root / "tenants").mkdir(parents=True)
    (root / "bridge.yaml").write_text(MAIN)
    for tenant in ("acme", "globex"):
        (root / "tenants" / f"{tenant}.yaml").write_text(TENANT.format(id=tenant))
    return root / "bridge.yaml"


def test_audit_log_appends_lines_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": "line kept"}\n')
    with Store.open(tmp_path) as store:
        audit = AuditLog(path, store)
        audit.open()
        audit.record(event(1))
        # Visible at once (flushed), before close.
        assert len(path.read_text().splitlines()) == 2
        audit.record(event(2, result="invalid_credentials"))
        audit.close()
        rows = store.audit_events()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"earlier": "line kept"}  # append, never truncate
    first = json.loads(lines[1])
    assert first == {"time": "2025-01-02T03:04:01.000Z", "event": "login", "tenant": "acme", "device": "mfp-1",
                     "mode": "user-prompt", "email": "u1@acme.example", "source": "192.0.2.9", "result": "ok",
                     "idp_latency_ms": 13, "request_id": "req1", "id": rows[0].id}
    assert [json.loads(line) for line in lines[1:]] == [r.to_json() for r in rows]
    assert [r.result for r in rows] == ["ok", "invalid_credentials"]


def test_audit_file_is_private_when_created(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", None)
    audit.open()
    audit.record(event(1))
    audit.close()
    assert stat.S_IMODE(os.stat(tmp_path / "audit.jsonl").st_mode) == 0o600


def test_database_queries(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        for n in range(1, 6):
            store.add_audit_event(event(n, tenant="acme" if n % 2 else "globex"))
        assert [e.email for e in store.audit_events(tenant_id="acme")] == [
            "u1@acme.example", "u3@acme.example", "u5@acme.example"]
        assert [e.idp_latency_ms for e in store.audit_events(last=2)] == [16, 17]
        assert [e.request_id for e in store.audit_events(tenant_id="globex", last=1)] == ["req4"]
        third = store.audit_events()[2].id
        assert third is not None
        assert [e.request_id for e in store.audit_events(after_id=third)] == ["req4", "req5"]
        assert store.audit_events(last=0) == []


def test_audit_tail_command(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = conf.parent.parent / "state"
    state.mkdir()
    with Store.open(state) as store:
        for n in range(1, 5):
            store.add_audit_event(event(n, tenant="acme" if n < 4 else "globex"))
    assert main(["audit", "tail", "--config", str(conf), "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["request_id"] for line in out] == ["req3", "req4"]
    assert main(["audit", "tail", "--config", str(conf), "--tenant", "acme"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["tenant"] for line in out] == ["acme"] * 3
    assert main(["audit", "tail", "--config", str(conf), "--tenant", "nope"]) == 2
    assert "unknown tenant" in capsys.readouterr().err


def test_audit_tail_follow_prints_new_events(conf: Path) -> None:
    state = conf.parent.parent / "state"
    state.mkdir()
    with Store.open(state) as store:
        store.add_audit_event(event(1))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "audit", "tail", "--follow", "--interval", "0.1", "--tenant", "acme",
         "--config", str(conf)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, proc.stderr.read() if proc.stderr else ""
        assert json.loads(first)["request_id"] == "req1"
        time.sleep(0.3)
        with Store.open(state) as store:
            store.add_audit_event(event(2, tenant="globex"))  # filtered out
            store.add_audit_event(event(3))
        assert json.loads(proc.stdout.readline())["request_id"] == "req3"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_devices_enable_and_networks(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "add", "--config", str(conf), "--tenant", "acme", "--email", "desk@acme.example",
                 "--username", "desk"]) == 0
    assert main(["devices", "add", "--config", str(conf), "--tenant", "acme", "--name", "Lobby",
                 "--mode", "shared-account", "--shared-user", "desk@acme.example", "--device-id", "lobby-1",
                 "--allow-network", "192.0.2.0/24", "--allow-network", "2001:db8::/32"]) == 0
    out = capsys.readouterr().out
    secret = next(line.split()[-1] for line in out.splitlines() if line.startswith("secret:"))
    assert "device id: lobby-1" in out
    assert main(["devices", "add", "--config", str(conf), "--tenant", "acme", "--name", "Bad",
                 "--mode", "user-prompt", "--allow-network", "192.0.2.1/24"]) == 2
    assert "CIDR" in capsys.readouterr().err
    assert main(["devices", "disable", "--config", str(conf), "lobby-1"]) == 0
    assert "sessions are ended" in capsys.readouterr().out
    assert main(["devices", "list", "--config", str(conf), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["enabled"] is False
    assert listed[0]["allowed_networks"] == ["192.0.2.0/24", "2001:db8::/32"]
    assert listed[0]["shared_user"] == "desk@acme.example"
    assert main(["devices", "enable", "--config", str(conf), "lobby-1"]) == 0
    assert main(["devices", "enable", "--config", str(conf), "no-such-device"]) == 2
    with Store.open(conf.parent.parent / "state") as store:
        assert store.authenticate_device("lobby-1", secret) is not None
