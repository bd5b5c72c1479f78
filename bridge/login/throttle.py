"""Lockout protection: throttles, the stale-password guard and spray detection.

Directories lock an account after a handful of bad passwords (AD's account
lockout threshold, AD FS extranet lockout); the commonest cause is a device
that keeps retrying a stale password.  The bridge therefore gives up *before*
the IdP does:

* per-user, per-device and per-source failure counters over a sliding window,
  each kept below the IdP's lockout threshold (``ThrottleConfig``);
* a stale-password guard: an (email, password) pair the IdP rejected is kept
  only as ``HMAC(hmac_key, tenant, email, password)`` with a time to live, and
  refused locally with the IdP's own answer (a wrong password, or a refused
  account), so the same pair never reaches the IdP again;
* spray detection: one device or source failing for many distinct users.

State lives in memory, per process: a restart forgets it (the IdP's own
lockout stays the backstop).  Every table is bounded so an attacker cannot
grow it without limit.  No I/O here; time comes from an injectable clock.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from bridge.config import ThrottleConfig

Clock = Callable[[], float]

MAX_KEYS = 100_000


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class SlidingWindow:
    """Event times per key over the last ``window`` seconds."""

    def __init__(self, *, max_keys: int = MAX_KEYS) -> None:
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._max_keys = max_keys

    def _live(self, key: str, now: float, window: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def add(self, key: str, now: float, window: float) -> int:
        """Record one event; returns how many are in the window now."""
        events = self._live(key, now, window)
        if events is None:
            events = self._events[key] = deque()
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        events.append(now)
        self._events.move_to_end(key)
        return len(events)

    def count(self, key: str, now: float, window: float) -> int:
        events = self._live(key, now, window)
        return 0 if events is None else len(events)

    def retry_after(self, key: str, now: float, window: float, limit: int) -> int:
        """Seconds until fewer than ``limit`` events remain in the window (0: not over)."""
        events = self._live(key, now, window)
        if events is None or len(events) < limit:
            return 0
        # The event that must leave the window for the count to drop below the limit.
        pivot = events[len(events) - limit]
        return _retry_after(pivot + window - now)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


class StaleAnswer(enum.Enum):
    """What the IdP said about a remembered (email, password) pair: the guard says it again."""

    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (a label)
    ACCOUNT_REFUSED = "account_refused"


class StalePasswords:
    """Keyed hashes of (tenant, email, password) pairs the IdP rejected, with a time to live.

    Only an HMAC under the server's secret is kept: the table cannot be turned
    back into passwords, and a lookup is a dict probe on a keyed digest (no
    timing signal about any stored value).
    """

    def __init__(self, hmac_key: bytes, *, max_entries: int = MAX_KEYS) -> None:
        self._key = hmac_key
        self._expiry: OrderedDict[bytes, tuple[float, StaleAnswer]] = OrderedDict()
        self._max = max_entries

    def _digest(self, tenant_id: str, email: str, password: str) -> bytes:
        message = b"\0".join([b"loginbridge-stale-password-v1", tenant_id.encode(), email.casefold().encode(),
                              password.encode("utf-8", "surrogatepass")])
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def remember(self, tenant_id: str, email: str, password: str, now: float, ttl: float,
                 answer: StaleAnswer = StaleAnswer.WRONG_PASSWORD) -> None:
        digest = self._digest(tenant_id, email, password)
        self._expiry[digest] = (now + ttl, answer)
        self._expiry.move_to_end(digest)
        while len(self._expiry) > self._max:
            self._expiry.popitem(last=False)

    def answer_for(self, tenant_id: str, email: str, password: str, now: float) -> StaleAnswer | None:
        """The IdP's remembered answer for this pair, or None when it is not (or no longer) remembered."""
        digest = self._digest(tenant_id, email, password)
        entry = self._expiry.get(digest)
        if entry is None:
            return None
        expiry, answer = entry
        if expiry <= now:
            del self._expiry[digest]
            return None
        return answer

    def is_stale(self, tenant_id: str, email: str, password: str, now: float) -> bool:
        return self.answer_for(tenant_id, email, password, now) is not None

    def __len__(self) -> int:
        return len(self._expiry)


