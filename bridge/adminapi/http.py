"""The admin API's HTTP side: the sub-application at /admin/v1, its token check, bodies and error answers.

Authentication is ``Authorization: Bearer TOKEN`` with an admin token (``loginbridge admin token create``):
every request looks the token up (a revoked token stops at once, on every instance). A missing, unknown or
revoked token is ``401 admin_unauthorized`` with ``WWW-Authenticate: Bearer``. A token for one tenant sees
only that tenant: another tenant is ``404 resource_not_found``, exactly as a tenant that does not exist, so a
tenant-scoped token cannot even learn which tenants exist. Writing tenant settings (create, replace, delete)
takes a global token (``403 admin_forbidden`` otherwise): the settings hold the IdP whitelist, the domains
and file paths on the bridge's host, which are the platform operator's to decide.

Errors are JSON ``{"error", "message", "detail"}`` (``detail`` always: the client is an administrator), plus
``path`` (a JSON pointer) for ``invalid_tenant`` and ``errors`` for ``invalid_import``. Every answer carries
``Cache-Control: no-store`` (device secrets are answered once). The document: ``GET /admin/v1/openapi.json``
(public: it holds no data). Tokens and secrets are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.appkeys import AUDIT, CONFIG, LOGIN, STORE
from bridge.config import TenantConfig
from bridge.errors import (
    AdminApiError,
    AdminForbidden,
    AdminUnauthorized,
    BridgeError,
    InvalidImport,
    PayloadTooLarge,
    RequestTimeout,
    ResourceNotFound,
    UnsupportedMediaType,
)
from bridge.logcontext import request_id_var, tenant_id_var
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.store import Store
from bridge.state.tokens import ApiToken, verify_token

log = logging.getLogger(__name__)

PREFIX = "/admin/v1"
MAX_JSON_BYTES = 256 * 1024
MAX_CSV_BYTES = 4 * 1024 * 1024
CSV_SECONDS = 120.0  # a CSV file may take longer than the header timeout to arrive
REALM = 'Bearer realm="loginbridge-admin"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_answer(exc: BridgeError, *, token_given: bool) -> web.Response:
    body: dict[str, Any] = dict(exc.to_json())
    if not isinstance(exc, AdminApiError) and exc.detail and exc.http_status < 500:
        body["detail"] = exc.detail  # the store's refusals ("no user ...") say what to fix
    if isinstance(exc, InvalidImport):
        body["errors"] = [{"line": line, "reason": reason} for line, reason in exc.errors]
    headers = {}
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = REALM + (', error="invalid_token"' if token_given else "")
    return web.json_response(body, status=exc.http_status, headers=headers)


@web.middleware
async def answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except BridgeError as exc:
        level = logging.WARNING if exc.http_status >= 500 else logging.INFO
        log.log(level, "admin %s %s -> %s (%s): %s", request.method, request.path, exc.code, exc.http_status,
                exc.detail)
        response = error_answer(exc, token_given="Authorization" in request.headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def store(request: web.Request) -> Store:
    return request.config_dict[STORE]


async def authenticate(request: web.Request) -> ApiToken:
    """The live admin token of the request (AdminUnauthorized otherwise)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AdminUnauthorized("an admin token is required (Authorization: Bearer TOKEN)")
    token = await verify_token(store(request).database, value.strip(), kind="admin")
    if token is None:
        raise AdminUnauthorized("the token is not a live admin token (unknown, revoked or of another kind)")
    return token


def require_global(token: ApiToken, what: str) -> None:
    if token.tenant_id is not None:
        raise AdminForbidden(f"token {token.name} is for tenant {token.tenant_id} only: {what} takes a global "
                             "admin token")


def check_visible(token: ApiToken, tenant_id: str) -> None:
    """Another tenant than the token's is answered as one that does not exist."""
    if token.tenant_id is not None and token.tenant_id != tenant_id:
        raise ResourceNotFound(f"no tenant {tenant_id}")


async def current_tenants(request: web.Request) -> tuple[TenantConfig, ...]:
    """The tenants of this moment, caught up with the store first (a change by another instance included)."""
    live = request.config_dict[LOGIN].tenants
    await live.refresh(store(request))
    return live.config.tenants


