"""``printer.dnssd``: the TXT record against the printer's own attributes, and a real announcement.

The announcement tests run multicast DNS on loopback (``interfaces: [127.0.0.1]`` on the bridge
and in the browsing client): real mDNS packets, no other host reached.  Each bridge gets a name of
its own, so runs side by side on one machine do not rename each other's printers.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

import printers.dnssd
from bridge.config import load_config
from bridge.errors import ConfigError, ConfigErrors
from bridge.listeners import tls_server_context
from printers.capabilities import PrinterStatus, printer_attributes
from printers.dnssd import DNSSD, IPP, IPPS, TLS_VERSION, host_label, paper_max, txt_record
from printers.formats import SUPPORTED_FORMATS
from printers.ipp import Attribute, GroupTag, IppMessage, ValueTag, decode
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.print_support import ALICE, PrintBridge, PrintBridgeFactory, ipp_post, ipp_request, make_print_bridge
from tests.flows.test_print_tls import Pki, client_context, pki, print_job

__all__ = ["make_print_bridge", "pki"]

LOOPBACK = ["127.0.0.1"]
SUBTYPE_IPPS = "_print._sub._ipps._tcp.local."
SUBTYPE_IPP = "_print._sub._ipp._tcp.local."
SERVER = f"{host_label(socket.gethostname())}.local"


def unique_name() -> str:
    return f"Print-to-Web test {uuid.uuid4().hex[:8]}"


def _status(**overrides: Any) -> PrinterStatus:
    now = datetime.now(UTC).replace(microsecond=0)
    fields: dict[str, Any] = {
        "uri": "ipps://host.local:8631/ipp/print", "more_info": "https://host.local:8631/",
        "uuid": "0b2f1c3e-4a5d-4e6f-8a9b-0c1d2e3f4a5b", "name": "Front desk", "location": "Floor 2, east wing",
        "info": "Print-to-Web printer", "up_time": 1, "started_at": now, "state": 3, "state_changed_at": now,
        "queued_jobs": 0, "max_job_bytes": 1 << 20, "auth_required": True,
        "uris": (("ipps://host.local:8631/ipp/print", "tls"),),
    }
    fields.update(overrides)
    return PrinterStatus(**fields)


def _values(attrs: tuple[Attribute, ...], name: str) -> list[object]:
    (attr,) = [a for a in attrs if a.name == name]
    return [v.value for v in attr.values]


# --------------------------------------------------------------------------
# The TXT record (pure).


def test_the_txt_record_mirrors_the_printer_attributes() -> None:
    attrs = printer_attributes(_status())
    txt = txt_record(attrs, tls=True)
    assert next(iter(txt)) == "txtvers" and txt["txtvers"] == "1"  # RFC 6763 section 6.7: the version key first
    assert txt["qtotal"] == "1"
    assert txt["rp"] == "ipp/print"
    (make_and_model,) = _values(attrs, "printer-make-and-model")
    assert txt["ty"] == make_and_model and txt["product"] == f"({make_and_model})"
    assert [txt["note"]] == _values(attrs, "printer-location") == ["Floor 2, east wing"]
    assert [txt["adminurl"]] == _values(attrs, "printer-more-info") == ["https://host.local:8631/"]
    assert txt["pdl"].split(",") == _values(attrs, "document-format-supported") == list(SUPPORTED_FORMATS)
    assert "image/pwg-raster" in txt["pdl"].split(",")  # self-cert B-4: required (image/jpeg too when Color=T)
    assert ["urn:uuid:" + txt["UUID"]] == _values(attrs, "printer-uuid")
    assert _values(attrs, "color-supported") == [False] and txt["Color"] == "F"
    assert _values(attrs, "sides-supported") == ["one-sided"] and txt["Duplex"] == "F"
    assert _values(attrs, "uri-authentication-supported") == ["basic"] and txt["air"] == "username,password"
    assert txt["kind"] == "document" and txt["PaperMax"] == "legal-A4" and txt["priority"] == "50"
    assert txt["TLS"] == "1.2"
    assert "URF" not in txt  # no image/urf


def test_without_tls_or_authentication() -> None:
    txt = txt_record(printer_attributes(_status(auth_required=False, uris=())), tls=False)
    assert "TLS" not in txt and txt["air"] == "none"


def test_every_txt_string_fits_in_255_bytes() -> None:
    # printer-location is cut at 127 characters; of 3 bytes each in UTF-8 that is more than a TXT string holds
    txt = txt_record(printer_attributes(_status(location="東京オフィス" * 30)), tls=True)
    for key, value in txt.items():
        assert len(f"{key}={value}".encode()) <= 255, key
    assert txt["note"].startswith("東京オフィス東京") and len(f"note={txt['note']}".encode()) > 250


def test_paper_max_classes() -> None:
    a4, letter, legal, a5 = (21000, 29700), (21590, 27940), (21590, 35560), (14800, 21000)
    assert paper_max([a4, letter]) == "legal-A4"
    assert paper_max([letter]) == "legal-A4"
    assert paper_max([legal]) == "legal-A4"
    assert paper_max([a5]) == "<legal-A4"
    assert paper_max([a4, (29700, 42000)]) == "tabloid-A3"
    assert paper_max([(42000, 59400)]) == "isoC-A2"
    assert paper_max([(84100, 118900)]) == ">isoC-A2"


def test_the_tls_key_is_the_listeners_lowest_version(pki: Pki) -> None:
    context = tls_server_context(pki.cert_file, pki.key_file)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2 and TLS_VERSION == "1.2"


def test_host_label() -> None:
    assert host_label("print01.corp.example.com") == "print01"
    assert host_label("odd_name") == "odd-name"
    assert host_label("") == "loginbridge"


# --------------------------------------------------------------------------
# Configuration.


def _load(tmp_path: Path, printer: dict[str, Any]) -> Any:
    (tmp_path / "tenants").mkdir(exist_ok=True)
    main = {"state_dir": str(tmp_path / "state"),
            "secrets": {"hmac_key": {"file": str(tmp_path / "state" / "hmac.key"), "generate": True}},
            "printer": {"delivery": {"outbox_dir": str(tmp_path / "outbox")}, **printer}}
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(main))
    return load_config(tmp_path / "bridge.yaml")


def test_off_by_default_and_named_after_the_printer(tmp_path: Path) -> None:
    assert _load(tmp_path, {}).printer.dnssd is None
    assert _load(tmp_path, {"dnssd": {"name": "Ignored"}}).printer.dnssd is None  # enabled defaults to false
    config = _load(tmp_path, {"name": "Front desk v2.1", "host": "0.0.0.0", "dnssd": {"enabled": True}})
    assert config.printer.dnssd.name == "Front desk v2 1"  # python-zeroconf cannot carry a dot in a name
    assert config.printer.dnssd.interfaces == ()
    assert any("without printer.tls" in w for w in config.warnings)
    config = _load(tmp_path, {"dnssd": {"enabled": True, "name": "Lobby", "interfaces": ["192.0.2.7", "fd00::7"]}})
    assert config.printer.dnssd.name == "Lobby" and config.printer.dnssd.interfaces == ("192.0.2.7", "fd00::7")
    config = _load(tmp_path, {"dnssd": {"enabled": True}})  # printer.host defaults to 127.0.0.1
    assert any("cannot be reached from other hosts" in w for w in config.warnings)


def test_bad_dnssd_keys_are_each_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        _load(tmp_path, {"dnssd": {"enabled": "yes", "name": "a.b", "interfaces": ["eth0", "192.0.2.1"],
                                   "port": 5353}})
    errors = caught.value.errors
    keys = sorted(e.key for e in errors)
    assert keys == ["printer.dnssd.enabled", "printer.dnssd.interfaces[0]", "printer.dnssd.name",
                    "printer.dnssd.port"], [str(e) for e in errors]
    with pytest.raises(ConfigError, match="63 bytes"):
        _load(tmp_path, {"dnssd": {"enabled": True, "name": "x" * 64}})


# --------------------------------------------------------------------------
# The announcement, over multicast DNS on loopback.


@pytest.fixture
async def browser_zc() -> AsyncIterator[AsyncZeroconf]:
    zc = AsyncZeroconf(interfaces=LOOPBACK)
    yield zc
    await zc.async_close()


async def dnssd_bridge(factory: PrintBridgeFactory, name: str, pki: Pki | None = None,
                       **dnssd: Any) -> PrintBridge:
    printer: dict[str, Any] = {"name": name, "location": "Floor 2",
                               "dnssd": {"enabled": True, "interfaces": LOOPBACK, **dnssd}}
    if pki is not None:
        printer["tls"] = {"cert": str(pki.cert_file), "key": str(pki.key_file)}
    bridge = await factory(printer=printer)
    await asyncio.wait_for(bridge.runner.app[DNSSD].announced.wait(), 15)
    return bridge


class Seen:
    """What an AsyncServiceBrowser reported, by (service type, name)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str, ServiceStateChange]] = []
        self.event = asyncio.Event()

    def __call__(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        self.changes.append((service_type, name, state_change))
        self.event.set()

    async def wait_for(self, service_type: str, name: str, change: ServiceStateChange, within: float = 10) -> None:
        async with asyncio.timeout(within):
            while (service_type, name, change) not in self.changes:
                self.event.clear()
                await self.event.wait()


async def gpa_as_a_dnssd_client(bridge: PrintBridge, pki: Pki, *, tls: bool) -> IppMessage:
    """Get-Printer-Attributes as a client that resolved the announcement: Host is the announced host name."""
    body = ipp_request(Op.GET_PRINTER_ATTRIBUTES,
                       Attribute.of("requested-attributes", ValueTag.KEYWORD, "printer-more-info", "printer-uuid"))
    headers = {"Content-Type": "application/ipp", "Host": f"{SERVER}:{bridge.port}"}
    scheme = "https" if tls else "http"
    connector = aiohttp.TCPConnector(ssl=client_context(pki) if tls else False)
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            f"{scheme}://127.0.0.1:{bridge.port}/ipp/print", data=body, headers=headers) as resp:
        return decode(await resp.read())


