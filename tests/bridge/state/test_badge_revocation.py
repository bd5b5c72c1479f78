"""Taking access away takes the badge bindings and pairings with it (issue 14), on SQLite and on a real PostgreSQL.

Every way an account is disabled or deleted (admin API and console: ``deactivate_user`` / ``delete_user``;
the CLI and the demo: ``disable_user``; the directory sync; SCIM's deactivation, deprovisioning and change of
address) deletes that account's badge bindings in its transaction, and no one else's. Disabling a device
denies its pairings that have not given a session yet.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.state.pairings import (
    PairingStatus,
    bind_badge,
    consume_pairing,
    create_pairing,
    get_pairing,
    list_badges,
    move_pairing,
    resolve_badge,
)
from bridge.state.printlinks import create_link, resolve_link
from bridge.state.scim import Provisioning, UserWrite
from bridge.state.store import Store
from tests.bridge.state.test_store import tenant
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
DAYS = timedelta(days=30)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await Store.open(store_url) as s:
        for name in ("frank", "grace"):
            await s.add_user(tenant(), email=f"{name}@example.com", username=name)
        await s.add_user(tenant("other", ("other.test",)), email="frank@other.test", username="frank")
        await s.add_device("example", name="Badge MFP", mode="device-login", device_id="badge-mfp")
        yield s


async def _bind(store: Store, email: str, tenant_id: str = "example") -> bytes:
    badge = os.urandom(32)
    await bind_badge(store.database, tenant_id=tenant_id, badge_hash=badge, email=email, device_id="badge-mfp",
                     lifetime=DAYS, now=T0)
    return badge


async def _bound(store: Store) -> list[tuple[str, str]]:
    return sorted((b.tenant_id, b.email) for b in await list_badges(store.database))


async def _resolves(store: Store, badge: bytes, tenant_id: str = "example") -> bool:
    return await resolve_badge(store.database, tenant_id=tenant_id, badge_hash=badge, now=T0) is not None


async def _three(store: Store) -> tuple[bytes, bytes, bytes]:
    """frank's two badges, grace's one, and an unrelated frank in another tenant."""
    frank1, frank2 = await _bind(store, "Frank@example.com"), await _bind(store, "frank@example.com")
    grace = await _bind(store, "grace@example.com")
    await _bind(store, "frank@other.test", "other")
    return frank1, frank2, grace


async def test_deactivate_user_deletes_its_badge_bindings_only(store: Store) -> None:
    frank1, frank2, grace = await _three(store)
    assert await _resolves(store, frank1)
    await store.deactivate_user("example", "FRANK@example.com")
    assert not await _resolves(store, frank1) and not await _resolves(store, frank2)
    assert await _resolves(store, grace)
    assert await _bound(store) == [("example", "grace@example.com"), ("other", "frank@other.test")]
    await store.enable_user("example", "frank@example.com")
    assert not await _resolves(store, frank1)  # enabling again brings no badge back: the user pairs again


async def test_delete_user_deletes_its_badge_bindings_only(store: Store) -> None:
    frank1, _, grace = await _three(store)
    await store.delete_user("example", "frank@example.com")
    assert not await _resolves(store, frank1) and await _resolves(store, grace)
    assert await _bound(store) == [("example", "grace@example.com"), ("other", "frank@other.test")]
    # A new account given the same address later does not inherit the old badge.
    await store.add_user(tenant(), email="frank@example.com", username="frank")
    assert not await _resolves(store, frank1)


async def test_the_cli_and_directory_sync_disables_delete_badge_bindings(store: Store) -> None:
    frank, _, grace = await _three(store)
    await store.disable_user("example", "frank@example.com")  # `loginbridge users disable`, the demo
    assert await _bound(store) == [("example", "grace@example.com"), ("other", "frank@other.test")]
    assert not await _resolves(store, frank)
    disabled, _ = await store.directory_disable_user("example", "grace@example.com", now=T0)
    assert disabled and not await _resolves(store, grace)
    assert await _bound(store) == [("other", "frank@other.test")]


def _write(email: str, *, enabled: bool) -> UserWrite:
    return UserWrite(email=email, username=email.split("@")[0], display_name="", enabled=enabled, language=None,
                     fax_number=None, external_id=None, resource={})


async def test_scim_deactivation_deprovisioning_and_new_address_delete_badge_bindings(store: Store) -> None:
    frank, _, grace = await _three(store)
    scim = Provisioning(store.database)
    ids = {u.email: u.scim_id for u in (await scim.list_users("example"))[1]}
    await scim.update_user("example", ids["frank@example.com"], _write("frank@example.com", enabled=False),
                           expected_version=None, now=T0)  # active: false
    assert not await _resolves(store, frank) and await _resolves(store, grace)
    await scim.deprovision_user("example", ids["grace@example.com"], now=T0)  # DELETE
    assert not await _resolves(store, grace)
    assert await _bound(store) == [("other", "frank@other.test")]

    # A new address re-keys the account: a badge bound to the old one must not sign in whoever gets it next.
    await store.add_user(tenant(), email="hal@example.com", username="hal")
    [hal_user] = await scim.find_users("example", email="hal@example.com")
    hal = await _bind(store, "hal@example.com")
    await scim.update_user("example", hal_user.scim_id, _write("hal.new@example.com", enabled=True), expected_version=None,
                           now=T0)
    assert not await _resolves(store, hal)
    assert await _bound(store) == [("other", "frank@other.test")]


async def _pairing(store: Store, device_id: str, *to: PairingStatus) -> int:
    pairing = await create_pairing(store.database, device_code_hash=os.urandom(32), user_code_hash=os.urandom(32),
                                   tenant_id="example", device_id=device_id, badge_hash=None,
                                   lifetime=timedelta(minutes=5), interval=5, now=T0)
    previous = PairingStatus.PENDING
    for status in to:
        if status is PairingStatus.CONSUMED:
            assert await consume_pairing(store.database, pairing.id)
        else:
            assert await move_pairing(store.database, pairing.id, from_=(previous,), to=status, now=T0,
                                      email="frank@example.com" if status is PairingStatus.APPROVED else None)
        previous = status
    return pairing.id


async def _status(store: Store, pairing_id: int) -> PairingStatus:
    pairing = await get_pairing(store.database, pairing_id)
    assert pairing is not None
    return pairing.status


async def test_disabling_a_device_denies_its_unfinished_pairings(store: Store) -> None:
    await store.add_device("example", name="Other MFP", mode="user-prompt", device_id="other-mfp")
    done = await _pairing(store, "badge-mfp", PairingStatus.CONFIRMED, PairingStatus.APPROVED,
                          PairingStatus.CONSUMED)
    approved = await _pairing(store, "badge-mfp", PairingStatus.CONFIRMED, PairingStatus.APPROVED)
    confirmed = await _pairing(store, "badge-mfp", PairingStatus.CONFIRMED)
    elsewhere = await _pairing(store, "other-mfp")
    assert [await _status(store, p) for p in (done, approved, confirmed, elsewhere)] == [
        PairingStatus.CONSUMED, PairingStatus.APPROVED, PairingStatus.CONFIRMED, PairingStatus.PENDING]

    await store.disable_device("badge-mfp")
    assert [await _status(store, p) for p in (done, approved, confirmed, elsewhere)] == [
        PairingStatus.CONSUMED, PairingStatus.DENIED, PairingStatus.DENIED, PairingStatus.PENDING]
    await store.enable_device("badge-mfp")
    assert await _status(store, approved) is PairingStatus.DENIED  # enabling again hands out no session
    assert not await consume_pairing(store.database, approved)
    await store.disable_device("other-mfp")
    assert await _status(store, elsewhere) is PairingStatus.DENIED


async def test_every_disable_path_also_ends_the_users_printer_links(store: Store) -> None:
    """Printer links stop with the account on every path, not only through the admin API (a found defect)."""
    await store.add_user(tenant(), email="hal@example.com", username="hal")
    tokens = {}
    for email in ("frank@example.com", "grace@example.com", "hal@example.com"):
        _, tokens[email] = await create_link(store.database, tenant_id="example", email=email, label="laptop",
                                             created_by="test", lifetime=DAYS)
    await store.disable_user("example", "frank@example.com")  # `loginbridge users disable`
    await store.directory_disable_user("example", "grace@example.com", now=datetime.now(UTC))  # LDAP sync
    scim = Provisioning(store.database)
    [hal] = await scim.find_users("example", email="hal@example.com")
    assert await resolve_link(store.database, tokens["hal@example.com"]) is not None
    await scim.update_user("example", hal.scim_id, _write("hal@example.com", enabled=False), expected_version=None,
                           now=T0)  # SCIM active: false
    for email, token in tokens.items():
        assert await resolve_link(store.database, token) is None, email
