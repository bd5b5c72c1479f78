"""Optional DNS-SD advertisement of the printer over multicast DNS (``printer.dnssd``, off by default).

For on-premises sites whose users share a link with the bridge: IPP Everywhere clients (CUPS's,
among others) then list the printer without anyone typing a URI.  Never in the cloud (multicast
does not cross routers, and a cloud host has no users on its link).

What is announced (PWG 5100.14 IPP Everywhere; Bonjour Printing Specification 1.2.1; RFC 6763):

* With ``printer.tls``: ``_ipps._tcp`` *and* ``_ipp._tcp``, one instance name, each with the subtype
  ``_print`` (PWG 5100.14 requires the ``_print`` subtype on both; the PWG self-certification
  tools, IPP Everywhere Printer Self-Certification Manual 1.1 section 5, browse ``_ipp._tcp,_print``
  in B-1 whatever the printer, and ``_ipps._tcp,_print`` in B-5.2 once the ``_ipp`` TXT record
  says ``TLS``).  ``_ipp`` is kept although passwords are refused over plain HTTP: that refusal is
  made by the listener (``426 Upgrade Required`` outside ``printer.plain_http_from``, never a Basic
  challenge in clear), and the ``TLS`` key in the ``_ipp`` record tells a client that the port
  upgrades to TLS (RFC 2817, what libcups does on a 426 and what self-cert test B-5.1 checks).
  A client that sees both can take ``_ipps``; announcing ``_ipps`` alone would hide the printer
  from clients that browse ``_ipp`` only, and fail B-1.  (PAPPL-based printers do the same: one
  name, both types, one TXT record with ``TLS``.)
* Without ``printer.tls``: ``_ipp._tcp`` only, without ``TLS`` (the loader warns about it).

The TXT keys are those of PWG 5100.14's DNS-SD TXT record keys (after the Bonjour Printing
Specification's) that apply to this printer, each taken from the printer attribute it mirrors,
as Get-Printer-Attributes answers them (:func:`txt_record`, pure):

=========  =====================================================================================
txtvers    ``1``, first (RFC 6763 section 6.7)
qtotal     ``1``: one queue behind this name
rp         the resource path of printer-uri-supported without its ``/``: ``ipp/print``
ty         printer-make-and-model
product    printer-make-and-model in parentheses (the Bonjour spec's PostScript product string;
           CUPS and ipp-usb fill it so for driverless printers; *uncertain* whether any client reads it)
note       printer-location
adminurl   printer-more-info (self-cert B-4 and B-5.5 check that they are equal): the printer's
           info page at the announced host and port.  Not ``public_url``/print/setup: that page
           is not printer-more-info, and clients open adminurl as the printer's own web page
pdl        document-format-supported, comma-separated
kind       ``document`` (media-type-supported is ``stationery`` only; no printer-kind attribute)
PaperMax   the size class of the largest media-size-supported: ``legal-A4`` for A4 and Letter
           (*uncertain* where the spec puts a Letter-only printer: here in ``legal-A4``)
UUID       printer-uuid without ``urn:uuid:`` (the one kept in the store, printers/identity.py)
Color      ``T``/``F`` from color-supported
Duplex     ``T`` when sides-supported has a ``two-sided-*`` value, else ``F``
air        ``username,password`` when uri-authentication-supported is ``basic``, else ``none``
priority   ``50``, the Bonjour default (0 is most preferred, 99 least)
TLS        with ``printer.tls``: ``1.2``, the lowest version the listener accepts
           (bridge.listeners.tls_server_context); *uncertain* whether the key names the lowest or
           the highest supported version; ippeveprinter and PAPPL announce ``1.2``
=========  =====================================================================================

Left out: ``URF`` (no image/urf: Apple's AirPrint clients need it, so iOS will not list this
printer), ``Scan``/``Fax`` (false by default), the LPD-era ``Copies``/``Transparent``/``Binary``/
``TBCP``, ``mopria-certified``, ``print_wfds``.  Every ``key=value`` is cut to 255 bytes (RFC 6763
section 6.1).

The SRV target is this host's name in ``.local`` (the first label of its host name); its
addresses are those of ``printer.dnssd.interfaces``, else the printer's bound address, else, when
the printer binds every address, every non-loopback address of this host.  A client then prints
to ``ipps://HOST.local:PORT/ipp/print``: a certificate it checks must name ``HOST.local``.

python-zeroconf has no API for subtypes (python-zeroconf issue 1287: a ServiceInfo whose type is
the subtype is answered under the subtype only, and one name can be registered once).  The
service is registered under its type, and the same service is also indexed under the subtype
name in zeroconf's registry (``ServiceRegistry.types``, a public attribute), so that a query for
``_print._sub._ipps._tcp.local.`` is answered with the instance's PTR and its SRV, TXT and
addresses (RFC 6763 sections 7.1 and 12.1); its announcements and goodbyes are sent here.  One
side effect: service type enumeration (RFC 6763 section 9) lists the subtype names too.

Starting never holds up the printer: the sockets are opened at once (a few non-blocking system
calls; zeroconf must create them on the event loop's thread), probing and announcing (RFC 6762
sections 8.1 and 8.3, about two seconds) run in a task.  Any failure, at start (no multicast
route, port 5353 not shared, an address that is not this host's) or later, is a warning and the
printer goes on unannounced.  On cleanup zeroconf sends goodbyes (TTL 0, RFC 6762 section 10.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import ifaddr
from aiohttp import web
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from bridge.config import PrinterConfig, PrinterDnssd
from bridge.tasks import stop_task
from printers.capabilities import printer_attributes
from printers.ipp import Attribute, Collection
from printers.operations import Endpoint, Printer

log = logging.getLogger(__name__)

IPP = "_ipp._tcp.local."
IPPS = "_ipps._tcp.local."
PRINT_SUBTYPE = "_print"
"""PWG 5100.14: IPP Everywhere printers announce this subtype of ``_ipp._tcp`` and ``_ipps._tcp``."""
TLS_VERSION = "1.2"
"""The ``TLS`` key: bridge.listeners.tls_server_context sets ``minimum_version`` to TLS 1.2."""
PRIORITY = "50"
"""Bonjour Printing Specification: 0 (most preferred) to 99; 50 when the key is absent."""
TXT_STRING_BYTES = 255
"""RFC 6763 section 6.1: each ``key=value`` string of a TXT record is at most 255 bytes."""
ANNOUNCEMENTS = 2
"""RFC 6762 section 8.3: at least two unsolicited responses, one second apart (the subtype PTRs)."""

# PWG 5101.1 sizes in hundredths of mm: the classes of the Bonjour ``PaperMax`` key, largest first, each
# reached by the US (ANSI) and ISO sizes it is named after.
_PAPER_CLASSES = (
    ("isoC-A2", ((43180, 55880), (42000, 59400))),  # ANSI C (17 x 22 in), ISO A2
    ("tabloid-A3", ((27940, 43180), (29700, 42000))),  # ANSI B / Tabloid (11 x 17 in), ISO A3
    ("legal-A4", ((21590, 27940), (21000, 29700))),  # ANSI A / Letter (8.5 x 11 in; Legal is longer), ISO A4
)
_HOST_LABEL = re.compile(r"[^A-Za-z0-9-]+")


def paper_max(sizes: Iterable[tuple[int, int]]) -> str:
    """The ``PaperMax`` class of the largest of these media sizes (x, y in hundredths of mm).

    A class is reached by a size at least as large as one of its two sizes in both dimensions;
    one larger than a C or A2 sheet is ``>isoC-A2``, one smaller than Letter and A4 ``<legal-A4``.
    """
    x, y = 0, 0
    for width, length in sizes:
        x, y = max(x, min(width, length)), max(y, max(width, length))
    largest = _PAPER_CLASSES[0][1]
    if any(x >= w and y >= h and (x > w or y > h) for w, h in largest):
        return ">isoC-A2"
    for name, pair in _PAPER_CLASSES:
        if any(x >= w and y >= h for w, h in pair):
            return name
    return "<legal-A4"


def _values(attrs: dict[str, Attribute], name: str) -> list[object]:
    attr = attrs.get(name)
    return [] if attr is None else [v.value for v in attr.values]


def _text(attrs: dict[str, Attribute], name: str) -> str:
    values = _values(attrs, name)
    return str(values[0]) if values else ""


def _media_sizes(attrs: dict[str, Attribute]) -> list[tuple[int, int]]:
    sizes = []
    for col in _values(attrs, "media-size-supported"):
        if isinstance(col, Collection):
            x, y = col.get("x-dimension"), col.get("y-dimension")
            if x is not None and y is not None and isinstance(x.first, int) and isinstance(y.first, int):
                sizes.append((x.first, y.first))
    return sizes


def _fit(key: str, value: str) -> str:
    """The value cut so that ``key=value`` is at most 255 bytes, on a character boundary."""
    room = TXT_STRING_BYTES - len(key.encode()) - 1
    return value.encode("utf-8")[:room].decode("utf-8", "ignore")


def txt_record(attributes: Iterable[Attribute], *, tls: bool) -> dict[str, str]:
    """The TXT record of one announced service, from the printer's attributes (as Get-Printer-Attributes
    answers a client that reached it by that service); pure.  ``tls``: the port speaks TLS."""
    attrs = {a.name: a for a in attributes}
    make_and_model = _text(attrs, "printer-make-and-model")
    uris = [str(v) for v in _values(attrs, "printer-uri-supported")]
    sides = [str(v) for v in _values(attrs, "sides-supported")]
    record = {
        "txtvers": "1",
        "qtotal": "1",
        "rp": urlsplit(uris[0]).path.lstrip("/") if uris else "",
        "ty": make_and_model,
        "product": f"({make_and_model})",
        "note": _text(attrs, "printer-location"),
        "adminurl": _text(attrs, "printer-more-info"),
        "pdl": ",".join(str(v) for v in _values(attrs, "document-format-supported")),
        "kind": "document",
        "PaperMax": paper_max(_media_sizes(attrs)),
        "UUID": _text(attrs, "printer-uuid").removeprefix("urn:uuid:"),
        "Color": "T" if True in _values(attrs, "color-supported") else "F",
        "Duplex": "T" if any(s.startswith("two-sided") for s in sides) else "F",
        "air": "username,password" if "basic" in _values(attrs, "uri-authentication-supported") else "none",
        "priority": PRIORITY,
    }
    if tls:
        record["TLS"] = TLS_VERSION
    return {key: _fit(key, value) for key, value in record.items()}


def host_label(hostname: str) -> str:
    """This host's label in ``.local``: the first label of its host name, as a DNS host label."""
    label = _HOST_LABEL.sub("-", hostname.split(".", 1)[0]).strip("-")[:63].strip("-")
    return label or "loginbridge"


