"""Phone pairing in the store (migration 13): pairings, browser sign-ins and badge bindings.

Every secret arrives here already hashed by the login core (bridge/login/pairing.py):
the device code and the browser cookie as SHA-256 (256 random bits: no guessing), the
user code and the badge as keyed HMACs (a user code has about 34 bits and a badge id may be
printed on the card: a leaked table must not be searchable offline). So the tables hold
nothing a device, a phone or a badge reader could present.

The state changes are conditional single statements (``UPDATE ... WHERE status = ...``),
so two instances behind a balancer never both approve, consume or finish the same row:
the one whose statement changed a row wins.

- ``pairings``: one per device request; ``pending`` until the phone confirms
  (``confirmed``), then ``approved`` (with the signed-in user's email) or ``denied``;
  ``consumed`` when the device's poll has taken its session. A device holds one live pairing: a new
  request retires the older ones.
- ``browser_signins``: one per redirect to the IdP (a pairing's, or ``/v1/web/login``'s).
  The IdP's POST names it by its ``state`` (SAML RelayState / WS-Fed wctx); the subject the
  assertion proved is recorded, and only the browser holding the cookie the sign-in was bound to
  can finish it (a victim's browser sent to the IdP with an attacker's state cannot).
- ``badge_bindings``: badge → user, until ``expires_at``; deleted with the user's sessions when the
  user is disabled or deleted.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge.errors import StoreConflict, StoreError
from bridge.state.db import Database, Row
from bridge.state.records import _dt, _now, _ts, normalize_email, tenant_user_filter

log = logging.getLogger(__name__)

KEEP_FINISHED = timedelta(hours=1)  # an expired pairing still answers expired_token (not invalid_grant) this long
_PAIRING_COLUMNS = ("id, tenant_id, device_id, badge_hash, status, email, created_at, expires_at, interval_seconds,"
                    " last_poll_at")
_SIGNIN_COLUMNS = ("id, tenant_id, purpose, pairing_id, request_id, email, return_to, created_at, expires_at, subject,"
                   " finished")
_BADGE_COLUMNS = "id, tenant_id, email, device_id, created_at, expires_at, last_used_at"


class PairingStatus(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"  # the phone said "yes, this device"; the IdP sign-in is under way
    APPROVED = "approved"  # the IdP proved the user; the device's next poll gets the session
    DENIED = "denied"  # the phone said "no", or the IdP refused
    CONSUMED = "consumed"  # the device took its session (codes are single-use)


class SigninPurpose(enum.Enum):
    PAIRING = "pairing"
    WEB = "web"
    PRINT = "print"  # /print/setup for an account no password can sign in: the personal printer URL


@dataclass(frozen=True, kw_only=True, slots=True)
class Pairing:
    id: int
    tenant_id: str
    device_id: str
    badge_hash: bytes | None = field(repr=False)
    status: PairingStatus
    email: str | None
    created_at: datetime
    expires_at: datetime
    interval: int
    last_poll_at: datetime | None

    def live(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True, kw_only=True, slots=True)
class BrowserSigninRecord:
    id: int
    tenant_id: str
    purpose: SigninPurpose
    pairing_id: int | None
    request_id: str | None
    email: str | None  # /v1/web/login: the address the sign-in must prove
    return_to: str | None
    created_at: datetime
    expires_at: datetime
    subject: str | None  # what the IdP's assertion proved (set by the ACS)
    finished: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class BadgeBinding:
    id: int
    tenant_id: str
    email: str
    device_id: str | None  # the device the pairing was made at
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


def _opt_dt(value: object) -> datetime | None:
    return None if value is None else _dt(str(value))


def _pairing(row: Row) -> Pairing:
    return Pairing(id=int(row[0]), tenant_id=str(row[1]), device_id=str(row[2]),
                   badge_hash=None if row[3] is None else bytes(row[3]), status=PairingStatus(str(row[4])),
                   email=None if row[5] is None else str(row[5]), created_at=_dt(str(row[6])),
                   expires_at=_dt(str(row[7])), interval=int(row[8]), last_poll_at=_opt_dt(row[9]))


def _signin(row: Row) -> BrowserSigninRecord:
    return BrowserSigninRecord(
        id=int(row[0]), tenant_id=str(row[1]), purpose=SigninPurpose(str(row[2])),
        pairing_id=None if row[3] is None else int(row[3]), request_id=None if row[4] is None else str(row[4]),
        email=None if row[5] is None else str(row[5]), return_to=None if row[6] is None else str(row[6]),
        created_at=_dt(str(row[7])), expires_at=_dt(str(row[8])), subject=None if row[9] is None else str(row[9]),
        finished=bool(row[10]))


def _badge(row: Row) -> BadgeBinding:
    return BadgeBinding(id=int(row[0]), tenant_id=str(row[1]), email=str(row[2]),
                        device_id=None if row[3] is None else str(row[3]), created_at=_dt(str(row[4])),
                        expires_at=_dt(str(row[5])), last_used_at=_opt_dt(row[6]))


# -- pairings ------------------------------------------------------------------------------------


async def create_pairing(db: Database, *, device_code_hash: bytes, user_code_hash: bytes, tenant_id: str,
                         device_id: str, badge_hash: bytes | None, lifetime: timedelta, interval: int,
                         now: datetime | None = None) -> Pairing:
    """Store a new pairing; the device's older live pairings are retired in the same transaction.

    StoreConflict when the user code's hash is taken (the caller draws another code).
    """
    when = now or _now()
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM pairings WHERE expires_at <= ?", (_ts(when - KEEP_FINISHED),))
        await tx.execute(
            "UPDATE pairings SET status = ?, expires_at = ? WHERE device_id = ? AND status IN (?, ?)"
            " AND expires_at > ?",
            (PairingStatus.DENIED.value, _ts(when), device_id, PairingStatus.PENDING.value,
             PairingStatus.CONFIRMED.value, _ts(when)))
        row = await tx.fetchone(
            "INSERT INTO pairings (device_code_hash, user_code_hash, tenant_id, device_id, badge_hash, status,"  # noqa: S608
            " created_at, expires_at, interval_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" RETURNING {_PAIRING_COLUMNS}",
            (device_code_hash, user_code_hash, tenant_id, device_id, badge_hash, PairingStatus.PENDING.value,
             _ts(when), _ts(when + lifetime), interval))
    if row is None:
        raise StoreError("the database returned no row for a new pairing")
    return _pairing(row)


async def pairing_by_device_code(db: Database, device_code_hash: bytes) -> Pairing | None:
    row = await db.fetchone(f"SELECT {_PAIRING_COLUMNS} FROM pairings WHERE device_code_hash = ?",  # noqa: S608
                            (device_code_hash,))
    return None if row is None else _pairing(row)


async def pairing_by_user_code(db: Database, user_code_hash: bytes) -> Pairing | None:
    row = await db.fetchone(f"SELECT {_PAIRING_COLUMNS} FROM pairings WHERE user_code_hash = ?",  # noqa: S608
                            (user_code_hash,))
    return None if row is None else _pairing(row)


async def get_pairing(db: Database, pairing_id: int) -> Pairing | None:
    row = await db.fetchone(f"SELECT {_PAIRING_COLUMNS} FROM pairings WHERE id = ?", (pairing_id,))  # noqa: S608
    return None if row is None else _pairing(row)


async def note_poll(db: Database, pairing_id: int, *, now: datetime, interval: int) -> None:
    """Remember this poll (and the interval the device must keep from now on)."""
    await db.execute("UPDATE pairings SET last_poll_at = ?, interval_seconds = ? WHERE id = ?",
                     (_ts(now), interval, pairing_id))


async def move_pairing(db: Database, pairing_id: int, *, from_: tuple[PairingStatus, ...], to: PairingStatus,
                       now: datetime, email: str | None = None) -> bool:
    """Change the status when it is one of ``from_`` and the pairing has not expired; True when this call did it."""
    marks = ", ".join("?" for _ in from_)
    sql = (f"UPDATE pairings SET status = ?, email = COALESCE(?, email) WHERE id = ? AND status IN ({marks})"  # noqa: S608
           " AND expires_at > ?")
    changed = await db.execute(sql, (to.value, email, pairing_id, *(s.value for s in from_), _ts(now)))
    return changed == 1


async def consume_pairing(db: Database, pairing_id: int) -> bool:
    """The device takes its session: approved → consumed, once (expiry does not matter once approved)."""
    changed = await db.execute("UPDATE pairings SET status = ? WHERE id = ? AND status = ?",
                               (PairingStatus.CONSUMED.value, pairing_id, PairingStatus.APPROVED.value))
    return changed == 1


# -- browser sign-ins ------------------------------------------------------------------------------


async def create_signin(db: Database, *, state_hash: bytes, browser_hash: bytes, tenant_id: str,
                        purpose: SigninPurpose, pairing_id: int | None, request_id: str | None, email: str | None,
                        return_to: str | None, lifetime: timedelta, now: datetime | None = None) -> int:
    when = now or _now()
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM browser_signins WHERE expires_at <= ?", (_ts(when - KEEP_FINISHED),))
        try:
            value = await tx.fetchval(
                "INSERT INTO browser_signins (state_hash, browser_hash, tenant_id, purpose, pairing_id, request_id,"
                " email, return_to, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (state_hash, browser_hash, tenant_id, purpose.value, pairing_id, request_id, email, return_to,
                 _ts(when), _ts(when + lifetime)))
        except StoreConflict as exc:  # pragma: no cover (256 random bits)
            raise StoreError("a browser sign-in state was drawn twice") from exc
    if value is None:
        raise StoreError("the database returned no id for a browser sign-in")
    return int(str(value))


async def signin_by_state(db: Database, state_hash: bytes) -> BrowserSigninRecord | None:
    row = await db.fetchone(f"SELECT {_SIGNIN_COLUMNS} FROM browser_signins WHERE state_hash = ?",  # noqa: S608
                            (state_hash,))
    return None if row is None else _signin(row)


async def get_signin(db: Database, signin_id: int) -> BrowserSigninRecord | None:
    row = await db.fetchone(f"SELECT {_SIGNIN_COLUMNS} FROM browser_signins WHERE id = ?", (signin_id,))  # noqa: S608
    return None if row is None else _signin(row)


async def record_subject(db: Database, signin_id: int, subject: str, *, now: datetime) -> bool:
    """The IdP's validated answer: the subject, once, before the sign-in expires."""
    changed = await db.execute(
        "UPDATE browser_signins SET subject = ? WHERE id = ? AND subject IS NULL AND finished = 0 AND expires_at > ?",
        (subject, signin_id, _ts(now)))
    return changed == 1


