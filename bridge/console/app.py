"""Building the console sub-application and mounting it under /console."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.config import BridgeConfig
from bridge.console import (
    attempts,
    badge_pages,
    device_pages,
    printlink_pages,
    tenant_pages,
    token_pages,
    user_pages,
    views,
)
from bridge.console.keys import CONSOLE_STATE, SIGNER
from bridge.console.security import Signer
from bridge.console.shared import ConsoleState

PREFIX = "/console"
HERE = Path(__file__).resolve().parent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No script at all, styles only from our own static path, forms only to ourselves.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def make_console(config: BridgeConfig) -> web.Application:
    console = web.Application(middlewares=[security_headers])
    console[SIGNER] = Signer(config.hmac_key)
    console[CONSOLE_STATE] = ConsoleState(config.hmac_key)
    aiohttp_jinja2.setup(console, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    console.router.add_static("/static", HERE / "static", append_version=False)
    console.router.add_routes(views.routes() + attempts.routes() + tenant_pages.routes() + user_pages.routes()
                              + device_pages.routes() + token_pages.routes() + printlink_pages.routes()
                              + badge_pages.routes())
    return console


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/")


def mount_console(app: web.Application, config: BridgeConfig) -> None:
    """Serve the console under /console of the bridge's own listener, when console users are configured.

    Without a ``console:`` section there is nobody to sign in, so there are no
    console routes at all (nothing to probe, and the device API stays alone).
    """
    if config.console is None or not config.console.users:
        return
    app.router.add_get(PREFIX, _to_console)
    app.add_subapp(PREFIX, make_console(config))
