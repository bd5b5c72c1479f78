"""The simulator's aiohttp application: AD FS endpoints plus loopback-only controls.

Routes (paths as on a real AD FS farm):

- ``GET  /adfs/services/trust/mex``                        MEX (WSDL with policies)
- ``POST /adfs/services/trust/13/usernamemixed``           WS-Trust 1.3 Issue
- ``POST /adfs/services/trust/2005/usernamemixed``         WS-Trust 2005 Issue
- ``GET  /FederationMetadata/2007-06/FederationMetadata.xml``
- ``GET  /_sim/stats``, ``POST /_sim/control``             controls, loopback clients only
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
from bridge.idpsim.ecp.routes import mount_ecp
from bridge.idpsim.issuance import IssueContext, SigningMaterial, issue_token
from bridge.idpsim.keys import SimKeys, ensure_keys
from bridge.idpsim.mex import build_federation_metadata, build_mex
from bridge.idpsim.namespaces import TrustVersion
from bridge.idpsim.state import SIM_STATE, FailMode, Mischief, SimState, refuse_remote

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
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SIM_CONFIG] = config
    app[SIM_KEYS] = keys
    app[SIM_SIGNING] = signing_material(config, keys)
    app[SIM_STATE] = SimState()
    app.router.add_get(MEX_PATH, _protocol("mex", _mex))
    app.router.add_get(FEDMETA_PATH, _protocol("metadata", _metadata))
    for version in TrustVersion:
        app.router.add_post(version.mixed_path, _protocol(f"trust{version.value}", _trust_handler(version)))
    app.router.add_get(STATS_PATH, _stats)
    app.router.add_post(CONTROL_PATH, _control)
    # The SAML 2.0 ECP IdP (Shibboleth's paths), same users and signing key.
    mount_ecp(app, config=config, signing=app[SIM_SIGNING], settings=config.ecp)
    return app


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
        return _fault(request, FaultKind.FAILED_AUTHENTICATION, version, rst.message_id)
    if rst.applies_to is None or not config.accepts_scope(rst.applies_to):
        log.info("unknown relying party %r requested by %s", rst.applies_to, user.upn)
        return _fault(request, FaultKind.INVALID_SCOPE, version, rst.message_id)
    if not user.enabled:
        log.info("access denied for disabled user %s", user.upn)
        return _fault(request, FaultKind.ACCESS_DENIED, version, rst.message_id)
    context = IssueContext(
        issuer=_issuer(request),
        lifetime=config.token_lifetime,
        signing=request.app[SIM_SIGNING],
        mischief=state.mischief,
        mischief_subject=state.mischief_subject,
    )
    now = datetime.now(UTC)
    doctype = DOCTYPE if state.mischief is Mischief.DOCTYPE else None
    try:
        # Signing is CPU work; a worker thread keeps the loop answering other requests meanwhile.
        token, body = await asyncio.to_thread(_issue, rst, user, context, now, doctype)
    except Exception:
        log.exception("token issuance failed for %s", user.upn)
        return _fault(request, FaultKind.REQUEST_FAILED, version, rst.message_id)
    state.count("issued")
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
        state.apply_control(body)
    except RequestError as exc:
        return web.json_response(exc.to_json(), status=exc.http_status)
    log.info("simulator controls now %s", state.snapshot())
    return web.json_response(state.snapshot())
