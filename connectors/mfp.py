"""MFP connector endpoints (the user-prompt mode)."""

from __future__ import annotations

import logging

from aiohttp import web

from bridge.appkeys import LOGIN
from bridge.errors import WrongMode
from bridge.store import DeviceMode
from connectors.http import authenticate_device, iso, read_json_object, string_field

log = logging.getLogger(__name__)


async def user_prompt(request: web.Request) -> web.Response:
    """The panel sends the email and password the user typed."""
    device = authenticate_device(request)
    if device.mode is not DeviceMode.USER_PROMPT:
        raise WrongMode(f"device {device.device_id} is enrolled as {device.mode.value}")
    body = await read_json_object(request)
    email = string_field(body, "email")
    password = string_field(body, "password")
    outcome = await request.app[LOGIN].password_login(identifier=email, password=password, device=device)
    log.info("user-prompt login succeeded on device %s", device.device_id)
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


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/mfp/user-prompt", user_prompt)]