async def finish_signin(db: Database, signin_id: int, *, browser_hash: bytes, now: datetime,
                        code_hash: bytes | None = None, code_lifetime: timedelta = timedelta(seconds=60)) -> bool:
    """Close the sign-in from the browser it was bound to; True when this call did (once).

    ``code_hash``: the one-time code ``/v1/web/login`` hands to ``return_to``, good for ``code_lifetime``.
    """
    changed = await db.execute(
        "UPDATE browser_signins SET finished = 1, code_hash = ?, expires_at = ? WHERE id = ? AND finished = 0"
        " AND browser_hash = ? AND subject IS NOT NULL AND expires_at > ?",
        (code_hash, _ts(now + code_lifetime), signin_id, browser_hash, _ts(now)))
    return changed == 1


async def take_code(db: Database, code_hash: bytes, *, now: datetime,
                    purpose: SigninPurpose = SigninPurpose.WEB) -> BrowserSigninRecord | None:
    """The finished sign-in of ``purpose`` a one-time code names, and the code is spent.

    None when unknown, used, expired, or made for another purpose (which leaves it unspent).
    """
    async with db.transaction() as tx:
        row = await tx.fetchone(f"SELECT {_SIGNIN_COLUMNS} FROM browser_signins "  # noqa: S608
                                "WHERE code_hash = ? AND purpose = ?", (code_hash, purpose.value))
        if row is None:
            return None
        record = _signin(row)
        if await tx.execute("UPDATE browser_signins SET code_hash = NULL WHERE id = ? AND code_hash = ?",
                            (record.id, code_hash)) != 1:
            return None
    return record if now < record.expires_at else None


