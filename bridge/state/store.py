"""The embedded SQLite store: provisioned users, registered devices, sessions.

One connection, used from the event-loop thread; every call is a short
statement or a short transaction.  Nothing here creates a user as a side effect
of a login: accounts exist only because an administrator created or imported
them.  Secrets are stored hashed: device secrets (high-entropy, random) with
SHA-256, optional platform passwords with salted scrypt.
"""

from __future__ import annotations

import base64
import csv
import enum
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from bridge.config import IPNetwork, TenantConfig
from bridge.errors import RequestError, StoreError
from bridge.passwords import hash_password, verify_password
from bridge.state.audit import AuditEvent, AuditKind

log = logging.getLogger(__name__)

DB_FILENAME = "loginbridge.db"
SCHEMA_VERSION = 3
SSO_TWOFA_REFUSED = (
    "accounts of an SSO tenant cannot use two-factor authentication on the platform: "
    "2FA is the identity provider's job"
)
MAX_CSV_BYTES = 16 * 1024 * 1024
_DUMMY_SECRET_HASH = hashlib.sha256(b"loginbridge: no such device").digest()
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(r"[^@\s\"<>(),;:\\\[\]]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")+")
_EXTRA = "\0extra"
TOUCH_INTERVAL = timedelta(seconds=60)  # last-seen precision (see Store.touch_device)
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")
CSV_REQUIRED = ("username", "email", "group")
CSV_OPTIONAL = ("password", "language", "fax_number", "display_name")


class DeviceMode(enum.Enum):
    SHARED_ACCOUNT = "shared-account"
    DEVICE_LOGIN = "device-login"
    USER_PROMPT = "user-prompt"


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    tenant_id: str
    email: str
    username: str
    display_name: str
    group: str
    enabled: bool
    has_password: bool
    twofa_enabled: bool
    language: str | None
    fax_number: str | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Device:
    device_id: str
    tenant_id: str
    name: str
    mode: DeviceMode
    enabled: bool
    shared_user_email: str | None
    allowed_networks: tuple[IPNetwork, ...]
    created_at: datetime
    last_seen_at: datetime | None
    last_seen_addr: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    token_hash: bytes = field(repr=False)
    tenant_id: str
    user_email: str
    device_id: str | None
    created_at: datetime
    expires_at: datetime
    revoked: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportRowError:
    line: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportReport:
    """What a CSV import did; ``imported`` is empty when errors stopped it."""

    imported: tuple[User, ...]
    errors: tuple[ImportRowError, ...]


_SELECT_USERS = ("SELECT tenant_id, email, username, display_name, group_name, enabled, password_hash,"
                 " twofa_enabled, language, fax_number, created_at FROM users")
_SELECT_DEVICES = ("SELECT device_id, tenant_id, name, mode, enabled, shared_user_email, allowed_networks,"
                   " created_at, last_seen_at, last_seen_addr FROM devices")
_SELECT_DEVICE_AUTH = ("SELECT secret_hash, device_id, tenant_id, name, mode, enabled, shared_user_email,"
                       " allowed_networks, created_at, last_seen_at, last_seen_addr"
                       " FROM devices WHERE device_id = ?")
_USER_UPDATES = {
    "disable": "UPDATE users SET enabled = 0 WHERE tenant_id = ? AND email_lc = ?",
    "enable": "UPDATE users SET enabled = 1 WHERE tenant_id = ? AND email_lc = ?",
    "twofa": "UPDATE users SET twofa_enabled = ? WHERE tenant_id = ? AND email_lc = ?",
}

