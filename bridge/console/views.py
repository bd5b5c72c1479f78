"""Console pages: sign-in, tenants and their checks, devices, test login (login attempts: attempts.py).

Every page but sign-in needs a console session; every POST needs the CSRF
token of the session (or, for sign-in, of the pre-session cookie).  Sign-in
is refused over plain http unless both ends are on loopback (the demo), so a
session cookie never travels unencrypted on a network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bridge.appkeys import AUDIT, CONFIG, LOGIN, STORE
from bridge.config import BridgeConfig, Protocol
from bridge.console.keys import CONSOLE_STATE, SIGNER
from bridge.console.passwords import check_console_login
from bridge.console.security import PRE_COOKIE, SESSION_COOKIE, SESSION_SECONDS, ConsoleSession
from bridge.errorcatalog import ADMIN_DETAIL
from bridge.errors import BridgeError, InvalidCredentials, PasswordLoginUnsupported, RequestError
from bridge.login.guard import LoginMode
from bridge.state.audit import RESULT_OK, AuditEvent, AuditKind
from bridge.toolkit.certs import days_left
from bridge.toolkit.check import idp_urls, load_report, run_check, save_report
from bridge.toolkit.report import Report, Status

log = logging.getLogger(__name__)

BASE = "/console"
CONSOLE_MODE = "console"  # audit mode of console sign-ins
# How the tenants page names a protocol.  SAML tenants sign in over ECP (password) and the browser
# profile (phone pairing) alike, so the label names the protocol, not one of its profiles.
PROTOCOL_LABELS = {Protocol.WSTRUST: "WS-Trust", Protocol.SAML2: "SAML 2.0", Protocol.OIDC: "OpenID Connect"}
OIDC_PHONE_ONLY_REASON = (
    "This tenant signs in at an OpenID Connect provider without the password grant (oidc.password_grant is "
    "off), so no device can check a password for it: its users sign in with \"Sign in with phone\" (pairing). "
    "Turn the grant on only if the provider allows it for the bridge's client and the users have no MFA.")


# -- plumbing ------------------------------------------------------------------


def _config(request: web.Request) -> BridgeConfig:
    """The configuration with the tenants of this moment (they change live: bridge/login/tenants.py)."""
    login = request.config_dict.get(LOGIN)
    return login.config if login is not None else request.config_dict[CONFIG]


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _secure(request: web.Request) -> bool:
    """Cookies get Secure when the console is reached over https, directly or per public_url."""
    return request.secure or _config(request).public_url.startswith("https://")


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=BASE, httponly=True, samesite="Strict",
                        secure=_secure(request))


async def _session(request: web.Request) -> ConsoleSession:
    """The signed-in technician, or a redirect to the sign-in page (also after signing out on another instance)."""
    session = request.app[SIGNER].read(request.cookies.get(SESSION_COOKIE))
    console = _config(request).console
    if session is None or console is None or all(u.name != session.user for u in console.users):
        raise web.HTTPSeeOther(f"{BASE}/login")
    if await request.app[CONSOLE_STATE].revoked(request.config_dict[STORE], session):
        raise web.HTTPSeeOther(f"{BASE}/login")
    return session


async def _form(request: web.Request, session: ConsoleSession) -> dict[str, str]:
    """The POSTed form, after its CSRF token was checked against the session."""
    data = await request.post()
    if not request.app[SIGNER].csrf_ok(session.nonce, data.get("csrf")):
        log.warning("console: refused a form without a valid CSRF token from %s", request.remote)
        raise web.HTTPForbidden(text="The form is not valid any more: reload the page and try again.")
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _render(request: web.Request, template: str, context: dict[str, Any], *, session: ConsoleSession | None,
            status: int = 200) -> web.Response:
    signer = request.app[SIGNER]
    page = dict(context)
    page.update(base=BASE, static_url=f"{BASE}/static", user=session.user if session else None,
                csrf=signer.csrf_token(session.nonce) if session else page.get("csrf", ""))
    return aiohttp_jinja2.render_template(template, request, page, status=status)


def _see_other(location: str) -> web.Response:
    """A redirect that carries cookies (aiohttp wants HTTP exceptions raised, not returned)."""
    return web.Response(status=303, headers={"Location": location})


def _when(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _expiry(not_after: datetime | None) -> str:
    if not_after is None:
        return "unknown"
    days = days_left(not_after, datetime.now(UTC))
    return f"{not_after:%Y-%m-%d} ({days} days)" if days >= 0 else f"EXPIRED {not_after:%Y-%m-%d}"


_CSS = {Status.PASS: "pass", Status.WARN: "warn", Status.FAIL: "fail", Status.SKIP: "skip"}


# -- sign-in -------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    await _session(request)
    raise web.HTTPSeeOther(f"{BASE}/tenants")


async def login_form(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(18)
    response = _render(request, "login.html", {"title": "Sign in", "error": error,
                                               "csrf": request.app[SIGNER].csrf_token(pre)},
                       session=None, status=status)
    _set_cookie(request, response, PRE_COOKIE, pre, 3600)
    return response


async def _audit_sign_in(request: web.Request, name: str, result: str) -> None:
    await request.config_dict[AUDIT].record(AuditEvent(at=datetime.now(UTC), kind=AuditKind.LOGIN, result=result,
                                                 mode=CONSOLE_MODE, email=name[:64], source=request.remote))


async def login_submit(request: web.Request) -> web.StreamResponse:
    signer, limiter, store = request.app[SIGNER], request.app[CONSOLE_STATE], request.config_dict[STORE]
    data = await request.post()
    if not signer.csrf_ok(request.cookies.get(PRE_COOKIE), data.get("csrf")):
        return await login_form(request, error="The sign-in form expired. Try again.", status=403)
    if not _secure(request) and not (_is_loopback(request.remote) and _is_loopback(request.host.rsplit(":", 1)[0]
                                                                                  .strip("[]"))):
        return await login_form(request, status=403, error="The console needs https: serve it behind TLS and set "
                                "public_url to its https address (plain http works on loopback only).")
    source = request.remote or "-"
    if await limiter.blocked(store, source):
        return await login_form(request, status=429, error="Too many failed sign-ins from this address. "
                                "Wait 15 minutes.")
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        return await login_form(request, status=400, error="Enter the console user and password.")
    user = await asyncio.to_thread(check_console_login, _config(request).console, name.strip(), password)
    if user is None:
        await limiter.failed(store, source)
        await _audit_sign_in(request, name.strip(), InvalidCredentials.code)
        log.info("console sign-in refused for %r from %s", name.strip()[:64], source)
        return await login_form(request, status=401, error="Wrong console user or password.")
    await limiter.succeeded(store, source)
    await _audit_sign_in(request, user.name, RESULT_OK)
    log.info("console user %s signed in from %s", user.name, source)
    cookie, _ = signer.issue(user.name)
    response = _see_other(f"{BASE}/tenants")
    _set_cookie(request, response, SESSION_COOKIE, cookie, SESSION_SECONDS)
    response.del_cookie(PRE_COOKIE, path=BASE)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    await _form(request, session)
    await request.app[CONSOLE_STATE].revoke(request.config_dict[STORE], session)
    log.info("console user %s signed out", session.user)
    response = _see_other(f"{BASE}/login")
    response.del_cookie(SESSION_COOKIE, path=BASE)
    return response


# -- tenants and checks ----------------------------------------------------------


async def tenants(request: web.Request) -> web.Response:
    session = await _session(request)
    config = _config(request)
    rows = []
    for tenant in config.tenants:
        report = await asyncio.to_thread(load_report, config.state_dir, tenant.id)
        row: dict[str, Any] = {
            "id": tenant.id, "name": tenant.name, "domains": ", ".join(tenant.domains),
            "protocol": PROTOCOL_LABELS[tenant.protocol],
            "idp": ", ".join(idp_urls(tenant)), "last": None,
            "tls_expiry": "unknown", "signing_expiry": "unknown",
        }
        if report is not None:
            fails = sum(1 for s in report.steps if s.status is Status.FAIL)
            warns = sum(1 for s in report.steps if s.status is Status.WARN)
            row.update(last="all PASS" if report.worst is Status.PASS else
                       f"{fails} FAIL, {warns} WARN" if fails else f"{warns} WARN",
                       last_class=_CSS[report.worst], last_at=_when(report.started_at) + " UTC",
                       tls_expiry=_expiry(report.tls_not_after), signing_expiry=_expiry(report.signing_not_after))
        if tenant.oidc is not None:  # no certificates to pin or watch: the provider's JWK Set is read as it changes
            row["signing_expiry"] = "keys from its JWK Set"
        rows.append(row)
    return _render(request, "tenants.html", {"title": "Tenants", "page": "tenants", "tenants": rows},
                   session=session)


def _check_context(tenant_id: str, report: Report | None) -> dict[str, Any]:
    context: dict[str, Any] = {"title": f"Check {tenant_id}", "page": "tenants", "tenant": tenant_id,
                               "report": report}
    if report is not None:
        context.update(
            started=_when(report.started_at) + " UTC",
            result="OK" if report.ok else "FAILED",
            result_class="pass" if report.ok else "fail",
            steps=[{"status": s.status.value, "css": _CSS[s.status], "name": s.name, "summary": s.summary,
                    "hint": s.hint, "panel": s.panel_message,
                    "ms": "" if s.seconds is None else f"{s.seconds * 1000:.0f} ms"} for s in report.steps])
    return context


def _tenant_id(request: web.Request) -> str:
    tenant_id = request.match_info["tenant"]
    try:
        return _config(request).tenant(tenant_id).id
    except RequestError as exc:
        raise web.HTTPNotFound(text="No such tenant.") from exc


async def last_check(request: web.Request) -> web.Response:
    session = await _session(request)
    tenant_id = _tenant_id(request)
    report = await asyncio.to_thread(load_report, _config(request).state_dir, tenant_id)
    return _render(request, "check.html", _check_context(tenant_id, report), session=session)


async def run_tenant_check(request: web.Request) -> web.Response:
    session = await _session(request)
    await _form(request, session)
    tenant_id = _tenant_id(request)
    config = _config(request)
    log.info("console user %s runs the check of tenant %s", session.user, tenant_id)
    report = await run_check(config, tenant_id)
    try:
        await asyncio.to_thread(save_report, config.state_dir, report)
    except OSError as exc:
        log.warning("cannot save the check report: %s", exc.strerror)
    return _render(request, "check.html", _check_context(tenant_id, report), session=session)


# -- devices ---------------------------------------------------------------------------


async def devices_page(request: web.Request, session: ConsoleSession, *, error: str = "",
                       status: int = 200) -> web.Response:
    """The devices list (``error``: why a change made from it was refused, shown above it)."""
    rows = [{"id": d.device_id, "name": d.name, "tenant": d.tenant_id, "mode": d.mode.value, "enabled": d.enabled,
             "shared": d.shared_user_email, "seen": _when(d.last_seen_at), "addr": d.last_seen_addr,
             "location": d.location}
            for d in await request.config_dict[STORE].list_devices()]
    return _render(request, "devices.html", {"title": "Devices", "page": "devices", "devices": rows,
                                             "error": error}, session=session, status=status)


async def devices(request: web.Request) -> web.Response:
    return await devices_page(request, await _session(request))


async def set_device(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    await _form(request, session)
    device_id, action = request.match_info["device"], request.match_info["action"]
    store = request.config_dict[STORE]
    if await store.get_device(device_id) is None:
        raise web.HTTPNotFound(text="No such device.")
    device = await store.get_device(device_id)
    if action == "disable":
        await store.disable_device(device_id)
    else:
        await store.enable_device(device_id)
    log.info("console user %s: device %s %sd", session.user, device_id, action)
    await request.config_dict[AUDIT].record(AuditEvent(
        at=datetime.now(UTC), kind=AuditKind.DEVICE_CHANGED, result=f"{action}d", mode=CONSOLE_MODE,
        email=session.user[:64], device_id=device_id, tenant_id=device.tenant_id if device else None,
        source=request.remote))
    raise web.HTTPSeeOther(f"{BASE}/devices")


# -- test login ----------------------------------------------------------------------------------


async def test_login_form(request: web.Request) -> web.Response:
    session = await _session(request)
    return _render(request, "test_login.html", {"title": "Test login", "page": "test-login", "email": ""},
                   session=session)


async def test_login(request: web.Request) -> web.Response:
    session = await _session(request)
    form = await _form(request, session)
    email, password = form.get("email", "").strip(), form.get("password", "")
    login = request.config_dict[LOGIN]
    started = time.perf_counter()
    log.info("console user %s runs a test login for %s", session.user, email[:254])
    outcome: dict[str, Any]
    try:
        await login.verify_password(identifier=email, password=password, mode=LoginMode.PASSWORD,
                                    source=request.remote)
    except BridgeError as exc:
        reason = ADMIN_DETAIL.get(exc.code, "")
        if exc.detail and exc.detail != exc.panel_message:
            reason = f"{exc.detail}. {reason}"
        if isinstance(exc, PasswordLoginUnsupported) and _protocol_of(login.config, email) is Protocol.OIDC:
            reason = OIDC_PHONE_ONLY_REASON
        outcome = {"result": exc.code, "css": "fail", "panel": exc.message, "reason": reason}
    else:
        outcome = {"result": "ok", "css": "pass", "panel": "Signed in.",
                   "reason": "The IdP accepted the password and its signed answer names this user."}
    outcome.update(email=email, ms=f"{(time.perf_counter() - started) * 1000:.0f} ms")
    return _render(request, "test_login.html", {"title": "Test login", "page": "test-login", "email": email,
                                                "outcome": outcome}, session=session)


def _protocol_of(config: BridgeConfig, email: str) -> Protocol | None:
    """The protocol of the tenant an email address belongs to (None: no tenant claims its domain)."""
    _, _, domain = email.rpartition("@")
    tenant = config.tenant_for_domain(domain.lower()) if domain else None
    return tenant.protocol if tenant is not None else None


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", index),
        web.get("/login", login_form),
        web.post("/login", login_submit),
        web.post("/logout", logout),
        web.get("/tenants", tenants),
        web.get("/tenants/{tenant}/check", last_check),
        web.post("/tenants/{tenant}/check", run_tenant_check),
        web.get("/devices", devices),
        web.post("/devices/{device}/{action:enable|disable}", set_device),
        web.get("/test-login", test_login_form),
        web.post("/test-login", test_login),
    ]
