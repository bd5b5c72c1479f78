"""The printer's HTTP side: its own aiohttp application and listener, serving ``/ipp/print``.

Authentication happens before the document is sent.  A print queue sends
``Expect: 100-continue`` and waits for ``100 Continue`` before streaming the
document; the route's ``expect_handler`` runs first, checks the Basic
credentials and answers 401 right away when they are missing or refused, so
no document travels twice.  Without credentials only a small body (an
attributes-only request such as Get-Printer-Attributes, which driverless
clients send before they know whom to ask) is let through; the operation then
decides.  IdP outages and lockouts become IPP statuses, not 401s.

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
from pyipp.enums import IppStatus

from bridge.appkeys import LOGIN
from bridge.config import BridgeConfig, PrinterConfig
from bridge.errors import BridgeError
from bridge.logcontext import request_id_var, tenant_id_var
from bridge.login.service import LoginService
from printers.auth import PrintAuthenticator, asks_for_credentials
from printers.delivery import DeliveryWorker, make_sink
from printers.errors import IppOperationError, PrintAuthRequired
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
    ValueTag,
    decode_attributes,
    encode,
)
from printers.jobs import Owner
from printers.jobstore import JobStore
from printers.operations import Endpoint, IppReply, Printer
from printers.request_checks import check_request
from printers.spool import Spool

log = logging.getLogger(__name__)

RESOURCE = "/ipp/print"
IPP_CONTENT_TYPE = "application/ipp"
SMALL_BODY = 64 * 1024
"""Largest body accepted without credentials: attributes only, never a document."""
CHALLENGE = 'Basic realm="loginbridge", charset="UTF-8"'
ANONYMOUS_TENANT = "-"
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterRuntime:
    printer: Printer
    auth: PrintAuthenticator | None
    """None only when started with ``auth_required=False`` (benchmarks); never from configuration."""


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


async def _authenticate(request: web.Request, rt: PrinterRuntime, *, before_body: bool) -> web.Response | None:
    """Check the credentials once per request; a Response means: answer this now."""
    request[_AUTH_DONE] = True
    if rt.auth is None:
        return None
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        length = request.content_length
        if before_body and (length is None or length > SMALL_BODY):
            log.info("print request without credentials: 401 before the document")
            return unauthorized()
        return None  # the operation decides (Get-Printer-Attributes needs no credentials)
    try:
        request[_OWNER] = await rt.auth.authenticate(header, source=request.remote)
    except BridgeError as exc:
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
    early = await _authenticate(request, request.app[RUNTIME], before_body=True)
    if early is not None:
        return early
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


async def _read_header(content: StreamReader) -> tuple[IppMessage, bytes]:
    """Decode the attribute section from a bounded prefix; return it and the bytes after it."""
    buf = bytearray()
    next_try = 0
    while True:
        chunk = await content.readany()
        buf += chunk
        if chunk and len(buf) < next_try:
            continue  # decode again only when the prefix doubled: linear work for trickled bytes
        try:
            msg, offset = decode_attributes(buf, limits=DEFAULT_LIMITS)
        except IppIncomplete:
            if not chunk:
                raise
            next_try = 2 * len(buf)
            continue
        return msg, bytes(buf[offset:])


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
        early = await _authenticate(request, rt, before_body=False)
        if early is not None:
            return early
    try:
        msg, rest = await _read_header(request.content)
    except IppParseError as exc:
        log.info("unreadable IPP request: %s", exc.detail)
        resp = _response((1, 1), 0, _error_reply(exc))
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
        log.info("%s without credentials: 401", IppStatus(msg.code).name if msg.code in IppStatus._value2member_map_
                 else msg.code)
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
    """The printer's application; its cleanup_ctx owns the job store, spool and delivery worker.

    ``login_source`` returns the bridge's LoginService (it exists once the
    bridge application has started); ``auth_required=False`` is for the
    ingest benchmark only.
    """
    printer_config = config.printer
    if printer_config is None:
        raise ValueError("the configuration has no printer section")
    if auth_required and login_source is None:
        raise ValueError("an authenticating printer needs the bridge's LoginService")
    app = web.Application(client_max_size=1024**2)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        runtime, worker = _open(config, printer_config, login_source, auth_required)
        app[RUNTIME] = runtime
        task = asyncio.create_task(worker.run(), name="print-delivery")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await worker.sink.close()
            runtime.printer.jobs.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("POST", RESOURCE, ipp_handler, expect_handler=expect_handler)
    app.router.add_route("POST", RESOURCE + "/{job_id:[0-9]+}", ipp_handler, expect_handler=expect_handler)
    app.router.add_get("/", info_page)
    app[ICONS] = make_icons()
    app.router.add_get(ICON_PATH.format(size="{size:[0-9]+}"), icon)
    return app


def _open(config: BridgeConfig, printer_config: PrinterConfig, login_source: Callable[[], LoginService] | None,
          auth_required: bool) -> tuple[PrinterRuntime, DeliveryWorker]:
    jobs = JobStore.open(config.state_dir)
    spool = Spool(printer_config.spool_dir, printer_config.max_job_bytes)
    spool.prepare(jobs.referenced_files())
    printer = Printer(config=printer_config, jobs=jobs, spool=spool, uuid=load_printer_uuid(config.state_dir),
                      auth_required=auth_required)
    auth = None
    if auth_required:
        assert login_source is not None
        auth = PrintAuthenticator(login_source(), hmac_key=config.hmac_key, ttl=printer_config.verification_cache)
    worker = DeliveryWorker(jobs=jobs, spool=spool, sink=make_sink(printer_config.delivery),
                            config=printer_config.delivery, wake=printer.job_ready)
    worker.recover()
    return PrinterRuntime(printer=printer, auth=auth), worker


def printer_listener(config: BridgeConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx for the bridge application: serve the printer on its own listener.

    Append it after the context that opens the LoginService.  The runner is
    kept under PRINTER_RUNNER (its ``addresses`` give the bound port).
    """
    printer_config = config.printer
    assert printer_config is not None

    async def ctx(bridge_app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(make_printer_app(config, lambda: bridge_app[LOGIN]), access_log=None)
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
