"""Around every login attempt: throttles before the IdP, then audit and metrics after.

:class:`LoginGuard` is held by the app; each request opens one
:class:`Attempt` (a context manager) which the connectors and
``LoginService.verify_password`` fill in as they learn the device, tenant and
email.  On exit the attempt feeds the throttles, writes one audit event and
counts the result, whatever happened (success, refusal, or an error).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType

from bridge.config import BridgeConfig, TenantConfig, ThrottleConfig
from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    DeviceThrottled,
    IdpRefused,
    InvalidCredentials,
    LoginRefused,
    TemporarilyLocked,
    UnknownDomain,
    UserDisabled,
    UserNotProvisioned,
)
from bridge.idp.http import track_idp_contact
from bridge.logcontext import request_id_var
from bridge.login.tenants import LiveTenants
from bridge.login.throttle import Actor, Lock, LockKind, LoginThrottle, StaleAnswer
from bridge.metrics import UNKNOWN_TENANT, BridgeMetrics
from bridge.state.audit import RESULT_OK, AuditEvent, AuditKind, AuditLog
from bridge.state.store import Device

log = logging.getLogger(__name__)

_CLAIMED_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Failures that say "this user is not for you": what a password spray produces.
_SPRAY_SIGNALS = (InvalidCredentials, AccessDenied, IdpRefused, UserNotProvisioned, UnknownDomain, UserDisabled)


def _remembered_as(refusal: LoginRefused) -> StaleAnswer | None:
    """How the stale-password guard remembers an IdP refusal (None: counted, not remembered).

    A wrong password and a refused account (locked, disabled, denied) are both
    remembered for the pair, so a device retrying it stops reaching the IdP.
    A refusal the bridge cannot classify is only counted: remembering it could
    refuse a right password for the whole TTL.
    """
    if isinstance(refusal, InvalidCredentials):
        return StaleAnswer.WRONG_PASSWORD
    if isinstance(refusal, AccessDenied):
        return StaleAnswer.ACCOUNT_REFUSED
    return None


class LoginMode(enum.Enum):
    """How the user reached the bridge (audit and metrics label)."""

    SHARED_ACCOUNT = "shared-account"
    DEVICE_LOGIN = "device-login"
    USER_PROMPT = "user-prompt"
    APP = "app"
    PRINTER = "printer"
    PASSWORD = "password"  # noqa: S105 (a label: a password check whose caller named no channel)
    PAIRING = "pairing"  # phone pairing: the phone's approval and IdP sign-in, and the device taking the session
    BADGE = "badge"  # a badge bound by a pairing opens a session (no IdP)
    WEB = "web"  # /v1/web/login: browser sign-in handed to a platform web app


# The longest reason the audit trail records (the audit caps every field at 512 characters).
REASON_CHARS = 300


def _reason_of(exc: BaseException | None) -> str | None:
    """The specific check behind a refusal, for the audit trail: short text the bridge wrote, never a secret.

    The assertion check that failed, else the ``cause`` the raiser gave (which throttle, the stale-password
    guard, the IdP address outside the whitelist, the timeout, TLS failure or HTTP status of the IdP).
    """
    if isinstance(exc, AssertionRejected):
        return exc.reason
    if isinstance(exc, BridgeError) and exc.cause:
        return exc.cause if len(exc.cause) <= REASON_CHARS else exc.cause[:REASON_CHARS - 1] + "\u2026"
    return None


def _span(value: timedelta) -> str:
    """``15 min``, ``1 h``, ``90 s``: a duration of the throttle settings, in words."""
    seconds = int(value.total_seconds())
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _lock_cause(lock: Lock, limits: ThrottleConfig, actor: Actor) -> str:
    """Which throttle refused, with its setting: the reason the audit trail records for a lock."""
    who = f"device {actor.device_id}" if actor.device_id is not None else f"source address {actor.source or '-'}"
    within, retry = f"within {_span(limits.window)}", f"retry after {lock.retry_after} s"
    if lock.kind == LockKind.SPRAY:
        return (f"spray block: {who} reached {limits.spray_distinct_users} distinct failing users within "
                f"{_span(limits.spray_window)} (spray_distinct_users); {retry}")
    if lock.kind == LockKind.DEVICE:
        return (f"per-device throttle: {who} reached {limits.device_failures} IdP-rejected passwords {within} "
                f"(device_failures); {retry}")
    if lock.kind == LockKind.SOURCE:
        return (f"per-source throttle: {who} reached {limits.source_failures} IdP-rejected passwords {within} "
                f"(source_failures); {retry}")
    return (f"per-user throttle: this account reached {limits.user_failures} IdP-rejected passwords {within} "
            f"(user_failures, attempts at the IdP included); {retry}")


def _stale_cause(answer: StaleAnswer, limits: ThrottleConfig) -> str:
    """The stale-password guard's reason: the IdP was not asked, it refused this very pair not long ago."""
    ttl = _span(limits.stale_password_ttl)
    if answer is StaleAnswer.ACCOUNT_REFUSED:
        return (f"refused before: the IdP was not asked again (stale-password guard: it refused this account "
                f"with this password within stale_password_ttl, {ttl})")
    return (f"stale password: the IdP was not asked again (stale-password guard: it rejected this password "
            f"within stale_password_ttl, {ttl})")


