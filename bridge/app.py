"""The aiohttp application: what it holds, how errors become answers, how it runs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web

from bridge.adminapi import mount_admin_api
from bridge.appkeys import AUDIT, CONFIG, GUARD, IDPS, LOGIN, METRICS, PAIRING, STORE
from bridge.config import BridgeConfig, load_config
from bridge.console import mount_console
from bridge.directory.schedule import directory_schedule
from bridge.errors import BridgeError, ConfigError, ConfigErrors, RequestTimeout, TemporarilyLocked
from bridge.forwarded import forwarded_middleware
from bridge.idp.saml.spkeys import ensure_sp_keys
from bridge.listeners import ListenerRunner
from bridge.logcontext import request_id_var, setup_logging, tenant_id_var
from bridge.login.guard import LoginGuard
from bridge.login.pairing import PairingService
from bridge.login.service import IdpRegistry, LoginService
from bridge.login.tenants import LiveTenants
from bridge.login.throttle import LoginThrottle
from bridge.metrics import BridgeMetrics
from bridge.printsetup import mount_print_setup
from bridge.scim.http import mount_scim
from bridge.state.audit import AuditLog
from bridge.state.store import Store
from bridge.tasks import stop_task
from bridge.websignin import mount_web_signin
from connectors import apps, mfp, pairing, saml, service, session
from printers.server import printer_listener

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: BridgeError) -> web.Response:
    headers = {}
    if isinstance(exc, TemporarilyLocked):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="loginbridge", charset="UTF-8"'
    response = web.json_response(exc.to_json(), status=exc.http_status, headers=headers)
    if isinstance(exc, RequestTimeout):
        response.force_close()  # a stalled body: do not wait for the rest of it
    return response


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id for the logs, and the one place errors become answers."""
    request_id = request.headers.get("X-Request-Id", "")
    if not request_id or len(request_id) > 64 or not request_id.isascii() or not request_id.isprintable():
        request_id = secrets.token_hex(6)
    rid_token = request_id_var.set(request_id)
    tid_token = tenant_id_var.set("-")
    try:
        try:
            response = await handler(request)
        except BridgeError as exc:
            level = logging.WARNING if exc.http_status >= 500 else logging.INFO
            log.log(level, "%s %s -> %s (%s): %s", request.method, request.path, exc.code, exc.http_status, exc.detail)
            response = error_response(exc)
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json":
                codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
                code = codes.get(exc.status, "bad_request")
                # aiohttp's 405 names the path's methods in Allow (RFC 9110 section 15.5.6): keep it.
                kept = {name: exc.headers[name] for name in (hdrs.ALLOW,) if name in exc.headers}
                response = web.json_response({"error": code, "message": exc.reason}, status=exc.status,
                                             headers=kept)
            else:
                raise
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            response = error_response(BridgeError("unexpected error"))
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        tenant_id_var.reset(tid_token)
        request_id_var.reset(rid_token)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    checks: dict[str, str] = {"config": "ok"}
    try:
        fd, name = tempfile.mkstemp(dir=config.state_dir, prefix=".ready-")
        os.close(fd)
        os.unlink(name)
        checks["state_dir"] = "ok"
    except OSError as exc:
        checks["state_dir"] = f"not writable: {exc.strerror}"
    checks["database"] = "ok" if await request.app[STORE].ping() else "unavailable"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks, "warnings": list(config.warnings)}
    return web.json_response(body, status=200 if ready else 503)


async def reload_tenant_files(config: BridgeConfig, store: Store, tenants: LiveTenants) -> bool:
    """SIGHUP / ``config reload``: read the files again; a bad one is logged (file, key, line) and nothing changes."""
    try:
        # The running tenants_dir (bridge.yaml's own settings take effect at the next restart).
        report = await tenants.apply_files(store, config.tenants_dir)
        await tenants.refresh(store)
    except ConfigError as exc:
        found = exc.errors if isinstance(exc, ConfigErrors) else (exc,)
        log.error("configuration not reloaded, the running one stays: %s%s", exc,
                  f" (and {len(found) - 1} more below)" if len(found) > 1 else "")
        for more in found[1:]:
            log.error("configuration not reloaded: %s", more)
        return False
    except BridgeError as exc:
        log.error("configuration not reloaded (%s), the running one stays", exc.detail or exc.code)
        return False
    log.info("configuration reloaded: tenants %s written, %s unchanged (settings outside the tenants take"
             " effect at the next restart)", ", ".join(report.written) or "none", len(report.unchanged))
    return True