# -- badge bindings ---------------------------------------------------------------------------------


async def bind_badge(db: Database, *, tenant_id: str, badge_hash: bytes, email: str, device_id: str | None,
                     lifetime: timedelta, now: datetime | None = None) -> BadgeBinding | None:
    """Bind a badge to an enabled user (replacing an earlier binding of the same badge in the tenant).

    The user check is inside the INSERT: a user disabled a moment before gets no binding (None),
    so no badge survives a disable that raced the pairing.
    """
    when = now or _now()
    email_lc = normalize_email(email)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM badge_bindings WHERE tenant_id = ? AND badge_hash = ?", (tenant_id, badge_hash))
        row = await tx.fetchone(
            "INSERT INTO badge_bindings (tenant_id, badge_hash, email, email_lc, device_id, created_at, expires_at)"  # noqa: S608
            " SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE tenant_id = ? AND email_lc = ?"
            f" AND enabled = 1) RETURNING {_BADGE_COLUMNS}",
            (tenant_id, badge_hash, email.strip(), email_lc, device_id, _ts(when), _ts(when + lifetime),
             tenant_id, email_lc))
    if row is None:
        log.info("no badge binding for %s in tenant %s: the user is disabled or gone", email_lc, tenant_id)
        return None
    binding = _badge(row)
    log.info("badge binding %s made for %s in tenant %s", binding.id, binding.email, tenant_id)
    return binding


