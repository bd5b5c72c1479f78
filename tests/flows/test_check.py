"""`loginbridge check` against the simulator: all well, whitelist, stopped IdP, wrong pin, bad password."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bridge import cli
from bridge.idpsim.config import SimConfig
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.toolkit.check import Credentials, check_command, load_report
from bridge.toolkit.report import Report, Status, Step
from tests.flows.conftest import KNOWN_SECRETS, BridgeFactory, saml_tenant_yaml, tenant_yaml
from tests.paths import REPO

ALICE = Credentials(email="alice@example.com", password="alice-demo-pass")
BOB = Credentials(email="bob@example.org", password="bob-demo-pass")


def step(report: Report, prefix: str) -> Step:
    found = [s for s in report.steps if s.name.startswith(prefix)]
    assert found, f"no step {prefix!r} in {[s.name for s in report.steps]}"
    return found[0]


def statuses(report: Report) -> dict[str, str]:
    return {s.name: s.status.value for s in report.steps}


async def test_all_well_every_step_passes_and_the_login_works(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    report = await check_command(bridge.config, "example", ALICE)
    assert all(s.status is Status.PASS for s in report.steps), statuses(report)
    names = [s.name for s in report.steps]
    for expected in ("configuration", "resolve 127.0.0.1", "whitelist 127.0.0.1", "tcp 127.0.0.1:", "tls 127.0.0.1",
                     "mex", "usernamemixed endpoints", "federation metadata", "signing certificates", "clock skew",
                     "login alice@example.com"):
        assert any(n.startswith(expected) for n in names), (expected, names)
    assert "1.3" in step(report, "usernamemixed").summary and "2005" in step(report, "usernamemixed").summary
    assert "days" in step(report, "tls").summary
    assert report.tls_not_after is not None and report.tls_not_after > datetime.now(UTC)
    assert bridge.trust_calls() == 1  # the login went to the IdP once
    saved = load_report(bridge.config.state_dir, "example")
    assert saved is not None and saved.ok and [s.name for s in saved.steps] == names
    # The login is audited like a device's.
    events = await bridge.store.audit_events(tenant_id="example", last=5)
    assert events and events[-1].result == "ok" and events[-1].email == "alice@example.com"


async def test_saml_tenant_every_step_passes(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await make_bridge(tenants=[saml_tenant_yaml(sim)])
    report = await check_command(bridge.config, "example-org", BOB)
    assert all(s.status is Status.PASS for s in report.steps), statuses(report)
    assert "/idp/profile/SAML2/SOAP/ECP" in step(report, "ecp endpoint").summary
    assert step(report, "login bob@example.org").status is Status.PASS
    assert sim.state.counters["ecp"] >= 1


async def test_whitelist_missing_the_address_prints_the_line_and_sends_nothing(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(idp_whitelist=["10.0.0.0/8"])
    report = await check_command(bridge.config, "example", ALICE)
    assert not report.ok
    wl = step(report, "whitelist")
    assert wl.status is Status.FAIL and wl.code == "idp_not_whitelisted"
    assert "- 127.0.0.1/32" in wl.hint.splitlines()
    assert step(report, "mex").status is Status.SKIP  # nothing contacted
    login = step(report, "login")
    assert login.status is Status.FAIL and login.code == "idp_not_whitelisted"
    assert login.panel_message == "Sign-in is not set up correctly for your company. Contact your administrator."
    counters = bridge.sim.state.counters
    assert counters["trust13"] + counters["trust2005"] + counters["mex"] + counters["metadata"] == 0


async def test_stopped_simulator_fails_at_connect(make_bridge: BridgeFactory, sim_config: SimConfig,
                                                  tmp_path: Path) -> None:
    async with run_simulator(sim_config, tmp_path / "other-sim") as other:
        dead_url = other.base_url
    bridge = await make_bridge(wstrust={"adfs_url": dead_url})
    report = await check_command(bridge.config, "example", ALICE)
    assert not report.ok
    tcp = step(report, "tcp")
    assert tcp.status is Status.FAIL and "cannot connect" in tcp.summary and tcp.code == "idp_unreachable"
    assert not any(s.name.startswith("tls") for s in report.steps)
    assert step(report, "mex").status is Status.SKIP
    login = step(report, "login")
    assert login.code == "idp_unreachable"
    assert login.panel_message == "Your company's sign-in service could not be reached. Try again later."


def _foreign_certificate(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old token signing")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


async def test_certificate_not_matching_the_pin(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                tmp_path: Path) -> None:
    pin = _foreign_certificate(tmp_path / "pinned.pem")
    bridge = await make_bridge(wstrust={"federation_metadata": False, "signing_certificates": [str(pin)],
                                        "issuer": sim.issuer})
    report = await check_command(bridge.config, "example", ALICE)
    certs = step(report, "signing certificates")
    assert certs.status is Status.FAIL and "no published certificate matches the pinned ones" in certs.summary
    assert "signing_certificates" in certs.hint
    login = step(report, "login")
    assert login.code == "assertion_invalid"
    assert login.panel_message == "Your company's sign-in service gave an answer that could not be trusted."


async def test_pinning_the_published_certificate_passes(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                        tmp_path: Path) -> None:
    pin = tmp_path / "sim-signing.pem"
    pin.write_bytes(sim.signing_cert_pem)
    bridge = await make_bridge(wstrust={"federation_metadata": False, "signing_certificates": [str(pin)],
                                        "issuer": sim.issuer})
    report = await check_command(bridge.config, "example", None)
    assert step(report, "signing certificates").status is Status.PASS
    assert report.ok and not any(s.name.startswith("login") for s in report.steps)


async def test_bad_password_gives_the_device_code_and_panel_message(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    KNOWN_SECRETS.add("not-alices-password")
    report = await check_command(bridge.config, "example", Credentials(email=ALICE.email,
                                                                       password="not-alices-password"))
    login = step(report, "login")
    assert login.status is Status.FAIL and login.code == "invalid_credentials"
    assert login.panel_message == "Wrong email address or password."
    assert "ID3242" in login.hint  # the administrator's note for the code
    assert [s.status for s in report.steps if s is not login] == [Status.PASS] * (len(report.steps) - 1)
    assert (await bridge.store.audit_events(tenant_id="example", last=1))[0].result == "invalid_credentials"


def _run_cli(argv: list[str], stdin: str) -> tuple[int, str]:
    out = io.StringIO()
    old_in, old_out = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = io.StringIO(stdin), out
    try:
        code = cli.main(argv)
    finally:
        sys.stdin, sys.stdout = old_in, old_out
    return code, out.getvalue()


async def test_cli_exit_status_text_and_json(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    conf = str(bridge.config.source)
    code, text = await asyncio.to_thread(_run_cli, ["check", "example", "--config", conf], "")
    assert code == 0, text
    assert "result: OK" in text and "FAIL" not in text
    code, text = await asyncio.to_thread(
        _run_cli, ["check", "example", "--config", conf, "--email", ALICE.email, "--password-stdin", "--json"],
        "alice-demo-pass\n")
    assert code == 0, text
    body = json.loads(text)
    assert body["result"] == "ok" and body["steps"][-1]["name"] == "login alice@example.com"
    assert ALICE.password not in text


async def test_cli_fails_with_the_line_to_add(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await make_bridge(tenants=[tenant_yaml(sim, idp_whitelist=["192.0.2.0/24"])])
    code, text = await asyncio.to_thread(_run_cli, ["check", "example", "--config", str(bridge.config.source)], "")
    assert code == 1
    assert "FAIL  whitelist 127.0.0.1" in text and "-> - 127.0.0.1/32" in text


@pytest.mark.parametrize("argv", [["check", "example", "--email", "alice@example.com"],
                                  ["check", "example", "--password-stdin"]])
def test_cli_refuses_a_password_without_stdin(argv: list[str]) -> None:
    code, _ = _run_cli(argv, "")
    assert code == 2


def test_cli_names_every_configuration_mistake_not_only_the_first(tmp_path: Path) -> None:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    tenant = tmp_path / "conf" / "tenants" / "example-net.yaml"
    text = tenant.read_text().replace("\noidc:\n", "\noidc:\n  bogus_key: 1\n")
    tenant.write_text(text.replace("signing_algorithms: [RS256]", "signing_algorithms: [none]"))
    code, out = _run_cli(["check", "example-net", "--config", str(tmp_path / "conf" / "bridge.yaml"), "--json"], "")
    assert code == 1
    steps = json.loads(out)["steps"]
    assert all(step["name"] == "configuration" and step["status"] == "FAIL" for step in steps)
    summaries = "\n".join(step["summary"] for step in steps)
    assert "oidc.bogus_key: unknown key" in summaries and "oidc.signing_algorithms[0]: alg none" in summaries
    assert steps[-1]["hint"].startswith("fix the files, keys and lines named")
