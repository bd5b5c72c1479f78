"""aiohttp routes of the ECP IdP, mounted into the simulator's app by :func:`mount_ecp`.

- ``POST /idp/profile/SAML2/SOAP/ECP``   SAML 2.0 ECP SSO (SOAP 1.1, HTTP Basic), Shibboleth's path
- ``GET  /idp/shibboleth``              the IdP's SAML metadata
- ``GET|POST /_sim/ecp``                 run-time controls (loopback clients only)
- ``POST /_sim/ecp/sp-metadata``         trust one more SP (its metadata XML; loopback only)

Answers, as Shibboleth gives them: no or undecodable Basic credentials → 401
with a Basic challenge; unreadable request → SOAP Fault (HTTP 500); unknown
SP or unregistered ACS → Response with Responder/RequestDenied; wrong password
→ 401 again, or the dialect ``auth_failure`` names (:class:`AuthFailureMode`:
a SOAP fault with 401/403, a bare 403, or a SAML status as Shibboleth, Keycloak
or SimpleSAMLphp word it); disabled account → Responder/RequestDenied; right
password for an account marked ``password_logins: mfa_required`` →
Responder/NoAuthnContext with a StatusMessage saying MFA is required (an
MFA-enforcing IdP cannot satisfy its policy over ECP).

The metadata also lists the Web Browser SSO endpoints that
:mod:`bridge.idpsim.browser` serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.errors import BridgeError, ConfigError, RequestError
from bridge.idpsim.ecp.documents import basic_credentials, idp_metadata, soap_fault
from bridge.idpsim.ecp.idp import (
    ECP_PATH,
    ENTITY_PATH,
    MAX_REQUEST_BYTES,
    POST_SSO_PATH,
    REDIRECT_SSO_PATH,
    EcpIdp,
    EcpIssueError,
)
from bridge.idpsim.ecp.settings import AuthFailureMode, EcpControls, EcpSettings
from bridge.idpsim.issuance import SigningMaterial
from bridge.idpsim.state import ERROR_PAGE_500, SIM_STATE, FailMode, refuse_remote

if TYPE_CHECKING:  # config.py imports ecp.settings: keep the cycle type-only
    from bridge.idpsim.config import SimConfig

log = logging.getLogger(__name__)

_STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
# The SAML Status (codes top-level first, StatusMessage) of each dialect that answers with a Response.
_STATUS_DIALECTS: dict[AuthFailureMode, tuple[tuple[str, ...], str | None]] = {
    AuthFailureMode.SAML_STATUS: ((f"{_STATUS}Responder", f"{_STATUS}AuthnFailed"), None),
    AuthFailureMode.REQUESTER_AUTHN_FAILED: ((f"{_STATUS}Requester", f"{_STATUS}AuthnFailed"), None),
    AuthFailureMode.UNKNOWN_PRINCIPAL: ((f"{_STATUS}Requester", f"{_STATUS}UnknownPrincipal"), None),
    AuthFailureMode.NO_PASSIVE: ((f"{_STATUS}Responder", f"{_STATUS}NoPassive"), None),
    AuthFailureMode.REQUEST_DENIED: ((f"{_STATUS}Responder", f"{_STATUS}RequestDenied"), None),
    # SimpleSAMLphp: the exception's class and message in the StatusMessage of a bare Responder.
    AuthFailureMode.WRONGUSERPASS: ((f"{_STATUS}Responder",), "SimpleSAML\\Error\\Error: WRONGUSERPASS"),
    AuthFailureMode.RESPONDER_ONLY: ((f"{_STATUS}Responder",), None),
}
AUTHN_FAILED_FAULT = "Authentication failed"
# The right password for an account whose IdP policy demands MFA: the request cannot be met
# with the authentication context ECP can offer (saml-core 3.2.2.2, NoAuthnContext).
MFA_REQUIRED_CODES = (f"{_STATUS}Responder", f"{_STATUS}NoAuthnContext")
MFA_REQUIRED_MESSAGE = "Multi-factor authentication is required for this account."
BINDING_HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

METADATA_PATH = ENTITY_PATH
CONTROL_PATH = "/_sim/ecp"
SP_METADATA_PATH = "/_sim/ecp/sp-metadata"
SOAP11_CONTENT_TYPE = "text/xml; charset=utf-8"
SAML_METADATA_CONTENT_TYPE = "application/samlmetadata+xml"


@dataclass(kw_only=True, slots=True)
class EcpRuntime:
    """Per-app state of the ECP IdP: the IdP itself, its controls, and a fixed base URL if any."""

    idp: EcpIdp
    controls: EcpControls
    settings: EcpSettings
    base_url: str | None = None

    def base_for(self, request: web.Request) -> str:
        """``https://host:port`` of this simulator as the client reached it (entityID and endpoint)."""
        if self.base_url is not None:
            return self.base_url.rstrip("/")
        return f"{request.scheme}://{request.host}"


