"""A tenant's users, devices and recent login attempts through the admin API.

Users are created without a password (SSO accounts sign in at their IdP; the API refuses a ``password``
member and never sets platform 2FA). Disabling a user, or deleting one, takes effect at once: its sessions
end, the printer's cached verifications of its address are dropped and its printer links and badge bindings
deleted, in the same transaction. A device is created with a secret answered once (and on ``rotate-secret``);
disabling it or changing its mode ends the sessions it opened (disabling also denies its unfinished phone
pairings). A device's ``location`` is what the phone shows before a user approves a pairing at it. Every change
is an ``admin_change`` audit event naming the token.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.adminapi.http import (
    PREFIX,
    audit,
    authenticate,
    csv_text,
    fields,
    iso,
    json_answer,
    json_object,
    store,
    tenant_for,
    text,
)
from bridge.config import TenantConfig
from bridge.errors import AdminApiError, InvalidImport, ResourceConflict, ResourceNotFound
from bridge.state.audit import AuditKind
from bridge.state.store import Device, DeviceMode, User, normalize_email

MAX_ATTEMPTS_PAGE = 500
_REFUSED_ON_CREATE = {
    "password": "the admin API creates accounts without a password (they sign in at the tenant's IdP)",
    "twofa": "SSO accounts have no platform 2FA",
}


def user_json(user: User) -> dict[str, Any]:
    return {
        "tenant": user.tenant_id, "email": user.email, "username": user.username,
        "display_name": user.display_name, "group": user.group, "enabled": user.enabled,
        "has_password": user.has_password, "language": user.language, "fax_number": user.fax_number,
        "created_at": iso(user.created_at),
    }


def device_json(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.device_id, "tenant": device.tenant_id, "name": device.name,
        "mode": device.mode.value, "enabled": device.enabled, "shared_user": device.shared_user_email,
        "allowed_networks": [str(n) for n in device.allowed_networks], "created_at": iso(device.created_at),
        "last_seen_at": iso(device.last_seen_at), "last_seen_addr": device.last_seen_addr,
        "location": device.location,
    }


# -- users --------------------------------------------------------------------------------------------------


async def _user(request: web.Request, tenant: TenantConfig) -> User:
    email = request.match_info["email"]
    user = await store(request).get_user(tenant.id, email)
    if user is None:
        raise ResourceNotFound(f"no user {email} in tenant {tenant.id}")
    return user


async def list_users(request: web.Request) -> web.Response:
    tenant = await tenant_for(request, await authenticate(request))
    return json_answer({"users": [user_json(u) for u in await store(request).list_users(tenant.id)]})


async def create_user(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    body = fields(await json_object(request),
                  allowed=("email", "username", "display_name", "group", "language", "fax_number"),
                  required=("email",), refused=_REFUSED_ON_CREATE)
    email = text(body, "email") or ""
    if await store(request).get_user(tenant.id, email) is not None:
        raise ResourceConflict(f"a user with email {email.strip()} already exists in tenant {tenant.id}")
    user = await store(request).add_user(
        tenant, email=email, username=text(body, "username") or email.strip().split("@", 1)[0],
        display_name=text(body, "display_name") or "", group=text(body, "group") or "",
        language=text(body, "language"), fax_number=text(body, "fax_number"))
    await audit(request, token, "user_created", tenant_id=tenant.id, email=user.email)
    return json_answer(user_json(user), status=201,
                       location=f"{PREFIX}/tenants/{tenant.id}/users/{normalize_email(user.email)}")


async def get_user(request: web.Request) -> web.Response:
    tenant = await tenant_for(request, await authenticate(request))
    return json_answer(user_json(await _user(request, tenant)))


async def update_user(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    user = await _user(request, tenant)
    body = fields(await json_object(request),
                  allowed=("username", "display_name", "group", "language", "fax_number"),
                  refused={"password": _REFUSED_ON_CREATE["password"],
                           "email": "the email is the account's key: create a new account",
                           "enabled": "use the enable and disable actions"})
    updated = await store(request).update_user(
        tenant.id, user.email, username=text(body, "username"), display_name=text(body, "display_name"),
        group=text(body, "group"), language=text(body, "language"), fax_number=text(body, "fax_number"))
    await audit(request, token, "user_updated", tenant_id=tenant.id, email=user.email)
    return json_answer(user_json(updated))


async def disable_user(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    user = await _user(request, tenant)
    ended = await store(request).deactivate_user(tenant.id, user.email)
    await audit(request, token, "user_disabled", tenant_id=tenant.id, email=user.email)
    fresh = await _user(request, tenant)
    return json_answer({"user": user_json(fresh), "sessions_ended": ended})


async def enable_user(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    user = await _user(request, tenant)
    await store(request).enable_user(tenant.id, user.email)
    await audit(request, token, "user_enabled", tenant_id=tenant.id, email=user.email)
    return json_answer({"user": user_json(await _user(request, tenant)), "sessions_ended": 0})


async def delete_user(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    user = await _user(request, tenant)
    uses = [d.device_id for d in await store(request).list_devices(tenant.id)
            if d.shared_user_email == normalize_email(user.email)]
    if uses:
        raise ResourceConflict(f"shared-account device(s) {', '.join(uses)} sign in as {user.email}: change or "
                               "disable them first")
    ended = await store(request).delete_user(tenant.id, user.email)
    await audit(request, token, "user_deleted", tenant_id=tenant.id, email=user.email)
    return json_answer({"deleted": user.email, "sessions_ended": ended})


async def import_users(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    skip = request.query.get("skip_invalid", "false").lower()
    if skip not in ("true", "false"):
        raise AdminApiError("skip_invalid must be true or false")
    report = await store(request).import_users_csv(tenant, await csv_text(request), skip_invalid=skip == "true")
    errors = [(e.line, e.reason) for e in report.errors]
    if errors and not report.imported:
        raise InvalidImport(f"{len(errors)} row(s) refused; nothing was imported"
                            + ("" if skip == "true" else " (fix them, or send ?skip_invalid=true)"), errors=errors)
    for user in report.imported:
        await audit(request, token, "user_imported", tenant_id=tenant.id, email=user.email)
    return json_answer({"imported": [user_json(u) for u in report.imported],
                        "errors": [{"line": line, "reason": reason} for line, reason in errors]})


# -- devices ------------------------------------------------------------------------------------------------


async def _device(request: web.Request, tenant: TenantConfig) -> Device:
    device_id = request.match_info["device"]
    device = await store(request).get_device(device_id)
    if device is None or device.tenant_id != tenant.id:
        raise ResourceNotFound(f"no device {device_id} in tenant {tenant.id}")
    return device


def _networks(body: dict[str, Any]) -> list[str]:
    value = body.get("allowed_networks", [])
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise AdminApiError("member 'allowed_networks' must be a list of CIDR networks (strings)")
    return value


async def list_devices(request: web.Request) -> web.Response:
    tenant = await tenant_for(request, await authenticate(request))
    return json_answer({"devices": [device_json(d) for d in await store(request).list_devices(tenant.id)]})


async def create_device(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    body = fields(await json_object(request),
                  allowed=("name", "mode", "shared_user", "allowed_networks", "device_id", "location"),
                  required=("name", "mode"))
    device_id = text(body, "device_id", max_chars=64)
    if device_id is not None and await store(request).get_device(device_id) is not None:
        raise ResourceConflict(f"a device with id {device_id} already exists")
    device, secret = await store(request).add_device(
        tenant.id, name=text(body, "name") or "", mode=text(body, "mode") or "",
        shared_user_email=text(body, "shared_user"), allowed_networks=_networks(body), device_id=device_id,
        location=text(body, "location") or "")
    await audit(request, token, "device_created", tenant_id=tenant.id, device_id=device.device_id)
    return json_answer({"device": device_json(device), "secret": secret}, status=201,
                       location=f"{PREFIX}/tenants/{tenant.id}/devices/{device.device_id}")


async def get_device(request: web.Request) -> web.Response:
    tenant = await tenant_for(request, await authenticate(request))
    return json_answer(device_json(await _device(request, tenant)))


async def update_device(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    device = await _device(request, tenant)
    body = fields(await json_object(request), allowed=("name", "mode", "shared_user", "location"))
    mode = text(body, "mode")
    if mode is not None and mode not in {m.value for m in DeviceMode}:
        raise AdminApiError(f"unknown device mode {mode!r} (modes: {', '.join(m.value for m in DeviceMode)})")
    updated = await store(request).update_device(device.device_id, name=text(body, "name"), mode=mode,
                                                 shared_user_email=text(body, "shared_user"),
                                                 location=text(body, "location"))
    result = "device_mode_changed" if updated.mode is not device.mode else "device_updated"
    await audit(request, token, result, tenant_id=tenant.id, device_id=device.device_id)
    return json_answer(device_json(updated))


async def rotate_secret(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    device = await _device(request, tenant)
    secret = await store(request).rotate_device_secret(device.device_id)
    await audit(request, token, "device_secret_rotated", tenant_id=tenant.id, device_id=device.device_id)
    return json_answer({"device": device_json(await _device(request, tenant)), "secret": secret})


async def disable_device(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    device = await _device(request, tenant)
    await store(request).disable_device(device.device_id)
    await audit(request, token, "device_disabled", tenant_id=tenant.id, device_id=device.device_id)
    return json_answer(device_json(await _device(request, tenant)))


async def enable_device(request: web.Request) -> web.Response:
    token = await authenticate(request)
    tenant = await tenant_for(request, token)
    device = await _device(request, tenant)
    await store(request).enable_device(device.device_id)
    await audit(request, token, "device_enabled", tenant_id=tenant.id, device_id=device.device_id)
    return json_answer(device_json(await _device(request, tenant)))


# -- attempts -----------------------------------------------------------------------------------------------


def _query_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise AdminApiError(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


async def list_attempts(request: web.Request) -> web.Response:
    tenant = await tenant_for(request, await authenticate(request))
    limit = _query_int(request, "limit", 50, 1, MAX_ATTEMPTS_PAGE) or 50
    before = _query_int(request, "before", None, 1, 2**62)
    events = await store(request).audit_page(tenant.id, kinds=(AuditKind.LOGIN,), before_id=before, limit=limit)
    return json_answer({"attempts": [e.to_json() for e in events],
                        "next_before": events[-1].id if len(events) == limit else None})


def routes() -> list[web.RouteDef]:
    users, devices = "/tenants/{tenant}/users", "/tenants/{tenant}/devices"
    return [
        web.get(users, list_users),
        web.post(users, create_user),
        web.post("/tenants/{tenant}/user-imports", import_users),
        web.get(users + "/{email}", get_user),
        web.patch(users + "/{email}", update_user),
        web.delete(users + "/{email}", delete_user),
        web.post(users + "/{email}/disable", disable_user),
        web.post(users + "/{email}/enable", enable_user),
        web.get(devices, list_devices),
        web.post(devices, create_device),
        web.get(devices + "/{device}", get_device),
        web.patch(devices + "/{device}", update_device),
        web.post(devices + "/{device}/rotate-secret", rotate_secret),
        web.post(devices + "/{device}/disable", disable_device),
        web.post(devices + "/{device}/enable", enable_device),
        web.get("/tenants/{tenant}/attempts", list_attempts),
    ]
