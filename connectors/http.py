"""Small helpers shared by the device-facing handlers.

JSON bodies are taken as networks deliver them: only ``application/json``
(a ``charset`` parameter, if any, must be utf-8), read to the end however many
TCP segments or chunks they come in, at most :data:`MAX_JSON_BYTES`, within
the listener's header timeout; then strictly UTF-8, one JSON object.  A
string field holding code points no text can carry is refused as
``invalid_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.appkeys import CONFIG, LOGIN, STORE
from bridge.basicauth import parse_basic
from bridge.config import IPNetwork
from bridge.errors import (
    DeviceAuthError,
    EmailRequired,
    InvalidText,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    SourceNotAllowed,
    UnsupportedMediaType,
    WrongMode,
)
from bridge.login.guard import Attempt
from bridge.login.service import NOT_XML_CHAR, LoginOutcome, split_email
from bridge.state.audit import audit_text
from bridge.state.store import Device, DeviceMode

MAX_JSON_BYTES = 16 * 1024
JSON_MEDIA_TYPE = "application/json"
MAX_EMAIL_CHARS = 254  # RFC 5321 section 4.5.3.1.3: a path is at most 256 octets, with its angle brackets



def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def source_address(request: web.Request) -> str:
    """The client's address: the connection's peer, or the X-Forwarded-For client behind a
    ``listen.trusted_proxies`` balancer (bridge/forwarded.py has already set ``request.remote``)."""
    return request.remote or ""


def _in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


async def authenticate_device(request: web.Request, attempt: Attempt | None = None) -> Device:
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
    device = await store.authenticate_device(device_id, secret)
    if device is None or not device.enabled:
        raise DeviceAuthError("unknown device, wrong secret or disabled device")
    if attempt is not None:
        attempt.device = device
    address = source_address(request)
    await store.touch_device(device.device_id, address, datetime.now(UTC))
    tenant = next((t for t in request.app[LOGIN].config.tenants if t.id == device.tenant_id), None)
    if tenant is None:
        raise DeviceAuthError(f"device {device.device_id} belongs to tenant {device.tenant_id}, "
                              "which is no longer configured")
    for networks, whose in ((tenant.device_networks, f"tenant {tenant.id}"),
                            (device.allowed_networks, f"device {device.device_id}")):
        if networks and not _in_networks(address, networks):
            raise SourceNotAllowed(f"{address or 'an unknown address'} is outside the device networks of "
                                   f"{whose} ({', '.join(str(n) for n in networks)})")
    return device


def _require_json(request: web.Request) -> None:
    charset = request.charset
    if request.content_type != JSON_MEDIA_TYPE or (charset is not None and charset.lower() != "utf-8"):
        shown = request.content_type + (f"; charset={charset}" if charset else "")
        raise UnsupportedMediaType(f"the body must be {JSON_MEDIA_TYPE} (UTF-8), not {shown[:80]!r}")


async def _read_body(request: web.Request) -> bytes:
    """The whole body, whatever segments or chunks it arrives in; capped, and due within the header timeout."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"body of {request.content_length} bytes")
    timeout = request.app[CONFIG].listener_timeouts.header
    raw = bytearray()
    try:
        async with asyncio.timeout(timeout):
            # read(n) answers as soon as some bytes are there: loop to the end of the body.
            while chunk := await request.content.read(MAX_JSON_BYTES + 1 - len(raw)):
                raw += chunk
                if len(raw) > MAX_JSON_BYTES:
                    raise PayloadTooLarge("body over the limit")
    except TimeoutError as exc:
        raise RequestTimeout(f"{len(raw)} bytes of the body arrived within {timeout:g} s") from exc
    except (web.RequestPayloadError, ConnectionError) as exc:
        raise RequestError("the body could not be read (malformed chunked encoding or a closed connection)") from exc
    return bytes(raw)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object (see the module docstring for what is accepted)."""
    _require_json(request)
    raw = await _read_body(request)
    try:
        text = raw.decode("utf-8")  # RFC 8259 section 8.1: JSON between systems is UTF-8
    except UnicodeDecodeError as exc:
        raise RequestError("the body is not UTF-8") from exc
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise RequestError("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


def string_field(body: dict[str, Any], name: str, *, max_chars: int | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise RequestError(f"field '{name}' is required and must be a string")
    if NOT_XML_CHAR.search(value):
        # The text itself is neither answered nor logged: it may be (part of) a password.
        raise InvalidText(f"field '{name}' holds characters no text can carry (NUL, control characters "
                          "or lone surrogates)")
    if max_chars is not None and len(value) > max_chars:
        raise RequestError(f"field '{name}' is longer than {max_chars} characters")
    return value


def password_fields(body: dict[str, Any], attempt: Attempt) -> tuple[str, str]:
    """The email and password of a password login.

    The email is noted on the attempt first, so that a request refused here
    (characters no text can carry, in either field) is still audited under the
    address it named, written the audit's way (``\\uXXXX`` for what cannot be
    text).  Only a value with the shape of an email address is noted: anything
    else may be a password typed into the wrong field.
    """
    typed = body.get("email")
    if isinstance(typed, str) and len(typed) <= MAX_EMAIL_CHARS:
        with contextlib.suppress(EmailRequired):
            attempt.email, _ = split_email(audit_text(typed))
    email = string_field(body, "email", max_chars=MAX_EMAIL_CHARS)
    password = string_field(body, "password")  # its length is the login service's rule
    return email, password


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def enrolled_device(request: web.Request, attempt: Attempt, mode: DeviceMode) -> Device:
    """Authenticate the device, check its networks, its mode and its throttles (headers only)."""
    device = await authenticate_device(request, attempt)
    if device.mode is not mode:
        raise WrongMode(f"device {device.device_id} is enrolled as {device.mode.value}, not {mode.value}")
    await attempt.check_actor()
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