class SprayDetector:
    """One actor (device or source) failing for many distinct users in a short window."""

    def __init__(self, hmac_key: bytes, *, max_keys: int = MAX_KEYS) -> None:
        self._key = hmac_key
        self._users: OrderedDict[str, dict[bytes, float]] = OrderedDict()
        self._blocked: dict[str, float] = {}
        self._max_keys = max_keys

    def _user_digest(self, user: str) -> bytes:
        return hmac.new(self._key, b"loginbridge-spray-v1\0" + user.casefold().encode(), hashlib.sha256).digest()

    def blocked_for(self, actor: str, now: float) -> int:
        """Seconds the actor stays blocked (0: not blocked)."""
        until = self._blocked.get(actor)
        if until is None:
            return 0
        if until <= now:
            del self._blocked[actor]
            return 0
        return _retry_after(until - now)

    def record_failure(self, actor: str, user: str, now: float, *, window: float, distinct: int) -> int | None:
        """Note a failed attempt; returns the distinct-user count when this one trips the detector."""
        users = self._users.get(actor)
        if users is None:
            users = self._users[actor] = {}
            while len(self._users) > self._max_keys:
                self._users.popitem(last=False)
        self._users.move_to_end(actor)
        for digest in [d for d, seen in users.items() if seen <= now - window]:
            del users[digest]
        users[self._user_digest(user)] = now
        if len(users) >= distinct and self.blocked_for(actor, now) == 0:
            self._blocked[actor] = now + window
            users.clear()
            return distinct
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class Actor:
    """Who is knocking: a registered device, or (without device credentials) a source address."""

    device_id: str | None
    source: str | None

    @property
    def key(self) -> str:
        return f"device:{self.device_id}" if self.device_id is not None else f"source:{self.source or '-'}"


class LockKind:
    """Label values for the throttle that refused an attempt (metrics and audit)."""

    USER = "user"
    DEVICE = "device"
    SOURCE = "source"
    SPRAY = "spray"


@dataclass(frozen=True, kw_only=True, slots=True)
class Lock:
    kind: str
    retry_after: int


class LoginThrottle:
    """The counters of one bridge process; callers pass each tenant's limits."""

    def __init__(self, hmac_key: bytes, *, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.clock = clock
        self._users = SlidingWindow(max_keys=max_keys)
        self._actors = SlidingWindow(max_keys=max_keys)
        self._in_flight: dict[str, int] = {}
        self.stale = StalePasswords(hmac_key, max_entries=max_keys)
        self.spray = SprayDetector(hmac_key, max_keys=max_keys)

    @staticmethod
    def _user_key(tenant_id: str, email: str) -> str:
        return f"{tenant_id}\0{email.casefold()}"

    def actor_lock(self, actor: Actor, limits: ThrottleConfig) -> Lock | None:
        """A spray block or too many IdP-rejected passwords from this device/source."""
        now = self.clock()
        if (wait := self.spray.blocked_for(actor.key, now)) > 0:
            return Lock(kind=LockKind.SPRAY, retry_after=wait)
        limit = limits.device_failures if actor.device_id is not None else limits.source_failures
        kind = LockKind.DEVICE if actor.device_id is not None else LockKind.SOURCE
        wait = self._actors.retry_after(actor.key, now, limits.window.total_seconds(), limit)
        return Lock(kind=kind, retry_after=wait) if wait > 0 else None

    def user_lock(self, tenant_id: str, email: str, limits: ThrottleConfig) -> Lock | None:
        """Too many IdP-rejected passwords for this user, counting attempts still at the IdP."""
        key = self._user_key(tenant_id, email)
        now = self.clock()
        window = limits.window.total_seconds()
        failures = self._users.count(key, now, window)
        if failures + self._in_flight.get(key, 0) < limits.user_failures:
            return None
        wait = self._users.retry_after(key, now, window, max(1, limits.user_failures - self._in_flight.get(key, 0)))
        return Lock(kind=LockKind.USER, retry_after=wait or 1)

    def is_stale(self, tenant_id: str, email: str, password: str) -> bool:
        return self.stale.is_stale(tenant_id, email, password, self.clock())

    def stale_answer(self, tenant_id: str, email: str, password: str) -> StaleAnswer | None:
        """What the IdP answered this pair within the stale-password TTL, if it refused it."""
        return self.stale.answer_for(tenant_id, email, password, self.clock())

    def idp_started(self, tenant_id: str, email: str) -> None:
        key = self._user_key(tenant_id, email)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def idp_finished(self, tenant_id: str, email: str) -> None:
        key = self._user_key(tenant_id, email)
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def idp_rejected(self, tenant_id: str, email: str, password: str, actor: Actor, limits: ThrottleConfig, *,
                     remember: StaleAnswer | None = StaleAnswer.WRONG_PASSWORD) -> None:
        """The IdP refused the login: count it for the user and the actor, and remember the pair as ``remember``.

        ``remember=None`` counts without remembering: for a refusal the bridge
        cannot classify, which must not stop a right password for an hour.
        """
        now = self.clock()
        window = limits.window.total_seconds()
        self._users.add(self._user_key(tenant_id, email), now, window)
        self._actors.add(actor.key, now, window)
        if remember is not None:
            self.stale.remember(tenant_id, email, password, now, limits.stale_password_ttl.total_seconds(),
                                remember)

    def succeeded(self, tenant_id: str, email: str) -> None:
        """A good password resets the user's count, as a successful logon does at AD."""
        self._users.clear(self._user_key(tenant_id, email))

    def failed_for_user(self, actor: Actor, user: str, limits: ThrottleConfig) -> int | None:
        """Feed spray detection; returns the distinct-user count when the actor just got blocked."""
        return self.spray.record_failure(actor.key, user, self.clock(), window=limits.spray_window.total_seconds(),
                                         distinct=limits.spray_distinct_users)
