"""What a directory sync would do: directory entries + the tenant's accounts -> a plan. No I/O here.

Rules (docs/directory.md):

- an enabled entry without an account gets one, with no password (SSO accounts sign in at the IdP);
  a disabled entry without an account gets none;
- an entry whose user name or display name differs from its account updates the account;
- an account whose entry is disabled, or that has no entry any more, is disabled (its sessions end);
  it is never deleted;
- a disabled account whose entry is enabled again is re-enabled only if the sync disabled it
  (``disabled_by_sync``); one disabled by an administrator stays disabled;
- an entry that cannot become an account is refused with its reason (no email address, an address
  outside the tenant's domains, two entries with one address, no user name ...). An account whose
  address a refused entry holds is left alone: a refused entry is not a missing one.

Accounts are matched on the email address, case-insensitively (the store's key).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge.errors import RequestError
from bridge.state.records import User, normalize_email

__all__ = [
    "REFUSED_DUPLICATE",
    "REFUSED_INVALID_EMAIL",
    "REFUSED_NO_EMAIL",
    "REFUSED_NO_STATE",
    "REFUSED_NO_USERNAME",
    "REFUSED_OUTSIDE_DOMAINS",
    "Action",
    "Change",
    "DirectoryEntry",
    "SyncPlan",
    "plan_sync",
]

# The refusal kinds, as the summary line groups them.
REFUSED_NO_EMAIL = "without an email address"
REFUSED_INVALID_EMAIL = "with an invalid email address"
REFUSED_OUTSIDE_DOMAINS = "outside the tenant's domains"
REFUSED_DUPLICATE = "sharing an email address"
REFUSED_NO_USERNAME = "without a user name"
REFUSED_NO_STATE = "without a readable disabled state"


@dataclass(frozen=True, kw_only=True, slots=True)
class DirectoryEntry:
    """One user entry as the attribute mapping read it (None: the attribute is missing)."""

    dn: str
    email: str | None
    username: str | None
    display_name: str = ""
    disabled: bool | None = False  # None: the disabled rule could not be read (e.g. no userAccountControl)


class Action(enum.Enum):
    CREATE = "created"
    UPDATE = "updated"
    ENABLE = "re-enabled"
    DISABLE = "disabled"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """One line of the plan. ``username``/``display_name`` are the values to write (create, update, re-enable)."""

    action: Action
    email: str  # the account's address; for a refused entry what the entry held ("" when nothing)
    dn: str | None  # None: an account with no entry
    reason: str
    username: str | None = None
    display_name: str | None = None
    refusal: str | None = None  # one of the REFUSED_* kinds

    def line(self) -> str:
        who = self.email or "(no email)"
        where = f" [{self.dn}]" if self.dn else ""
        return f"{self.action.value}: {who}{where}: {self.reason}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncPlan:
    tenant_id: str
    entries: int  # directory entries read
    changes: tuple[Change, ...]

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)

    def of(self, action: Action) -> list[Change]:
        return [change for change in self.changes if change.action is action]

    @property
    def is_empty(self) -> bool:
        """Nothing to write."""
        return all(change.action in (Action.UNCHANGED, Action.REFUSED) for change in self.changes)

    def summary(self, *, dry_run: bool = False) -> str:
        """``directory sync example: 312 entries, created 5, updated 2, re-enabled 0, disabled 3, unchanged 300,
        refused 2 (2 outside the tenant's domains)``."""
        head = f"directory sync {self.tenant_id}{' (dry run)' if dry_run else ''}"
        counts = ", ".join(f"{action.value} {self.count(action)}" for action in Action)
        refusals = Counter(change.refusal for change in self.changes if change.action is Action.REFUSED)
        why = ", ".join(f"{n} {kind}" for kind, n in sorted(refusals.items(), key=lambda kv: (-kv[1], str(kv[0]))))
        return f"{head}: {self.entries} entries, {counts}" + (f" ({why})" if why else "")


def _refuse(entry: DirectoryEntry, kind: str, reason: str) -> Change:
    return Change(action=Action.REFUSED, email=(entry.email or "").strip(), dn=entry.dn, reason=reason, refusal=kind)


def plan_sync(tenant_id: str, domains: Sequence[str], entries: Iterable[DirectoryEntry], users: Iterable[User], *,
              disabled_by_sync: Iterable[str] = ()) -> SyncPlan:
    """The plan for one tenant. ``disabled_by_sync``: addresses (any case) of accounts the sync itself disabled."""
    entries = list(entries)
    accounts = {normalize_email(user.email): user for user in users}
    ours = {address.strip().lower() for address in disabled_by_sync}
    allowed = {domain.lower().rstrip(".") for domain in domains}
    changes: list[Change] = []
    held: set[str] = set()  # addresses some entry holds (valid or refused): never "missing"

    valid: dict[str, list[DirectoryEntry]] = {}
    for entry in entries:
        raw = (entry.email or "").strip()
        if not raw:
            changes.append(_refuse(entry, REFUSED_NO_EMAIL, "no email address"))
            continue
        try:
            email_lc = normalize_email(raw)
        except RequestError:
            changes.append(_refuse(entry, REFUSED_INVALID_EMAIL, f"{raw!r} is not an email address"))
            continue
        held.add(email_lc)
        domain = email_lc.rsplit("@", 1)[1]
        if domain not in allowed:
            changes.append(_refuse(entry, REFUSED_OUTSIDE_DOMAINS,
                                   f"{domain} is not one of the tenant's domains ({', '.join(sorted(allowed))})"))
            continue
        valid.setdefault(email_lc, []).append(entry)

    for email_lc, same in valid.items():
        if len(same) > 1:  # which one is "the" user is not for the sync to guess
            dns = "; ".join(e.dn for e in same)
            changes.extend(_refuse(e, REFUSED_DUPLICATE, f"{len(same)} entries have this address ({dns})")
                           for e in same)
            continue
        entry = same[0]
        username = (entry.username or "").strip()
        if not username:
            changes.append(_refuse(entry, REFUSED_NO_USERNAME, "no user name"))
            continue
        if entry.disabled is None:
            changes.append(_refuse(entry, REFUSED_NO_STATE, "cannot tell whether it is disabled"))
            continue
        changes.append(_plan_entry(entry, username, accounts.get(email_lc), email_lc in ours))

    for email_lc, user in accounts.items():
        if email_lc in held:
            continue
        if user.enabled:
            changes.append(Change(action=Action.DISABLE, email=user.email, dn=None, reason="not in the directory"))
        else:
            changes.append(Change(action=Action.UNCHANGED, email=user.email, dn=None,
                                  reason="not in the directory, already disabled"))
    return SyncPlan(tenant_id=tenant_id, entries=len(entries), changes=tuple(changes))


def _plan_entry(entry: DirectoryEntry, username: str, user: User | None, disabled_by_sync: bool) -> Change:
    email = (entry.email or "").strip()
    display_name = entry.display_name.strip()
    if user is None:
        if entry.disabled:
            return Change(action=Action.UNCHANGED, email=email, dn=entry.dn,
                          reason="disabled in the directory, no account (none created)")
        return Change(action=Action.CREATE, email=email, dn=entry.dn, reason="new in the directory",
                      username=username, display_name=display_name)
    if entry.disabled:
        if user.enabled:
            return Change(action=Action.DISABLE, email=user.email, dn=entry.dn, reason="disabled in the directory")
        return Change(action=Action.UNCHANGED, email=user.email, dn=entry.dn, reason="disabled")
    differences = []
    if user.username != username:
        differences.append(f"user name {user.username!r} -> {username!r}")
    if user.display_name != display_name:
        differences.append(f"display name {user.display_name!r} -> {display_name!r}")
    names = {"username": username, "display_name": display_name} if differences else {}
    if not user.enabled:
        if disabled_by_sync:
            return Change(action=Action.ENABLE, email=user.email, dn=entry.dn,
                          reason="enabled again in the directory" + "".join(f"; {d}" for d in differences), **names)
        return Change(action=Action.UNCHANGED, email=user.email, dn=entry.dn,
                      reason="disabled outside the directory sync: left disabled")
    if differences:
        return Change(action=Action.UPDATE, email=user.email, dn=entry.dn, reason="; ".join(differences), **names)
    return Change(action=Action.UNCHANGED, email=user.email, dn=entry.dn, reason="up to date")
