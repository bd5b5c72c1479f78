"""The setup page's handlers: a sign-in form, then the personal printer URL with the lines to add it.

The password goes through the same login path as the printer itself
(:meth:`LoginService.verify_password`, mode ``printer``): whitelisted IdP,
validated assertion, throttles, stale-password guard, audit. The form is
refused over plain http unless both ends are on loopback (the demo), exactly
like the console's sign-in, so a password never crosses a network in clear.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.appkeys import AUDIT, CONFIG, LOGIN, PAIRING, PRINTER_PORT, STORE
from bridge.config import BridgeConfig, TenantConfig
from bridge.errorcatalog import ADMIN_DETAIL
from bridge.errors import BridgeError
from bridge.forwarded import client_address
from bridge.login.guard import LoginMode
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.printlinks import create_link, queue_url
from bridge.state.store import User
from bridge.webforms import PAGE_HEADERS, FormGuard, is_loopback

log = logging.getLogger(__name__)

PREFIX = "/print"
HERE = Path(__file__).resolve().parent
NONCE_COOKIE = "lb_print_setup"
# The setup form's other button goes (GET /v1/web/print-login) to a 303 to the IdP, and browsers apply
# form-action to a form's redirects: this page may send its form on to an https IdP.
_SETUP_CSP = PAGE_HEADERS["Content-Security-Policy"].replace("form-action 'self'", "form-action 'self' https:")
FORM_GUARD = web.AppKey("print_setup_form_guard", FormGuard)
MAX_FIELD = 512


def _config(request: web.Request) -> BridgeConfig:
    login = request.config_dict.get(LOGIN)
    return login.config if login is not None else request.config_dict[CONFIG]


def _secure(request: web.Request, config: BridgeConfig) -> bool:
    return request.secure or config.public_url.startswith("https://")


def _allowed_in_clear(request: web.Request) -> bool:
    host = request.host.rsplit(":", 1)[0] if not request.host.startswith("[") else request.host.split("]")[0]
    return is_loopback(request.remote) and is_loopback(host.strip("[]") or None)


def _page(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200,
          nonce: str | None = None) -> web.Response:
    guard = request.app[FORM_GUARD]
    nonce = nonce or request.cookies.get(NONCE_COOKIE) or guard.new_nonce()
    if len(nonce) > 64:
        nonce = guard.new_nonce()
    page = {"static_url": f"{PREFIX}/static", "action": f"{PREFIX}/setup", "csrf": guard.token(nonce),
            "browser_action": "/v1/web/print-login" if PAIRING in request.config_dict else None, **context}
    response = aiohttp_jinja2.render_template(template, request, page, status=status)
    if template == "setup.html":
        response.headers["Content-Security-Policy"] = _SETUP_CSP
    response.set_cookie(NONCE_COOKIE, nonce, max_age=3600, path=f"{PREFIX}/setup", httponly=True,
                        samesite="Strict", secure=_secure(request, _config(request)))
    return response


async def setup_form(request: web.Request) -> web.Response:
    config = _config(request)
    if config.printer is None or not config.printer.enabled:
        raise web.HTTPNotFound(text="This bridge has no printer.")
    return _page(request, "setup.html", {"email": "", "label": ""})


def _days(tenant: TenantConfig) -> timedelta:
    return timedelta(days=tenant.printer_link_days)


async def setup_submit(request: web.Request) -> web.Response:
    config = _config(request)
    if config.printer is None or not config.printer.enabled:
        raise web.HTTPNotFound(text="This bridge has no printer.")
    data = await request.post()
    form = {k: v[:MAX_FIELD] for k, v in data.items() if isinstance(v, str)}
    email, label = form.get("email", "").strip(), form.get("label", "").strip()
    kept = {"email": email, "label": label}
    if not request.app[FORM_GUARD].ok(request.cookies.get(NONCE_COOKIE), form.get("csrf")):
        return _page(request, "setup.html", {**kept, "error": "The form expired. Try again."}, status=403)
    if not _secure(request, config) and not _allowed_in_clear(request):
        return _page(request, "setup.html", {**kept, "error": "This page needs https: ask your administrator "
                                            "for its https address."}, status=403)
    password = form.get("password", "")
    if not email or not password:
        return _page(request, "setup.html", {**kept, "error": "Enter your email address and password."},
                     status=400)
    login = request.config_dict[LOGIN]
    source = client_address(request, config.trusted_proxies)
    try:
        tenant, user = await login.verify_password(identifier=email, password=password, mode=LoginMode.PRINTER,
                                                   source=source)
    except BridgeError as exc:
        log.info("print setup refused for %s: %s", email[:254], exc.code)
        hint = ADMIN_DETAIL.get(exc.code, "") if exc.http_status >= 500 else ""
        return _page(request, "setup.html", {**kept, "error": exc.message, "hint": hint},
                     status=401 if exc.http_status == 401 else exc.http_status)
    return await _link_page(request, config, tenant, user, label=label, source=source)


async def setup_finish(request: web.Request) -> web.Response:
    """The browser sign-in's end (``/v1/web/print-login``): its one-time code names the account, once."""
    config = _config(request)
    if config.printer is None or not config.printer.enabled:
        raise web.HTTPNotFound(text="This bridge has no printer.")
    if not _secure(request, config) and not _allowed_in_clear(request):
        return _page(request, "setup.html", {"email": "", "label": "", "error": "This page needs https: ask your "
                                            "administrator for its https address."}, status=403)
    pairing = request.config_dict.get(PAIRING)
    if pairing is None:
        raise web.HTTPNotFound(text="Browser sign-in is not available here.")
    try:
        tenant, user = await pairing.print_user(request.query.get("code", "")[:MAX_FIELD])
    except BridgeError as exc:
        log.info("print setup sign-in refused: %s", exc.code)
        return _page(request, "setup.html", {"email": "", "label": "", "error": exc.message},
                     status=exc.http_status)
    return await _link_page(request, config, tenant, user, label="",
                            source=client_address(request, config.trusted_proxies))


