"""The sync's plan, without a directory or a database: entries + accounts -> what to do and why."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from bridge.directory.plan import (
    REFUSED_DUPLICATE,
    REFUSED_INVALID_EMAIL,
    REFUSED_NO_EMAIL,
    REFUSED_NO_STATE,
    REFUSED_NO_USERNAME,
    REFUSED_OUTSIDE_DOMAINS,
    Action,
    Change,
    DirectoryEntry,
    plan_sync,
)
from bridge.state.records import User

DOMAINS = ("example.com",)


def entry(uid: str, *, email: str | None = "", disabled: bool | None = False, name: str | None = None,
          username: str | None = "") -> DirectoryEntry:
    return DirectoryEntry(dn=f"uid={uid},ou=people,dc=example,dc=com",
                          email=f"{uid}@example.com" if email == "" else email,
                          username=uid if username == "" else username,
                          display_name=name if name is not None else uid.title(), disabled=disabled)


def user(uid: str, *, enabled: bool = True, name: str | None = None, username: str | None = None,
         email: str | None = None) -> User:
    return User(tenant_id="example", email=email or f"{uid}@example.com", username=username or uid,
                display_name=name if name is not None else uid.title(), group="", enabled=enabled,
                has_password=False, twofa_enabled=False, language=None, fax_number=None,
                created_at=datetime(2024, 1, 1, tzinfo=UTC))


def actions(changes: Iterable[Change]) -> dict[str, str]:
    return {c.email.lower(): c.action.value for c in changes}


def test_new_enabled_entries_are_created_without_a_password_disabled_ones_are_not() -> None:
    plan = plan_sync("example", DOMAINS, [entry("alice"), entry("bob", disabled=True)], [])
    assert actions(plan.changes) == {"alice@example.com": "created", "bob@example.com": "unchanged"}
    created = plan.of(Action.CREATE)[0]
    assert (created.username, created.display_name) == ("alice", "Alice")
    assert plan.summary() == ("directory sync example: 2 entries, created 1, updated 0, re-enabled 0, disabled 0,"
                              " unchanged 1, refused 0")


def test_names_are_updated_and_matching_ignores_the_case_of_the_address() -> None:
    entries = [entry("alice", email="Alice@Example.COM", name="Alice Liddell"), entry("bob", username="bobby")]
    plan = plan_sync("example", DOMAINS, entries, [user("alice"), user("bob")])
    by_email = {c.email: c for c in plan.changes}
    assert by_email["alice@example.com"].action is Action.UPDATE
    assert by_email["alice@example.com"].display_name == "Alice Liddell"
    assert "display name 'Alice' -> 'Alice Liddell'" in by_email["alice@example.com"].reason
    assert by_email["bob@example.com"].action is Action.UPDATE
    assert by_email["bob@example.com"].username == "bobby"
    assert plan.count(Action.UNCHANGED) == 0


def test_disabled_in_the_directory_or_gone_is_disabled_never_deleted() -> None:
    plan = plan_sync("example", DOMAINS, [entry("alice", disabled=True)],
                     [user("alice"), user("carol"), user("dave", enabled=False)])
    by_email = {c.email: c for c in plan.changes}
    assert by_email["alice@example.com"].action is Action.DISABLE
    assert by_email["alice@example.com"].reason == "disabled in the directory"
    assert by_email["carol@example.com"].action is Action.DISABLE
    assert by_email["carol@example.com"].reason == "not in the directory"
    assert by_email["dave@example.com"].action is Action.UNCHANGED
    assert set(Action) - {Action.REFUSED} >= {c.action for c in plan.changes}  # no other kind of change exists


def test_re_enabled_only_when_the_sync_disabled_it() -> None:
    users = [user("alice", enabled=False), user("bob", enabled=False, name="Old")]
    plan = plan_sync("example", DOMAINS, [entry("alice"), entry("bob")], users, disabled_by_sync={"BOB@example.com"})
    by_email = {c.email: c for c in plan.changes}
    assert by_email["alice@example.com"].action is Action.UNCHANGED
    assert "left disabled" in by_email["alice@example.com"].reason
    assert by_email["bob@example.com"].action is Action.ENABLE
    assert by_email["bob@example.com"].display_name == "Bob"  # the names come along


def test_refused_rows_carry_their_reason_and_protect_their_account() -> None:
    entries = [
        entry("ext", email="ext@other.org"),
        entry("nomail", email=None),
        entry("bad", email="not an address"),
        entry("dup1", email="shared@example.com"),
        entry("dup2", email="SHARED@example.com"),
        entry("nouser", username=None),
        entry("nostate", disabled=None),
    ]
    users = [user("shared"), user("nouser"), user("nostate")]
    plan = plan_sync("example", DOMAINS, entries, users)
    refused = plan.of(Action.REFUSED)
    assert sorted(c.refusal or "" for c in refused) == sorted([
        REFUSED_OUTSIDE_DOMAINS, REFUSED_NO_EMAIL, REFUSED_INVALID_EMAIL, REFUSED_DUPLICATE, REFUSED_DUPLICATE,
        REFUSED_NO_USERNAME, REFUSED_NO_STATE])
    outside = next(c for c in refused if c.refusal == REFUSED_OUTSIDE_DOMAINS)
    assert outside.reason == "other.org is not one of the tenant's domains (example.com)"
    assert outside.line() == ("refused: ext@other.org [uid=ext,ou=people,dc=example,dc=com]: other.org is not one"
                              " of the tenant's domains (example.com)")
    # An account whose entry was refused is not "missing from the directory": nothing disables it.
    assert plan.count(Action.DISABLE) == 0
    assert plan.summary().endswith(
        "refused 7 (2 sharing an email address, 1 outside the tenant's domains, 1 with an invalid email address,"
        " 1 without a readable disabled state, 1 without a user name, 1 without an email address)")


def test_an_unchanged_directory_plans_nothing() -> None:
    users = [user("alice"), user("bob")]
    plan = plan_sync("example", DOMAINS, [entry("alice"), entry("bob")], users)
    assert plan.is_empty and plan.count(Action.UNCHANGED) == 2
    assert plan.summary(dry_run=True).startswith("directory sync example (dry run): 2 entries, created 0")