def host_addresses(host: str) -> list[str]:
    """The addresses to announce for a printer bound to ``host``: that address, or (it binds every
    address, or names a host) every non-loopback, non-link-local address of this host's interfaces.
    Blocking (it asks the kernel for the interfaces): run it in a thread."""
    try:
        bound: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        bound = None
    if bound is not None and not bound.is_unspecified:
        return [str(bound)]
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for item in adapter.ips:
            if isinstance(item.ip, str):
                ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(item.ip)
            elif bound is not None and bound.version == 4:
                continue  # 0.0.0.0 binds IPv4 only
            else:
                ip = ipaddress.IPv6Address(item.ip[0])
            if not (ip.is_loopback or ip.is_link_local) and str(ip) not in found:
                found.append(str(ip))
    return found


@dataclass(frozen=True, kw_only=True, slots=True)
class Service:
    """One service to register: its type (``_ipps._tcp.local.``) and TXT record."""

    type_: str
    txt: dict[str, str]


async def services(printer: Printer, *, host: str, port: int, resource: str) -> list[Service]:
    """What to announce for this printer, reached as ``host:port``: ``_ipps`` and ``_ipp`` with TLS,
    ``_ipp`` alone without; each TXT record from the printer's attributes for a client of that service."""
    tls = printer.config.tls is not None
    ipp, ipps = f"ipp://{host}:{port}{resource}", f"ipps://{host}:{port}{resource}"
    wanted = [(IPPS, "https", ipps), (IPP, "http", ipp)] if tls else [(IPP, "http", ipp)]
    found = []
    for type_, scheme, uri in wanted:
        # As printers/server.py answers a client off loopback: ipps only where TLS is configured.
        endpoint = Endpoint(printer_uri=uri, more_info=f"{scheme}://{host}:{port}/",
                            printer_uris=((ipps, "tls"),) if tls else ())
        found.append(Service(type_=type_, txt=txt_record(printer_attributes(await printer.status(endpoint)),
                                                          tls=tls)))
    return found