async def tenant_for(request: web.Request, token: ApiToken) -> TenantConfig:
    """The tenant named in the path, if it exists and the token sees it."""
    tenant_id = request.match_info["tenant"]
    check_visible(token, tenant_id)
    tenant_id_var.set(tenant_id)
    for tenant in await current_tenants(request):
        if tenant.id == tenant_id:
            return tenant
    raise ResourceNotFound(f"no tenant {tenant_id}")


async def audit(request: web.Request, token: ApiToken, result: str, *, tenant_id: str, email: str | None = None,
                device_id: str | None = None) -> None:
    """One ``admin_change`` event: what was done, to what, and by which token (its name, never the token)."""
    await request.config_dict[AUDIT].record(AuditEvent(
        at=datetime.now(UTC), kind=AuditKind.ADMIN_CHANGE, result=result, tenant_id=tenant_id, device_id=device_id,
        mode="admin-api", email=email, source=request.remote, request_id=request_id_var.get(), actor=token.name))


async def _read(request: web.Request, limit: int, seconds: float) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes (at most {limit})")
    raw = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while chunk := await request.content.read(limit + 1 - len(raw)):
                raw += chunk
                if len(raw) > limit:
                    raise PayloadTooLarge(f"body over {limit} bytes")
    except TimeoutError as exc:
        raise RequestTimeout(f"{len(raw)} bytes of the body arrived within {seconds:g} s") from exc
    except (web.RequestPayloadError, ConnectionError) as exc:
        raise AdminApiError("the body could not be read (malformed chunked encoding or a closed connection)") \
            from exc
    return bytes(raw)


def _media_type(request: web.Request, *wanted: str) -> None:
    charset = request.charset
    if request.content_type not in wanted or (charset is not None and charset.lower() != "utf-8"):
        shown = request.content_type + (f"; charset={charset}" if charset else "")
        raise UnsupportedMediaType(f"the body must be {' or '.join(wanted)} (UTF-8), not {shown[:80]!r}")


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body: one UTF-8 JSON object of at most MAX_JSON_BYTES, due within the listener's header timeout."""
    _media_type(request, "application/json")
    raw = await _read(request, MAX_JSON_BYTES, request.config_dict[CONFIG].listener_timeouts.header)
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AdminApiError("the body is not UTF-8") from exc
    except ValueError as exc:
        raise AdminApiError(f"the body is not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise AdminApiError("the body must be a JSON object")
    return body


async def csv_text(request: web.Request) -> str:
    """The body as CSV text (``text/csv``, UTF-8, a byte-order mark allowed)."""
    _media_type(request, "text/csv")
    raw = await _read(request, MAX_CSV_BYTES, max(CSV_SECONDS, request.config_dict[CONFIG].listener_timeouts.header))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AdminApiError("the CSV file is not UTF-8") from exc


def fields(body: dict[str, Any], *, allowed: tuple[str, ...], required: tuple[str, ...] = (),
           refused: dict[str, str] | None = None) -> dict[str, Any]:
    """The body's members, checked: refused ones (with why), unknown ones and missing ones are 400s."""
    for name, why in (refused or {}).items():
        if name in body:
            raise AdminApiError(f"member {name!r} is not accepted: {why}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise AdminApiError(f"unknown member(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})")
    missing = [name for name in required if body.get(name) is None]
    if missing:
        raise AdminApiError(f"missing member(s): {', '.join(missing)}")
    return body


def text(body: dict[str, Any], name: str, *, max_chars: int = 256) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AdminApiError(f"member {name!r} must be a string")
    if len(value) > max_chars or not value.isprintable():
        raise AdminApiError(f"member {name!r} must be printable text of at most {max_chars} characters")
    return value


def path_id(request: web.Request, name: str) -> int | None:
    """A numeric id in the path, or None when it is not one (so it is answered as an unknown id, never as a 500:
    ``"²".isdigit()`` holds but ``int("²")`` raises, and a number past 64 bits overflows PostgreSQL's BIGINT)."""
    raw = request.match_info[name]
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_answer(body: object, *, status: int = 200, location: str | None = None) -> web.Response:
    headers = {} if location is None else {"Location": location}
    return web.json_response(body, status=status, headers=headers)
