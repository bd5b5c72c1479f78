"""The IdP client under faults, end to end: a hanging IdP, broken TLS set-ups, and honest latency figures.

- MEX / FederationMetadata / SAML metadata fetches are single-flight: N logins
  during a hanging IdP share one fetch and all answer within about one timeout;
  the failure is remembered for a few seconds, so the next login answers at once.
- A ``ca_file`` that holds no certificate is a configuration error naming file,
  key and line (``loginbridge config check``, and start-up); at login every TLS
  or connection failure is ``idp_unreachable``, never a 500.
- The audit row and the latency histogram carry an IdP latency only when the
  IdP was contacted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.idp.lookup import FAILURE_MEMORY_SECONDS
from bridge.idpsim.server import RunningSimulator
from bridge.state.audit import AuditEvent
from tests.flows.conftest import Bridge, BridgeFactory, saml_tenant_yaml, tenant_yaml
from tests.keys import make_key_and_cert

ALICE = "alice@example.com"
ALICE_PASS = "alice-demo-pass"
BOB = "bob@example.org"
BOB_PASS = "bob-demo-pass"
ORG_DEVICE = ("demo-mfp-org", "demo-mfp-org-secret")
TIMEOUT = 1.0
N = 5


async def last_login(bridge: Bridge, tenant_id: str = "example") -> AuditEvent:
    events = [e for e in await bridge.store.audit_events(tenant_id=tenant_id) if e.kind.value == "login"]
    assert events, "no login was audited"
    return events[-1]


async def latency_count(bridge: Bridge, tenant_id: str = "example") -> float:
    async with bridge.http.get(bridge.url + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(f'loginbridge_idp_latency_seconds_count{{tenant="{tenant_id}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- a hanging IdP: one shared fetch, one timeout -------------------------------------------------


async def timed_logins(bridge: Bridge, count: int, **kwargs: Any) -> tuple[list[tuple[int, dict[str, Any]]], float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(bridge.user_prompt(**kwargs) for _ in range(count)))
    return list(results), time.perf_counter() - started


async def test_hanging_mex_costs_every_waiting_login_one_timeout(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(timeout_seconds=TIMEOUT, wstrust={"version": "auto"})
    bridge.sim.state.delay_seconds = 30  # hangs far beyond the timeout
    results, elapsed = await timed_logins(bridge, N, email=ALICE, password=ALICE_PASS)
    assert [(status, body["error"]) for status, body in results] == [(504, "idp_timeout")] * N
    assert elapsed < 1.5 * TIMEOUT, f"{N} logins took {elapsed:.2f} s with a {TIMEOUT} s timeout"
    assert bridge.sim.state.counters["mex"] == 1  # one fetch, shared
    # Each of them waited on that request to the IdP: each audit row carries about one timeout.
    waited = [e.idp_latency_ms for e in await bridge.store.audit_events(tenant_id="example") if e.kind.value == "login"]
    assert len(waited) == N and all(ms is not None and 0.8 * TIMEOUT * 1000 <= ms for ms in waited), waited
    # Just after: the failure is remembered, the IdP is not asked again and the answer is immediate.
    started = time.perf_counter()
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (504, "idp_timeout")
    assert time.perf_counter() - started < 0.5 * TIMEOUT
    assert bridge.sim.state.counters["mex"] == 1
    assert (await last_login(bridge)).idp_latency_ms is None  # nothing was sent to the IdP for this one


async def test_idp_recovers_after_the_failure_memory(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(timeout_seconds=TIMEOUT, wstrust={"version": "auto"})
    bridge.sim.state.delay_seconds = 30
    status, _ = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert status == 504
    bridge.sim.state.delay_seconds = 0
    await asyncio.sleep(FAILURE_MEMORY_SECONDS + 0.2)
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert status == 200, body
    assert bridge.sim.state.counters["mex"] == 2


async def test_hanging_saml_metadata_url_is_shared_too(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await make_bridge(timeout_seconds=TIMEOUT, tenants=[tenant_yaml(sim), saml_tenant_yaml(sim)])
    sim.state.delay_seconds = 30  # the metadata URL is a protocol endpoint of the simulator too
    results, elapsed = await timed_logins(bridge, N, email=BOB, password=BOB_PASS, device=ORG_DEVICE)
    assert [(status, body["error"]) for status, body in results] == [(504, "idp_timeout")] * N
    assert elapsed < 1.5 * TIMEOUT, f"{N} logins took {elapsed:.2f} s with a {TIMEOUT} s timeout"


# --- TLS set-up errors ---------------------------------------------------------------------------------


def write_conf(tmp_path: Path, sim: RunningSimulator, ca_file: Path) -> Path:
    conf = tmp_path / "conf"
    (conf / "tenants").mkdir(parents=True)
    main_yaml = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "state_dir": str(tmp_path / "state"),
        "secrets": {"hmac_key": {"file": str(tmp_path / "state" / "hmac.key"), "generate": True}},
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main_yaml))
    tenant = tenant_yaml(sim)
    tenant["wstrust"]["ca_file"] = str(ca_file)
    (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant, sort_keys=False))
    return conf / "bridge.yaml"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "holds no PEM certificate"),
        (b"not a certificate at all\n", "holds no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA!!!\n-----END CERTIFICATE-----\n", "not readable as PEM"),
        (make_key_and_cert("only-a-key")[0], "holds no PEM certificate"),
    ],
    ids=["empty", "text", "broken-pem", "private-key"],
)
def test_unusable_ca_file_is_a_config_error_with_file_key_and_line(
    tmp_path: Path, sim: RunningSimulator, capsys: pytest.CaptureFixture[str], content: bytes, words: str
) -> None:
    ca_file = tmp_path / "idp-ca.pem"
    ca_file.write_bytes(content)
    config = write_conf(tmp_path, sim, ca_file)
    tenant_file = config.parent / "tenants" / "example.yaml"
    line = next(n for n, text in enumerate(tenant_file.read_text().splitlines(), 1) if "ca_file:" in text)
    # What start-up does.
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert (info.value.file, info.value.key, info.value.line) == (str(tenant_file), "wstrust.ca_file", line)
    assert words in str(info.value)
    # What a technician runs.
    code = main(["config", "check", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"{tenant_file}:{line}: wstrust.ca_file: ") and words in err


def test_unreadable_ca_file_is_a_config_error(tmp_path: Path, sim: RunningSimulator) -> None:
    # /proc/self/mem is a regular file that cannot be read from offset 0, even by root.
    config = write_conf(tmp_path, sim, Path("/proc/self/mem"))
    with pytest.raises(ConfigError, match="cannot read /proc/self/mem"):
        load_config(config)


@pytest.fixture
def ca_copy(sim: RunningSimulator, tmp_path: Path) -> Path:
    """A copy of the simulator's CA file, good when the configuration is loaded; the test breaks it after."""
    copy = tmp_path / "ca-copy.pem"
    copy.write_bytes(sim.ca_file.read_bytes())
    return copy