def _subtype(info: AsyncServiceInfo, subtype: str) -> AsyncServiceInfo:
    """The same service instance, typed as ``SUBTYPE._sub.TYPE`` (RFC 6763 section 7.1)."""
    return AsyncServiceInfo(f"{subtype}._sub.{info.type}", info.name, port=info.port, properties=info.properties,
                            server=info.server, addresses=info.addresses_by_version(IPVersion.All))


class Advertiser:
    """The printer's announcement: one zeroconf instance and the services registered with it."""

    def __init__(self, zeroconf: AsyncZeroconf, infos: list[AsyncServiceInfo]) -> None:
        self._zeroconf = zeroconf
        self.infos = infos
        """The services; their names are final once :attr:`announced` is set (a conflict renames them)."""
        self._subtypes: list[AsyncServiceInfo] = []
        self.announced = asyncio.Event()
        """Set once every service is registered and announced."""
        self._task = asyncio.create_task(self._register(), name="printer-dnssd")

    async def _register(self) -> None:
        zc = self._zeroconf.zeroconf
        try:
            # Probing (RFC 6762 section 8.1) of the services at once; a name taken on the link is renamed
            # (RFC 6762 section 9; the Bonjour Printing Specification's "Handling Name Conflicts").
            announcing = await asyncio.gather(*(self._zeroconf.async_register_service(info, allow_name_change=True)
                                                for info in self.infos))
            for info in self.infos:
                sub = _subtype(info, PRINT_SUBTYPE)
                zc.registry.types.setdefault(sub.type.lower(), {})[sub.key] = sub
                self._subtypes.append(sub)
            for i in range(ANNOUNCEMENTS):
                if i:
                    await asyncio.sleep(1)
                for sub in self._subtypes:
                    zc.async_send(zc.generate_service_broadcast(sub, None, broadcast_addresses=False))
                if not i:
                    await asyncio.gather(*announcing)
                    self._announced()
        except Exception as exc:  # whatever zeroconf raises: the printer goes on
            log.warning("DNS-SD: the printer could not be announced (%s: %s); it works, unannounced",
                        type(exc).__name__, exc)

    def _announced(self) -> None:
        info = self.infos[0]
        log.info("DNS-SD: announced %r as %s on %s:%s", info.get_name(),
                 " and ".join(f"{i.type.removesuffix('.local.')},{PRINT_SUBTYPE}" for i in self.infos),
                 (info.server or "").rstrip("."), info.port)
        self.announced.set()

    async def close(self) -> None:
        """Stop announcing: goodbyes for the subtypes, then zeroconf's for the services, and close."""
        await stop_task(self._task)
        zc = self._zeroconf.zeroconf
        try:
            for sub in self._subtypes:
                bucket = zc.registry.types.get(sub.type.lower(), {})
                bucket.pop(sub.key, None)
                if not bucket:
                    zc.registry.types.pop(sub.type.lower(), None)
                zc.async_send(zc.generate_service_broadcast(sub, 0, broadcast_addresses=False))
            await self._zeroconf.async_close()
        except Exception as exc:  # shutting down: nothing else to do about it
            log.warning("DNS-SD: stopping the announcement failed (%s: %s)", type(exc).__name__, exc)


