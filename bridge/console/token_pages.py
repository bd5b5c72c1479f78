"""Console page for the API tokens: the admin API's and SCIM's (bridge/state/tokens.py), listed, made, revoked.

The list shows what ``loginbridge admin|scim token list`` shows, never a token.  A token made here is
shown once, on the answer to the POST that made it (with the command line that tries it), as the CLI
prints it once; revoking stops it at once on every instance.  Both are ``admin_change`` events naming
the console user.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bridge.adminapi import PREFIX as ADMIN_PREFIX
from bridge.appkeys import STORE
from bridge.console.changes import public_url, quoted, record_change, secret_page, tenant_ids
from bridge.console.security import ConsoleSession
from bridge.console.views import BASE, _form, _render, _session, _when
from bridge.errors import RequestError
from bridge.scim import PREFIX as SCIM_PREFIX
from bridge.state.tokens import KINDS, ApiToken, TokenKind, create_token, list_tokens, revoke_token

log = logging.getLogger(__name__)

EVERY_TENANT = ""  # the tenant choice of a global admin token
_KIND_TEXT = {"admin": "admin API", "scim": "SCIM"}


def _row(token: ApiToken) -> dict[str, Any]:
    return {"id": token.id, "kind": _KIND_TEXT[token.kind], "name": token.name,
            "tenant": token.tenant_id or "every tenant", "created": _when(token.created_at),
            "used": _when(token.last_used_at) or "never", "revoked": _when(token.revoked_at), "active": token.active}


async def _listing(request: web.Request, session: ConsoleSession, *, notice: str = "",
                   values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                   status: int = 200) -> web.Response:
    tokens = await list_tokens(request.config_dict[STORE].database)
    live = [t for t in reversed(tokens) if t.active]
    revoked = [t for t in reversed(tokens) if not t.active]
    return _render(request, "tokens.html", {
        "title": "API tokens", "page": "tokens", "live": [_row(t) for t in live],
        "revoked": [_row(t) for t in revoked], "notice": notice, "kinds": KINDS, "kind_text": _KIND_TEXT,
        "tenants": tenant_ids(request), "v": values or {"kind": "admin", "name": "", "tenant": EVERY_TENANT},
        "errors": errors or {},
    }, session=session, status=status)


async def tokens(request: web.Request) -> web.Response:
    session = await _session(request)
    return await _listing(request, session)


async def revoke(request: web.Request) -> web.Response:
    session = await _session(request)
    await _form(request, session)
    database = request.config_dict[STORE].database
    token_id = int(request.match_info["id"])
    before = next((t for t in await list_tokens(database) if t.id == token_id), None)
    if before is None:
        raise web.HTTPNotFound(text="No such token.")
    if not before.active:
        return await _listing(request, session, notice=f"The {_KIND_TEXT[before.kind]} token {before.name} was "
                                                       "already revoked.")
    try:
        token = await revoke_token(database, token_id)
    except RequestError as exc:
        raise web.HTTPNotFound(text="No such token.") from exc
    log.info("console user %s revoked %s token %s (id %s)", session.user, token.kind, token.name, token.id)
    await record_change(request, session, "token_revoked", tenant_id=token.tenant_id, subject=_subject(token))
    return await _listing(request, session, notice=f"The {_KIND_TEXT[token.kind]} token {token.name} is revoked: "
                                                   "every instance refuses it from its next request.")


def _subject(token: ApiToken) -> str:
    return f"{token.kind} token {token.name} (id {token.id})"


def _field_of(detail: str) -> str:
    return "tenant" if "tenant" in detail and "name" not in detail else "name"


def _try_it(kind: TokenKind, plaintext: str, tenant_id: str | None, base: str) -> list[str]:
    header = quoted(f"Authorization: Bearer {plaintext}")
    if kind == "scim":
        return [f"curl -s -H {header} {base}{SCIM_PREFIX}/{tenant_id}/Users"]
    where = f"/tenants/{tenant_id}" if tenant_id else "/tenants"
    return [f"curl -s -H {header} {base}{ADMIN_PREFIX}{where}"]


async def create(request: web.Request) -> web.Response:
    session = await _session(request)
    posted = await _form(request, session)
    values = {name: posted.get(name, "").strip() for name in ("kind", "name", "tenant")}
    errors: dict[str, str] = {}
    kind: TokenKind = "scim" if values["kind"] == "scim" else "admin"
    if values["kind"] not in KINDS:
        errors["kind"] = f"Choose one of {', '.join(KINDS)}."
    tenant_id = values["tenant"] or None
    if tenant_id is not None and tenant_id not in tenant_ids(request):
        errors["tenant"] = "Choose one of the tenants."
    elif tenant_id is None and kind == "scim":
        errors["tenant"] = "A SCIM token belongs to one tenant: choose it."
    if not errors:
        try:
            token, plaintext = await create_token(request.config_dict[STORE].database, kind=kind, name=values["name"],
                                                  tenant_id=tenant_id)
        except RequestError as exc:
            errors[_field_of(exc.detail)] = exc.detail
    if errors:
        return await _listing(request, session, values=values, errors=errors, status=422)
    log.info("console user %s created %s token %s (id %s)", session.user, token.kind, token.name, token.id)
    await record_change(request, session, "token_created", tenant_id=tenant_id, subject=_subject(token))
    scope = f"tenant {tenant_id}" if tenant_id else "every tenant"
    use = (f"Give it to tenant {tenant_id}'s IdP as the SCIM bearer token; its SCIM base URL is "
           f"{public_url(request)}{SCIM_PREFIX}/{tenant_id}." if kind == "scim" else
           f"Send it as Authorization: Bearer TOKEN to the admin API at {public_url(request)}{ADMIN_PREFIX}.")
    return secret_page(request, session, {
        "title": f"{_KIND_TEXT[kind]} token {token.name}", "page": "tokens", "label": "Token", "secret": plaintext,
        "facts": [("Kind", _KIND_TEXT[kind]), ("Name", token.name), ("For", scope), ("Id", str(token.id))],
        "use": use, "commands": _try_it(kind, plaintext, tenant_id, public_url(request)),
        "commands_note": "Revoke it on the API tokens page when it is no longer needed or may have leaked.",
        "back": f"{BASE}/tokens", "back_text": "back to API tokens",
    })


def routes() -> list[web.RouteDef]:
    return [
        web.get("/tokens", tokens),
        web.post("/tokens/new", create),
        web.post(r"/tokens/{id:\d{1,18}}/revoke", revoke),
    ]
