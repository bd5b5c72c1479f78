"""aiohttp routes of the browser sign-in, mounted into the simulator's app by :func:`mount_browser`.

- ``GET  /idp/profile/SAML2/Redirect/SSO``  SAML AuthnRequest by HTTP-Redirect (``SAMLRequest``,
  ``RelayState``, ``SigAlg``, ``Signature``); POST there carries the login form's steps, as on Shibboleth
- ``POST /idp/profile/SAML2/POST/SSO``      SAML AuthnRequest by HTTP-POST (``SAMLRequest``, ``RelayState``)
- ``GET|POST /adfs/ls/``                    WS-Federation ``wa=wsignin1.0`` (``wtrealm``, ``wreply``,
  ``wctx``, optional ``username`` hint); POST there also carries the login form's steps

The login form posts ``flow`` (hidden, the pending sign-in's id), ``username`` and
``password``, then ``otp`` for users with ``mfa: totp``; ``action`` is ``signin``
or, on SAML pages, ``cancel``.  The answer is an auto-posting page: SAML
``SAMLResponse`` + ``RelayState`` to the ACS URL, WS-Federation ``wa`` + ``wresult``
+ ``wctx`` to ``wreply``.  Cancel posts a Response with Responder/AuthnFailed;
WS-Federation has no refusal message to post (AD FS's forms page has no
Cancel), so its pages have none.

Counters (``/_sim/stats``): ``browser.saml``, ``browser.wsfed`` (sign-in requests),
``browser.form`` (form submissions), ``browser.refused`` (error page for the
request), ``browser.expired``, ``browser.login_failed``, ``browser.disabled``,
``browser.otp_prompt``, ``browser.otp_failed``, ``browser.cancelled``,
``browser.issued.saml``, ``browser.issued.wsfed``, ``browser.error``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from aiohttp import web
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from bridge.errors import AssertionRejected, RequestError
from bridge.idpsim.browser.pages import (
    ACCOUNT_DISABLED,
    ACTION_CANCEL,
    ACTION_FIELD,
    FLOW_FIELD,
    OTP_FIELD,
    PASSWORD_FIELD,
    USERNAME_FIELD,
    WRONG_OTP,
    WRONG_PASSWORD,
    Page,
    autopost_page,
    error_page,
    login_page,
    otp_page,
)
from bridge.idpsim.browser.pending import (
    OidcTarget,
    PendingSignin,
    PendingSignins,
    SamlTarget,
    SigninProtocol,
    WsFedTarget,
)
from bridge.idpsim.browser.websso import (
    MAX_RELAY_STATE_CHARS,
    RedirectMessage,
    check_embedded_signature,
    decode_posted_request,
    deflate_request,
    inflate_request,
    parse_request,
    read_redirect_query,
    redirect_signature_valid,
    request_issuer,
)
from bridge.idpsim.browser.wsfed import WSFED_PATH, WSIGNIN, WsFedRefused, build_wresult, read_signin
from bridge.idpsim.config import SimConfig, SimUser
from bridge.idpsim.ecp.idp import (
    AUTHN_CONTEXT_MFA,
    AUTHN_CONTEXT_PASSWORD,
    POST_SSO_PATH,
    REDIRECT_SSO_PATH,
    EcpIssueError,
)
from bridge.idpsim.ecp.routes import ECP_RUNTIME, count, simulated_trouble
from bridge.idpsim.issuance import IssueContext, SigningMaterial
from bridge.idpsim.state import DEFAULT_MISCHIEF_SUBJECT, SIM_STATE

log = logging.getLogger(__name__)

BROWSER_PATHS = frozenset({REDIRECT_SSO_PATH, POST_SSO_PATH, WSFED_PATH})
SAML_IDP_NAME = "idp-sim Web Login Service"
ADFS_NAME = "idp-sim AD FS"
OIDC_IDP_NAME = "idp-sim OpenID Provider"
MAX_OTP_FAILURES = 5
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
CANCELLED_MESSAGE = "The user cancelled the sign-in."
EXPIRED_MESSAGE = "This sign-in has expired or was already completed. Start again from the device."
ADFS_ERROR = "An error occurred. Contact your administrator for more information."


@dataclass(frozen=True, kw_only=True, slots=True)
class BrowserRuntime:
    """What the browser routes need from the simulator (its users, token-signing pair, issuer) and their state."""

    config: SimConfig
    signing: SigningMaterial
    issuer_for: Callable[[web.Request], str]  # the WS-Trust issuer as this request reached the simulator
    pending: PendingSignins


BROWSER_RUNTIME = web.AppKey("BROWSER_RUNTIME", BrowserRuntime)


@dataclass(frozen=True, kw_only=True, slots=True)
class OidcCompletion:
    """How an OpenID Connect sign-in ends, supplied by :func:`bridge.idpsim.oidc.routes.mount_oidc`.

    The pages and their steps are shared; only the answer differs (a redirect
    with a code, or with ``error=access_denied``), and this package does not
    know the OP's code store.
    """

    path: str  # where the OIDC login form posts
    signed_in: Callable[[web.Request, OidcTarget, SimUser, bool], Awaitable[web.StreamResponse]]  # (..., mfa)
    cancelled: Callable[[web.Request, OidcTarget], Awaitable[web.StreamResponse]]


OIDC_COMPLETION = web.AppKey("OIDC_COMPLETION", OidcCompletion)


def mount_browser(
    app: web.Application,
    *,
    config: SimConfig,
    signing: SigningMaterial,
    issuer_for: Callable[[web.Request], str],
    pending: PendingSignins | None = None,
) -> None:
    """Add the browser sign-in routes (after :func:`bridge.idpsim.ecp.routes.mount_ecp`: SAML reuses its IdP)."""
    if ECP_RUNTIME not in app:
        raise ValueError("mount the ECP IdP first: SAML Web Browser SSO is answered by its pysaml2 IdP")
    app[BROWSER_RUNTIME] = BrowserRuntime(
        config=config, signing=signing, issuer_for=issuer_for, pending=pending or PendingSignins()
    )
    app.router.add_get(REDIRECT_SSO_PATH, _saml_redirect)
    app.router.add_post(REDIRECT_SSO_PATH, _saml_redirect_form)
    app.router.add_post(POST_SSO_PATH, _saml_post)
    app.router.add_get(WSFED_PATH, _wsfed)
    app.router.add_post(WSFED_PATH, _wsfed)


async def signin_step(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """One step of the shared login form (password, code, cancel), for a protocol mounted elsewhere."""
    return await _step(request, form)


async def read_form(request: web.Request) -> dict[str, str]:
    """The posted fields (text only; the first of repeated names)."""
    return await _form(request)


def html_response(page: Page, status: int = 200) -> web.Response:
    """A page with the sign-in pages' security headers (CSP, no-store, no framing)."""
    return _html(page, status)


