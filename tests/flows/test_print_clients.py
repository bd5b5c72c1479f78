"""Real IPP clients print through the bridge: pyipp's client, and a real CUPS with a driverless queue."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path

import aiohttp
import pytest
from pyipp import IPP
from pyipp.enums import IppOperation

from printers.ipp import Attribute, GroupTag, ValueTag, decode
from tests.flows.print_support import (
    ALICE,
    PrintBridge,
    PrintBridgeFactory,
    ipp_request,
    make_print_bridge,
    minimal_pdf,
)

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


async def _run(*argv: str, env: dict[str, str], within: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, f"{argv[0]} failed: {text}"
    return text


class Cups:
    """cupsd with its own configuration, spool and logs in a temporary directory.

    It listens on a Unix socket inside that directory, never on a TCP port: a
    port picked free and released can be taken by anything before cupsd binds
    it, and the start-up probe would then succeed against the wrong server.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "cupsd.sock"
        self.proc: asyncio.subprocess.Process | None = None
        self.env = {**os.environ, "CUPS_SERVER": str(self.socket), "CUPS_SERVERROOT": str(root / "etc")}

    def configure(self) -> None:
        for name in ("etc", "etc/ppd", "spool", "spool/tmp", "cache", "log", "state", "run"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        (self.root / "etc" / "cupsd.conf").write_text(
            f"Listen {self.socket}\nLogLevel debug\nMaxLogSize 0\nBrowsing No\nDefaultAuthType None\n"
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
        for _ in range(200):
            if self.proc.returncode is not None:
                break
            try:
                _, writer = await asyncio.open_unix_connection(str(self.socket))
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"cupsd did not start: {self.log()}")

    async def printer_attributes(self, queue: str, *names: str) -> dict[str, object]:
        """Get-Printer-Attributes for one of this cupsd's queues (first values), over its socket."""
        body = ipp_request(int(IppOperation.GET_PRINTER_ATTRIBUTES),
                           Attribute.of("requested-attributes", ValueTag.KEYWORD, *names),
                           printer_uri=f"ipp://localhost/printers/{queue}")
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket))) as http, \
                http.post(f"http://localhost/printers/{queue}", data=body,
                          headers={"Content-Type": "application/ipp"}) as resp:
            msg = decode(await resp.read())
        found = {group.get(name) for group in msg.groups_of(GroupTag.PRINTER) for name in names}
        return {attr.name: attr.first for attr in found if attr is not None}

    async def wait_driverless_ready(self, queue: str, within: float = 60) -> None:
        """Wait until cupsd has built the queue's IPP Everywhere PPD and its filters.

        CUPS 2.4 answers ``lpadmin -m everywhere`` at once and builds the PPD in
        a background thread (querying the printer); until then the queue is a
        placeholder whose filters assume PostScript.  A job sent in that window
        is aborted ("Unable to convert file") or runs filters against a PPD that
        is not written yet ("Filter failed").  cupsd itself recognises a ready
        driverless queue by "IPP Everywhere" in printer-make-and-model, set
        from the PPD's NickName; CUPS 2.5 delays the lpadmin answer instead.
        """
        deadline = asyncio.get_running_loop().time() + within
        seen: dict[str, object] = {}
        while asyncio.get_running_loop().time() < deadline:
            seen = await self.printer_attributes(queue, "printer-make-and-model", "printer-state",
                                                 "printer-is-accepting-jobs")
            model = seen.get("printer-make-and-model")
            if (isinstance(model, str) and "IPP Everywhere" in model and seen.get("printer-state") == 3
                    and seen.get("printer-is-accepting-jobs") is True):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"queue {queue} not ready after {within} s: {seen}\n{self.log()}")

    def log(self) -> str:
        """The error_log lines that explain a job's fate (the debug log is too long to show whole)."""
        path = self.root / "log" / "error_log"
        if not path.exists():
            return "(no error_log)"
        keep = re.compile(r"^[EWI] |\] (PID \d+|Started|STATE:|Unable|Aborting|Generating|.*failed)")
        lines = [line for line in path.read_text(errors="replace").splitlines() if keep.search(line)]
        return "\n".join(lines[-60:])

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
        await _run("lpadmin", "-h", str(cups.socket), "-p", "bridge", "-E", "-v", device_uri,
                   "-m", "everywhere", env=cups.env)
        await cups.wait_driverless_ready("bridge")
        document = cups.root / "letter.pdf"
        pdf = minimal_pdf(1, text="through CUPS")
        document.write_bytes(pdf)
        await _run("lp", "-h", str(cups.socket), "-d", "bridge", "-t", "cups test", str(document), env=cups.env)
        try:
            (manifest,) = await bridge.wait_delivered(1, within=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cups.log()}") from exc
        assert manifest["user_email"] == ALICE[0]
        assert manifest["document_format"] == "application/pdf"
        delivered = bridge.delivered_bytes(manifest)
        # Rewritten by pdftopdf: the job took the driverless queue's filter chain, not a placeholder's.
        assert delivered.startswith(b"%PDF-") and delivered != pdf
        assert bridge.trust_calls() == 1
    finally:
        await cups.stop()
        shutil.rmtree(cups.root, ignore_errors=True)