async def test_announces_ipps_and_ipp_with_the_print_subtype(make_print_bridge: PrintBridgeFactory, pki: Pki,
                                                             browser_zc: AsyncZeroconf) -> None:
    name = unique_name()
    seen = Seen()
    browser = AsyncServiceBrowser(browser_zc.zeroconf, [SUBTYPE_IPPS, SUBTYPE_IPP, IPPS, IPP], handlers=[seen])
    try:
        bridge = await dnssd_bridge(make_print_bridge, name, pki)
        for type_ in (SUBTYPE_IPPS, SUBTYPE_IPP, IPPS, IPP):  # browsing by subtype and by type finds the one name
            await seen.wait_for(type_, f"{name}.{type_.split('._sub.')[-1]}", ServiceStateChange.Added)

        records = {}
        for type_ in (IPPS, IPP):
            info = AsyncServiceInfo(type_, f"{name}.{type_}")
            assert await info.async_request(browser_zc.zeroconf, 3000)
            assert info.port == bridge.port and info.parsed_addresses() == ["127.0.0.1"]
            assert info.server == f"{SERVER}."
            records[type_] = info.decoded_properties
        ipps, ipp = records[IPPS], records[IPP]
        # self-cert B-2/B-5.3: the required keys; the same record on both but for the scheme of adminurl
        for record in (ipps, ipp):
            assert {"adminurl", "pdl", "rp", "UUID", "TLS"} <= set(record)
            assert record["rp"] == "ipp/print" and record["TLS"] == "1.2" and record["air"] == "username,password"
            assert record["note"] == "Floor 2" and record["pdl"] == ",".join(SUPPORTED_FORMATS)
        assert {k: v for k, v in ipps.items() if k != "adminurl"} == {k: v for k, v in ipp.items() if k != "adminurl"}
        # self-cert B-4/B-5.5: adminurl is printer-more-info, UUID is printer-uuid, as the printer answers them
        for record, tls in ((ipps, True), (ipp, False)):
            reply = await gpa_as_a_dnssd_client(bridge, pki, tls=tls)
            assert reply.code == IppStatus.OK
            more_info = reply.find(GroupTag.PRINTER, "printer-more-info")
            printer_uuid = reply.find(GroupTag.PRINTER, "printer-uuid")
            assert more_info is not None and printer_uuid is not None
            assert record["adminurl"] == more_info.first == f"{'https' if tls else 'http'}://{SERVER}:{bridge.port}/"
            assert printer_uuid.first == f"urn:uuid:{record['UUID']}"

        # Print to what was resolved, over ipps.
        uri = f"ipps://127.0.0.1:{bridge.port}/{ipps['rp']}"
        KNOWN_SECRETS.add(ALICE[1])
        auth = "Basic " + base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
        connector = aiohttp.TCPConnector(ssl=client_context(pki))
        async with aiohttp.ClientSession(connector=connector) as http, http.post(
                f"https://127.0.0.1:{bridge.port}/{ipps['rp']}", data=print_job(uri),
                headers={"Content-Type": "application/ipp", "Authorization": auth}) as resp:
            job = decode(await resp.read())
        assert resp.status == 200 and job.code == IppStatus.OK
        await bridge.wait_delivered(1)

        await bridge.stop()  # goodbye packets: the browser hears the services go, well before their TTLs
        for type_ in (SUBTYPE_IPPS, IPPS, IPP):
            await seen.wait_for(type_, f"{name}.{type_.split('._sub.')[-1]}", ServiceStateChange.Removed)
    finally:
        await browser.async_cancel()


