"""``loginbridge cluster-demo`` as a user runs it: a subprocess, the README's checks through HAProxy, then SIGTERM.

The demo's own configuration (``conf/``, copied to a temp dir with the simulator moved to a free port)
and free ports for everything, so a running ``make demo`` or another test run does not collide with it.
After SIGTERM nothing it started may be left: no instance, no HAProxy, no postmaster, no temp dir.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.flows.conftest import KNOWN_SECRETS
from tests.paths import REPO
from tests.servers.haproxy import free_port

MFP = ("demo-mfp", "demo-mfp-secret")
ALICE = ("alice@example.com", "alice-demo-pass")
UP_WITHIN = 120.0


@dataclass
class RunningDemo:
    process: subprocess.Popen[bytes]
    output: Path
    url: str
    instance_urls: list[str]
    sim_url: str
    ca_file: Path
    workdir: Path
    pids: list[int] = field(default_factory=list)  # HAProxy, the instances, the postmaster (as printed)
    temp_dirs: list[Path] = field(default_factory=list)

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that is not us counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_naming(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (the demo's paths)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _alive(int(entry.name)):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def _copy_demo_conf(target: Path, sim_port: int) -> None:
    """conf/ as `make cluster-demo` uses it, its tenants pointed at the simulator's free port."""
    shutil.copytree(REPO / "conf", target / "conf")
    for tenant in (target / "conf" / "tenants").glob("*.yaml"):
        tenant.write_text(tenant.read_text().replace("127.0.0.1:9443", f"127.0.0.1:{sim_port}"))


def _launch(cmd: list[str], *, cwd: Path, env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """In its own session, as from a terminal of its own; its output to a file (the test reads it)."""
    with open(output, "wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
async def cluster_demo(tmp_path: Path) -> AsyncIterator[RunningDemo]:
    front, sim_port, *rest = _free_ports(8)
    api_ports, printer_ports = rest[:3], rest[3:]
    _copy_demo_conf(tmp_path, sim_port)
    env = {k: v for k, v in os.environ.items() if k != "LOGINBRIDGE_STORE_URL"}
    output = tmp_path / "cluster-demo.out"
    cmd = [sys.executable, "-m", "bridge", "cluster-demo", "--port", str(front), "--sim-port", str(sim_port),
           "--instance-ports", ",".join(map(str, api_ports)), "--printer-ports", ",".join(map(str, printer_ports))]
    process = _launch(cmd, cwd=tmp_path, env=env, output=output)
    demo = RunningDemo(process=process, output=output, url=f"http://127.0.0.1:{front}",
                       instance_urls=[f"http://127.0.0.1:{port}" for port in api_ports],
                       sim_url=f"https://127.0.0.1:{sim_port}", ca_file=tmp_path / "state" / "idp-sim" / "ca.pem",
                       workdir=tmp_path)
    try:
        deadline = time.monotonic() + UP_WITHIN
        while "cluster demo is up" not in demo.text():
            assert process.poll() is None, f"cluster-demo exited with {process.returncode}:\n{demo.text()}"
            assert time.monotonic() < deadline, f"cluster-demo not up within {UP_WITHIN} s:\n{demo.text()}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.2)  # the rest of the block is printed in one write; let it land
        text = demo.text()
        demo.pids = [int(pid) for pid in re.findall(r"\bpid (\d+)", text)]
        dirs = re.search(r"^  temp dirs\s+(.*?)\s+\(removed", text, re.MULTILINE)
        assert dirs is not None, text
        demo.temp_dirs = [Path(p) for p in dirs.group(1).split()]
        yield demo
    finally:
        if process.poll() is None:  # the test failed before its SIGTERM: do not leave the cluster behind
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


async def _prompt(http: aiohttp.ClientSession, base: str, password: str) -> tuple[int, dict[str, Any], str]:
    KNOWN_SECRETS.add(password)
    basic = base64.b64encode(f"{MFP[0]}:{MFP[1]}".encode()).decode()
    async with http.post(base + "/v1/mfp/user-prompt", json={"email": ALICE[0], "password": password},
                         headers={"Authorization": f"Basic {basic}"}) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers.get("X-Served-By", "")


async def _idp_calls(demo: RunningDemo) -> int:
    context = ssl.create_default_context(cafile=str(demo.ca_file))
    async with aiohttp.ClientSession() as http, http.get(demo.sim_url + "/_sim/stats", ssl=context) as resp:
        assert resp.status == 200
        counters = (await resp.json())["counters"]
    return int(counters.get("trust13", 0)) + int(counters.get("trust2005", 0))


async def test_cluster_demo_locks_alice_out_across_instances_and_stops_clean(cluster_demo: RunningDemo) -> None:
    demo = cluster_demo
    assert len(demo.pids) == 5, demo.text()  # HAProxy, three instances, the postmaster
    assert all(_alive(pid) for pid in demo.pids)
    assert all(path.is_dir() for path in demo.temp_dirs) and len(demo.temp_dirs) == 3
    KNOWN_SECRETS.add(MFP[1])
    async with aiohttp.ClientSession() as http:
        status, body, _ = await _prompt(http, demo.url, ALICE[1])
        assert status == 200, body
        KNOWN_SECRETS.add(body["session"]["token"])
        before = await _idp_calls(demo)
        answers = [await _prompt(http, demo.url, f"wrong-{n}") for n in range(1, 7)]
        statuses = [status for status, _, _ in answers]
        assert statuses == [401] * 5 + [429], answers
        assert answers[-1][1]["error"] == "temporarily_locked"
        assert await _idp_calls(demo) - before <= 5
        assert len({served_by for _, _, served_by in answers[:5]}) == 3, answers  # round robin over the three
        for base in demo.instance_urls:  # each instance, asked directly, refuses her too
            status, body, _ = await _prompt(http, base, ALICE[1])
            assert (status, body["error"]) == (429, "temporarily_locked")
        assert await _idp_calls(demo) - before <= 5

    demo.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(demo.process.wait, 60) == 0, demo.text()
    for _ in range(100):  # the postmaster is not the launcher's child: it may take a moment after pg_ctl
        if not any(_alive(pid) for pid in demo.pids):
            break
        await asyncio.sleep(0.1)
    assert not [pid for pid in demo.pids if _alive(pid)], demo.text()
    assert not [path for path in demo.temp_dirs if path.exists()]
    assert not _processes_naming(str(demo.workdir))  # no instance on the copied configuration
    for path in demo.temp_dirs:
        assert not _processes_naming(str(path))
    assert "cluster demo stopped" in demo.text()