DNSSD = web.AppKey("printer_dnssd", Advertiser)
"""The bridge application's running announcement (absent when off or when it could not start)."""


async def _start(printer: Printer, dnssd: PrinterDnssd, runner: web.BaseRunner, resource: str) -> Advertiser:
    config: PrinterConfig = printer.config
    port = int(runner.addresses[0][1])
    addresses = list(dnssd.interfaces) or await asyncio.to_thread(host_addresses, config.host)
    if not addresses:
        raise OSError("no address of this host to announce")
    server = f"{host_label(socket.gethostname())}.local."
    found = await services(printer, host=server.rstrip("."), port=port, resource=resource)
    v6 = any(ipaddress.ip_address(a).version == 6 for a in addresses)
    # Opens and binds the sockets now; on the event loop's thread, or zeroconf runs its own loop in a thread.
    zeroconf = AsyncZeroconf(interfaces=list(dnssd.interfaces) or InterfaceChoice.All,
                             ip_version=None if dnssd.interfaces else IPVersion.All if v6 else IPVersion.V4Only)
    infos = [AsyncServiceInfo(s.type_, f"{dnssd.name}.{s.type_}", port=port, properties=s.txt, server=server,
                              parsed_addresses=addresses) for s in found]
    return Advertiser(zeroconf, infos)


@contextlib.asynccontextmanager
async def advertised(bridge_app: web.Application, runner: web.BaseRunner, printer: Printer,
                     resource: str) -> AsyncIterator[None]:
    """Announce the printer while inside, when ``printer.dnssd`` is on; a failure to start is a warning.

    ``runner`` is the printer's, started (its ``addresses`` give the bound port); the announcement is
    kept under :data:`DNSSD` in the bridge application.
    """
    dnssd = printer.config.dnssd
    advertiser = None
    if dnssd is not None:
        try:
            advertiser = await _start(printer, dnssd, runner, resource)
        except Exception as exc:  # no multicast, port 5353 not shared...: the printer goes on
            log.warning("DNS-SD: the printer cannot be announced (%s: %s; printer.dnssd.interfaces must be "
                        "addresses of this host, on interfaces with multicast); it works, unannounced",
                        type(exc).__name__, exc)
        else:
            bridge_app[DNSSD] = advertiser
    try:
        yield
    finally:
        if advertiser is not None:
            await advertiser.close()