def overwrite(path: Path, content: bytes) -> None:
    path.write_bytes(content)


async def test_ca_file_broken_after_start_is_idp_unreachable(make_bridge: BridgeFactory, ca_copy: Path) -> None:
    second = await make_bridge(wstrust={"ca_file": str(ca_copy)})  # valid when the config is loaded
    overwrite(ca_copy, b"overwritten by a broken deployment\n")
    status, body = await second.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "idp_unreachable"), body
    assert (await last_login(second)).idp_latency_ms is None


async def test_check_reports_a_ca_file_broken_after_start(make_bridge: BridgeFactory, ca_copy: Path) -> None:
    from bridge.toolkit.check import check_command
    from bridge.toolkit.report import Status

    second = await make_bridge(wstrust={"ca_file": str(ca_copy)})
    overwrite(ca_copy, b"")
    report = await check_command(second.config, "example", None)
    assert not report.ok
    failed = [step for step in report.steps if step.status is Status.FAIL]
    assert failed and all(step.code == "idp_unreachable" for step in failed), failed
    assert any(str(ca_copy) in step.summary for step in failed)


async def test_wrong_trust_anchor_is_idp_unreachable(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_key_and_cert("some-other-ca")[1])
    bridge = await make_bridge(wstrust={"ca_file": str(other_ca)})
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "idp_unreachable"), body
    assert (await last_login(bridge)).idp_latency_ms is not None  # the handshake did reach the IdP


async def test_dropped_connection_is_idp_unreachable(make_bridge: BridgeFactory) -> None:
    from bridge.idpsim.state import FailMode

    bridge = await make_bridge(wstrust={"version": "1.3"})
    assert (await bridge.user_prompt(ALICE, ALICE_PASS))[0] == 200
    bridge.sim.state.fail_mode = FailMode.DROP_CONNECTION
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "idp_unreachable"), body


# --- latency only when the IdP was contacted --------------------------------------------------------


async def test_latency_is_recorded_for_a_contacted_idp_only(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, _ = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert status == 200
    assert (await last_login(bridge)).idp_latency_ms is not None
    assert await latency_count(bridge) == 1
    # The IdP refuses a password: contacted, so a latency.
    status, _ = await bridge.user_prompt(ALICE, "wrong-pass-1")
    assert status == 401
    assert (await last_login(bridge)).idp_latency_ms is not None
    # The same wrong password again: the stale-password guard answers, the IdP is not asked.
    calls = bridge.trust_calls()
    status, _ = await bridge.user_prompt(ALICE, "wrong-pass-1")
    assert status == 401 and bridge.trust_calls() == calls
    assert (await last_login(bridge)).idp_latency_ms is None
    assert await latency_count(bridge) == 2


async def test_whitelist_refusal_has_no_idp_latency(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(idp_whitelist=["192.0.2.0/24"])
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "idp_not_whitelisted"), body
    event = await last_login(bridge)
    assert (event.result, event.idp_latency_ms) == ("idp_not_whitelisted", None)
    assert await latency_count(bridge) == 0
    assert sum(bridge.sim.state.counters.values()) == 0  # not a byte reached it
