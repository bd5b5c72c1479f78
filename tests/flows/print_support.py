"""Fixtures for printing flows: the bridge with its printer listener on port 0.

Import ``make_print_bridge`` into a test module to use it (it builds on the
``sim`` fixture of conftest.py).  Starting a second bridge on the same
``tmp_path`` after stopping the first is a restart: same state directory.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from aiohttp import web

from bridge.app import make_app
from bridge.appkeys import STORE
from bridge.config import BridgeConfig, load_config
from bridge.demo import seed
from bridge.idpsim.server import RunningSimulator
from bridge.state.store import Store
from printers.ipp import Attribute, AttributeGroup, GroupTag, IppMessage, ValueTag, decode, encode
from printers.server import PRINTER_RUNNER
from tests.flows.conftest import DEMO_SEED, KNOWN_SECRETS, tenant_yaml
from tests.printers.samples import minimal_pdf

__all__ = ["ALICE", "FRONTDESK", "IPPTOOL", "PrintBridge", "ipp_post", "ipp_request", "job_value", "make_print_bridge",
           "minimal_pdf", "pwg_raster"]

ALICE = ("alice@example.com", "alice-demo-pass")
FRONTDESK = ("frontdesk@example.com", "frontdesk-demo-pass")
IPPTOOL = shutil.which("ipptool")


@dataclass
class PrintBridge:
    config: BridgeConfig
    store: Store
    sim: RunningSimulator
    port: int
    outbox: Path
    runner: web.AppRunner
    stopped: bool = field(default=False)

    @property
    def uri(self) -> str:
        return f"ipp://127.0.0.1:{self.port}/ipp/print"

    def uri_for(self, email: str, password: str) -> str:
        KNOWN_SECRETS.add(password)
        return f"ipp://{quote(email, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/ipp/print"

    def trust_calls(self) -> int:
        counters = self.sim.state.counters
        return counters["trust13"] + counters["trust2005"]

    def manifests(self) -> list[dict[str, Any]]:
        if not self.outbox.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.outbox.glob("*.json"))]

    async def wait_delivered(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + within
        while len(found := self.manifests()) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(found)} of {count} jobs delivered after {within} s")
            await asyncio.sleep(0.05)
        return found

    def delivered_bytes(self, manifest: dict[str, Any]) -> bytes:
        ext = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/pwg-raster": ".pwg"}[manifest["document_format"]]
        return (self.outbox / f"{manifest['idempotency_key']}{ext}").read_bytes()

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.runner.cleanup()


PrintBridgeFactory = Callable[..., Awaitable[PrintBridge]]


@pytest.fixture
async def make_print_bridge(tmp_path: Path, sim: RunningSimulator) -> AsyncIterator[PrintBridgeFactory]:
    bridges: list[PrintBridge] = []

    async def factory(*, printer: dict[str, Any] | None = None, listen: dict[str, Any] | None = None,
                      tenant: dict[str, Any] | None = None, main_extra: dict[str, Any] | None = None,
                      **tenant_overrides: Any) -> PrintBridge:
        conf = tmp_path / "conf"
        (conf / "tenants").mkdir(parents=True, exist_ok=True)
        printer_section: dict[str, Any] = {
            "enabled": True, "host": "127.0.0.1", "port": 0, "max_job_mb": 64,
            "delivery": {"outbox_dir": str(tmp_path / "outbox"), "max_attempts": 3, "backoff_seconds": 0.1},
        }
        printer_section.update(printer or {})
        main = {
            "listen": {"host": "127.0.0.1", "port": 0, **(listen or {})},
            "state_dir": str(tmp_path / "state"),
            "secrets": {"hmac_key": {"file": str(tmp_path / "state" / "hmac.key"), "generate": True}},
            "idp_client": {"connect_timeout_seconds": 2, "timeout_seconds": 15},
            "printer": printer_section,
            **(main_extra or {}),
        }
        (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
        tenant = tenant if tenant is not None else tenant_yaml(sim, **tenant_overrides)
        (conf / "tenants" / f"{tenant['id']}.yaml").write_text(yaml.safe_dump(tenant))
        config = load_config(conf / "bridge.yaml")
        app = make_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int((listen or {}).get("port", 0))).start()
        store = app[STORE]
        await seed(config, store, DEMO_SEED)
        port = app[PRINTER_RUNNER].addresses[0][1]
        assert config.printer is not None
        outbox = config.printer.delivery.outbox_dir or tmp_path / "outbox"
        bridge = PrintBridge(config=config, store=store, sim=sim, port=port, outbox=outbox, runner=runner)
        bridges.append(bridge)
        return bridge

    yield factory
    for bridge in reversed(bridges):
        await bridge.stop()


def ipp_request(
    operation: int, *attributes: Attribute, job: tuple[Attribute, ...] = (), data: bytes = b"",
    version: tuple[int, int] = (2, 0), request_id: int = 7, printer_uri: str | None = "ipp://127.0.0.1/ipp/print",
) -> bytes:
    """An IPP request in wire form, built with the project's codec (as a client would send it)."""
    op = [Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8"),
          Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en")]
    if printer_uri is not None:
        op.append(Attribute.of("printer-uri", ValueTag.URI, printer_uri))
    op.extend(attributes)
    groups = [AttributeGroup(tag=GroupTag.OPERATION, attributes=tuple(op))]
    if job:
        groups.append(AttributeGroup(tag=GroupTag.JOB, attributes=job))
    return encode(IppMessage(version=version, code=operation, request_id=request_id, groups=tuple(groups), data=data))


async def ipp_post(
    bridge: PrintBridge, body: bytes, *, auth: tuple[str, str] | None = None, path: str = "/ipp/print"
) -> tuple[int, IppMessage | None]:
    """POST an IPP request; (HTTP status, decoded IPP response or None)."""
    headers = {"Content-Type": "application/ipp"}
    if auth is not None:
        KNOWN_SECRETS.add(auth[1])
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    async with aiohttp.ClientSession() as http, http.post(
        f"http://127.0.0.1:{bridge.port}{path}", data=body, headers=headers
    ) as resp:
        raw = await resp.read()
        if resp.content_type != "application/ipp":
            return resp.status, None
        return resp.status, decode(raw)


def job_value(msg: IppMessage, name: str) -> object:
    attr = msg.find(GroupTag.JOB, name)
    assert attr is not None, f"{name} missing from the response"
    return attr.first


def _packbits_line(white: bytes, units: int) -> bytes:
    """One blank line in PWG raster compression: runs of at most 128 repeated pixel units."""
    out = bytearray()
    while units:
        run = min(units, 128)
        out += bytes([run - 1]) + white
        units -= run
    return bytes(out)


# PWG 5102.4 colour spaces: bits per colour, bits per pixel, cupsColorSpace, number of colours, one white pixel
# (or, below 8 bits a pixel, one white byte).
PWG_COLOURS = {
    "black_1": (1, 1, 3, 1, b"\x00"),
    "sgray_8": (8, 8, 18, 1, b"\xff"),
    "srgb_8": (8, 24, 19, 3, b"\xff" * 3),
    "srgb_16": (16, 48, 19, 3, b"\xff" * 6),
    "cmyk_8": (8, 32, 6, 4, b"\x00" * 4),
}


def pwg_raster(*, width_pt: int, height_pt: int, dpi: int = 300, colour: str = "black_1") -> bytes:
    """A one-page blank PWG raster document (PWG 5102.4): 'RaS2', a 1796-byte page header, the lines."""
    bits, bpp, space, colours, white = PWG_COLOURS[colour]
    width, height = width_pt * dpi // 72, height_pt * dpi // 72
    bytes_per_line = (width * bpp + 7) // 8
    header = bytearray(1796)
    header[0:9] = b"PwgRaster"
    header[192:196] = b"auto"                                       # PrintContentOptimize
    struct.pack_into(">II", header, 276, dpi, dpi)                  # HWResolution
    struct.pack_into(">I", header, 340, 1)                          # NumCopies
    struct.pack_into(">II", header, 352, width_pt, height_pt)       # PageSize (points)
    struct.pack_into(">II", header, 372, width, height)             # Width, Height
    struct.pack_into(">IIIII", header, 384, bits, bpp, bytes_per_line, 0, space)  # bits, order, space
    struct.pack_into(">I", header, 420, colours)                    # NumColors
    struct.pack_into(">I", header, 452, 1)                          # TotalPageCount
    struct.pack_into(">ii", header, 456, 1, 1)                      # CrossFeedTransform, FeedTransform
    struct.pack_into(">IIII", header, 464, 0, 0, width, height)     # ImageBox
    line = _packbits_line(white, bytes_per_line if bpp < 8 else width)
    body = bytearray()
    lines = height
    while lines:
        group = min(lines, 256)
        body += bytes([group - 1]) + line                           # line repeat count, then the line
        lines -= group
    return b"RaS2" + bytes(header) + bytes(body)