ECP_RUNTIME = web.AppKey("ECP_RUNTIME", EcpRuntime)


def mount_ecp(
    app: web.Application,
    *,
    config: SimConfig,
    signing: SigningMaterial,
    settings: EcpSettings | None = None,
    base_url: str | None = None,
) -> None:
    """Add the ECP IdP routes to the simulator's app (before it starts).

    Uses the simulator's users (``config``), its token-signing pair (``signing``)
    and, at request time, its ``SIM_STATE`` counters and failure controls.
    ``base_url`` fixes the entityID prefix; None derives it from each request's Host.
    """
    settings = settings if settings is not None else EcpSettings()
    idp = EcpIdp(config=config, signing=signing)
    for path in settings.sp_metadata_files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read SP metadata ({exc.strerror})", file=str(path)) from exc
        try:
            idp.add_sp_metadata(raw)
        except RequestError as exc:
            raise ConfigError(exc.detail, file=str(path)) from exc
    app[ECP_RUNTIME] = EcpRuntime(
        idp=idp, controls=EcpControls.from_settings(settings), settings=settings, base_url=base_url
    )
    app.router.add_post(ECP_PATH, _ecp)
    app.router.add_get(METADATA_PATH, _metadata)
    app.router.add_get(CONTROL_PATH, _control_get)
    app.router.add_post(CONTROL_PATH, _control_post)
    app.router.add_post(SP_METADATA_PATH, _sp_metadata)


