"""Session introspection (GET) and logout (DELETE) for devices and apps.

A session token is a bearer token: ``Authorization: Bearer TOKEN`` is enough.
A device may instead authenticate itself (HTTP Basic) and pass the token in
``X-Session-Token``; then only sessions of the device's own tenant exist for
it — another tenant's token answers ``session_invalid``, like an unknown one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from bridge.appkeys import STORE
from bridge.basicauth import parse_basic
from bridge.errors import SessionError
from bridge.logcontext import tenant_id_var
from bridge.login.sessions import token_hash
from bridge.state.store import Session
from connectors.http import authenticate_device, bearer_token, iso

log = logging.getLogger(__name__)

SESSION_TOKEN_HEADER = "X-Session-Token"  # noqa: S105 (a header name)
MAX_TOKEN_CHARS = 256


async def _live_session(request: web.Request) -> tuple[Session, bytes]:
    """The live session the request names, with its token hash; SessionError otherwise."""
    device = None
    if parse_basic(request.headers.get("Authorization")) is not None:
        device = await authenticate_device(request)
        token = request.headers.get(SESSION_TOKEN_HEADER, "").strip() or None
    else:
        token = bearer_token(request)
    if token is None or len(token) > MAX_TOKEN_CHARS:
        raise SessionError("no session token")
    digest = token_hash(token)
    session = await request.app[STORE].get_session(digest, datetime.now(UTC))
    if session is None:
        raise SessionError("unknown, expired or revoked session")
    if device is not None and session.tenant_id != device.tenant_id:
        raise SessionError(f"device {device.device_id} of tenant {device.tenant_id} presented a session of "
                           f"tenant {session.tenant_id}")
    tenant_id_var.set(session.tenant_id)
    return session, digest


async def get_session(request: web.Request) -> web.Response:
    session, _ = await _live_session(request)
    return web.json_response(
        {
            "session": {
                "created_at": iso(session.created_at),
                "expires_at": iso(session.expires_at),
                "device_id": session.device_id,
            },
            "user": {"email": session.user_email, "tenant": session.tenant_id},
        }
    )


async def end_session(request: web.Request) -> web.Response:
    """Logout: the token stops working at once."""
    session, digest = await _live_session(request)
    await request.app[STORE].revoke_session(digest)
    log.info("session of tenant %s ended by logout", session.tenant_id)
    return web.json_response({"status": "logged_out"})


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/session", get_session), web.delete("/v1/session", end_session)]