async def resolve_badge(db: Database, *, tenant_id: str, badge_hash: bytes, now: datetime) -> BadgeBinding | None:
    """The live binding of this badge in the tenant (its last use noted), else None."""
    row = await db.fetchone(
        f"UPDATE badge_bindings SET last_used_at = ? WHERE tenant_id = ? AND badge_hash = ? AND expires_at > ?"  # noqa: S608
        f" RETURNING {_BADGE_COLUMNS}", (_ts(now), tenant_id, badge_hash, _ts(now)))
    return None if row is None else _badge(row)


async def list_badges(db: Database, *, tenant_id: str | None = None, email: str | None = None,
                      limit: int = 500) -> list[BadgeBinding]:
    """Bindings, newest first: all, one tenant's, or one user's (``email`` needs ``tenant_id``)."""
    clause, params = tenant_user_filter(tenant_id, email)
    rows = await db.fetchall(f"SELECT {_BADGE_COLUMNS} FROM badge_bindings{clause}"  # noqa: S608
                             " ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit))
    return [_badge(r) for r in rows]


async def revoke_badge(db: Database, binding_id: int, *, tenant_id: str | None = None) -> BadgeBinding | None:
    """Delete a binding (within ``tenant_id`` when given); the binding that was, or None."""
    async with db.transaction() as tx:
        row = await tx.fetchone(f"SELECT {_BADGE_COLUMNS} FROM badge_bindings WHERE id = ?",  # noqa: S608
                                (binding_id,))
        if row is None or (tenant_id is not None and str(row[1]) != tenant_id):
            return None
        await tx.execute("DELETE FROM badge_bindings WHERE id = ?", (binding_id,))
    binding = _badge(row)
    log.info("badge binding %s of %s in tenant %s revoked", binding.id, binding.email, binding.tenant_id)
    return binding


async def prune(db: Database, now: datetime) -> int:
    """Remove expired pairings, sign-ins (kept a little for clear answers) and bindings."""
    old = _ts(now - KEEP_FINISHED)
    removed = await db.execute("DELETE FROM pairings WHERE expires_at <= ?", (old,))
    removed += await db.execute("DELETE FROM browser_signins WHERE expires_at <= ?", (old,))
    removed += await db.execute("DELETE FROM badge_bindings WHERE expires_at <= ?", (_ts(now),))
    return removed
