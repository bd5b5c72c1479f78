"""`loginbridge device-test` against a running bridge: every demo device, and a wrong secret."""

from __future__ import annotations

import asyncio
import io
import sys

import pytest

from bridge import cli
from bridge.idpsim.server import RunningSimulator
from bridge.toolkit.devicetest import DeviceTestInput, ModeChoice, run_device_test
from bridge.toolkit.report import Report, Status
from tests.flows.conftest import KNOWN_SECRETS, BridgeFactory, saml_tenant_yaml, tenant_yaml

KNOWN_SECRETS.update({"demo-lobby-secret", "demo-badge-secret", "demo-mfp-org-secret", "not-the-device-secret"})
SUCCESS_TAIL = ["device authentication", "session", "logout", "token after logout"]


def names(report: Report) -> list[str]:
    return [s.name for s in report.steps]


def assert_all_pass(report: Report) -> None:
    assert report.ok and all(s.status in (Status.PASS, Status.SKIP) for s in report.steps), \
        [(s.name, s.status.value, s.summary) for s in report.steps]
    for name in ["health", *SUCCESS_TAIL]:
        assert name in names(report)


async def test_user_prompt_device_with_alice(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    report = await run_device_test(DeviceTestInput(url=bridge.url, device_id="demo-mfp", secret="demo-mfp-secret",
                                                   email="alice@example.com", password="alice-demo-pass"))
    assert_all_pass(report)
    assert names(report) == ["health", "device authentication", "login (user-prompt)", "session", "logout",
                             "token after logout"]
    login = report.steps[2]
    assert login.panel_message == "Signed in as Alice Example."
    assert "alice@example.com" in report.steps[3].summary and "demo-mfp" in report.steps[3].summary
    assert bridge.trust_calls() == 1


async def test_shared_account_and_device_login_devices(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    lobby = await run_device_test(DeviceTestInput(url=bridge.url, device_id="demo-lobby", secret="demo-lobby-secret"))
    assert_all_pass(lobby)
    assert "login (shared-account)" in names(lobby)
    assert "frontdesk@example.com" in lobby.steps[names(lobby).index("session")].summary
    badge = await run_device_test(DeviceTestInput(url=bridge.url, device_id="demo-badge", secret="demo-badge-secret",
                                                  email="alice@example.com"))
    assert_all_pass(badge)
    assert "login (device-login)" in names(badge)
    assert bridge.trust_calls() == 0  # neither mode asks the IdP


async def test_auto_mode_moves_on_after_wrong_mode_only(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    report = await run_device_test(DeviceTestInput(url=bridge.url, device_id="demo-badge", secret="demo-badge-secret",
                                                   email="alice@example.com", password="alice-demo-pass"))
    assert_all_pass(report)
    probe = report.steps[2]
    assert probe.name == "login (user-prompt)" and probe.status is Status.SKIP
    assert report.steps[3].name == "login (device-login)" and report.steps[3].status is Status.PASS
    assert bridge.trust_calls() == 0  # refused as wrong_mode before any password check


async def test_explicit_mode_that_does_not_match(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    report = await run_device_test(DeviceTestInput(url=bridge.url, device_id="demo-lobby", secret="demo-lobby-secret",
                                                   mode=ModeChoice.USER_PROMPT, email="alice@example.com",
                                                   password="alice-demo-pass"))
    assert not report.ok
    login = report.steps[-1]
    assert login.code == "wrong_mode" and login.panel_message == "This device is not set up for this sign-in mode."
    assert "--mode" in login.hint


async def test_saml_tenant_device_with_bob(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    bridge = await make_bridge(tenants=[tenant_yaml(sim), saml_tenant_yaml(sim)])
    report = await run_device_test(DeviceTestInput(url=bridge.url, device_id="demo-mfp-org",
                                                   secret="demo-mfp-org-secret", email="bob@example.org",
                                                   password="bob-demo-pass"))
    assert_all_pass(report)


async def test_wrong_secret_fails_at_device_authentication(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    report = await run_device_test(DeviceTestInput(url=bridge.url, device_id="demo-mfp",
                                                   secret="not-the-device-secret", email="alice@example.com",
                                                   password="alice-demo-pass"))
    assert not report.ok
    assert names(report) == ["health", "device authentication"]
    step = report.steps[1]
    assert step.code == "device_unauthorized"
    assert step.panel_message == "This device is not registered with the sign-in service. Ask your administrator."
    assert "rotate-secret" in step.hint
    assert bridge.trust_calls() == 0


async def test_bridge_not_running() -> None:
    report = await run_device_test(DeviceTestInput(url="http://127.0.0.1:9", device_id="demo-mfp",
                                                   secret="not-the-device-secret"), limit_seconds=5)
    assert not report.ok and report.steps[0].name == "bridge reachable"


def _run_cli(argv: list[str], stdin: str) -> tuple[int, str]:
    out = io.StringIO()
    old_in, old_out = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = io.StringIO(stdin), out
    try:
        return cli.main(argv), out.getvalue()
    finally:
        sys.stdin, sys.stdout = old_in, old_out


@pytest.mark.parametrize(("stdin", "status", "expected"), [
    ("demo-mfp-secret\nalice-demo-pass\n", 0, "PASS  login (user-prompt)"),
    ("not-the-device-secret\nalice-demo-pass\n", 1, "panel shows: This device is not registered"),
])
async def test_cli_reads_secret_then_password(make_bridge: BridgeFactory, stdin: str, status: int,
                                              expected: str) -> None:
    bridge = await make_bridge()
    code, text = await asyncio.to_thread(_run_cli, [
        "device-test", "--url", bridge.url, "--device-id", "demo-mfp", "--secret-stdin",
        "--email", "alice@example.com", "--password-stdin"], stdin)
    assert code == status, text
    assert expected in text
    assert "alice-demo-pass" not in text and "demo-mfp-secret" not in text
