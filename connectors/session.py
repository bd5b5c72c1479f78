"""Session introspection for devices and apps holding a bearer token."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from bridge.appkeys import STORE
from bridge.errors import SessionError
from bridge.sessions import token_hash
from connectors.http import bearer_token, iso


async def get_session(request: web.Request) -> web.Response:
    token = bearer_token(request)
    if token is None:
        raise SessionError("no bearer token")
    session = request.app[STORE].get_session(token_hash(token), datetime.now(UTC))
    if session is None:
        raise SessionError("unknown, expired or revoked session")
    return web.json_response(
        {
            "session": {"expires_at": iso(session.expires_at), "device_id": session.device_id},
            "user": {"email": session.user_email, "tenant": session.tenant_id},
        }
    )


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/session", get_session)]
