"""Phone pairing and browser sign-in: MFA at a device that can only show a code.

A password typed at a panel can never satisfy MFA.  Here the panel shows a code and a QR
code (RFC 8628's device authorization grant, with our endpoints); the user opens it on the
phone, checks which device and company they are approving (RFC 10027's advice against
cross-device phishing), and signs in at the tenant's IdP in the phone's browser, where the
IdP's own MFA and conditional access apply.  The IdP's answer is validated by the same
assertion code as the password paths; the device's poll then gets the same session a
password login would give.

Secrets and what is stored (bridge/state/pairings.py):

- device code: 256 random bits, returned once to the device, stored as SHA-256;
- user code: 8 letters from RFC 8628 section 6.1's base-20 consonant alphabet (no vowels, so
  no words; no digits to mistake for letters): about 34.6 bits, live for at most 5 minutes,
  stored as an HMAC (a leaked table cannot be searched offline), and guesses are throttled per
  source address and in total, in the lockout protection's shared failure table;
- the browser sign-in's ``state`` (RelayState / wctx) and its browser cookie: 256 random bits
  each, stored as SHA-256: the IdP's POST is only finished from the browser that confirmed;
- a badge: an HMAC with a key of its own, so the table never holds a badge id.

Every step is audited as a login attempt (modes ``pairing``, ``badge``, ``web``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from bridge.config import TenantConfig
from bridge.errors import (
    AccessDenied,
    AuthorizationPending,
    BadgeUnknown,
    BridgeError,
    BrowserSigninError,
    DeviceThrottled,
    ExpiredToken,
    PairingCodeUnknown,
    PairingDenied,
    RequestError,
    ReturnToRefused,
    SlowDown,
    StoreConflict,
    UserCodeGuesses,
    UserCodeUnknown,
    UserNotProvisioned,
)
from bridge.idp.browser import BrowserSignin
from bridge.login.guard import Attempt
from bridge.login.service import LoginOutcome, LoginService, identity_key, split_email
from bridge.login.throttle import guesses_exhausted
from bridge.state.db import Database
from bridge.state.pairings import (
    BrowserSigninRecord,
    Pairing,
    PairingStatus,
    SigninPurpose,
    bind_badge,
    consume_pairing,
    create_pairing,
    create_signin,
    finish_signin,
    get_pairing,
    get_signin,
    move_pairing,
    note_poll,
    pairing_by_device_code,
    pairing_by_user_code,
    record_subject,
    resolve_badge,
    signin_by_state,
    take_code,
)
from bridge.state.store import Device, User
from bridge.webforms import derive_key

log = logging.getLogger(__name__)

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
PAIRING_LIFETIME = timedelta(minutes=5)
POLL_INTERVAL = 5  # seconds (RFC 8628 section 3.2's default)
SLOW_DOWN_STEP = 5  # seconds added to the interval on each slow_down (RFC 8628 section 3.5)
SIGNIN_LIFETIME = timedelta(minutes=10)  # from the redirect to the IdP to the IdP's POST (MFA takes a while)
CODE_LIFETIME = timedelta(seconds=60)  # /v1/web/login's one-time code, from the redirect to the exchange
PRINT_FINISH_PATH = "/print/setup/finish"  # where a print setup's browser sign-in comes back with its code
_CODE_PURPOSES = (SigninPurpose.WEB, SigninPurpose.PRINT)  # sign-ins that end with a one-time code
APPROVED_GRACE = timedelta(minutes=2)  # an approval just before expiry can still be taken by the next polls
GUESS_WINDOW = timedelta(minutes=15)
GUESSES_PER_SOURCE = 10
GUESSES_TOTAL = 300  # all sources together: a botnet cannot spread 10^6 guesses over addresses
MAX_BADGE_CHARS = 256
MAX_CODE_CHARS = 64
PAIR_PATH = "/pair"
_CREATE_TRIES = 5


@dataclass(frozen=True, kw_only=True, slots=True)
class PairingStart:
    """What a device shows after asking for a pairing (the codes are not stored)."""

    pairing: Pairing
    device_code: str
    user_code: str  # displayed form, XXXX-XXXX
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PairingView:
    """What the phone page shows before the user approves: which device, where, for which company."""

    pairing: Pairing
    device: Device
    tenant: TenantConfig
    user_code: str  # displayed form


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """A finished browser sign-in: a pairing approved, or a web app's one-time code."""

    purpose: SigninPurpose
    email: str
    tenant: TenantConfig
    device: Device | None = None  # pairing: the device approved
    return_to: str | None = None  # web: where the browser goes, with the code


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(text: str) -> str | None:
    """The code as stored, from what a person typed (any case, spaces or dashes); None when it cannot be one."""
    if len(text) > MAX_CODE_CHARS:
        return None
    code = "".join(ch for ch in text.upper() if ch not in " -\t")
    if len(code) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in code):
        return None
    return code


