"""Mobile and desktop apps: email and password, no device credential.

The same IdP checks and whitelist rule as the MFP user prompt; with no device
to hold responsible, the throttles and spray detection key on the source
address.  The tenant's device networks do not apply: apps roam.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bridge.appkeys import LOGIN
from bridge.login.guard import LoginMode
from connectors.http import login_response, password_fields, read_json_object, source_address

log = logging.getLogger(__name__)


async def app_login(request: web.Request) -> web.Response:
    login = request.app[LOGIN]
    async with login.attempt(mode=LoginMode.APP, source=source_address(request)) as attempt:
        await attempt.check_actor()
        body = await read_json_object(request)
        email, password = password_fields(body, attempt)
        outcome = await login.password_login(identifier=email, password=password, device=None, attempt=attempt)
    log.info("app login succeeded")
    return login_response(outcome)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/apps/login", app_login)]