_SCHEMA_V1 = (
    """CREATE TABLE users (
        tenant_id TEXT NOT NULL,
        email TEXT NOT NULL,
        email_lc TEXT NOT NULL,
        username TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '',
        group_name TEXT NOT NULL DEFAULT '',
        enabled INTEGER NOT NULL DEFAULT 1,
        password_hash TEXT,
        twofa_enabled INTEGER NOT NULL DEFAULT 0,
        language TEXT,
        fax_number TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant_id, email_lc)
    )""",
    """CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('shared-account', 'device-login', 'user-prompt')),
        secret_hash BLOB NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        shared_user_email TEXT,
        allowed_networks TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        last_seen_at TEXT,
        last_seen_addr TEXT
    )""",
    """CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_email TEXT NOT NULL,
        user_email_lc TEXT NOT NULL,
        device_id TEXT REFERENCES devices(device_id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        FOREIGN KEY (tenant_id, user_email_lc) REFERENCES users(tenant_id, email_lc)
    )""",
    "CREATE INDEX sessions_by_user ON sessions(tenant_id, user_email_lc)",
    "CREATE INDEX sessions_by_device ON sessions(device_id)",
    "CREATE INDEX devices_by_tenant ON devices(tenant_id)",
)

# Version 2: the audit trail (bridge/state/audit.py); never a password or token.
_SCHEMA_V2 = (
    """CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
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
    )""",
    "CREATE INDEX audit_by_tenant ON audit_events(tenant_id, id)",
)
# Version 3: the assertion replay cache (Store.check_and_remember).  Keyed by (issuer, assertion id);
# a row lives until the token's NotOnOrAfter plus the clock skew, and the expiry index lets expired
# rows be pruned a few at a time without scanning the table.
_SCHEMA_V3 = (
    """CREATE TABLE seen_assertions (
        issuer TEXT NOT NULL,
        assertion_id TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (issuer, assertion_id)
    )""",
    "CREATE INDEX seen_assertions_by_expiry ON seen_assertions(expires_at)",
)
_PRUNE_SEEN = ("DELETE FROM seen_assertions WHERE rowid IN"
               " (SELECT rowid FROM seen_assertions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)")
REPLAY_PRUNE_EVERY = 32  # remembered assertions between two prunes
REPLAY_PRUNE_BATCH = 128  # expired rows deleted at most per prune (4 per insert: the table cannot grow stale)
_AUDIT_COLUMNS = ("id, at, kind, result, tenant_id, device_id, mode, email, source, idp_latency_ms, request_id,"
                  " distinct_users")


# --------------------------------------------------------------------------
# Hashing and small value helpers.


