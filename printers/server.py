"""The printer's HTTP side: its own aiohttp application and listener, serving ``/ipp/print``.

Authentication happens before the document is sent.  A print queue sends
``Expect: 100-continue`` and waits for ``100 Continue`` before streaming the
document; the route's ``expect_handler`` runs first, checks the Basic
credentials and answers 401 right away when they are missing or refused, so
no document travels twice.  Without credentials only a small body (an
attributes-only request such as Get-Printer-Attributes, which driverless
clients send before they know whom to ask) is let through; the operation then
decides.  IdP outages and lockouts become IPP statuses, not 401s.

A request without verified credentials, with or without ``Expect``, is held
to a small budget (:data:`UNAUTHENTICATED_LIMITS`: bytes, attributes and
values, counted by the decoder): a larger Content-Length is answered 401
before any byte is read, and an attribute section past the budget is 401 for
an operation that needs credentials anyway, client-error-request-entity-too-large
for a public one.  Such requests also share one rate for the whole printer
(:mod:`printers.lane`): past it they wait their turn, or get 503 when it is
too far.  Every attribute section, authenticated or not, is decoded in steps
of a hundred-odd values with the event loop let in between.

The document is never held in memory: the attribute section is decoded from
a bounded prefix, and the rest of the body streams to the spool.

With ``printer.tls`` the port speaks TLS (``ipps://``) and plain HTTP
(``ipp://``) alike (:class:`bridge.listeners.SniffingSite`).  A password may
cross plain HTTP only from ``printer.plain_http_from`` (loopback by default);
from anywhere else a request is answered 426 Upgrade Required before any
credential check and never challenged for Basic over plain HTTP
(:func:`upgrade_required` says why 426).  printer-uri-supported lists the
``ipps`` URI, and the ``ipp`` one when this client may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.streams import StreamReader
from pyipp.enums import IppOperation

from bridge.appkeys import LOGIN, PRINTER_PORT
from bridge.config import BridgeConfig, IPNetwork, PrinterConfig
from bridge.errors import BridgeError, MfaRequired, PasswordLoginUnsupported, StoreError
from bridge.forwarded import client_address, forwarded_middleware
from bridge.listeners import ListenerRunner, SniffingSite, tls_server_context
from bridge.logcontext import request_id_var, tenant_id_var
from bridge.login.service import LoginService
from bridge.state.store import Store
from bridge.tasks import stop_task
from printers.auth import PrintAuthenticator, asks_for_credentials
from printers.delivery import DeliveryWorker, make_sink
from printers.dnssd import advertised
from printers.errors import IppOperationError, PrintAuthRequired, PrinterBusy, PrinterLinkGuesses, PrinterLinkUnknown
from printers.icons import ICON_PATH, make_icons
from printers.identity import load_printer_uuid
from printers.ipp import (
    DEFAULT_LIMITS,
    Attribute,
    AttributeGroup,
    GroupTag,
    IppIncomplete,
    IppMessage,
    IppParseError,
    IppTooLarge,
    IppValueTooLong,
    Limits,
    ValueTag,
    decode_attributes_in_steps,
    encode,
)
from printers.jobs import Owner
from printers.jobstore import JobStore
from printers.lane import Lane
from printers.operations import Endpoint, IppReply, Printer
from printers.request_checks import PUBLIC_OPERATIONS, check_request
from printers.spool import Spool

log = logging.getLogger(__name__)

RESOURCE = "/ipp/print"
PERSONAL = RESOURCE + "/u/{token:[^/]{1,128}}"
"""A personal queue (bridge/state/printlinks.py): the token in the path names the user; no password."""
IPP_CONTENT_TYPE = "application/ipp"
UNAUTHENTICATED_BYTES = 16 * 1024
"""Largest body accepted without credentials: attributes only, never a document."""
UNAUTHENTICATED_LIMITS = Limits(max_attributes_bytes=UNAUTHENTICATED_BYTES, max_attributes=128, max_values=512)
"""What a request without verified credentials may make the decoder do.  A driverless
client's Get-Printer-Attributes (ipptool, CUPS, Windows, macOS) is under 2 KiB and
100 values; more than this is either a print job (it needs credentials) or an attack."""
DECODE_STEP_VALUES = 128
"""Values decoded between two turns of the event loop (about 0.5 ms of CPU)."""
CHALLENGE = 'Basic realm="loginbridge", charset="UTF-8"'
ANONYMOUS_TENANT = "-"
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterRuntime:
    printer: Printer
    auth: PrintAuthenticator | None
    """None only when started with ``auth_required=False`` (benchmarks); never from configuration."""
    lane: Lane
    """The rate that requests without verified credentials share."""
    trusted_proxies: tuple[IPNetwork, ...] = ()
    """``listen.trusted_proxies``: the expect handler runs before the middleware and reads them itself."""
    tls: bool = False
    """``printer.tls`` is set: this listener also speaks TLS, on the same port."""
    plain_http_from: tuple[IPNetwork, ...] | None = None
    """``printer.plain_http_from``: who may send a password over plain HTTP; None: anyone."""
    setup_url: str = ""
    """Where a user gets a personal printer URL (/print/setup on the public URL); the info page links it."""


RUNTIME = web.AppKey("printer_runtime", PrinterRuntime)
PRINTER_RUNNER = web.AppKey("printer_runner", web.AppRunner)
ICONS = web.AppKey("printer_icons", dict[int, bytes])
_OWNER = web.RequestKey("print_owner", Owner)
_AUTH_ERROR = web.RequestKey("print_auth_error", BridgeError)
_AUTH_DONE = web.RequestKey("print_auth_done", bool)
_LINK_ERROR = web.RequestKey("print_link_error", BridgeError)
_REQUEST_ID = web.RequestKey("print_request_id", str)


def _request_id(request: web.Request) -> str:
    """One id per HTTP request, shared by the expect handler and the handler (same task)."""
    rid = request.get(_REQUEST_ID)
    if rid is None:
        rid = request[_REQUEST_ID] = secrets.token_hex(6)
    request_id_var.set(rid)
    return rid


def unauthorized() -> web.Response:
    """401 with a Basic challenge and ``Connection: close``.

    Before ``100 Continue`` the client sends no document; it may still have
    sent the IPP attributes (libcups writes them at once), which aiohttp reads
    and drops until the client closes: closing at once would reset the
    connection before the client reads the 401.
    """
    resp = web.Response(status=401, text="Authentication required.\n", headers={hdrs.WWW_AUTHENTICATE: CHALLENGE})
    resp.force_close()
    return resp


def upgrade_required(request: web.BaseRequest) -> web.Response:
    """426 Upgrade Required (RFC 2817 section 4.2): what a client that may not send a password in clear gets.

    Sent where a 401 would be (a request without credentials that needs them)
    and to a request that brought Basic credentials over plain HTTP anyway,
    which are then not checked: the IdP is never asked about a password that
    crossed the network in clear.  Why 426 rather than an IPP status:

    * libcups (CUPS's ipp backend, ``lp`` through cupsd, ipptool) reacts to 426
      by reconnecting and asking for TLS on the same port (``OPTIONS *`` with
      ``Upgrade: TLS/1.2``), which :class:`bridge.listeners.SniffingSite`
      grants: the job then goes through over TLS, and the Basic challenge and
      the password come after the upgrade.  This is cupsd's own behaviour
      (``DefaultEncryption Required``), so the queue needs no change.
    * client-error-not-authorized / client-error-forbidden would make CUPS's ipp
      backend hold the job for authentication and ask the user for the password
      again, which would be refused again: a loop with a misleading prompt.
    * Windows' IPP class driver and Mopria clients follow neither; they show a
      connection or access error whatever the status, and have to be set up
      with the ipps:// (Windows: https://) URI.  The body says which one.

    No ``WWW-Authenticate`` either way: a challenge over plain HTTP would invite
    the password in clear.
    """
    uri = f"ipps://{_host(request)}{_resource(request)}"
    text = f"This printer takes passwords only over TLS: use {uri}\n"
    resp = web.Response(status=426, text=text, headers={hdrs.UPGRADE: "TLS/1.2, HTTP/1.1",
                                                        hdrs.CONNECTION: "Upgrade, close"})
    resp.force_close()
    return resp


def _ip_in(address: str | None, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def _over_tls(request: web.BaseRequest, rt: PrinterRuntime) -> bool:
    """The client's request came over TLS: to this listener, or to a trusted proxy that says so.

    ``X-Forwarded-Proto`` counts only when the TCP peer is in ``listen.trusted_proxies``
    (as ``X-Forwarded-For`` does), and only when every value in it is ``https``: a proxy
    that appends its own value after one the client sent cannot be talked into TLS.
    """
    transport = request.transport
    if transport is None:
        return False
    if transport.get_extra_info("sslcontext") is not None:
        return True
    peer = transport.get_extra_info("peername")
    if not rt.trusted_proxies or not isinstance(peer, tuple) or not _ip_in(str(peer[0]), rt.trusted_proxies):
        return False
    protos = [v.strip().lower() for line in request.headers.getall(hdrs.X_FORWARDED_PROTO, []) for v in line.split(",")]
    return bool(protos) and all(proto == "https" for proto in protos)


def _plain_allowed(request: web.BaseRequest, rt: PrinterRuntime) -> bool:
    """This client may send a password over plain HTTP (``printer.plain_http_from``)."""
    return rt.plain_http_from is None or _ip_in(client_address(request, rt.trusted_proxies), rt.plain_http_from)


def _may_send_password(request: web.BaseRequest, rt: PrinterRuntime) -> bool:
    return _over_tls(request, rt) or _plain_allowed(request, rt)


def _challenge(request: web.BaseRequest, rt: PrinterRuntime) -> web.Response:
    """Ask for credentials: 401 with a Basic challenge, or 426 where a password may not come in clear."""
    if _may_send_password(request, rt):
        return unauthorized()
    log.info("credentials needed over plain HTTP from %s (not in printer.plain_http_from): 426, no Basic challenge",
             client_address(request, rt.trusted_proxies))
    return upgrade_required(request)


def busy(exc: PrinterBusy) -> web.Response:
    """503 with Retry-After and ``Connection: close``, before any byte of the body is read."""
    resp = web.Response(status=503, text="The printer is busy; try again.\n",
                        headers={hdrs.RETRY_AFTER: str(exc.retry_after)})
    resp.force_close()
    return resp


async def _turn(rt: PrinterRuntime) -> web.Response | None:
    """Wait for this request's turn in the lane (a sleep, no CPU); a 503 to send when it is too far away."""
    try:
        wait = rt.lane.admit()
    except PrinterBusy as exc:
        log.info("print request without credentials refused: %s", exc.detail)
        await asyncio.sleep(exc.hold)
        return busy(exc)
    if wait:
        await asyncio.sleep(wait)
    return None


async def _authenticate(request: web.Request, rt: PrinterRuntime, *, expecting: bool) -> web.Response | None:
    """Check the credentials once per request, before any byte of the body; a Response means: answer this now.

    A request that ends without verified credentials (none, refused, or not
    checkable while the IdP is down) takes its turn in the lane first, 401s
    included: a sender looping on cheap refusals is paced like the others.
    ``expecting``: the client waits for 100 Continue, so a chunked body without
    credentials can be refused before it is sent.
    """
    request[_AUTH_DONE] = True
    if rt.auth is None:
        return None
    if "token" in request.match_info:
        return await _authenticate_link(request, rt, rt.auth)
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None and not _may_send_password(request, rt):
        if (refused := await _turn(rt)) is not None:
            return refused
        log.warning("print credentials sent over plain HTTP from %s (not in printer.plain_http_from): 426, "
                    "not checked", client_address(request, rt.trusted_proxies))
        return upgrade_required(request)
    if header is None:
        if (refused := await _turn(rt)) is not None:
            return refused
        length = request.content_length
        if (length is None and expecting) or (length is not None and length > UNAUTHENTICATED_BYTES):
            log.info("print request without credentials: asked for them before the document")
            return _challenge(request, rt)
        return None  # the operation decides (Get-Printer-Attributes needs no credentials)
    try:
        # The expect handler runs before the middleware, so the rule is applied here too (again: a no-op).
        request[_OWNER] = await rt.auth.authenticate(header, source=client_address(request, rt.trusted_proxies))
    except BridgeError as exc:
        if (refused := await _turn(rt)) is not None:
            return refused
        if asks_for_credentials(exc):
            log.info("print credentials refused: %s", exc.code)
            return unauthorized()  # they were allowed to come (TLS or plain_http_from): ask again
        log.warning("print credentials could not be checked: %s", exc.code)
        request[_AUTH_ERROR] = exc
    return None


def _resource(request: web.BaseRequest) -> str:
    """The queue's path: the shared printer, or a personal queue (its token included)."""
    token = request.match_info.get("token") if isinstance(request, web.Request) else None
    return RESOURCE if token is None else f"{RESOURCE}/u/{token}"


async def _authenticate_link(request: web.Request, rt: PrinterRuntime, auth: PrintAuthenticator
                             ) -> web.Response | None:
    """A personal queue: the token in the path is the credential (a Basic header is ignored).

    The token is a secret like a password, so it is refused over plain HTTP where a
    password would be (426, and it is not looked up). Unknown tokens are throttled per
    source (429 with Retry-After); an unknown, expired or revoked link, or a disabled
    user, gets an IPP error for every operation with a message saying where to set up
    again, never a Basic challenge (there is no password to give).
    """
    if not _may_send_password(request, rt):
        if (refused := await _turn(rt)) is not None:
            return refused
        log.warning("personal printer link over plain HTTP from %s (not in printer.plain_http_from): 426, "
                    "not looked up", client_address(request, rt.trusted_proxies))
        return upgrade_required(request)
    source = client_address(request, rt.trusted_proxies)
    try:
        request[_OWNER] = await auth.authenticate_link(request.match_info["token"], source=source)
    except PrinterLinkGuesses as exc:
        resp = web.Response(status=429, text="Too many invalid printer addresses from this address.\n",
                            headers={hdrs.RETRY_AFTER: str(exc.retry_after)})
        resp.force_close()
        return resp
    except BridgeError as exc:
        if (refused := await _turn(rt)) is not None:
            return refused
        if isinstance(exc, StoreError):
            request[_AUTH_ERROR] = exc
            return None
        log.info("personal printer link refused: %s", exc.code)
        request[_LINK_ERROR] = exc if isinstance(exc, PrinterLinkUnknown) else PrinterLinkUnknown(
            f"the link's user cannot print: {exc.code}")
    return None


def _encoded_body(request: web.BaseRequest) -> web.Response | None:
    """415 for a body with a Content-Encoding: aiohttp would inflate it with no bound but the per-job cap and
    no ratio check (a bomb). IPP clients compress only the document, with "compression" (printers/compression.py).
    """
    if request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() in ("", "identity"):
        return None
    resp = web.Response(status=415, text="Use the IPP compression attribute, not Content-Encoding.\n",
                        headers={hdrs.ACCEPT_ENCODING: "identity"})
    resp.force_close()
    return resp


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """Runs before the body is read (and before middlewares): authenticate, then 100 Continue."""
    if request.version != HttpVersion11:
        return None
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return web.Response(status=417, text="Unknown Expect header.\n")
    if (refused := _encoded_body(request)) is not None:
        return refused  # before 100 Continue: the client sends nothing
    _request_id(request)
    early = await _authenticate(request, request.app[RUNTIME], expecting=True)
    if early is not None:
        return early
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


class _RequestHead:
    """The attribute section as it arrives: read within ``limits``, decoded in steps."""

    def __init__(self, content: StreamReader, limits: Limits) -> None:
        self.content = content
        self.limits = limits
        self.buf = bytearray()

    @property
    def version(self) -> tuple[int, int]:
        """The request's version once its first octets are in (a response echoes it), else 1.1."""
        return (self.buf[0], self.buf[1]) if len(self.buf) >= 2 else (1, 1)

    @property
    def request_id(self) -> int:
        return int.from_bytes(self.buf[4:8], "big", signed=True) if len(self.buf) >= 8 else 0

    @property
    def operation(self) -> int | None:
        return int.from_bytes(self.buf[2:4], "big") if len(self.buf) >= 4 else None

    async def read(self) -> tuple[IppMessage, bytes]:
        """The decoded attribute section and the bytes after it (the document's start)."""
        buf = self.buf
        cap = self.limits.max_attributes_bytes
        next_try = 0
        while True:
            chunk = await self.content.readany()
            buf += chunk
            if chunk and len(buf) < next_try and len(buf) <= cap:
                continue  # decode again only when the prefix doubled: linear work for trickled bytes
            try:
                msg, offset = await self._decode()
            except IppIncomplete:
                if not chunk:
                    raise
                next_try = 2 * len(buf)
                continue
            return msg, bytes(buf[offset:])

    async def _decode(self) -> tuple[IppMessage, int]:
        steps = decode_attributes_in_steps(self.buf, limits=self.limits, step_values=DECODE_STEP_VALUES)
        try:
            while True:
                next(steps)
                await asyncio.sleep(0)  # one step done: let other requests (and logins) run
        except StopIteration as done:
            result: tuple[IppMessage, int] = done.value
            return result
        finally:
            steps.close()


async def _document(first: bytes, content: StreamReader) -> AsyncIterator[bytes]:
    if first:
        yield first
    while chunk := await content.readany():
        yield chunk


def _host(request: web.BaseRequest) -> str:
    """HOST:PORT as the client named the printer (its Host header), else the listening address."""
    host = request.headers.get(hdrs.HOST, "")
    if _HOST.match(host):
        return host
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if not sock:
        return "localhost"
    address = str(sock[0])
    return f"[{address}]:{sock[1]}" if ":" in address else f"{address}:{sock[1]}"


def _endpoint(request: web.Request, rt: PrinterRuntime) -> Endpoint:
    """The URIs for this client: the scheme it used, and the ones it may use (ipps first: the one to prefer)."""
    host = _host(request)
    resource = _resource(request)
    ipp, ipps = f"ipp://{host}{resource}", f"ipps://{host}{resource}"
    tls = _over_tls(request, rt)
    uris: tuple[tuple[str, str], ...] = ()
    if tls or rt.tls:
        plain = rt.auth is None or _plain_allowed(request, rt)
        uris = ((ipps, "tls"), (ipp, "none")) if plain else ((ipps, "tls"),)
    return Endpoint(printer_uri=ipps if tls else ipp, more_info=f"{'https' if tls else 'http'}://{host}/",
                    printer_uris=uris)


def _response(version: tuple[int, int], request_id: int, reply: IppReply, unsupported: tuple[Attribute, ...] = ()
              ) -> web.Response:
    operation = [Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8"),
                 Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en")]
    if reply.message:
        operation.append(Attribute.of("status-message", ValueTag.TEXT, reply.message[:255]))
    groups = [AttributeGroup(tag=GroupTag.OPERATION, attributes=tuple(operation))]
    if unsupported:
        groups.append(AttributeGroup(tag=GroupTag.UNSUPPORTED, attributes=unsupported))
    groups.extend(reply.groups)
    body = encode(IppMessage(version=version, code=reply.status, request_id=request_id, groups=tuple(groups)))
    return web.Response(body=body, content_type=IPP_CONTENT_TYPE)


SECOND_STEP_MESSAGE = (
    "Printing with a password is not available for this account: your company requires another sign-in step. "
    "Get a personal printer address at this service's /print/setup page, signing in on your company's page.")


def _error_reply(exc: BridgeError) -> IppReply:
    # IPP-level refusals explain themselves; anything else shows only the panel text (the panel's "sign in
    # with phone" advice does not fit a print queue).
    if isinstance(exc, MfaRequired | PasswordLoginUnsupported):
        return IppReply(status=exc.ipp_status, message=SECOND_STEP_MESSAGE)
    message = exc.detail if isinstance(exc, IppOperationError | IppParseError) else exc.message
    return IppReply(status=exc.ipp_status, message=message)


async def ipp_handler(request: web.Request) -> web.StreamResponse:
    rid = request_id_var.set(request_id_var.get())
    tid = tenant_id_var.set(tenant_id_var.get())
    try:
        _request_id(request)
        return await _handle(request)
    finally:
        tenant_id_var.reset(tid)
        request_id_var.reset(rid)


async def _handle(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    if request.content_type != IPP_CONTENT_TYPE:
        resp = web.Response(status=400, text="Content-Type must be application/ipp.\n")
        resp.force_close()
        return resp
    if (refused := _encoded_body(request)) is not None:
        return refused
    if not request.get(_AUTH_DONE):
        early = await _authenticate(request, rt, expecting=False)
        if early is not None:
            return early
    anonymous = rt.auth is not None and request.get(_OWNER) is None
    head = _RequestHead(request.content, UNAUTHENTICATED_LIMITS if anonymous else DEFAULT_LIMITS)
    try:
        msg, rest = await head.read()
    except IppParseError as exc:
        resp = _unreadable(head, exc, anonymous=anonymous, challenge=lambda: _challenge(request, rt))
        resp.force_close()
        return resp
    try:
        req = check_request(msg, resource=_resource(request))
        if (link_error := request.get(_LINK_ERROR)) is not None:
            raise link_error  # every operation: an unknown personal queue shows nothing
        owner = request.get(_OWNER)
        if owner is not None:
            tenant_id_var.set(owner.tenant_id)
        if req.needs_auth and (auth_error := request.get(_AUTH_ERROR)) is not None:
            raise auth_error
        if rt.auth is None and owner is None:
            owner = _anonymous(req)
        reply = await rt.printer.handle(req, owner, _endpoint(request, rt), _document(rest, request.content))
        unsupported: tuple[Attribute, ...] = ()
    except PrintAuthRequired:
        log.info("%s without credentials: asking for them", _operation_name(msg.code))
        return _challenge(request, rt)
    except BridgeError as exc:
        level = logging.WARNING if exc.ipp_status >= 0x0500 else logging.INFO
        log.log(level, "IPP request refused: %s (0x%04x) %s", exc.code, exc.ipp_status, exc.detail)
        reply = _error_reply(exc)
        unsupported = exc.unsupported if isinstance(exc, IppOperationError) else ()
    resp = _response(msg.version, msg.request_id, reply, unsupported)
    if not request.content.is_eof():
        resp.force_close()
    return resp


def _operation_name(code: int) -> str:
    return IppOperation(code).name if code in IppOperation._value2member_map_ else f"operation 0x{code:04x}"


def _unreadable(head: _RequestHead, exc: IppParseError, *, anonymous: bool,
                challenge: Callable[[], web.Response]) -> web.Response:
    """The answer to an attribute section that could not be decoded within its limits.

    Without credentials, a section past the budget is 401 unless the operation
    is public: it needs credentials anyway, and a print queue then asks for
    them and sends the request again with the authenticated budget.
    """
    operation = head.operation
    if anonymous and isinstance(exc, IppTooLarge | IppValueTooLong) and operation not in PUBLIC_OPERATIONS:
        log.info("%s without credentials over the unauthenticated budget (%s): asking for them",
                 _operation_name(operation) if operation is not None else "request", exc.detail)
        return challenge()
    log.info("unreadable IPP request%s: %s", " without credentials" if anonymous else "", exc.detail)
    return _response(head.version, head.request_id, _error_reply(exc))


def _anonymous(req: object) -> Owner:
    """Benchmark mode only: every job belongs to one anonymous user."""
    return Owner(tenant_id=ANONYMOUS_TENANT, email="anonymous")


async def info_page(request: web.Request) -> web.Response:
    """printer-more-info: a page saying what this printer is."""
    rt = request.app[RUNTIME]
    name = html.escape(rt.printer.config.name)
    text = (f"<!doctype html><title>{name}</title><h1>{name}</h1>"
            f"<p>{html.escape(rt.printer.config.info)}. Print with your email address and password.</p>")
    if rt.setup_url:
        text += (f'<p>A printer address of your own, that never asks for a password: '
                 f'<a href="{html.escape(rt.setup_url)}">{html.escape(rt.setup_url)}</a></p>')
    return web.Response(text=text, content_type="text/html")


async def icon(request: web.Request) -> web.Response:
    """printer-icons: the PNGs drawn at start-up; public, like the info page."""
    png = request.app[ICONS].get(int(request.match_info["size"]))
    if png is None:
        raise web.HTTPNotFound()
    return web.Response(body=png, content_type="image/png", headers={hdrs.CACHE_CONTROL: "max-age=86400"})


def make_printer_app(
    config: BridgeConfig, login_source: Callable[[], LoginService] | None = None, *, auth_required: bool = True
) -> web.Application:
    """The printer's application; its cleanup_ctx owns the spool and the delivery worker.

    ``login_source`` returns the bridge's LoginService (it exists once the bridge
    application has started); the jobs live in its store.  Without one (the ingest
    benchmark and the crash tests, ``auth_required=False``) the printer opens the
    configured store itself.
    """
    printer_config = config.printer
    if printer_config is None:
        raise ValueError("the configuration has no printer section")
    if auth_required and login_source is None:
        raise ValueError("an authenticating printer needs the bridge's LoginService")
    middlewares = [forwarded_middleware(config.trusted_proxies)] if config.trusted_proxies else []
    app = web.Application(client_max_size=1024**2, middlewares=middlewares)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if login_source is not None:
                store = login_source().store
            else:
                store = await Store.open(config.store_url)
                stack.push_async_callback(store.close)
            runtime, worker = await _open(config, printer_config, store, login_source, auth_required)
            stack.push_async_callback(worker.sink.close)
            app[RUNTIME] = runtime
            task = asyncio.create_task(worker.run(), name="print-delivery")
            try:
                yield
            finally:
                await stop_task(task)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("POST", RESOURCE, ipp_handler, expect_handler=expect_handler)
    app.router.add_route("POST", RESOURCE + "/{job_id:[0-9]+}", ipp_handler, expect_handler=expect_handler)
    app.router.add_route("POST", PERSONAL, ipp_handler, expect_handler=expect_handler)
    app.router.add_route("POST", PERSONAL + "/{job_id:[0-9]+}", ipp_handler, expect_handler=expect_handler)
    app.router.add_get("/", info_page)
    app[ICONS] = make_icons()
    app.router.add_get(ICON_PATH.format(size="{size:[0-9]+}"), icon)
    return app


async def _open(config: BridgeConfig, printer_config: PrinterConfig, store: Store,
                login_source: Callable[[], LoginService] | None,
                auth_required: bool) -> tuple[PrinterRuntime, DeliveryWorker]:
    jobs = JobStore(store.database)
    await jobs.import_legacy(config.state_dir)
    spool = Spool(printer_config.spool_dir, printer_config.max_job_bytes)
    await asyncio.to_thread(spool.prepare)
    printer = Printer(config=printer_config, jobs=jobs, spool=spool,
                      uuid=await load_printer_uuid(store.database, config.state_dir), auth_required=auth_required)
    auth = None
    if auth_required:
        assert login_source is not None
        auth = PrintAuthenticator(login_source(), hmac_key=config.hmac_key, ttl=printer_config.verification_cache)
    worker = DeliveryWorker(jobs=jobs, spool=spool, sink=make_sink(printer_config.delivery),
                            config=printer_config.delivery, wake=printer.job_ready,
                            chores=() if auth is None else (auth.prune,))
    await worker.start_up()
    return PrinterRuntime(printer=printer, auth=auth, lane=Lane(), trusted_proxies=config.trusted_proxies,
                          tls=printer_config.tls is not None, plain_http_from=printer_config.plain_http_from,
                          setup_url=f"{config.public_url.rstrip('/')}/print/setup" if auth_required else ""), worker


def printer_listener(config: BridgeConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx for the bridge application: serve the printer on its own listener.

    Append it after the context that opens the LoginService.  The runner is
    kept under PRINTER_RUNNER (its ``addresses`` give the bound port).
    """
    printer_config = config.printer
    assert printer_config is not None

    async def ctx(bridge_app: web.Application) -> AsyncIterator[None]:
        # The same header deadline and idle timeout as the API listener; a document's body is not under them.
        runner = ListenerRunner(make_printer_app(config, lambda: bridge_app[LOGIN]), access_log=None,
                                header_timeout=config.listener_timeouts.header,
                                idle_timeout=config.listener_timeouts.idle)
        await runner.setup()
        tls = printer_config.tls
        site: web.BaseSite
        if tls is None:
            site = web.TCPSite(runner, printer_config.host, printer_config.port)
        else:  # TLS and plain HTTP on the one port, as CUPS does
            context = await asyncio.to_thread(tls_server_context, tls.cert, tls.key)
            site = SniffingSite(runner, printer_config.host, printer_config.port, ssl_context=context)
        await site.start()
        bridge_app[PRINTER_RUNNER] = runner
        if runner.addresses:
            bridge_app[PRINTER_PORT] = int(runner.addresses[0][1])  # personal printer URLs name the bound port
        where = f"{printer_config.host}:{runner.addresses[0][1] if runner.addresses else printer_config.port}"
        log.info("Print-to-Web printer listening on %sipp://%s%s", f"ipps://{where}{RESOURCE} and " if tls else "",
                 where, RESOURCE)
        try:
            # printer.dnssd: announced while the printer serves, goodbyes before the port closes
            async with advertised(bridge_app, runner, runner.app[RUNTIME].printer, RESOURCE):
                yield
        finally:
            await runner.cleanup()

    return ctx
