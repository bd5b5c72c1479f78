"""Lockout protection in isolation: sliding windows, stale pairs, spray detection, with a fake clock.

The throttle keeps its state in the store (a SQLite file here; both engines in
tests/bridge/state/test_store.py, two instances on one PostgreSQL in
test_throttle_cluster.py); the window arithmetic is tested as pure functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config import BridgeConfig, Protocol, TenantConfig, ThrottleConfig
from bridge.errors import DeviceThrottled, IdpUnreachable, InvalidCredentials, StoreError, StoreUnavailable
from bridge.login.guard import LoginGuard, LoginMode
from bridge.login.throttle import (
    Actor,
    LockKind,
    LoginThrottle,
    StaleAnswer,
    ThrottleKeys,
    user_lock,
    window_retry_after,
)
from bridge.state.store import Store

KEY = b"k" * 32
LIMITS = ThrottleConfig(user_failures=3, device_failures=5, source_failures=4, window=timedelta(seconds=100),
                        stale_password_ttl=timedelta(seconds=1000), spray_distinct_users=3,
                        spray_window=timedelta(seconds=50))
DEVICE = Actor(device_id="mfp-1", source="192.0.2.7")
APP = Actor(device_id=None, source="198.51.100.9")
T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Clock:
    """Wall-clock time under the test's control: ``now`` is seconds after T0."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> datetime:
        return at(self.now)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path) as s:
        yield s


@pytest.fixture
def throttle(store: Store, clock: Clock) -> LoginThrottle:
    return LoginThrottle(store, KEY, clock=clock)


# -- the pure window logic ---------------------------------------------------------------------


def test_window_retry_after() -> None:
    newest = [at(20), at(10), at(0)]  # three events, newest first
    window = timedelta(seconds=100)
    assert window_retry_after(newest, at(50), window, 3) == 50  # the first event leaves at t=100
    assert window_retry_after(newest, at(50), window, 4) == 0
    assert window_retry_after(newest, at(50), window, 1) == 70  # under limit 1, the newest must go
    assert window_retry_after(newest, at(119.2), window, 1) == 1  # whole seconds, at least 1
    assert window_retry_after([], at(0), window, 1) == 0


def test_user_lock_counts_failures_and_attempts_in_flight() -> None:
    assert user_lock([at(0), at(10)], 0, at(20), LIMITS) is None
    lock = user_lock([at(20), at(10), at(0)], 0, at(30), LIMITS)
    assert lock is not None and (lock.kind, lock.retry_after) == (LockKind.USER, 70)
    lock = user_lock([at(10)], 2, at(30), LIMITS)  # one failure and two attempts at the IdP
    assert lock is not None and lock.retry_after == 80  # the failure must leave the window
    lock = user_lock([], 3, at(30), LIMITS)
    assert lock is not None and lock.retry_after == 1  # only attempts in flight: try again soon


def test_keys_are_keyed_hmacs() -> None:
    keys = ThrottleKeys(KEY)
    assert keys.user("t", "Alice@Example.com") == keys.user("t", "alice@example.com")
    assert keys.user("t", "alice@example.com") != keys.user("other", "alice@example.com")
    assert keys.stale("t", "a@example.com", "Winter2023!") != keys.stale("t", "a@example.com", "winter2023!")
    assert keys.stale("t", "A@example.com", "pw") == keys.stale("t", "a@example.com", "pw")
    # Another server key gives other digests: the tables are useless without the key.
    assert ThrottleKeys(b"x" * 32).stale("t", "a@example.com", "pw") != keys.stale("t", "a@example.com", "pw")
    assert len({keys.user("t", "x"), keys.actor(APP), keys.spray_user("x"), keys.stale("t", "x", "")}) == 4


# -- the sliding windows, in the store -----------------------------------------------------------


async def test_sliding_window_counts_and_forgets(store: Store) -> None:
    window = timedelta(seconds=100)
    for t in (0.0, 10.0, 20.0):
        await store.throttle_failure(b"a", now=at(t), window=window)
    assert await store.throttle_count(b"a", now=at(50), window=window) == 3
    assert await store.throttle_retry_after(b"a", now=at(50), window=window, limit=3) == 50
    assert await store.throttle_retry_after(b"a", now=at(50), window=window, limit=4) == 0
    assert await store.throttle_count(b"a", now=at(100), window=window) == 2
    assert await store.throttle_count(b"a", now=at(200), window=window) == 0
    assert await store.throttle_count(b"b", now=at(0), window=window) == 0


