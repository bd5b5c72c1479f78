"""Handlers of the phone pairing page, the IdP's return and ``/v1/web/login`` (see the package docstring).

Cookies:

- ``lb_pair_csrf`` (path ``/pair``, SameSite=Strict): the nonce of the forms' CSRF tokens
  (bridge/webforms.py);
- ``lb_signin`` (path ``/``, SameSite=Lax): the browser's secret a sign-in is bound to.  Lax, not
  Strict: the browser comes back from the IdP's site by a top-level navigation, which Lax cookies
  follow and Strict ones do not.  The IdP's POST itself carries no cookie; it only names the sign-in.

Both are HttpOnly, and Secure whenever the bridge is reached over https.  Every answer is a page
(these are browsers, not devices): an error is shown in words, with its HTTP status.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from bridge.appkeys import CONFIG, LOGIN, PAIRING
from bridge.config import BridgeConfig, Protocol
from bridge.errors import BridgeError, UserCodeGuesses
from bridge.logcontext import tenant_id_var
from bridge.login.guard import LoginMode
from bridge.login.pairing import PairingService
from bridge.state.pairings import SigninPurpose
from bridge.webforms import PAGE_HEADERS, FormGuard

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
_PAGES = web.AppKey("web_signin_pages", jinja2.Environment)
_GUARD = web.AppKey("web_signin_form_guard", FormGuard)
_STYLE = web.AppKey("web_signin_style", bytes)
CSRF_COOKIE = "lb_pair_csrf"
BROWSER_COOKIE = "lb_signin"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{32,64}")
MAX_FIELD = 128
MAX_IDP_FIELD = 512 * 1024  # a SAMLResponse with an encrypted assertion, base64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _config(request: web.Request) -> BridgeConfig:
    login = request.config_dict.get(LOGIN)
    return login.config if login is not None else request.config_dict[CONFIG]


def _secure(request: web.Request) -> bool:
    return request.secure or _config(request).public_url.startswith("https://")


# The confirmation form's answer is a 303 to the IdP, and browsers apply form-action to a form's redirects
# too: that page allows https targets (its only form posts to /pair; the redirect is ours).
_CONFIRM_CSP = PAGE_HEADERS["Content-Security-Policy"].replace("form-action 'self'", "form-action 'self' https:")


def _render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200,
            nonce: str | None = None, csp: str | None = None) -> web.Response:
    guard = request.app[_GUARD]
    nonce = nonce or request.cookies.get(CSRF_COOKIE) or guard.new_nonce()
    if len(nonce) > 64:
        nonce = guard.new_nonce()
    page = {"title": "Sign in", "csrf": guard.token(nonce), **context}
    text = request.app[_PAGES].get_template(template).render(page)
    response = web.Response(text=text, content_type="text/html", status=status)
    response.set_cookie(CSRF_COOKIE, nonce, max_age=3600, path="/pair", httponly=True, samesite="Strict",
                        secure=_secure(request))
    for name, value in PAGE_HEADERS.items():
        response.headers[name] = value
    if csp is not None:
        response.headers["Content-Security-Policy"] = csp
    return response


def _message(request: web.Request, *, heading: str, ok: str = "", error: str = "", lines: tuple[str, ...] = (),
             status: int = 200) -> web.Response:
    return _render(request, "message.html", {"title": heading, "heading": heading, "ok": ok, "error": error,
                                             "lines": lines}, status=status)


def _failure(request: web.Request, exc: BridgeError, *, heading: str = "Sign-in did not complete") -> web.Response:
    log.info("%s %s refused: %s (%s)", request.method, request.path, exc.code, exc.detail)
    response = _message(request, heading=heading, error=exc.message,
                        lines=("Start again on the device, or ask your administrator if it keeps happening.",),
                        status=exc.http_status)
    if isinstance(exc, UserCodeGuesses):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _browser_secret(request: web.Request) -> str | None:
    value = request.cookies.get(BROWSER_COOKIE)
    return value if value is not None and _COOKIE_VALUE.fullmatch(value) else None


def _redirect_binding(request: web.Request, url: str, secret: str) -> web.Response:
    """303 to the IdP, with the browser's sign-in cookie."""
    response = web.Response(status=303, headers={"Location": url, **PAGE_HEADERS})
    response.set_cookie(BROWSER_COOKIE, secret, max_age=900, path="/", httponly=True, samesite="Lax",
                        secure=_secure(request))
    return response


