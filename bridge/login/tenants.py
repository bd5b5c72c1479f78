"""The tenants a running instance serves, as live data shared through the store.

Tenants are records in the store (:mod:`bridge.state.tenants`): each one's document (the YAML of
its file, or the JSON an administrator sent) and a version counter every change bumps.  An instance
holds a snapshot (:attr:`LiveTenants.config`: the configuration with the tenants of that moment),
checks the counter every :data:`POLL_SECONDS` with one primary-key read, and reloads when it moved:
a change from any instance or tool is seen everywhere within a few seconds.  A login keeps the
:class:`~bridge.config.TenantConfig` it started with, so it finishes on the settings it began on.

The tenant files stay one way to declare tenants: :meth:`LiveTenants.apply_files` (at start, on
SIGHUP, ``loginbridge tenants apply``, ``loginbridge config reload``) validates every file first -
all or nothing: a file that fails is refused with file, key and line and nothing is written - then
writes the ones whose text changed since they were last applied.  Which source wins when both
change: the newer change.  An unchanged file is not applied again, so an edit made through the
admin API after the file was applied stays; editing the file later replaces that edit (logged).
Removing a file never deletes a tenant (that is an explicit delete).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bridge.config import BridgeConfig, TenantConfig, load_tenant_text, tenant_files
from bridge.errors import BridgeError, ConfigError, ConfigErrors, RequestError
from bridge.state.store import Store
from bridge.state.tenants import TenantRecord, digest, put_tenant, tenant_records, tenants_version

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
"""How often an instance checks the tenants' version (one primary-key read)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplyReport:
    """What applying the tenant files did."""

    written: tuple[str, ...]  # tenant ids written (new, or their file changed)
    unchanged: tuple[str, ...]
    orphans: tuple[str, ...]  # tenants whose file is gone (kept: deleting is explicit)


@dataclass(frozen=True, slots=True)
class _FileTenant:
    path: Path
    shown: str  # the normalised path, as errors and origins name it
    text: str
    tenant: TenantConfig


def _read_files(tenants_dir: Path, default_ttl: timedelta, require_files: bool) -> list[_FileTenant]:
    """Every tenant file parsed and validated; ConfigErrors (file, key, line) listing every bad one."""
    if not tenants_dir.is_dir():
        raise ConfigError(f"tenants directory {tenants_dir} does not exist")
    found: list[_FileTenant] = []
    errors: list[ConfigError] = []
    ids: dict[str, str] = {}
    domains: dict[str, str] = {}
    for path in tenant_files(tenants_dir):
        shown = os.path.normpath(path)
        try:
            try:
                text = path.read_bytes().decode("utf-8-sig")
            except OSError as exc:
                raise ConfigError(f"cannot read file ({exc.strerror})", file=shown) from exc
            except UnicodeDecodeError as exc:
                raise ConfigError("file is not UTF-8 text", file=shown) from exc
            tenant, _ = load_tenant_text(text, shown=shown, base_dir=path.parent, default_ttl=default_ttl,
                                         require_files=require_files)
        except ConfigError as exc:
            errors.append(exc)  # the next files are still read: one reload reports every bad one
            continue
        if tenant.id in ids:
            errors.append(ConfigError(f"duplicate tenant id: {tenant.id!r} is already used by {ids[tenant.id]}",
                                      file=shown, key="id"))
            continue
        ids[tenant.id] = shown
        clash = [(i, d) for i, d in enumerate(tenant.domains) if d in domains]
        for index, domain in clash:
            errors.append(ConfigError(f"domain {domain} is already claimed by {domains[domain]}", file=shown,
                                      key=f"domains[{index}]"))
        if clash:
            continue
        for domain in tenant.domains:
            domains[domain] = f"tenant {tenant.id} ({shown})"
        found.append(_FileTenant(path=path, shown=shown, text=text, tenant=tenant))
    if errors:
        raise ConfigErrors(errors)
    return found


