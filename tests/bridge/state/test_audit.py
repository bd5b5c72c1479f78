"""The audit trail: JSON-lines file plus database, and `loginbridge audit tail` / `devices` commands."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.cli import main
from bridge.state.audit import MAX_FIELD_CHARS, AuditEvent, AuditKind, AuditLog, audit_text
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


async def test_audit_log_appends_lines_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": "line kept"}\n')
    async with await Store.open(tmp_path) as store:
        audit = AuditLog(path, store)
        audit.open()
        await audit.record(event(1))
        # Visible at once (flushed), before close.
        assert len(path.read_text().splitlines()) == 2
        await audit.record(event(2, result="invalid_credentials"))
        audit.close()
        rows = await store.audit_events()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"earlier": "line kept"}  # append, never truncate
    first = json.loads(lines[1])
    assert first == {"time": "2025-01-02T03:04:01.000Z", "event": "login", "tenant": "acme", "device": "mfp-1",
                     "mode": "user-prompt", "email": "u1@acme.example", "source": "192.0.2.9", "result": "ok",
                     "idp_latency_ms": 13, "request_id": "req1", "id": rows[0].id}
    assert [json.loads(line) for line in lines[1:]] == [r.to_json() for r in rows]
    assert [r.result for r in rows] == ["ok", "invalid_credentials"]


async def test_audit_file_is_private_when_created(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", None)
    audit.open()
    await audit.record(event(1))
    audit.close()
    assert stat.S_IMODE(os.stat(tmp_path / "audit.jsonl").st_mode) == 0o600


async def test_database_queries(tmp_path: Path) -> None:
    async with await Store.open(tmp_path) as store:
        for n in range(1, 6):
            await store.add_audit_event(event(n, tenant="acme" if n % 2 else "globex"))
        assert [e.email for e in await store.audit_events(tenant_id="acme")] == [
            "u1@acme.example", "u3@acme.example", "u5@acme.example"]
        assert [e.idp_latency_ms for e in await store.audit_events(last=2)] == [16, 17]
        assert [e.request_id for e in await store.audit_events(tenant_id="globex", last=1)] == ["req4"]
        third = (await store.audit_events())[2].id
        assert third is not None
        assert [e.request_id for e in await store.audit_events(after_id=third)] == ["req4", "req5"]
        assert await store.audit_events(last=0) == []


async def test_audit_tail_command(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = conf.parent.parent / "state"
    state.mkdir()
    async with await Store.open(state) as store:
        for n in range(1, 5):
            await store.add_audit_event(event(n, tenant="acme" if n < 4 else "globex"))
    assert await asyncio.to_thread(main, ["audit", "tail", "--config", str(conf), "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["request_id"] for line in out] == ["req3", "req4"]
    assert await asyncio.to_thread(main, ["audit", "tail", "--config", str(conf), "--tenant", "acme"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["tenant"] for line in out] == ["acme"] * 3
    assert await asyncio.to_thread(main, ["audit", "tail", "--config", str(conf), "--tenant", "nope"]) == 2
    assert "unknown tenant" in capsys.readouterr().err


async def test_audit_tail_follow_prints_new_events(conf: Path) -> None:
    state = conf.parent.parent / "state"
    state.mkdir()
    async with await Store.open(state) as store:
        await store.add_audit_event(event(1))
    proc = subprocess.Popen(  # noqa: ASYNC220 (the CLI under test runs beside this loop)
        [sys.executable, "-m", "bridge", "audit", "tail", "--follow", "--interval", "0.1", "--tenant", "acme",
         "--config", str(conf)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, proc.stderr.read() if proc.stderr else ""
        assert json.loads(first)["request_id"] == "req1"
        await asyncio.sleep(0.3)
        async with await Store.open(state) as store:
            await store.add_audit_event(event(2, tenant="globex"))  # filtered out
            await store.add_audit_event(event(3))
        assert json.loads(proc.stdout.readline())["request_id"] == "req3"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_devices_enable_and_networks(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(main, ["users", "add", "--config", str(conf), "--tenant", "acme", "--email", "desk@acme.example",
                 "--username", "desk"]) == 0
    assert await asyncio.to_thread(main, ["devices", "add", "--config", str(conf), "--tenant", "acme", "--name", "Lobby",
                 "--mode", "shared-account", "--shared-user", "desk@acme.example", "--device-id", "lobby-1",
                 "--allow-network", "192.0.2.0/24", "--allow-network", "2001:db8::/32"]) == 0
    out = capsys.readouterr().out
    secret = next(line.split()[-1] for line in out.splitlines() if line.startswith("secret:"))
    assert "device id: lobby-1" in out
    assert await asyncio.to_thread(main, ["devices", "add", "--config", str(conf), "--tenant", "acme", "--name", "Bad",
                 "--mode", "user-prompt", "--allow-network", "192.0.2.1/24"]) == 2
    assert "CIDR" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["devices", "disable", "--config", str(conf), "lobby-1"]) == 0
    assert "sessions are ended" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["devices", "list", "--config", str(conf), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["enabled"] is False
    assert listed[0]["allowed_networks"] == ["192.0.2.0/24", "2001:db8::/32"]
    assert listed[0]["shared_user"] == "desk@acme.example"
    assert await asyncio.to_thread(main, ["devices", "enable", "--config", str(conf), "lobby-1"]) == 0
    assert await asyncio.to_thread(main, ["devices", "enable", "--config", str(conf), "no-such-device"]) == 2
    async with await Store.open(conf.parent.parent / "state") as store:
        assert await store.authenticate_device("lobby-1", secret) is not None


# -- no audit write can fail on what a client sent ---------------------------------------------------------------

# Every code point, lone surrogates and NUL included (st.text() alone leaves surrogates out).
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=600)
FIELDS = ("result", "tenant_id", "device_id", "mode", "email", "source", "request_id")


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({name: ANY_TEXT for name in FIELDS}))
async def test_any_text_in_any_field_is_written_to_file_and_database(tmp_path: Path, values: dict[str, str]) -> None:
    path = tmp_path / "audit.jsonl"
    path.unlink(missing_ok=True)
    async with await Store.open(tmp_path) as store:
        log = AuditLog(path, store)
        log.open()
        try:
            before = await store.audit_events(last=1)
            await log.record(AuditEvent(at=datetime(2025, 1, 2, tzinfo=UTC), kind=AuditKind.LOGIN, **values))
        finally:
            log.close()
        (row,) = await store.audit_events(after_id=before[0].id if before else 0)
    (line,) = path.read_text(encoding="utf-8").splitlines()  # one event, one line
    written = json.loads(line)
    for name, key in zip(FIELDS, ("result", "tenant", "device", "mode", "email", "source", "request_id"), strict=True):
        expected = audit_text(values[name])
        assert getattr(row, name) == expected, name
        assert written[key] == expected, name
        assert not any(_unsafe(ch) for ch in expected), name
        assert len(expected) <= MAX_FIELD_CHARS


def test_unsafe_code_points_are_escaped_not_dropped() -> None:
    assert audit_text("\ud800@example.com") == "\\ud800@example.com"
    assert audit_text("a\x00b\x1b[31m\u202ec\u2028") == "a\\u0000b\\u001b[31m\\u202ec\\u2028"
    assert audit_text("\U000e0041") == "\\U000e0041"  # an astral format character (a tag)
    assert audit_text("Zoë née Ünal@exämple.com") == "Zoë née Ünal@exämple.com"  # ordinary text untouched


def test_long_values_are_cut_with_a_marker_and_escaping_is_idempotent() -> None:
    cut = audit_text("\x00" * 200)
    assert len(cut) == MAX_FIELD_CHARS and cut.endswith("\u2026")
    assert audit_text(cut) == cut
    event = AuditEvent(at=datetime(2025, 1, 2, tzinfo=UTC), kind=AuditKind.LOGIN, result="ok", email="\ud800@x.example")
    assert event.email == "\\ud800@x.example"
    assert AuditEvent(at=event.at, kind=event.kind, result=event.result, email=event.email) == event
