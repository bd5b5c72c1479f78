"""One tenant's settings written on an administrator's word (the admin API, the console), live at once.

A tenant document (the keys of a tenant YAML file, as a mapping) is validated exactly as a tenant
file is (:func:`bridge.config.load_tenant_text`, the files it names required to exist, relative paths
read from the configuration's ``tenants_dir``), checked against the other tenants (an id already
taken when creating, a domain another tenant claims), stored as indented JSON (so a line named in a
log is a line of the stored document) with where it came from, and the instance's tenants are
refreshed so the change is served at once (the other instances follow within
:data:`bridge.login.tenants.POLL_SECONDS`).  Callers record the audit event: they know who acted.

A refusal is :class:`TenantRefused` naming the configuration key to fix (``wstrust.adfs_url``,
``domains[1]``; ``""`` for the document as a whole): the admin API turns it into a JSON pointer, the
console into the form field next to which the message is shown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from bridge.config import BridgeConfig, TenantConfig, load_tenant_text
from bridge.errors import ConfigError, RequestError
from bridge.login.tenants import LiveTenants
from bridge.state.store import Store
from bridge.state.tenants import TenantRecord, get_tenant_record, put_tenant


class TenantRefused(RequestError):
    """A tenant document refused: ``key`` is the configuration key to fix; ``conflict`` when it clashes with
    another tenant (an id taken, a domain claimed) rather than failing validation.

    It reads as the first mistake; ``problems`` holds every (key, detail) found, when the check names several.
    """

    def __init__(self, detail: str, *, key: str, conflict: bool = False,
                 problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(detail)
        self.key = key
        self.conflict = conflict
        self.problems = problems or ((key, detail),)


@dataclass(frozen=True, kw_only=True, slots=True)
class SavedTenant:
    record: TenantRecord
    tenant: TenantConfig
    warnings: tuple[str, ...]


def plain_detail(exc: ConfigError) -> str:
    """The error's own words, without the file, line and key ConfigError puts in front."""
    where = exc.file
    if exc.line is not None:
        where = f"{where}:{exc.line}" if where else f"line {exc.line}"
    if exc.key:
        where = f"{where}: {exc.key}" if where else exc.key
    prefix = f"{where}: "
    return exc.detail[len(prefix):] if where and exc.detail.startswith(prefix) else exc.detail


async def validate_tenant(config: BridgeConfig, document: Mapping[str, Any], *,
                          shown: str) -> tuple[TenantConfig, tuple[str, ...], str]:
    """(tenant, warnings, the text to store) of a document, validated as a tenant file; TenantRefused otherwise.

    ``shown`` names the document in warnings (``api``, ``console``).
    """
    text = json.dumps(document, indent=2)
    try:
        tenant, warnings = await asyncio.to_thread(
            load_tenant_text, text, shown=shown, base_dir=config.tenants_dir, default_ttl=config.session_ttl,
            require_files=True)
    except ConfigError as exc:
        raise TenantRefused(plain_detail(exc), key=exc.key, problems=_problems(exc)) from exc
    return tenant, warnings, text


def _problems(exc: ConfigError) -> tuple[tuple[str, str], ...]:
    """Every (key, detail) of the refusal: a check that goes on past a mistake lists them all in ``errors``."""
    found = getattr(exc, "errors", None)
    every = [e for e in found if isinstance(e, ConfigError)] if isinstance(found, tuple | list) else []
    return tuple((e.key, plain_detail(e)) for e in every or [exc])


def check_domains(tenant: TenantConfig, others: tuple[TenantConfig, ...]) -> None:
    """Each domain is claimed by one tenant only (TenantRefused naming the first one taken)."""
    for index, domain in enumerate(tenant.domains):
        for other in others:
            if other.id != tenant.id and domain in other.domains:
                raise TenantRefused(f"domain {domain} is already claimed by tenant {other.id}",
                                    key=f"domains[{index}]", conflict=True)


async def save_tenant(live: LiveTenants, store: Store, config: BridgeConfig, document: Mapping[str, Any], *,
                      shown: str, origin: str, create: bool) -> SavedTenant:
    """Validate, check against the other tenants, store and serve a tenant document.

    ``create``: the id must be new (TenantRefused on ``id`` otherwise); else the document replaces the
    tenant of its id (the caller checked that it exists and is the one meant).  ``origin`` is recorded
    with it (``api:TOKEN-NAME``, ``console:USER``).
    """
    tenant, warnings, text = await validate_tenant(config, document, shown=shown)
    await live.refresh(store)  # a change by another instance included
    others = live.config.tenants
    if create and (any(t.id == tenant.id for t in others) or await get_tenant_record(store.database, tenant.id)):
        raise TenantRefused(f"tenant {tenant.id} already exists", key="id", conflict=True)
    check_domains(tenant, others)
    record = await put_tenant(store.database, tenant_id=tenant.id, document=text, base_dir=str(config.tenants_dir),
                              origin=origin, from_file=False)
    await live.refresh(store)
    return SavedTenant(record=record, tenant=tenant, warnings=warnings)


def document_of(record: TenantRecord) -> dict[str, Any]:
    """The stored document as JSON data (a file's YAML read safely; values JSON has no type for become text)."""
    try:
        parsed = json.loads(record.document)
    except ValueError:
        try:
            parsed = yaml.safe_load(record.document)
        except yaml.YAMLError:
            parsed = None
    if not isinstance(parsed, dict):
        return {}
    result: dict[str, Any] = json.loads(json.dumps(parsed, default=str))
    return result
