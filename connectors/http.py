"""Small helpers shared by the device-facing handlers."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.appkeys import STORE
from bridge.errors import DeviceAuthError, PayloadTooLarge, RequestError
from bridge.store import Device

MAX_JSON_BYTES = 16 * 1024


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate_device(request: web.Request) -> Device:
    """The device named by the request's Basic credentials, or DeviceAuthError."""
    creds = parse_basic(request.headers.get("Authorization"))
    if creds is None:
        raise DeviceAuthError("missing or malformed device credentials")
    device_id, secret = creds
    store = request.app[STORE]
    device = store.authenticate_device(device_id, secret)
    if device is None or not device.enabled:
        raise DeviceAuthError("unknown device, wrong secret or disabled device")
    store.touch_device(device.device_id, request.remote or "", datetime.now(UTC))
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


def string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise RequestError(f"field '{name}' is required and must be a string")
    return value


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
