"""The loginbridge command, run in-process (and once as a real process) against a real config and database."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.state.store import SCHEMA_VERSION, Store
from tests.keys import make_key_and_cert
from tests.paths import REPO

MAIN = """\
listen: {host: 127.0.0.1, port: 8080}
state_dir: ../state
secrets:
  hmac_key: {file: ../state/hmac.key, generate: true}
"""

TENANT = """\
id: example
name: Example Corp
domains: [example.com]
protocol: wstrust
idp_whitelist: [127.0.0.1/32]
wstrust:
  adfs_url: https://127.0.0.1:9443
  applies_to: urn:loginbridge:example.com
  signing_certificates: [../certs/adfs-signing.pem]
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    root = tmp_path / "conf"
    (root / "tenants").mkdir(parents=True)
    (root / "certs").mkdir()
    (root / "certs" / "adfs-signing.pem").write_bytes(make_key_and_cert("cli-adfs")[1])
    (root / "bridge.yaml").write_text(MAIN)
    (root / "tenants" / "example.yaml").write_text(TENANT)
    return root / "bridge.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def arun(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The command from an async test: in a thread, as from a shell (it runs its own event loop)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_config_check_ok(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "config", "check", "--config", str(conf))
    assert code == 0, err
    assert "example: Example Corp [wstrust]" in out and "CN=cli-adfs" in out and "configuration OK" in out
    secret = (conf.parent.parent / "state" / "hmac.key").read_text().strip()
    assert secret not in out