async def _link_page(request: web.Request, config: BridgeConfig, tenant: TenantConfig, user: User, *,
                     label: str, source: str | None) -> web.Response:
    """A new personal printer URL for ``user``, audited, shown once with the lines to add it."""
    link, token = await create_link(request.config_dict[STORE].database, tenant_id=tenant.id, email=user.email,
                                    label=label or "printer", created_by="print-setup", lifetime=_days(tenant))
    await request.config_dict[AUDIT].record(AuditEvent(
        at=datetime.now(UTC), kind=AuditKind.ADMIN_CHANGE, result="printer_link_created", tenant_id=tenant.id,
        mode="print-setup", email=user.email, source=source, actor=user.email))
    url = queue_url(config, token, port=request.config_dict.get(PRINTER_PORT))
    name = "Print-to-Web"
    return _page(request, "done.html", {
        "url": url, "label": link.label, "email": user.email, "expires": f"{link.expires_at:%Y-%m-%d}",
        "lpadmin": f"lpadmin -p {name} -E -v '{url}' -m everywhere",
        "windows_url": url.replace("ipps://", "https://", 1).replace("ipp://", "http://", 1),
    })


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def make_print_setup(config: BridgeConfig) -> web.Application:
    sub = web.Application(middlewares=[_headers], client_max_size=16 * 1024)
    sub[FORM_GUARD] = FormGuard(config.hmac_key, "print setup")
    aiohttp_jinja2.setup(sub, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    sub.router.add_static("/static", HERE / "static", append_version=False)
    sub.router.add_get("/setup", setup_form)
    sub.router.add_post("/setup", setup_submit)
    sub.router.add_get("/setup/finish", setup_finish)
    return sub


def mount_print_setup(app: web.Application, config: BridgeConfig) -> None:
    """Serve /print/setup on the bridge's listener when a printer is configured."""
    if config.printer is None or not config.printer.enabled:
        return
    app.add_subapp(PREFIX, make_print_setup(config))
