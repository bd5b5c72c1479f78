"""What the store holds, as the rest of the bridge sees it: users, devices, sessions, and their rules.

Frozen records and the checks that do not need a database (email form, device
ids, CSV columns, time encoding).  :mod:`bridge.state.store` keeps them in
SQLite or PostgreSQL.  Nothing here creates a user as a side effect of a login:
accounts exist only because an administrator created or imported them.
Secrets are stored hashed: device secrets (high-entropy, random) with SHA-256,
optional platform passwords with salted scrypt.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bridge.config import IPNetwork, TenantConfig
from bridge.errors import RequestError

log = logging.getLogger(__name__)

DB_FILENAME = "loginbridge.db"
SSO_TWOFA_REFUSED = (
    "accounts of an SSO tenant cannot use two-factor authentication on the platform: "
    "2FA is the identity provider's job"
)
MAX_CSV_BYTES = 16 * 1024 * 1024
_DUMMY_SECRET_HASH = hashlib.sha256(b"loginbridge: no such device").digest()
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(r"[^@\s\"<>(),;:\\\[\]]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")+")
_EXTRA = "\0extra"
TOUCH_INTERVAL = timedelta(seconds=60)  # last-seen precision (see bridge.state.store.Store.touch_device)
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")
MAX_LOCATION_CHARS = 128  # a line on a phone screen ("2nd floor print room, east wing")
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
    # Where the device stands ("Reception, ground floor"), set by its administrators: the phone shows it
    # before a user approves a pairing, so the user can tell the panel in front of them from another one.
    location: str = ""


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




# Version 2: the audit trail (bridge/state/audit.py); never a password or token.
# Version 3: the assertion replay cache (Store.check_and_remember).  Keyed by (issuer, assertion id);
# a row lives until the token's NotOnOrAfter plus the clock skew, and the expiry index lets expired
# rows be pruned a few at a time without scanning the table.
REPLAY_PRUNE_EVERY = 32  # remembered assertions between two prunes
REPLAY_PRUNE_BATCH = 128  # expired rows deleted at most per prune (4 per insert: the table cannot grow stale)


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


def check_location(location: str) -> str:
    """A device's location as stored: stripped, at most MAX_LOCATION_CHARS printable characters (it is shown on
    the phone that approves a pairing: no control or direction-changing characters); RequestError otherwise."""
    value = location.strip()
    if len(value) > MAX_LOCATION_CHARS or not value.isprintable():
        raise RequestError(f"a device location is at most {MAX_LOCATION_CHARS} printable characters "
                           "(no control characters)")
    return value


def tenant_user_filter(tenant_id: str | None, email: str | None) -> tuple[str, tuple[str, ...]]:
    """`` WHERE ...`` and its parameters for rows of every tenant, one tenant, or one user (email needs a tenant)."""
    if tenant_id is None:
        return "", ()
    if email is None:
        return " WHERE tenant_id = ?", (tenant_id,)
    return " WHERE tenant_id = ? AND email_lc = ?", (tenant_id, normalize_email(email))


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


