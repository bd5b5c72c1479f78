"""The store on SQLite or PostgreSQL: :class:`bridge.state.store.Store`'s API, async, on :mod:`bridge.state.db`.

``store = await Store.open("sqlite:///var/lib/loginbridge/loginbridge.db")`` or
``await Store.open("postgresql://lb@db.example/lb?sslmode=require")``: the same methods,
parameters, return types and errors as the SQLite ``Store`` (its dataclasses and helpers are
imported from :mod:`bridge.state.store`, not copied), one SQL text for both engines.

The schema is :data:`MIGRATIONS` 1..13: 1..3 the ``SCHEMA_VERSION`` steps of the sync store statement
for statement (on SQLite the very same DDL text, so a file the sync store made at ``PRAGMA
user_version`` 3 is adopted by :func:`bridge.state.db.migrate` and nothing is run again), 4 the
lockout protection's tables (``UNLOGGED`` on PostgreSQL: a crash forgets them, at most a few IdP
calls more; the IdP's own lockout stays the backstop), 5 the Print-to-Web printer's jobs, verified
credentials and identity (their SQL is the printer's own: ``printers/jobstore.py``), 6 the console's
sign-outs (``bridge/console/shared.py``), 7 spray reservations on the in-flight tickets, 8 the API
tokens and SCIM ids (``bridge/state/tokens.py``, ``bridge/state/scim.py``) and the audit's actor, 9
the tenants as live data (``bridge/state/tenants.py``), 10 the directory sync's state, 11 the audit's
reasons, 12 the personal printer links, 13 phone pairing (pairings, browser sign-ins, badge bindings) and the
devices' location. On
PostgreSQL: ``BYTEA`` for the hashes, an identity column for audit ids, and ``TEXT COLLATE "C"``
for the timestamps (compared as text) and for the keys the store sorts on (tenant, email, device
id), so ``ORDER BY`` gives SQLite's byte order whatever the database's collation.

Round trips: every call on the login path is one statement (``authenticate_device``,
``get_user``, ``create_session`` [its user check is inside the INSERT], ``add_audit_event``
[``RETURNING id``], ``check_and_remember`` [plus a bounded prune every
``REPLAY_PRUNE_EVERY`` calls], ``touch_device`` [at most once a minute per device]). On
PostgreSQL a checkout costs no round trip (see :mod:`bridge.state.db._postgres`). Writes that
must go together (disabling a user or a device and ending its sessions, a CSV import) are one
transaction; ``add_user`` and ``add_device`` are one ``INSERT ... RETURNING`` each.

Lockout protection (``throttle_*``, used by :mod:`bridge.login.throttle` with keyed HMACs for keys):
every row carries its expiry (a sliding window counts ``at > now - window``), and every
``THROTTLE_PRUNE_EVERY`` writes a bounded prune goes through the expiry indexes. Per login:
the actor check is one statement; the admission (failures + live in-flight tickets below the
limit, pair not stale, and - migration 7 - the actor neither spray-blocked nor at its count of
distinct users failed or holding a live ticket; then a ticket, which carries the actor and
spray-user keys: the reservation) is one transaction, serialised per user key and then per actor
(PostgreSQL: the two advisory transaction locks in one statement, then one ``INSERT ... SELECT ...
WHERE ... RETURNING``, sent together as one :meth:`~bridge.state.db.Database.batch`: one round
trip; SQLite: BEGIN IMMEDIATE); a success gives its ticket (and so its spray reservation) back
with the reset, one statement (``throttle_clear(key, ticket)``: a DELETE in a WITH on PostgreSQL,
one transaction of two on SQLite); a ticket given back otherwise is one statement; an IdP refusal
is one transaction (failures, stale pair, ticket, the actor's spray failure and trip, serialised
per actor: one batch on PostgreSQL, one round trip), so a reservation becomes a counted failure
atomically; a spray failure before the IdP one transaction, serialised per actor (one batch on
PostgreSQL). A successful login's throttle calls (actor check, admission, ticket back with the
reset) are 3 round trips on PostgreSQL (4 statements), where they were 9 with the checked
checkouts and the admission's BEGIN/COMMIT; the spray reservation added none.

Errors: what the sync store refused with :class:`~bridge.errors.RequestError` it still does,
with the same texts; a unique key already taken (:class:`~bridge.errors.StoreConflict`) becomes
the sync store's text for it ("a user with email ... already exists ..."); every other database
error stays a :class:`~bridge.errors.StoreError` (the sync store turned *any* SQLite integrity
error into a RequestError, e.g. a session naming an unknown device: here that is a StoreError).

scrypt (a platform password, ~50 ms) never runs on the event loop, nor inside a transaction:
passwords are hashed in a worker thread before the statement or transaction that stores them.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hmac
import io
import ipaddress
import json
import logging
import math
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from bridge.config import IPNetwork, TenantConfig
from bridge.errors import RequestError, StoreConflict, StoreError
from bridge.passwords import hash_password, verify_password
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.db import (
    ByEngine,
    Connection,
    Database,
    Dialect,
    Migration,
    Params,
    Row,
    current_version,
    migrate,
    open_database,
)
from bridge.state.pairings import PairingStatus
from bridge.state.records import (
    _DEVICE_ID,
    _DUMMY_SECRET_HASH,
    _EXTRA,
    CSV_OPTIONAL,
    CSV_REQUIRED,
    DB_FILENAME,
    MAX_CSV_BYTES,
    REPLAY_PRUNE_BATCH,
    REPLAY_PRUNE_EVERY,
    SSO_TWOFA_REFUSED,
    TOUCH_INTERVAL,
    Device,
    DeviceMode,
    ImportReport,
    ImportRowError,
    Session,
    User,
    _dt,
    _now,
    _parse_networks,
    _tenant_args,
    _ts,
    check_location,
    hash_device_secret,
    normalize_email,
)

__all__ = [
    "DB_FILENAME",
    "MIGRATIONS",
    "REPLAY_PRUNE_BATCH",
    "REPLAY_PRUNE_EVERY",
    "SCHEMA_VERSION",
    "THROTTLE_PRUNE_BATCH",
    "THROTTLE_PRUNE_EVERY",
    "TOUCH_INTERVAL",
    "Device",
    "DeviceMode",
    "ImportReport",
    "ImportRowError",
    "Session",
    "Spray",
    "Store",
    "ThrottleAdmission",
    "User",
    "hash_device_secret",
    "normalize_email",
    "store_url",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# -- the schema ------------------------------------------------------------------------------------

_SQLITE_TYPES = {"blob": "BLOB", "time": "TEXT", "key": "TEXT",
                 "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}
_POSTGRES_TYPES = {"blob": "BYTEA", "time": 'TEXT COLLATE "C"', "key": 'TEXT COLLATE "C"',
                   "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"}


PRINT_JOB_COLUMNS_DDL = """
        uuid {key} NOT NULL UNIQUE,
        tenant_id {key} NOT NULL,
        user_email TEXT NOT NULL,
        user_email_lc {key} NOT NULL,
        name TEXT NOT NULL,
        state INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        document_format TEXT,
        document_format_detected TEXT,
        document_name TEXT,
        document_file TEXT,
        document_bytes BIGINT NOT NULL DEFAULT 0,
        incoming INTEGER NOT NULL,
        template {blob} NOT NULL,
        created_at {time} NOT NULL,
        processing_at {time},
        completed_at {time},
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at {time} NOT NULL,
        idempotency_key TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        claims INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until {time}
    )"""


def _ddl(template: str) -> ByEngine:
    """One CREATE TABLE, with ``{blob}``, ``{time}``, ``{key}`` (sorted or joined on), ``{serial}`` per engine."""
    return ByEngine(sqlite=template.format(**_SQLITE_TYPES), postgres=template.format(**_POSTGRES_TYPES))


def _throttle_ddl(template: str) -> ByEngine:
    """A throttle table: ``{unlogged}`` on PostgreSQL, ``{rowid}`` an integer key (SQLite's rowid, may be reused)."""
    return ByEngine(
        sqlite=template.format(**_SQLITE_TYPES, unlogged="", rowid="INTEGER PRIMARY KEY"),
        postgres=template.format(**_POSTGRES_TYPES, unlogged="UNLOGGED ",
                                 rowid="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "users, devices, sessions", statements=(
        _ddl("""CREATE TABLE users (
        tenant_id {key} NOT NULL,
        email TEXT NOT NULL,
        email_lc {key} NOT NULL,
        username TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '',
        group_name TEXT NOT NULL DEFAULT '',
        enabled INTEGER NOT NULL DEFAULT 1,
        password_hash TEXT,
        twofa_enabled INTEGER NOT NULL DEFAULT 0,
        language TEXT,
        fax_number TEXT,
        created_at {time} NOT NULL,
        PRIMARY KEY (tenant_id, email_lc)
    )"""),
        _ddl("""CREATE TABLE devices (
        device_id {key} PRIMARY KEY,
        tenant_id {key} NOT NULL,
        name TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('shared-account', 'device-login', 'user-prompt')),
        secret_hash {blob} NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        shared_user_email TEXT,
        allowed_networks TEXT NOT NULL DEFAULT '[]',
        created_at {time} NOT NULL,
        last_seen_at {time},
        last_seen_addr TEXT
    )"""),
        _ddl("""CREATE TABLE sessions (
        token_hash {blob} PRIMARY KEY,
        tenant_id {key} NOT NULL,
        user_email TEXT NOT NULL,
        user_email_lc {key} NOT NULL,
        device_id {key} REFERENCES devices(device_id),
        created_at {time} NOT NULL,
        expires_at {time} NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        FOREIGN KEY (tenant_id, user_email_lc) REFERENCES users(tenant_id, email_lc)
    )"""),
        "CREATE INDEX sessions_by_user ON sessions(tenant_id, user_email_lc)",
        "CREATE INDEX sessions_by_device ON sessions(device_id)",
        "CREATE INDEX devices_by_tenant ON devices(tenant_id)",
    )),
    # The audit trail (bridge/state/audit.py); never a password or token.
    Migration(2, "audit trail", statements=(
        _ddl("""CREATE TABLE audit_events (
        id {serial},
        at {time} NOT NULL,
        kind TEXT NOT NULL,
        result TEXT NOT NULL,
        tenant_id TEXT,
        device_id TEXT,
        mode TEXT,
        email TEXT,
        source TEXT,
        idp_latency_ms INTEGER,
        request_id TEXT,
        distinct_users INTEGER
    )"""),
        "CREATE INDEX audit_by_tenant ON audit_events(tenant_id, id)",
    )),
    # The assertion replay cache (check_and_remember), pruned through the expiry index.
    Migration(3, "assertion replay cache", statements=(
        _ddl("""CREATE TABLE seen_assertions (
        issuer TEXT NOT NULL,
        assertion_id TEXT NOT NULL,
        expires_at {time} NOT NULL,
        PRIMARY KEY (issuer, assertion_id)
    )"""),
        "CREATE INDEX seen_assertions_by_expiry ON seen_assertions(expires_at)",
    )),
    # Lockout protection (bridge/login/throttle.py), shared by every instance.  Keys and digests are keyed
    # HMACs made by the throttle, never an email or password.  Every row carries its expiry, and the expiry
    # indexes let a bounded prune remove dead rows without a scan; on PostgreSQL the tables are UNLOGGED
    # (a crash empties them: at most a few more IdP calls, the IdP's own lockout stays the backstop).
    Migration(4, "lockout protection", statements=(
        _throttle_ddl("""CREATE {unlogged}TABLE throttle_failures (
        id {rowid},
        key {blob} NOT NULL,
        at {time} NOT NULL,
        expires_at {time} NOT NULL
    )"""),
        "CREATE INDEX throttle_failures_by_key ON throttle_failures(key, at)",
        "CREATE INDEX throttle_failures_by_expiry ON throttle_failures(expires_at)",
        _throttle_ddl("""CREATE {unlogged}TABLE throttle_in_flight (
        id {serial},
        key {blob} NOT NULL,
        expires_at {time} NOT NULL
    )"""),
        "CREATE INDEX throttle_in_flight_by_key ON throttle_in_flight(key, expires_at)",
        "CREATE INDEX throttle_in_flight_by_expiry ON throttle_in_flight(expires_at)",
        _throttle_ddl("""CREATE {unlogged}TABLE throttle_stale (
        digest {blob} PRIMARY KEY,
        answer TEXT NOT NULL,
        expires_at {time} NOT NULL
    )"""),
        "CREATE INDEX throttle_stale_by_expiry ON throttle_stale(expires_at)",
        _throttle_ddl("""CREATE {unlogged}TABLE throttle_spray (
        actor {blob} NOT NULL,
        user_digest {blob} NOT NULL,
        at {time} NOT NULL,
        expires_at {time} NOT NULL,
        PRIMARY KEY (actor, user_digest)
    )"""),
        "CREATE INDEX throttle_spray_by_expiry ON throttle_spray(expires_at)",
        _throttle_ddl("""CREATE {unlogged}TABLE throttle_blocks (
        actor {blob} PRIMARY KEY,
        expires_at {time} NOT NULL
    )"""),
        "CREATE INDEX throttle_blocks_by_expiry ON throttle_blocks(expires_at)",
    )),
    # The Print-to-Web printer (printers/jobstore.py, printers/auth.py, printers/identity.py), shared by every
    # instance: jobs with their delivery lease (lease_owner/lease_until: which instance delivers it, until when),
    # the verified-credentials cache (keyed HMACs of email+password, never the password) and the printer's
    # identity (printer-uuid: one printer whichever instance answers).
    Migration(5, "print jobs, print verifications, printer identity", statements=(
        ByEngine(sqlite="CREATE TABLE print_jobs (job_id INTEGER PRIMARY KEY AUTOINCREMENT,"
                        + PRINT_JOB_COLUMNS_DDL.format(**_SQLITE_TYPES),
                 postgres="CREATE TABLE print_jobs (job_id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                          + PRINT_JOB_COLUMNS_DDL.format(**_POSTGRES_TYPES)),
        "CREATE INDEX print_jobs_by_owner ON print_jobs(tenant_id, user_email_lc, job_id)",
        "CREATE INDEX print_jobs_due ON print_jobs(state, incoming, next_attempt_at)",
        "CREATE INDEX print_jobs_by_lease ON print_jobs(lease_until)",
        _ddl("""CREATE TABLE print_verified (
        key {blob} PRIMARY KEY,
        tenant_id {key} NOT NULL,
        email TEXT NOT NULL,
        email_lc {key} NOT NULL,
        expires_at {time} NOT NULL
    )"""),
        "CREATE INDEX print_verified_by_email ON print_verified(email_lc)",
        "CREATE INDEX print_verified_by_expiry ON print_verified(expires_at)",
        _ddl("""CREATE TABLE printer_identity (
        name {key} PRIMARY KEY,
        value TEXT NOT NULL
    )"""),
    )),
    # Console sessions signed out (bridge/console/shared.py): a keyed hash of the session nonce until the
    # cookie would have expired, so signing out ends the session on every instance.
    Migration(6, "console sign-outs", statements=(
        _ddl("""CREATE TABLE console_revocations (
        nonce_hash {blob} PRIMARY KEY,
        expires_at {time} NOT NULL
    )"""),
        "CREATE INDEX console_revocations_by_expiry ON console_revocations(expires_at)",
    )),
    # Spray detection counts attempts still at the IdP (bridge/login/throttle.py): an in-flight ticket may carry
    # the actor (device or source) and the spray-user digest it reserves, so the admission itself checks the
    # actor's distinct users failed-or-in-flight; the reservation ends with the ticket (success, no verdict,
    # expiry), or becomes a counted spray failure in the IdP refusal's transaction.
    Migration(7, "spray reservations on in-flight tickets", statements=(
        _ddl("ALTER TABLE throttle_in_flight ADD COLUMN actor {blob}"),
        _ddl("ALTER TABLE throttle_in_flight ADD COLUMN spray_user {blob}"),
        "CREATE INDEX throttle_in_flight_by_actor ON throttle_in_flight(actor, expires_at)",
    )),
    # Bearer tokens of the APIs (bridge/state/tokens.py): SCIM provisioning (one tenant each) and the admin API
    # (global or one tenant), stored as SHA-256 of a 256-bit random token, never the token; SCIM's view of the
    # users (bridge/state/scim.py: a stable opaque id, the externalId, the attributes as last written, and the
    # deprovisioning mark) and SCIM groups; the audit trail names who made a change (``actor``: a token's name).
    Migration(8, "api tokens, SCIM ids", statements=(
        _ddl("""CREATE TABLE api_tokens (
        id {serial},
        kind TEXT NOT NULL CHECK (kind IN ('scim', 'admin')),
        name TEXT NOT NULL,
        tenant_id {key},
        token_hash {blob} NOT NULL UNIQUE,
        created_at {time} NOT NULL,
        last_used_at {time},
        revoked_at {time}
    )"""),
        "CREATE INDEX api_tokens_by_tenant ON api_tokens(kind, tenant_id)",
        _ddl("""CREATE TABLE scim_users (
        tenant_id {key} NOT NULL,
        email_lc {key} NOT NULL,
        scim_id {key} NOT NULL UNIQUE,
        external_id TEXT,
        resource TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        created_at {time} NOT NULL,
        updated_at {time} NOT NULL,
        deleted_at {time},
        PRIMARY KEY (tenant_id, email_lc)
    )"""),
        "CREATE INDEX scim_users_by_external_id ON scim_users(tenant_id, external_id)",
        _ddl("""CREATE TABLE scim_groups (
        scim_id {key} PRIMARY KEY,
        tenant_id {key} NOT NULL,
        display_name TEXT NOT NULL,
        external_id TEXT,
        resource TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        created_at {time} NOT NULL,
        updated_at {time} NOT NULL
    )"""),
        "CREATE INDEX scim_groups_by_tenant ON scim_groups(tenant_id, display_name)",
        "ALTER TABLE audit_events ADD COLUMN actor TEXT",
    )),
    # Tenants as live data (bridge/state/tenants.py): each tenant's document and where it came from, and
    # one counter every change bumps, so every instance sees a change with one primary-key read.
    Migration(9, "tenants as live data", statements=(
        _ddl("""CREATE TABLE tenants (
        tenant_id {key} PRIMARY KEY,
        document TEXT NOT NULL,
        base_dir TEXT NOT NULL,
        origin TEXT NOT NULL,
        digest TEXT NOT NULL,
        file_digest TEXT,
        updated_at {time} NOT NULL
    )"""),
        _ddl("""CREATE TABLE settings_version (
        name {key} PRIMARY KEY,
        version BIGINT NOT NULL
    )"""),
    )),
    # The directory sync (bridge/directory): the accounts it disabled itself (the only ones it enables again),
    # and per tenant which instance runs the sync (a lease) and when one last started.
    Migration(10, "directory sync", statements=(
        _ddl("""CREATE TABLE directory_disabled (
        tenant_id {key} NOT NULL,
        email_lc {key} NOT NULL,
        disabled_at {time} NOT NULL,
        PRIMARY KEY (tenant_id, email_lc)
    )"""),
        _ddl("""CREATE TABLE directory_sync_runs (
        tenant_id {key} PRIMARY KEY,
        owner TEXT NOT NULL,
        lease_until {time} NOT NULL,
        started_at {time} NOT NULL
    )"""),
    )),
    # The specific check that refused an attempt (bridge/login/guard.py: an assertion's failed check), shown
    # by the console's attempts page before the catalogue's generic advice.
    Migration(11, "audit reasons", statements=("ALTER TABLE audit_events ADD COLUMN reason TEXT",)),
    # Personal printer URLs (bridge/state/printlinks.py): a queue URL whose secret part names the user, so
    # print clients that never prompt (Windows' IPP class driver, phones) print without a password. Only
    # the token's SHA-256 is kept; disabling or deleting the user deletes the links in the same transaction.
    Migration(12, "personal printer links", statements=(
        _ddl("""CREATE TABLE printer_links (
        id {serial},
        tenant_id {key} NOT NULL,
        email TEXT NOT NULL,
        email_lc {key} NOT NULL,
        token_hash {blob} NOT NULL UNIQUE,
        label TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at {time} NOT NULL,
        expires_at {time} NOT NULL,
        last_used_at {time}
    )"""),
        "CREATE INDEX printer_links_by_user ON printer_links(tenant_id, email_lc)",
        "CREATE INDEX printer_links_by_expiry ON printer_links(expires_at)",
    )),
    # Phone pairing (bridge/state/pairings.py, issue 14): a device's RFC 8628-style pairing (its codes only as
    # hashes), the browser sign-ins at the IdP it starts (and /v1/web/login's), and the badges a completed pairing
    # binds to a user (a keyed hash of the badge). A device's location, shown on the phone before the user approves.
    Migration(13, "phone pairing", statements=(
        _ddl("""CREATE TABLE pairings (
        id {serial},
        device_code_hash {blob} NOT NULL UNIQUE,
        user_code_hash {blob} NOT NULL UNIQUE,
        tenant_id {key} NOT NULL,
        device_id {key} NOT NULL,
        badge_hash {blob},
        status TEXT NOT NULL,
        email TEXT,
        created_at {time} NOT NULL,
        expires_at {time} NOT NULL,
        interval_seconds INTEGER NOT NULL,
        last_poll_at {time}
    )"""),
        "CREATE INDEX pairings_by_device ON pairings(device_id)",
        "CREATE INDEX pairings_by_expiry ON pairings(expires_at)",
        _ddl("""CREATE TABLE browser_signins (
        id {serial},
        state_hash {blob} NOT NULL UNIQUE,
        browser_hash {blob} NOT NULL,
        tenant_id {key} NOT NULL,
        purpose TEXT NOT NULL,
        pairing_id INTEGER,
        request_id TEXT,
        email TEXT,
        return_to TEXT,
        created_at {time} NOT NULL,
        expires_at {time} NOT NULL,
        subject TEXT,
        code_hash {blob} UNIQUE,
        finished INTEGER NOT NULL DEFAULT 0
    )"""),
        "CREATE INDEX browser_signins_by_expiry ON browser_signins(expires_at)",
        _ddl("""CREATE TABLE badge_bindings (
        id {serial},
        tenant_id {key} NOT NULL,
        badge_hash {blob} NOT NULL,
        email TEXT NOT NULL,
        email_lc {key} NOT NULL,
        device_id {key},
        created_at {time} NOT NULL,
        expires_at {time} NOT NULL,
        last_used_at {time},
        UNIQUE (tenant_id, badge_hash)
    )"""),
        "CREATE INDEX badge_bindings_by_user ON badge_bindings(tenant_id, email_lc)",
        "CREATE INDEX badge_bindings_by_expiry ON badge_bindings(expires_at)",
        "ALTER TABLE devices ADD COLUMN location TEXT NOT NULL DEFAULT ''",
    )),
)

SCHEMA_VERSION = max(m.version for m in MIGRATIONS)
"""The schema this program writes: its newest migration."""

# -- statements ------------------------------------------------------------------------------------

_USER_COLUMNS = ("tenant_id, email, username, display_name, group_name, enabled, password_hash, twofa_enabled,"
                 " language, fax_number, created_at")
_DEVICE_COLUMNS = ("device_id, tenant_id, name, mode, enabled, shared_user_email, allowed_networks, created_at,"
                   " last_seen_at, last_seen_addr, location")
_AUDIT_COLUMNS = ("id, at, kind, result, tenant_id, device_id, mode, email, source, idp_latency_ms, request_id,"
                  " distinct_users, actor, reason")
_SELECT_USERS = f"SELECT {_USER_COLUMNS} FROM users"  # noqa: S608 (fixed text)
_SELECT_DEVICES = f"SELECT {_DEVICE_COLUMNS} FROM devices"  # noqa: S608
_INSERT_USER_INTO = (
    "INSERT INTO users (tenant_id, email, email_lc, username, display_name, group_name, enabled, password_hash,"
    " twofa_enabled, language, fax_number, created_at)"
)
_USER_VALUES = "(?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
_INSERT_USER = f"{_INSERT_USER_INTO} VALUES {_USER_VALUES} RETURNING {_USER_COLUMNS}"
# SQLite's lower() folds ASCII only; PostgreSQL's folds by the collation, so "C" (ASCII only) for the same answer.
_BY_USERNAME: dict[Dialect, str] = {
    "sqlite": _SELECT_USERS + " WHERE tenant_id = ? AND lower(username) = lower(?) LIMIT 2",
    "postgres": _SELECT_USERS + ' WHERE tenant_id = ? AND lower(username COLLATE "C")'
                                ' = lower(CAST(? AS TEXT) COLLATE "C") LIMIT 2',
}
_USER_UPDATES = {
    "disable": "UPDATE users SET enabled = 0 WHERE tenant_id = ? AND email_lc = ?",
    "enable": "UPDATE users SET enabled = 1 WHERE tenant_id = ? AND email_lc = ?",
    "twofa": "UPDATE users SET twofa_enabled = ? WHERE tenant_id = ? AND email_lc = ?",
}
_DEVICE_VALUES = ("device_id, tenant_id, name, mode, secret_hash, enabled, shared_user_email, allowed_networks,"
                  " created_at, location")
_INSERT_DEVICE = (f"INSERT INTO devices ({_DEVICE_VALUES}) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)"  # noqa: S608
                  f" RETURNING {_DEVICE_COLUMNS}")
_AUTH_DEVICE = f"SELECT secret_hash, {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?"  # noqa: S608 (fixed text)
# A shared-account device: its user must exist, checked in the same statement.
_INSERT_SHARED_DEVICE = (
    f"INSERT INTO devices ({_DEVICE_VALUES}) SELECT ?, ?, ?, ?, ?, 1, ?, ?, ?, ?"  # noqa: S608 (fixed text)
    f" WHERE EXISTS (SELECT 1 FROM users WHERE tenant_id = ? AND email_lc = ?) RETURNING {_DEVICE_COLUMNS}"
)
# A disabled device's pairings that have not given a session yet (bridge/state/pairings.py's statuses).
_UNFINISHED_PAIRING = (PairingStatus.PENDING, PairingStatus.CONFIRMED, PairingStatus.APPROVED)
_DENY_PAIRINGS = "UPDATE pairings SET status = ? WHERE device_id = ? AND status IN (?, ?, ?)"  # a ? per status
_CREATE_SESSION = (
    "INSERT INTO sessions (token_hash, tenant_id, user_email, user_email_lc, device_id, created_at, expires_at,"
    " revoked) SELECT ?, ?, ?, ?, ?, ?, ?, 0 WHERE EXISTS (SELECT 1 FROM users WHERE tenant_id = ? AND email_lc = ?)"
)
_REMEMBER = (
    "INSERT INTO seen_assertions (issuer, assertion_id, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (issuer, assertion_id) DO UPDATE SET expires_at = excluded.expires_at"
    " WHERE seen_assertions.expires_at <= ?"
)
# The victims chosen through the expiry index, deleted by primary key (no rowid; no LIMIT -1: PRUNE_SEEN_ALL).
# The outer "expires_at <= ?" changes nothing in what goes, but keeps PostgreSQL's planner on the expiry
# index for the outer side too: without it, a table of some 20,000 rows was read whole (hash semi join).
PRUNE_SEEN = (
    "DELETE FROM seen_assertions WHERE expires_at <= ? AND (issuer, assertion_id) IN"
    " (SELECT issuer, assertion_id FROM seen_assertions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
)
PRUNE_SEEN_ALL = "DELETE FROM seen_assertions WHERE expires_at <= ?"
_ADD_AUDIT = (
    "INSERT INTO audit_events (at, kind, result, tenant_id, device_id, mode, email, source, idp_latency_ms,"
    " request_id, distinct_users, actor, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
# -- lockout protection (migration 4) ----------------------------------------------------------------
# Per-key serialisation of the admission and spray transactions on PostgreSQL (SQLite's BEGIN IMMEDIATE
# already serialises writers): a transaction-scoped advisory lock in the two-int key space (which never
# meets the migrations' one-bigint LOCK_KEY), class 1 for users, 2 for spray actors.
_THROTTLE_LOCK = "SELECT pg_advisory_xact_lock(CAST(? AS INTEGER), CAST(? AS INTEGER))"
# A user's lock, then its actor's (an admission with a spray reservation): always in this order, the only one in
# which two throttle locks are ever held (a spray transaction takes the actor's alone), so no deadlock.
_THROTTLE_LOCKS = f"{_THROTTLE_LOCK}, pg_advisory_xact_lock(CAST(? AS INTEGER), CAST(? AS INTEGER))"
_LOCK_USER, _LOCK_SPRAY = 0x6C62_0001, 0x6C62_0002
_FAILURES_IN_WINDOW = "SELECT count(*) FROM throttle_failures WHERE key = ? AND at > ?"
_NEWEST_FAILURES = "SELECT at FROM throttle_failures WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?"
_PIVOT = "SELECT at FROM throttle_failures WHERE key = ? AND at > ? ORDER BY at DESC LIMIT 1 OFFSET ?"
_LIVE_IN_FLIGHT = "SELECT count(*) FROM throttle_in_flight WHERE key = ? AND expires_at > ?"
_STALE_ANSWER = "SELECT answer FROM throttle_stale WHERE digest = ? AND expires_at > ?"
_BLOCKED_UNTIL = "SELECT expires_at FROM throttle_blocks WHERE actor = ? AND expires_at > ?"
# A spray block and the actor's pivot failure in one round trip.
_ACTOR_STATE = f"SELECT ({_BLOCKED_UNTIL}), ({_PIVOT})"
# The admission: a ticket only while failures + live tickets stay below the limit and the pair is not stale.
_ADMIT = (
    "INSERT INTO throttle_in_flight (key, expires_at) SELECT ?, ?"
    f" WHERE ({_FAILURES_IN_WINDOW}) + ({_LIVE_IN_FLIGHT}) < ? AND NOT EXISTS ({_STALE_ANSWER}) RETURNING id"
)
# Why an admission was refused (the rare path): live tickets and the stale answer; the failures follow.
_REFUSAL = f"SELECT ({_LIVE_IN_FLIGHT}), ({_STALE_ANSWER})"
_RECORD_FAILURE = "INSERT INTO throttle_failures (key, at, expires_at) VALUES (?, ?, ?)"
_REMEMBER_STALE = (
    "INSERT INTO throttle_stale (digest, answer, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (digest) DO UPDATE SET answer = excluded.answer, expires_at = excluded.expires_at"
)
_START_IN_FLIGHT = "INSERT INTO throttle_in_flight (key, expires_at) VALUES (?, ?) RETURNING id"
_END_IN_FLIGHT = "DELETE FROM throttle_in_flight WHERE id = ? AND key = ?"
_CLEAR_FAILURES = "DELETE FROM throttle_failures WHERE key = ?"
# A success: its ticket back and the failures forgotten, one statement (PostgreSQL only: SQLite has no DML in WITH).
_END_IN_FLIGHT_AND_CLEAR = f"WITH ended AS ({_END_IN_FLIGHT}) {_CLEAR_FAILURES}"
# Without a ticket (a caller that kept none): one of the key's tickets, found through the key index.
_END_ANY_IN_FLIGHT = (
    "DELETE FROM throttle_in_flight WHERE key = ? AND id IN"
    " (SELECT id FROM throttle_in_flight WHERE key = ? ORDER BY expires_at LIMIT 1)"
)
_SPRAY_SEEN = (
    "INSERT INTO throttle_spray (actor, user_digest, at, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (actor, user_digest) DO UPDATE SET at = excluded.at, expires_at = excluded.expires_at"
)
_BLOCK = (
    "INSERT INTO throttle_blocks (actor, expires_at) VALUES (?, ?)"
    " ON CONFLICT (actor) DO UPDATE SET expires_at = excluded.expires_at"
)
# Spray reservations (migration 7): the actor's users other than this one that failed in the spray window or
# hold a live ticket of the actor now, each counted once.
_SPRAY_OTHERS = (
    "SELECT count(*) FROM (SELECT user_digest FROM throttle_spray WHERE actor = ? AND at > ? AND user_digest <> ?"
    " UNION SELECT spray_user FROM throttle_in_flight WHERE actor = ? AND expires_at > ? AND spray_user <> ?)"
    " AS others"
)
# The admission with a spray reservation: _ADMIT's conditions, and the actor neither blocked nor at its count.
_ADMIT_RESERVING = (
    "INSERT INTO throttle_in_flight (key, expires_at, actor, spray_user) SELECT ?, ?, ?, ?"
    f" WHERE ({_FAILURES_IN_WINDOW}) + ({_LIVE_IN_FLIGHT}) < ? AND NOT EXISTS ({_STALE_ANSWER})"
    f" AND NOT EXISTS ({_BLOCKED_UNTIL}) AND ({_SPRAY_OTHERS}) < ? RETURNING id"
)
_SPRAY_REFUSAL = f"SELECT ({_BLOCKED_UNTIL}), ({_SPRAY_OTHERS})"
# The spray trip: a block when the actor's distinct users in the window reach the count and it is not blocked.
_TRIP = (
    "INSERT INTO throttle_blocks (actor, expires_at) SELECT ?, ?"  # noqa: S608 (fixed text)
    " WHERE (SELECT count(*) FROM throttle_spray WHERE actor = ? AND at > ?) >= ?"
    f" AND NOT EXISTS ({_BLOCKED_UNTIL})"
    " ON CONFLICT (actor) DO UPDATE SET expires_at = excluded.expires_at RETURNING actor"
)
_SPRAY_RESET = "DELETE FROM throttle_spray WHERE actor = ?"
# PostgreSQL: the trip and, when it tripped, the count started again, in one statement (a batch's last).
_TRIP_AND_RESET = (
    f"WITH tripped AS ({_TRIP}), reset AS (DELETE FROM throttle_spray WHERE actor IN"  # noqa: S608 (fixed text)
    " (SELECT actor FROM tripped)) SELECT count(*) FROM tripped"
)
# Expired rows, a bounded batch per table through its expiry index (as PRUNE_SEEN).
_THROTTLE_TABLES = (("throttle_failures", "id"), ("throttle_in_flight", "id"), ("throttle_stale", "digest"),
                    ("throttle_spray", "(actor, user_digest)"), ("throttle_blocks", "actor"))
PRUNE_THROTTLE = {
    table: (f"DELETE FROM {table} WHERE expires_at <= ? AND {pk} IN"  # noqa: S608 (fixed text)
            f" (SELECT {pk.strip('()')} FROM {table} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)")
    for table, pk in _THROTTLE_TABLES
}
THROTTLE_PRUNE_EVERY = 100  # throttle writes per Store between two bounded prunes
THROTTLE_PRUNE_BATCH = 500  # rows per table and prune at most


def _retry_seconds(pivot: str | None, window: timedelta, now: datetime) -> int:
    """Seconds until the stored event ``pivot`` leaves the window (0: no pivot, not at the limit)."""
    if pivot is None:
        return 0
    return max(1, math.ceil((_dt(pivot) + window - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class ThrottleAdmission:
    """What :meth:`Store.throttle_admit` decided: a ticket, or why not (the throttle turns that into a lock)."""

    ticket: int | None  # the in-flight row; None when refused
    in_flight: int = 0  # live tickets of the key when refused
    newest: tuple[datetime, ...] = ()  # when refused: the key's newest failures in the window (at most ``limit``)
    stale_answer: str | None = None  # when refused: the remembered IdP answer for the pair, if any
    blocked_until: datetime | None = None  # when refused with a spray reservation: the actor's spray block, if any
    spray_users: int = 0  # when refused with a spray reservation: the actor's other users failed or in flight


@dataclass(frozen=True, slots=True)
class Spray:
    """Spray detection's part of a throttle call: ``actor`` may fail for at most ``distinct`` users in ``window``.

    ``actor`` and ``user`` are keyed HMACs (the throttle's actor and spray-user keys).
    """

    actor: bytes
    user: bytes
    window: timedelta
    distinct: int

_IMPORT_CHUNK = 100  # users per multi-row INSERT (12 parameters each)
_LOOKUP_CHUNK = 500  # emails per "which exist already" query


# -- rows and checks ---------------------------------------------------------------------------------


def _user(row: Row) -> User:
    (tenant_id, email, username, display_name, group, enabled, password_hash, twofa, language, fax,
     created) = row
    return User(tenant_id=str(tenant_id), email=str(email), username=str(username),
                display_name=str(display_name), group=str(group), enabled=bool(enabled),
                has_password=password_hash is not None, twofa_enabled=bool(twofa),
                language=None if language is None else str(language),
                fax_number=None if fax is None else str(fax), created_at=_dt(str(created)))


def _device(row: Row) -> Device:
    device_id, tenant_id, name, mode, enabled, shared, networks, created, seen_at, seen_addr, location = row
    return Device(device_id=str(device_id), tenant_id=str(tenant_id), name=str(name),
                  mode=DeviceMode(mode), enabled=bool(enabled),
                  shared_user_email=None if shared is None else str(shared),
                  allowed_networks=tuple(ipaddress.ip_network(n) for n in json.loads(str(networks))),
                  created_at=_dt(str(created)),
                  last_seen_at=None if seen_at is None else _dt(str(seen_at)),
                  last_seen_addr=None if seen_addr is None else str(seen_addr),
                  location="" if location is None else str(location))


def _audit_event(r: Row) -> AuditEvent:
    return AuditEvent(id=int(r[0]), at=_dt(str(r[1])), kind=AuditKind(r[2]), result=str(r[3]),
                      tenant_id=r[4], device_id=r[5], mode=r[6], email=r[7], source=r[8],
                      idp_latency_ms=r[9], request_id=r[10], distinct_users=r[11], actor=r[12], reason=r[13])


def _check_new_user(tenant_id: str, domains: tuple[str, ...] | None, *, email: str, username: str,
                    password: str | None, twofa: bool, sso: bool) -> str:
    """Store._check_new_user: the lookup form of ``email`` once the account passes every rule."""
    email_lc = normalize_email(email)
    if domains is not None and email_lc.rsplit("@", 1)[1] not in domains:
        raise RequestError(f"{email}: the domain is not one of tenant {tenant_id}'s domains "
                           f"({', '.join(domains)}), so this user could never sign in")
    if not username.strip():
        raise RequestError("a user name is required")
    if password is not None and not password:
        raise RequestError("an empty password is not allowed (leave it out for no password)")
    if twofa and sso:
        raise RequestError(SSO_TWOFA_REFUSED)
    return email_lc


@contextmanager
def _conflicts(message: str | None = None) -> Iterator[None]:
    """A unique key already taken: the sync store's RequestError (``message``, else its generic text)."""
    try:
        yield
    except StoreConflict as exc:
        raise RequestError(message or f"conflicts with existing data ({exc.detail})") from exc


def _one(row: Row | None, what: str) -> Row:
    if row is None:  # an INSERT ... RETURNING without a conflict gives its row
        raise StoreError(f"the database returned no row for {what}")
    return row


# -- CSV import (parsed and checked in a worker thread: up to MAX_CSV_BYTES) -----------------------------


@dataclass(frozen=True, slots=True)
class _CsvRow:
    line: int
    email_lc: str
    fields: dict[str, str]


@dataclass(slots=True)
class _CsvFile:
    rows: list[_CsvRow]
    errors: list[ImportRowError]
    header_ok: bool


class _ImportAbandoned(Exception):
    """Rows taken by another writer meanwhile, without skip_invalid: roll the import back."""

    def __init__(self, errors: list[ImportRowError]) -> None:
        super().__init__("rows already exist")
        self.errors = errors


def _csv_text(source: Path | str) -> str:
    if not isinstance(source, Path):
        return source.lstrip("\ufeff")
    try:
        with source.open("rb") as fh:
            raw = fh.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise RequestError(f"cannot read {source}: {exc.strerror}") from exc
    if len(raw) > MAX_CSV_BYTES:
        raise RequestError(f"{source}: larger than {MAX_CSV_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(f"{source}: not UTF-8 text") from exc


def _check_csv_header(header: Sequence[str], errors: list[ImportRowError]) -> bool:
    if not header:
        errors.append(ImportRowError(line=1, reason="the file is empty (a header line is needed)"))
        return False
    names = [h.strip().lower() for h in header]
    ok = True
    for name in names:
        if name not in CSV_REQUIRED and name not in CSV_OPTIONAL:
            errors.append(ImportRowError(line=1, reason=f"unknown column {name!r} (columns: "
                                         f"{', '.join(CSV_REQUIRED + CSV_OPTIONAL)})"))
            ok = False
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append(ImportRowError(line=1, reason=f"column {name!r} appears twice"))
        ok = False
    for name in CSV_REQUIRED:
        if name not in names:
            errors.append(ImportRowError(line=1, reason=f"missing required column {name!r}"))
            ok = False
    return ok


def _check_csv_row(line: int, raw: dict[str, object], tenant_id: str, domains: tuple[str, ...] | None,
                   sso: bool, seen: dict[str, int], rows: list[_CsvRow], errors: list[ImportRowError]) -> None:
    if raw.get(_EXTRA):
        errors.append(ImportRowError(line=line, reason="more fields than columns in the header"))
        return
    row = {str(k).strip().lower(): (v.strip() if isinstance(v, str) else "") for k, v in raw.items()}
    missing = [name for name in CSV_REQUIRED if not row.get(name)]
    if missing:
        errors.append(ImportRowError(line=line, reason=f"missing field {', '.join(missing)}"))
        return
    try:
        email_lc = _check_new_user(tenant_id, domains, email=row["email"], username=row["username"],
                                   password=row.get("password") or None, twofa=False, sso=sso)
    except RequestError as exc:
        errors.append(ImportRowError(line=line, reason=exc.detail))
        return
    if email_lc in seen:
        errors.append(ImportRowError(line=line, reason=f"duplicate email {row['email']} "
                                     f"(already on line {seen[email_lc]})"))
        return
    seen[email_lc] = line
    rows.append(_CsvRow(line=line, email_lc=email_lc, fields=row))


def _read_csv(source: Path | str, tenant_id: str, domains: tuple[str, ...] | None, sso: bool) -> _CsvFile:
    """Read and check the file: the rows that may go in and every error found without the database."""
    text = _csv_text(source)
    errors: list[ImportRowError] = []
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA)
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise RequestError(f"line 1: unreadable CSV header ({exc})") from exc
    if not _check_csv_header(header, errors):
        return _CsvFile(rows=[], errors=errors, header_ok=False)
    rows: list[_CsvRow] = []
    seen: dict[str, int] = {}
    try:
        for raw in reader:
            _check_csv_row(reader.line_num, raw, tenant_id, domains, sso, seen, rows, errors)
    except csv.Error as exc:
        errors.append(ImportRowError(line=reader.line_num, reason=f"unreadable CSV ({exc})"))
    return _CsvFile(rows=rows, errors=errors, header_ok=True)


def _hash_passwords(passwords: list[str | None]) -> list[str | None]:
    return [None if p is None else hash_password(p) for p in passwords]


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- the store ---------------------------------------------------------------------------------------



def store_url(target: str | Path) -> str:
    """A database URL for ``target``: a URL as it is; a path as a SQLite URL (a directory: its loginbridge.db)."""
    text = str(target)
    if "://" in text:
        return text
    path = Path(text).absolute()
    if path.is_dir():
        path = path / DB_FILENAME
    return f"sqlite://{path}"

class Store:
    """Users, devices, sessions, audit rows and the replay cache on SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # device id -> (last written last_seen_at, address): the in-memory gate of touch_device.
        self._touched: dict[str, tuple[datetime, str]] = {}
        self._replay_inserts = 0  # since the last prune of seen_assertions
        self._throttle_writes = 0  # since the last prune of the throttle tables
        self._by_username = _BY_USERNAME[db.dialect]

    @classmethod
    async def open(cls, url: str | Path) -> Store:
        """Open the database named by ``url`` (``sqlite:///abs/path.db``, ``postgresql://...``) and migrate it.

        A path (not a URL) is a SQLite file, or a directory holding ``loginbridge.db`` (tools, tests).

        ConfigError for a URL that names no supported database; StoreError when it cannot be
        reached or opened, or its schema is newer than this program.
        """
        db = await open_database(store_url(url))
        try:
            result = await migrate(db, MIGRATIONS)
        except BaseException:
            await db.close()
            raise
        if result.applied:
            log.info("database %s migrated from schema %s to %s", db.url, result.previous, result.current)
        return cls(db)

    @property
    def database(self) -> Database:
        """The database underneath (for tools and tests)."""
        return self._db

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return self._db.url

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        """The schema version the database is at (``loginbridge db upgrade`` prints it)."""
        return await current_version(self._db)

    async def ping(self) -> bool:
        """Readiness probe: can the database answer a query (within a short time)?"""
        return await self._db.ping()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Store {self._db.url}>"

    # -- users --------------------------------------------------------------

    async def add_user(self, tenant: TenantConfig | str, *, sso: bool = True, email: str, username: str,
                       display_name: str = "", group: str = "", password: str | None = None,
                       twofa: bool = False, language: str | None = None, fax_number: str | None = None,
                       now: datetime | None = None) -> User:
        """Provision one account; SSO tenants' accounts normally have no platform password."""
        tenant_id, sso, domains = _tenant_args(tenant, sso)
        email_lc = _check_new_user(tenant_id, domains, email=email, username=username, password=password,
                                   twofa=twofa, sso=sso)
        created = _ts(now or _now())
        password_hash = None if password is None else await asyncio.to_thread(hash_password, password)
        with _conflicts(f"a user with email {email.strip()} already exists in tenant {tenant_id}"):
            row = await self._db.fetchone(
                _INSERT_USER,
                (tenant_id, email.strip(), email_lc, username.strip(), display_name.strip(), group.strip(),
                 password_hash, int(twofa), language or None, fax_number or None, created))
        user = _user(_one(row, "a new user"))
        log.info("user %s added to tenant %s", user.email, tenant_id)
        return user

    async def get_user(self, tenant_id: str, email: str) -> User | None:
        """Case-insensitive lookup; None for unknown (or malformed) addresses."""
        try:
            email_lc = normalize_email(email)
        except RequestError:
            return None
        row = await self._db.fetchone(_SELECT_USERS + " WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
        return None if row is None else _user(row)

    async def get_user_by_username(self, tenant_id: str, username: str) -> User | None:
        """The one user with this user name (case-insensitive, ASCII); None when unknown or ambiguous."""
        wanted = username.strip()
        if not wanted:
            return None
        rows = await self._db.fetchall(self._by_username, (tenant_id, wanted))
        return _user(rows[0]) if len(rows) == 1 else None

    async def list_users(self, tenant_id: str) -> list[User]:
        rows = await self._db.fetchall(_SELECT_USERS + " WHERE tenant_id = ? ORDER BY email_lc", (tenant_id,))
        return [_user(row) for row in rows]

    async def check_user_password(self, tenant_id: str, email: str, password: str) -> bool:
        """Verify an optional platform password (not used for SSO sign-in); scrypt runs in a worker thread."""
        try:
            email_lc = normalize_email(email)
        except RequestError:
            return False
        stored = await self._db.fetchval(
            "SELECT password_hash FROM users WHERE tenant_id = ? AND email_lc = ? AND enabled = 1",
            (tenant_id, email_lc))
        if stored is None:
            return False
        return await asyncio.to_thread(verify_password, password, str(stored))

    @staticmethod
    async def _update_user(conn: Connection, tenant_id: str, email: str, what: str,
                           args: tuple[int, ...]) -> str:
        email_lc = normalize_email(email)
        if await conn.execute(_USER_UPDATES[what], (*args, tenant_id, email_lc)) == 0:
            raise RequestError(f"no user {email.strip()} in tenant {tenant_id}")
        return email_lc

    async def disable_user(self, tenant_id: str, email: str, *, now: datetime | None = None) -> int:
        """Disable the account, revoke its sessions and delete its printer links and badge bindings (neither may
        sign the account in again once it is enabled: the user sets them up again); returns how many sessions
        were revoked."""
        async with self._db.transaction() as tx:
            email_lc = await self._update_user(tx, tenant_id, email, "disable", ())
            revoked = await tx.execute(
                "UPDATE sessions SET revoked = 1 WHERE tenant_id = ? AND user_email_lc = ? AND revoked = 0",
                (tenant_id, email_lc))
            await tx.execute("DELETE FROM printer_links WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
            await tx.execute("DELETE FROM badge_bindings WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
        log.info("user %s in tenant %s disabled, %s sessions revoked", email_lc, tenant_id, revoked)
        return revoked

    async def enable_user(self, tenant_id: str, email: str) -> None:
        await self._update_user(self._db, tenant_id, email, "enable", ())

    async def set_twofa(self, tenant: TenantConfig | str, email: str, enabled: bool, *, sso: bool = True) -> None:
        """Platform 2FA: refused for SSO tenants, where the IdP owns it."""
        tenant_id, sso, _ = _tenant_args(tenant, sso)
        if enabled and sso:
            raise RequestError(SSO_TWOFA_REFUSED)
        await self._update_user(self._db, tenant_id, email, "twofa", (int(enabled),))

    async def import_users_csv(self, tenant: TenantConfig | str, source: Path | str, *, sso: bool = True,
                               skip_invalid: bool = False, now: datetime | None = None) -> ImportReport:
        """Import users from CSV (a Path is read, a str is the CSV text itself).

        Every bad row is reported with its line number.  Without ``skip_invalid``
        a file with any error imports nothing; otherwise the good rows go in.
        Either way the import is one transaction.  The file is read and checked,
        and the passwords hashed, in a worker thread before the transaction.
        """
        tenant_id, sso, domains = _tenant_args(tenant, sso)
        parsed = await asyncio.to_thread(_read_csv, source, tenant_id, domains, sso)
        errors = parsed.errors
        if not parsed.header_ok:
            return ImportReport(imported=(), errors=tuple(errors))
        taken = await self._existing(tenant_id, [r.email_lc for r in parsed.rows])
        errors.extend(ImportRowError(line=r.line, reason=f"user {r.fields['email']} already exists")
                      for r in parsed.rows if r.email_lc in taken)
        errors.sort(key=lambda e: e.line)
        if errors and not skip_invalid:
            return ImportReport(imported=(), errors=tuple(errors))
        bad = {e.line for e in errors}
        good = [r for r in parsed.rows if r.line not in bad]
        hashes = await asyncio.to_thread(_hash_passwords, [r.fields.get("password") or None for r in good])
        when = _ts(now or _now())
        inserted: dict[str, User] = {}
        late: list[ImportRowError] = []
        try:
            async with self._db.transaction() as tx:
                for chunk in _chunks(list(zip(good, hashes, strict=True)), _IMPORT_CHUNK):
                    params: list[str | int | None] = []
                    for r, password_hash in chunk:
                        f = r.fields
                        params += [tenant_id, f["email"], r.email_lc, f["username"], f.get("display_name", ""),
                                   f["group"], password_hash, 0, f.get("language") or None,
                                   f.get("fax_number") or None, when]
                    rows = await tx.fetchall(
                        f"{_INSERT_USER_INTO} VALUES {', '.join([_USER_VALUES] * len(chunk))}"
                        f" ON CONFLICT (tenant_id, email_lc) DO NOTHING RETURNING email_lc, {_USER_COLUMNS}",
                        params)
                    inserted.update((str(row[0]), _user(row[1:])) for row in rows)
                # Rows another writer added since the check above (the insert skipped them).
                late += [ImportRowError(line=r.line, reason=f"user {r.fields['email']} already exists")
                        for r in good if r.email_lc not in inserted]
                if late and not skip_invalid:
                    raise _ImportAbandoned(late)
        except _ImportAbandoned as stop:
            return ImportReport(imported=(), errors=tuple(sorted(errors + stop.errors, key=lambda e: e.line)))
        if late:
            errors = sorted(errors + late, key=lambda e: e.line)
        imported = tuple(inserted[r.email_lc] for r in good if r.email_lc in inserted)
        log.info("imported %s users into tenant %s (%s rows refused)", len(imported), tenant_id, len(errors))
        return ImportReport(imported=imported, errors=tuple(errors))

    async def _existing(self, tenant_id: str, emails_lc: list[str]) -> set[str]:
        """Which of these (normalised) addresses already have an account in the tenant."""
        found: set[str] = set()
        for chunk in _chunks(emails_lc, _LOOKUP_CHUNK):
            marks = ", ".join("?" * len(chunk))
            rows = await self._db.fetchall(
                f"SELECT email_lc FROM users WHERE tenant_id = ? AND email_lc IN ({marks})",  # noqa: S608
                (tenant_id, *chunk))
            found.update(str(row[0]) for row in rows)
        return found

    # -- devices ------------------------------------------------------------

    async def add_device(self, tenant_id: str, *, name: str, mode: DeviceMode | str,
                         shared_user_email: str | None = None, allowed_networks: Sequence[str | IPNetwork] = (),
                         device_id: str | None = None, secret: str | None = None, location: str = "",
                         now: datetime | None = None) -> tuple[Device, str]:
        """Register a device; the plaintext secret is returned here and never again.

        ``location`` ("Reception, ground floor") is what the phone shows before a user approves a pairing
        at the device: stripped, at most 128 printable characters.
        """
        try:
            device_mode = DeviceMode(mode)
        except ValueError as exc:
            raise RequestError(f"unknown device mode {mode!r} (modes: "
                               f"{', '.join(m.value for m in DeviceMode)})") from exc
        if not name.strip():
            raise RequestError("a device name is required")
        place = check_location(location)
        if device_id is None:
            device_id = "dev-" + base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:10].lower()
        elif not _DEVICE_ID.fullmatch(device_id):
            raise RequestError("a device id is 3 to 64 letters, digits, '.', '_' or '-'")
        if secret is None:
            secret = secrets.token_urlsafe(32)
        elif len(secret) < 8:
            raise RequestError("a device secret must have at least 8 characters")
        networks = _parse_networks(allowed_networks)
        if device_mode is DeviceMode.SHARED_ACCOUNT:
            if shared_user_email is None:
                raise RequestError("a shared-account device needs the shared user's email")
        elif device_mode is DeviceMode.USER_PROMPT and shared_user_email is not None:
            raise RequestError("a user-prompt device signs in whoever is at the panel: no shared user")
        shared = None if shared_user_email is None else normalize_email(shared_user_email)
        values = (device_id, tenant_id, name.strip(), device_mode.value, hash_device_secret(secret), shared,
                  json.dumps([str(n) for n in networks]), _ts(now or _now()), place)
        with _conflicts(f"a device with id {device_id} already exists"):
            if shared is None:
                row = await self._db.fetchone(_INSERT_DEVICE, values)
            else:
                row = await self._db.fetchone(_INSERT_SHARED_DEVICE, (*values, tenant_id, shared))
                if row is None:
                    raise RequestError(f"no user {shared_user_email} in tenant {tenant_id}")
        device = _device(_one(row, "a new device"))
        log.info("device %s (%s) registered for tenant %s", device_id, device_mode.value, tenant_id)
        return device, secret

    async def get_device(self, device_id: str) -> Device | None:
        row = await self._db.fetchone(_SELECT_DEVICES + " WHERE device_id = ?", (device_id,))
        return None if row is None else _device(row)

    async def authenticate_device(self, device_id: str, secret: str) -> Device | None:
        """The enabled device whose secret this is, else None; same work whether it exists or not."""
        row = await self._db.fetchone(_AUTH_DEVICE, (device_id,))
        stored = bytes(row[0]) if row is not None else _DUMMY_SECRET_HASH
        matches = hmac.compare_digest(hash_device_secret(secret), stored)
        if row is None or not matches:
            return None
        device = _device(row[1:])
        return device if device.enabled else None

    async def touch_device(self, device_id: str, addr: str, when: datetime) -> None:
        """Record when and from where a device was last seen.

        Written at most once per ``TOUCH_INTERVAL`` per device while its address
        stays the same (an in-memory gate per store instance, as in the sync store).
        """
        last = self._touched.get(device_id)
        if last is not None and last[1] == addr and timedelta(0) <= when - last[0] < TOUCH_INTERVAL:
            return
        await self._db.execute("UPDATE devices SET last_seen_at = ?, last_seen_addr = ? WHERE device_id = ?",
                               (_ts(when), addr, device_id))
        self._touched[device_id] = (when, addr)

    async def list_devices(self, tenant_id: str | None = None) -> list[Device]:
        if tenant_id is None:
            rows = await self._db.fetchall(_SELECT_DEVICES + " ORDER BY tenant_id, device_id")
        else:
            rows = await self._db.fetchall(_SELECT_DEVICES + " WHERE tenant_id = ? ORDER BY device_id", (tenant_id,))
        return [_device(row) for row in rows]

    async def disable_device(self, device_id: str) -> None:
        """Stop the device authenticating, end the sessions it opened and deny its unfinished pairings.

        A pairing a phone approves after the device was disabled must not become a session if the device is
        enabled again later: denied now, its poll answers ``access_denied`` and the device starts over.
        """
        async with self._db.transaction() as tx:
            if await tx.execute("UPDATE devices SET enabled = 0 WHERE device_id = ?", (device_id,)) == 0:
                raise RequestError(f"no device {device_id}")
            await tx.execute("UPDATE sessions SET revoked = 1 WHERE device_id = ?", (device_id,))
            denied = await tx.execute(_DENY_PAIRINGS, (PairingStatus.DENIED.value, device_id,
                                                       *(status.value for status in _UNFINISHED_PAIRING)))
        log.info("device %s disabled, %s unfinished pairings denied", device_id, denied)

    async def enable_device(self, device_id: str) -> None:
        """Let a disabled device authenticate again (its old sessions stay ended)."""
        if await self._db.execute("UPDATE devices SET enabled = 1 WHERE device_id = ?", (device_id,)) == 0:
            raise RequestError(f"no device {device_id}")
        log.info("device %s enabled", device_id)

    async def rotate_device_secret(self, device_id: str) -> str:
        """A new secret (returned once); the old one stops working at once."""
        secret = secrets.token_urlsafe(32)
        if await self._db.execute("UPDATE devices SET secret_hash = ? WHERE device_id = ?",
                                  (hash_device_secret(secret), device_id)) == 0:
            raise RequestError(f"no device {device_id}")
        log.info("device %s secret rotated", device_id)
        return secret

    # -- sessions -----------------------------------------------------------

    async def create_session(self, *, token_hash: bytes, tenant_id: str, user_email: str, device_id: str | None,
                             expires_at: datetime, now: datetime | None = None) -> Session:
        """Record a session for a provisioned user (the caller keeps the token, we keep its hash).

        One statement: the user check is inside the INSERT.
        """
        email_lc = normalize_email(user_email)
        created = _ts(now or _now())
        expires = _ts(expires_at)
        with _conflicts():
            written = await self._db.execute(
                _CREATE_SESSION, (token_hash, tenant_id, user_email.strip(), email_lc, device_id, created, expires,
                                  tenant_id, email_lc))
        if written != 1:
            raise RequestError(f"no user {user_email} in tenant {tenant_id}")
        return Session(token_hash=token_hash, tenant_id=tenant_id, user_email=user_email.strip(),
                       device_id=device_id, created_at=_dt(created), expires_at=_dt(expires), revoked=False)

    async def get_session(self, token_hash: bytes, now: datetime) -> Session | None:
        """The live session for this token hash; expired or revoked ones are None."""
        row = await self._db.fetchone(
            "SELECT tenant_id, user_email, device_id, created_at, expires_at, revoked FROM sessions"
            " WHERE token_hash = ?", (token_hash,))
        if row is None or row[5]:
            return None
        expires = _dt(str(row[4]))
        if expires <= _dt(_ts(now)):
            return None
        return Session(token_hash=token_hash, tenant_id=str(row[0]), user_email=str(row[1]),
                       device_id=None if row[2] is None else str(row[2]), created_at=_dt(str(row[3])),
                       expires_at=expires, revoked=False)

    async def revoke_session(self, token_hash: bytes) -> bool:
        return await self._db.execute("UPDATE sessions SET revoked = 1 WHERE token_hash = ?", (token_hash,)) > 0

    async def purge_sessions(self, now: datetime) -> int:
        """Delete expired and revoked sessions; returns how many."""
        return await self._db.execute("DELETE FROM sessions WHERE revoked = 1 OR expires_at <= ?", (_ts(now),))

    # -- assertion replay cache ----------------------------------------------

    async def check_and_remember(self, issuer: str, assertion_id: str, expires_at: datetime, *,
                                 now: datetime) -> bool:
        """True, remembering (issuer, assertion id) until ``expires_at``, when it is new; False for a replay.

        One statement, atomic across tasks and processes sharing the database: an
        insert that meets the key counts as seen unless the stored expiry has passed
        (then it is renewed and counts as new).  Every ``REPLAY_PRUNE_EVERY`` calls,
        up to ``REPLAY_PRUNE_BATCH`` expired rows are deleted through the expiry index.
        """
        fresh = await self._db.execute(_REMEMBER, (issuer, assertion_id, _ts(expires_at), _ts(now))) == 1
        self._replay_inserts += 1
        if self._replay_inserts >= REPLAY_PRUNE_EVERY:
            self._replay_inserts = 0
            await self.prune_seen_assertions(now, limit=REPLAY_PRUNE_BATCH)
        return fresh

    async def prune_seen_assertions(self, now: datetime, *, limit: int | None = None) -> int:
        """Delete remembered assertions that expired by ``now`` (at most ``limit``); returns how many."""
        if limit is None:
            return await self._db.execute(PRUNE_SEEN_ALL, (_ts(now),))
        now_text = _ts(now)
        return await self._db.execute(PRUNE_SEEN, (now_text, now_text, max(int(limit), 0)))

    async def seen_assertion_count(self) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM seen_assertions"))

    # -- audit trail ----------------------------------------------------------

    async def add_audit_event(self, event: AuditEvent) -> int:
        """Append one audit event; returns its id."""
        event_id = await self._db.fetchval(
            _ADD_AUDIT, (_ts(event.at), event.kind.value, event.result, event.tenant_id, event.device_id, event.mode,
                         event.email, event.source, event.idp_latency_ms, event.request_id, event.distinct_users,
                         event.actor, event.reason))
        return int(event_id or 0)

    async def audit_events(self, *, tenant_id: str | None = None, after_id: int = 0,
                           last: int | None = None) -> list[AuditEvent]:
        """Events in id order: those after ``after_id``, or only the ``last`` ones."""
        where = "WHERE id > ?"
        args: list[int | str] = [after_id]
        if tenant_id is not None:
            where += " AND tenant_id = ?"
            args.append(tenant_id)
        query = f"SELECT {_AUDIT_COLUMNS} FROM audit_events {where} ORDER BY id"  # noqa: S608 (fixed text)
        if last is not None:
            query = f"SELECT * FROM ({query} DESC LIMIT {int(last):d}) AS recent ORDER BY id"  # noqa: S608
        return [_audit_event(r) for r in await self._db.fetchall(query, args)]

    # -- lockout protection (bridge/login/throttle.py) --------------------------------------------
    #
    # Keys are the throttle's keyed HMACs.  Times are wall-clock (several instances share them); a
    # window is "at > now - window".  Every write counts towards a bounded prune of expired rows.

    async def _throttle_lock(self, tx: Connection, kind: int, key: bytes) -> None:
        if self._db.dialect == "postgres":
            await tx.execute(_THROTTLE_LOCK, (kind, int.from_bytes(key[:4], "big", signed=True)))

    def _throttle_lock_statement(self, kind: int, key: bytes,
                                 spray_actor: bytes | None = None) -> list[tuple[str, tuple[int, ...]]]:
        """The advisory lock as the first statement of a :meth:`Database.batch` (none on SQLite); with
        ``spray_actor``, that actor's spray lock too, after it (the one order two locks are taken in)."""
        if self._db.dialect != "postgres":
            return []
        if spray_actor is None:
            return [(_THROTTLE_LOCK, (kind, int.from_bytes(key[:4], "big", signed=True)))]
        return [(_THROTTLE_LOCKS, (kind, int.from_bytes(key[:4], "big", signed=True),
                                   _LOCK_SPRAY, int.from_bytes(spray_actor[:4], "big", signed=True)))]

    async def _throttle_wrote(self, now: datetime) -> None:
        self._throttle_writes += 1
        if self._throttle_writes >= THROTTLE_PRUNE_EVERY:
            self._throttle_writes = 0
            await self.prune_throttle(now, limit=THROTTLE_PRUNE_BATCH)

    async def throttle_failure(self, key: bytes, *, now: datetime, window: timedelta) -> int:
        """Record one failure for ``key``; returns how many it has in the window now (one transaction)."""
        async with self._db.transaction() as tx:
            await tx.execute(_RECORD_FAILURE, (key, now, now + window))
            count = int(await tx.fetchval(_FAILURES_IN_WINDOW, (key, now - window)))
        await self._throttle_wrote(now)
        return count

    async def throttle_count(self, key: bytes, *, now: datetime, window: timedelta) -> int:
        return int(await self._db.fetchval(_FAILURES_IN_WINDOW, (key, now - window)))

    async def throttle_retry_after(self, key: bytes, *, now: datetime, window: timedelta, limit: int) -> int:
        """Seconds until ``key`` has fewer than ``limit`` failures in the window (0: it has fewer now)."""
        pivot = await self._db.fetchval(_PIVOT, (key, now - window, max(int(limit), 1) - 1))
        return _retry_seconds(pivot, window, now)

    async def throttle_clear(self, key: bytes, ticket: int | None = None) -> None:
        """Forget the key's failures (a good password); with ``ticket``, that attempt is over too.

        One statement on PostgreSQL (the ticket's DELETE in a WITH), one transaction of two on SQLite.
        """
        if ticket is None:
            await self._db.execute(_CLEAR_FAILURES, (key,))
        elif self._db.dialect == "postgres":
            await self._db.execute(_END_IN_FLIGHT_AND_CLEAR, (ticket, key, key))
        else:
            await self._db.batch([(_END_IN_FLIGHT, (ticket, key)), (_CLEAR_FAILURES, (key,))])

    async def throttle_remember_stale(self, digest: bytes, answer: str, *, expires_at: datetime) -> None:
        await self._db.execute(_REMEMBER_STALE, (digest, answer, expires_at))
        await self._throttle_wrote(_now())

    async def throttle_stale_answer(self, digest: bytes, *, now: datetime) -> str | None:
        """The IdP answer remembered for this (tenant, email, password) digest until its expiry."""
        answer = await self._db.fetchval(_STALE_ANSWER, (digest, now))
        return None if answer is None else str(answer)

    async def throttle_in_flight_start(self, key: bytes, *, expires_at: datetime) -> int:
        """One more IdP attempt under way for ``key`` until it ends or ``expires_at``; returns its ticket."""
        ticket = await self._db.fetchval(_START_IN_FLIGHT, (key, expires_at))
        return int(_one((ticket,) if ticket is not None else None, "an in-flight ticket")[0])

    async def throttle_in_flight_end(self, key: bytes, ticket: int | None = None) -> None:
        """The attempt ``ticket`` (without one: any one of the key's) is over."""
        if ticket is None:
            await self._db.execute(_END_ANY_IN_FLIGHT, (key, key))
        else:
            await self._db.execute(_END_IN_FLIGHT, (ticket, key))

    async def throttle_in_flight_count(self, key: bytes, *, now: datetime) -> int:
        return int(await self._db.fetchval(_LIVE_IN_FLIGHT, (key, now)))

    async def throttle_block(self, actor: bytes, *, until: datetime) -> None:
        await self._db.execute(_BLOCK, (actor, until))

    async def throttle_blocked_until(self, actor: bytes, *, now: datetime) -> datetime | None:
        until = await self._db.fetchval(_BLOCKED_UNTIL, (actor, now))
        return None if until is None else _dt(str(until))

    async def throttle_actor_state(self, actor: bytes, *, now: datetime, window: timedelta,
                                   limit: int) -> tuple[datetime | None, int]:
        """(spray block's end or None, seconds until the actor is under ``limit`` failures): one statement."""
        row = _one(await self._db.fetchone(_ACTOR_STATE, (actor, now, actor, now - window, max(int(limit), 1) - 1)),
                   "the actor state")
        return (None if row[0] is None else _dt(str(row[0]))), _retry_seconds(row[1], window, now)

    async def throttle_user_state(self, key: bytes, *, now: datetime, window: timedelta,
                                  limit: int) -> tuple[int, tuple[datetime, ...]]:
        """(live tickets, the newest failures in the window, at most ``limit``) of a user key."""
        in_flight = await self.throttle_in_flight_count(key, now=now)
        rows = await self._db.fetchall(_NEWEST_FAILURES, (key, now - window, max(int(limit), 1)))
        return in_flight, tuple(_dt(str(r[0])) for r in rows)

    async def throttle_admit(self, key: bytes, stale_digest: bytes, *, now: datetime, window: timedelta,
                             limit: int, expires_at: datetime, spray: Spray | None = None) -> ThrottleAdmission:
        """Atomically: a ticket for one IdP attempt while failures + live tickets < ``limit`` and the pair is
        not remembered stale; else why not.

        With ``spray``, the ticket also reserves the (actor, user) pair for spray detection, in the same
        statement: it is given only while the actor is not spray-blocked and fewer than ``spray.distinct``
        users other than this one failed for it in ``spray.window`` or hold a live ticket of it, so the
        actor's IdP calls never pass its distinct-user count, however many are in flight on however many
        instances. The reservation ends with the ticket (a success, an attempt without a verdict, expiry),
        or becomes a counted failure in :meth:`throttle_rejected`'s transaction.

        One transaction, serialised per key across instances, and per actor with ``spray`` (PostgreSQL:
        advisory transaction locks, user then actor, in one statement, then one ``INSERT ... SELECT ...
        WHERE ... RETURNING``, the two in one pipeline: one round trip; SQLite: BEGIN IMMEDIATE).  A
        refusal reads its reasons afterwards (two or three statements, one round trip).
        """
        user_conditions = (key, now - window, key, now, int(limit), stale_digest, now)
        admit: tuple[str, Params]
        if spray is None:
            admit = (_ADMIT, (key, expires_at, *user_conditions))
        else:
            others = (spray.actor, now - spray.window, spray.user, spray.actor, now, spray.user)
            admit = (_ADMIT_RESERVING, (key, expires_at, spray.actor, spray.user, *user_conditions,
                                        spray.actor, now, *others, int(spray.distinct)))
        locks = self._throttle_lock_statement(_LOCK_USER, key, None if spray is None else spray.actor)
        *_, ticket = await self._db.batch([*locks, admit])
        if ticket:
            await self._throttle_wrote(now)
            return ThrottleAdmission(ticket=int(ticket[0][0]))
        # Why not (the rare path): read after the decision, in one more round trip. Only the answer's
        # details (retry-after, which refusal) come from here; the throttle fails closed if they no
        # longer explain a refusal.
        reasons: list[tuple[str, Params]] = [
            (_REFUSAL, (key, now, stale_digest, now)), (_NEWEST_FAILURES, (key, now - window, max(int(limit), 1)))]
        if spray is not None:
            reasons.append((_SPRAY_REFUSAL, (spray.actor, now, *others)))
        refusal, newest, *spray_state = await self._db.batch(reasons)
        row = _one(refusal[0] if refusal else None, "the refusal")
        blocked, spray_users = (None, 0)
        if spray_state:
            spray_row = _one(spray_state[0][0] if spray_state[0] else None, "the spray refusal")
            blocked, spray_users = (None if spray_row[0] is None else _dt(str(spray_row[0]))), int(spray_row[1])
        return ThrottleAdmission(ticket=None, in_flight=int(row[0]), newest=tuple(_dt(str(r[0])) for r in newest),
                                 stale_answer=None if row[1] is None else str(row[1]), blocked_until=blocked,
                                 spray_users=spray_users)

    async def throttle_rejected(self, failures: Sequence[tuple[bytes, timedelta]], *, now: datetime,
                                stale: tuple[bytes, str, datetime] | None = None,
                                release: tuple[bytes, int] | None = None, spray: Spray | None = None) -> int | None:
        """An IdP refusal, in one transaction: a failure for each (key, window), the stale pair
        (digest, answer, expiry) remembered, the ticket (key, ticket) released and, with ``spray``, the
        actor's failure for the user as :meth:`throttle_spray_failure` (whose answer this returns).

        So a ticket's spray reservation turns into a counted failure atomically: the actor's count of
        users failed-or-in-flight never dips while another admission reads it.  PostgreSQL: one batch,
        one round trip (the actor's advisory lock first when ``spray``); SQLite: one transaction.
        """
        statements: list[tuple[str, Params]] = []
        if failures:
            marks = ", ".join(["(?, ?, ?)"] * len(failures))
            statements.append((f"INSERT INTO throttle_failures (key, at, expires_at) VALUES {marks}",  # noqa: S608
                               [v for key, window in failures for v in (key, now, now + window)]))
        if stale is not None:
            statements.append((_REMEMBER_STALE, stale))
        if release is not None:
            statements.append((_END_IN_FLIGHT, (release[1], release[0])))
        tripped = await self._throttle_writes_with_spray(statements, spray, now)
        await self._throttle_wrote(now)
        return tripped

    async def throttle_spray_failure(self, actor: bytes, user_digest: bytes, *, now: datetime, window: timedelta,
                                     distinct: int) -> int | None:
        """Note that ``actor`` failed for a user; when this makes ``distinct`` users in the window and the
        actor is not blocked yet, block it for ``window``, start its count again, and return ``distinct``.

        One transaction, serialised per actor (PostgreSQL: an advisory transaction lock, then the
        statements in one batch: one round trip): of several instances seeing the last user at once,
        exactly one trips the detector.
        """
        tripped = await self._throttle_writes_with_spray(
            [], Spray(actor=actor, user=user_digest, window=window, distinct=distinct), now)
        await self._throttle_wrote(now)
        return tripped

    async def _throttle_writes_with_spray(self, statements: Sequence[tuple[str, Params]],
                                          spray: Spray | None, now: datetime) -> int | None:
        """``statements`` and, with ``spray``, the actor's failure for the user and the trip, in one transaction
        serialised per actor; ``spray.distinct`` when it tripped the detector."""
        if spray is None:
            await self._db.batch(statements)
            return None
        seen = (_SPRAY_SEEN, (spray.actor, spray.user, now, now + spray.window))
        trip = (spray.actor, now + spray.window, spray.actor, now - spray.window, int(spray.distinct), spray.actor, now)
        if self._db.dialect == "postgres":
            *_, rows = await self._db.batch([*self._throttle_lock_statement(_LOCK_SPRAY, spray.actor), *statements,
                                             seen, (_TRIP_AND_RESET, trip)])
            tripped = bool(rows and int(rows[0][0]))
        else:
            async with self._db.transaction() as tx:
                for sql, params in [*statements, seen]:
                    await tx.execute(sql, params)
                tripped = await tx.fetchone(_TRIP, trip) is not None
                if tripped:
                    await tx.execute(_SPRAY_RESET, (spray.actor,))
        return int(spray.distinct) if tripped else None

    async def prune_throttle(self, now: datetime, *, limit: int | None = None) -> int:
        """Delete expired throttle rows (at most ``limit`` per table), through the expiry indexes."""
        removed = 0
        for table in PRUNE_THROTTLE:
            if limit is None:
                removed += await self._db.execute(f"DELETE FROM {table} WHERE expires_at <= ?",  # noqa: S608
                                                  (now,))
            else:
                removed += await self._db.execute(PRUNE_THROTTLE[table], (now, now, max(int(limit), 0)))
        return removed

    async def throttle_row_count(self) -> int:
        """Rows in the throttle tables (tests, tools)."""
        return sum([int(await self._db.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 (fixed text)
                    for table in PRUNE_THROTTLE])

    # -- directory sync (bridge/directory) --------------------------------------------------------------
    #
    # The sync remembers the accounts it disabled itself (directory_disabled): only those does it enable
    # again when their entry is enabled again. directory_sync_runs holds one row per tenant: which instance
    # runs its sync (a lease) and when a sync last started, so a cluster runs each tenant's sync once per
    # period whatever the number of instances.

    async def set_user_names(self, tenant_id: str, email: str, *, username: str, display_name: str) -> None:
        """Change an account's user name and display name (the directory sync's updates)."""
        if not username.strip():
            raise RequestError("a user name is required")
        email_lc = normalize_email(email)
        changed = await self._db.execute(
            "UPDATE users SET username = ?, display_name = ? WHERE tenant_id = ? AND email_lc = ?",
            (username.strip(), display_name.strip(), tenant_id, email_lc))
        if changed == 0:
            raise RequestError(f"no user {email.strip()} in tenant {tenant_id}")

    async def directory_disable_user(self, tenant_id: str, email: str, *, now: datetime | None = None
                                     ) -> tuple[bool, int]:
        """Disable an account for the directory sync, in one transaction: end its sessions, forget the
        printer's verified credentials for it, delete its badge bindings, and remember that the sync disabled it
        (only when it was enabled: an account someone else disabled stays theirs). Returns (disabled now, sessions
        ended)."""
        email_lc = normalize_email(email)
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE users SET enabled = 0 WHERE tenant_id = ? AND email_lc = ? AND enabled = 1",
                (tenant_id, email_lc))
            revoked = await tx.execute(
                "UPDATE sessions SET revoked = 1 WHERE tenant_id = ? AND user_email_lc = ? AND revoked = 0",
                (tenant_id, email_lc))
            await tx.execute("DELETE FROM print_verified WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
            await tx.execute("DELETE FROM printer_links WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
            await tx.execute("DELETE FROM badge_bindings WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
            if changed:
                await tx.execute(
                    "INSERT INTO directory_disabled (tenant_id, email_lc, disabled_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (tenant_id, email_lc) DO UPDATE SET disabled_at = excluded.disabled_at",
                    (tenant_id, email_lc, _ts(now or _now())))
        log.info("user %s in tenant %s disabled by the directory sync, %s sessions revoked", email_lc, tenant_id,
                 revoked)
        return bool(changed), revoked

    async def directory_enable_user(self, tenant_id: str, email: str) -> bool:
        """Enable an account the directory sync disabled; False (nothing done) when the sync did not disable it."""
        email_lc = normalize_email(email)
        async with self._db.transaction() as tx:
            ours = await tx.execute("DELETE FROM directory_disabled WHERE tenant_id = ? AND email_lc = ?",
                                    (tenant_id, email_lc))
            if not ours:
                return False
            changed = await tx.execute(
                "UPDATE users SET enabled = 1 WHERE tenant_id = ? AND email_lc = ? AND enabled = 0",
                (tenant_id, email_lc))
        return bool(changed)

    async def directory_disabled(self, tenant_id: str) -> set[str]:
        """Addresses (lookup form) of the accounts the directory sync disabled and that are still disabled."""
        rows = await self._db.fetchall(
            "SELECT d.email_lc FROM directory_disabled d JOIN users u"
            " ON u.tenant_id = d.tenant_id AND u.email_lc = d.email_lc WHERE d.tenant_id = ? AND u.enabled = 0",
            (tenant_id,))
        return {str(row[0]) for row in rows}

    async def forget_directory_disables(self, tenant_id: str) -> int:
        """Drop the sync's marks on accounts enabled since (by someone else): a later disable is not the sync's."""
        return await self._db.execute(
            "DELETE FROM directory_disabled WHERE tenant_id = ? AND email_lc IN"
            " (SELECT email_lc FROM users WHERE tenant_id = ? AND enabled = 1)", (tenant_id, tenant_id))

    async def claim_directory_sync(self, tenant_id: str, owner: str, *, now: datetime, lease: timedelta,
                                   every: timedelta | None = None) -> bool:
        """Take the tenant's sync lease for ``lease`` if no one holds it (and, with ``every``, if no sync started
        within that period). One statement: of several instances asking at once, one gets it."""
        started_before = _ts(now - every) if every is not None else _ts(now + timedelta(days=1))
        row = await self._db.fetchone(
            "INSERT INTO directory_sync_runs (tenant_id, owner, lease_until, started_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until,"
            " started_at = excluded.started_at"
            " WHERE directory_sync_runs.lease_until <= ? AND directory_sync_runs.started_at <= ? RETURNING owner",
            (tenant_id, owner, _ts(now + lease), _ts(now), _ts(now), started_before))
        return row is not None

    async def release_directory_sync(self, tenant_id: str, owner: str, *, now: datetime | None = None) -> None:
        """Give the lease back (the time the sync started stays: it times the next one)."""
        await self._db.execute("UPDATE directory_sync_runs SET lease_until = ? WHERE tenant_id = ? AND owner = ?",
                               (_ts(now or _now()), tenant_id, owner))

    # -- the admin API (bridge/adminapi) ----------------------------------------------------------------------
    #
    # Taking access away is one transaction with the change: the account's sessions end and the printer's cached
    # verifications of its address go (print_verified), so neither a device nor a print queue keeps it signed in.

    async def update_user(self, tenant_id: str, email: str, *, username: str | None = None,
                          display_name: str | None = None, group: str | None = None, language: str | None = None,
                          fax_number: str | None = None) -> User:
        """Change an account's descriptive fields (None: unchanged; "" clears language or fax number)."""
        changes: list[tuple[str, str | None]] = []
        if username is not None:
            if not username.strip():
                raise RequestError("a user name is required")
            changes.append(("username", username.strip()))
        for column, value in (("display_name", display_name), ("group_name", group)):
            if value is not None:
                changes.append((column, value.strip()))
        for column, value in (("language", language), ("fax_number", fax_number)):
            if value is not None:
                changes.append((column, value.strip() or None))
        email_lc = normalize_email(email)
        if changes:
            assignments = ", ".join(f"{column} = ?" for column, _ in changes)  # fixed column names only
            row = await self._db.fetchone(
                f"UPDATE users SET {assignments} WHERE tenant_id = ? AND email_lc = ?"  # noqa: S608
                f" RETURNING {_USER_COLUMNS}", (*(value for _, value in changes), tenant_id, email_lc))
        else:
            row = await self._db.fetchone(_SELECT_USERS + " WHERE tenant_id = ? AND email_lc = ?",
                                          (tenant_id, email_lc))
        if row is None:
            raise RequestError(f"no user {email.strip()} in tenant {tenant_id}")
        return _user(row)

    async def deactivate_user(self, tenant_id: str, email: str) -> int:
        """Disable the account, end its sessions, forget the printer's verifications of it and delete its
        personal printer links and badge bindings, in one transaction (so no instance lets a link or a badge
        in afterwards); returns how many sessions ended."""
        email_lc = normalize_email(email)
        async with self._db.transaction() as tx:
            if await tx.execute(_USER_UPDATES["disable"], (tenant_id, email_lc)) == 0:
                raise RequestError(f"no user {email.strip()} in tenant {tenant_id}")
            ended = await tx.execute(
                "UPDATE sessions SET revoked = 1 WHERE tenant_id = ? AND user_email_lc = ? AND revoked = 0",
                (tenant_id, email_lc))
            await tx.execute("DELETE FROM print_verified WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
            await tx.execute("DELETE FROM printer_links WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
            await tx.execute("DELETE FROM badge_bindings WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
        log.info("user %s in tenant %s disabled, %s sessions ended", email_lc, tenant_id, ended)
        return ended

    async def delete_user(self, tenant_id: str, email: str) -> int:
        """Delete the account with its sessions, printer verifications, SCIM id, directory-sync mark, printer links
        and badge bindings, in one transaction; refused while a shared-account device signs in as it. Returns how
        many live sessions ended."""
        email_lc = normalize_email(email)
        async with self._db.transaction() as tx:
            device = await tx.fetchval(
                "SELECT device_id FROM devices WHERE tenant_id = ? AND shared_user_email = ? ORDER BY device_id",
                (tenant_id, email_lc))
            if device is not None:
                raise RequestError(f"device {device} signs in as {email.strip()}: change or delete it first")
            ended = int(await tx.fetchval(
                "SELECT count(*) FROM sessions WHERE tenant_id = ? AND user_email_lc = ? AND revoked = 0",
                (tenant_id, email_lc)) or 0)
            for table, column in (("sessions", "user_email_lc"), ("print_verified", "email_lc"),
                                  ("scim_users", "email_lc"), ("directory_disabled", "email_lc"),
                                  ("printer_links", "email_lc"), ("badge_bindings", "email_lc")):
                await tx.execute(f"DELETE FROM {table} WHERE tenant_id = ? AND {column} = ?",  # noqa: S608 (fixed)
                                 (tenant_id, email_lc))
            if await tx.execute("DELETE FROM users WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc)) == 0:
                raise RequestError(f"no user {email.strip()} in tenant {tenant_id}")
        log.info("user %s deleted from tenant %s, %s sessions ended", email_lc, tenant_id, ended)
        return ended

    async def update_device(self, device_id: str, *, name: str | None = None, mode: DeviceMode | str | None = None,
                            shared_user_email: str | None = None, location: str | None = None) -> Device:
        """Rename a device, move it (``location``; "" clears it) or change its mode (a shared-account device names
        its tenant user), in one transaction; a new mode or shared user ends the sessions the device opened."""
        try:
            new_mode = None if mode is None else DeviceMode(mode)
        except ValueError as exc:
            raise RequestError(f"unknown device mode {mode!r} (modes: "
                               f"{', '.join(m.value for m in DeviceMode)})") from exc
        if name is not None and not name.strip():
            raise RequestError("a device name is required")
        place = None if location is None else check_location(location)
        async with self._db.transaction() as tx:
            row = await tx.fetchone(_SELECT_DEVICES + " WHERE device_id = ?", (device_id,))
            if row is None:
                raise RequestError(f"no device {device_id}")
            current = _device(row)
            target = new_mode or current.mode
            shared: str | None = None
            if target is DeviceMode.SHARED_ACCOUNT:
                shared = normalize_email(shared_user_email) if shared_user_email is not None \
                    else current.shared_user_email
                if shared is None:
                    raise RequestError("a shared-account device needs the shared user's email")
                if await tx.fetchval("SELECT count(*) FROM users WHERE tenant_id = ? AND email_lc = ?",
                                     (current.tenant_id, shared)) == 0:
                    raise RequestError(f"no user {shared_user_email or shared} in tenant {current.tenant_id}")
            elif shared_user_email is not None:
                raise RequestError(f"a {target.value} device has no shared user")
            updated = _device(_one(await tx.fetchone(
                "UPDATE devices SET name = ?, mode = ?, shared_user_email = ?, location = ? WHERE device_id = ?"  # noqa: S608
                f" RETURNING {_DEVICE_COLUMNS}", (current.name if name is None else name.strip(), target.value, shared,
                                                  current.location if place is None else place, device_id)),
                "an updated device"))
            if (updated.mode, updated.shared_user_email) != (current.mode, current.shared_user_email):
                await tx.execute("UPDATE sessions SET revoked = 1 WHERE device_id = ? AND revoked = 0", (device_id,))
        log.info("device %s updated (%s)", device_id, updated.mode.value)
        return updated

    async def tenant_usage(self, tenant_id: str) -> tuple[int, int]:
        """(accounts, devices) a tenant holds."""
        row = await self._db.fetchone(
            "SELECT (SELECT count(*) FROM users WHERE tenant_id = ?),"
            " (SELECT count(*) FROM devices WHERE tenant_id = ?)",
            (tenant_id, tenant_id))
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def audit_page(self, tenant_id: str, *, kinds: Sequence[AuditKind] = (AuditKind.LOGIN,),
                         before_id: int | None = None, limit: int = 50) -> list[AuditEvent]:
        """A tenant's events of these kinds, newest first: at most ``limit``, with ids below ``before_id``."""
        if not kinds:
            return []
        marks = ", ".join("?" * len(kinds))
        args: list[str | int] = [tenant_id, *(kind.value for kind in kinds)]
        where = f"tenant_id = ? AND kind IN ({marks})"
        if before_id is not None:
            where += " AND id < ?"
            args.append(before_id)
        rows = await self._db.fetchall(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE {where} ORDER BY id DESC"  # noqa: S608 (fixed text)
            f" LIMIT {max(int(limit), 0):d}", args)
        return [_audit_event(row) for row in rows]
