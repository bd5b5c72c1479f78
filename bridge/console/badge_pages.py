"""Console page for badge bindings (bridge/state/pairings.py): listed per tenant, revoked at once.

A binding is made when a user pairs at a badge-reading device with the phone ("pair once,
tap thereafter"); from then on the badge alone opens sessions for that user until the binding
expires. Here a technician sees whose badges are bound, at which device, when each was last
used and when it expires, and revokes one (a lost or handed-on card) without touching the
user's account. Never the badge: only a keyed hash of it is stored. Revoking is an
``admin_change`` event naming the console user.
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
from bridge.state.pairings import BadgeBinding, list_badges, revoke_badge
from bridge.state.store import Device

log = logging.getLogger(__name__)


def _row(binding: BadgeBinding, devices: dict[str, Device], now: datetime) -> dict[str, Any]:
    device = devices.get(binding.device_id or "")
    return {"id": binding.id, "tenant": binding.tenant_id, "email": binding.email,
            "device": binding.device_id or "", "device_name": device.name if device else "",
            "location": device.location if device else "", "created": _when(binding.created_at),
            "used": _when(binding.last_used_at) or "never", "expires": _when(binding.expires_at),
            "expired": now >= binding.expires_at}


def _matches(row: dict[str, Any], wanted: str) -> bool:
    return any(wanted in str(row[key]).lower() for key in ("email", "device", "device_name", "location"))


async def _listing(request: web.Request, session: ConsoleSession, *, notice: str = "") -> web.Response:
    tenants = tenant_ids(request)
    chosen = request.query.get("tenant", "")
    wanted = request.query.get("q", "").strip().lower()[:254]
    store = request.config_dict[STORE]
    bindings = await list_badges(store.database, tenant_id=chosen or None)
    devices = {d.device_id: d for d in await store.list_devices(chosen or None)}  # names, not just ids
    now = datetime.now(UTC)
    rows = [_row(b, devices, now) for b in bindings]
    if wanted:
        rows = [row for row in rows if _matches(row, wanted)]
    return _render(request, "badges.html", {
        "title": "Badge bindings", "page": "badges", "bindings": rows, "tenants": tenants, "chosen": chosen,
        "q": wanted, "notice": notice,
    }, session=session)


async def badge_bindings(request: web.Request) -> web.Response:
    return await _listing(request, await _session(request))


async def revoke(request: web.Request) -> web.Response:
    session = await _session(request)
    await _form(request, session)
    binding = await revoke_badge(request.config_dict[STORE].database, int(request.match_info["id"]))
    if binding is None:
        raise web.HTTPNotFound(text="No such badge binding (already revoked?).")
    log.info("console user %s revoked badge binding %s of %s", session.user, binding.id, binding.email)
    await record_change(request, session, "badge_binding_revoked", tenant_id=binding.tenant_id, email=binding.email,
                        device_id=binding.device_id, subject=f"badge binding (id {binding.id})")
    return await _listing(request, session, notice=f"The badge binding of {binding.email} is revoked: the badge "
                                                   "stops signing in at once, on every instance, until the user "
                                                   "pairs again.")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/badge-bindings", badge_bindings),
        web.post(r"/badge-bindings/{id:\d{1,18}}/revoke", revoke),
    ]