def hash_device_secret(secret: str) -> bytes:
    """Device secrets are 256-bit random: a plain SHA-256 is enough to store them."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def normalize_email(email: str) -> str:
    """The lookup form of an address: stripped, lower-cased; RequestError when malformed."""
    value = email.strip().lower()
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise RequestError(f"not a valid email address: {email!r}")
    return value


def _ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise RequestError("timestamps must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _tenant_args(tenant: TenantConfig | str, sso: bool) -> tuple[str, bool, tuple[str, ...] | None]:
    """Every configured tenant signs in through SSO; a bare id says so with ``sso``."""
    if isinstance(tenant, TenantConfig):
        return tenant.id, True, tenant.domains
    return tenant, sso, None


def _parse_networks(networks: Sequence[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    out: list[IPNetwork] = []
    for raw in networks:
        try:
            out.append(raw if not isinstance(raw, str) else ipaddress.ip_network(raw.strip(), strict=True))
        except ValueError as exc:
            raise RequestError(f"not a network in CIDR form (like 192.0.2.0/24): {raw!r}") from exc
    return tuple(out)


class Store:
    """Users, devices and sessions in one SQLite file (WAL, foreign keys, versioned schema)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # device id -> (last written last_seen_at, address): the in-memory gate of touch_device.
        self._touched: dict[str, tuple[datetime, str]] = {}
        self._replay_inserts = 0  # since the last prune of seen_assertions

    @classmethod
    def open(cls, path: Path | str) -> Store:
        """Open (creating and migrating if needed) the database; a directory means its loginbridge.db."""
        db = Path(path)
        if db.is_dir():
            db = db / DB_FILENAME
        created = not db.exists()
        try:
            conn = sqlite3.connect(db, isolation_level=None, timeout=5.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {db}: {exc}") from exc
        store = cls(conn, db)
        try:
            if created:
                os.chmod(db, 0o600)
            with store._guard():
                conn.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit is durable once the WAL is synced at the next checkpoint; a power
                # cut can lose the last few sessions/audit rows but never corrupts the file.  FULL cost an
                # fsync per commit (three per login).  The printer's job DB stays FULL (printers/jobstore.py).
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=5000")
                store._migrate()
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        self._conn.close()

    def ping(self) -> bool:
        """Readiness probe: can the database answer a query?"""
        try:
            self._conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn sqlite3 errors into the project's: duplicates are the caller's fault."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise RequestError(f"conflicts with existing data ({exc})") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"database schema {version} is newer than this program ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        with self._tx() as conn:
            if version < 1:
                for statement in _SCHEMA_V1:
                    conn.execute(statement)
            if version < 2:
                for statement in _SCHEMA_V2:
                    conn.execute(statement)
            if version < 3:
                for statement in _SCHEMA_V3:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        log.info("database %s migrated from schema %s to %s", self.path, version, SCHEMA_VERSION)

    # -- users --------------------------------------------------------------


    @staticmethod
    def _user(row: sqlite3.Row | tuple[object, ...]) -> User:
        (tenant_id, email, username, display_name, group, enabled, password_hash, twofa, language, fax,
         created) = row
        return User(tenant_id=str(tenant_id), email=str(email), username=str(username),
                    display_name=str(display_name), group=str(group), enabled=bool(enabled),
                    has_password=password_hash is not None, twofa_enabled=bool(twofa),
                    language=None if language is None else str(language),
                    fax_number=None if fax is None else str(fax), created_at=_dt(str(created)))

    def _check_new_user(self, tenant_id: str, domains: tuple[str, ...] | None, *, email: str,
                        username: str, password: str | None, twofa: bool, sso: bool) -> str:
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

    def add_user(self, tenant: TenantConfig | str, *, sso: bool = True, email: str, username: str,
                 display_name: str = "", group: str = "", password: str | None = None,
                 twofa: bool = False, language: str | None = None, fax_number: str | None = None,
                 now: datetime | None = None) -> User:
        """Provision one account; SSO tenants' accounts normally have no platform password."""
        tenant_id, sso, domains = _tenant_args(tenant, sso)
        email_lc = self._check_new_user(tenant_id, domains, email=email, username=username,
                                        password=password, twofa=twofa, sso=sso)
        with self._tx() as conn:
            if self._exists(conn, tenant_id, email_lc):
                raise RequestError(f"a user with email {email.strip()} already exists in tenant {tenant_id}")
            self._insert_user(conn, tenant_id, email=email.strip(), email_lc=email_lc,
                              username=username.strip(), display_name=display_name.strip(),
                              group=group.strip(), password=password, twofa=twofa, language=language,
                              fax_number=fax_number, now=now or _now())
        user = self.get_user(tenant_id, email_lc)
        assert user is not None
        log.info("user %s added to tenant %s", user.email, tenant_id)
        return user

    @staticmethod
    def _exists(conn: sqlite3.Connection, tenant_id: str, email_lc: str) -> bool:
        row = conn.execute("SELECT 1 FROM users WHERE tenant_id = ? AND email_lc = ?",
                           (tenant_id, email_lc)).fetchone()
        return row is not None

    @staticmethod
    def _insert_user(conn: sqlite3.Connection, tenant_id: str, *, email: str, email_lc: str, username: str,
                     display_name: str, group: str, password: str | None, twofa: bool,
                     language: str | None, fax_number: str | None, now: datetime) -> None:
        conn.execute(
            "INSERT INTO users (tenant_id, email, email_lc, username, display_name, group_name, enabled,"
            " password_hash, twofa_enabled, language, fax_number, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (tenant_id, email, email_lc, username, display_name, group,
             None if password is None else hash_password(password), int(twofa), language or None,
             fax_number or None, _ts(now)),
        )

    def get_user(self, tenant_id: str, email: str) -> User | None:
        """Case-insensitive lookup; None for unknown (or malformed) addresses."""
        try:
            email_lc = normalize_email(email)
        except RequestError:
            return None
        with self._guard():
            row = self._conn.execute(
                _SELECT_USERS + " WHERE tenant_id = ? AND email_lc = ?",
                (tenant_id, email_lc)).fetchone()
        return None if row is None else self._user(row)

    def get_user_by_username(self, tenant_id: str, username: str) -> User | None:
        """The one user with this user name (case-insensitive); None when unknown or ambiguous."""
        wanted = username.strip()
        if not wanted:
            return None
        with self._guard():
            rows = self._conn.execute(
                _SELECT_USERS + " WHERE tenant_id = ? AND lower(username) = lower(?) LIMIT 2",
                (tenant_id, wanted)).fetchall()
        return self._user(rows[0]) if len(rows) == 1 else None

    def list_users(self, tenant_id: str) -> list[User]:
        with self._guard():
            rows = self._conn.execute(
                _SELECT_USERS + " WHERE tenant_id = ? ORDER BY email_lc",
                (tenant_id,)).fetchall()
        return [self._user(row) for row in rows]

    def check_user_password(self, tenant_id: str, email: str, password: str) -> bool:
        """Verify an optional platform password (not used for SSO sign-in)."""
        try:
            email_lc = normalize_email(email)
        except RequestError:
            return False
        with self._guard():
            row = self._conn.execute(
                "SELECT password_hash FROM users WHERE tenant_id = ? AND email_lc = ? AND enabled = 1",
                (tenant_id, email_lc)).fetchone()
        return row is not None and row[0] is not None and verify_password(password, str(row[0]))

    def _update_user(self, conn: sqlite3.Connection, tenant_id: str, email: str, what: str,
                     args: tuple[object, ...]) -> str:
        email_lc = normalize_email(email)
        cursor = conn.execute(_USER_UPDATES[what], (*args, tenant_id, email_lc))
        if cursor.rowcount == 0:
            raise RequestError(f"no user {email.strip()} in tenant {tenant_id}")
        return email_lc

    def disable_user(self, tenant_id: str, email: str, *, now: datetime | None = None) -> int:
        """Disable the account and revoke its sessions; returns how many sessions were revoked."""
        with self._tx() as conn:
            email_lc = self._update_user(conn, tenant_id, email, "disable", ())
            cursor = conn.execute(
                "UPDATE sessions SET revoked = 1 WHERE tenant_id = ? AND user_email_lc = ? AND revoked = 0",
                (tenant_id, email_lc))
        log.info("user %s in tenant %s disabled, %s sessions revoked", email_lc, tenant_id, cursor.rowcount)
        return cursor.rowcount

    def enable_user(self, tenant_id: str, email: str) -> None:
        with self._tx() as conn:
            self._update_user(conn, tenant_id, email, "enable", ())

    def set_twofa(self, tenant: TenantConfig | str, email: str, enabled: bool, *, sso: bool = True) -> None:
        """Platform 2FA: refused for SSO tenants, where the IdP owns it."""
        tenant_id, sso, _ = _tenant_args(tenant, sso)
        if enabled and sso:
            raise RequestError(SSO_TWOFA_REFUSED)
        with self._tx() as conn:
            self._update_user(conn, tenant_id, email, "twofa", (int(enabled),))

    def import_users_csv(self, tenant: TenantConfig | str, source: Path | str, *, sso: bool = True,
                         skip_invalid: bool = False, now: datetime | None = None) -> ImportReport:
        """Import users from CSV (a Path is read, a str is the CSV text itself).

        Every bad row is reported with its line number.  Without ``skip_invalid``
        a file with any error imports nothing; otherwise the good rows go in.
        Either way the import is one transaction.
        """
        tenant_id, sso, domains = _tenant_args(tenant, sso)
        text = self._csv_text(source)
        errors: list[ImportRowError] = []
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA)
        try:
            header = list(reader.fieldnames or [])
        except csv.Error as exc:
            raise RequestError(f"line 1: unreadable CSV header ({exc})") from exc
        if not self._check_csv_header(header, errors):
            return ImportReport(imported=(), errors=tuple(errors))
        rows: list[tuple[int, dict[str, str]]] = []
        seen: dict[str, int] = {}
        try:
            for row in reader:
                self._check_csv_row(reader.line_num, row, tenant_id, domains, sso, seen, rows, errors)
        except csv.Error as exc:
            errors.append(ImportRowError(line=reader.line_num, reason=f"unreadable CSV ({exc})"))
        when = now or _now()
        with self._tx() as conn:
            for line, row in rows:
                if self._exists(conn, tenant_id, row["email"].lower()):
                    errors.append(ImportRowError(line=line, reason=f"user {row['email']} already exists"))
            errors.sort(key=lambda e: e.line)
            if errors and not skip_invalid:
                return ImportReport(imported=(), errors=tuple(errors))
            bad = {e.line for e in errors}
            good = [(line, row) for line, row in rows if line not in bad]
            for _, row in good:
                self._insert_user(conn, tenant_id, email=row["email"], email_lc=row["email"].lower(),
                                  username=row["username"], display_name=row.get("display_name", ""),
                                  group=row["group"], password=row.get("password") or None, twofa=False,
                                  language=row.get("language") or None,
                                  fax_number=row.get("fax_number") or None, now=when)
        imported = tuple(u for _, row in good if (u := self.get_user(tenant_id, row["email"])) is not None)
        log.info("imported %s users into tenant %s (%s rows refused)", len(imported), tenant_id, len(errors))
        return ImportReport(imported=imported, errors=tuple(errors))

    @staticmethod
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

    @staticmethod
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

    def _check_csv_row(self, line: int, raw: dict[str, object], tenant_id: str,
                       domains: tuple[str, ...] | None, sso: bool, seen: dict[str, int],
                       rows: list[tuple[int, dict[str, str]]], errors: list[ImportRowError]) -> None:
        if raw.get(_EXTRA):
            errors.append(ImportRowError(line=line, reason="more fields than columns in the header"))
            return
        row = {str(k).strip().lower(): (v.strip() if isinstance(v, str) else "") for k, v in raw.items()}
        missing = [name for name in CSV_REQUIRED if not row.get(name)]
        if missing:
            errors.append(ImportRowError(line=line, reason=f"missing field {', '.join(missing)}"))
            return
        try:
            email_lc = self._check_new_user(tenant_id, domains, email=row["email"], username=row["username"],
                                            password=row.get("password") or None, twofa=False, sso=sso)
        except RequestError as exc:
            errors.append(ImportRowError(line=line, reason=exc.detail))
            return
        if email_lc in seen:
            errors.append(ImportRowError(line=line, reason=f"duplicate email {row['email']} "
                                         f"(already on line {seen[email_lc]})"))
            return
        seen[email_lc] = line
        rows.append((line, row))

    # -- devices ------------------------------------------------------------


    @staticmethod
    def _device(row: tuple[object, ...]) -> Device:
        device_id, tenant_id, name, mode, enabled, shared, networks, created, seen_at, seen_addr = row
        return Device(device_id=str(device_id), tenant_id=str(tenant_id), name=str(name),
                      mode=DeviceMode(mode), enabled=bool(enabled),
                      shared_user_email=None if shared is None else str(shared),
                      allowed_networks=tuple(ipaddress.ip_network(n) for n in json.loads(str(networks))),
                      created_at=_dt(str(created)),
                      last_seen_at=None if seen_at is None else _dt(str(seen_at)),
                      last_seen_addr=None if seen_addr is None else str(seen_addr))

    def add_device(self, tenant_id: str, *, name: str, mode: DeviceMode | str,
                   shared_user_email: str | None = None, allowed_networks: Sequence[str | IPNetwork] = (),
                   device_id: str | None = None, secret: str | None = None,
                   now: datetime | None = None) -> tuple[Device, str]:
        """Register a device; the plaintext secret is returned here and never again."""
        try:
            device_mode = DeviceMode(mode)
        except ValueError as exc:
            raise RequestError(f"unknown device mode {mode!r} (modes: "
                               f"{', '.join(m.value for m in DeviceMode)})") from exc
        if not name.strip():
            raise RequestError("a device name is required")
        if device_id is None:
            device_id = "dev-" + base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:10].lower()
        elif not _DEVICE_ID.fullmatch(device_id):
            raise RequestError("a device id is 3 to 64 letters, digits, '.', '_' or '-'")
        if secret is None:
            secret = secrets.token_urlsafe(32)
        elif len(secret) < 8:
            raise RequestError("a device secret must have at least 8 characters")
        networks = _parse_networks(allowed_networks)
        shared: str | None = None
        if device_mode is DeviceMode.SHARED_ACCOUNT:
            if shared_user_email is None:
                raise RequestError("a shared-account device needs the shared user's email")
        elif device_mode is DeviceMode.USER_PROMPT and shared_user_email is not None:
            raise RequestError("a user-prompt device signs in whoever is at the panel: no shared user")
        with self._tx() as conn:
            if shared_user_email is not None:
                shared = normalize_email(shared_user_email)
                if not self._exists(conn, tenant_id, shared):
                    raise RequestError(f"no user {shared_user_email} in tenant {tenant_id}")
            if conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone():
                raise RequestError(f"a device with id {device_id} already exists")
            conn.execute(
                "INSERT INTO devices (device_id, tenant_id, name, mode, secret_hash, enabled,"
                " shared_user_email, allowed_networks, created_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (device_id, tenant_id, name.strip(), device_mode.value, hash_device_secret(secret), shared,
                 json.dumps([str(n) for n in networks]), _ts(now or _now())))
        device = self.get_device(device_id)
        assert device is not None
        log.info("device %s (%s) registered for tenant %s", device_id, device_mode.value, tenant_id)
        return device, secret

    def get_device(self, device_id: str) -> Device | None:
        with self._guard():
            row = self._conn.execute(_SELECT_DEVICES + " WHERE device_id = ?",
                                     (device_id,)).fetchone()
        return None if row is None else self._device(row)

    def authenticate_device(self, device_id: str, secret: str) -> Device | None:
        """The enabled device whose secret this is, else None; same work whether it exists or not."""
        with self._guard():
            row = self._conn.execute(
                _SELECT_DEVICE_AUTH,
                (device_id,)).fetchone()
        stored = bytes(row[0]) if row is not None else _DUMMY_SECRET_HASH
        matches = hmac.compare_digest(hash_device_secret(secret), stored)
        if row is None or not matches:
            return None
        device = self._device(row[1:])
        return device if device.enabled else None

    def touch_device(self, device_id: str, addr: str, when: datetime) -> None:
        """Record when and from where a device was last seen.

        Written at most once per ``TOUCH_INTERVAL`` per device while its address
        stays the same: "last seen" is for people (a minute is fine) and a write
        per request was a third of the store's work per login.
        """
        last = self._touched.get(device_id)
        if last is not None and last[1] == addr and timedelta(0) <= when - last[0] < TOUCH_INTERVAL:
            return
        with self._guard():
            self._conn.execute("UPDATE devices SET last_seen_at = ?, last_seen_addr = ? WHERE device_id = ?",
                               (_ts(when), addr, device_id))
        self._touched[device_id] = (when, addr)

    def list_devices(self, tenant_id: str | None = None) -> list[Device]:
        with self._guard():
            if tenant_id is None:
                rows = self._conn.execute(
                    _SELECT_DEVICES + " ORDER BY tenant_id, device_id").fetchall()
            else:
                rows = self._conn.execute(
                    _SELECT_DEVICES + " WHERE tenant_id = ? ORDER BY device_id",
                    (tenant_id,)).fetchall()
        return [self._device(row) for row in rows]

    def disable_device(self, device_id: str) -> None:
        """Stop the device authenticating and end the sessions it opened."""
        with self._tx() as conn:
            if conn.execute("UPDATE devices SET enabled = 0 WHERE device_id = ?", (device_id,)).rowcount == 0:
                raise RequestError(f"no device {device_id}")
            conn.execute("UPDATE sessions SET revoked = 1 WHERE device_id = ?", (device_id,))
        log.info("device %s disabled", device_id)

    def enable_device(self, device_id: str) -> None:
        """Let a disabled device authenticate again (its old sessions stay ended)."""
        with self._tx() as conn:
            if conn.execute("UPDATE devices SET enabled = 1 WHERE device_id = ?", (device_id,)).rowcount == 0:
                raise RequestError(f"no device {device_id}")
        log.info("device %s enabled", device_id)

    def rotate_device_secret(self, device_id: str) -> str:
        """A new secret (returned once); the old one stops working at once."""
        secret = secrets.token_urlsafe(32)
        with self._tx() as conn:
            cursor = conn.execute("UPDATE devices SET secret_hash = ? WHERE device_id = ?",
                                  (hash_device_secret(secret), device_id))
            if cursor.rowcount == 0:
                raise RequestError(f"no device {device_id}")
        log.info("device %s secret rotated", device_id)
        return secret

    # -- sessions -----------------------------------------------------------

    def create_session(self, *, token_hash: bytes, tenant_id: str, user_email: str, device_id: str | None,
                       expires_at: datetime, now: datetime | None = None) -> Session:
        """Record a session for a provisioned user (the caller keeps the token, we keep its hash)."""
        email_lc = normalize_email(user_email)
        created = now or _now()
        # One statement (its own transaction): the user check and the insert, without BEGIN/COMMIT round trips.
        with self._guard():
            cursor = self._conn.execute(
                "INSERT INTO sessions (token_hash, tenant_id, user_email, user_email_lc, device_id,"
                " created_at, expires_at, revoked) SELECT ?, ?, ?, ?, ?, ?, ?, 0"
                " WHERE EXISTS (SELECT 1 FROM users WHERE tenant_id = ? AND email_lc = ?)",
                (token_hash, tenant_id, user_email.strip(), email_lc, device_id, _ts(created),
                 _ts(expires_at), tenant_id, email_lc))
        if cursor.rowcount != 1:
            raise RequestError(f"no user {user_email} in tenant {tenant_id}")
        return Session(token_hash=token_hash, tenant_id=tenant_id, user_email=user_email.strip(),
                       device_id=device_id, created_at=_dt(_ts(created)), expires_at=_dt(_ts(expires_at)),
                       revoked=False)

    def get_session(self, token_hash: bytes, now: datetime) -> Session | None:
        """The live session for this token hash; expired or revoked ones are None."""
        with self._guard():
            row = self._conn.execute(
                "SELECT tenant_id, user_email, device_id, created_at, expires_at, revoked FROM sessions"
                " WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None or row[5]:
            return None
        expires = _dt(str(row[4]))
        if expires <= _dt(_ts(now)):
            return None
        return Session(token_hash=token_hash, tenant_id=str(row[0]), user_email=str(row[1]),
                       device_id=None if row[2] is None else str(row[2]), created_at=_dt(str(row[3])),
                       expires_at=expires, revoked=False)

    def revoke_session(self, token_hash: bytes) -> bool:
        with self._guard():
            cursor = self._conn.execute("UPDATE sessions SET revoked = 1 WHERE token_hash = ?", (token_hash,))
        return cursor.rowcount > 0

    def purge_sessions(self, now: datetime) -> int:
        """Delete expired and revoked sessions; returns how many."""
        with self._guard():
            cursor = self._conn.execute("DELETE FROM sessions WHERE revoked = 1 OR expires_at <= ?",
                                        (_ts(now),))
        return cursor.rowcount

    # -- assertion replay cache ----------------------------------------------

    def check_and_remember(self, issuer: str, assertion_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """True, remembering (issuer, assertion id) until ``expires_at``, when it is new; False for a replay.

        The :class:`bridge.idp.assertion.ReplayCache` of the IdP clients.  One
        statement, atomic across processes sharing the database (the server and a
        ``loginbridge check``): a row whose expiry has passed counts as absent
        and is renewed.  Every ``REPLAY_PRUNE_EVERY`` calls, up to
        ``REPLAY_PRUNE_BATCH`` expired rows are deleted through the expiry index.
        """
        now_text = _ts(now)
        with self._guard():
            cursor = self._conn.execute(
                "INSERT INTO seen_assertions (issuer, assertion_id, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (issuer, assertion_id) DO UPDATE SET expires_at = excluded.expires_at"
                " WHERE seen_assertions.expires_at <= ?",
                (issuer, assertion_id, _ts(expires_at), now_text))
        fresh = cursor.rowcount == 1
        self._replay_inserts += 1
        if self._replay_inserts >= REPLAY_PRUNE_EVERY:
            self._replay_inserts = 0
            self.prune_seen_assertions(now, limit=REPLAY_PRUNE_BATCH)
        return fresh

    def prune_seen_assertions(self, now: datetime, *, limit: int | None = None) -> int:
        """Delete remembered assertions that expired by ``now`` (at most ``limit``); returns how many."""
        bound = -1 if limit is None else max(int(limit), 0)
        with self._guard():
            cursor = self._conn.execute(_PRUNE_SEEN, (_ts(now), bound))
        return cursor.rowcount

    def seen_assertion_count(self) -> int:
        with self._guard():
            return int(self._conn.execute("SELECT count(*) FROM seen_assertions").fetchone()[0])

    # -- audit trail ----------------------------------------------------------

    def add_audit_event(self, event: AuditEvent) -> int:
        """Append one audit event; returns its id."""
        with self._guard():
            cursor = self._conn.execute(
                "INSERT INTO audit_events (at, kind, result, tenant_id, device_id, mode, email, source,"
                " idp_latency_ms, request_id, distinct_users) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_ts(event.at), event.kind.value, event.result, event.tenant_id, event.device_id, event.mode,
                 event.email, event.source, event.idp_latency_ms, event.request_id, event.distinct_users))
        return int(cursor.lastrowid or 0)

    def audit_events(self, *, tenant_id: str | None = None, after_id: int = 0,
                     last: int | None = None) -> list[AuditEvent]:
        """Events in id order: those after ``after_id``, or only the ``last`` ones."""
        where = "WHERE id > ?"
        args: list[int | str] = [after_id]
        if tenant_id is not None:
            where += " AND tenant_id = ?"
            args.append(tenant_id)
        query = f"SELECT {_AUDIT_COLUMNS} FROM audit_events {where} ORDER BY id"  # noqa: S608 (fixed text)
        if last is not None:
            query = f"SELECT * FROM ({query} DESC LIMIT {int(last):d}) ORDER BY id"  # noqa: S608
        with self._guard():
            rows = self._conn.execute(query, args).fetchall()
        return [AuditEvent(id=int(r[0]), at=_dt(str(r[1])), kind=AuditKind(r[2]), result=str(r[3]),
                           tenant_id=r[4], device_id=r[5], mode=r[6], email=r[7], source=r[8],
                           idp_latency_ms=r[9], request_id=r[10], distinct_users=r[11]) for r in rows]