async def test_without_tls_only_ipp_is_announced(make_print_bridge: PrintBridgeFactory,
                                                browser_zc: AsyncZeroconf) -> None:
    name = unique_name()
    bridge = await dnssd_bridge(make_print_bridge, name)
    info = AsyncServiceInfo(IPP, f"{name}.{IPP}")
    assert await info.async_request(browser_zc.zeroconf, 3000)
    assert info.port == bridge.port and "TLS" not in info.decoded_properties
    assert info.decoded_properties["adminurl"] == f"http://{SERVER}:{bridge.port}/"
    assert not await AsyncServiceInfo(IPPS, f"{name}.{IPPS}").async_request(browser_zc.zeroconf, 1000)
    assert [i.type for i in bridge.runner.app[DNSSD].infos] == [IPP]
    # A client that starts browsing now (after the announcements, nothing cached) gets the subtype answered.
    await asyncio.sleep(1.2)
    async with AsyncZeroconf(interfaces=LOOPBACK) as late:
        seen = Seen()
        browser = AsyncServiceBrowser(late.zeroconf, [SUBTYPE_IPP], handlers=[seen])
        try:
            await seen.wait_for(SUBTYPE_IPP, f"{name}.{IPP}", ServiceStateChange.Added, within=5)
        finally:
            await browser.async_cancel()


