"""Console page to find a tenant's users and disable or enable them.

Search is a substring of the email address, user name or display name (any case), fifty users a page.
Disabling is the admin API's: the account is disabled, its sessions end at once and the printer's cached
verifications of it go, in one transaction; the page says how many sessions ended.  Both are
``admin_change`` events naming the console user.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bridge.appkeys import STORE
from bridge.console.changes import record_change, tenant_ids
from bridge.console.security import ConsoleSession
from bridge.console.views import BASE, _form, _render, _session, _when
from bridge.errors import RequestError
from bridge.state.store import User

log = logging.getLogger(__name__)

PER_PAGE = 50
MAX_QUERY_CHARS = 254


def _matches(user: User, wanted: str) -> bool:
    return any(wanted in text.casefold() for text in (user.email, user.username, user.display_name))


def _page_number(raw: str) -> int:
    return int(raw) if raw.isdigit() and 0 < int(raw) < 10**6 else 1


async def _listing(request: web.Request, session: ConsoleSession, *, tenant: str, query: str, page: int,
                   notice: str = "", status: int = 200) -> web.Response:
    tenants = tenant_ids(request)
    error = ""
    users: list[User] = []
    if tenant and tenant not in tenants:
        error, tenant = f"No tenant {tenant}.", ""
    tenant = tenant or (tenants[0] if tenants else "")
    if tenant:
        users = await request.config_dict[STORE].list_users(tenant)
    wanted = query.strip().casefold()
    found = [u for u in users if _matches(u, wanted)] if wanted else users
    pages = max(1, -(-len(found) // PER_PAGE))
    page = min(page, pages)
    shown = found[(page - 1) * PER_PAGE:page * PER_PAGE]

    def link(number: int) -> str:
        return f"{BASE}/users?" + urlencode({"tenant": tenant, "q": query, "page": number})

    context: dict[str, Any] = {
        "title": "Users", "page": "users", "tenants": tenants, "tenant": tenant, "q": query, "page_no": page,
        "error": error, "notice": notice, "total": len(users), "matching": len(found),
        "first": (page - 1) * PER_PAGE + 1 if shown else 0, "last": (page - 1) * PER_PAGE + len(shown),
        "prev": link(page - 1) if page > 1 else "", "next": link(page + 1) if page < pages else "",
        "users": [{"email": u.email, "username": u.username, "name": u.display_name, "group": u.group,
                   "enabled": u.enabled, "created": _when(u.created_at)[:10]} for u in shown],
    }
    return _render(request, "users.html", context, session=session, status=status)


async def users(request: web.Request) -> web.Response:
    session = await _session(request)
    return await _listing(request, session, tenant=request.query.get("tenant", ""),
                          query=request.query.get("q", "")[:MAX_QUERY_CHARS],
                          page=_page_number(request.query.get("page", "")))


async def set_user(request: web.Request) -> web.Response:
    session = await _session(request)
    form = await _form(request, session)
    action = request.match_info["action"]
    tenant = form.get("tenant", "")
    store = request.config_dict[STORE]
    user = await store.get_user(tenant, form.get("email", "")) if tenant in tenant_ids(request) else None
    if user is None:
        raise web.HTTPNotFound(text="No such user.")
    email = user.email
    try:
        if action == "disable":
            ended = await store.deactivate_user(tenant, email)
            notice = (f"{email} is disabled: {ended} {'session' if ended == 1 else 'sessions'} ended at once. "
                      "Devices and the printer no longer accept this account.")
        else:
            await store.enable_user(tenant, email)
            notice = f"{email} is enabled: the account can sign in again."
    except RequestError as exc:  # removed meanwhile
        raise web.HTTPNotFound(text="No such user.") from exc
    log.info("console user %s %sd user %s in tenant %s", session.user, action, email, tenant)
    await record_change(request, session, f"user_{action}d", tenant_id=tenant, email=email)
    return await _listing(request, session, tenant=tenant, query=form.get("q", "")[:MAX_QUERY_CHARS],
                          page=_page_number(form.get("page", "")), notice=notice)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/users", users),
        web.post("/users/{action:disable|enable}", set_user),
    ]