async def test_expired_rows_are_pruned(throttle: LoginThrottle, store: Store, clock: Clock) -> None:
    for i in range(10):
        await throttle.idp_rejected("t", f"u{i}@example.com", "pw", DEVICE, LIMITS)  # feeds spray detection too
    # 20 failures (user and device), 10 stale pairs, 7 spray rows (3 went with the block at the 3rd), 1 block.
    assert await store.throttle_row_count() == 38
    assert await store.prune_throttle(at(clock.now)) == 0  # all live
    assert await store.prune_throttle(at(clock.now + 2000), limit=5) == 5 + 5 + 5 + 1  # at most 5 a table
    assert await store.prune_throttle(at(clock.now + 2000)) == 38 - 16
    assert await store.throttle_row_count() == 0


async def test_stale_passwords_keep_only_keyed_hashes_with_ttl(throttle: LoginThrottle, store: Store,
                                                               clock: Clock) -> None:
    ttl = LIMITS.stale_password_ttl
    await throttle.idp_rejected("t", "Alice@Example.com", "Winter2023!", DEVICE, LIMITS)
    assert await throttle.is_stale("t", "alice@example.com", "Winter2023!")
    assert not await throttle.is_stale("t", "alice@example.com", "winter2023!")  # passwords are case-sensitive
    assert not await throttle.is_stale("other", "alice@example.com", "Winter2023!")
    assert not await throttle.is_stale("t", "bob@example.com", "Winter2023!")
    rows = await store.database.fetchall("SELECT digest, answer FROM throttle_stale")
    assert len(rows) == 1 and b"Winter2023" not in bytes(rows[0][0]) and b"alice" not in bytes(rows[0][0])
    clock.now += ttl.total_seconds()
    assert not await throttle.is_stale("t", "alice@example.com", "Winter2023!")  # expired
    # Another server key gives other digests: the table is useless without the key.
    clock.now -= 1
    assert not await LoginThrottle(store, b"x" * 32, clock=clock).is_stale("t", "alice@example.com", "Winter2023!")


# -- the throttle ------------------------------------------------------------------------------


async def test_user_lock_after_threshold_and_retry_after(throttle: LoginThrottle, clock: Clock) -> None:
    for i in range(3):
        assert await throttle.user_lock("t", "a@example.com", LIMITS) is None
        await throttle.idp_rejected("t", "a@example.com", f"wrong-{i}", DEVICE, LIMITS)
        clock.now += 10
    lock = await throttle.user_lock("t", "A@example.com", LIMITS)
    assert lock is not None and lock.kind == LockKind.USER
    assert lock.retry_after == 70  # first failure at 1000, window 100, now 1030
    assert await throttle.user_lock("t", "b@example.com", LIMITS) is None
    assert await throttle.user_lock("other", "a@example.com", LIMITS) is None
    admission = await throttle.admit("t", "a@example.com", "another", LIMITS)
    assert admission.ticket is None and admission.lock == lock
    clock.now += 70
    assert await throttle.user_lock("t", "a@example.com", LIMITS) is None


async def test_success_resets_the_user_count(throttle: LoginThrottle) -> None:
    for i in range(2):
        await throttle.idp_rejected("t", "a@example.com", f"wrong-{i}", DEVICE, LIMITS)
    await throttle.succeeded("t", "a@example.com")
    await throttle.idp_rejected("t", "a@example.com", "wrong-3", DEVICE, LIMITS)
    assert await throttle.user_lock("t", "a@example.com", LIMITS) is None


async def test_success_gives_the_ticket_back_with_the_reset(throttle: LoginThrottle) -> None:
    tickets = [(await throttle.admit("t", "a@example.com", f"pw{i}", LIMITS)).ticket for i in range(3)]
    await throttle.idp_rejected("t", "a@example.com", "pw0", DEVICE, LIMITS, ticket=tickets[0])
    await throttle.idp_rejected("t", "a@example.com", "pw1", DEVICE, LIMITS, ticket=tickets[1])
    assert tickets[2] is not None
    await throttle.succeeded("t", "a@example.com", tickets[2])
    in_flight, newest = await throttle.store.throttle_user_state(
        throttle.keys.user("t", "a@example.com"), now=throttle.clock(), window=LIMITS.window, limit=5)
    assert (in_flight, newest) == (0, ())