class LoginGuard:
    """Throttles, audit trail and metrics of one bridge process."""

    def __init__(self, config: BridgeConfig, throttle: LoginThrottle, *, audit: AuditLog | None = None,
                 metrics: BridgeMetrics | None = None, tenants: LiveTenants | None = None) -> None:
        self.config = config
        self.tenants = tenants  # the live tenants (bridge/login/tenants.py); None: the configuration's
        self.throttle = throttle
        self.audit = audit
        self.metrics = metrics

    def attempt(self, *, mode: LoginMode, source: str | None, device: Device | None = None) -> Attempt:
        return Attempt(self, mode=mode, source=source, device=device)

    def device_limits(self, device: Device) -> ThrottleConfig:
        current = self.config if self.tenants is None else self.tenants.config
        for tenant in current.tenants:
            if tenant.id == device.tenant_id:
                return tenant.throttle
        return ThrottleConfig()


class Attempt:
    """One login attempt; use as ``async with guard.attempt(...) as attempt:`` (its audit row is written at the end).

    A guard of ``None`` makes every method a no-op, so the login service works
    unguarded (unit tests, tools).
    """

    def __init__(self, guard: LoginGuard | None, *, mode: LoginMode, source: str | None,
                 device: Device | None = None) -> None:
        self._guard = guard
        self.mode = mode
        self.source = source
        self.device = device
        self.claimed_device_id: str | None = None
        self.tenant: TenantConfig | None = None
        self.email: str | None = None
        self.reported_user: str | None = None  # a device-login user name, for spray detection only
        self.idp_seconds: float | None = None
        self._at = datetime.now(UTC)
        self._actor_checked: ThrottleConfig | None = None  # the limits the actor passed under
        # The IdP-attempt ticket of check_password_allowed, until at_idp or finish gives it back.
        self._ticket: tuple[str, str, int] | None = None
        # The ticket of an attempt the IdP accepted: finish gives it back (with a success's reset, one statement).
        self._accepted: tuple[str, str, int] | None = None
        # The user an IdP refusal already fed spray detection for (with the ticket back), and what it tripped.
        self._spray_fed: str | None = None
        self._spray_tripped: int | None = None

    # -- what the connectors and the login service learn -------------------

    def claim_device(self, device_id: str) -> None:
        """The device id a request claims (kept for the audit only if it looks like an id)."""
        self.claimed_device_id = device_id if _CLAIMED_ID.fullmatch(device_id) else None

    def identified(self, tenant: TenantConfig, email: str) -> None:
        self.tenant = tenant
        self.email = email

    @property
    def actor(self) -> Actor:
        return Actor(device_id=self.device.device_id if self.device is not None else None, source=self.source)

    def _limits(self) -> ThrottleConfig:
        if self.tenant is not None:
            return self.tenant.throttle
        if self.device is not None and self._guard is not None:
            return self._guard.device_limits(self.device)
        return ThrottleConfig()

    def _tenant_label(self) -> str:
        if self.tenant is not None:
            return self.tenant.id
        return self.device.tenant_id if self.device is not None else UNKNOWN_TENANT

    def _refuse(self, lock: Lock) -> BridgeError:
        guard = self._guard
        if guard is not None and guard.metrics is not None:
            guard.metrics.throttle_hits.labels(tenant=self._tenant_label(), kind=lock.kind).inc()
        cause = _lock_cause(lock, self._limits(), self.actor)
        if lock.kind == LockKind.SPRAY:
            return DeviceThrottled(f"{self.actor.key} is blocked for trying many users",
                                   retry_after=lock.retry_after, throttle=lock.kind, cause=cause)
        return TemporarilyLocked(f"{lock.kind} throttle: too many rejected passwords", retry_after=lock.retry_after,
                                 throttle=lock.kind, cause=cause)

    # -- checks before anything reaches the IdP ------------------------------

    async def check_actor(self) -> None:
        """Refuse a device or source that is spray-blocked or over its failure budget.

        Once per attempt and limits: a connector checks before the tenant is known, and the
        password check again under the tenant's limits only when they differ.
        """
        limits = self._limits()
        if self._guard is None or self._actor_checked == limits:
            return
        lock = await self._guard.throttle.actor_lock(self.actor, limits)
        if lock is not None:
            raise self._refuse(lock)
        self._actor_checked = limits

    async def check_password_allowed(self, tenant: TenantConfig, email: str, password: str) -> None:
        """Per-actor and per-user throttles, then the stale-password guard; all without the IdP.

        The user check is an admission, atomic across instances: when it passes, this attempt holds
        an in-flight ticket (counted against the user) until :meth:`at_idp` or :meth:`finish` ends it.
        The ticket also reserves the (actor, user) pair for spray detection: the admission refuses
        when the actor's users failed or at the IdP, this one aside, already reach the spray count.
        A store error propagates: the login fails rather than reach the IdP unthrottled.
        """
        self.identified(tenant, email)
        guard = self._guard
        if guard is None:
            return
        await self.check_actor()
        await self._release()
        admission = await guard.throttle.admit(tenant.id, email, password, tenant.throttle, self.actor)
        if admission.lock is not None:
            raise self._refuse(admission.lock)
        if admission.stale is not None:
            if guard.metrics is not None:
                guard.metrics.stale_password_hits.labels(tenant=tenant.id).inc()
            # The same answer the IdP gave for this pair, without asking it again.
            cause = _stale_cause(admission.stale, tenant.throttle)
            if admission.stale is StaleAnswer.ACCOUNT_REFUSED:
                raise AccessDenied("stale-password guard: the IdP already refused this account with this password",
                                   cause=cause)
            raise InvalidCredentials("stale-password guard: the IdP already rejected this password", cause=cause)
        if admission.ticket is not None:
            self._ticket = (tenant.id, email, admission.ticket)

    async def _release(self) -> None:
        """Give back the tickets still held (the IdP was not asked after all, or its answer is in)."""
        held, self._ticket = self._ticket, None
        accepted, self._accepted = self._accepted, None
        if self._guard is not None:
            for ticket in (held, accepted):
                if ticket is not None:
                    await self._guard.throttle.idp_finished(ticket[0], ticket[1], ticket[2])

    @asynccontextmanager
    async def at_idp(self, tenant: TenantConfig, email: str, password: str) -> AsyncIterator[None]:
        """Wrap the IdP call: in-flight ticket, latency, and what a rejection teaches the throttles.

        Without a ticket from :meth:`check_password_allowed` for this user, the checks run here first.
        """
        guard = self._guard
        if guard is None:
            yield
            return
        held = self._ticket
        if held is None or held[:2] != (tenant.id, email):
            await self.check_password_allowed(tenant, email, password)
            held = self._ticket
        if held is None:  # pragma: no cover (check_password_allowed raises or leaves a ticket)
            raise TemporarilyLocked("user throttle: no admission", retry_after=1, throttle=LockKind.USER,
                                    cause="per-user throttle: no admission to the IdP")
        ticket = held[2]
        started = time.perf_counter()
        released = False
        try:
            with track_idp_contact() as contact:
                yield
        except (InvalidCredentials, AccessDenied, IdpRefused) as refusal:
            # Every refusal of the user by the IdP feeds the throttles (an unclassified one too: fail closed),
            # spray detection included: the ticket's spray reservation becomes the counted failure at once.
            self._ticket = None
            released = True
            tripped = await guard.throttle.idp_rejected(tenant.id, email, password, self.actor, tenant.throttle,
                                                        remember=_remembered_as(refusal), ticket=ticket)
            self._spray_fed = email
            if tripped is not None:
                self._spray_tripped = tripped
            raise
        else:
            # The IdP accepted the password: the ticket stays counted until finish gives it back, with the
            # success's reset when the login succeeds (one store statement instead of two).
            self._ticket = None
            previous, self._accepted = self._accepted, held
            released = True
            if previous is not None:  # pragma: no cover (check_password_allowed gave it back before)
                await guard.throttle.idp_finished(previous[0], previous[1], previous[2])
        finally:
            if not released:
                self._ticket = None
                await guard.throttle.idp_finished(tenant.id, email, ticket)
            # Latency only when a request went to the IdP (not for a whitelist refusal or a remembered outage).
            if contact.contacted:
                self.idp_seconds = time.perf_counter() - started
                if guard.metrics is not None:
                    guard.metrics.observe_idp_latency(tenant=tenant.id, seconds=self.idp_seconds)

    # -- the end ---------------------------------------------------------------

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        await self.finish(exc)

    async def finish(self, exc: BaseException | None) -> None:
        guard = self._guard
        if guard is None:
            return
        if exc is None:
            result = RESULT_OK
        elif isinstance(exc, BridgeError):
            result = exc.code
        elif isinstance(exc, asyncio.CancelledError):
            result = "cancelled"  # the client went away mid-attempt
        else:
            result = BridgeError.code
        try:
            await self._feed_throttles(guard, exc)
        finally:
            if guard.metrics is not None:
                guard.metrics.count_login(tenant=self._tenant_label(), mode=self.mode.value, result=result)
            if guard.audit is not None:
                await guard.audit.record(self._event(AuditKind.LOGIN, result, reason=_reason_of(exc)))

    async def _feed_throttles(self, guard: LoginGuard, exc: BaseException | None) -> None:
        if exc is None and self.tenant is not None and self.email is not None:
            accepted = self._accepted
            ticket = None
            if accepted is not None and accepted[:2] == (self.tenant.id, self.email):
                self._accepted, ticket = None, accepted[2]
            await self._release()
            await guard.throttle.succeeded(self.tenant.id, self.email, ticket)
        else:
            await self._release()
        user_key = self.email or self.reported_user
        tripped, self._spray_tripped = self._spray_tripped, None
        fed, self._spray_fed = self._spray_fed, None
        if isinstance(exc, _SPRAY_SIGNALS) and user_key and user_key != fed:  # a refusal before the IdP
            tripped = await guard.throttle.failed_for_user(self.actor, user_key, self._limits()) or tripped
        if tripped is not None:
            await self._spray_detected(guard, tripped)

    async def _spray_detected(self, guard: LoginGuard, distinct: int) -> None:
        log.warning("password spray: %s failed for %s distinct users; blocked for %s s", self.actor.key, distinct,
                    int(self._limits().spray_window.total_seconds()))
        if guard.metrics is not None:
            guard.metrics.spray_detections.labels(tenant=self._tenant_label()).inc()
        if guard.audit is not None:
            event = self._event(AuditKind.SPRAY_DETECTED, DeviceThrottled.code)
            await guard.audit.record(AuditEvent(at=datetime.now(UTC), kind=event.kind, result=event.result,
                                          tenant_id=event.tenant_id, device_id=event.device_id, mode=event.mode,
                                          source=event.source, request_id=event.request_id,
                                          distinct_users=distinct))

    def _event(self, kind: AuditKind, result: str, *, reason: str | None = None) -> AuditEvent:
        request_id = request_id_var.get()
        return AuditEvent(
            reason=reason,
            at=self._at,
            kind=kind,
            result=result,
            tenant_id=self.tenant.id if self.tenant is not None else (
                self.device.tenant_id if self.device is not None else None),
            device_id=self.device.device_id if self.device is not None else self.claimed_device_id,
            mode=self.mode.value,
            email=self.email,
            source=self.source,
            idp_latency_ms=None if self.idp_seconds is None else round(self.idp_seconds * 1000),
            request_id=None if request_id == "-" else request_id,
        )
