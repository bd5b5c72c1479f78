"""Tenants as live data: their documents in the store (table ``tenants``, migration 9), one version for all.

A tenant is stored as the document that declares it (the YAML of a tenant file, or the JSON an
administrator sent), with the directory its relative paths are read from, where it came from
(``file:PATH`` or ``api:TOKEN-NAME``) and a digest of the text.  Parsing and validating the document
is :func:`bridge.config.load_tenant_text`'s job; this module only keeps the texts.

Every write bumps one counter (``settings_version``, row ``tenants``) in the same transaction, so an
instance learns that something changed with one primary-key read (``tenants_version``) and reloads
the documents only then.  ``file_digest`` is the digest of the file text last applied from a file:
applying an unchanged file again changes nothing (so an administrator's later API edit stays),
applying a changed file replaces the row (the newer change wins).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.state.db import Database, Row, decode_time

VERSION_ROW = "tenants"
_COLUMNS = "tenant_id, document, base_dir, origin, digest, file_digest, updated_at"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantRecord:
    tenant_id: str
    document: str
    """The tenant's YAML or JSON text, as given."""
    base_dir: str
    """Where relative paths in the document are read from (the tenant file's directory)."""
    origin: str
    """``file:PATH`` or ``api:NAME`` (the admin token's name)."""
    digest: str
    file_digest: str | None
    updated_at: datetime


def _record(row: Row) -> TenantRecord:
    return TenantRecord(tenant_id=str(row[0]), document=str(row[1]), base_dir=str(row[2]), origin=str(row[3]),
                        digest=str(row[4]), file_digest=None if row[5] is None else str(row[5]),
                        updated_at=decode_time(str(row[6])))


async def tenants_version(db: Database) -> int:
    """The counter every tenant change bumps (0: never changed)."""
    value = await db.fetchval("SELECT version FROM settings_version WHERE name = ?", (VERSION_ROW,))
    return 0 if value is None else int(value)


async def tenant_records(db: Database) -> tuple[int, list[TenantRecord]]:
    """(version, every tenant's record), read in one transaction so the two agree."""
    async with db.transaction() as tx:
        value = await tx.fetchval("SELECT version FROM settings_version WHERE name = ?", (VERSION_ROW,))
        rows = await tx.fetchall(f"SELECT {_COLUMNS} FROM tenants ORDER BY tenant_id")  # noqa: S608 (fixed text)
    return (0 if value is None else int(value)), [_record(r) for r in rows]


async def get_tenant_record(db: Database, tenant_id: str) -> TenantRecord | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM tenants WHERE tenant_id = ?", (tenant_id,))  # noqa: S608
    return None if row is None else _record(row)


_BUMP = (
    "INSERT INTO settings_version (name, version) VALUES (?, 1)"
    " ON CONFLICT (name) DO UPDATE SET version = settings_version.version + 1"
)
_PUT = (
    f"INSERT INTO tenants ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 (fixed text)
    " ON CONFLICT (tenant_id) DO UPDATE SET document = excluded.document, base_dir = excluded.base_dir,"
    " origin = excluded.origin, digest = excluded.digest, file_digest = excluded.file_digest,"
    " updated_at = excluded.updated_at"
)


async def put_tenant(db: Database, *, tenant_id: str, document: str, base_dir: str, origin: str,
                     from_file: bool, now: datetime | None = None) -> TenantRecord:
    """Create or replace a tenant's document and bump the version, in one transaction.

    A file keeps its digest as ``file_digest``; an API write keeps the previous ``file_digest`` (so
    re-applying the unchanged file later does not undo the API's change).
    """
    when = now or datetime.now(UTC)
    text_digest = digest(document)
    async with db.transaction() as tx:
        if from_file:
            file_digest: str | None = text_digest
        else:
            file_digest = await tx.fetchval("SELECT file_digest FROM tenants WHERE tenant_id = ?", (tenant_id,))
        await tx.execute(_PUT, (tenant_id, document, base_dir, origin, text_digest, file_digest, when))
        await tx.execute(_BUMP, (VERSION_ROW,))
    return TenantRecord(tenant_id=tenant_id, document=document, base_dir=base_dir, origin=origin,
                        digest=text_digest, file_digest=None if file_digest is None else str(file_digest),
                        updated_at=when)


async def delete_tenant(db: Database, tenant_id: str) -> bool:
    """Remove a tenant's document (its users, devices and sessions stay until deleted: never silently)."""
    async with db.transaction() as tx:
        removed = await tx.execute("DELETE FROM tenants WHERE tenant_id = ?", (tenant_id,))
        if removed:
            await tx.execute(_BUMP, (VERSION_ROW,))
    return bool(removed)
