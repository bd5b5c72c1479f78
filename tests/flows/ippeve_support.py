"""``ippeveprinter`` (CUPS's sample IPP Everywhere printer, Debian cups-ipp-utils) as a reference printer.

It is started in a temporary directory on a free loopback port, serving ``ipps://``
with a self-signed certificate it makes itself in that directory (``-K``), and
keeping every document it receives (``-k -d``).  The temporary directory, its
processes and their logs go away when the context manager exits, however it exits.

ippeveprinter 2.4 links Avahi and exits with "Unable to initialize DNS-SD" unless
it reaches a D-Bus system bus, even with ``-r off`` (no registration); the
containers the tests run in have none, so a private ``dbus-daemon`` is started
for it and named in ``DBUS_SYSTEM_BUS_ADDRESS``.  Nothing is registered on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from printers.ipp import Attribute, GroupTag, ValueTag, decode
from tests.flows.print_support import ipp_request

IPPEVEPRINTER = shutil.which("ippeveprinter") or (
    "/usr/sbin/ippeveprinter" if Path("/usr/sbin/ippeveprinter").exists() else None)
DBUS_DAEMON = shutil.which("dbus-daemon")

# A bus with no service directories: nothing can be activated on it.
DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
GET_PRINTER_ATTRIBUTES = 0x000B


@dataclass(frozen=True)
class EvePrinter:
    name: str
    port: int
    spool: Path
    log: Path

    @property
    def uri(self) -> str:
        return f"ipps://127.0.0.1:{self.port}/ipp/print"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _printer_state(port: int) -> tuple[str, int] | None:
    """(printer-name, printer-up-time) from a Get-Printer-Attributes over plain ipp (it serves both), or None."""
    body = ipp_request(GET_PRINTER_ATTRIBUTES,
                       Attribute.of("requested-attributes", ValueTag.KEYWORD, "printer-name", "printer-up-time"),
                       printer_uri=f"ipp://localhost:{port}/ipp/print")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, http.post(
                f"http://127.0.0.1:{port}/ipp/print", data=body, headers={"Content-Type": "application/ipp"}) as resp:
            msg = decode(await resp.read())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    name, up = msg.find(GroupTag.PRINTER, "printer-name"), msg.find(GroupTag.PRINTER, "printer-up-time")
    if name is None or up is None or not isinstance(up.first, int):
        return None
    return str(name.first), up.first


async def _ours_once_up(proc: asyncio.subprocess.Process, port: int, name: str, within: float = 15) -> bool:
    """True once the printer on ``port`` answers with our name while our process runs; False if it exits.

    ippeveprinter exits when it cannot bind the port (taken since it was picked), so a live
    process answering with the random name we gave it is ours, not whatever else holds the port.
    It is "up" once its printer-up-time (whole seconds) is past 0: ipp-2.0.test expects
    printer-up-time > 0 and fails a printer asked within its first second.
    Raises if it neither gets there nor exits within ``within`` seconds.
    """
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if proc.returncode is not None:
            return False
        state = await _printer_state(port)
        if state is not None and state[0] == name and state[1] > 0 and proc.returncode is None:
            return True
        await asyncio.sleep(0.1)
    raise AssertionError(f"ippeveprinter (pid {proc.pid}) did not answer on port {port} within {within} s")


@contextlib.asynccontextmanager
async def ippeveprinter(formats: str) -> AsyncIterator[EvePrinter]:
    """A running ippeveprinter accepting ``formats`` (``-f``); stopped and removed on exit."""
    assert IPPEVEPRINTER is not None and DBUS_DAEMON is not None
    root = Path(tempfile.mkdtemp(prefix="loginbridge-ippeve-"))
    procs: list[asyncio.subprocess.Process] = []
    logs: list[IO[bytes]] = []
    try:
        bus_socket = root / "system_bus_socket"
        (root / "bus.conf").write_text(DBUS_CONFIG.format(socket=bus_socket))
        bus = await asyncio.create_subprocess_exec(
            DBUS_DAEMON, f"--config-file={root / 'bus.conf'}", "--nofork", "--nopidfile", "--print-address",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        procs.append(bus)
        assert bus.stdout is not None
        address = (await asyncio.wait_for(bus.stdout.readline(), 10)).decode().strip()
        assert address.startswith("unix:path="), f"dbus-daemon did not start: {address!r}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CUPS_", "DBUS_"))}
        env.update(HOME=str(root), DBUS_SYSTEM_BUS_ADDRESS=address)
        spool, keys = root / "spool", root / "keys"
        spool.mkdir()
        keys.mkdir()
        name = f"loginbridge-eve-{secrets.token_hex(4)}"
        for attempt in range(5):
            port = _free_loopback_port()
            log = root / f"ippeveprinter-{attempt}.log"
            logs.append(out := log.open("wb"))
            # -n localhost: it binds 127.0.0.1 and ::1 only, and names its certificate localhost.crt in -K.
            # -c /bin/true: a job is "printed" at once; without a command each job sleeps 5 to 15 s to
            #   simulate printing, and the next Create-Job meets server-error-busy.
            proc = await asyncio.create_subprocess_exec(
                IPPEVEPRINTER, "-v", "-k", "-d", str(spool), "-K", str(keys), "-n", "localhost", "-p", str(port),
                "-r", "off", "-c", "/bin/true", "-f", formats, name,
                cwd=root, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT)
            procs.append(proc)
            try:
                up = await _ours_once_up(proc, port, name)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {log.read_text(errors='replace')[-2000:]}") from None
            if up:
                yield EvePrinter(name=name, port=port, spool=spool, log=log)
                return
            await _stop(proc)  # exited: most likely the port was taken since it was picked
        raise AssertionError(f"ippeveprinter did not start: {log.read_text(errors='replace')[-2000:]}")
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        for out in logs:
            out.close()
        shutil.rmtree(root, ignore_errors=True)