async def test_attempts_in_flight_count_against_the_user(throttle: LoginThrottle) -> None:
    for _ in range(3):
        await throttle.idp_started("t", "a@example.com")
    lock = await throttle.user_lock("t", "a@example.com", LIMITS)
    assert lock is not None and lock.retry_after >= 1
    await throttle.idp_finished("t", "a@example.com")
    assert await throttle.user_lock("t", "a@example.com", LIMITS) is None


async def test_admission_holds_a_ticket_until_given_back(throttle: LoginThrottle, clock: Clock) -> None:
    tickets = [(await throttle.admit("t", "a@example.com", f"pw{i}", LIMITS)).ticket for i in range(3)]
    assert None not in tickets and len(set(tickets)) == 3
    refused = await throttle.admit("t", "a@example.com", "pw4", LIMITS)
    assert refused.ticket is None and refused.lock is not None and refused.lock.retry_after == 1
    await throttle.idp_rejected("t", "a@example.com", "pw0", DEVICE, LIMITS, ticket=tickets[0])
    assert (await throttle.admit("t", "a@example.com", "pw0", LIMITS)).lock is not None  # 1 failure + 2 in flight
    await throttle.idp_finished("t", "a@example.com", tickets[1])
    stale = await throttle.admit("t", "a@example.com", "pw0", LIMITS)
    assert stale.ticket is None and stale.lock is None and stale.stale is StaleAnswer.WRONG_PASSWORD
    # A crashed instance never gives its ticket back: it expires.
    clock.now += throttle.in_flight_ttl.total_seconds()
    assert (await throttle.admit("t", "a@example.com", "pw5", LIMITS)).ticket is not None


async def test_device_and_source_budgets(throttle: LoginThrottle) -> None:
    limits = replace(LIMITS, spray_distinct_users=50)  # the failure budgets, not spray detection
    for i in range(5):
        assert await throttle.actor_lock(DEVICE, limits) is None
        await throttle.idp_rejected("t", f"u{i}@example.com", "pw", DEVICE, limits)
    lock = await throttle.actor_lock(DEVICE, limits)
    assert lock is not None and lock.kind == LockKind.DEVICE
    for i in range(4):
        assert await throttle.actor_lock(APP, limits) is None
        await throttle.idp_rejected("t", f"v{i}@example.com", "pw", APP, limits)
    lock = await throttle.actor_lock(APP, limits)
    assert lock is not None and lock.kind == LockKind.SOURCE
    # The device's budget is its own, whatever its source address.
    assert await throttle.actor_lock(Actor(device_id="mfp-2", source="192.0.2.7"), limits) is None


async def test_stale_pair_is_remembered_on_rejection(throttle: LoginThrottle, clock: Clock) -> None:
    await throttle.idp_rejected("t", "a@example.com", "Summer2024", DEVICE, LIMITS)
    assert await throttle.is_stale("t", "a@example.com", "Summer2024")
    clock.now += 1000
    assert not await throttle.is_stale("t", "a@example.com", "Summer2024")


async def test_the_stale_guard_remembers_what_the_idp_said(throttle: LoginThrottle, clock: Clock) -> None:
    await throttle.idp_rejected("t", "a@example.com", "Wrong-1", DEVICE, LIMITS)
    await throttle.idp_rejected("t", "a@example.com", "Locked-2", DEVICE, LIMITS,
                                remember=StaleAnswer.ACCOUNT_REFUSED)
    assert await throttle.stale_answer("t", "a@example.com", "Wrong-1") is StaleAnswer.WRONG_PASSWORD
    assert await throttle.stale_answer("t", "a@example.com", "Locked-2") is StaleAnswer.ACCOUNT_REFUSED
    assert await throttle.stale_answer("t", "a@example.com", "Other-3") is None
    clock.now += 1000
    assert await throttle.stale_answer("t", "a@example.com", "Locked-2") is None


async def test_an_unclassified_refusal_counts_but_is_not_remembered(throttle: LoginThrottle) -> None:
    for _ in range(3):
        await throttle.idp_rejected("t", "a@example.com", "Maybe-right", DEVICE, LIMITS, remember=None)
        assert not await throttle.is_stale("t", "a@example.com", "Maybe-right")
    lock = await throttle.user_lock("t", "a@example.com", LIMITS)
    assert lock is not None and lock.kind == LockKind.USER  # fail closed: the user throttle still holds


