"""The phone-pairing tables (migration 13) on SQLite and on a real PostgreSQL: every state change happens once."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.errors import StoreConflict
from bridge.state.pairings import (
    PairingStatus,
    SigninPurpose,
    bind_badge,
    consume_pairing,
    create_pairing,
    create_signin,
    finish_signin,
    get_signin,
    list_badges,
    move_pairing,
    note_poll,
    pairing_by_device_code,
    pairing_by_user_code,
    prune,
    record_subject,
    resolve_badge,
    revoke_badge,
    signin_by_state,
    take_code,
)
from bridge.state.store import Store
from tests.bridge.state.test_store import tenant
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
FIVE_MIN = timedelta(minutes=5)


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await Store.open(store_url) as s:
        await s.add_user(tenant(), email="frank@example.com", username="frank")
        await s.add_device("example", name="MFP", mode="user-prompt", device_id="mfp-1")
        await s.add_device("example", name="MFP 2", mode="user-prompt", device_id="mfp-2")
        yield s


async def _pairing(store: Store, n: str, device: str = "mfp-1", now: datetime = T0) -> int:
    pairing = await create_pairing(store.database, device_code_hash=h("d" + n), user_code_hash=h("u" + n),
                                   tenant_id="example", device_id=device, badge_hash=h("badge"), lifetime=FIVE_MIN,
                                   interval=5, now=now)
    return pairing.id


async def test_a_pairing_moves_once_through_its_states(store: Store) -> None:
    db = store.database
    pid = await _pairing(store, "1")
    found = await pairing_by_device_code(db, h("d1"))
    assert found is not None and found.id == pid and found.status is PairingStatus.PENDING
    assert found.badge_hash == h("badge") and found.expires_at == T0 + FIVE_MIN and found.last_poll_at is None
    assert (await pairing_by_user_code(db, h("u1"))) == found
    await note_poll(db, pid, now=T0 + timedelta(seconds=3), interval=10)
    polled = await pairing_by_device_code(db, h("d1"))
    assert polled is not None and polled.interval == 10 and polled.last_poll_at == T0 + timedelta(seconds=3)
    now = T0 + timedelta(minutes=1)
    pending, confirmed = (PairingStatus.PENDING,), (PairingStatus.CONFIRMED,)
    assert await move_pairing(db, pid, from_=pending, to=PairingStatus.CONFIRMED, now=now)
    assert not await move_pairing(db, pid, from_=pending, to=PairingStatus.DENIED, now=now)  # no longer pending
    assert not await consume_pairing(db, pid)  # not approved yet
    assert await move_pairing(db, pid, from_=confirmed, to=PairingStatus.APPROVED, now=now, email="frank@example.com")
    assert await consume_pairing(db, pid)
    assert not await consume_pairing(db, pid)  # once
    done = await pairing_by_device_code(db, h("d1"))
    assert done is not None and done.status is PairingStatus.CONSUMED and done.email == "frank@example.com"


async def test_an_expired_pairing_cannot_move_and_a_new_one_retires_the_old(store: Store) -> None:
    db = store.database
    old = await _pairing(store, "1")
    assert not await move_pairing(db, old, from_=(PairingStatus.PENDING,), to=PairingStatus.CONFIRMED,
                                  now=T0 + FIVE_MIN)
    other_device = await _pairing(store, "2", device="mfp-2")
    await _pairing(store, "3", now=T0 + timedelta(seconds=30))  # the same device asks again
    retired = await pairing_by_device_code(db, h("d1"))
    assert retired is not None and retired.status is PairingStatus.DENIED
    kept = await pairing_by_device_code(db, h("d2"))
    assert kept is not None and kept.id == other_device and kept.status is PairingStatus.PENDING
    with pytest.raises(StoreConflict):
        await _pairing(store, "3")  # a user code still stored cannot be drawn twice


async def test_a_sign_in_is_answered_once_and_finished_only_by_its_browser(store: Store) -> None:
    db = store.database
    pid = await _pairing(store, "1")
    sid = await create_signin(db, state_hash=h("state"), browser_hash=h("browser"), tenant_id="example",
                              purpose=SigninPurpose.PAIRING, pairing_id=pid, request_id="_r1", email=None,
                              return_to=None, lifetime=timedelta(minutes=10), now=T0)
    record = await signin_by_state(db, h("state"))
    assert record is not None and record.id == sid and record.request_id == "_r1" and record.pairing_id == pid
    assert await signin_by_state(db, h("other")) is None
    later = T0 + timedelta(minutes=2)
    assert await record_subject(db, sid, "frank@example.com", now=later)
    assert not await record_subject(db, sid, "mallory@example.com", now=later)  # answered once
    assert not await finish_signin(db, sid, browser_hash=h("another browser"), now=later)
    assert await finish_signin(db, sid, browser_hash=h("browser"), now=later)
    assert not await finish_signin(db, sid, browser_hash=h("browser"), now=later)
    finished = await get_signin(db, sid)
    assert finished is not None and finished.finished and finished.subject == "frank@example.com"
    # An expired sign-in takes no answer.
    late = await create_signin(db, state_hash=h("state2"), browser_hash=h("browser"), tenant_id="example",
                               purpose=SigninPurpose.PAIRING, pairing_id=pid, request_id=None, email=None,
                               return_to=None, lifetime=timedelta(minutes=10), now=T0)
    assert not await record_subject(db, late, "frank@example.com", now=T0 + timedelta(minutes=10))


async def test_a_web_code_is_spent_once_within_its_minute(store: Store) -> None:
    db = store.database
    for n, (exchanged_at, expected) in enumerate(((T0 + timedelta(seconds=30), True),
                                                  (T0 + timedelta(seconds=61), False))):
        sid = await create_signin(db, state_hash=h(f"s{n}"), browser_hash=h("b"), tenant_id="example",
                                  purpose=SigninPurpose.WEB, pairing_id=None, request_id="_r", email="frank@example.com",
                                  return_to="https://app.example.net/", lifetime=timedelta(minutes=10), now=T0)
        assert await record_subject(db, sid, "frank@example.com", now=T0)
        assert await finish_signin(db, sid, browser_hash=h("b"), now=T0, code_hash=h(f"code{n}"),
                                   code_lifetime=timedelta(seconds=60))
        taken = await take_code(db, h(f"code{n}"), now=exchanged_at)
        assert (taken is not None) is expected
        if taken is not None:
            assert taken.email == "frank@example.com" and taken.return_to == "https://app.example.net/"
        assert await take_code(db, h(f"code{n}"), now=T0) is None  # spent either way


async def test_badges_bind_to_enabled_users_replace_revoke_and_prune(store: Store) -> None:
    db = store.database
    first = await bind_badge(db, tenant_id="example", badge_hash=h("card"), email="frank@example.com",
                             device_id="mfp-1", lifetime=timedelta(days=30), now=T0)
    assert first is not None
    again = await bind_badge(db, tenant_id="example", badge_hash=h("card"), email="frank@example.com",
                             device_id="mfp-2", lifetime=timedelta(days=1), now=T0)
    assert again is not None and [b.id for b in await list_badges(db)] == [again.id]
    used = await resolve_badge(db, tenant_id="example", badge_hash=h("card"), now=T0 + timedelta(hours=1))
    assert used is not None and used.last_used_at == T0 + timedelta(hours=1) and used.device_id == "mfp-2"
    assert await resolve_badge(db, tenant_id="other", badge_hash=h("card"), now=T0) is None
    assert await resolve_badge(db, tenant_id="example", badge_hash=h("card"), now=T0 + timedelta(days=1)) is None
    assert await prune(db, T0 + timedelta(days=2)) >= 1
    assert await list_badges(db) == []
    kept = await bind_badge(db, tenant_id="example", badge_hash=h("card2"), email="frank@example.com",
                            device_id=None, lifetime=timedelta(days=30), now=T0)
    assert kept is not None
    assert await revoke_badge(db, kept.id, tenant_id="other") is None
    assert (await revoke_badge(db, kept.id, tenant_id="example")) == kept
    # A user disabled a moment before the pairing finished gets no binding.
    await store.deactivate_user("example", "frank@example.com")
    assert await bind_badge(db, tenant_id="example", badge_hash=h("card3"), email="frank@example.com",
                            device_id=None, lifetime=timedelta(days=30), now=T0) is None
