"""Console pages to add a device, set where it stands and rotate its secret (the devices list itself: views.py).

A new device gets a random secret (the store keeps only its hash).  The secret is shown once, on the
answer to the POST that made it, with the command line that tries it against the device API at the
bridge's ``public_url``; it is never shown again, never logged, and the page is not cached.  Rotating
gives a new secret the same way; the old one stops working at once (sessions the device opened stay
until they end or the device is disabled).  A device's location ("Reception, ground floor") is what the
phone shows before a user approves a pairing at it, so it can be set when the device is added and changed
from the list at any time.  Each is an ``admin_change`` event naming the console user.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from aiohttp import web

from bridge.appkeys import STORE
from bridge.console.changes import public_url, quoted, record_change, secret_page, tenant_ids
from bridge.console.security import ConsoleSession
from bridge.console.views import BASE, _config, _form, _render, _session, devices_page
from bridge.errors import RequestError
from bridge.state.records import MAX_LOCATION_CHARS
from bridge.state.store import Device, DeviceMode

log = logging.getLogger(__name__)

MODES = tuple(m.value for m in DeviceMode)
MAX_NAME_CHARS = 128
_MODE_HELP = {
    DeviceMode.USER_PROMPT.value: "the panel asks each user for email and password (checked at the IdP)",
    DeviceMode.SHARED_ACCOUNT.value: "the device signs in as one tenant user (no IdP call)",
    DeviceMode.DEVICE_LOGIN.value: "the device authenticates users itself (badge, PIN) and says who",
}


def _form_page(request: web.Request, session: ConsoleSession, values: dict[str, str], errors: dict[str, str],
               *, status: int = 200) -> web.Response:
    return _render(request, "device_new.html", {
        "title": "Add a device", "page": "devices", "tenants": tenant_ids(request), "modes": MODES,
        "mode_help": _MODE_HELP, "v": values, "errors": errors, "problems": len(errors),
        "max_location": MAX_LOCATION_CHARS,
    }, session=session, status=status)


def _networks(text: str) -> tuple[list[str], str]:
    """The allowed networks, one a line, or why one is not a network."""
    found: list[str] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line:
            continue
        try:
            found.append(str(ipaddress.ip_network(line, strict=True)))
        except ValueError:
            try:
                loose = ipaddress.ip_network(line, strict=False)
            except ValueError:
                return [], f"not a network in CIDR form (like 192.0.2.0/24): {line!r}"
            return [], f"{line} has host bits set; did you mean {loose}?"
    return found, ""


async def _checked(request: web.Request, values: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The form's mistakes by field, and the allowed networks."""
    errors: dict[str, str] = {}
    store = request.config_dict[STORE]
    tenant, name, mode = values["tenant"], values["name"], values["mode"]
    if tenant not in tenant_ids(request):
        errors["tenant"] = "Choose one of the tenants."
    if not name:
        errors["name"] = "A name is needed (where the device is, which model)."
    elif len(name) > MAX_NAME_CHARS or not name.isprintable():
        errors["name"] = f"At most {MAX_NAME_CHARS} printable characters."
    problem = _location_problem(values["location"])
    if problem:
        errors["location"] = problem
    if mode not in MODES:
        errors["mode"] = f"Choose one of {', '.join(MODES)}."
    shared = values["shared_user"]
    if mode == DeviceMode.SHARED_ACCOUNT.value:
        if not shared:
            errors["shared_user"] = "A shared-account device needs the email of the tenant user it signs in as."
        elif "tenant" not in errors and await store.get_user(tenant, shared) is None:
            errors["shared_user"] = f"No user {shared} in tenant {tenant}."
    elif shared and mode in MODES:
        errors["shared_user"] = f"A {mode} device has no shared user: leave this empty."
    networks, problem = _networks(values["networks"])
    if problem:
        errors["networks"] = problem
    device_id = values["device_id"]
    if device_id and await store.get_device(device_id) is not None:  # its form: the store checks it
        errors["device_id"] = f"A device with id {device_id} already exists."
    return errors, networks


def _location_problem(location: str) -> str:
    """Why a location cannot be stored (the store's rule, said at the field), or ""."""
    if len(location) > MAX_LOCATION_CHARS or not location.isprintable():
        return f"At most {MAX_LOCATION_CHARS} printable characters."
    return ""


def _field_of(detail: str) -> str:
    """Which field a refusal of the store is about (it may come from a change made meanwhile)."""
    for words, name in (("device id", "device_id"), ("device with id", "device_id"), ("shared", "shared_user"),
                        ("no user", "shared_user"), ("network", "networks"), ("location", "location"),
                        ("name", "name"), ("mode", "mode")):
        if words in detail:
            return name
    return "general"


def _try_it(device: Device, secret: str, base: str, domain: str) -> list[str]:
    """Command lines that try the secret against the device API (with the mode's endpoint)."""
    auth = f"-u {quoted(f'{device.device_id}:{secret}')}"
    someone = f"someone@{domain}"
    if device.mode is DeviceMode.SHARED_ACCOUNT:
        first = f"curl -s {auth} -X POST {base}/v1/mfp/shared-account"
    elif device.mode is DeviceMode.DEVICE_LOGIN:
        body = json.dumps({"user": someone})
        first = (f"curl -s {auth} -H 'Content-Type: application/json' -d {quoted(body)} "
                 f"{base}/v1/mfp/device-login")
    else:
        body = json.dumps({"email": someone, "password": "THEIR-PASSWORD"})
        first = (f"curl -s {auth} -H 'Content-Type: application/json' -d {quoted(body)} "
                 f"{base}/v1/mfp/user-prompt")
    return [first, f"curl -s -X DELETE -H 'Authorization: Bearer TOKEN-FROM-THE-ANSWER' {base}/v1/session"]