async def test_spray_detector_blocks_after_distinct_users(store: Store) -> None:
    window = timedelta(seconds=50)
    spray = ThrottleKeys(KEY)
    x, y = b"device:x", b"device:y"

    async def fail(actor: bytes, user: str, t: float) -> int | None:
        return await store.throttle_spray_failure(actor, spray.spray_user(user), now=at(t), window=window, distinct=3)

    assert await fail(x, "a@example.com", 0) is None
    assert await fail(x, "a@example.com", 1) is None  # same user
    assert await fail(x, "b@example.com", 2) is None
    assert await store.throttle_blocked_until(x, now=at(3)) is None
    assert await fail(x, "c@example.com", 3) == 3
    assert await store.throttle_blocked_until(x, now=at(4)) == at(53)  # blocked for 49 s more
    assert await store.throttle_blocked_until(y, now=at(4)) is None
    assert await store.throttle_blocked_until(x, now=at(53)) is None


async def test_spray_needs_the_users_within_the_window(store: Store) -> None:
    for i, t in enumerate((0, 30, 60, 90)):
        assert await store.throttle_spray_failure(b"source:a", ThrottleKeys(KEY).spray_user(f"u{i}@example.com"),
                                                  now=at(t), window=timedelta(seconds=50), distinct=3) is None


async def test_spray_block_is_an_actor_lock(throttle: LoginThrottle, clock: Clock) -> None:
    for i in range(3):
        tripped = await throttle.failed_for_user(APP, f"user{i}@example.com", LIMITS)
    assert tripped == 3
    lock = await throttle.actor_lock(APP, LIMITS)
    assert lock is not None and (lock.kind, lock.retry_after) == (LockKind.SPRAY, 50)
    clock.now += 50
    assert await throttle.actor_lock(APP, LIMITS) is None


