"""The simulator's aiohttp application: AD FS endpoints plus loopback-only controls.

Routes (paths as on a real AD FS farm):

- ``GET  /adfs/services/trust/mex``                        MEX (WSDL with policies)
- ``POST /adfs/services/trust/13/usernamemixed``           WS-Trust 1.3 Issue
- ``POST /adfs/services/trust/2005/usernamemixed``         WS-Trust 2005 Issue
- ``GET  /FederationMetadata/2007-06/FederationMetadata.xml``
- ``GET|POST /adfs/ls/``                                  WS-Federation passive sign-in (browser)
- ``GET  /_sim/stats``, ``POST /_sim/control``             controls, loopback clients only

plus the SAML 2.0 ECP IdP (:mod:`bridge.idpsim.ecp`), the browser sign-in
(:mod:`bridge.idpsim.browser`: SAML Web Browser SSO and WS-Federation) and the
OpenID Provider under ``/oidc/`` (:mod:`bridge.idpsim.oidc`).
A user marked ``password_logins: mfa_required`` gets, once the password is
right, AD FS's MSIS7102 fault on both WS-Trust endpoints: its policy wants a
second factor, which only the browser sign-in can ask for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from bridge.errors import ConfigError, RequestError
from bridge.idpsim.browser.routes import failure_response as browser_failure_response
from bridge.idpsim.browser.routes import mount_browser
from bridge.idpsim.config import SimConfig, SimUser
from bridge.idpsim.documents import (
    SOAP12_CONTENT_TYPE,
    FaultKind,
    IssuedToken,
    RstRejected,
    RstRequest,
    build_fault,
    build_rstr,
    parse_rst,
)
from bridge.idpsim.ecp.documents import soap_fault
from bridge.idpsim.ecp.routes import SOAP11_CONTENT_TYPE, mount_ecp
from bridge.idpsim.issuance import IssueContext, SigningMaterial, issue_token
from bridge.idpsim.keys import SimKeys, ensure_keys
from bridge.idpsim.mex import build_federation_metadata, build_mex
from bridge.idpsim.namespaces import TrustVersion
from bridge.idpsim.oidc.routes import apply_key_action, mount_oidc
from bridge.idpsim.oidc.routes import failure_response as oidc_failure_response
from bridge.idpsim.state import (
    ERROR_PAGE_500,
    SIM_STATE,
    AdfsAuthFailure,
    FailMode,
    Mischief,
    SimState,
    oidc_key_action,
    refuse_remote,
)

log = logging.getLogger(__name__)

MEX_PATH = "/adfs/services/trust/mex"
FEDMETA_PATH = "/FederationMetadata/2007-06/FederationMetadata.xml"
STATS_PATH = "/_sim/stats"
CONTROL_PATH = "/_sim/control"
XML_CONTENT_TYPE = "text/xml; charset=utf-8"
MAX_BODY_BYTES = 256 * 1024
DOCTYPE = '<!DOCTYPE s:Envelope [<!ENTITY sim "idp-sim">]>'

SIM_CONFIG = web.AppKey("SIM_CONFIG", SimConfig)
SIM_KEYS = web.AppKey("SIM_KEYS", SimKeys)
SIM_SIGNING = web.AppKey("SIM_SIGNING", SigningMaterial)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def signing_material(config: SimConfig, keys: SimKeys) -> SigningMaterial:
    """The configured signing pair if the users file names one, else the generated one."""
    settings = config.signing
    if settings.key_file is not None and settings.cert_file is not None:
        try:
            key_pem, cert_pem = settings.key_file.read_bytes(), settings.cert_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read signing key/cert ({exc.strerror})", file=config.source, key="signing"
            ) from exc
        return SigningMaterial(key_pem=key_pem, cert_pem=cert_pem, algorithm=settings.algorithm)
    return SigningMaterial(
        key_pem=keys.signing_key_pem, cert_pem=keys.signing_cert_pem, algorithm=settings.algorithm
    )


def make_app(config: SimConfig, *, keys_dir: Path, keys: SimKeys | None = None) -> web.Application:
    """The simulator app; serve it with :func:`bridge.idpsim.keys.server_ssl_context` for https."""
    keys = keys if keys is not None else ensure_keys(keys_dir)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_answer_own_failures])
    app[SIM_CONFIG] = config
    app[SIM_KEYS] = keys
    app[SIM_SIGNING] = signing_material(config, keys)
    app[SIM_STATE] = SimState(oidc_dialect=config.oidc.dialect, oidc_default_dialect=config.oidc.dialect)
    app.router.add_get(MEX_PATH, _protocol("mex", _mex))
    app.router.add_get(FEDMETA_PATH, _protocol("metadata", _metadata))
    for version in TrustVersion:
        app.router.add_post(version.mixed_path, _protocol(f"trust{version.value}", _trust_handler(version)))
    app.router.add_get(STATS_PATH, _stats)
    app.router.add_post(CONTROL_PATH, _control)
    # The SAML 2.0 ECP IdP (Shibboleth's paths), same users and signing key.
    mount_ecp(app, config=config, signing=app[SIM_SIGNING], settings=config.ecp)
    # Browser sign-in (phone pairing): SAML Web Browser SSO through the ECP IdP, WS-Federation as AD FS.
    mount_browser(app, config=config, signing=app[SIM_SIGNING], issuer_for=_issuer)
    # OpenID Connect (Entra, Okta, Keycloak's role): its own JWKS keys, the browser's login pages.
    mount_oidc(app, config=config)
    return app


@web.middleware
async def _answer_own_failures(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """A failure of the simulator itself: log the traceback, answer as the IdP it plays would.

    AD FS and Shibboleth answer their own errors with a SOAP fault; aiohttp's
    bare "500 Internal Server Error" text is what a relying party must not be
    trained on.  The protocol endpoints answer a SOAP fault of their SOAP
    version, the controls a JSON error.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        if request.transport is None or request.transport.is_closing():
            raise  # the connection is gone (dropped on purpose): nobody to answer
        log.exception("idp-sim failed answering %s %s", request.method, request.path)
        request.app[SIM_STATE].count("sim.failure")
        return _failure_answer(request.path)