def failure_response(path: str) -> web.Response | None:
    """The simulator's own failure on a browser path, as a page a person can read (else None)."""
    if path not in BROWSER_PATHS:
        return None
    name = ADFS_NAME if path == WSFED_PATH else SAML_IDP_NAME
    return _html(error_page(idp_name=name, message="The sign-in service could not process the request."), 500)


# --------------------------------------------------------------------------- helpers


def _html(page: Page, status: int = 200) -> web.Response:
    return web.Response(
        text=page.html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": page.csp,
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def _idp_name(protocol: SigninProtocol) -> str:
    if protocol is SigninProtocol.OIDC:
        return OIDC_IDP_NAME
    return SAML_IDP_NAME if protocol is SigninProtocol.SAML else ADFS_NAME


def _refused(request: web.Request, idp_name: str, message: str, *, detail: str | None = None) -> web.Response:
    count(request, "browser.refused")
    log.info("browser sign-in request refused on %s: %s", request.path, detail or message)
    return _html(error_page(idp_name=idp_name, message=message, detail=detail), 400)


async def _form(request: web.Request) -> dict[str, str]:
    """The posted fields (text only; the first of repeated names)."""
    data = await request.post()
    fields: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, str) and name not in fields:
            fields[name] = value
    return fields


def _http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("https", "http") and bool(parts.hostname)


# --------------------------------------------------------------------------- SAML Web Browser SSO


async def _saml_redirect(request: web.Request) -> web.StreamResponse:
    trouble = await simulated_trouble(request, "browser.saml")
    if trouble is not None:
        return trouble
    try:
        message = read_redirect_query(request.rel_url.raw_query_string)
    except RequestError as exc:
        return _refused(request, SAML_IDP_NAME, "The request could not be read.", detail=exc.detail)
    return await _start_saml(request, encoded=message.saml_request, relay_state=message.relay_state, redirect=message)


async def _saml_redirect_form(request: web.Request) -> web.StreamResponse:
    """POST on the Redirect endpoint: only the login form's steps (the binding itself is GET)."""
    form = await _form(request)
    if FLOW_FIELD in form:
        return await _step(request, form)
    return _refused(request, SAML_IDP_NAME, "The request could not be read.", detail="HTTP-Redirect takes GET")