class LiveTenants:
    """The tenants of this moment; the app refreshes them from the store (see the module docstring)."""

    def __init__(self, base: BridgeConfig) -> None:
        self._base = base
        self._config = base
        self._version: int | None = None
        self._parsed: dict[str, tuple[str, TenantConfig]] = {}  # tenant id -> (document digest, tenant)
        self._lock = asyncio.Lock()

    @property
    def config(self) -> BridgeConfig:
        return self._config

    @property
    def version(self) -> int | None:
        """The store version of the snapshot (None: still the configuration's tenants)."""
        return self._version

    async def apply_files(self, store: Store, tenants_dir: Path | None = None, *,
                          require_files: bool = True) -> ApplyReport:
        """Validate every tenant file, then write those whose text changed into the store."""
        directory = tenants_dir or self._base.tenants_dir
        files = await asyncio.to_thread(_read_files, directory, self._base.session_ttl, require_files)
        _, records = await tenant_records(store.database)
        stored = {r.tenant_id: r for r in records}
        from_files = {f.tenant.id for f in files}
        claimed: dict[str, str] = {}
        for record in records:  # the domains of tenants that no file declares (made through the API)
            if record.tenant_id in from_files:
                continue
            other = await self._parse(record)
            for domain in () if other is None else other.domains:
                claimed[domain] = f"tenant {record.tenant_id} ({record.origin})"
        for file in files:
            for index, domain in enumerate(file.tenant.domains):
                if domain in claimed:
                    raise ConfigError(f"domain {domain} is already claimed by {claimed[domain]}",
                                      file=file.shown, key=f"domains[{index}]")
        written, unchanged = [], []
        for file in files:
            before = stored.get(file.tenant.id)
            if before is not None and before.file_digest == digest(file.text):
                unchanged.append(file.tenant.id)
                continue
            if before is not None and not before.origin.startswith("file:"):
                log.warning("tenant %s: %s changed; it replaces the change made by %s at %s", file.tenant.id,
                            file.shown, before.origin, before.updated_at.isoformat(timespec="seconds"))
            await put_tenant(store.database, tenant_id=file.tenant.id, document=file.text,
                             base_dir=str(file.path.parent), origin=f"file:{file.shown}",
                             from_file=True)
            written.append(file.tenant.id)
        shown = {f.shown for f in files}
        orphans = tuple(sorted(r.tenant_id for r in records if r.origin.startswith("file:")
                               and r.tenant_id not in from_files and r.origin.removeprefix("file:") not in shown))
        for tenant_id in orphans:
            log.warning("tenant %s: its file %s is gone; the tenant stays (delete it explicitly)", tenant_id,
                        stored[tenant_id].origin.removeprefix("file:"))
        if written:
            log.info("tenant files applied: %s written, %s unchanged", ", ".join(written), len(unchanged))
        return ApplyReport(written=tuple(written), unchanged=tuple(unchanged), orphans=orphans)

    async def _parse(self, record: TenantRecord) -> TenantConfig | None:
        """The tenant of a stored document (cached by digest); its previous settings if it no longer parses."""
        cached = self._parsed.get(record.tenant_id)
        if cached is not None and cached[0] == record.digest:
            return cached[1]
        try:
            tenant, _ = await asyncio.to_thread(
                load_tenant_text, record.document, shown=record.origin, base_dir=Path(record.base_dir),
                default_ttl=self._base.session_ttl, require_files=False)
        except ConfigError as exc:
            # Validated when written; a program upgrade may refuse it now: keep what was served.
            log.error("tenant %s in the store is not valid (%s); keeping its previous settings", record.tenant_id,
                      exc)
            return None if cached is None else cached[1]
        self._parsed[record.tenant_id] = (record.digest, tenant)
        return tenant

    async def refresh(self, store: Store, *, force: bool = False) -> bool:
        """Reload the tenants if their version moved; True when the snapshot changed."""
        async with self._lock:
            if not force and self._version is not None and await tenants_version(store.database) == self._version:
                return False
            version, records = await tenant_records(store.database)
            tenants: list[TenantConfig] = []
            for record in records:
                tenant = await self._parse(record)
                if tenant is not None:
                    tenants.append(tenant)
            for gone in set(self._parsed) - {r.tenant_id for r in records}:
                del self._parsed[gone]
            changed = self._version is not None and tuple(tenants) != self._config.tenants
            self._config = dataclasses.replace(self._base, tenants=tuple(tenants))
            first = self._version is None
            self._version = version
        if changed or first:
            log.info("tenants at version %s: %s", version, ", ".join(t.id for t in tenants) or "none")
        return changed

    async def follow(self, store: Store, every: float = POLL_SECONDS) -> None:
        """Refresh forever (a background task); a store outage is logged once and retried."""
        failing = False
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh(store)
            except BridgeError as exc:
                if not failing:
                    log.warning("tenants not refreshed: %s", exc.detail or exc.code)
                failing = True
            else:
                failing = False


async def find_tenant(config: BridgeConfig, store: Store, tenant_id: str) -> TenantConfig:
    """A tenant of the files or one made live in the store (tools run without the running app's snapshot)."""
    try:
        return config.tenant(tenant_id)
    except RequestError:
        tenants = LiveTenants(config)
        await tenants.refresh(store, force=True)
        return tenants.config.tenant(tenant_id)  # RequestError listing the known ids
