"""SCIM's view of the store: provisioned users and groups (tables of migration 8), on the store's database.

The account is still the ``users`` row, keyed by (tenant, email case-insensitively): what a device
signs in with. Beside it ``scim_users`` keeps what SCIM needs and the platform does not: a stable
opaque ``id`` (random, never reused, kept when the email changes), the ``externalId``, the SCIM
attributes as the identity provider last wrote them (JSON, never a password), a version, and the
deprovisioning mark of a DELETE. An account created another way (``users add``, a CSV import,
the directory sync) gets its id the first time SCIM lists the tenant, so an IdP matching on
``userName`` or ``emails`` finds it.

Every write that takes access away is one transaction with the change itself: deactivating an
account (``active: false``) or deprovisioning it (DELETE) disables it, revokes its sessions,
drops the Print-to-Web printer's cached verifications of its address and deletes its badge bindings;
a new email address (the account's key) ends them too, since they name the old one.

DELETE does not delete: the platform never loses data because an IdP said so. The account is
disabled, its access ended, and it disappears from SCIM (404 from then on); an administrator still
sees it (``users list``). Provisioning the same address again later gives it a new id and enables it.

This module knows no SCIM library: :mod:`bridge.scim` maps resources to :class:`UserWrite` /
:class:`GroupWrite` and back.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.errors import StoreConflict
from bridge.state.db import Connection, Database, Dialect, Row
from bridge.state.records import _dt, _now, _ts, normalize_email

log = logging.getLogger(__name__)

_USER_COLUMNS = ("s.scim_id, u.tenant_id, u.email, u.username, u.display_name, u.enabled, u.language, u.fax_number,"
                 " s.external_id, s.resource, s.version, s.created_at, s.updated_at")
_FROM_USERS = ("FROM scim_users s JOIN users u ON u.tenant_id = s.tenant_id AND u.email_lc = s.email_lc"
               " WHERE s.tenant_id = ? AND s.deleted_at IS NULL")
_SELECT_USERS = f"SELECT {_USER_COLUMNS} {_FROM_USERS}"
# SQLite's lower() folds ASCII only; PostgreSQL's by the collation: "C" gives the same answer (as the store does).
_SAME_USERNAME: dict[Dialect, str] = {
    "sqlite": "lower(u.username) = lower(?)",
    "postgres": 'lower(u.username COLLATE "C") = lower(CAST(? AS TEXT) COLLATE "C")',
}
_UNADOPTED = ("SELECT u.email_lc FROM users u WHERE u.tenant_id = ? AND NOT EXISTS"
              " (SELECT 1 FROM scim_users s WHERE s.tenant_id = u.tenant_id AND s.email_lc = u.email_lc)")
_ADOPT = ("INSERT INTO scim_users (tenant_id, email_lc, scim_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
          " ON CONFLICT (tenant_id, email_lc) DO NOTHING")
_END_SESSIONS = "UPDATE sessions SET revoked = 1 WHERE tenant_id = ? AND user_email_lc = ? AND revoked = 0"
_FORGET_PRINT = "DELETE FROM print_verified WHERE tenant_id = ? AND email_lc = ?"
_FORGET_BADGES = "DELETE FROM badge_bindings WHERE tenant_id = ? AND email_lc = ?"  # bridge/state/pairings.py
_FORGET_LINKS = "DELETE FROM printer_links WHERE tenant_id = ? AND email_lc = ?"  # bridge/state/printlinks.py
_GROUP_COLUMNS = "scim_id, tenant_id, display_name, external_id, resource, version, created_at, updated_at"


class NotProvisioned(LookupError):
    """No such user or group in the tenant (or it was deprovisioned)."""


class ProvisioningConflict(Exception):
    """A unique value is taken: ``attribute`` names it (``userName``, ``emails``)."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute


class StaleVersion(Exception):
    """The resource changed since it was read (If-Match, or a concurrent write)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProvisionedUser:
    scim_id: str
    tenant_id: str
    email: str
    username: str
    display_name: str
    enabled: bool
    language: str | None
    fax_number: str | None
    external_id: str | None
    resource: dict[str, Any] | None  # the SCIM attributes as last written; None: never written over SCIM
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class UserWrite:
    """What a SCIM create or update writes: the account's fields and the SCIM attributes (no password)."""

    email: str
    username: str
    display_name: str
    enabled: bool
    language: str | None
    fax_number: str | None
    external_id: str | None
    resource: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class UserChange:
    """What a write did (for the audit trail and the answer)."""

    user: ProvisionedUser
    sessions_ended: int = 0
    previous_email: str | None = None  # set when the email address (the account's key) changed
    deactivated: bool = False
    reactivated: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ProvisionedGroup:
    scim_id: str
    tenant_id: str
    display_name: str
    external_id: str | None
    resource: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupWrite:
    display_name: str
    external_id: str | None
    resource: dict[str, Any]