async def _saml_post(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    if FLOW_FIELD in form:
        return await _step(request, form)
    trouble = await simulated_trouble(request, "browser.saml")
    if trouble is not None:
        return trouble
    encoded = form.get("SAMLRequest", "")
    relay_state = form.get("RelayState")
    if not encoded:
        return _refused(request, SAML_IDP_NAME, "The request could not be read.", detail="no SAMLRequest")
    if relay_state is not None and len(relay_state) > MAX_RELAY_STATE_CHARS:
        return _refused(request, SAML_IDP_NAME, "The request could not be read.", detail="RelayState is too long")
    return await _start_saml(request, encoded=encoded, relay_state=relay_state, redirect=None)


async def _start_saml(
    request: web.Request, *, encoded: str, relay_state: str | None, redirect: RedirectMessage | None
) -> web.StreamResponse:
    """Check the AuthnRequest (bounds, signature, SP, ACS) and show the login page."""
    browser, runtime = request.app[BROWSER_RUNTIME], request.app[ECP_RUNTIME]
    idp = runtime.idp
    base = runtime.base_for(request)
    server = await idp.server_for(base)
    binding = BINDING_HTTP_REDIRECT if redirect is not None else BINDING_HTTP_POST
    try:
        root = parse_request(inflate_request(encoded) if redirect is not None else decode_posted_request(encoded))
        issuer = request_issuer(root)
        certificates = idp.sp_signing_certificates(server, issuer)
        if redirect is not None and redirect.is_signed:
            if certificates and not redirect_signature_valid(redirect, certificates):
                raise AssertionRejected("signature_invalid", "the query signature does not verify")
            if not certificates:
                log.info("signed AuthnRequest from %s not checked: no registered signing certificate", issuer)
        checked = check_embedded_signature(root, certificates, now=datetime.now(UTC))
        text = deflate_request(checked.xml) if redirect is not None else base64.b64encode(checked.xml).decode("ascii")
        authn = idp.parse_browser_request(server, text, binding)
    except AssertionRejected as exc:
        return _refused(request, SAML_IDP_NAME, "The request's signature could not be verified.", detail=exc.detail)
    except RequestError as exc:
        return _refused(request, SAML_IDP_NAME, "The request could not be read.", detail=exc.detail)
    if authn.protocol_binding not in (None, BINDING_HTTP_POST):
        return _refused(
            request,
            SAML_IDP_NAME,
            "The service asked for an answer this sign-in service cannot give.",
            detail=f"ProtocolBinding {authn.protocol_binding} is not supported (HTTP-POST only)",
        )
    decision = idp.resolve_acs(server, authn, trust_any_sp=runtime.controls.trust_any_sp, binding=BINDING_HTTP_POST)
    if decision.refusal is not None:
        return _refused(
            request, SAML_IDP_NAME, "The service you came from is not registered here.", detail=decision.refusal
        )
    if not _http_url(decision.acs_url):
        return _refused(
            request, SAML_IDP_NAME, "The request could not be read.", detail="the ACS URL is not an http(s) URL"
        )
    pending = PendingSignin(
        target=SamlTarget(base_url=base, authn=authn, acs_url=decision.acs_url, relay_state=relay_state),
        relying_party=authn.sp_entity_id,
        action=REDIRECT_SSO_PATH if redirect is not None else POST_SSO_PATH,
    )
    flow = browser.pending.start(pending)
    log.info("SAML browser sign-in for %s begins (%s)", authn.sp_entity_id, binding.rsplit(":", 1)[-1])
    return _html(
        login_page(action=pending.action, flow=flow, idp_name=SAML_IDP_NAME, relying_party=pending.relying_party)
    )


# --------------------------------------------------------------------------- WS-Federation passive


async def _wsfed(request: web.Request) -> web.StreamResponse:
    form = await _form(request) if request.method == "POST" else {}
    if FLOW_FIELD in form:
        return await _step(request, form)
    trouble = await simulated_trouble(request, "browser.wsfed")
    if trouble is not None:
        return trouble
    browser = request.app[BROWSER_RUNTIME]
    params: dict[str, str] = {}
    for name, value in request.query.items():
        params.setdefault(name, value)
    params.update(form)
    try:
        signin = read_signin(params, relying_parties=browser.config.relying_parties)
    except WsFedRefused as exc:
        return _refused(request, ADFS_NAME, ADFS_ERROR, detail=exc.detail)
    pending = PendingSignin(
        target=WsFedTarget(
            realm=signin.realm, reply=signin.reply, context=signin.context, issuer=browser.issuer_for(request)
        ),
        relying_party=signin.realm,
        action=WSFED_PATH,
    )
    flow = browser.pending.start(pending)
    log.info("WS-Federation sign-in for %s begins", signin.realm)
    return _html(
        login_page(
            action=WSFED_PATH,
            flow=flow,
            idp_name=ADFS_NAME,
            relying_party=signin.realm,
            username=signin.login_hint,
            can_cancel=False,
        )
    )


# --------------------------------------------------------------------------- the login form's steps


async def _step(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    trouble = await simulated_trouble(request, "browser.form")
    if trouble is not None:
        return trouble
    browser = request.app[BROWSER_RUNTIME]
    flow = form.get(FLOW_FIELD, "")
    pending = browser.pending.get(flow)
    if pending is None or pending.action != request.path:
        count(request, "browser.expired")
        name = ADFS_NAME if request.path == WSFED_PATH else SAML_IDP_NAME
        completion = request.app.get(OIDC_COMPLETION)
        if completion is not None and request.path == completion.path:
            name = OIDC_IDP_NAME
        return _html(error_page(idp_name=name, message=EXPIRED_MESSAGE), 400)
    if form.get(ACTION_FIELD) == ACTION_CANCEL and pending.can_cancel:
        browser.pending.finish(flow)
        if isinstance(pending.target, OidcTarget):
            count(request, "browser.cancelled")
            return await request.app[OIDC_COMPLETION].cancelled(request, pending.target)
        if isinstance(pending.target, SamlTarget):
            return await _cancelled(request, pending.target)
    if pending.user_upn is None:
        return await _password_step(request, flow, pending, form)
    return await _otp_step(request, flow, pending, form)


def _again(flow: str, pending: PendingSignin, *, username: str = "", error: str | None = None) -> web.Response:
    return _html(
        login_page(
            action=pending.action,
            flow=flow,
            idp_name=_idp_name(pending.protocol),
            relying_party=pending.relying_party,
            username=username,
            error=error,
            can_cancel=pending.can_cancel,
            redirects_to=_redirects_to(pending),
        )
    )


def _code_page(flow: str, pending: PendingSignin, *, error: str | None = None) -> web.Response:
    return _html(
        otp_page(
            action=pending.action,
            flow=flow,
            idp_name=_idp_name(pending.protocol),
            relying_party=pending.relying_party,
            error=error,
            can_cancel=pending.can_cancel,
            redirects_to=_redirects_to(pending),
        )
    )


def _redirects_to(pending: PendingSignin) -> str | None:
    """An OpenID Connect sign-in's answer is a redirect to the client; SAML and WS-Fed answer with a page."""
    return pending.target.redirect_uri if isinstance(pending.target, OidcTarget) else None


async def _password_step(
    request: web.Request, flow: str, pending: PendingSignin, form: dict[str, str]
) -> web.StreamResponse:
    browser = request.app[BROWSER_RUNTIME]
    login = form.get(USERNAME_FIELD, "").strip()
    user = browser.config.authenticate(login, form.get(PASSWORD_FIELD, "")) if login else None
    if user is None:
        count(request, "browser.login_failed")
        log.info("browser sign-in: wrong password or unknown user %s", login)
        return _again(flow, pending, username=login, error=WRONG_PASSWORD)
    if not user.enabled:
        count(request, "browser.disabled")
        log.info("browser sign-in refused for disabled user %s", user.upn)
        return _again(flow, pending, username=login, error=ACCOUNT_DISABLED)
    if user.totp() is not None:
        browser.pending.update(flow, dataclasses.replace(pending, user_upn=user.upn))
        count(request, "browser.otp_prompt")
        return _code_page(flow, pending)
    return await _complete(request, flow, pending, user, mfa=False)


async def _otp_step(
    request: web.Request, flow: str, pending: PendingSignin, form: dict[str, str]
) -> web.StreamResponse:
    browser = request.app[BROWSER_RUNTIME]
    user = browser.config.find_user(pending.user_upn or "")
    if user is None or user.totp() is None:  # the directory cannot change under a running app; defensive
        browser.pending.finish(flow)
        return _html(error_page(idp_name=_idp_name(pending.protocol), message=EXPIRED_MESSAGE), 400)
    if not user.otp_is(form.get(OTP_FIELD, "")):
        count(request, "browser.otp_failed")
        failures = pending.otp_failures + 1
        log.info("browser sign-in: wrong one-time code for %s (%s of %s)", user.upn, failures, MAX_OTP_FAILURES)
        if failures >= MAX_OTP_FAILURES:
            browser.pending.finish(flow)
            message = "Too many wrong codes. Start again from the device."
            return _html(error_page(idp_name=_idp_name(pending.protocol), message=message), 400)
        browser.pending.update(flow, dataclasses.replace(pending, otp_failures=failures))
        return _code_page(flow, pending, error=WRONG_OTP)
    return await _complete(request, flow, pending, user, mfa=True)


async def _complete(
    request: web.Request, flow: str, pending: PendingSignin, user: SimUser, *, mfa: bool
) -> web.StreamResponse:
    """The signed answer, on its auto-posting page; the sign-in's id is spent first (no double answer)."""
    browser = request.app[BROWSER_RUNTIME]
    browser.pending.finish(flow)
    target = pending.target
    if isinstance(target, OidcTarget):
        return await request.app[OIDC_COMPLETION].signed_in(request, target, user, mfa)
    if isinstance(target, SamlTarget):
        runtime = request.app[ECP_RUNTIME]
        server = await runtime.idp.server_for(target.base_url)
        try:
            response = await runtime.idp.build_response(
                server,
                target.authn,
                user,
                acs_url=target.acs_url,
                controls=runtime.controls,
                authn_class=AUTHN_CONTEXT_MFA if mfa else AUTHN_CONTEXT_PASSWORD,
            )
        except EcpIssueError as exc:
            log.warning("SAML browser answer for %s could not be built: %s", target.authn.sp_entity_id, exc.detail)
            count(request, "browser.error")
            return _html(error_page(idp_name=SAML_IDP_NAME, message="The answer could not be built."), 500)
        if runtime.controls.mischief is not None:
            count(request, f"browser.mischief.{runtime.controls.mischief.value}")
        count(request, "browser.issued.saml")
        log.info("SAML browser sign-in: %s signed in to %s (mfa=%s)", user.upn, target.authn.sp_entity_id, mfa)
        return _html(autopost_page(url=target.acs_url, fields=_saml_fields(response, target)))
    state = request.app.get(SIM_STATE)
    context = IssueContext(
        issuer=target.issuer,
        lifetime=browser.config.token_lifetime,
        signing=browser.signing,
        mischief=None if state is None else state.mischief,
        mischief_subject=DEFAULT_MISCHIEF_SUBJECT if state is None else state.mischief_subject,
    )
    try:
        # Signing is CPU work: a worker thread keeps the loop answering meanwhile.
        wresult = await asyncio.to_thread(build_wresult, user, context, realm=target.realm, now=datetime.now(UTC))
    except Exception:
        log.exception("WS-Federation token issuance failed for %s", user.upn)
        count(request, "browser.error")
        return _html(error_page(idp_name=ADFS_NAME, message=ADFS_ERROR), 500)
    if context.mischief is not None:
        count(request, f"browser.mischief.{context.mischief.value}")
    count(request, "browser.issued.wsfed")
    log.info("WS-Federation sign-in: %s signed in to %s (mfa=%s)", user.upn, target.realm, mfa)
    fields = [("wa", WSIGNIN), ("wresult", wresult)]
    if target.context is not None:
        fields.append(("wctx", target.context))
    return _html(autopost_page(url=target.reply, fields=fields))


def _saml_fields(response: etree._Element, target: SamlTarget) -> list[tuple[str, str]]:
    xml = etree.tostring(response, xml_declaration=True, encoding="UTF-8")
    fields = [("SAMLResponse", base64.b64encode(xml).decode("ascii"))]
    if target.relay_state is not None:
        fields.append(("RelayState", target.relay_state))
    return fields


async def _cancelled(request: web.Request, target: SamlTarget) -> web.StreamResponse:
    """The user pressed Cancel: the SP learns it from a Response with Responder/AuthnFailed, no assertion."""
    count(request, "browser.cancelled")
    runtime = request.app[ECP_RUNTIME]
    server = await runtime.idp.server_for(target.base_url)
    # Signing (sign_response) is CPU work: off the event loop.
    response = await asyncio.to_thread(
        runtime.idp.error_response,
        server,
        target.authn,
        acs_url=target.acs_url,
        codes=(STATUS_RESPONDER, STATUS_AUTHN_FAILED),
        message=CANCELLED_MESSAGE,
        controls=runtime.controls,
    )
    log.info("SAML browser sign-in for %s cancelled by the user", target.authn.sp_entity_id)
    return _html(autopost_page(url=target.acs_url, fields=_saml_fields(response, target)))
