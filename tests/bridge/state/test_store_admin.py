"""The store methods of the admin API, on a SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.errors import RequestError
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.store import DeviceMode, Store
from tests.bridge.state.test_store import tenant
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await Store.open(store_url) as s:
        yield s


async def _session(store: Store, token: bytes, email: str, device_id: str | None = None) -> bytes:
    digest = hashlib.sha256(token).digest()
    await store.create_session(token_hash=digest, tenant_id="example", user_email=email, device_id=device_id,
                               expires_at=T0 + timedelta(hours=1), now=T0)
    return digest


async def _verified(store: Store, email: str) -> None:
    await store.database.execute(
        "INSERT INTO print_verified (key, tenant_id, email, email_lc, expires_at) VALUES (?, ?, ?, ?, ?)",
        (hashlib.sha256(email.encode()).digest(), "example", email, email.lower(), "2030-05-01T13:00:00.000000Z"))


async def _verified_count(store: Store) -> int:
    return int(await store.database.fetchval("SELECT count(*) FROM print_verified"))


async def test_update_user_changes_only_what_is_given(store: Store) -> None:
    await store.add_user(tenant(), email="Frank@example.com", username="frank", display_name="Frank", group="Staff",
                         language="en")
    user = await store.update_user("example", "FRANK@example.com", display_name="Frank Example", fax_number="+1555")
    assert (user.username, user.display_name, user.group, user.language, user.fax_number) == (
        "frank", "Frank Example", "Staff", "en", "+1555")
    user = await store.update_user("example", "frank@example.com", language="", username="frankie")
    assert (user.username, user.language) == ("frankie", None)
    assert (await store.update_user("example", "frank@example.com")).username == "frankie"
    with pytest.raises(RequestError, match="a user name is required"):
        await store.update_user("example", "frank@example.com", username=" ")
    with pytest.raises(RequestError, match=r"no user nobody@example\.com"):
        await store.update_user("example", "nobody@example.com", group="x")


async def test_deactivate_user_ends_sessions_and_printer_verifications(store: Store) -> None:
    await store.add_user(tenant(), email="frank@example.com", username="frank")
    await store.add_user(tenant(), email="grace@example.com", username="grace")
    frank = await _session(store, b"f", "frank@example.com")
    grace = await _session(store, b"g", "grace@example.com")
    await _verified(store, "frank@example.com")
    await _verified(store, "grace@example.com")
    assert await store.deactivate_user("example", "Frank@Example.com") == 1
    user = await store.get_user("example", "frank@example.com")
    assert user is not None and not user.enabled
    assert await store.get_session(frank, T0) is None
    assert await store.get_session(grace, T0) is not None
    assert await _verified_count(store) == 1
    with pytest.raises(RequestError, match="no user"):
        await store.deactivate_user("example", "nobody@example.com")


async def test_delete_user_takes_its_sessions_and_is_refused_for_a_shared_account(store: Store) -> None:
    await store.add_user(tenant(), email="frank@example.com", username="frank")
    await store.add_user(tenant(), email="desk@example.com", username="desk")
    await _session(store, b"f1", "frank@example.com")
    await store.revoke_session(await _session(store, b"f2", "frank@example.com"))
    await _verified(store, "frank@example.com")
    assert await store.delete_user("example", "FRANK@example.com") == 1  # the live one
    assert await store.get_user("example", "frank@example.com") is None
    assert await _verified_count(store) == 0
    assert await store.database.fetchval("SELECT count(*) FROM sessions") == 0
    await store.add_device("example", name="Lobby", mode="shared-account",
                           shared_user_email="desk@example.com", device_id="lobby")
    with pytest.raises(RequestError, match="device lobby signs in as"):
        await store.delete_user("example", "desk@example.com")
    assert await store.get_user("example", "desk@example.com") is not None
    with pytest.raises(RequestError, match="no user"):
        await store.delete_user("example", "frank@example.com")
    # The address can be provisioned again afterwards.
    await store.add_user(tenant(), email="frank@example.com", username="frank")


async def test_update_device_mode_rules_and_sessions(store: Store) -> None:
    await store.add_user(tenant(), email="desk@example.com", username="desk")
    await store.add_user(tenant(), email="frank@example.com", username="frank")
    await store.add_device("example", name="MFP", mode="user-prompt", device_id="mfp-1")
    session = await _session(store, b"s", "frank@example.com", device_id="mfp-1")
    renamed = await store.update_device("mfp-1", name="2nd floor")
    assert (renamed.name, renamed.mode) == ("2nd floor", DeviceMode.USER_PROMPT)
    assert await store.get_session(session, T0) is not None  # a new name changes nothing else
    with pytest.raises(RequestError, match="needs the shared user"):
        await store.update_device("mfp-1", mode="shared-account")
    with pytest.raises(RequestError, match=r"no user nobody@example\.com"):
        await store.update_device("mfp-1", mode="shared-account", shared_user_email="nobody@example.com")
    with pytest.raises(RequestError, match="has no shared user"):
        await store.update_device("mfp-1", mode="device-login", shared_user_email="desk@example.com")
    with pytest.raises(RequestError, match="unknown device mode"):
        await store.update_device("mfp-1", mode="fax")
    shared = await store.update_device("mfp-1", mode="shared-account", shared_user_email="Desk@example.com")
    assert (shared.mode, shared.shared_user_email, shared.name) == (DeviceMode.SHARED_ACCOUNT, "desk@example.com",
                                                                    "2nd floor")
    assert await store.get_session(session, T0) is None  # a new mode ends the device's sessions
    back = await store.update_device("mfp-1", mode="user-prompt")
    assert (back.mode, back.shared_user_email) == (DeviceMode.USER_PROMPT, None)
    with pytest.raises(RequestError, match="no device nope"):
        await store.update_device("nope", name="x")


async def test_tenant_usage_and_audit_pages(store: Store) -> None:
    assert await store.tenant_usage("example") == (0, 0)
    await store.add_user(tenant(), email="frank@example.com", username="frank")
    await store.add_device("example", name="MFP", mode="user-prompt")
    assert await store.tenant_usage("example") == (1, 1)
    ids = []
    for n in range(5):
        ids.append(await store.add_audit_event(AuditEvent(at=T0, kind=AuditKind.LOGIN, result=f"r{n}",
                                                          tenant_id="example")))
    await store.add_audit_event(AuditEvent(at=T0, kind=AuditKind.ADMIN_CHANGE, result="x", tenant_id="example",
                                           actor="ops"))
    await store.add_audit_event(AuditEvent(at=T0, kind=AuditKind.LOGIN, result="other", tenant_id="other"))
    page = await store.audit_page("example", limit=2)
    assert [e.result for e in page] == ["r4", "r3"]
    page = await store.audit_page("example", limit=10, before_id=page[-1].id)
    assert [e.result for e in page] == ["r2", "r1", "r0"]
    changes = await store.audit_page("example", kinds=(AuditKind.ADMIN_CHANGE,))
    assert [(e.result, e.actor) for e in changes] == [("x", "ops")]
    assert await store.audit_page("example", kinds=()) == []
