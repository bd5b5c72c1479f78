"""The technician toolkit's pure parts: certificate and clock judgements, whitelist lines, reports,
console cookies and passwords, the console configuration, and the troubleshooting guide's coverage."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bridge.config import load_config
from bridge.console.passwords import check_console_login, hash_console_password
from bridge.console.security import MAX_FAILURES, SESSION_SECONDS, Signer
from bridge.console.shared import ConsoleState
from bridge.errorcatalog import all_codes
from bridge.errors import ConfigError
from bridge.state.store import Store
from bridge.toolkit.certs import compare_signing_certificates
from bridge.toolkit.clock import skew_step
from bridge.toolkit.network import Target, targets_from_urls, whitelist_step
from bridge.toolkit.report import Report, Status, Step, render_json, render_text
from tests.paths import REPO

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def cert(name: str, *, days: int = 365, not_before_days: int = -1) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(_KEY.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW + timedelta(days=not_before_days)).not_valid_after(NOW + timedelta(days=days))
            .sign(_KEY, hashes.SHA256()))


CURRENT, NEXT = cert("current"), cert("next", days=700)


def compare(pinned: list[x509.Certificate], published: list[x509.Certificate], trust: bool) -> Step:
    return compare_signing_certificates(name="signing certificates", pinned=pinned, published=published,
                                        trust_published=trust, now=NOW, config_key="wstrust.signing_certificates")


def test_pinned_and_published_agree() -> None:
    assert compare([CURRENT], [CURRENT], trust=False).status is Status.PASS
    assert compare([], [CURRENT], trust=True).status is Status.PASS


def test_pending_rollover_warns_with_the_certificate_to_add() -> None:
    step = compare([CURRENT], [CURRENT, NEXT], trust=False)
    assert step.status is Status.WARN and "pending rollover" in step.summary and "CN=next" in step.summary
    assert "wstrust.signing_certificates" in step.hint
    # Trusting the metadata, a rollover needs nothing: both are accepted.
    assert compare([], [CURRENT, NEXT], trust=True).status is Status.PASS


def test_no_published_certificate_is_pinned() -> None:
    step = compare([CURRENT], [NEXT], trust=False)
    assert step.status is Status.FAIL and step.code == "assertion_invalid" and "CN=next" in step.summary


def test_expiry_warns_and_fails() -> None:
    soon, gone = cert("soon", days=10), cert("gone", days=-1, not_before_days=-400)
    assert compare([soon], [soon], trust=False).status is Status.WARN
    assert compare([gone], [gone], trust=False).status is Status.FAIL
    # An expired one beside a valid one: the rollover already happened, only a warning.
    assert compare([], [gone, CURRENT], trust=True).status is Status.WARN


def test_pinned_but_no_longer_published_warns() -> None:
    step = compare([CURRENT], [NEXT], trust=True)
    assert step.status is Status.WARN and "no longer published" in step.hint


@pytest.mark.parametrize(("offset", "status"), [(0, Status.PASS), (60, Status.PASS), (200, Status.WARN),
                                                (-200, Status.WARN), (400, Status.FAIL), (-400, Status.FAIL)])
def test_clock_skew(offset: int, status: Status) -> None:
    header = format_datetime(NOW + timedelta(seconds=offset), usegmt=True)
    step = skew_step(date_header=header, sent_at=NOW - timedelta(milliseconds=50),
                     received_at=NOW + timedelta(milliseconds=50), allowed=timedelta(seconds=300))
    assert step.status is status
    if status is Status.FAIL:
        assert "NTP" in step.hint and ("ahead" in step.summary if offset > 0 else "behind" in step.summary)


def test_clock_skew_without_a_date_header() -> None:
    for header in (None, "", "yesterday"):
        step = skew_step(date_header=header, sent_at=NOW, received_at=NOW, allowed=timedelta(seconds=300))
        assert step.status is Status.WARN


def test_whitelist_lines_to_add() -> None:
    target = Target(host="adfs.example.com", port=443)
    whitelist = [ipaddress.ip_network("192.0.2.0/24")]
    addresses = [ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("198.51.100.9"),
                 ipaddress.ip_address("2001:db8::5")]
    step, inside = whitelist_step(target, addresses, whitelist)
    assert step.status is Status.FAIL and step.code == "idp_not_whitelisted"
    assert step.hint.splitlines()[1:] == ["- 198.51.100.9/32", "- 2001:db8::5/128"]
    assert inside == [ipaddress.ip_address("192.0.2.7")]
    step, inside = whitelist_step(target, addresses[:1], whitelist)
    assert step.status is Status.PASS and len(inside) == 1


def test_targets_from_urls() -> None:
    targets = targets_from_urls(["https://adfs.example.com", "https://adfs.example.com/adfs/ls",
                                 "https://[2001:db8::1]:8443/x"])
    assert targets == (Target(host="adfs.example.com", port=443), Target(host="2001:db8::1", port=8443))


def test_report_round_trip_and_rendering() -> None:
    report = Report(tool="check", subject="example", started_at=NOW, tls_not_after=NOW + timedelta(days=90), steps=(
        Step(name="tcp 192.0.2.7:443", status=Status.PASS, summary="connected", seconds=0.012),
        Step(name="whitelist", status=Status.FAIL, summary="outside", hint="add:\n- 192.0.2.7/32",
             code="idp_not_whitelisted", panel_message="Sign-in is not set up correctly."),
    ))
    assert not report.ok and report.worst is Status.FAIL
    again = Report.from_json(json.loads(render_json(report)))
    assert again == report
    text = render_text(report)
    assert "FAIL  whitelist" in text and "-> - 192.0.2.7/32" in text and "panel shows: Sign-in" in text
    assert "[12 ms]" in text and text.endswith("result: FAILED (1 PASS, 1 FAIL)")
    assert Report.from_json({"tool": "check"}) is None and Report.from_json([]) is None


def test_console_cookie_signing_expiry_and_revocation() -> None:
    signer = Signer(b"k" * 32)
    cookie, session = signer.issue("tech", now=1000.0)
    assert signer.read(cookie, now=1001.0) == session
    assert signer.read(cookie, now=1000.0 + SESSION_SECONDS) is None
    payload, mac = cookie.split(".")
    assert signer.read(payload + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"), now=1001.0) is None
    assert Signer(b"x" * 32).read(cookie, now=1001.0) is None  # another server secret
    assert signer.csrf_ok(session.nonce, signer.csrf_token(session.nonce))
    assert not signer.csrf_ok(session.nonce, signer.csrf_token("other")) and not signer.csrf_ok(None, "x")


async def test_console_sign_outs_and_sign_in_failures_are_shared_through_the_store(tmp_path: Path) -> None:
    """Two instances (two ConsoleState objects, one store): a sign-out or a failure on one counts on both."""
    one, two = ConsoleState(b"k" * 32), ConsoleState(b"k" * 32)
    _, session = Signer(b"k" * 32).issue("tech")
    async with await Store.open(tmp_path) as store:
        assert not await two.revoked(store, session)
        await one.revoke(store, session)
        assert await two.revoked(store, session) and await one.revoked(store, session)
        _, other = Signer(b"k" * 32).issue("tech")
        assert not await two.revoked(store, other)
        for i in range(MAX_FAILURES):
            assert not await (one, two)[i % 2].blocked(store, "192.0.2.1")
            await (one, two)[i % 2].failed(store, "192.0.2.1")
        assert await one.blocked(store, "192.0.2.1") and await two.blocked(store, "192.0.2.1")
        assert not await one.blocked(store, "192.0.2.2")
        await two.succeeded(store, "192.0.2.1")
        assert not await one.blocked(store, "192.0.2.1")
        stored = await store.database.fetchall("SELECT nonce_hash FROM console_revocations")
        assert len(stored) == 1 and session.nonce.encode() not in bytes(stored[0][0])  # a keyed hash only


def _main_config(tmp_path: Path, console: object) -> Path:
    (tmp_path / "tenants").mkdir(exist_ok=True)
    main = {"state_dir": str(tmp_path / "state"),
            "secrets": {"hmac_key": {"file": str(tmp_path / "hmac.key"), "generate": True}},
            "console": console}
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(main))
    return tmp_path / "bridge.yaml"


def test_console_users_in_the_configuration(tmp_path: Path) -> None:
    hashed = hash_console_password("pw-for-tech")
    config = load_config(_main_config(tmp_path, {"users": [{"name": "tech", "password_hash": hashed}]}))
    assert config.console is not None and config.console.users[0].name == "tech"
    assert "pw-for-tech" not in repr(config.console) and hashed not in repr(config.console)
    assert check_console_login(config.console, "tech", "pw-for-tech") is not None
    assert check_console_login(config.console, "tech", "wrong") is None
    assert check_console_login(config.console, "nobody", "pw-for-tech") is None
    with pytest.raises(ConfigError, match="hash-password"):
        load_config(_main_config(tmp_path, {"users": [{"name": "tech", "password_hash": "tech-demo-pass"}]}))
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(_main_config(tmp_path, {"users": [{"name": "tech", "password_hash": hashed}] * 2}))


def test_demo_console_user_is_stored_hashed() -> None:
    text = (REPO / "conf" / "bridge.yaml").read_text()
    assert "tech-demo-pass" not in text
    config = load_config(REPO / "conf" / "bridge.yaml", require_files=False)
    assert config.console is not None
    assert check_console_login(config.console, "tech", "tech-demo-pass") is not None


def test_troubleshooting_guide_covers_every_error_code() -> None:
    guide = (REPO / "docs" / "troubleshooting.md").read_text()
    missing = [code for code in all_codes() if f"`{code}`" not in guide]
    assert not missing, f"docs/troubleshooting.md does not mention: {missing}"
    for step in ("whitelist HOST", "tls HOST", "signing certificates", "clock skew", "usernamemixed endpoints",
                 "ecp endpoint"):
        assert step in guide
    assert re.search(r"README|errors\.md", guide)
