"""Versioned schema migrations, applied once each even when several instances start together.

A :class:`Migration` is a version number, a description and its statements; DDL that
differs between the engines is given per engine, either for one statement
(:class:`ByEngine`) or for the whole migration (``sqlite=`` / ``postgres=``)::

    Migration(2, "audit trail", statements=(
        ByEngine(sqlite="CREATE TABLE audit_events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL)",
                 postgres="CREATE TABLE audit_events (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                          " at TEXT COLLATE \"C\" NOT NULL)"),
        "CREATE INDEX audit_by_at ON audit_events(at)",
    ))

:func:`migrate` records what it applied in a ``schema_version`` table (version,
description, applied_at) and applies each pending migration in its own transaction:

- PostgreSQL: the transaction first takes ``pg_advisory_xact_lock(LOCK_KEY)`` and then
  reads the current version again, so of N processes starting at once exactly one applies
  each migration; the others wait for its commit and skip it. The lock goes with the
  transaction (commit, rollback or a lost connection): nothing can leave it held.
- SQLite: ``BEGIN IMMEDIATE`` takes the write lock, with the same re-read. ``PRAGMA
  user_version`` is kept equal to the latest version, and a database that has no
  ``schema_version`` table but a ``user_version`` (made by the store before this module)
  is adopted: migrations up to that version are recorded as applied, not run again.

DDL is transactional on both engines: a migration that fails leaves nothing behind.
A database whose version is newer than the newest migration given is refused (StoreError).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.errors import StoreError
from bridge.state.db._common import Connection, Database, Dialect

log = logging.getLogger(__name__)

SCHEMA_TABLE = "schema_version"
# The advisory lock's key (any bigint: the ASCII of "lbschema"); pass another to migrate() to keep
# two unrelated schemas in one database from waiting on each other.
LOCK_KEY = 0x6C62_7363_6865_6D61
_CREATE_SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class ByEngine:
    """One statement written differently for each engine."""

    sqlite: str
    postgres: str

    def for_dialect(self, dialect: Dialect) -> str:
        return self.sqlite if dialect == "sqlite" else self.postgres


Step = str | ByEngine


def _steps(value: Sequence[Step] | None, what: str) -> tuple[Step, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | ByEngine):
        raise TypeError(f"Migration.{what} is a sequence of statements, not one statement")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Migration:
    """Schema version ``version`` (1, 2, ...): run ``statements`` (or the engine's own list) in order.

    ``sqlite`` / ``postgres``, when given, replace ``statements`` entirely on that engine.
    """

    version: int
    description: str
    statements: Sequence[Step] = field(default=(), kw_only=True)
    sqlite: Sequence[Step] | None = field(default=None, kw_only=True)
    postgres: Sequence[Step] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"a migration version is an integer >= 1, not {self.version!r}")
        object.__setattr__(self, "statements", _steps(self.statements, "statements"))
        object.__setattr__(self, "sqlite", _steps(self.sqlite, "sqlite"))
        object.__setattr__(self, "postgres", _steps(self.postgres, "postgres"))

    def statements_for(self, dialect: Dialect) -> tuple[str, ...]:
        chosen = {"sqlite": self.sqlite, "postgres": self.postgres}[dialect]
        steps = self.statements if chosen is None else chosen
        return tuple(s if isinstance(s, str) else s.for_dialect(dialect) for s in steps)


@dataclass(frozen=True, slots=True)
class MigrationResult:
    previous: int  # the version found
    current: int  # the version now
    applied: tuple[int, ...]  # the versions this call applied (others may have been applied by other processes)


def _ordered(migrations: Sequence[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    versions = [m.version for m in ordered]
    if len(set(versions)) != len(versions):
        raise ValueError(f"migration versions must be unique: {versions}")
    return ordered


async def _lock(tx: Connection, dialect: Dialect, lock_key: int) -> None:
    """Serialise migrating processes (SQLite: BEGIN IMMEDIATE already holds the write lock)."""
    if dialect == "postgres":
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (lock_key,))


async def _version_in(tx: Connection) -> int:
    return int(await tx.fetchval("SELECT coalesce(max(version), 0) FROM schema_version") or 0)


async def _table_exists(db: Database) -> bool:
    if db.dialect == "sqlite":
        found = await db.fetchval("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (SCHEMA_TABLE,))
    else:
        found = await db.fetchval("SELECT to_regclass(?) IS NOT NULL", (SCHEMA_TABLE,))
    return bool(found)


async def current_version(db: Database) -> int:
    """The schema version of ``db``: the newest migration applied (0 for a new database).

    A SQLite database the store made before ``schema_version`` existed reports its ``user_version``.
    """
    if await _table_exists(db):
        version = int(await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_version") or 0)
        if version:
            return version
    if db.dialect == "sqlite":
        return int(await db.fetchval("PRAGMA user_version") or 0)
    return 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


async def _adopt_user_version(tx: Connection, ordered: list[Migration], latest: int) -> int:
    """SQLite only: record the migrations a pre-``schema_version`` database already has (its user_version)."""
    legacy = int(await tx.fetchval("PRAGMA user_version") or 0)
    if legacy == 0:
        return 0
    if legacy > latest:
        raise StoreError(f"database schema {legacy} is newer than this program ({latest})")
    for migration in ordered:
        if migration.version <= legacy:
            await tx.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                             (migration.version, f"{migration.description} (adopted from user_version {legacy})",
                              _now()))
    log.info("database schema %s adopted from PRAGMA user_version", legacy)
    return legacy


async def _applied_in(tx: Connection) -> set[int]:
    return {int(r[0]) for r in await tx.fetchall("SELECT version FROM schema_version")}


async def migrate(db: Database, migrations: Sequence[Migration], *, lock_key: int = LOCK_KEY) -> MigrationResult:
    """Bring ``db`` to the newest of ``migrations``; safe to run from many processes at once.

    Every migration not yet recorded is applied, in version order, even one numbered below the
    newest applied (two branches of work that each added one land in either order).
    """
    ordered = _ordered(migrations)
    latest = ordered[-1].version if ordered else 0
    async with db.transaction() as tx:
        await _lock(tx, db.dialect, lock_key)
        await tx.execute(_CREATE_SCHEMA_TABLE)
        previous = await _version_in(tx)
        if previous == 0 and db.dialect == "sqlite":
            previous = await _adopt_user_version(tx, ordered, latest)
        done = await _applied_in(tx)
    if previous > latest:
        raise StoreError(f"database schema {previous} is newer than this program ({latest})")
    applied: list[int] = []
    for migration in ordered:
        if migration.version in done:
            continue
        async with db.transaction() as tx:
            await _lock(tx, db.dialect, lock_key)
            if migration.version in await _applied_in(tx):
                continue  # another process applied it while we waited for the lock
            for statement in migration.statements_for(db.dialect):
                await tx.execute(statement)
            await tx.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                             (migration.version, migration.description, _now()))
            if db.dialect == "sqlite":
                current = max(await _version_in(tx), migration.version)
                await tx.execute(f"PRAGMA user_version = {current:d}")
        applied.append(migration.version)
        log.info("database %s: applied migration %s (%s)", db.url, migration.version, migration.description)
    current = int(await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_version") or 0)
    return MigrationResult(previous=previous, current=max(current, previous), applied=tuple(applied))