def _shown(request: web.Request, session: ConsoleSession, device: Device, secret: str, *,
           rotated: bool) -> web.Response:
    tenant = next((t for t in _config(request).tenants if t.id == device.tenant_id), None)
    domain = tenant.domains[0] if tenant is not None and tenant.domains else "example.com"
    what = "New secret for device" if rotated else "Device added:"
    context: dict[str, Any] = {
        "title": f"{what} {device.device_id}", "page": "devices", "label": "Device secret", "secret": secret,
        "facts": [("Device id", device.device_id), ("Tenant", device.tenant_id), ("Name", device.name)]
                 + ([("Location", device.location)] if device.location else []) + [("Mode", device.mode.value)]
                 + ([("Acts as", device.shared_user_email)] if device.shared_user_email else []),
        "use": "Enter the device id and this secret in the device's bridge settings (HTTP Basic "
               "device_id:secret).",
        "commands": _try_it(device, secret, public_url(request), domain),
        "commands_note": "Try it from a computer on the device's network: the first command opens a session, "
                         "the second ends it."
                         + (" The old secret stopped working; sessions the device opened with it stay until they "
                            "end (disable the device to end them)." if rotated else ""),
        "back": f"{BASE}/devices", "back_text": "back to devices",
    }
    return secret_page(request, session, context)


async def new_device(request: web.Request) -> web.Response:
    session = await _session(request)
    tenants = tenant_ids(request)
    values = {"tenant": request.query.get("tenant", tenants[0] if tenants else ""), "name": "", "location": "",
              "mode": DeviceMode.USER_PROMPT.value, "shared_user": "", "networks": "", "device_id": ""}
    return _form_page(request, session, values, {})


async def add_device(request: web.Request) -> web.Response:
    session = await _session(request)
    posted = await _form(request, session)
    values = {name: posted.get(name, "").strip()
              for name in ("tenant", "name", "location", "mode", "shared_user", "device_id")}
    values["networks"] = posted.get("networks", "")
    errors, networks = await _checked(request, values)
    if errors:
        return _form_page(request, session, values, errors, status=422)
    try:
        device, secret = await request.config_dict[STORE].add_device(
            values["tenant"], name=values["name"], mode=values["mode"], shared_user_email=values["shared_user"] or None,
            allowed_networks=networks, device_id=values["device_id"] or None, location=values["location"])
    except RequestError as exc:
        return _form_page(request, session, values, {_field_of(exc.detail): exc.detail}, status=409)
    log.info("console user %s added device %s to tenant %s", session.user, device.device_id, device.tenant_id)
    await record_change(request, session, "device_created", tenant_id=device.tenant_id, device_id=device.device_id)
    return _shown(request, session, device, secret, rotated=False)


async def rotate_secret(request: web.Request) -> web.Response:
    session = await _session(request)
    await _form(request, session)
    store = request.config_dict[STORE]
    device = await store.get_device(request.match_info["device"])
    if device is None:
        raise web.HTTPNotFound(text="No such device.")
    try:
        secret = await store.rotate_device_secret(device.device_id)
    except RequestError as exc:  # deleted meanwhile
        raise web.HTTPNotFound(text="No such device.") from exc
    log.info("console user %s rotated the secret of device %s", session.user, device.device_id)
    await record_change(request, session, "device_secret_rotated", tenant_id=device.tenant_id,
                        device_id=device.device_id)
    return _shown(request, session, device, secret, rotated=True)


async def set_location(request: web.Request) -> web.StreamResponse:
    """Change where a device stands (the devices list's form); back to the list."""
    session = await _session(request)
    posted = await _form(request, session)
    store = request.config_dict[STORE]
    device = await store.get_device(request.match_info["device"])
    if device is None:
        raise web.HTTPNotFound(text="No such device.")
    location = posted.get("location", "").strip()
    problem = _location_problem(location)
    if problem:
        return await devices_page(request, session, error=f"The location of {device.device_id} is not changed: "
                                                          f"{problem}", status=422)
    try:
        updated = await store.update_device(device.device_id, location=location)
    except RequestError as exc:  # deleted meanwhile
        raise web.HTTPNotFound(text="No such device.") from exc
    if updated.location != device.location:
        log.info("console user %s moved device %s to %r", session.user, device.device_id, updated.location)
        await record_change(request, session, "device_updated", tenant_id=device.tenant_id,
                            device_id=device.device_id, subject=f"location: {updated.location or '(none)'}")
    raise web.HTTPSeeOther(f"{BASE}/devices#d-{device.device_id}")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/devices/new", new_device),
        web.post("/devices/new", add_device),
        web.post("/devices/{device}/rotate", rotate_secret),
        web.post("/devices/{device}/location", set_location),
    ]
