"""Small helpers shared by the device-facing handlers."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.appkeys import CONFIG, STORE
from bridge.basicauth import parse_basic
from bridge.config import IPNetwork
from bridge.errors import DeviceAuthError, PayloadTooLarge, RequestError, SourceNotAllowed, WrongMode
from bridge.login.guard import Attempt
from bridge.login.service import LoginOutcome
from bridge.state.store import Device, DeviceMode

MAX_JSON_BYTES = 16 * 1024


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def source_address(request: web.Request) -> str:
    """The peer address of the connection (a forwarded-for header is not trusted)."""
    return request.remote or ""


def _in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def authenticate_device(request: web.Request, attempt: Attempt | None = None) -> Device:
    """The device named by the request's Basic credentials, checked against its networks.

    Only headers are read: a device calling from outside the tenant's device
    networks or its own allowed networks (both apply when both are set) gets
    ``source_not_allowed`` before the body is looked at.
    """
    creds = parse_basic(request.headers.get("Authorization"))
    if creds is None:
        raise DeviceAuthError("missing or malformed device credentials")
    device_id, secret = creds
    if attempt is not None:
        attempt.claim_device(device_id)
    store = request.app[STORE]
    device = store.authenticate_device(device_id, secret)
    if device is None or not device.enabled:
        raise DeviceAuthError("unknown device, wrong secret or disabled device")
    if attempt is not None:
        attempt.device = device
    address = source_address(request)
    store.touch_device(device.device_id, address, datetime.now(UTC))
    tenant = next((t for t in request.app[CONFIG].tenants if t.id == device.tenant_id), None)
    if tenant is None:
        raise DeviceAuthError(f"device {device.device_id} belongs to tenant {device.tenant_id}, "
                              "which is no longer configured")
    for networks, whose in ((tenant.device_networks, f"tenant {tenant.id}"),
                            (device.allowed_networks, f"device {device.device_id}")):
        if networks and not _in_networks(address, networks):
            raise SourceNotAllowed(f"{address or 'an unknown address'} is outside the device networks of "
                                   f"{whose} ({', '.join(str(n) for n in networks)})")
    return device


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"body of {request.content_length} bytes")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise PayloadTooLarge("body over the limit")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


def string_field(body: dict[str, Any], name: str, *, max_chars: int | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise RequestError(f"field '{name}' is required and must be a string")
    if max_chars is not None and len(value) > max_chars:
        raise RequestError(f"field '{name}' is longer than {max_chars} characters")
    return value


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def enrolled_device(request: web.Request, attempt: Attempt, mode: DeviceMode) -> Device:
    """Authenticate the device, check its networks, its mode and its throttles (headers only)."""
    device = authenticate_device(request, attempt)
    if device.mode is not mode:
        raise WrongMode(f"device {device.device_id} is enrolled as {device.mode.value}, not {mode.value}")
    attempt.check_actor()
    return device


def login_response(outcome: LoginOutcome) -> web.Response:
    """The answer every mode gives when a session is opened."""
    return web.json_response(
        {
            "session": {"token": outcome.token, "expires_at": iso(outcome.expires_at)},
            "user": {
                "email": outcome.user.email,
                "display_name": outcome.user.display_name,
                "tenant": outcome.tenant.id,
            },
        }
    )
