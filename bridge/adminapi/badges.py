"""A tenant's badge bindings through the admin API (bridge/state/pairings.py).

A user who pairs at a badge-reading device with the phone binds that badge to their account
("pair once, tap thereafter"): tapping it later opens a session with no IdP in the loop, until
the binding expires. So an administrator must be able to see who has a badge bound, at which
device, when it was last used, and revoke one at once (a lost card) without touching the account.
Bindings are made only by pairing, never here. The badge itself is never answered: the store
holds only a keyed hash of it. Disabling or deleting the user deletes its bindings (the store does
it in the same transaction).
"""

from __future__ import annotations

from aiohttp import web

from bridge.adminapi.http import audit, authenticate, iso, json_answer, path_id, store, tenant_for
from bridge.errors import ResourceNotFound
from bridge.state.pairings import BadgeBinding, list_badges, revoke_badge


def binding_json(binding: BadgeBinding) -> dict[str, object]:
    return {"id": binding.id, "tenant": binding.tenant_id, "email": binding.email, "device_id": binding.device_id,
            "created_at": iso(binding.created_at), "expires_at": iso(binding.expires_at),
            "last_used_at": iso(binding.last_used_at)}


async def list_for_tenant(request: web.Request) -> web.Response:
    tenant = await tenant_for(request, await authenticate(request))
    email = request.query.get("email")
    bindings = await list_badges(store(request).database, tenant_id=tenant.id, email=email)
    return json_answer({"badge_bindings": [binding_json(b) for b in bindings]})


async def revoke(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    binding_id = path_id(request, "binding")
    binding = None if binding_id is None else await revoke_badge(store(request).database, binding_id,
                                                                 tenant_id=tenant.id)
    if binding is None:
        raise ResourceNotFound(f"no badge binding {request.match_info['binding']} in tenant {tenant.id}")
    await audit(request, token, "badge_binding_revoked", tenant_id=tenant.id, email=binding.email,
                device_id=binding.device_id)
    return json_answer({"revoked": binding_json(binding)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/tenants/{tenant}/badge-bindings", list_for_tenant),
        web.delete("/tenants/{tenant}/badge-bindings/{binding}", revoke),
    ]