@contextlib.contextmanager
def _reload_on_sighup(config: BridgeConfig, store: Store, tenants: LiveTenants) -> Iterator[None]:
    """While the app runs, SIGHUP reloads the tenant files instead of ending the process."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading the configuration files")
        task = loop.create_task(reload_tenant_files(config, store, tenants))
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (tests), or no signals
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in pending:
            task.cancel()


def make_app(config: BridgeConfig) -> web.Application:
    # First: everything after it (the console under /console included) sees the client as request.remote.
    middlewares = [forwarded_middleware(config.trusted_proxies)] if config.trusted_proxies else []
    # Forms and bodies read by aiohttp: an IdP's answer posted to /saml/{tenant}/acs or /wsfed/{tenant} (an AD FS
    # token with many group claims, an encrypted assertion) needs more than the device API's JSON, which its own
    # reader caps at 16 KiB (connectors/http.py).
    app = web.Application(middlewares=[*middlewares, context_middleware], client_max_size=768 * 1024)
    app[CONFIG] = config
    app[METRICS] = BridgeMetrics()  # the app's own registry, not prometheus-client's global one

    async def resources(app: web.Application) -> AsyncIterator[None]:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(config.store_url)
        idps = IdpRegistry(config, await asyncio.to_thread(ensure_sp_keys, config.state_dir))
        app[STORE] = store
        app[IDPS] = idps
        # Tenants are live data in the store (bridge/login/tenants.py): the files (validated when the
        # configuration loaded) are written if they changed, then every instance follows the store.
        tenants = LiveTenants(config)
        await tenants.apply_files(store, require_files=False)
        await tenants.refresh(store, force=True)
        app[LOGIN] = LoginService(config, store, idps, tenants=tenants)
        audit = AuditLog(config.audit_file, store)
        audit.open()
        app[AUDIT] = audit
        # Lockout protection state is in the store, shared by every instance (bridge/login/throttle.py).
        app[GUARD] = LoginGuard(config, LoginThrottle(store, config.hmac_key), audit=audit, metrics=app[METRICS],
                                tenants=tenants)
        app[LOGIN].guard = app[GUARD]
        app[PAIRING] = PairingService(app[LOGIN], hmac_key=config.hmac_key)
        follower = asyncio.create_task(tenants.follow(store), name="tenants-follow")
        with _reload_on_sighup(config, store, tenants):
            yield
        await stop_task(follower)
        audit.close()
        await idps.close()
        await store.close()

    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(directory_schedule())  # tenants' sync_every_minutes (after resources: the store)
    if config.printer is not None and config.printer.enabled:
        app.cleanup_ctx.append(printer_listener(config))  # after resources: it needs the LoginService
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_routes(mfp.routes())
    app.router.add_routes(session.routes())
    app.router.add_routes(apps.routes())
    app.router.add_routes(service.routes())
    app.router.add_routes(saml.routes())
    app.router.add_routes(pairing.routes())  # phone pairing and badges for devices, the web app's code exchange
    mount_web_signin(app, config)  # /pair, the IdP's return (/saml/{tenant}/acs, /wsfed/{tenant}), /v1/web/login
    mount_console(app, config)  # the technician console at /console
    mount_scim(app)  # SCIM 2.0 provisioning at /scim/v2/{tenant}/
    mount_admin_api(app)  # the admin API at /admin/v1 (bridge/adminapi)
    mount_print_setup(app, config)  # personal printer URLs at /print/setup (bridge/printsetup)
    return app


def with_ports(config: BridgeConfig, *, port: int | None, printer_port: int | None) -> BridgeConfig:
    """The configuration with the listen ports of ``serve --port/--printer-port`` (one config, several instances)."""
    if port is not None:
        config = dataclasses.replace(config, listen_port=port)
    if printer_port is not None and config.printer is not None:
        config = dataclasses.replace(config, printer=dataclasses.replace(config.printer, port=printer_port))
    return config


def make_runner(app: web.Application, config: BridgeConfig, **kwargs: Any) -> ListenerRunner:
    """The API listener's runner: the configured header deadline and idle timeout on every connection."""
    timeouts = config.listener_timeouts
    return ListenerRunner(app, header_timeout=timeouts.header, idle_timeout=timeouts.idle, **kwargs)


async def serve(config: BridgeConfig, *, access_log: logging.Logger | None = None) -> None:
    """Serve the API (and the printer, when configured) until cancelled or signalled."""
    runner = make_runner(make_app(config), config, handle_signals=True, access_log=access_log)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.listen_host, config.listen_port).start()
        log.info("loginbridge listening on http://%s:%s", config.listen_host, config.listen_port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(config_path: str | Path, *, port: int | None = None, printer_port: int | None = None) -> int:
    """Load the configuration once, then serve until interrupted; ``port``/``printer_port`` override it."""
    config = with_ports(load_config(config_path), port=port, printer_port=printer_port)
    setup_logging(config.log_level)
    for warning in config.warnings:
        log.warning("%s", warning)
    # The access log adds a second line per request (the outcome line already names the request id);
    # it runs only at DEBUG.
    access_log = logging.getLogger("aiohttp.access") if config.log_level == "DEBUG" else None
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):  # SIGTERM / SIGINT: a clean stop
        asyncio.run(serve(config, access_log=access_log))
    return 0
