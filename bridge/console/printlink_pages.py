"""Console page for personal printer URLs (bridge/state/printlinks.py): listed per tenant, revoked at once.

A link is made by its user at ``/print/setup`` (or through the admin API); here a
technician sees who has one, for which computer or phone, when it was last used
and when it expires, and revokes one (a lost laptop) without touching the user's
account. Never a token: only its hash is stored. Revoking is an ``admin_change``
event naming the console user.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.appkeys import STORE
from bridge.console.changes import record_change, tenant_ids
from bridge.console.security import ConsoleSession
from bridge.console.views import _form, _render, _session, _when
from bridge.state.printlinks import PrinterLink, list_links, revoke_link

log = logging.getLogger(__name__)


def _row(link: PrinterLink, now: datetime) -> dict[str, Any]:
    return {"id": link.id, "tenant": link.tenant_id, "email": link.email, "label": link.label,
            "by": link.created_by, "created": _when(link.created_at), "used": _when(link.last_used_at) or "never",
            "expires": _when(link.expires_at), "expired": link.expired(now)}


async def _listing(request: web.Request, session: ConsoleSession, *, notice: str = "") -> web.Response:
    tenants = tenant_ids(request)
    chosen = request.query.get("tenant", "")
    wanted = request.query.get("q", "").strip().lower()[:254]
    links = await list_links(request.config_dict[STORE].database, tenant_id=chosen or None)
    if wanted:
        links = [x for x in links if wanted in x.email.lower() or wanted in x.label.lower()]
    now = datetime.now(UTC)
    return _render(request, "printlinks.html", {
        "title": "Printer links", "page": "printlinks", "links": [_row(x, now) for x in links], "tenants": tenants,
        "chosen": chosen, "q": wanted, "notice": notice,
    }, session=session)


async def printer_links(request: web.Request) -> web.Response:
    return await _listing(request, await _session(request))


async def revoke(request: web.Request) -> web.Response:
    session = await _session(request)
    await _form(request, session)
    link = await revoke_link(request.config_dict[STORE].database, int(request.match_info["id"]))
    if link is None:
        raise web.HTTPNotFound(text="No such printer link (already revoked?).")
    log.info("console user %s revoked printer link %s of %s", session.user, link.id, link.email)
    await record_change(request, session, "printer_link_revoked", tenant_id=link.tenant_id, email=link.email,
                        subject=f"printer link {link.label} (id {link.id})")
    return await _listing(request, session, notice=f"The printer link {link.label} of {link.email} is revoked: "
                                                   "it stops printing at once, on every instance.")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/printer-links", printer_links),
        web.post(r"/printer-links/{id:\d{1,18}}/revoke", revoke),
    ]