def _failure_answer(path: str) -> web.Response:
    page = browser_failure_response(path) or oidc_failure_response(path)
    if page is not None:
        return page
    if path.startswith("/adfs/"):
        version = TrustVersion.WS_TRUST_2005 if "/2005/" in path else TrustVersion.WS_TRUST_13
        return _soap(build_fault(FaultKind.REQUEST_FAILED, version=version), status=500)
    if path.startswith("/idp/"):
        body = soap_fault(client_error=False, text="The IdP could not process the request.")
        return web.Response(body=body, status=500, headers={"Content-Type": SOAP11_CONTENT_TYPE})
    return web.json_response({"error": "internal_error", "message": "the simulator failed; see its log"},
                             status=500)


def _issuer(request: web.Request) -> str:
    configured = request.app[SIM_CONFIG].issuer
    return configured if configured is not None else f"http://{request.host}/adfs/services/trust"


def _protocol(name: str, handler: _Handler) -> _Handler:
    """Count the call, then apply the delay and failure controls before the real handler."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        state = request.app[SIM_STATE]
        state.count(name)
        if state.delay_seconds > 0:
            await asyncio.sleep(state.delay_seconds)
        if state.fail_mode is FailMode.HTTP_503:
            return web.Response(status=503, text="Service Unavailable", content_type="text/html")
        if state.fail_mode is FailMode.HTTP_500_PAGE:
            return web.Response(status=500, text=ERROR_PAGE_500, content_type="text/html")
        if state.fail_mode is FailMode.DROP_CONNECTION:
            log.info("dropping the connection from %s on purpose", request.remote)
            if request.transport is not None:
                request.transport.abort()
            # Nothing reaches the client any more; aiohttp discards this quietly.
            return web.Response(status=503)
        if state.fail_mode is FailMode.GARBAGE:
            noise = b"\x89GARBAGE\x00<s:Envelope" + os.urandom(48)
            return web.Response(body=noise, headers={"Content-Type": SOAP12_CONTENT_TYPE})
        return await handler(request)

    return wrapped


async def _mex(request: web.Request) -> web.StreamResponse:
    return web.Response(body=build_mex(request.host), headers={"Content-Type": XML_CONTENT_TYPE})


async def _metadata(request: web.Request) -> web.StreamResponse:
    document = build_federation_metadata(
        issuer=_issuer(request), authority=request.host, signing_cert_pem=request.app[SIM_SIGNING].cert_pem
    )
    return web.Response(body=document, headers={"Content-Type": XML_CONTENT_TYPE})


def _soap(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": SOAP12_CONTENT_TYPE})


def _fault(
    request: web.Request, kind: FaultKind, version: TrustVersion, relates_to: str | None
) -> web.Response:
    request.app[SIM_STATE].count(f"fault.{kind.value}")
    # AD FS answers every fault, sender or receiver, with HTTP 500.
    return _soap(build_fault(kind, version=version, relates_to=relates_to), status=500)


# The fault (and HTTP status) of each wrong-password dialect; None: the status with an empty body.
_AUTH_FAILURES: dict[AdfsAuthFailure, tuple[FaultKind | None, int]] = {
    AdfsAuthFailure.ID3242: (FaultKind.FAILED_AUTHENTICATION, 500),
    AdfsAuthFailure.ADFS2_WORDING: (FaultKind.FAILED_AUTHENTICATION_ADFS2, 500),
    AdfsAuthFailure.HTTP_401: (FaultKind.FAILED_AUTHENTICATION, 401),
    AdfsAuthFailure.HTTP_401_BARE: (None, 401),
    AdfsAuthFailure.HTTP_403: (FaultKind.FAILED_AUTHENTICATION, 403),
    AdfsAuthFailure.HTTP_403_BARE: (None, 403),
    AdfsAuthFailure.REQUEST_FAILED: (FaultKind.REQUEST_FAILED, 500),
}


def _wrong_password(request: web.Request, version: TrustVersion, relates_to: str | None) -> web.Response:
    """A wrong password or an unknown user, in the dialect the ``auth_failure`` control chose."""
    state = request.app[SIM_STATE]
    state.count(f"fault.{FaultKind.FAILED_AUTHENTICATION.value}")
    kind, status = _AUTH_FAILURES[state.auth_failure]
    if kind is None:
        return web.Response(status=status)
    return _soap(build_fault(kind, version=version, relates_to=relates_to), status=status)


def _trust_handler(version: TrustVersion) -> _Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _trust(request, version)

    return handler


async def _trust(request: web.Request, version: TrustVersion) -> web.StreamResponse:
    config = request.app[SIM_CONFIG]
    state = request.app[SIM_STATE]
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _fault(request, FaultKind.INVALID_REQUEST, version, None)
    try:
        rst = parse_rst(raw, version=version)
    except RstRejected as exc:
        log.info("refused RST on %s: %s", version.mixed_path, exc.detail)
        return _fault(request, exc.fault, version, exc.message_id)
    user = config.authenticate(rst.username, rst.password)
    if user is None:
        log.info("failed authentication for %s", rst.username)
        return _wrong_password(request, version, rst.message_id)
    if rst.applies_to is None or not config.accepts_scope(rst.applies_to):
        log.info("unknown relying party %r requested by %s", rst.applies_to, user.upn)
        return _fault(request, FaultKind.INVALID_SCOPE, version, rst.message_id)
    if not user.enabled:
        log.info("access denied for disabled user %s", user.upn)
        return _fault(request, FaultKind.ACCESS_DENIED, version, rst.message_id)
    if user.password_logins_need_mfa:
        # Only after the password was found right: a wrong one keeps its own fault above.
        log.info("password login refused for %s: its policy requires MFA", user.upn)
        return _fault(request, FaultKind.MFA_REQUIRED, version, rst.message_id)
    context = IssueContext(
        issuer=_issuer(request),
        lifetime=config.token_lifetime,
        signing=request.app[SIM_SIGNING],
        mischief=state.mischief,
        mischief_subject=state.mischief_subject,
    )
    if state.mischief is Mischief.REPLAY and state.last_rstr is not None:
        state.count(f"mischief.{Mischief.REPLAY.value}")
        log.info("replaying the last token issued, to %s", user.upn)
        return _soap(state.last_rstr)
    now = datetime.now(UTC)
    doctype = DOCTYPE if state.mischief is Mischief.DOCTYPE else None
    try:
        # Signing is CPU work; a worker thread keeps the loop answering other requests meanwhile.
        token, body = await asyncio.to_thread(_issue, rst, user, context, now, doctype)
    except Exception:
        log.exception("token issuance failed for %s", user.upn)
        return _fault(request, FaultKind.REQUEST_FAILED, version, rst.message_id)
    state.count("issued")
    state.last_rstr = body
    if state.mischief is not None:
        state.count(f"mischief.{state.mischief.value}")
    log.info("issued %s token for %s to %s", token.kind.value, user.upn, rst.applies_to)
    return _soap(body)


def _issue(
    rst: RstRequest, user: SimUser, context: IssueContext, now: datetime, doctype: str | None
) -> tuple[IssuedToken, bytes]:
    token = issue_token(rst, user, context, now=now)
    return token, build_rstr(rst, token, now=now, doctype=doctype)


async def _stats(request: web.Request) -> web.StreamResponse:
    refused = refuse_remote(request)
    if refused is not None:
        return refused
    return web.json_response(request.app[SIM_STATE].snapshot())


async def _control(request: web.Request) -> web.StreamResponse:
    refused = refuse_remote(request)
    if refused is not None:
        return refused
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": "bad_request", "message": "body must be JSON"}, status=400)
    state = request.app[SIM_STATE]
    try:
        key_action = oidc_key_action(body.get("oidc_keys")) if isinstance(body, dict) else None
        state.apply_control(body)
    except RequestError as exc:
        return web.json_response(exc.to_json(), status=exc.http_status)
    if key_action is not None:
        await apply_key_action(request.app, key_action)
    log.info("simulator controls now %s", state.snapshot())
    return web.json_response(state.snapshot())
