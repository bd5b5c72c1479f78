"""One tenant's directory sync: read the directory, plan, apply through the store, audit every change.

``await sync_tenant(tenant, store, audit=audit)`` (``dry_run=True``: read and plan, write nothing). A sync
holds the tenant's lease in the store while it writes, so two instances (or the schedule and
``loginbridge directory sync``) never apply at once; the schedule is in :mod:`bridge.directory.schedule`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bridge.config import TenantConfig
from bridge.directory.plan import Action, Change, SyncPlan, plan_sync
from bridge.directory.reader import DirectoryError, DirectoryRead, bind_password, read_directory
from bridge.errors import RequestError
from bridge.state.audit import AuditEvent, AuditKind, AuditLog
from bridge.state.store import Store

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=30)  # longest a sync may hold its tenant; a dead instance's lease expires after it
AUDIT_SOURCE = "directory-sync"


def instance_id() -> str:
    """Who holds a lease: host, process and a random part (two processes never share it)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncResult:
    plan: SyncPlan
    dry_run: bool
    pages: int
    sessions_ended: int = 0
    failed: tuple[tuple[Change, str], ...] = field(default=())  # changes the store refused when applied

    def summary(self) -> str:
        line = self.plan.summary(dry_run=self.dry_run)
        return line + (f"; {len(self.failed)} not applied" if self.failed else "")


def _now() -> datetime:
    return datetime.now(UTC)


async def read_tenant_directory(tenant: TenantConfig) -> DirectoryRead:
    """The tenant's directory entries (a worker thread does the blocking LDAP work)."""
    if tenant.directory is None:
        raise DirectoryError(f"tenant {tenant.id} has no directory: section in {tenant.source}")
    password = bind_password(tenant.directory)
    return await asyncio.to_thread(read_directory, tenant.directory, password)


async def sync_tenant(tenant: TenantConfig, store: Store, *, dry_run: bool = False, audit: AuditLog | None = None,
                      owner: str | None = None, every: timedelta | None = None) -> SyncResult | None:
    """Run the tenant's sync. Returns None only with ``every`` (the schedule) when it is not this one's turn:
    another instance holds the lease or a sync started within ``every``. Without ``every`` a held lease is
    a DirectoryError."""
    if tenant.directory is None:
        raise DirectoryError(f"tenant {tenant.id} has no directory: section in {tenant.source}")
    if dry_run:
        read = await read_tenant_directory(tenant)
        plan = plan_sync(tenant.id, tenant.domains, read.entries, await store.list_users(tenant.id),
                         disabled_by_sync=await store.directory_disabled(tenant.id))
        return SyncResult(plan=plan, dry_run=True, pages=read.pages)
    owner = owner or instance_id()
    if not await store.claim_directory_sync(tenant.id, owner, now=_now(), lease=LEASE, every=every):
        if every is not None:
            return None
        raise DirectoryError(f"a directory sync of tenant {tenant.id} is running elsewhere; try again later")
    try:
        read = await read_tenant_directory(tenant)
        await store.forget_directory_disables(tenant.id)
        plan = plan_sync(tenant.id, tenant.domains, read.entries, await store.list_users(tenant.id),
                         disabled_by_sync=await store.directory_disabled(tenant.id))
        if not read.entries and plan.count(Action.DISABLE):
            # A wrong base_dn or filter reads nothing: that must not disable the whole tenant.
            raise DirectoryError(f"the directory search found no entries under {tenant.directory.base_dn}: "
                                 f"refusing to disable {plan.count(Action.DISABLE)} accounts of tenant {tenant.id} "
                                 "(check base_dn, user_filter and group_dn)")
        result = await _apply(tenant, store, plan, read.pages, audit)
    finally:
        await store.release_directory_sync(tenant.id, owner)
    log.info("%s", result.summary())
    return result


async def _apply(tenant: TenantConfig, store: Store, plan: SyncPlan, pages: int, audit: AuditLog | None
                 ) -> SyncResult:
    ended = 0
    failed: list[tuple[Change, str]] = []
    for change in plan.changes:
        try:
            done, note = await _apply_one(tenant, store, change)
        except RequestError as exc:  # the account changed under us (added, removed): the next sync sees it
            log.warning("directory sync %s: %s not applied: %s", tenant.id, change.line(), exc.detail)
            failed.append((change, exc.detail))
            continue
        ended += note
        if done:
            await _record(audit, store, tenant.id, change)
    return SyncResult(plan=plan, dry_run=False, pages=pages, sessions_ended=ended, failed=tuple(failed))


async def _apply_one(tenant: TenantConfig, store: Store, change: Change) -> tuple[bool, int]:
    """Write one change; (whether it was written, sessions ended)."""
    if change.action is Action.CREATE:
        assert change.username is not None
        await store.add_user(tenant, email=change.email, username=change.username,
                             display_name=change.display_name or "", password=None)
        return True, 0
    if change.action in (Action.UPDATE, Action.ENABLE) and change.username is not None:
        await store.set_user_names(tenant.id, change.email, username=change.username,
                                   display_name=change.display_name or "")
    if change.action is Action.UPDATE:
        return True, 0
    if change.action is Action.ENABLE:
        return await store.directory_enable_user(tenant.id, change.email), 0
    if change.action is Action.DISABLE:
        disabled, ended = await store.directory_disable_user(tenant.id, change.email)
        return disabled, ended
    return False, 0


async def _record(audit: AuditLog | None, store: Store, tenant_id: str, change: Change) -> None:
    """One audit event per change: kind directory_sync, result "created: new in the directory" and so on."""
    event = AuditEvent(at=_now(), kind=AuditKind.DIRECTORY_SYNC, result=f"{change.action.value}: {change.reason}",
                       tenant_id=tenant_id, email=change.email, source=AUDIT_SOURCE)
    if audit is not None:
        await audit.record(event)
    else:
        await store.add_audit_event(event)
