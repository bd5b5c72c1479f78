"""What the administrators' pages share: their changes in the audit trail, and secrets shown once.

Every change made on those pages (a tenant, a user, a device, an API token) is an ``admin_change`` event
like the admin API's, with mode ``console`` and the console user as ``actor``.  A page that shows a
secret (a device secret, an API token) shows it in the answer to the POST that made it: it is stored
nowhere in plaintext, never logged, and the answer is not cached (``Cache-Control: no-store``, which
the console's middleware sets on every page; set here too so the rule does not hang on one place).
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.appkeys import AUDIT
from bridge.console.security import ConsoleSession
from bridge.console.views import CONSOLE_MODE, _config, _render
from bridge.logcontext import request_id_var
from bridge.state.audit import AuditEvent, AuditKind


async def record_change(request: web.Request, session: ConsoleSession, result: str, *, tenant_id: str | None,
                        email: str | None = None, device_id: str | None = None, subject: str | None = None) -> None:
    """One ``admin_change`` event: what was done, to what, and by which console user.

    ``subject`` names what changed when no field of the event does (an API token: its kind, name and id,
    never the token); it goes in the event's ``reason``.
    """
    await request.config_dict[AUDIT].record(AuditEvent(
        at=datetime.now(UTC), kind=AuditKind.ADMIN_CHANGE, result=result, tenant_id=tenant_id, device_id=device_id,
        mode=CONSOLE_MODE, email=email, source=request.remote, request_id=request_id_var.get(), actor=session.user,
        reason=subject))


def tenant_ids(request: web.Request) -> list[str]:
    """The ids of the tenants of this moment (they change live)."""
    return [t.id for t in _config(request).tenants]


def public_url(request: web.Request) -> str:
    """Where devices and tools reach the bridge: ``public_url`` when it was set, else this request's origin
    (the default ``public_url`` is only the listen address, which may be 0.0.0.0 or port 0)."""
    config = _config(request)
    public = config.public_url.rstrip("/")
    if not public or public == f"http://{config.listen_host}:{config.listen_port}":
        public = f"{request.scheme}://{request.host}"
    return public


def quoted(value: str) -> str:
    """A value as a shell word (for the command lines shown to try a secret)."""
    return shlex.quote(value)


def secret_page(request: web.Request, session: ConsoleSession, context: dict[str, Any]) -> web.Response:
    """The one page that shows a new secret; never cached."""
    response = _render(request, "secret.html", context, session=session)
    response.headers["Cache-Control"] = "no-store"
    return response
