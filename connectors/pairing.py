"""Phone pairing for devices (RFC 8628 semantics, our endpoints), badge sign-in, and the web app's code exchange.

- ``POST /v1/mfp/pairing`` (device credentials; optional ``{"badge": "..."}``): the codes to show;
- ``POST /v1/mfp/pairing/poll`` ``{"device_code"}``: the session once the user approved on the phone,
  else RFC 8628 section 3.5's answers (HTTP 400 ``authorization_pending``, ``slow_down`` with the new
  ``interval``, ``expired_token``, ``access_denied``, ``invalid_grant``);
- ``POST /v1/mfp/badge-login`` ``{"badge"}``: a session for the user a pairing bound the badge to;
- ``POST /v1/web/session`` ``{"code"}``: the session ``/v1/web/login`` handed to a web app.

Any enrolled device may pair (every mode gets an MFA path).  Polls that only wait are not audited
(a device polls every few seconds); every other outcome is, like a login.
"""

from __future__ import annotations

import logging

import segno
from aiohttp import web

from bridge.appkeys import LOGIN, PAIRING
from bridge.errors import AuthorizationPending, RequestError, SlowDown
from bridge.logcontext import tenant_id_var
from bridge.login.guard import LoginMode
from bridge.login.pairing import MAX_BADGE_CHARS, MAX_CODE_CHARS
from connectors.http import (
    authenticate_device,
    login_response,
    read_json_object,
    source_address,
    string_field,
)

log = logging.getLogger(__name__)

def qr_svg(text: str) -> str:
    """A QR code of ``text`` as an SVG document a panel can draw (error correction M, 4 px modules, quiet zone)."""
    return str(segno.make(text, error="m").svg_inline(scale=4, border=4))


async def start_pairing(request: web.Request) -> web.Response:
    device = await authenticate_device(request)
    tenant_id_var.set(device.tenant_id)
    badge: str | None = None
    if request.body_exists and request.content_length != 0:
        body = await read_json_object(request)
        if body.get("badge") is not None:
            badge = string_field(body, "badge", max_chars=MAX_BADGE_CHARS).strip() or None
    started = await request.app[PAIRING].start(device, badge=badge)
    return web.json_response({
        "device_code": started.device_code,
        "user_code": started.user_code,
        "verification_uri": started.verification_uri,
        "verification_uri_complete": started.verification_uri_complete,
        "qr_svg": qr_svg(started.verification_uri_complete),
        "expires_in": started.expires_in,
        "interval": started.interval,
    }, headers={"Cache-Control": "no-store"})


async def poll_pairing(request: web.Request) -> web.Response:
    login = request.app[LOGIN]
    attempt = login.attempt(mode=LoginMode.PAIRING, source=source_address(request))
    try:
        device = await authenticate_device(request, attempt)
        tenant_id_var.set(device.tenant_id)
        await attempt.check_actor()
        body = await read_json_object(request)
        device_code = string_field(body, "device_code", max_chars=MAX_CODE_CHARS)
        outcome = await request.app[PAIRING].poll(device, device_code, attempt)
    except SlowDown as exc:
        return web.json_response({**exc.to_json(), "interval": exc.interval}, status=exc.http_status,
                                 headers={"Cache-Control": "no-store"})
    except AuthorizationPending as exc:
        return web.json_response(exc.to_json(), status=exc.http_status, headers={"Cache-Control": "no-store"})
    except BaseException as exc:
        await attempt.finish(exc)
        raise
    await attempt.finish(None)
    return login_response(outcome)


async def badge_login(request: web.Request) -> web.Response:
    login = request.app[LOGIN]
    async with login.attempt(mode=LoginMode.BADGE, source=source_address(request)) as attempt:
        device = await authenticate_device(request, attempt)
        tenant_id_var.set(device.tenant_id)
        await attempt.check_actor()
        body = await read_json_object(request)
        badge = string_field(body, "badge", max_chars=MAX_BADGE_CHARS).strip()
        if not badge:
            raise RequestError("field 'badge' is empty")
        outcome = await request.app[PAIRING].badge_login(device, badge, attempt)
    return login_response(outcome)


async def web_session(request: web.Request) -> web.Response:
    login = request.app[LOGIN]
    async with login.attempt(mode=LoginMode.WEB, source=source_address(request)) as attempt:
        body = await read_json_object(request)
        code = string_field(body, "code", max_chars=MAX_CODE_CHARS)
        outcome = await request.app[PAIRING].exchange(code)
        attempt.identified(outcome.tenant, outcome.user.email)
    return login_response(outcome)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/mfp/pairing", start_pairing),
        web.post("/v1/mfp/pairing/poll", poll_pairing),
        web.post("/v1/mfp/badge-login", badge_login),
        web.post("/v1/web/session", web_session),
    ]
