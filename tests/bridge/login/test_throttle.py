"""Lockout protection in isolation: sliding windows, stale pairs, spray detection, with a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.config import ThrottleConfig
from bridge.login.throttle import (
    Actor,
    LockKind,
    LoginThrottle,
    SlidingWindow,
    SprayDetector,
    StaleAnswer,
    StalePasswords,
)

KEY = b"k" * 32
LIMITS = ThrottleConfig(user_failures=3, device_failures=5, source_failures=4, window=timedelta(seconds=100),
                        stale_password_ttl=timedelta(seconds=1000), spray_distinct_users=3,
                        spray_window=timedelta(seconds=50))
DEVICE = Actor(device_id="mfp-1", source="192.0.2.7")
APP = Actor(device_id=None, source="198.51.100.9")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock) -> LoginThrottle:
    return LoginThrottle(KEY, clock=clock)


def test_sliding_window_counts_and_forgets() -> None:
    window = SlidingWindow()
    for t in (0.0, 10.0, 20.0):
        window.add("a", t, 100)
    assert window.count("a", 50, 100) == 3
    assert window.retry_after("a", 50, 100, 3) == 50  # the first event leaves at t=100
    assert window.retry_after("a", 50, 100, 4) == 0
    assert window.count("a", 100, 100) == 2
    assert window.count("a", 200, 100) == 0
    assert window.count("b", 0, 100) == 0


def test_sliding_window_is_bounded() -> None:
    window = SlidingWindow(max_keys=3)
    for i in range(10):
        window.add(f"k{i}", 0, 100)
    assert [window.count(f"k{i}", 1, 100) for i in range(10)] == [0] * 7 + [1] * 3


def test_stale_passwords_keep_only_keyed_hashes_with_ttl() -> None:
    stale = StalePasswords(KEY)
    stale.remember("t", "Alice@Example.com", "Winter2023!", now=0, ttl=10)
    assert stale.is_stale("t", "alice@example.com", "Winter2023!", now=5)
    assert not stale.is_stale("t", "alice@example.com", "winter2023!", now=5)  # passwords are case-sensitive
    assert not stale.is_stale("other", "alice@example.com", "Winter2023!", now=5)
    assert not stale.is_stale("t", "bob@example.com", "Winter2023!", now=5)
    assert not stale.is_stale("t", "alice@example.com", "Winter2023!", now=10)  # expired
    assert len(stale) == 0
    stale.remember("t", "a@example.com", "secret-pw", now=0, ttl=10)
    assert b"secret-pw" not in repr(stale._expiry).encode()
    # Another server key gives other digests: the table is useless without the key.
    assert not StalePasswords(b"x" * 32).is_stale("t", "a@example.com", "secret-pw", now=1)


def test_stale_passwords_are_bounded() -> None:
    stale = StalePasswords(KEY, max_entries=2)
    for i in range(5):
        stale.remember("t", "a@example.com", f"pw{i}", now=0, ttl=10)
    assert len(stale) == 2
    assert stale.is_stale("t", "a@example.com", "pw4", now=1)
    assert not stale.is_stale("t", "a@example.com", "pw0", now=1)


def test_user_lock_after_threshold_and_retry_after(throttle: LoginThrottle, clock: Clock) -> None:
    for i in range(3):
        assert throttle.user_lock("t", "a@example.com", LIMITS) is None
        throttle.idp_rejected("t", "a@example.com", f"wrong-{i}", DEVICE, LIMITS)
        clock.now += 10
    lock = throttle.user_lock("t", "A@example.com", LIMITS)
    assert lock is not None and lock.kind == LockKind.USER
    assert lock.retry_after == 70  # first failure at 1000, window 100, now 1030
    assert throttle.user_lock("t", "b@example.com", LIMITS) is None
    assert throttle.user_lock("other", "a@example.com", LIMITS) is None
    clock.now += 70
    assert throttle.user_lock("t", "a@example.com", LIMITS) is None


def test_success_resets_the_user_count(throttle: LoginThrottle) -> None:
    for i in range(2):
        throttle.idp_rejected("t", "a@example.com", f"wrong-{i}", DEVICE, LIMITS)
    throttle.succeeded("t", "a@example.com")
    throttle.idp_rejected("t", "a@example.com", "wrong-3", DEVICE, LIMITS)
    assert throttle.user_lock("t", "a@example.com", LIMITS) is None


def test_attempts_in_flight_count_against_the_user(throttle: LoginThrottle) -> None:
    for _ in range(3):
        throttle.idp_started("t", "a@example.com")
    lock = throttle.user_lock("t", "a@example.com", LIMITS)
    assert lock is not None and lock.retry_after >= 1
    throttle.idp_finished("t", "a@example.com")
    assert throttle.user_lock("t", "a@example.com", LIMITS) is None


def test_device_and_source_budgets(throttle: LoginThrottle) -> None:
    for i in range(5):
        assert throttle.actor_lock(DEVICE, LIMITS) is None
        throttle.idp_rejected("t", f"u{i}@example.com", "pw", DEVICE, LIMITS)
    lock = throttle.actor_lock(DEVICE, LIMITS)
    assert lock is not None and lock.kind == LockKind.DEVICE
    for i in range(4):
        assert throttle.actor_lock(APP, LIMITS) is None
        throttle.idp_rejected("t", f"v{i}@example.com", "pw", APP, LIMITS)
    lock = throttle.actor_lock(APP, LIMITS)
    assert lock is not None and lock.kind == LockKind.SOURCE
    # The device's budget is its own, whatever its source address.
    assert throttle.actor_lock(Actor(device_id="mfp-2", source="192.0.2.7"), LIMITS) is None


def test_stale_pair_is_remembered_on_rejection(throttle: LoginThrottle, clock: Clock) -> None:
    throttle.idp_rejected("t", "a@example.com", "Summer2024", DEVICE, LIMITS)
    assert throttle.is_stale("t", "a@example.com", "Summer2024")
    clock.now += 1000
    assert not throttle.is_stale("t", "a@example.com", "Summer2024")


def test_the_stale_guard_remembers_what_the_idp_said(throttle: LoginThrottle, clock: Clock) -> None:
    throttle.idp_rejected("t", "a@example.com", "Wrong-1", DEVICE, LIMITS)
    throttle.idp_rejected("t", "a@example.com", "Locked-2", DEVICE, LIMITS, remember=StaleAnswer.ACCOUNT_REFUSED)
    assert throttle.stale_answer("t", "a@example.com", "Wrong-1") is StaleAnswer.WRONG_PASSWORD
    assert throttle.stale_answer("t", "a@example.com", "Locked-2") is StaleAnswer.ACCOUNT_REFUSED
    assert throttle.stale_answer("t", "a@example.com", "Other-3") is None
    clock.now += 1000
    assert throttle.stale_answer("t", "a@example.com", "Locked-2") is None


def test_an_unclassified_refusal_counts_but_is_not_remembered(throttle: LoginThrottle) -> None:
    for _ in range(3):
        throttle.idp_rejected("t", "a@example.com", "Maybe-right", DEVICE, LIMITS, remember=None)
        assert not throttle.is_stale("t", "a@example.com", "Maybe-right")
    lock = throttle.user_lock("t", "a@example.com", LIMITS)
    assert lock is not None and lock.kind == LockKind.USER  # fail closed: the user throttle still holds


def test_spray_detector_blocks_after_distinct_users(clock: Clock) -> None:
    spray = SprayDetector(KEY)
    assert spray.record_failure("device:x", "a@example.com", 0, window=50, distinct=3) is None
    assert spray.record_failure("device:x", "a@example.com", 1, window=50, distinct=3) is None  # same user
    assert spray.record_failure("device:x", "b@example.com", 2, window=50, distinct=3) is None
    assert spray.blocked_for("device:x", 3) == 0
    assert spray.record_failure("device:x", "c@example.com", 3, window=50, distinct=3) == 3
    assert spray.blocked_for("device:x", 4) == 49
    assert spray.blocked_for("device:y", 4) == 0
    assert spray.blocked_for("device:x", 53) == 0


def test_spray_needs_the_users_within_the_window() -> None:
    spray = SprayDetector(KEY)
    for i, t in enumerate((0, 30, 60, 90)):
        assert spray.record_failure("source:a", f"u{i}@example.com", t, window=50, distinct=3) is None


def test_spray_block_is_an_actor_lock(throttle: LoginThrottle, clock: Clock) -> None:
    for i in range(3):
        tripped = throttle.failed_for_user(APP, f"user{i}@example.com", LIMITS)
    assert tripped == 3
    lock = throttle.actor_lock(APP, LIMITS)
    assert lock is not None and (lock.kind, lock.retry_after) == (LockKind.SPRAY, 50)
    clock.now += 50
    assert throttle.actor_lock(APP, LIMITS) is None