def _soap(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": SOAP11_CONTENT_TYPE})


def _challenge(runtime: EcpRuntime) -> web.Response:
    return web.Response(
        status=401,
        text="Authentication required",
        headers={"WWW-Authenticate": f'Basic realm="{runtime.settings.realm}", charset="UTF-8"'},
    )


def _wrong_password_without_response(runtime: EcpRuntime, mode: AuthFailureMode) -> web.Response:
    """The dialects that refuse a password with the HTTP status (and maybe a SOAP fault), no SAML Response."""
    if mode is AuthFailureMode.HTTP_403:
        return web.Response(status=403, text="Forbidden")
    if mode in (AuthFailureMode.HTTP_401_FAULT, AuthFailureMode.HTTP_403_FAULT):
        status = 401 if mode is AuthFailureMode.HTTP_401_FAULT else 403
        answer = _soap(soap_fault(client_error=True, text=AUTHN_FAILED_FAULT), status=status)
        if status == 401:
            answer.headers["WWW-Authenticate"] = f'Basic realm="{runtime.settings.realm}", charset="UTF-8"'
        return answer
    return _challenge(runtime)


async def simulated_trouble(request: web.Request, name: str, *,
                            garbage: tuple[bytes, str] | None = None) -> web.StreamResponse | None:
    """The simulator-wide counters, delay and failure modes, as the AD FS endpoints apply them.

    ``garbage``: the start of the noise ``fail_mode: garbage`` answers, and its Content-Type
    (default: a broken SOAP envelope; the OpenID Provider's is broken JSON).
    """
    state = request.app.get(SIM_STATE)
    if state is None:
        return None
    state.count(name)
    if state.delay_seconds > 0:
        await asyncio.sleep(state.delay_seconds)
    if state.fail_mode is FailMode.HTTP_503:
        return web.Response(status=503, text="Service Unavailable", content_type="text/html")
    if state.fail_mode is FailMode.HTTP_500_PAGE:
        return web.Response(status=500, text=ERROR_PAGE_500, content_type="text/html")
    if state.fail_mode is FailMode.DROP_CONNECTION:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("idp-sim dropped the connection on purpose")
    if state.fail_mode is FailMode.GARBAGE:
        start, content_type = garbage or (b"\x89GARBAGE\x00<soap11:Envelope", SOAP11_CONTENT_TYPE)
        return web.Response(body=start + os.urandom(48), headers={"Content-Type": content_type})
    return None


def count(request: web.Request, name: str) -> None:
    """Count ``name`` in the simulator's counters (``/_sim/stats``) when the app has them."""
    state = request.app.get(SIM_STATE)
    if state is not None:
        state.count(name)


async def _ecp(request: web.Request) -> web.StreamResponse:
    trouble = await simulated_trouble(request, "ecp")
    if trouble is not None:
        return trouble
    runtime = request.app[ECP_RUNTIME]
    credentials = basic_credentials(request.headers.get("Authorization"))
    if credentials is None:
        count(request, "ecp.challenge")
        return _challenge(runtime)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raw = b"\x00" * (MAX_REQUEST_BYTES + 1)
    controls, idp = runtime.controls, runtime.idp
    server = await idp.server_for(runtime.base_for(request))
    try:
        if len(raw) > MAX_REQUEST_BYTES:
            raise RequestError("request too large")
        authn = idp.parse_request(server, raw)
    except BridgeError as exc:
        log.info("refused ECP request: %s", exc.detail)
        count(request, "ecp.fault")
        return _soap(soap_fault(client_error=True, text="The request could not be decoded."), status=500)
    decision = idp.resolve_acs(server, authn, trust_any_sp=controls.trust_any_sp)
    try:
        if decision.refusal is not None:
            log.info("ECP request from %s refused: %s", authn.sp_entity_id, decision.refusal)
            count(request, "ecp.denied")
            return _soap(
                idp.request_denied(server, authn, acs_url=decision.acs_url, reason=decision.refusal, controls=controls)
            )
        user = idp.config.authenticate(credentials.login, credentials.password)
        if user is None:
            log.info("ECP authentication failed for %s", credentials.login)
            count(request, "ecp.auth_failed")
            dialect = _STATUS_DIALECTS.get(controls.auth_failure)
            if dialect is None:
                return _wrong_password_without_response(runtime, controls.auth_failure)
            codes, message = dialect
            return _soap(
                idp.authn_failed(
                    server, authn, acs_url=decision.acs_url, controls=controls, codes=codes, message=message
                )
            )
        if not user.enabled:
            log.info("ECP login refused for disabled user %s", user.upn)
            count(request, "ecp.denied")
            return _soap(
                idp.request_denied(
                    server, authn, acs_url=decision.acs_url, reason="account disabled", controls=controls
                )
            )
        if user.password_logins_need_mfa:
            log.info("ECP login refused for %s: its policy requires MFA", user.upn)
            count(request, "ecp.mfa_required")
            return _soap(
                idp.error_envelope(
                    server,
                    authn,
                    acs_url=decision.acs_url,
                    codes=MFA_REQUIRED_CODES,
                    message=MFA_REQUIRED_MESSAGE,
                    controls=controls,
                )
            )
        body = await idp.issue(server, authn, user, acs_url=decision.acs_url, controls=controls)
    except EcpIssueError as exc:
        log.warning("ECP answer for %s could not be built: %s", authn.sp_entity_id, exc.detail)
        count(request, "ecp.error")
        return _soap(soap_fault(client_error=False, text="The IdP could not build the response."), status=500)
    count(request, "ecp.issued")
    if controls.mischief is not None:
        count(request, f"ecp.mischief.{controls.mischief.value}")
    log.info("ECP assertion issued for %s to %s", user.upn, authn.sp_entity_id)
    return _soap(body)


async def _metadata(request: web.Request) -> web.StreamResponse:
    trouble = await simulated_trouble(request, "ecp-metadata")
    if trouble is not None:
        return trouble
    runtime = request.app[ECP_RUNTIME]
    base = runtime.base_for(request)
    document = idp_metadata(
        entity_id=base + ENTITY_PATH,
        sso_url=base + ECP_PATH,
        signing_cert_pem=runtime.idp.signing.cert_pem,
        browser_sso=((BINDING_HTTP_REDIRECT, base + REDIRECT_SSO_PATH), (BINDING_HTTP_POST, base + POST_SSO_PATH)),
    )
    return web.Response(body=document, headers={"Content-Type": SAML_METADATA_CONTENT_TYPE})


def _snapshot(runtime: EcpRuntime) -> dict[str, object]:
    return {**runtime.controls.snapshot(), "trusted_sps": list(runtime.idp.trusted_sps())}


async def _control_get(request: web.Request) -> web.StreamResponse:
    refused = refuse_remote(request)
    if refused is not None:
        return refused
    return web.json_response(_snapshot(request.app[ECP_RUNTIME]))


async def _control_post(request: web.Request) -> web.StreamResponse:
    refused = refuse_remote(request)
    if refused is not None:
        return refused
    runtime = request.app[ECP_RUNTIME]
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": "bad_request", "message": "body must be JSON"}, status=400)
    try:
        runtime.controls.apply_control(body)
    except RequestError as exc:
        return web.json_response(exc.to_json(), status=exc.http_status)
    log.info("ECP simulator controls now %s", runtime.controls.snapshot())
    return web.json_response(_snapshot(runtime))


async def _sp_metadata(request: web.Request) -> web.StreamResponse:
    refused = refuse_remote(request)
    if refused is not None:
        return refused
    runtime = request.app[ECP_RUNTIME]
    raw = await request.read()
    try:
        entity_id = await runtime.idp.add_sp_metadata_async(raw)
    except RequestError as exc:
        return web.json_response(exc.to_json(), status=exc.http_status)
    return web.json_response({"entity_id": entity_id, **_snapshot(runtime)})
