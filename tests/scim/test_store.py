"""The store's side of SCIM and the API tokens (migration 8), on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.errors import RequestError
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.scim import NotProvisioned, Provisioning, ProvisioningConflict, StaleVersion, UserWrite
from bridge.state.store import Store
from bridge.state.tokens import create_token, list_tokens, revoke_token, verify_token
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]  # the real-server fixtures, used by name below

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await Store.open(store_url) as opened:
        yield opened


def write(email: str, *, username: str | None = None, enabled: bool = True, **resource: object) -> UserWrite:
    return UserWrite(email=email, username=username or email, display_name="", enabled=enabled, language=None,
                     fax_number=None, external_id=None, resource={"userName": username or email, **resource})


async def session(store: Store, email: str, token: bytes) -> None:
    await store.create_session(token_hash=token, tenant_id="t", user_email=email, device_id=None,
                               expires_at=datetime.now(UTC) + timedelta(hours=1))


async def test_schema_has_migration_8_and_the_audit_actor(store: Store) -> None:
    assert await store.schema_version() >= 8
    event = AuditEvent(at=T0, kind=AuditKind.PROVISIONING, result="user_created", tenant_id="t", mode="scim",
                       email="a@t.example", actor="entra\nprod")
    await store.add_audit_event(event)
    (back,) = await store.audit_events(tenant_id="t")
    assert (back.kind, back.actor, back.result) == (AuditKind.PROVISIONING, "entra\\u000aprod", "user_created")
    assert back.to_json()["actor"] == "entra\\u000aprod"


async def test_tokens(store: Store) -> None:
    db = store.database
    scim, plaintext = await create_token(db, kind="scim", name="entra-prod", tenant_id="t", now=T0)
    assert plaintext.startswith("lbscim_") and len(plaintext) >= 7 + 43
    row = await db.fetchone("SELECT token_hash FROM api_tokens WHERE id = ?", (scim.id,))
    assert row is not None and bytes(row[0]) == hashlib.sha256(plaintext.encode()).digest()
    verified = await verify_token(db, plaintext, kind="scim")
    assert verified is not None and (verified.id, verified.name, verified.tenant_id) == (scim.id, "entra-prod", "t")
    assert await verify_token(db, plaintext, kind="admin") is None
    assert await verify_token(db, plaintext + "x", kind="scim") is None
    assert await verify_token(db, "", kind="scim") is None
    used = (await list_tokens(db))[0]
    assert used.last_used_at is not None
    with pytest.raises(RequestError, match="already exists"):
        await create_token(db, kind="scim", name="entra-prod", tenant_id="t")
    with pytest.raises(RequestError, match="one tenant"):
        await create_token(db, kind="scim", name="x", tenant_id=None)
    admin, admin_plain = await create_token(db, kind="admin", name="ops", tenant_id=None)
    assert admin.tenant_id is None and admin_plain.startswith("lbadmin_")
    assert (await verify_token(db, admin_plain, kind="admin")) is not None
    assert [t.name for t in await list_tokens(db, kind="scim", tenant_id="t")] == ["entra-prod"]
    revoked = await revoke_token(db, scim.id, kind="scim")
    assert revoked.revoked_at is not None
    assert await verify_token(db, plaintext, kind="scim") is None
    with pytest.raises(RequestError):
        await revoke_token(db, admin.id, kind="scim")  # not a SCIM token
    await create_token(db, kind="scim", name="entra-prod", tenant_id="t")  # the name is free again


async def test_users_lifecycle(store: Store) -> None:
    prov = Provisioning(store.database)
    change = await prov.create_user("t", write("Dana@T.example", title="x"), now=T0)
    user = change.user
    assert (user.email, user.enabled, user.version, user.resource) == (
        "Dana@T.example", True, 1, {"userName": "Dana@T.example", "title": "x"})
    account = await store.get_user("t", "dana@t.example")
    assert account is not None and account.username == "Dana@T.example" and not account.has_password
    with pytest.raises(ProvisioningConflict) as taken:
        await prov.create_user("t", write("dana@t.example", username="other"))
    assert taken.value.attribute == "emails"
    with pytest.raises(ProvisioningConflict) as taken:
        await prov.create_user("t", write("d2@t.example", username="DANA@t.example"))
    assert taken.value.attribute == "userName"

    # Access ends with active false: sessions revoked and the printer's cached verifications dropped.
    await session(store, "dana@t.example", b"s" * 32)
    await store.database.execute(
        "INSERT INTO print_verified (key, tenant_id, email, email_lc, expires_at) VALUES (?, ?, ?, ?, ?)",
        (b"k" * 32, "t", "dana@t.example", "dana@t.example", T0 + timedelta(days=1)))
    change = await prov.update_user("t", user.scim_id, write("dana@t.example", enabled=False), expected_version=1)
    assert (change.deactivated, change.sessions_ended, change.user.version) == (True, 1, 2)
    assert await store.get_session(b"s" * 32, datetime.now(UTC)) is None
    assert int(await store.database.fetchval("SELECT count(*) FROM print_verified")) == 0
    with pytest.raises(StaleVersion):
        await prov.update_user("t", user.scim_id, write("dana@t.example"), expected_version=1)
    change = await prov.update_user("t", user.scim_id, write("dana@t.example"), expected_version=2)
    assert change.reactivated

    # A new address re-keys the account (same id) and ends its sessions.
    await session(store, "dana@t.example", b"u" * 32)
    change = await prov.update_user("t", user.scim_id, write("dana.new@t.example"), expected_version=None)
    assert (change.previous_email, change.sessions_ended, change.user.scim_id) == (
        "dana@t.example", 1, user.scim_id)
    assert await store.get_user("t", "dana@t.example") is None
    assert await store.get_user("t", "dana.new@t.example") is not None
    assert await store.get_session(b"u" * 32, datetime.now(UTC)) is None

    # DELETE: disabled, hidden, kept; provisioned again: a new id.
    await prov.deprovision_user("t", user.scim_id)
    with pytest.raises(NotProvisioned):
        await prov.get_user("t", user.scim_id)
    account = await store.get_user("t", "dana.new@t.example")
    assert account is not None and not account.enabled
    again = (await prov.create_user("t", write("dana.new@t.example"))).user
    assert again.scim_id != user.scim_id and again.enabled and again.version == 1


async def test_other_accounts_are_adopted_and_found(store: Store) -> None:
    prov = Provisioning(store.database)
    await store.add_user("t", email="alice@t.example", username="alice", display_name="Alice")
    await store.add_user("u", email="bob@u.example", username="bob")
    await prov.create_user("t", write("carol@t.example", username="carol"))
    await prov.create_user("t", write("dave@t.example", username="dave"))
    (alice,) = await prov.find_users("t", username="ALICE")
    assert alice.resource is None and alice.display_name == "Alice"
    assert (await prov.get_user("t", alice.scim_id)).email == "alice@t.example"
    with pytest.raises(NotProvisioned):
        await prov.get_user("u", alice.scim_id)  # another tenant's id
    assert [u.username for u in await prov.find_users("t", email="Carol@t.example")] == ["carol"]
    assert await prov.find_users("t", username="bob") == []
    total, page = await prov.list_users("t", offset=1, limit=2)
    assert (total, [u.username for u in page]) == (3, ["carol", "dave"])
    assert (await prov.list_users("t", limit=0)) == (3, [])
    assert (await prov.find_users("t", scim_id=alice.scim_id))[0].scim_id == alice.scim_id  # ids stay


async def test_groups(store: Store) -> None:
    from bridge.state.scim import GroupWrite

    prov = Provisioning(store.database)
    group = await prov.create_group("t", GroupWrite(display_name="Sales", external_id="g1", resource={"members": []}))
    assert [g.scim_id for g in await prov.list_groups("t")] == [group.scim_id]
    assert await prov.list_groups("u") == []
    updated = await prov.update_group("t", group.scim_id, GroupWrite(display_name="Sales EU", external_id=None,
                                                                       resource={}), expected_version=1)
    assert (updated.display_name, updated.version) == ("Sales EU", 2)
    with pytest.raises(StaleVersion):
        await prov.update_group("t", group.scim_id, GroupWrite(display_name="x", external_id=None, resource={}),
                                expected_version=1)
    with pytest.raises(NotProvisioned):
        await prov.delete_group("u", group.scim_id)
    await prov.delete_group("t", group.scim_id)
    assert await prov.list_groups("t") == []