async def _form(request: web.Request, limit: int = MAX_FIELD) -> dict[str, str]:
    data = await request.post()
    return {k: v[:limit] for k, v in data.items() if isinstance(v, str)}


async def _style(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_STYLE], content_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


# -- /pair ------------------------------------------------------------------------------------------


async def pair_page(request: web.Request) -> web.Response:
    """The code form, or (``?code=``, the QR code's link) the confirmation page."""
    code = request.query.get("code", "")[:MAX_FIELD]
    if not code:
        return _render(request, "enter_code.html", {"code": ""})
    return await _confirm(request, code)


async def _confirm(request: web.Request, code: str) -> web.Response:
    pairing = request.app[PAIRING]
    try:
        view = await pairing.view(code, source=request.remote or "")
    except UserCodeGuesses as exc:
        return _failure(request, exc, heading="Too many codes tried")
    except BridgeError as exc:
        return _render(request, "enter_code.html", {"code": code, "error": exc.message}, status=exc.http_status)
    tenant_id_var.set(view.tenant.id)
    return _render(request, "confirm.html", {
        "title": "Sign in on this device?", "device_name": view.device.name,
        "location": view.device.location, "company": view.tenant.name,
        "user_code": view.user_code, "code": view.user_code.replace("-", ""),
        "idp_host": _idp_host(request, view.tenant.id)}, csp=_CONFIRM_CSP)


def _idp_host(request: web.Request, tenant_id: str) -> str:
    """The IdP's host name as the user will see it in the address bar (empty when not known without a request)."""
    tenant = _config(request).tenant(tenant_id)
    if tenant.protocol is Protocol.WSTRUST and tenant.wstrust is not None:
        url = tenant.wstrust.passive_url or tenant.wstrust.adfs_url or tenant.wstrust.endpoint or ""
    elif tenant.oidc is not None:
        url = tenant.oidc.issuer  # the authorization endpoint is discovered; it is on the issuer's host nearly always
    elif tenant.saml2 is not None:
        url = tenant.saml2.sso_url or tenant.saml2.metadata_url or tenant.saml2.ecp_url or ""
    else:
        url = ""
    return urlsplit(url).hostname or ""


async def pair_submit(request: web.Request) -> web.Response:
    form = await _form(request)
    if not request.app[_GUARD].ok(request.cookies.get(CSRF_COOKIE), form.get("csrf")):
        return _render(request, "enter_code.html", {"code": form.get("code", ""),
                                                    "error": "The page expired. Enter the code again."}, status=403)
    code, answer = form.get("code", ""), form.get("answer", "")
    if answer not in ("yes", "no"):
        return await _confirm(request, code)
    pairing = request.app[PAIRING]
    try:
        view = await pairing.view(code, source=request.remote or "")
        tenant_id_var.set(view.tenant.id)
        if answer == "no":
            await pairing.refuse(view)
            return _message(request, heading="Nothing was signed in",
                            ok="The device was not signed in.",
                            lines=("If someone asked you to open this page, they may be trying to use your "
                                   "account: tell your IT team.",))
        secret = _browser_secret(request) or PairingService.new_browser_secret()
        url = await pairing.approve_and_sign_in(view, browser_secret=secret)
    except BridgeError as exc:
        return _failure(request, exc)
    return _redirect_binding(request, url, secret)


# -- the IdP's answer and the browser's return --------------------------------------------------------


async def _idp_post(request: web.Request, state_field: str) -> web.Response:
    return await _idp_answer(request, await _form(request, MAX_IDP_FIELD), state_field)


async def _idp_answer(request: web.Request, form: dict[str, str], state_field: str) -> web.Response:
    tenant_id = request.match_info["tenant"]
    tenant_id_var.set(tenant_id[:64])
    pairing = request.app[PAIRING]
    try:
        record = await pairing.pending_signin(tenant_id, form.get(state_field, ""))
    except BridgeError as exc:
        return _failure(request, exc)
    try:
        async with pairing.login.attempt(mode=_mode(record.purpose), source=request.remote) as attempt:
            await pairing.idp_answer(record, form=form, attempt=attempt)
    except BridgeError as exc:
        return _failure(request, exc)
    # A top-level GET back to this site: the browser's Lax cookie comes along (the POST had none).
    return web.Response(status=303, headers={"Location": f"/signin/done?s={record.id}", **PAGE_HEADERS})


async def saml_acs(request: web.Request) -> web.Response:
    """SAML 2.0 HTTP-POST binding: ``SAMLResponse`` and ``RelayState``."""
    return await _idp_post(request, "RelayState")