def new_scim_id() -> str:
    """A fresh opaque id: 128 random bits, hex."""
    return secrets.token_hex(16)


def _user(row: Row) -> ProvisionedUser:
    return ProvisionedUser(
        scim_id=str(row[0]), tenant_id=str(row[1]), email=str(row[2]), username=str(row[3]),
        display_name=str(row[4]), enabled=bool(row[5]), language=None if row[6] is None else str(row[6]),
        fax_number=None if row[7] is None else str(row[7]), external_id=None if row[8] is None else str(row[8]),
        resource=None if row[9] is None else json.loads(str(row[9])), version=int(row[10]),
        created_at=_dt(str(row[11])), updated_at=_dt(str(row[12])))


def _group(row: Row) -> ProvisionedGroup:
    return ProvisionedGroup(
        scim_id=str(row[0]), tenant_id=str(row[1]), display_name=str(row[2]),
        external_id=None if row[3] is None else str(row[3]), resource=json.loads(str(row[4])),
        version=int(row[5]), created_at=_dt(str(row[6])), updated_at=_dt(str(row[7])))


def _json(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


async def _end_access(tx: Connection, tenant_id: str, email_lc: str) -> int:
    """Revoke the account's sessions, drop the printer's cached verifications and delete its badge bindings (as
    Store.deactivate_user does: a badge must not sign the account in again if it is reactivated); returns the
    sessions ended."""
    ended = await tx.execute(_END_SESSIONS, (tenant_id, email_lc))
    await tx.execute(_FORGET_PRINT, (tenant_id, email_lc))
    await tx.execute(_FORGET_BADGES, (tenant_id, email_lc))
    await tx.execute(_FORGET_LINKS, (tenant_id, email_lc))
    return ended


class Provisioning:
    """SCIM's users and groups of the store's database (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._same_username = _SAME_USERNAME[db.dialect]

    # -- users: reading -----------------------------------------------------------------------------------

    async def adopt_users(self, tenant_id: str, *, now: datetime | None = None) -> int:
        """Give an id to the tenant's accounts that have none yet (made outside SCIM); returns how many."""
        rows = await self._db.fetchall(_UNADOPTED, (tenant_id,))
        if not rows:
            return 0
        when = _ts(now or _now())
        await self._db.batch([(_ADOPT, (tenant_id, str(row[0]), new_scim_id(), when, when)) for row in rows])
        return len(rows)

    async def get_user(self, tenant_id: str, scim_id: str) -> ProvisionedUser:
        row = await self._db.fetchone(_SELECT_USERS + " AND s.scim_id = ?", (tenant_id, scim_id))
        if row is None:
            raise NotProvisioned(f"no user {scim_id} in tenant {tenant_id}")
        return _user(row)

    async def find_users(self, tenant_id: str, *, scim_id: str | None = None, username: str | None = None,
                         email: str | None = None, external_id: str | None = None) -> list[ProvisionedUser]:
        """The users matching every given value (user name and email case-insensitively), by email."""
        await self.adopt_users(tenant_id)
        where: list[str] = []
        args: list[str] = [tenant_id]
        if scim_id is not None:
            where.append("s.scim_id = ?")
            args.append(scim_id)
        if username is not None:
            where.append(self._same_username)
            args.append(username.strip())
        if email is not None:
            where.append("s.email_lc = ?")
            args.append(email.strip().lower())
        if external_id is not None:
            where.append("s.external_id = ?")
            args.append(external_id)
        clause = "".join(f" AND {w}" for w in where)
        rows = await self._db.fetchall(f"{_SELECT_USERS}{clause} ORDER BY s.email_lc", args)
        return [_user(row) for row in rows]

    async def list_users(self, tenant_id: str, *, offset: int = 0,
                         limit: int | None = None) -> tuple[int, list[ProvisionedUser]]:
        """(how many the tenant has, one page of them in email order)."""
        await self.adopt_users(tenant_id)
        total = int(await self._db.fetchval(f"SELECT count(*) {_FROM_USERS}", (tenant_id,)))
        if limit is not None and limit <= 0:
            return total, []
        page = f" LIMIT {int(limit):d}" if limit is not None else f" LIMIT {max(total, 1):d}"
        rows = await self._db.fetchall(
            f"{_SELECT_USERS} ORDER BY s.email_lc{page} OFFSET {max(int(offset), 0):d}", (tenant_id,))
        return total, [_user(row) for row in rows]

    # -- users: writing -----------------------------------------------------------------------------------

    async def _check_username(self, tx: Connection, tenant_id: str, username: str, email_lc: str) -> None:
        taken = await tx.fetchval(
            "SELECT count(*) FROM users u LEFT JOIN scim_users s ON s.tenant_id = u.tenant_id"  # noqa: S608
            f" AND s.email_lc = u.email_lc WHERE u.tenant_id = ? AND {self._same_username} AND u.email_lc <> ?"
            " AND s.deleted_at IS NULL", (tenant_id, username, email_lc))
        if int(taken or 0):
            raise ProvisioningConflict("userName", f"the user name {username} is taken in tenant {tenant_id}")

    async def create_user(self, tenant_id: str, write: UserWrite, *, now: datetime | None = None) -> UserChange:
        """Provision an account: a new one, or (same address) one deprovisioned before, with a new id.

        ProvisioningConflict when a live account has this address or user name.
        """
        email_lc = normalize_email(write.email)
        when = _ts(now or _now())
        scim_id = new_scim_id()
        try:
            row = await self._create_user(tenant_id, email_lc, scim_id, write, when)
        except StoreConflict as exc:  # another request provisioned the same address meanwhile
            raise ProvisioningConflict("emails", f"a user with email {write.email} already exists in tenant "
                                                 f"{tenant_id}") from exc
        if row is None:
            raise NotProvisioned(f"user {scim_id} vanished while it was created")
        user = _user(row)
        log.info("SCIM: user %s provisioned in tenant %s (id %s)", user.email, tenant_id, scim_id)
        return UserChange(user=user)

    async def _create_user(self, tenant_id: str, email_lc: str, scim_id: str, write: UserWrite,
                           when: str) -> Row | None:
        async with self._db.transaction() as tx:
            await self._check_username(tx, tenant_id, write.username, email_lc)
            existing = await tx.fetchone(
                "SELECT s.deleted_at, s.scim_id FROM users u LEFT JOIN scim_users s ON s.tenant_id = u.tenant_id"
                " AND s.email_lc = u.email_lc WHERE u.tenant_id = ? AND u.email_lc = ?", (tenant_id, email_lc))
            if existing is not None and (existing[1] is None or existing[0] is None):
                raise ProvisioningConflict("emails", f"a user with email {write.email} already exists in tenant "
                                                     f"{tenant_id}")
            if existing is None:
                await tx.execute(
                    "INSERT INTO users (tenant_id, email, email_lc, username, display_name, group_name, enabled,"
                    " password_hash, twofa_enabled, language, fax_number, created_at)"
                    " VALUES (?, ?, ?, ?, ?, '', ?, NULL, 0, ?, ?, ?)",
                    (tenant_id, write.email.strip(), email_lc, write.username.strip(), write.display_name,
                     write.enabled, write.language, write.fax_number, when))
                await tx.execute(
                    "INSERT INTO scim_users (tenant_id, email_lc, scim_id, external_id, resource, version,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                    (tenant_id, email_lc, scim_id, write.external_id, _json(write.resource), when, when))
            else:  # deprovisioned earlier: provisioned again, as a new SCIM resource
                await self._write_account(tx, tenant_id, email_lc, write)
                await tx.execute(
                    "UPDATE scim_users SET scim_id = ?, external_id = ?, resource = ?, version = 1, created_at = ?,"
                    " updated_at = ?, deleted_at = NULL WHERE tenant_id = ? AND email_lc = ?",
                    (scim_id, write.external_id, _json(write.resource), when, when, tenant_id, email_lc))
            return await tx.fetchone(_SELECT_USERS + " AND s.scim_id = ?", (tenant_id, scim_id))

    @staticmethod
    async def _write_account(tx: Connection, tenant_id: str, email_lc: str, write: UserWrite) -> None:
        await tx.execute(
            "UPDATE users SET email = ?, username = ?, display_name = ?, enabled = ?, language = ?, fax_number = ?"
            " WHERE tenant_id = ? AND email_lc = ?",
            (write.email.strip(), write.username.strip(), write.display_name, write.enabled, write.language,
             write.fax_number, tenant_id, email_lc))

    async def update_user(self, tenant_id: str, scim_id: str, write: UserWrite, *, expected_version: int | None,
                          now: datetime | None = None) -> UserChange:
        """Replace a provisioned account's fields and SCIM attributes (PUT, or PATCH once applied).

        ``expected_version``: the version the change was computed from (StaleVersion when it moved on).
        A change of address re-keys the account and ends its sessions; ``enabled`` False ends them too.
        """
        new_lc = normalize_email(write.email)
        when = _ts(now or _now())
        async with self._db.transaction() as tx:
            current = await tx.fetchone(
                "SELECT s.email_lc, s.version, u.enabled, u.email FROM scim_users s JOIN users u"
                " ON u.tenant_id = s.tenant_id AND u.email_lc = s.email_lc"
                " WHERE s.tenant_id = ? AND s.scim_id = ? AND s.deleted_at IS NULL", (tenant_id, scim_id))
            if current is None:
                raise NotProvisioned(f"no user {scim_id} in tenant {tenant_id}")
            old_lc, version, was_enabled, old_email = str(current[0]), int(current[1]), bool(current[2]), current[3]
            if expected_version is not None and expected_version != version:
                raise StaleVersion(f"user {scim_id} is at version {version}, not {expected_version}")
            await self._check_username(tx, tenant_id, write.username, old_lc)
            ended = 0
            if new_lc != old_lc:
                taken = await tx.fetchval("SELECT count(*) FROM users WHERE tenant_id = ? AND email_lc = ?",
                                          (tenant_id, new_lc))
                if int(taken or 0):
                    raise ProvisioningConflict("emails", f"a user with email {write.email} already exists in tenant "
                                                         f"{tenant_id}")
                # The sessions name the old address (and reference it): they end, as the identity changed.
                ended = await tx.execute("DELETE FROM sessions WHERE tenant_id = ? AND user_email_lc = ?"
                                         " AND revoked = 0", (tenant_id, old_lc))
                await tx.execute("DELETE FROM sessions WHERE tenant_id = ? AND user_email_lc = ?", (tenant_id, old_lc))
                await tx.execute(_FORGET_PRINT, (tenant_id, old_lc))
                # A badge bound to the old address would sign in whoever is given that address later.
                await tx.execute(_FORGET_BADGES, (tenant_id, old_lc))
                await tx.execute(_FORGET_LINKS, (tenant_id, old_lc))
                await tx.execute("UPDATE users SET email_lc = ? WHERE tenant_id = ? AND email_lc = ?",
                                 (new_lc, tenant_id, old_lc))
                await tx.execute("UPDATE scim_users SET email_lc = ? WHERE tenant_id = ? AND scim_id = ?",
                                 (new_lc, tenant_id, scim_id))
            await self._write_account(tx, tenant_id, new_lc, write)
            if not write.enabled:
                ended += await _end_access(tx, tenant_id, new_lc)
            written = await tx.execute(
                "UPDATE scim_users SET external_id = ?, resource = ?, version = version + 1, updated_at = ?"
                " WHERE tenant_id = ? AND scim_id = ? AND version = ?",
                (write.external_id, _json(write.resource), when, tenant_id, scim_id, version))
            if written != 1:
                raise StaleVersion(f"user {scim_id} changed meanwhile")
            row = await tx.fetchone(_SELECT_USERS + " AND s.scim_id = ?", (tenant_id, scim_id))
        user = _user(row) if row is not None else None
        if user is None:
            raise NotProvisioned(f"user {scim_id} vanished while it was updated")
        change = UserChange(user=user, sessions_ended=ended,
                            previous_email=None if new_lc == old_lc else str(old_email),
                            deactivated=was_enabled and not write.enabled,
                            reactivated=write.enabled and not was_enabled)
        log.info("SCIM: user %s in tenant %s updated (id %s%s%s)", user.email, tenant_id, scim_id,
                 ", deactivated" if change.deactivated else "", f", {ended} sessions ended" if ended else "")
        return change

    async def deprovision_user(self, tenant_id: str, scim_id: str, *, expected_version: int | None = None,
                               now: datetime | None = None) -> UserChange:
        """DELETE: disable the account, end its access, hide it from SCIM; the account itself is kept."""
        when = _ts(now or _now())
        async with self._db.transaction() as tx:
            row = await tx.fetchone(_SELECT_USERS + " AND s.scim_id = ?", (tenant_id, scim_id))
            if row is None:
                raise NotProvisioned(f"no user {scim_id} in tenant {tenant_id}")
            user = _user(row)
            if expected_version is not None and expected_version != user.version:
                raise StaleVersion(f"user {scim_id} is at version {user.version}, not {expected_version}")
            email_lc = user.email.strip().lower()
            await tx.execute("UPDATE users SET enabled = 0 WHERE tenant_id = ? AND email_lc = ?", (tenant_id, email_lc))
            ended = await _end_access(tx, tenant_id, email_lc)
            await tx.execute("UPDATE scim_users SET deleted_at = ?, updated_at = ? WHERE tenant_id = ? AND scim_id = ?",
                             (when, when, tenant_id, scim_id))
        log.info("SCIM: user %s in tenant %s deprovisioned (disabled, %s sessions ended)", user.email, tenant_id,
                 ended)
        return UserChange(user=user, sessions_ended=ended, deactivated=user.enabled)

    # -- groups ---------------------------------------------------------------------------------------------

    async def get_group(self, tenant_id: str, scim_id: str) -> ProvisionedGroup:
        row = await self._db.fetchone(f"SELECT {_GROUP_COLUMNS} FROM scim_groups"  # noqa: S608 (fixed text)
                                      " WHERE tenant_id = ? AND scim_id = ?", (tenant_id, scim_id))
        if row is None:
            raise NotProvisioned(f"no group {scim_id} in tenant {tenant_id}")
        return _group(row)

    async def list_groups(self, tenant_id: str) -> list[ProvisionedGroup]:
        rows = await self._db.fetchall(f"SELECT {_GROUP_COLUMNS} FROM scim_groups"  # noqa: S608 (fixed text)
                                       " WHERE tenant_id = ? ORDER BY display_name, scim_id", (tenant_id,))
        return [_group(row) for row in rows]

    async def create_group(self, tenant_id: str, write: GroupWrite, *,
                           now: datetime | None = None) -> ProvisionedGroup:
        when = _ts(now or _now())
        row = await self._db.fetchone(
            "INSERT INTO scim_groups (scim_id, tenant_id, display_name, external_id, resource, version, created_at,"  # noqa: S608 (fixed text)
            f" updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?) RETURNING {_GROUP_COLUMNS}",
            (new_scim_id(), tenant_id, write.display_name, write.external_id, _json(write.resource), when, when))
        if row is None:
            raise NotProvisioned("the group was not stored")
        return _group(row)

    async def update_group(self, tenant_id: str, scim_id: str, write: GroupWrite, *, expected_version: int | None,
                           now: datetime | None = None) -> ProvisionedGroup:
        guard, args = ("", ()) if expected_version is None else (" AND version = ?", (expected_version,))
        row = await self._db.fetchone(
            "UPDATE scim_groups SET display_name = ?, external_id = ?, resource = ?, version = version + 1,"  # noqa: S608 (fixed text)
            f" updated_at = ? WHERE tenant_id = ? AND scim_id = ?{guard} RETURNING {_GROUP_COLUMNS}",
            (write.display_name, write.external_id, _json(write.resource), _ts(now or _now()), tenant_id, scim_id,
             *args))
        if row is None:
            await self.get_group(tenant_id, scim_id)  # NotProvisioned when it is not there
            raise StaleVersion(f"group {scim_id} changed meanwhile")
        return _group(row)

    async def delete_group(self, tenant_id: str, scim_id: str, *, expected_version: int | None = None) -> None:
        """A group is SCIM's own record (it changes no account): deleting it deletes it."""
        guard, args = ("", ()) if expected_version is None else (" AND version = ?", (expected_version,))
        if await self._db.execute(f"DELETE FROM scim_groups WHERE tenant_id = ? AND scim_id = ?{guard}",  # noqa: S608
                                  (tenant_id, scim_id, *args)) == 0:
            await self.get_group(tenant_id, scim_id)
            raise StaleVersion(f"group {scim_id} changed meanwhile")
