"""Tenants through the admin API: the same documents and validation as the tenant files, as live data.

A tenant is sent as JSON with the keys of a tenant YAML file; it is validated exactly as a file is
(:func:`bridge.config.load_tenant_text`, with the files it names required to exist, relative paths read
from the configuration's ``tenants_dir``) and stored as that JSON, indented, so a line named in a log is
a line of the stored document. A validation error is ``422 invalid_tenant`` with ``path``, the JSON
pointer of the member to fix (``/wstrust/adfs_url``, ``/domains/0``). The id comes from the body; on
``PUT`` it must be the id in the path. A tenant id already taken, or a domain another tenant claims, is
``409 resource_conflict`` naming the other tenant. The instance that takes a change serves it at once;
the others within :data:`bridge.login.tenants.POLL_SECONDS`. Validating, checking and storing is
:func:`bridge.login.tenant_writes.save_tenant`, which the console's tenant form calls as well.

Deleting is refused (409) while the tenant still has users or devices, with their counts: deleting them
is a separate, deliberate act, and a tenant record never silently takes accounts with it. Deleting a
tenant declared by a file that still exists only lasts until the files are applied again (the answer
warns); remove the file as well.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bridge.adminapi.http import (
    PREFIX,
    audit,
    authenticate,
    check_visible,
    current_tenants,
    iso,
    json_answer,
    json_object,
    require_global,
    store,
)
from bridge.appkeys import CONFIG, LOGIN
from bridge.config import TenantConfig
from bridge.errors import InvalidTenant, ResourceConflict, ResourceNotFound
from bridge.login.tenant_writes import SavedTenant, TenantRefused, document_of, save_tenant
from bridge.state.tenants import TenantRecord, delete_tenant, get_tenant_record, tenant_records
from bridge.state.tokens import ApiToken


def json_pointer(key: str) -> str:
    """A configuration key path (``wstrust.adfs_url``, ``domains[0]``) as a JSON pointer (RFC 6901)."""
    parts = re.findall(r"[^.\[\]]+", key)
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


async def _save(request: web.Request, token: ApiToken, body: dict[str, Any], *, create: bool) -> SavedTenant:
    """The document validated, checked and stored (bridge/login/tenant_writes.py); its refusal as an answer."""
    try:
        return await save_tenant(request.config_dict[LOGIN].tenants, store(request), request.config_dict[CONFIG],
                                 body, shown="api", origin=f"api:{token.name}", create=create)
    except TenantRefused as exc:
        if not exc.conflict:
            raise InvalidTenant(exc.detail, path=json_pointer(exc.key)) from exc
        hint = f" (PUT {PREFIX}/tenants/{str(body.get('id')).strip()} replaces its settings)" if exc.key == "id" else ""
        raise ResourceConflict(f"{json_pointer(exc.key)}: {exc.detail}{hint}") from exc


def _summary(record: TenantRecord, tenant: TenantConfig | None) -> dict[str, Any]:
    return {
        "id": record.tenant_id,
        "name": "" if tenant is None else tenant.name,
        "domains": [] if tenant is None else list(tenant.domains),
        "protocol": "" if tenant is None else tenant.protocol.value,
        "origin": record.origin,
        "updated_at": iso(record.updated_at),
    }


def _full(record: TenantRecord, tenant: TenantConfig | None, warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    return {**_summary(record, tenant), "document": document_of(record), "warnings": list(warnings)}


async def list_tenants(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenants = {t.id: t for t in await current_tenants(request)}
    _, records = await tenant_records(store(request).database)
    shown = [_summary(r, tenants.get(r.tenant_id)) for r in records
             if token.tenant_id is None or r.tenant_id == token.tenant_id]
    return json_answer({"tenants": shown})


async def create_tenant(request: web.Request) -> web.Response:
    token = await authenticate(request)
    require_global(token, "creating a tenant")
    saved = await _save(request, token, await json_object(request), create=True)
    tenant = saved.tenant
    await audit(request, token, "tenant_created", tenant_id=tenant.id)
    return json_answer(_full(saved.record, tenant, saved.warnings), status=201,
                       location=f"{PREFIX}/tenants/{tenant.id}")


async def _existing(request: web.Request, tenant_id: str) -> TenantRecord:
    record = await get_tenant_record(store(request).database, tenant_id)
    if record is None:
        raise ResourceNotFound(f"no tenant {tenant_id}")
    return record


async def get_tenant(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant_id = request.match_info["tenant"]
    check_visible(token, tenant_id)
    record = await _existing(request, tenant_id)
    tenant = next((t for t in await current_tenants(request) if t.id == tenant_id), None)
    return json_answer(_full(record, tenant))


async def replace_tenant(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant_id = request.match_info["tenant"]
    check_visible(token, tenant_id)
    require_global(token, "changing a tenant's settings")
    await _existing(request, tenant_id)
    body = await json_object(request)
    if "id" in body and body["id"] != tenant_id:
        raise InvalidTenant(f"the id in the body ({body['id']!r}) is not the tenant's id in the path ({tenant_id!r})",
                            path="/id")
    saved = await _save(request, token, body, create=False)
    await audit(request, token, "tenant_replaced", tenant_id=saved.tenant.id)
    return json_answer(_full(saved.record, saved.tenant, saved.warnings))


async def remove_tenant(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant_id = request.match_info["tenant"]
    check_visible(token, tenant_id)
    require_global(token, "deleting a tenant")
    record = await _existing(request, tenant_id)
    users, devices = await store(request).tenant_usage(tenant_id)
    if users or devices:
        raise ResourceConflict(f"tenant {tenant_id} still has {users} user(s) and {devices} device(s): delete them "
                               "first (a tenant never takes accounts with it)")
    await delete_tenant(store(request).database, tenant_id)
    await request.config_dict[LOGIN].tenants.refresh(store(request))
    await audit(request, token, "tenant_deleted", tenant_id=tenant_id)
    warnings = []
    if record.origin.startswith("file:"):
        warnings.append(f"the tenant was declared by {record.origin.removeprefix('file:')}: remove that file too, "
                        "or the next `config reload` or restart declares it again")
    return json_answer({"deleted": tenant_id, "warnings": warnings})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/tenants", list_tenants),
        web.post("/tenants", create_tenant),
        web.get("/tenants/{tenant}", get_tenant),
        web.put("/tenants/{tenant}", replace_tenant),
        web.delete("/tenants/{tenant}", remove_tenant),
    ]
