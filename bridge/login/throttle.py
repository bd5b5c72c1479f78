"""Lockout protection: throttles, the stale-password guard and spray detection.

Directories lock an account after a handful of bad passwords (AD's account
lockout threshold, AD FS extranet lockout); the commonest cause is a device
that keeps retrying a stale password.  The bridge therefore gives up *before*
the IdP does:

* per-user, per-device and per-source failure counters over a sliding window,
  each kept below the IdP's lockout threshold (``ThrottleConfig``); attempts
  still at the IdP count against the user;
* a stale-password guard: an (email, password) pair the IdP rejected is kept
  only as ``HMAC(hmac_key, tenant, email, password)`` with a time to live, and
  refused locally with the IdP's own answer (a wrong password, or a refused
  account), so the same pair never reaches the IdP again;
* spray detection: one device or source failing for many distinct users.  An
  attempt at the IdP reserves its (actor, user) pair on its in-flight ticket, so
  the users an actor has failed for *or* has at the IdP right now count: the
  admission refuses (a short spray lock) once they reach
  ``spray_distinct_users`` without this user, and the actor's IdP calls never
  exceed that count whatever the concurrency.  The reservation ends with the
  ticket: a success or an attempt without an IdP verdict (IdP down, cancelled)
  leaves nothing counted (an earlier real failure of that user stays), an IdP
  refusal turns it into a counted failure in the same transaction, which trips
  the block exactly at the count.

State lives in the store (:class:`bridge.state.store.Store`, migrations 4 and 7),
so every instance of a cluster sees the same counters: a user's admission to
the IdP (failures + attempts in flight below the limit, pair not stale, the
actor's spray count) and the spray detector's trip are atomic across instances.  Only keyed HMACs reach
the store (user, actor and spray-user keys, stale-pair digests), never an
email, address or password.  Times are wall-clock ``datetime`` from an
injectable clock (the instances share them).  A store error propagates: the
login fails, it never goes to the IdP unthrottled.  On PostgreSQL the tables
are UNLOGGED: a database crash forgets them (the IdP's own lockout stays the
backstop).  The window arithmetic is the pure functions below.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bridge.config import ThrottleConfig
from bridge.state.store import Spray, Store

Clock = Callable[[], datetime]

# How long an attempt counts as in flight when its instance never says it ended (a crash): longer
# than any IdP call (connect + read timeouts), short enough not to lock a user out for long.
IN_FLIGHT_TTL = timedelta(minutes=2)


def wall_clock() -> datetime:
    return datetime.now(UTC)


# -- the pure window logic ---------------------------------------------------------------------------


def retry_after_seconds(seconds: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))


def window_retry_after(newest: Sequence[datetime], now: datetime, window: timedelta, limit: int) -> int:
    """Seconds until fewer than ``limit`` events remain in the window (0: not over).

    ``newest`` are the events still in the window, newest first (at least the ``limit`` newest).
    """
    if limit < 1 or len(newest) < limit:
        return 0
    # The event that must leave the window for the count to drop below the limit.
    pivot = newest[limit - 1]
    return retry_after_seconds((pivot + window - now).total_seconds())


async def guesses_exhausted(store: Store, key: bytes, *, now: datetime, window: timedelta, limit: int) -> int | None:
    """Seconds to wait (at least 1) when ``key`` already has ``limit`` failures within ``window``, else None.

    For secrets that are guessed rather than typed wrong (personal printer URLs, pairing codes,
    badges): the failures are in the same shared table as the login throttles, so every instance
    counts them; the caller records a miss with ``store.throttle_failure``.
    """
    if await store.throttle_count(key, now=now, window=window) < limit:
        return None
    return max(await store.throttle_retry_after(key, now=now, window=window, limit=limit), 1)


class StaleAnswer(enum.Enum):
    """What the IdP said about a remembered (email, password) pair: the guard says it again."""

    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (a label)
    ACCOUNT_REFUSED = "account_refused"


class ThrottleKeys:
    """The keyed HMACs the store sees instead of emails, addresses and passwords.

    Only digests under the server's secret are kept: the tables cannot be
    turned back into passwords or addresses, and a lookup is an index probe on
    a keyed digest (no timing signal about any stored value).
    """

    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._key, b"\0".join(parts), hashlib.sha256).digest()

    def user(self, tenant_id: str, email: str) -> bytes:
        return self._mac(b"loginbridge-user-v1", tenant_id.encode(), email.casefold().encode())

    def actor(self, actor: Actor) -> bytes:
        return self._mac(b"loginbridge-actor-v1", actor.key.encode("utf-8", "surrogatepass"))

    def stale(self, tenant_id: str, email: str, password: str) -> bytes:
        return self._mac(b"loginbridge-stale-password-v1", tenant_id.encode(), email.casefold().encode(),
                         password.encode("utf-8", "surrogatepass"))

    def spray_user(self, user: str) -> bytes:
        return self._mac(b"loginbridge-spray-v1", user.casefold().encode("utf-8", "surrogatepass"))


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


def user_lock(failures: Sequence[datetime], in_flight: int, now: datetime, limits: ThrottleConfig) -> Lock | None:
    """The user throttle: ``failures`` in the window (newest first, at least ``user_failures`` of them when there
    are that many) plus attempts in flight must stay below ``user_failures``."""
    if len(failures) + in_flight < limits.user_failures:
        return None
    wait = window_retry_after(failures, now, limits.window, max(1, limits.user_failures - in_flight))
    return Lock(kind=LockKind.USER, retry_after=wait or 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class Admission:
    """The answer to "may this password go to the IdP?": a ticket (yes), a lock, or the stale answer."""

    ticket: int | None = None
    lock: Lock | None = None
    stale: StaleAnswer | None = None


class LoginThrottle:
    """The counters of the whole cluster, in the store; callers pass each tenant's limits."""

    def __init__(self, store: Store, hmac_key: bytes, *, clock: Clock = wall_clock,
                 in_flight_ttl: timedelta = IN_FLIGHT_TTL) -> None:
        self.store = store
        self.clock = clock
        self.keys = ThrottleKeys(hmac_key)
        self.in_flight_ttl = in_flight_ttl

    async def actor_lock(self, actor: Actor, limits: ThrottleConfig) -> Lock | None:
        """A spray block or too many IdP-rejected passwords from this device/source (one statement)."""
        now = self.clock()
        limit = limits.device_failures if actor.device_id is not None else limits.source_failures
        kind = LockKind.DEVICE if actor.device_id is not None else LockKind.SOURCE
        blocked_until, wait = await self.store.throttle_actor_state(self.keys.actor(actor), now=now,
                                                                    window=limits.window, limit=limit)
        if blocked_until is not None:
            return Lock(kind=LockKind.SPRAY, retry_after=retry_after_seconds((blocked_until - now).total_seconds()))
        return Lock(kind=kind, retry_after=wait) if wait > 0 else None

    async def user_lock(self, tenant_id: str, email: str, limits: ThrottleConfig) -> Lock | None:
        """Too many IdP-rejected passwords for this user, counting attempts still at the IdP (a read only)."""
        now = self.clock()
        in_flight, newest = await self.store.throttle_user_state(self.keys.user(tenant_id, email), now=now,
                                                                 window=limits.window, limit=limits.user_failures)
        return user_lock(newest, in_flight, now, limits)

    async def admit(self, tenant_id: str, email: str, password: str, limits: ThrottleConfig,
                    actor: Actor | None = None) -> Admission:
        """Atomically across instances: a ticket for one IdP attempt, or the user lock, or the stale answer,
        or (with ``actor``) the spray lock.

        With ``actor`` the ticket reserves the (actor, user) pair for spray detection: refused while the
        actor is spray-blocked, or while the users it failed for in the spray window or has at the IdP
        now, this one aside, already reach ``spray_distinct_users`` (a spray lock of a second: an
        attempt at the IdP ends soon).  The user lock wins over the stale answer (as when they were two
        checks), the stale answer (no IdP call) over the spray lock.  A ticket must be given back:
        :meth:`idp_rejected` (which counts the pair's failure) or :meth:`idp_finished` / :meth:`succeeded`
        (which end the reservation).
        """
        now = self.clock()
        spray = None if actor is None else self._spray(actor, email, limits)
        found = await self.store.throttle_admit(
            self.keys.user(tenant_id, email), self.keys.stale(tenant_id, email, password), now=now,
            window=limits.window, limit=limits.user_failures, expires_at=now + self.in_flight_ttl, spray=spray)
        if found.ticket is not None:
            return Admission(ticket=found.ticket)
        lock = user_lock(found.newest, found.in_flight, now, limits)
        if lock is not None:
            return Admission(lock=lock)
        if found.stale_answer is not None:
            return Admission(stale=StaleAnswer(found.stale_answer))
        if found.blocked_until is not None:
            return Admission(lock=Lock(kind=LockKind.SPRAY,
                                       retry_after=retry_after_seconds((found.blocked_until - now).total_seconds())))
        if spray is not None and found.spray_users >= spray.distinct:
            return Admission(lock=Lock(kind=LockKind.SPRAY, retry_after=1))
        # Refused, yet under the limit and not stale: the store's state changed meanwhile; fail closed.
        return Admission(lock=Lock(kind=LockKind.USER, retry_after=1))

    async def is_stale(self, tenant_id: str, email: str, password: str) -> bool:
        return await self.stale_answer(tenant_id, email, password) is not None

    async def stale_answer(self, tenant_id: str, email: str, password: str) -> StaleAnswer | None:
        """What the IdP answered this pair within the stale-password TTL, if it refused it."""
        answer = await self.store.throttle_stale_answer(self.keys.stale(tenant_id, email, password),
                                                        now=self.clock())
        return None if answer is None else StaleAnswer(answer)

    async def idp_started(self, tenant_id: str, email: str) -> int:
        """One more attempt at the IdP for the user, unconditionally (:meth:`admit` checks first); its ticket."""
        return await self.store.throttle_in_flight_start(self.keys.user(tenant_id, email),
                                                         expires_at=self.clock() + self.in_flight_ttl)

    async def idp_finished(self, tenant_id: str, email: str, ticket: int | None = None) -> None:
        await self.store.throttle_in_flight_end(self.keys.user(tenant_id, email), ticket)

    async def idp_rejected(self, tenant_id: str, email: str, password: str, actor: Actor, limits: ThrottleConfig, *,
                           remember: StaleAnswer | None = StaleAnswer.WRONG_PASSWORD,
                           ticket: int | None = None) -> int | None:
        """The IdP refused the login: count it for the user and the actor, feed spray detection (the actor
        failed for this user), and remember the pair as ``remember``; returns the distinct-user count when
        this blocked the actor for spraying (as :meth:`failed_for_user`).

        ``remember=None`` counts without remembering: for a refusal the bridge
        cannot classify, which must not stop a right password for an hour.
        ``ticket`` (from :meth:`admit`) is given back in the same transaction, so its spray
        reservation becomes the counted failure without a moment in which it counts for nothing.
        """
        now = self.clock()
        user = self.keys.user(tenant_id, email)
        stale = None if remember is None else (self.keys.stale(tenant_id, email, password), remember.value,
                                               now + limits.stale_password_ttl)
        return await self.store.throttle_rejected(
            [(user, limits.window), (self.keys.actor(actor), limits.window)], now=now, stale=stale,
            release=None if ticket is None else (user, ticket), spray=self._spray(actor, email, limits))

    async def succeeded(self, tenant_id: str, email: str, ticket: int | None = None) -> None:
        """A good password resets the user's count, as a successful logon does at AD.

        ``ticket`` (from :meth:`admit`, for the attempt the IdP accepted) is given back in the same statement,
        and its spray reservation with it: a success never counts toward spray detection.
        """
        await self.store.throttle_clear(self.keys.user(tenant_id, email), ticket)

    async def failed_for_user(self, actor: Actor, user: str, limits: ThrottleConfig) -> int | None:
        """Feed spray detection with a failure the IdP did not give (a refusal before it: unknown user,
        stale pair...; :meth:`idp_rejected` feeds its own); returns the distinct-user count when the actor
        just got blocked."""
        return await self.store.throttle_spray_failure(self.keys.actor(actor), self.keys.spray_user(user),
                                                       now=self.clock(), window=limits.spray_window,
                                                       distinct=limits.spray_distinct_users)

    def _spray(self, actor: Actor, user: str, limits: ThrottleConfig) -> Spray:
        return Spray(actor=self.keys.actor(actor), user=self.keys.spray_user(user), window=limits.spray_window,
                     distinct=limits.spray_distinct_users)