def display_user_code(code: str) -> str:
    half = USER_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def origin_of(url: str) -> str | None:
    """scheme://host[:port] of an absolute http(s) URL, lower-cased as config stores origins; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host.lower()}" + (f":{port}" if port is not None else "")


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query (its fragment dropped)."""
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


class PairingService:
    """The pairing and browser sign-in logic between the faces (device API, phone pages) and the store."""

    def __init__(self, login: LoginService, *, hmac_key: bytes) -> None:
        self.login = login
        self._user_code_key = derive_key(hmac_key, "pairing user code")
        self._badge_key = derive_key(hmac_key, "badge binding")
        self._guess_key = derive_key(hmac_key, "pairing guesses")

    @staticmethod
    def new_browser_secret() -> str:
        """The secret of a browser's sign-in cookie (256 bits)."""
        return secrets.token_urlsafe(32)

    @property
    def _db(self) -> Database:
        return self.login.store.database

    def _user_code_hash(self, code: str) -> bytes:
        return hmac.new(self._user_code_key, code.encode("ascii"), hashlib.sha256).digest()

    def badge_hash(self, tenant_id: str, badge: str) -> bytes:
        message = tenant_id.encode() + b"\0" + badge.encode("utf-8", "surrogatepass")
        return hmac.new(self._badge_key, message, hashlib.sha256).digest()

    def _public(self, path: str) -> str:
        return self.login.config.public_url.rstrip("/") + path

    # -- the device ----------------------------------------------------------------------

    async def start(self, device: Device, *, badge: str | None, now: datetime | None = None) -> PairingStart:
        """A new pairing for this device (its older live ones retired)."""
        when = now or datetime.now(UTC)
        tenant = self.login.config.tenant(device.tenant_id)
        badge_hash = None if badge is None else self.badge_hash(tenant.id, badge)
        for attempt_no in range(_CREATE_TRIES):
            code, device_code = new_user_code(), secrets.token_urlsafe(32)
            try:
                pairing = await create_pairing(
                    self._db, device_code_hash=sha256(device_code), user_code_hash=self._user_code_hash(code),
                    tenant_id=tenant.id, device_id=device.device_id, badge_hash=badge_hash,
                    lifetime=PAIRING_LIFETIME, interval=POLL_INTERVAL, now=when)
            except StoreConflict:
                if attempt_no == _CREATE_TRIES - 1:
                    raise
                continue  # a code still stored was drawn again (1 in 2.5e10): draw another
            break
        log.info("pairing %s started on device %s%s", pairing.id, device.device_id, " with a badge" if badge else "")
        shown = display_user_code(code)
        return PairingStart(
            pairing=pairing, device_code=device_code, user_code=shown,
            verification_uri=self._public(PAIR_PATH),
            verification_uri_complete=self._public(PAIR_PATH) + "?" + urlencode({"code": code}),
            expires_in=int(PAIRING_LIFETIME.total_seconds()), interval=POLL_INTERVAL)

    async def poll(self, device: Device, device_code: str, attempt: Attempt,
                   now: datetime | None = None) -> LoginOutcome:
        """The device's poll: the session once the user approved, else the RFC 8628 answer for now."""
        when = now or datetime.now(UTC)
        if not device_code or len(device_code) > MAX_CODE_CHARS:
            raise PairingCodeUnknown("no device code, or one too long to be ours")
        pairing = await pairing_by_device_code(self._db, sha256(device_code))
        if pairing is None or pairing.device_id != device.device_id:
            # Another device's code is as unknown as a made-up one: codes are bound to the device that asked.
            raise PairingCodeUnknown("unknown device code, or a code of another device")
        tenant = self.login.config.tenant(pairing.tenant_id)
        attempt.tenant = tenant
        if pairing.email is not None:
            attempt.email = pairing.email
        if pairing.status is PairingStatus.CONSUMED:
            raise PairingCodeUnknown(f"pairing {pairing.id} already gave its session")
        if pairing.status is PairingStatus.DENIED:
            raise PairingDenied(f"pairing {pairing.id} was refused on the phone or by the IdP")
        if pairing.status is PairingStatus.APPROVED and pairing.email is not None:
            if when >= pairing.expires_at + APPROVED_GRACE:
                raise ExpiredToken(f"pairing {pairing.id} was approved but its device did not take the session "
                                   "in time")
            if not await consume_pairing(self._db, pairing.id):
                raise PairingCodeUnknown(f"pairing {pairing.id} already gave its session")
            user = await self.login.provisioned_user(tenant, pairing.email)
            attempt.identified(tenant, user.email)
            outcome = await self.login.open_session(tenant, user, device)
            log.info("pairing %s gave device %s a session", pairing.id, device.device_id)
            return outcome
        if not pairing.live(when):
            raise ExpiredToken(f"pairing {pairing.id} expired at {pairing.expires_at:%H:%M:%S}")
        interval = pairing.interval
        too_soon = pairing.last_poll_at is not None and when - pairing.last_poll_at < timedelta(seconds=interval)
        if too_soon:
            interval += SLOW_DOWN_STEP
        await note_poll(self._db, pairing.id, now=when, interval=interval)
        if too_soon:
            raise SlowDown(f"polled faster than every {pairing.interval} s", interval=interval)
        raise AuthorizationPending(f"pairing {pairing.id} is {pairing.status.value}")

    async def badge_login(self, device: Device, badge: str, attempt: Attempt,
                          now: datetime | None = None) -> LoginOutcome:
        """A badge bound by an earlier pairing opens a session, without the IdP, until the binding ends."""
        when = now or datetime.now(UTC)
        tenant = self.login.config.tenant(device.tenant_id)
        attempt.tenant = tenant
        store = self.login.store
        limits = tenant.throttle
        key = hmac.new(self._guess_key, b"badge\0" + device.device_id.encode(), hashlib.sha256).digest()
        retry = await guesses_exhausted(store, key, now=when, window=limits.window, limit=limits.device_failures)
        if retry is not None:
            raise DeviceThrottled(f"device {device.device_id} presented too many unknown badges", retry_after=retry,
                                  throttle="device",
                                  cause=f"badge throttle: device {device.device_id} presented "
                                        f"{limits.device_failures} unknown badges within the window "
                                        f"(device_failures); retry after {retry} s")
        binding = await resolve_badge(self._db, tenant_id=tenant.id, badge_hash=self.badge_hash(tenant.id, badge),
                                      now=when)
        if binding is None:
            await store.throttle_failure(key, now=when, window=limits.window)
            raise BadgeUnknown(f"no live badge binding in tenant {tenant.id}")
        attempt.identified(tenant, binding.email)
        user = await self.login.provisioned_user(tenant, binding.email)
        outcome = await self.login.open_session(tenant, user, device)
        log.info("badge binding %s opened a session on device %s", binding.id, device.device_id)
        return outcome

    # -- the phone -------------------------------------------------------------------------

    async def _guess_allowed(self, source: str, now: datetime) -> tuple[bytes, bytes]:
        store = self.login.store
        keys = (hmac.new(self._guess_key, b"source\0" + source.encode(), hashlib.sha256).digest(),
                hmac.new(self._guess_key, b"total", hashlib.sha256).digest())
        for key, limit, scope in zip(keys, (GUESSES_PER_SOURCE, GUESSES_TOTAL), ("from this address", "in total"),
                                     strict=True):
            retry = await guesses_exhausted(store, key, now=now, window=GUESS_WINDOW, limit=limit)
            if retry is not None:
                raise UserCodeGuesses(f"too many unknown pairing codes {scope}", retry_after=retry)
        return keys

    async def view(self, code_text: str, *, source: str, now: datetime | None = None) -> PairingView:
        """The live, unconfirmed pairing a typed code names, with its device and tenant; guesses are throttled."""
        when = now or datetime.now(UTC)
        keys = await self._guess_allowed(source, when)
        code = normalize_user_code(code_text)
        pairing = None if code is None else await pairing_by_user_code(self._db, self._user_code_hash(code))
        if code is None or pairing is None or not pairing.live(when) or pairing.status is not PairingStatus.PENDING:
            for key in keys:
                await self.login.store.throttle_failure(key, now=when, window=GUESS_WINDOW)
            log.info("unknown, expired or used pairing code from %s", source)
            raise UserCodeUnknown("no live pairing with this code")
        device = await self.login.store.get_device(pairing.device_id)
        if device is None or not device.enabled:
            raise UserCodeUnknown(f"the device of pairing {pairing.id} is gone or disabled")
        tenant = self.login.config.tenant(pairing.tenant_id)
        return PairingView(pairing=pairing, device=device, tenant=tenant, user_code=display_user_code(code))

    async def refuse(self, view: PairingView, *, now: datetime | None = None) -> None:
        """The user answered "No, not me" on the phone: the device's poll gets access_denied."""
        when = now or datetime.now(UTC)
        await move_pairing(self._db, view.pairing.id, from_=(PairingStatus.PENDING,), to=PairingStatus.DENIED,
                           now=when)
        log.info("pairing %s refused on the phone", view.pairing.id)

    def _browser_for(self, tenant: TenantConfig) -> BrowserSignin:
        return self.login.idps.browser_for(tenant)

    async def approve_and_sign_in(self, view: PairingView, *, browser_secret: str,
                                  now: datetime | None = None) -> str:
        """The user answered "Yes": the URL at the IdP to send the phone to."""
        when = now or datetime.now(UTC)
        if not await move_pairing(self._db, view.pairing.id, from_=(PairingStatus.PENDING,),
                                  to=PairingStatus.CONFIRMED, now=when):
            raise UserCodeUnknown(f"pairing {view.pairing.id} is no longer waiting")
        return await self._redirect(view.tenant, purpose=SigninPurpose.PAIRING, pairing_id=view.pairing.id,
                                    email=None, return_to=None, browser_secret=browser_secret, now=when)

    async def _redirect(self, tenant: TenantConfig, *, purpose: SigninPurpose, pairing_id: int | None,
                        email: str | None, return_to: str | None, browser_secret: str, now: datetime) -> str:
        state = secrets.token_urlsafe(32)
        redirect = await self._browser_for(tenant).begin_browser_signin(state=state, login_hint=email)
        await create_signin(self._db, state_hash=sha256(state), browser_hash=sha256(browser_secret),
                            tenant_id=tenant.id, purpose=purpose, pairing_id=pairing_id,
                            request_id=redirect.request_id, email=email, return_to=return_to,
                            lifetime=SIGNIN_LIFETIME, now=now)
        return redirect.url

    async def begin_web(self, *, email_text: str, return_to: str, browser_secret: str,
                        now: datetime | None = None) -> str:
        """``/v1/web/login``: check the return address and the account, then the URL at the IdP."""
        when = now or datetime.now(UTC)
        origin = origin_of(return_to)
        if origin is None or origin not in self.login.config.web_return_origins:
            raise ReturnToRefused(f"return_to is not on web_signin.return_to (origin {origin or 'none'})")
        email, domain = split_email(email_text)
        tenant = self.login.tenant_for_email(domain)
        user = await self.login.provisioned_user(tenant, email)
        return await self._redirect(tenant, purpose=SigninPurpose.WEB, pairing_id=None, email=user.email,
                                    return_to=return_to, browser_secret=browser_secret, now=when)

    async def begin_print(self, *, email_text: str, browser_secret: str, now: datetime | None = None) -> str:
        """``/v1/web/print-login``: the URL at the IdP for a personal printer URL, for accounts no password serves.

        The answer comes back, as a one-time code, to the print setup's own ``/print/setup/finish``.
        """
        when = now or datetime.now(UTC)
        email, domain = split_email(email_text)
        tenant = self.login.tenant_for_email(domain)
        user = await self.login.provisioned_user(tenant, email)
        return_to = f"{self.login.config.public_url.rstrip('/')}{PRINT_FINISH_PATH}"
        return await self._redirect(tenant, purpose=SigninPurpose.PRINT, pairing_id=None, email=user.email,
                                    return_to=return_to, browser_secret=browser_secret, now=when)

    # -- the IdP's answer ---------------------------------------------------------------------

    async def pending_signin(self, tenant_id: str, state: str, *, now: datetime | None = None) -> BrowserSigninRecord:
        """The unanswered, unexpired sign-in of this tenant the IdP's ``state`` (RelayState / wctx) names."""
        when = now or datetime.now(UTC)
        record = None if not state or len(state) > 128 else await signin_by_state(self._db, sha256(state))
        if record is None or record.tenant_id != tenant_id:
            raise BrowserSigninError("the IdP's answer names no sign-in of this tenant (unknown RelayState/wctx)")
        if when >= record.expires_at or record.subject is not None or record.finished:
            raise BrowserSigninError("this sign-in has expired or was already answered: start again on the device")
        return record

    async def idp_answer(self, record: BrowserSigninRecord, *, form: Mapping[str, str], attempt: Attempt,
                         now: datetime | None = None) -> None:
        """Validate the IdP's POST for this sign-in and record the subject it proves.

        A refusal by the IdP (or an answer that fails a check) denies the pairing it was for.
        """
        when = now or datetime.now(UTC)
        tenant = self.login.config.tenant(record.tenant_id)
        attempt.tenant = tenant
        if record.email is not None:
            attempt.email = record.email
        try:
            validated = await self._browser_for(tenant).finish_browser_signin(
                form=form, request_id=record.request_id, replay=self.login.replay)
        except BridgeError:
            await self._deny_pairing(record, when)
            raise
        subject = validated.subject
        attempt.email = identity_key(subject.strip())
        if not await record_subject(self._db, record.id, subject, now=when):
            raise BrowserSigninError("this sign-in was already answered")

    async def signin(self, signin_id: int) -> BrowserSigninRecord:
        """An answered, unfinished sign-in, for its browser to finish."""
        record = await get_signin(self._db, signin_id)
        if record is None or record.subject is None or record.finished:
            raise BrowserSigninError("no answered sign-in to finish here")
        return record

    async def complete(self, record: BrowserSigninRecord, *, browser_secret: str | None, attempt: Attempt,
                       now: datetime | None = None) -> Completion:
        """The browser that confirmed comes back: the pairing is approved, or the web app's code is made."""
        when = now or datetime.now(UTC)
        tenant = self.login.config.tenant(record.tenant_id)
        attempt.tenant = tenant
        user = await self._proven_user(record, tenant)
        attempt.identified(tenant, user.email)
        code = secrets.token_urlsafe(32) if record.purpose in _CODE_PURPOSES else None
        if browser_secret is None or not await finish_signin(
                self._db, record.id, browser_hash=sha256(browser_secret), now=when,
                code_hash=None if code is None else sha256(code), code_lifetime=CODE_LIFETIME):
            await self._deny_pairing(record, when)
            raise BrowserSigninError("the sign-in was finished by another browser than the one that started it, "
                                     "or it expired",
                                     message="This sign-in was started in another browser, or it has expired. "
                                             "Start again on the device and use the same phone browser throughout.")
        if record.purpose in _CODE_PURPOSES:
            assert code is not None and record.return_to is not None
            return Completion(purpose=record.purpose, email=user.email, tenant=tenant,
                              return_to=with_query(record.return_to, code=code))
        pairing = None if record.pairing_id is None else await get_pairing(self._db, record.pairing_id)
        if pairing is None:
            raise BrowserSigninError("the pairing of this sign-in is gone")
        device = await self.login.store.get_device(pairing.device_id)
        if device is None or not device.enabled:
            raise BrowserSigninError(f"device {pairing.device_id} is gone or disabled")
        attempt.device = device
        if not await move_pairing(self._db, pairing.id, from_=(PairingStatus.CONFIRMED,), to=PairingStatus.APPROVED,
                                  now=when, email=user.email):
            raise ExpiredToken(f"pairing {pairing.id} expired before the sign-in finished: start again on the device")
        if pairing.badge_hash is not None:
            await bind_badge(self._db, tenant_id=tenant.id, badge_hash=pairing.badge_hash, email=user.email,
                             device_id=device.device_id, lifetime=timedelta(days=tenant.badge_binding_days), now=when)
        log.info("pairing %s approved for %s", pairing.id, user.email)
        return Completion(purpose=record.purpose, email=user.email, tenant=tenant, device=device)

    async def _deny_pairing(self, record: BrowserSigninRecord, now: datetime) -> None:
        if record.pairing_id is not None:
            await move_pairing(self._db, record.pairing_id, from_=(PairingStatus.CONFIRMED,), to=PairingStatus.DENIED,
                               now=now)

    async def _proven_user(self, record: BrowserSigninRecord, tenant: TenantConfig) -> User:
        """The tenant's enabled account the IdP's subject names (SSO never creates users)."""
        assert record.subject is not None
        try:
            email, domain = split_email(record.subject)
        except RequestError as exc:
            raise UserNotProvisioned(f"the IdP's subject is not an email address ({exc.detail})") from exc
        if record.email is not None and identity_key(record.email) != email:
            raise AccessDenied("the IdP signed in another user than the one the web app asked for",
                               cause="subject mismatch: the browser signed in as another account")
        owner = self.login.config.tenant_for_domain(domain)
        if owner is None or owner.id != tenant.id:
            raise UserNotProvisioned(f"the IdP's subject belongs to no account of tenant {tenant.id}")
        return await self.login.provisioned_user(tenant, email)

    async def exchange(self, code: str, now: datetime | None = None) -> LoginOutcome:
        """A web app trades ``/v1/web/login``'s one-time code for a session (once, within a minute)."""
        tenant, user = await self._take_code(code, SigninPurpose.WEB, now)
        return await self.login.open_session(tenant, user, None)

    async def print_user(self, code: str, now: datetime | None = None) -> tuple[TenantConfig, User]:
        """The print setup trades its one-time code for the signed-in account (no session is opened)."""
        return await self._take_code(code, SigninPurpose.PRINT, now)

    async def _take_code(self, code: str, purpose: SigninPurpose, now: datetime | None) -> tuple[TenantConfig, User]:
        """The account a one-time code proves, once; a code made for another purpose proves nothing here."""
        when = now or datetime.now(UTC)
        if not code or len(code) > MAX_CODE_CHARS:
            raise PairingCodeUnknown("no code, or one too long to be ours")
        record = await take_code(self._db, sha256(code), now=when, purpose=purpose)
        if record is None or record.subject is None or record.email is None:
            raise PairingCodeUnknown("unknown, used or expired sign-in code")
        tenant = self.login.config.tenant(record.tenant_id)
        user = await self.login.provisioned_user(tenant, record.email)
        return tenant, user
