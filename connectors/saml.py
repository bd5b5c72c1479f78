"""Our SAML SP metadata, for the administrator to register the bridge at the IdP."""

from __future__ import annotations

from aiohttp import web

from bridge.appkeys import IDPS, LOGIN
from bridge.config import Protocol
from bridge.idp.saml.client import acs_url_for
from bridge.idp.saml.metadata import build_sp_metadata


async def sp_metadata(request: web.Request) -> web.Response:
    config = request.app[LOGIN].config  # the tenants of this moment
    tenant = next((t for t in config.tenants if t.id == request.match_info["tenant"]), None)
    if tenant is None or tenant.protocol is not Protocol.SAML2 or tenant.saml2 is None:
        raise web.HTTPNotFound(reason="no SAML tenant with this id")
    sp = request.app[IDPS].sp_keys
    body = build_sp_metadata(
        entity_id=tenant.saml2.sp_entity_id,
        acs_url=acs_url_for(tenant, config.public_url),
        signing_cert_pem=sp.cert_pem,
        encryption_cert_pem=sp.cert_pem,
        requests_signed=tenant.saml2.sign_requests,
    )
    return web.Response(body=body, content_type="application/samlmetadata+xml")


def routes() -> list[web.RouteDef]:
    return [web.get("/saml/{tenant}/metadata", sp_metadata)]
