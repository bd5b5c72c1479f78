"""Two instances on one PostgreSQL: the lockout protection holds for the cluster, not per process.

Measured before the throttle moved into the store (two processes, in-memory counters): the
per-user lockout let 10 IdP calls through instead of 5, the stale-password guard 2 instead of 1,
spray detection fired at 21 users instead of 11.  Then, with only finished failures counted for
spray detection, attempts in flight all passed: 16-17 IdP calls for a threshold of 10.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bridge.config import ThrottleConfig
from bridge.login.throttle import Actor, LockKind, LoginThrottle, StaleAnswer
from bridge.state.store import Store
from tests.servers.postgres import PgDatabase, pg_database, postgres_server

__all__ = ["pg_database", "postgres_server"]  # the real-server fixtures, used by name below

KEY = b"k" * 32
LIMITS = ThrottleConfig()  # the defaults: 5 user failures per 15 min, spray at 10 distinct users
ACTOR = Actor(device_id=None, source="203.0.113.5")


@pytest.fixture
async def instances(pg_database: PgDatabase) -> AsyncIterator[tuple[LoginThrottle, LoginThrottle]]:
    """Two "instances": each its own Store (its own pool) and LoginThrottle, on one database."""
    async with await Store.open(pg_database.url) as first, await Store.open(pg_database.url) as second:
        yield LoginThrottle(first, KEY), LoginThrottle(second, KEY)


async def _attempt(throttle: LoginThrottle, password: str, idp_calls: list[str]) -> str:
    """The guard's sequence for one login whose password the IdP rejects: admit, IdP, rejected."""
    admission = await throttle.admit("t", "alice@example.com", password, LIMITS)
    if admission.lock is not None:
        return "locked"
    if admission.stale is not None:
        return "stale"
    assert admission.ticket is not None
    idp_calls.append(password)
    await asyncio.sleep(0)
    await throttle.idp_rejected("t", "alice@example.com", password, ACTOR, LIMITS, ticket=admission.ticket)
    return "rejected by the IdP"


async def test_alternating_instances_share_the_user_lockout(instances: tuple[LoginThrottle, LoginThrottle]) -> None:
    idp_calls: list[str] = []
    results = [await _attempt(instances[n % 2], f"guess-{n}", idp_calls) for n in range(12)]
    assert len(idp_calls) == LIMITS.user_failures == 5
    assert results == ["rejected by the IdP"] * 5 + ["locked"] * 7
    for throttle in instances:
        lock = await throttle.user_lock("t", "Alice@example.com", LIMITS)
        assert lock is not None and lock.kind == LockKind.USER and lock.retry_after > 800


async def test_concurrent_attempts_on_both_instances_share_the_user_lockout(
        instances: tuple[LoginThrottle, LoginThrottle]) -> None:
    idp_calls: list[str] = []
    results = await asyncio.gather(*[_attempt(instances[n % 2], f"guess-{n}", idp_calls) for n in range(12)])
    assert len(idp_calls) == 5 and results.count("locked") == 7


async def test_a_stale_password_remembered_by_one_is_refused_by_the_other(
        instances: tuple[LoginThrottle, LoginThrottle]) -> None:
    first, second = instances
    idp_calls: list[str] = []
    assert await _attempt(first, "Winter2023!", idp_calls) == "rejected by the IdP"
    assert await _attempt(second, "Winter2023!", idp_calls) == "stale"
    assert await second.stale_answer("t", "alice@example.com", "Winter2023!") is StaleAnswer.WRONG_PASSWORD
    assert idp_calls == ["Winter2023!"]


async def test_spray_detection_trips_at_the_distinct_user_count_across_both(
        instances: tuple[LoginThrottle, LoginThrottle]) -> None:
    trips = [await instances[n % 2].failed_for_user(ACTOR, f"user{n}@example.com", LIMITS)
             for n in range(LIMITS.spray_distinct_users + 5)]
    assert trips.index(LIMITS.spray_distinct_users) == LIMITS.spray_distinct_users - 1  # at the 10th user
    assert trips.count(None) == len(trips) - 1
    for throttle in instances:
        lock = await throttle.actor_lock(ACTOR, LIMITS)
        assert lock is not None and lock.kind == LockKind.SPRAY
    assert isinstance(instances[0].clock(), datetime) and instances[0].clock().tzinfo is UTC


async def _spray_attempt(throttle: LoginThrottle, email: str, idp_calls: list[str], trips: list[int]) -> str:
    """The guard's sequence for one sprayed login (the IdP rejects it): admit with the actor, IdP, rejected."""
    admission = await throttle.admit("t", email, "Spring2024!", LIMITS, ACTOR)
    if admission.lock is not None:
        return admission.lock.kind
    assert admission.ticket is not None
    idp_calls.append(email)
    await asyncio.sleep(0.01)  # at the IdP: the other attempts overlap this one
    tripped = await throttle.idp_rejected("t", email, "Spring2024!", ACTOR, LIMITS, ticket=admission.ticket)
    trips.extend([] if tripped is None else [tripped])
    return "rejected by the IdP"


@pytest.mark.parametrize("in_flight", [8, 30])
async def test_a_concurrent_spray_on_both_instances_reaches_the_idp_at_most_the_distinct_user_count(
        instances: tuple[LoginThrottle, LoginThrottle], in_flight: int) -> None:
    """30 users from one actor, ``in_flight`` at once, alternating between the instances: exactly 10 IdP calls
    and one trip (bench/cluster.py measured 16-17 through three instances before attempts in flight counted)."""
    idp_calls: list[str] = []
    trips: list[int] = []
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> str:
        async with gate:
            return await _spray_attempt(instances[n % 2], f"user{n:02d}@example.com", idp_calls, trips)

    results = await asyncio.gather(*[one(n) for n in range(30)])
    assert len(idp_calls) == LIMITS.spray_distinct_users == 10
    assert results.count("rejected by the IdP") == 10 and results.count(LockKind.SPRAY) == 20
    assert trips == [10]
    for throttle in instances:
        lock = await throttle.actor_lock(ACTOR, LIMITS)
        assert lock is not None and lock.kind == LockKind.SPRAY and lock.retry_after > 200


async def test_a_storm_of_successful_logins_on_both_instances_never_blocks_the_actor(
        instances: tuple[LoginThrottle, LoginThrottle]) -> None:
    """One office device, 50 people logging in successfully, 8 at once, on either instance: never a spray lock."""
    gate = asyncio.Semaphore(8)

    async def one(n: int) -> str:
        throttle, email = instances[n % 2], f"person{n:02d}@example.com"
        async with gate:
            assert await throttle.actor_lock(ACTOR, LIMITS) is None
            admission = await throttle.admit("t", email, f"Right-{n}", LIMITS, ACTOR)
            if admission.ticket is None:
                return "refused"
            await asyncio.sleep(0.01)
            await throttle.succeeded("t", email, admission.ticket)
            return "ok"

    assert await asyncio.gather(*[one(n) for n in range(50)]) == ["ok"] * 50
    assert await instances[0].actor_lock(ACTOR, LIMITS) is None
    assert await instances[0].store.throttle_row_count() == 0
