"""The aiohttp side of the SCIM endpoint: /scim/v2/{tenant}/..., a sub-application of the device API.

scim2-server (its framework-neutral :class:`~scim2_server.handler.AsyncScimHandler` and
:class:`~scim2_server.service.ScimService`) serves the protocol; this module turns an aiohttp
request into a :class:`~scim2_server.requests.ScimRequest`, checks the bearer token, and writes the
:class:`~scim2_server.responses.ScimResponse` back (``application/scim+json``). Every answer,
errors included, is SCIM's (RFC 7644 §3.12): the app's JSON error answers never reach here.

Authentication: ``Authorization: Bearer TOKEN`` with a SCIM token of the tenant in the path
(``loginbridge scim token create --tenant ID``); a missing, unknown or revoked token, or one of
another tenant, is ``401`` with ``WWW-Authenticate: Bearer``. ``/ServiceProviderConfig`` needs no
token (RFC 7643 §5). Tokens are never logged.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web
from scim2_models import (
    Context,
    Error,
    NotFoundException,
    PayloadTooLargeException,
    Resource,
    ResponseParameters,
    SCIMException,
    UnauthorizedException,
)
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.service import ScimService

from bridge.appkeys import AUDIT, CONFIG, LOGIN, STORE
from bridge.config import TenantConfig
from bridge.errors import RequestError, StoreError
from bridge.logcontext import request_id_var, tenant_id_var
from bridge.scim import PREFIX
from bridge.scim.resources import PROVIDER
from bridge.scim.storage import TenantStorage
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.scim import Provisioning
from bridge.state.tokens import ApiToken, verify_token

log = logging.getLogger(__name__)

_BEARER = "bearer "


def _tenant(request: web.Request, tenant_id: str) -> TenantConfig:
    try:
        return request.config_dict[LOGIN].config.tenant(tenant_id)  # the tenants of this moment (live)
    except RequestError:
        raise NotFoundException(detail=f"no tenant {tenant_id}") from None


async def _authenticate(request: web.Request, tenant_id: str) -> ApiToken:
    header = request.headers.get("Authorization", "")
    if not header[:len(_BEARER)].lower() == _BEARER:
        raise UnauthorizedException(detail="a SCIM token is required (Authorization: Bearer TOKEN)")
    token = await verify_token(request.config_dict[STORE].database, header[len(_BEARER):].strip(), kind="scim")
    if token is None or token.tenant_id != tenant_id:
        raise UnauthorizedException(detail="the token is not a valid SCIM token of this tenant")
    return token


class BridgeScimService(ScimService):
    """scim2-server's service, answering a PATCH with 200 and the resource (Okta expects it; RFC 7644 §3.5.2
    allows it as it allows 204)."""

    def patch_response(self, base_url: str, resource: Resource[Any],
                       response_parameters: ResponseParameters[Any]) -> ScimResponse:
        return self.resource_response(self.publish(base_url, resource), Context.RESOURCE_REPLACEMENT_RESPONSE,
                                      response_parameters)


SERVICE = BridgeScimService(PROVIDER)


def _base_url(request: web.Request, tenant_id: str) -> str:
    """Where the IdP reaches this tenant's endpoint: ``public_url`` when it was set, else this request's origin."""
    config = request.config_dict[CONFIG]
    public = config.public_url.rstrip("/")
    if not public or public == f"http://{config.listen_host}:{config.listen_port}":  # the default, not an address
        public = f"{request.scheme}://{request.host}"
    return f"{public}{PREFIX}/{tenant_id}"


def _needs_token(scim_request: ScimRequest) -> bool:
    try:
        return SERVICE.match(scim_request).operation is not Operation.service_provider_config
    except Exception:  # no route: the token is still checked before the 404
        return True


async def _serve(request: web.Request) -> ScimResponse:
    tenant_id = request.match_info["tenant"]
    path = "/" + request.match_info.get("path", "")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLargeException(detail=f"a request body is at most {request.client_max_size} bytes") from None
    scim_request = ScimRequest(method=request.method, base_url=_base_url(request, tenant_id),
                               path=path.removesuffix(".scim"), query=dict(request.query),
                               headers=list(request.headers.items()), body=body)
    token = await _authenticate(request, tenant_id) if _needs_token(scim_request) else None
    tenant = _tenant(request, tenant_id)
    tenant_id_var.set(tenant.id)
    scim_request.subject = token

    async def audit(result: str, email: str | None) -> None:
        await request.config_dict[AUDIT].record(AuditEvent(
            at=datetime.now(UTC), kind=AuditKind.PROVISIONING, result=result, tenant_id=tenant.id, mode="scim",
            email=email, source=request.remote, request_id=request_id_var.get(),
            actor=None if token is None else token.name))

    storage = TenantStorage(Provisioning(request.config_dict[STORE].database), tenant, audit)
    return await AsyncScimHandler(SERVICE, storage).handle(scim_request)


async def handle(request: web.Request) -> web.Response:
    try:
        response = await _serve(request)
    except SCIMException as exc:
        log.info("SCIM %s %s -> %s %s", request.method, request.path, exc.status, exc.scim_type or "")
        response = SERVICE.error_response(exc)
    except StoreError as exc:  # the database is unreachable or failing: retry later, as the device API says
        log.warning("SCIM %s %s -> 503: %s", request.method, request.path, exc.detail)
        error = Error(status=503, detail="the bridge's database is unavailable; try again shortly")
        response = ScimResponse(HTTPStatus.SERVICE_UNAVAILABLE, error.model_dump(), {"Retry-After": "5"})
    except Exception as exc:  # a bug, or the store failing: 500 in SCIM's form, the details in the log only
        log.exception("SCIM %s %s failed", request.method, request.path)
        response = SERVICE.error_response(exc)
    body = b"" if response.body is None else json.dumps(response.body, ensure_ascii=False).encode("utf-8")
    headers = {name: value for name, value in response.headers.items() if name.lower() != "content-type"}
    headers.setdefault("Cache-Control", "no-store")
    content_type = response.headers.get("Content-Type", "application/scim+json")
    if response.body is None:
        return web.Response(status=int(response.status), headers=headers)
    return web.Response(status=int(response.status), body=body, headers=headers,
                        content_type=content_type.split(";")[0], charset="utf-8")


def mount_scim(app: web.Application) -> None:
    """Serve SCIM 2.0 at /scim/v2/{tenant}/ on ``app`` (the device API)."""
    scim = web.Application()
    scim.router.add_route("*", "/{tenant}", handle)
    scim.router.add_route("*", "/{tenant}/{path:.*}", handle)
    app.add_subapp(PREFIX, scim)