async def test_a_store_error_fails_closed(throttle: LoginThrottle, store: Store,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that cannot answer refuses the login: the error propagates, nothing reaches the IdP."""
    tenant = TenantConfig(id="t", name="T", domains=("example.com",), protocol=Protocol.WSTRUST, idp_whitelist=(),
                          session_ttl=timedelta(hours=1), wstrust=None, saml2=None, source=Path("/dev/null"),
                          throttle=LIMITS)
    guard = LoginGuard(BridgeConfig.__new__(BridgeConfig), throttle)

    async def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("the database is down")

    for method in ("throttle_admit", "throttle_actor_state"):
        monkeypatch.setattr(store, method, down)
    idp_calls = 0
    with pytest.raises(StoreError):
        async with guard.attempt(mode=LoginMode.APP, source="192.0.2.1") as attempt:
            await attempt.check_actor()
    with pytest.raises(StoreError):
        attempt = guard.attempt(mode=LoginMode.APP, source="192.0.2.1")
        attempt._actor_checked = LIMITS
        async with attempt.at_idp(tenant, "a@example.com", "pw"):
            idp_calls += 1
    assert idp_calls == 0


# -- spray detection counts attempts at the IdP (the guard's sequence, concurrently) -------------------


TENANT = TenantConfig(id="t", name="T", domains=("example.com",), protocol=Protocol.WSTRUST, idp_whitelist=(),
                      session_ttl=timedelta(hours=1), wstrust=None, saml2=None, source=Path("/dev/null"),
                      throttle=LIMITS)


def make_guard(throttle: LoginThrottle) -> LoginGuard:
    return LoginGuard(BridgeConfig.__new__(BridgeConfig), throttle)


async def login(guard: LoginGuard, email: str, idp: Callable[[str], Awaitable[None]],
                password: str = "Spring2024!") -> str:
    """One app login from APP's address as the login service runs it: checks, IdP call, finish."""
    try:
        async with guard.attempt(mode=LoginMode.APP, source=APP.source) as attempt:
            await attempt.check_actor()
            await attempt.check_password_allowed(TENANT, email, password)
            async with attempt.at_idp(TENANT, email, password):
                await idp(email)
    except DeviceThrottled:
        return "spray"
    except InvalidCredentials:
        return "rejected"
    except IdpUnreachable:
        return "no verdict"
    return "ok"


class Idp:
    """The IdP: records its calls, answers after a pause (attempts overlap), ``verdict`` per email."""

    def __init__(self, verdict: Callable[[str], BaseException | None]) -> None:
        self.calls: list[str] = []
        self.verdict = verdict

    async def __call__(self, email: str) -> None:
        self.calls.append(email)
        await asyncio.sleep(0.01)
        error = self.verdict(email)
        if error is not None:
            raise error


async def test_concurrent_spray_reaches_the_idp_at_most_the_distinct_user_count(
        throttle: LoginThrottle, caplog: pytest.LogCaptureFixture) -> None:
    guard, idp = make_guard(throttle), Idp(lambda email: InvalidCredentials("wrong password"))
    results = await asyncio.gather(*[login(guard, f"user{n:02d}@example.com", idp) for n in range(12)])
    assert len(idp.calls) == LIMITS.spray_distinct_users == 3
    assert sorted(results) == ["rejected"] * 3 + ["spray"] * 9
    assert [r.message for r in caplog.records].count(
        "password spray: source:198.51.100.9 failed for 3 distinct users; blocked for 50 s") == 1
    lock = await throttle.actor_lock(APP, LIMITS)
    assert lock is not None and (lock.kind, lock.retry_after) == (LockKind.SPRAY, 50)
    assert await login(guard, "late@example.com", idp) == "spray" and len(idp.calls) == 3


async def test_a_successful_login_storm_never_blocks_the_device(throttle: LoginThrottle, store: Store) -> None:
    """50 people log in on one device, some at the same time: never blocked, nothing counted for spraying."""
    guard, idp = make_guard(throttle), Idp(lambda email: None)
    for batch in range(25):
        results = await asyncio.gather(*[login(guard, f"person{batch}-{n}@example.com", idp) for n in range(2)])
        assert results == ["ok", "ok"]
    assert len(idp.calls) == 50
    assert await throttle.actor_lock(APP, LIMITS) is None
    assert await store.database.fetchval("SELECT count(*) FROM throttle_spray") == 0
    assert await store.database.fetchval("SELECT count(*) FROM throttle_in_flight") == 0
    # More at once than the spray count: the surplus waits a second (their users are at the IdP), never a block.
    results = await asyncio.gather(*[login(guard, f"rush{n}@example.com", idp) for n in range(6)])
    assert results.count("ok") >= LIMITS.spray_distinct_users and set(results) <= {"ok", "spray"}
    assert await throttle.actor_lock(APP, LIMITS) is None
    assert [await login(guard, f"rush{n}@example.com", idp) for n in range(6)] == ["ok"] * 6


async def test_an_attempt_without_a_verdict_frees_its_user_but_an_earlier_failure_stays(
        throttle: LoginThrottle) -> None:
    guard = make_guard(throttle)
    rejected, down = Idp(lambda email: InvalidCredentials("wrong")), Idp(lambda email: IdpUnreachable("IdP down"))
    assert await login(guard, "a@example.com", rejected) == "rejected"  # a: a real failure
    assert await login(guard, "a@example.com", down, "Summer2024!") == "no verdict"  # a again: still counted
    assert await login(guard, "b@example.com", down) == "no verdict"  # b: not counted
    # A cancelled attempt (the client went away at the IdP) gives its reservation back too.
    started = asyncio.Event()

    async def hangs(email: str) -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(login(guard, "c@example.com", hangs))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Counted for APP: "a" only. With the threshold at 3, "d" and "e" may be at the IdP at once, "f" may not.
    gate = asyncio.Event()

    async def held(email: str) -> None:
        await gate.wait()
        raise InvalidCredentials("wrong")

    pending = [asyncio.create_task(login(guard, email, held)) for email in ("d@example.com", "e@example.com")]
    await asyncio.sleep(0.05)
    assert await login(guard, "f@example.com", rejected) == "spray"
    lock = await throttle.actor_lock(APP, LIMITS)
    assert lock is None  # a wait of a second at most, not a block
    gate.set()
    assert await asyncio.gather(*pending) == ["rejected", "rejected"]
    lock = await throttle.actor_lock(APP, LIMITS)  # a, d, e: the detector tripped at the third user
    assert lock is not None and lock.kind == LockKind.SPRAY and lock.retry_after == 50