async def wsfed_reply(request: web.Request) -> web.Response:
    """WS-Federation passive: ``wa``, ``wresult`` and ``wctx``."""
    return await _idp_post(request, "wctx")


async def oidc_callback(request: web.Request) -> web.Response:
    """OpenID Connect: the authorization response, a GET with ``code`` (or ``error``), ``state`` and maybe ``iss``.

    RFC 6749 section 3.1 allows each parameter once: a repeated one is refused rather than guessed at.
    """
    query = request.query
    if any(len(query.getall(key)) > 1 for key in query):
        return _message(request, heading="Sign-in did not complete", status=400,
                        error="The identity provider's answer repeats a parameter. Start again on the device.")
    return await _idp_answer(request, {k: v[:MAX_FIELD * 64] for k, v in query.items()}, "state")


async def signin_done(request: web.Request) -> web.Response:
    pairing = request.app[PAIRING]
    try:
        signin_id = int(request.query.get("s", "")[:18])
    except ValueError:
        return _message(request, heading="Sign-in did not complete", error="This link is not complete.",
                        status=400)
    try:
        record = await pairing.signin(signin_id)
        tenant_id_var.set(record.tenant_id)
        async with pairing.login.attempt(mode=_mode(record.purpose), source=request.remote) as attempt:
            done = await pairing.complete(record, browser_secret=_browser_secret(request), attempt=attempt)
    except BridgeError as exc:
        return _failure(request, exc)
    if done.purpose is not SigninPurpose.PAIRING and done.return_to is not None:
        response = web.Response(status=303, headers={"Location": done.return_to, **PAGE_HEADERS})
        response.del_cookie(BROWSER_COOKIE, path="/")
        return response
    device = done.device
    where = f" ({device.location})" if device is not None and device.location else ""
    return _message(request, heading="You are signed in", ok=f"Signed in as {done.email}.",
                    lines=(f"You can return to the device. {device.name if device else 'It'}{where} continues "
                           "in a few seconds.",
                           "Sign out at the device when you are done."))


def _mode(purpose: SigninPurpose) -> LoginMode:
    """How a browser sign-in is audited: a device's pairing, a web app's sign-in, or a print setup."""
    return {SigninPurpose.PAIRING: LoginMode.PAIRING, SigninPurpose.WEB: LoginMode.WEB,
            SigninPurpose.PRINT: LoginMode.PRINTER}[purpose]


# -- /v1/web/login ----------------------------------------------------------------------------------


async def web_login(request: web.Request) -> web.Response:
    """A platform web app sends the browser here; the session comes back to ``return_to`` as a one-time code."""
    email = request.query.get("email", "")[:254]
    return_to = request.query.get("return_to", "")[:2048]
    secret = _browser_secret(request) or PairingService.new_browser_secret()
    try:
        url = await request.app[PAIRING].begin_web(email_text=email, return_to=return_to, browser_secret=secret)
    except BridgeError as exc:
        return _failure(request, exc)
    return _redirect_binding(request, url, secret)


async def print_login(request: web.Request) -> web.Response:
    """``/print/setup``'s other way in: the company's sign-in page (MFA, or no password grant), then the link.

    The IdP's answer ends at ``/print/setup/finish`` with a one-time code for the print setup.
    """
    email = request.query.get("email", "")[:254]
    secret = _browser_secret(request) or PairingService.new_browser_secret()
    try:
        url = await request.app[PAIRING].begin_print(email_text=email, browser_secret=secret)
    except BridgeError as exc:
        return _failure(request, exc)
    return _redirect_binding(request, url, secret)


def mount_web_signin(app: web.Application, config: BridgeConfig) -> None:
    """The routes on the bridge's own listener (the pairing service is added once the store is open)."""
    app[_PAGES] = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    app[_GUARD] = FormGuard(config.hmac_key, "phone pairing")
    app[_STYLE] = (HERE / "static" / "pair.css").read_bytes()
    app.router.add_get("/pair/static/pair.css", _style)
    app.router.add_get("/pair", pair_page)
    app.router.add_post("/pair", pair_submit)
    app.router.add_post("/saml/{tenant}/acs", saml_acs)
    app.router.add_post("/wsfed/{tenant}", wsfed_reply)
    app.router.add_get("/oidc/{tenant}/callback", oidc_callback)
    app.router.add_get("/signin/done", signin_done)
    app.router.add_get("/v1/web/login", web_login)
    app.router.add_get("/v1/web/print-login", print_login)
