"""Console pages to create and edit a tenant, validated exactly like a tenant file and the admin API.

The form (bridge/console/tenant_form.py) builds the tenant document; saving it is
:func:`bridge.login.tenant_writes.save_tenant`, the admin API's own path: validated by the tenant file's
rules, an id already taken or a domain another tenant claims refused, stored with origin
``console:USER`` and served at once.  Every refusal is shown next to the field it is about.  A tenant
declared by a file can be edited here too; the page says that the file wins when it changes again
(the newer change wins: README, "Tenants are live data").  Editing is guarded by the digest of the
settings the form was opened on: a change made meanwhile (by anyone) is not silently overwritten.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bridge.appkeys import CONFIG, LOGIN, STORE
from bridge.console.changes import record_change
from bridge.console.security import ConsoleSession
from bridge.console.tenant_form import (
    GENERAL,
    IDP_FIELDS,
    OIDC_FIELDS,
    PROTOCOLS,
    SAML2_FIELDS,
    TENANT_FIELDS,
    WSTRUST_FIELDS,
    TenantForm,
    document_of_form,
    form_of,
)
from bridge.console.views import BASE, _form, _render, _session, _when
from bridge.login.tenant_writes import TenantRefused, document_of, save_tenant, validate_tenant
from bridge.state.tenants import TenantRecord, get_tenant_record

log = logging.getLogger(__name__)

_SAVED = {"created": "Tenant created: it is live now (devices and logins of its domains use it at once).",
          "saved": "Saved: the new settings are live now."}


def origin_text(origin: str) -> str:
    """Where a tenant's settings came from, in words."""
    kind, _, name = origin.partition(":")
    return {"file": f"the file {name}", "api": f"admin API token {name}",
            "console": f"console user {name}"}.get(kind, origin)


async def _record(request: web.Request) -> TenantRecord:
    record = await get_tenant_record(request.config_dict[STORE].database, request.match_info["tenant"])
    if record is None:
        raise web.HTTPNotFound(text="No such tenant.")
    return record


def _page(request: web.Request, session: ConsoleSession, form: TenantForm, *, record: TenantRecord | None,
          status: int = 200, notice: str = "", warnings: tuple[str, ...] = ()) -> web.Response:
    creating = record is None
    context: dict[str, Any] = {
        "title": "New tenant" if record is None else f"Edit tenant {record.tenant_id}", "page": "tenants",
        "creating": creating, "form": form, "protocols": PROTOCOLS, "general": form.errors.get(GENERAL, ""),
        "problems": len(form.errors), "notice": notice, "warnings": warnings,
        "tenant_fields": [f for f in TENANT_FIELDS if creating or f.name != "id"],
        "idp_fields": IDP_FIELDS, "wstrust_fields": WSTRUST_FIELDS, "saml2_fields": SAML2_FIELDS,
        "oidc_fields": OIDC_FIELDS,
        # What to register at an OpenID provider (the tenant's oidc.redirect_uri, when set, replaces it).
        "oidc_redirect": (f"{request.config_dict[CONFIG].public_url.rstrip('/')}/oidc/"
                          f"{'TENANT-ID' if record is None else record.tenant_id}/callback"),
        "action": f"{BASE}/tenants/new" if record is None else f"{BASE}/tenants/{record.tenant_id}/edit",
    }
    if record is not None:
        context.update(tenant_id=record.tenant_id, digest=record.digest, origin=origin_text(record.origin),
                       updated=_when(record.updated_at) + " UTC",
                       from_file=record.origin.removeprefix("file:") if record.origin.startswith("file:") else "")
    return _render(request, "tenant_edit.html", context, session=session, status=status)


def _refused(form: TenantForm, exc: TenantRefused, *, creating: bool) -> int:
    for key, detail in exc.problems:
        form.error_at(key, detail, id_shown=creating)
    return 409 if exc.conflict else 422


async def new_tenant(request: web.Request) -> web.Response:
    session = await _session(request)
    return _page(request, session, TenantForm(values={"protocol": PROTOCOLS[0]}, protocol=PROTOCOLS[0]),
                 record=None)


async def create_tenant(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    document, form = document_of_form(await _form(request, session), tenant_id=None)
    if document is None:
        return _page(request, session, form, record=None, status=422)
    try:
        saved = await save_tenant(request.config_dict[LOGIN].tenants, request.config_dict[STORE],
                                  request.config_dict[CONFIG], document, shown="console",
                                  origin=f"console:{session.user}", create=True)
    except TenantRefused as exc:
        status = _refused(form, exc, creating=True)
        return _page(request, session, form, record=None, status=status)
    tenant_id = saved.tenant.id
    log.info("console user %s created tenant %s", session.user, tenant_id)
    await record_change(request, session, "tenant_created", tenant_id=tenant_id)
    raise web.HTTPSeeOther(f"{BASE}/tenants/{tenant_id}/edit?saved=created")


async def edit_tenant(request: web.Request) -> web.Response:
    session = await _session(request)
    record = await _record(request)
    document = document_of(record)
    form = form_of(document)
    warnings: tuple[str, ...] = ()
    try:
        _, warnings, _ = await validate_tenant(request.config_dict[CONFIG], document, shown="console")
    except TenantRefused as exc:  # valid when stored; a file it names may have gone since
        _refused(form, exc, creating=False)
        form.errors.setdefault(GENERAL, "The stored settings do not pass the check any more (a file they name may "
                                        "have gone): fix the marked fields.")
    return _page(request, session, form, record=record, notice=_SAVED.get(request.query.get("saved", ""), ""),
                 warnings=warnings)


async def update_tenant(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    posted = await _form(request, session)
    record = await _record(request)
    document, form = document_of_form(posted, tenant_id=record.tenant_id)
    if document is None:
        return _page(request, session, form, record=record, status=422)
    if posted.get("digest") != record.digest:
        form.errors[GENERAL] = (f"These settings were changed by {origin_text(record.origin)} at "
                                f"{_when(record.updated_at)} UTC after you opened this page. Your version is "
                                "below: save again to replace that change with it, or reload to start from it.")
        return _page(request, session, form, record=record, status=409)
    try:
        await save_tenant(request.config_dict[LOGIN].tenants, request.config_dict[STORE], request.config_dict[CONFIG],
                          document, shown="console", origin=f"console:{session.user}", create=False)
    except TenantRefused as exc:
        status = _refused(form, exc, creating=False)
        return _page(request, session, form, record=record, status=status)
    log.info("console user %s changed tenant %s", session.user, record.tenant_id)
    await record_change(request, session, "tenant_replaced", tenant_id=record.tenant_id)
    raise web.HTTPSeeOther(f"{BASE}/tenants/{record.tenant_id}/edit?saved=saved")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/tenants/new", new_tenant),
        web.post("/tenants/new", create_tenant),
        web.get("/tenants/{tenant}/edit", edit_tenant),
        web.post("/tenants/{tenant}/edit", update_tenant),
    ]