def test_config_check_error_is_one_line_with_file_and_line(
        conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = conf.parent / "tenants" / "example.yaml"
    tenant.write_text(TENANT.replace("applies_to:", "applies_too:"))
    monkeypatch.setenv("LOGINBRIDGE_CONFIG", str(conf))  # the default when --config is absent
    code, out, err = run(capsys, "config", "check")
    assert code == 2 and out == ""
    # The misspelt key is the one mistake: the required applies_to it stands for is not reported again.
    assert err == (f"{tenant}:8: wstrust.applies_too: unknown key (did you mean applies_to?)\n"
                   "1 error in the configuration\n")


def test_config_check_requires_certificate_files_but_user_commands_do_not(
        conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (conf.parent / "certs" / "adfs-signing.pem").unlink()
    code, _, err = run(capsys, "config", "check", "--config", str(conf))
    assert code == 2 and "certificate file not found" in err
    code, out, err = run(capsys, "--config", str(conf), "users", "list", "--tenant", "example")
    assert code == 0, err
    assert "0 users in tenant example" in out


def test_users_add_list_disable(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ("--config", str(conf))
    code, out, err = run(capsys, "users", "add", *c, "--tenant", "example", "--email", "Alice@example.com",
                         "--username", "alice", "--group", "Sales", "--no-password")
    assert code == 0, err
    assert "added Alice@example.com to tenant example (no platform password)" in out
    code, out, _ = run(capsys, "users", "list", *c, "--tenant", "example", "--json")
    (user,) = json.loads(out)
    assert user["email"] == "Alice@example.com" and user["group"] == "Sales" and user["enabled"] is True
    assert user["has_password"] is False and "password_hash" not in user
    code, out, _ = run(capsys, "users", "disable", *c, "--tenant", "example", "--email", "alice@EXAMPLE.com")
    assert code == 0 and "disabled alice@EXAMPLE.com" in out
    code, out, _ = run(capsys, "users", "list", *c, "--tenant", "example")
    assert "alice@example.com".lower() in out.lower() and "disabled" in out


async def test_users_add_password_from_stdin(conf: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("p@ss<word>\n"))
    code, out, err = await arun(capsys, "users", "add", "--config", str(conf), "--tenant", "example", "--email",
                         "bob@example.com", "--username", "bob", "--password-stdin")
    assert code == 0, err
    assert "p@ss" not in out + err
    async with await Store.open(conf.parent.parent / "state") as store:
        assert await store.check_user_password("example", "bob@example.com", "p@ss<word>")


def test_users_errors_are_one_line(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ("--config", str(conf))
    code, _, err = run(capsys, "users", "add", *c, "--tenant", "example", "--email", "carol@example.com",
                       "--username", "carol", "--2fa")
    assert code == 2
    assert err == ("error: accounts of an SSO tenant cannot use two-factor authentication on the platform: "
                   "2FA is the identity provider's job\n")
    code, _, err = run(capsys, "users", "list", *c, "--tenant", "nope")
    assert code == 2 and err == "error: unknown tenant 'nope' (known tenants: example)\n"
    code, _, err = run(capsys, "users", "frobnicate", *c)
    assert code == 2 and err.count("\n") == 1 and "invalid choice" in err


def test_users_import(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "users.csv"
    csv_file.write_text("username,email,group\nok,ok@example.com,A\nbad,bad-address,A\n")
    c = ("--config", str(conf))
    code, out, _ = run(capsys, "users", "import", str(csv_file), *c, "--tenant", "example")
    assert code == 1
    assert "line 3: not a valid email address: 'bad-address'" in out and "nothing was imported" in out
    code, out, _ = run(capsys, "users", "import", str(csv_file), *c, "--tenant", "example", "--skip-invalid")
    assert code == 0 and "imported 1 users into tenant example; 1 rows refused" in out
    code, _, err = run(capsys, "users", "import", str(tmp_path / "absent.csv"), *c, "--tenant", "example")
    assert code == 2 and "cannot read" in err


async def test_devices_add_rotate_disable(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ("--config", str(conf))
    code, out, err = await arun(capsys, "devices", "add", *c, "--tenant", "example", "--name", "MFP 3F",
                         "--mode", "user-prompt", "--allow-network", "10.0.0.0/24",
                         "--allow-network", "10.0.1.0/24")
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines() if line.startswith(("device id", "secret")))
    device_id, secret = fields["device id"].strip(), fields["secret"].strip()
    assert "shown only this once" in out
    state = conf.parent.parent / "state"
    async with await Store.open(state) as store:
        device = await store.authenticate_device(device_id, secret)
        assert device is not None
        assert [str(n) for n in device.allowed_networks] == ["10.0.0.0/24", "10.0.1.0/24"]

    code, out, _ = await arun(capsys, "devices", "list", *c, "--json")
    assert [d["device_id"] for d in json.loads(out)] == [device_id]
    assert secret not in out

    code, out, _ = await arun(capsys, "devices", "rotate-secret", device_id, *c)
    new_secret = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("secret"))
    async with await Store.open(state) as store:
        assert await store.authenticate_device(device_id, secret) is None
        assert await store.authenticate_device(device_id, new_secret) is not None

    code, out, _ = await arun(capsys, "devices", "disable", device_id, *c)
    assert code == 0
    async with await Store.open(state) as store:
        assert await store.authenticate_device(device_id, new_secret) is None
    code, _, err = await arun(capsys, "devices", "disable", "dev-nothere", *c)
    assert code == 2 and err == "error: no device dev-nothere\n"


def test_python_dash_m_bridge_is_the_cli(conf: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "bridge", "config", "check", "--config", str(conf)],
                        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout
    (conf.parent / "tenants" / "example.yaml").write_text(TENANT.replace("https://127", "http://127"))
    bad = subprocess.run([sys.executable, "-m", "bridge", "config", "check", "--config", str(conf)],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 2  # the error, then the count
    assert "example.yaml:7: wstrust.adfs_url: must be an https:// URL" in bad.stderr
    assert bad.stderr.endswith("\n1 error in the configuration\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_takes_its_ports_from_the_command_line(conf: Path, tmp_path: Path) -> None:
    """Several instances share one configuration, each on its own ports (serve --port/--printer-port)."""
    conf.write_text(MAIN + f"printer:\n  enabled: true\n  host: 127.0.0.1\n  port: 8631\n"
                           f"  spool_dir: {tmp_path / 'spool'}\n  delivery: {{outbox_dir: {tmp_path / 'outbox'}}}\n")
    api, printer = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(conf), "--port", str(api),
                             "--printer-port", str(printer)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=2) as resp:
                    assert resp.status == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{printer}/", timeout=5) as resp:  # the printer's page
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    bad = subprocess.run([sys.executable, "-m", "bridge", "serve", "--config", str(conf), "--port", "70000"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "not a TCP port: '70000'" in bad.stderr


def test_db_upgrade_migrates_and_prints_the_version(conf: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGINBRIDGE_STORE_URL", raising=False)
    code, out, err = run(capsys, "db", "upgrade", "--config", str(conf))
    assert code == 0, err
    db = (conf.parent.parent / "state" / "loginbridge.db").resolve()
    assert out == f"sqlite://{db}: schema version {SCHEMA_VERSION}\n"
    other = conf.parent.parent / "elsewhere.db"
    monkeypatch.setenv("LOGINBRIDGE_STORE_URL", f"sqlite://{other.resolve()}")  # the environment names the store
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(conf))
    assert code == 0 and other.exists() and out.startswith(f"sqlite://{other.resolve()}:")


def test_tenants_apply_list_delete_and_config_reload(conf: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGINBRIDGE_STORE_URL", raising=False)
    code, out, err = run(capsys, "tenants", "apply", "--config", str(conf))
    assert (code, out) == (0, "tenants written: example; unchanged: 0\n"), err
    code, out, _ = run(capsys, "config", "reload", "--config", str(conf))  # nothing changed since
    assert (code, out) == (0, "tenants written: none; unchanged: 1\n")
    code, out, _ = run(capsys, "tenants", "list", "--config", str(conf))
    assert code == 0 and out.startswith("example\tfile:") and "example.yaml\t" in out and "1 tenant(s)" in out
    tenant_file = conf.parent / "tenants" / "example.yaml"
    tenant_file.write_text(TENANT.replace("idp_whitelist: [127.0.0.1/32]", "idp_whitelist: [127.0.0.1/40]"))
    code, out, err = run(capsys, "config", "reload", "--config", str(conf))
    assert code != 0 and out == "" and "example.yaml:5: idp_whitelist[0]:" in err, err  # file, line, key
    tenant_file.write_text(TENANT.replace("Example Corp", "Example Corporation"))
    code, out, _ = run(capsys, "config", "reload", "--config", str(conf))
    assert (code, out) == (0, "tenants written: example; unchanged: 0\n")
    code, out, _ = run(capsys, "tenants", "delete", "example", "--config", str(conf))
    assert (code, out) == (0, "tenant example deleted from the store\n")
    code, _, err = run(capsys, "tenants", "delete", "example", "--config", str(conf))
    assert code != 0 and "no tenant 'example'" in err
