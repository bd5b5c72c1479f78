"""A user's personal printer URLs through the admin API (bridge/state/printlinks.py).

An administrator can hand a user a queue URL that needs no password (for a
print client that cannot prompt), list a tenant's or a user's links, and revoke
one; the URL is answered once, at creation. Disabling or deleting the user
deletes its links (the store does it in the same transaction).
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bridge.adminapi.http import (
    PREFIX,
    audit,
    authenticate,
    fields,
    iso,
    json_answer,
    json_object,
    path_id,
    store,
    tenant_for,
    text,
)
from bridge.appkeys import CONFIG, LOGIN, PRINTER_PORT
from bridge.errors import AdminApiError, ResourceNotFound
from bridge.state.printlinks import PrinterLink, create_link, list_links, queue_url, revoke_link


def link_json(link: PrinterLink) -> dict[str, object]:
    return {"id": link.id, "tenant": link.tenant_id, "email": link.email, "label": link.label,
            "created_by": link.created_by, "created_at": iso(link.created_at), "expires_at": iso(link.expires_at),
            "last_used_at": iso(link.last_used_at)}


async def create(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    config = request.config_dict[LOGIN].config if LOGIN in request.config_dict else request.config_dict[CONFIG]
    if config.printer is None or not config.printer.enabled:
        raise AdminApiError("this bridge has no printer: personal printer links need printer: in bridge.yaml")
    body = fields(await json_object(request), allowed=("label", "days"))
    days = body.get("days", tenant.printer_link_days)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= tenant.printer_link_days:
        raise AdminApiError(f"member 'days' must be a whole number from 1 to {tenant.printer_link_days} "
                            "(the tenant's printer_link_days)")
    email = request.match_info["email"]
    user = await store(request).get_user(tenant.id, email)
    if user is None:
        raise ResourceNotFound(f"no user {email} in tenant {tenant.id}")
    link, secret = await create_link(store(request).database, tenant_id=tenant.id, email=user.email,
                                     label=text(body, "label", max_chars=64) or "printer",
                                     created_by=f"api:{token.name}", lifetime=timedelta(days=days))
    await audit(request, token, "printer_link_created", tenant_id=tenant.id, email=user.email)
    url = queue_url(config, secret, port=request.config_dict.get(PRINTER_PORT))
    return json_answer({"link": link_json(link), "url": url}, status=201,
                       location=f"{PREFIX}/tenants/{tenant.id}/printer-links/{link.id}")


async def list_for_tenant(request: web.Request) -> web.Response:
    tenant = await tenant_for(request, await authenticate(request))
    email = request.query.get("email")
    links = await list_links(store(request).database, tenant_id=tenant.id, email=email)
    return json_answer({"printer_links": [link_json(link) for link in links]})


async def revoke(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    link_id = path_id(request, "link")
    link = None if link_id is None else await revoke_link(store(request).database, link_id, tenant_id=tenant.id)
    if link is None:
        raise ResourceNotFound(f"no printer link {request.match_info['link']} in tenant {tenant.id}")
    await audit(request, token, "printer_link_revoked", tenant_id=tenant.id, email=link.email)
    return json_answer({"revoked": link_json(link)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/tenants/{tenant}/printer-links", list_for_tenant),
        web.post("/tenants/{tenant}/users/{email}/printer-links", create),
        web.delete("/tenants/{tenant}/printer-links/{link}", revoke),
    ]
