"""The admin API /admin/v1: tenants, users, devices and attempts for administrators (bearer admin tokens).

:mod:`bridge.adminapi.http` holds the token check, bodies and error answers; :mod:`bridge.adminapi.tenants`
, :mod:`bridge.adminapi.accounts`, :mod:`bridge.adminapi.printlinks` and :mod:`bridge.adminapi.badges` the
resources; :mod:`bridge.adminapi.document` the OpenAPI 3.1 document
(``GET /admin/v1/openapi.json``); :mod:`bridge.adminapi.commands` ``loginbridge admin token ...``.
"""

from aiohttp import web

from bridge.adminapi import accounts, badges, document, printlinks, tenants
from bridge.adminapi.http import PREFIX, answers


def mount_admin_api(app: web.Application) -> None:
    """Serve the admin API at /admin/v1 on ``app`` (the device API's application)."""
    admin = web.Application(middlewares=[answers])
    admin.router.add_routes([*document.routes(), *tenants.routes(), *accounts.routes(), *printlinks.routes(),
                              *badges.routes()])
    app.add_subapp(PREFIX, admin)


__all__ = ["PREFIX", "mount_admin_api"]
