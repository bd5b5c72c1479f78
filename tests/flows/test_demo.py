"""``loginbridge demo --api-port N --printer-port M --sim-port K`` as a user runs it: a subprocess, then SIGTERM.

The demo's configuration (``conf/``) is copied to a temp dir as it is, so the demo's state (``../state``
from the copied ``bridge.yaml``) is the temp dir's and nothing of a running ``make demo`` is touched;
every port is a free one, never the defaults. The tenant files on disk keep naming :9443: the demo
moves them to ``--sim-port`` in memory.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import BridgeConfig, load_config
from bridge.demo import move_simulator, named_sim_port, with_demo_ports
from tests.flows.conftest import KNOWN_SECRETS
from tests.paths import REPO
from tests.servers.haproxy import free_port

UP_WITHIN = 60.0
BANNER = "loginbridge demo is up"
# Any warning class a Python warning names (DeprecationWarning, CryptographyDeprecationWarning, ...).
WARNING_TEXT = re.compile(r"\b[A-Z]\w*Warning\b")


@dataclass
class Ports:
    api: int
    printer: int
    sim: int


def _text(output: Path) -> str:
    return output.read_text(errors="replace")


def _free_ports() -> Ports:
    ports: list[int] = []
    while len(ports) < 3:
        port = free_port()
        if port not in ports and port not in (8080, 8631, 9443):
            ports.append(port)
    return Ports(*ports)


def _start(workdir: Path, ports: Ports, output: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LOGINBRIDGE_STORE_URL"}
    env["PYTHONWARNINGS"] = "default"  # stricter than a terminal: DeprecationWarnings are not hidden
    cmd = [sys.executable, "-m", "bridge", "demo", "--config", "conf/bridge.yaml", "--api-port", str(ports.api),
           "--printer-port", str(ports.printer), "--sim-port", str(ports.sim)]
    with open(output, "wb") as out:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def _wait_up(process: subprocess.Popen[bytes], output: Path) -> str:
    deadline = time.monotonic() + UP_WITHIN
    while BANNER not in _text(output):
        assert process.poll() is None, f"demo exited with {process.returncode}:\n{_text(output)}"
        assert time.monotonic() < deadline, f"demo not up within {UP_WITHIN} s:\n{_text(output)}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)  # the banner is one write; let it land
    return _text(output)


async def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, 30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise


async def _user_prompt(base: str, device: tuple[str, str], email: str, password: str) -> tuple[int, dict[str, Any]]:
    KNOWN_SECRETS.update((device[1], password))
    basic = base64.b64encode(f"{device[0]}:{device[1]}".encode()).decode()
    async with aiohttp.ClientSession() as http, http.post(
            base + "/v1/mfp/user-prompt", json={"email": email, "password": password},
            headers={"Authorization": f"Basic {basic}"}) as resp:
        body = await resp.json(content_type=None)
    if resp.status == 200:
        KNOWN_SECRETS.add(body["session"]["token"])
    return resp.status, body


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_demo_ports_move_api_printer_and_simulator(tmp_path: Path) -> None:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    tenant_files = {p: p.read_bytes() for p in (tmp_path / "conf" / "tenants").glob("*.yaml")}
    assert any(b"127.0.0.1:9443" in text for text in tenant_files.values())  # what --sim-port has to move
    ports = _free_ports()
    output = tmp_path / "demo.out"
    process = _start(tmp_path, ports, output)
    try:
        text = await _wait_up(process, output)
        api = f"http://127.0.0.1:{ports.api}"
        assert f"  device API      {api}\n" in text, text
        assert f"  console         {api}/console  (demo user tech, password tech-demo-pass)\n" in text, text
        assert f"  printer         ipp://127.0.0.1:{ports.printer}/ipp/print\n" in text, text
        assert f"  IdP simulator   https://127.0.0.1:{ports.sim}\n" in text, text
        assert f"OpenID Connect  https://127.0.0.1:{ports.sim}/oidc/.well-known/openid-configuration\n" in text
        assert f"{api}/v1/mfp/user-prompt" in text
        for default in (":8080", ":8631", ":9443"):
            assert default not in text, text
        assert _listening(ports.printer)

        # alice: WS-Trust at the moved AD FS URL; bob: SAML metadata and ECP at the moved IdP URL.
        status, body = await _user_prompt(api, ("demo-mfp", "demo-mfp-secret"), "alice@example.com",
                                          "alice-demo-pass")
        assert status == 200, body
        assert body["user"]["email"] == "alice@example.com"
        status, body = await _user_prompt(api, ("demo-mfp-org", "demo-mfp-org-secret"), "bob@example.org",
                                          "bob-demo-pass")
        assert status == 200, body
        # oscar: the OpenID Connect tenant's password grant, at the moved issuer.
        status, body = await _user_prompt(api, ("demo-mfp-net", "demo-mfp-net-secret"), "oscar@example.net",
                                          "oscar-demo-pass")
        assert status == 200, body
        async with aiohttp.ClientSession() as http, http.get(api + "/console/login") as resp:
            assert resp.status == 200
    finally:
        code = await _stop(process)
    text = _text(output)
    assert code == 0, text
    assert "loginbridge demo stopped" in text
    assert not WARNING_TEXT.search(text), text
    assert "rows refused" not in text or "(0 rows refused)" in text
    assert {p: p.read_bytes() for p in tenant_files} == tenant_files  # the files still name :9443

    # Again on the state the first run left: the demo data is found, not refused.
    ports = _free_ports()
    output = tmp_path / "demo-again.out"
    process = _start(tmp_path, ports, output)
    try:
        await _wait_up(process, output)
    finally:
        code = await _stop(process)
    text = _text(output)
    assert code == 0, text
    assert "demo users of tenant example: all 5 already present" in text, text
    assert "demo devices already present: demo-mfp" in text, text
    assert "refused" not in text, text
    assert not WARNING_TEXT.search(text), text


async def test_demo_refuses_a_port_in_use_with_the_option_to_change(tmp_path: Path) -> None:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    ports = _free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.api))
        taken.listen(1)
        output = tmp_path / "demo.out"
        process = _start(tmp_path, ports, output)
        code = await asyncio.to_thread(process.wait, 60)
    text = _text(output)
    assert code == 2, text
    assert f"127.0.0.1:{ports.api} (the device API and console) is already in use" in text
    assert "--api-port" in text
    assert "Traceback" not in text


def _demo_config(tmp_path: Path) -> BridgeConfig:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    return load_config(tmp_path / "conf" / "bridge.yaml", require_files=False)


def test_move_simulator_moves_only_loopback_idp_urls(tmp_path: Path) -> None:
    config = _demo_config(tmp_path)
    assert named_sim_port(config) == 9443
    moved = move_simulator(config, 19443)
    assert named_sim_port(moved) == 19443
    example, org = moved.tenant("example"), moved.tenant("example-org")
    assert example.wstrust is not None and example.wstrust.adfs_url == "https://127.0.0.1:19443"
    assert org.saml2 is not None and org.saml2.metadata_url == "https://127.0.0.1:19443/idp/shibboleth"
    assert org.saml2.sp_entity_id == "urn:loginbridge:example.org"  # not a URL of the simulator: unchanged
    net = moved.tenant("example-net")
    assert net.oidc is not None and net.oidc.issuer == "https://127.0.0.1:19443/oidc"
    wstrust = config.tenant("example").wstrust
    assert wstrust is not None
    at_real_adfs = dataclasses.replace(config.tenant("example"), wstrust=dataclasses.replace(
        wstrust, adfs_url="https://adfs.example.com", endpoint="https://adfs.example.com:4443/x"))
    kept = move_simulator(dataclasses.replace(config, tenants=(config.tenant("example-org"), at_real_adfs)), 19443)
    assert kept.tenant("example").wstrust == at_real_adfs.wstrust

def test_api_port_moves_the_default_public_url_with_it(tmp_path: Path) -> None:
    config = _demo_config(tmp_path)
    assert config.public_url == "http://127.0.0.1:8080"
    moved = with_demo_ports(config, api_port=18080, printer_port=18631)
    assert (moved.listen_port, moved.public_url) == (18080, "http://127.0.0.1:18080")
    assert moved.printer is not None and moved.printer.port == 18631