async def test_off_by_default_nothing_is_started(make_print_bridge: PrintBridgeFactory,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 browser_zc: AsyncZeroconf) -> None:
    started: list[object] = []
    monkeypatch.setattr(printers.dnssd, "AsyncZeroconf", lambda *a, **kw: started.append(kw))
    bridge = await make_print_bridge(printer={"name": unique_name()})
    assert bridge.config.printer is not None and bridge.config.printer.dnssd is None
    assert DNSSD not in bridge.runner.app and started == []
    name = bridge.config.printer.name
    assert not await AsyncServiceInfo(IPP, f"{name}.{IPP}").async_request(browser_zc.zeroconf, 1000)


async def test_a_zeroconf_failure_is_a_warning_and_the_printer_prints(make_print_bridge: PrintBridgeFactory,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="printers.dnssd")
    # 203.0.113.77 (TEST-NET-3) is no address of this host: zeroconf cannot join the group on it.
    bridge = await make_print_bridge(printer={"dnssd": {"enabled": True, "interfaces": ["203.0.113.77"]}})
    warnings = [r.getMessage() for r in caplog.records if r.name == "printers.dnssd"]
    assert len(warnings) == 1 and "cannot be announced (OSError" in warnings[0], warnings
    assert DNSSD not in bridge.runner.app
    status, reply = await ipp_post(bridge, print_job(), auth=ALICE)
    assert status == 200 and reply is not None and reply.code == IppStatus.OK, reply
    await bridge.wait_delivered(1)
