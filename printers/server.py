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
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.streams import StreamReader
from pyipp.enums import IppOperation

from bridge.appkeys import LOGIN
from bridge.config import BridgeConfig, IPNetwork, PrinterConfig
from bridge.errors import BridgeError
from bridge.forwarded import client_address, forwarded_middleware
from bridge.listeners import ListenerRunner
from bridge.logcontext import request_id_var, tenant_id_var
from bridge.login.service import LoginService
from bridge.state.store import Store
from printers.auth import PrintAuthenticator, asks_for_credentials
from printers.delivery import DeliveryWorker, make_sink
from printers.errors import IppOperationError, PrintAuthRequired, PrinterBusy
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


RUNTIME = web.AppKey("printer_runtime", PrinterRuntime)
PRINTER_RUNNER = web.AppKey("printer_runner", web.AppRunner)
ICONS = web.AppKey("printer_icons", dict[int, bytes])
_OWNER = web.RequestKey("print_owner", Owner)
_AUTH_ERROR = web.RequestKey("print_auth_error", BridgeError)
_AUTH_DONE = web.RequestKey("print_auth_done", bool)
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
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        if (refused := await _turn(rt)) is not None:
            return refused
        length = request.content_length
        if (length is None and expecting) or (length is not None and length > UNAUTHENTICATED_BYTES):
            log.info("print request without credentials: 401 before the document")
            return unauthorized()
        return None  # the operation decides (Get-Printer-Attributes needs no credentials)
    try:
        # The expect handler runs before the middleware, so the rule is applied here too (again: a no-op).
        request[_OWNER] = await rt.auth.authenticate(header, source=client_address(request, rt.trusted_proxies))
    except BridgeError as exc:
        if (refused := await _turn(rt)) is not None:
            return refused
        if asks_for_credentials(exc):
            log.info("print credentials refused: %s", exc.code)
            return unauthorized()
        log.warning("print credentials could not be checked: %s", exc.code)
        request[_AUTH_ERROR] = exc
    return None


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """Runs before the body is read (and before middlewares): authenticate, then 100 Continue."""
    if request.version != HttpVersion11:
        return None
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return web.Response(status=417, text="Unknown Expect header.\n")
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


def _endpoint(request: web.Request) -> Endpoint:
    host = request.headers.get(hdrs.HOST, "")
    if not _HOST.match(host):
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        host = f"{sock[0]}:{sock[1]}" if sock else "localhost"
    return Endpoint(printer_uri=f"ipp://{host}{RESOURCE}", more_info=f"http://{host}/")


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


def _error_reply(exc: BridgeError) -> IppReply:
    # IPP-level refusals explain themselves; anything else shows only the panel text.
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
    if not request.get(_AUTH_DONE):
        early = await _authenticate(request, rt, expecting=False)
        if early is not None:
            return early
    anonymous = rt.auth is not None and request.get(_OWNER) is None
    head = _RequestHead(request.content, UNAUTHENTICATED_LIMITS if anonymous else DEFAULT_LIMITS)
    try:
        msg, rest = await head.read()
    except IppParseError as exc:
        resp = _unreadable(head, exc, anonymous=anonymous)
        resp.force_close()
        return resp
    try:
        req = check_request(msg, resource=RESOURCE)
        owner = request.get(_OWNER)
        if owner is not None:
            tenant_id_var.set(owner.tenant_id)
        if req.needs_auth and (auth_error := request.get(_AUTH_ERROR)) is not None:
            raise auth_error
        if rt.auth is None and owner is None:
            owner = _anonymous(req)
        reply = await rt.printer.handle(req, owner, _endpoint(request), _document(rest, request.content))
        unsupported: tuple[Attribute, ...] = ()
    except PrintAuthRequired:
        log.info("%s without credentials: 401", _operation_name(msg.code))
        return unauthorized()
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


def _unreadable(head: _RequestHead, exc: IppParseError, *, anonymous: bool) -> web.Response:
    """The answer to an attribute section that could not be decoded within its limits.

    Without credentials, a section past the budget is 401 unless the operation
    is public: it needs credentials anyway, and a print queue then asks for
    them and sends the request again with the authenticated budget.
    """
    operation = head.operation
    if anonymous and isinstance(exc, IppTooLarge | IppValueTooLong) and operation not in PUBLIC_OPERATIONS:
        log.info("%s without credentials over the unauthenticated budget (%s): 401",
                 _operation_name(operation) if operation is not None else "request", exc.detail)
        return unauthorized()
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
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("POST", RESOURCE, ipp_handler, expect_handler=expect_handler)
    app.router.add_route("POST", RESOURCE + "/{job_id:[0-9]+}", ipp_handler, expect_handler=expect_handler)
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
    return PrinterRuntime(printer=printer, auth=auth, lane=Lane(), trusted_proxies=config.trusted_proxies), worker


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
        site = web.TCPSite(runner, printer_config.host, printer_config.port)
        await site.start()
        bridge_app[PRINTER_RUNNER] = runner
        log.info("Print-to-Web printer listening on ipp://%s:%s%s", printer_config.host,
                 runner.addresses[0][1] if runner.addresses else printer_config.port, RESOURCE)
        try:
            yield
        finally:
            await runner.cleanup()

    return ctx
