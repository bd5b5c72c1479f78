"""Real IPP clients print through the bridge: pyipp's client, and a real CUPS with a driverless queue."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from pyipp import IPP
from pyipp.enums import IppOperation

from tests.flows.print_support import ALICE, PrintBridge, PrintBridgeFactory, make_print_bridge, minimal_pdf

__all__ = ["make_print_bridge"]

CUPSD = shutil.which("cupsd") or ("/usr/sbin/cupsd" if Path("/usr/sbin/cupsd").exists() else None)


async def test_pyipp_print_job_delivers_the_same_bytes(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    pdf = minimal_pdf(3, text="pyipp")
    async with IPP(host="127.0.0.1", port=bridge.port, base_path="/ipp/print", username=ALICE[0],
                   password=ALICE[1]) as ipp:
        response = await ipp.execute(IppOperation.PRINT_JOB, {
            "operation-attributes-tag": {
                "requesting-user-name": "pyipp",
                "job-name": "pyipp test",
                "document-format": "application/pdf",
            },
            "data": pdf,
        })
    assert response["status-code"] == 0, response
    assert response["jobs"][0]["job-id"] > 0
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]
    assert bridge.delivered_bytes(manifest) == pdf


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _run(*argv: str, env: dict[str, str], within: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, f"{argv[0]} failed: {text}"
    return text


class Cups:
    """cupsd on loopback with its own configuration, spool and logs in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.env = {**os.environ, "CUPS_SERVER": f"127.0.0.1:{self.port}", "CUPS_SERVERROOT": str(root / "etc")}

    def configure(self) -> None:
        for name in ("etc", "etc/ppd", "spool", "spool/tmp", "cache", "log", "state", "run"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        (self.root / "etc" / "cupsd.conf").write_text(
            f"Listen 127.0.0.1:{self.port}\nLogLevel debug\nBrowsing No\nDefaultAuthType None\n"
            "WebInterface No\n<Location />\n  Order allow,deny\n  Allow all\n</Location>\n"
            "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
        )
        (self.root / "etc" / "cups-files.conf").write_text(
            f"ServerRoot {self.root / 'etc'}\nRequestRoot {self.root / 'spool'}\nTempDir {self.root / 'spool/tmp'}\n"
            f"CacheDir {self.root / 'cache'}\nStateDir {self.root / 'state'}\nErrorLog {self.root / 'log/error_log'}\n"
            f"AccessLog {self.root / 'log/access_log'}\nPageLog {self.root / 'log/page_log'}\n"
            "ServerBin /usr/lib/cups\nDataDir /usr/share/cups\nFileDevice No\n"
        )

    async def start(self) -> None:
        assert CUPSD is not None
        self.configure()
        etc = self.root / "etc"
        self.proc = await asyncio.create_subprocess_exec(
            CUPSD, "-f", "-c", str(etc / "cupsd.conf"), "-s", str(etc / "cups-files.conf"), env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise AssertionError(f"cupsd did not start: {self.log()}")

    def log(self) -> str:
        path = self.root / "log" / "error_log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no error_log)"

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)


@pytest.mark.skipif(CUPSD is None, reason="cupsd is not installed (Debian 'cups'; .ci/run installs it)")
async def test_cups_driverless_queue_prints_as_the_authenticated_user(make_print_bridge: PrintBridgeFactory) -> None:
    bridge: PrintBridge = await make_print_bridge()
    # cupsd runs filters and backends as user lp: pytest's tmp_path (mode 0700) is out of its reach.
    cups = Cups(Path(tempfile.mkdtemp(prefix="loginbridge-cups-")))
    await cups.start()
    try:
        device_uri = bridge.uri_for(*ALICE)
        await _run("lpadmin", "-h", f"127.0.0.1:{cups.port}", "-p", "bridge", "-E", "-v", device_uri,
                   "-m", "everywhere", env=cups.env)
        document = cups.root / "letter.pdf"
        pdf = minimal_pdf(1, text="through CUPS")
        document.write_bytes(pdf)
        await _run("lp", "-h", f"127.0.0.1:{cups.port}", "-d", "bridge", "-t", "cups test", str(document),
                   env=cups.env)
        try:
            (manifest,) = await bridge.wait_delivered(1, within=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cups.log()}") from exc
        assert manifest["user_email"] == ALICE[0]
        assert manifest["document_format"] == "application/pdf"
        assert bridge.delivered_bytes(manifest).startswith(b"%PDF-")
        assert bridge.trust_calls() == 1
    finally:
        await cups.stop()
        shutil.rmtree(cups.root, ignore_errors=True)
