"""The scheduled directory sync inside the running service (``sync_every_minutes``).

Every instance looks every ``tick`` seconds; a tenant's sync runs where the store's lease is taken, and
the lease is granted only when no sync of that tenant started within ``sync_every_minutes``
(:meth:`bridge.state.store.Store.claim_directory_sync`, one statement). So a cluster syncs each tenant
once per period, one instance at a time, and an instance that dies mid-sync frees the tenant when its
lease runs out. A failed sync is logged and tried again the next period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from bridge.appkeys import AUDIT, LOGIN, STORE
from bridge.config import BridgeConfig
from bridge.directory.sync import SyncResult, instance_id, sync_tenant
from bridge.errors import BridgeError
from bridge.state.audit import AuditLog
from bridge.state.store import Store
from bridge.tasks import stop_task

log = logging.getLogger(__name__)

TICK_SECONDS = 30.0


async def run_due_syncs(config: BridgeConfig, store: Store, *, audit: AuditLog | None, owner: str
                        ) -> list[SyncResult]:
    """One look: every tenant with a scheduled sync whose turn it is (here) is synced. Errors are logged."""
    done: list[SyncResult] = []
    for tenant in config.tenants:
        if tenant.directory is None or tenant.directory.sync_every is None:
            continue
        try:
            result = await sync_tenant(tenant, store, audit=audit, owner=owner, every=tenant.directory.sync_every)
        except BridgeError as exc:
            log.error("scheduled directory sync of tenant %s failed: %s", tenant.id, exc.detail or exc)
            continue
        except Exception:
            log.exception("scheduled directory sync of tenant %s failed", tenant.id)
            continue
        if result is not None:
            log.info("scheduled %s", result.summary())
            done.append(result)
    return done


def directory_schedule(tick: float = TICK_SECONDS) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for the app (after the one that opens the store): the background sync task."""

    async def schedule(app: web.Application) -> AsyncIterator[None]:
        owner = instance_id()

        async def loop() -> None:
            while True:
                # The tenants of this moment (they are live data: bridge/login/tenants.py), so a tenant whose
                # directory section changed, or a new one, is followed without a restart.
                await run_due_syncs(app[LOGIN].config, app[STORE], audit=app[AUDIT], owner=owner)
                await asyncio.sleep(tick)

        task = asyncio.create_task(loop(), name="directory-sync")
        try:
            yield
        finally:
            await stop_task(task)

    return schedule
