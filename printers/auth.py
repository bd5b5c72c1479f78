"""Who is printing: HTTP Basic ``email:password`` checked with the tenant's IdP.

A print queue sends several requests per job (Get-Printer-Attributes,
Validate-Job, Print-Job or Create-Job + Send-Document, Get-Job-Attributes...),
each with the same credentials, and behind a load balancer each may reach
another instance.  A short-lived verification cache in the store (table
``print_verified``, shared by every instance) keeps that to one IdP round trip
per job: the key is HMAC-SHA256(server secret, email NUL password), the value
the tenant, the email and an expiry; the password itself is never stored.  Any
failure for an email drops its entries everywhere, and a hit still checks that
the user exists and is enabled.  Concurrent misses with the same credentials
on one instance share one IdP call; the delivery worker's housekeeping prunes
expired entries through the expiry index.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta

from bridge.basicauth import parse_basic
from bridge.errors import (
    BridgeError,
    LoginRefused,
    MfaRequired,
    PasswordLoginUnsupported,
    RequestError,
    StoreError,
    TemporarilyLocked,
)
from bridge.logcontext import tenant_id_var
from bridge.login.guard import LoginMode
from bridge.login.service import LoginService
from bridge.login.throttle import guesses_exhausted
from bridge.state.printlinks import prune_links, resolve_link
from printers.errors import PrintAuthRequired, PrinterLinkGuesses, PrinterLinkUnknown
from printers.jobs import Owner

log = logging.getLogger(__name__)

LINK_GUESS_WINDOW = timedelta(minutes=15)
LINK_GUESS_LIMIT = 10  # unknown personal printer URLs per source address in the window

_REMEMBER = (
    "INSERT INTO print_verified (key, tenant_id, email, email_lc, expires_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET tenant_id = excluded.tenant_id, email = excluded.email,"
    " email_lc = excluded.email_lc, expires_at = excluded.expires_at"
)

def asks_for_credentials(exc: BridgeError) -> bool:
    """True when the answer should be HTTP 401 (the queue may ask the user again).

    A refused login is; an IdP outage or a lockout is not (the queue would
    prompt for a password that is not the problem): those become IPP statuses.
    Nor is an account no password can sign in (the IdP wants a second factor, or the
    tenant's OpenID Connect provider allows no password grant): asking again would loop.
    """
    if isinstance(exc, TemporarilyLocked | MfaRequired | PasswordLoginUnsupported):
        return False
    return isinstance(exc, LoginRefused | RequestError | PrintAuthRequired)


class PrintAuthenticator:
    def __init__(self, login: LoginService, *, hmac_key: bytes, ttl: timedelta) -> None:
        self._login = login
        self._db = login.store.database
        self._key = hmac_key
        self._ttl = ttl
        self._inflight: dict[bytes, asyncio.Future[Owner]] = {}

    def _cache_key(self, identifier: str, password: str) -> bytes:
        material = identifier.strip().lower().encode("utf-8") + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    async def forget(self, email: str) -> None:
        """Drop every cached verification of ``email``, on every instance."""
        await self._db.execute("DELETE FROM print_verified WHERE email_lc = ?", (email.strip().lower(),))

    async def prune(self, now: datetime) -> int:
        """Remove expired verifications (through the expiry index) and expired personal printer links."""
        removed = await self._db.execute("DELETE FROM print_verified WHERE expires_at <= ?", (now,))
        return removed + await prune_links(self._db, now)

    async def authenticate(self, authorization: str | None, *, source: str | None = None) -> Owner:
        """The owner for an ``Authorization`` header, or the BridgeError that refused it.

        ``source`` is the client's address (the per-source throttle counts it).
        """
        creds = parse_basic(authorization)
        if creds is None:
            raise PrintAuthRequired("no Basic credentials")
        identifier, password = creds
        key = self._cache_key(identifier, password)
        if self._ttl.total_seconds() > 0:
            row = await self._db.fetchone(
                "SELECT tenant_id, email FROM print_verified WHERE key = ? AND expires_at > ?",
                (key, datetime.now(UTC)))
            if row is not None:
                return await self._still_allowed(Owner(tenant_id=str(row[0]), email=str(row[1])))
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Owner] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            owner = await self._verify(identifier, password, source)
            if self._ttl.total_seconds() > 0:
                await self._db.execute(_REMEMBER, (key, owner.tenant_id, owner.email, owner.email.lower(),
                                                   datetime.now(UTC) + self._ttl))
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # marked retrieved: no warning when nobody else waits
                if not isinstance(exc, StoreError):
                    await self._forget_quietly(identifier)
            else:
                future.cancel()
            raise
        else:
            future.set_result(owner)
            return owner
        finally:
            del self._inflight[key]

    def _guess_key(self, source: str | None) -> bytes:
        return hmac.new(self._key, b"printer-link guesses\0" + (source or "-").encode(), hashlib.sha256).digest()

    async def authenticate_link(self, token: str, *, source: str | None = None) -> Owner:
        """The owner of a personal printer URL's token (bridge/state/printlinks.py), or the error refusing it.

        Unknown tokens are counted per source address in the lockout protection's failure table
        (shared by every instance): after :data:`LINK_GUESS_LIMIT` in :data:`LINK_GUESS_WINDOW`
        the source gets 429 without a lookup, as a password guesser would. A known token still
        needs the user to exist and be enabled (a disabled user's links are deleted as well).
        """
        store = self._login.store
        key, now = self._guess_key(source), datetime.now(UTC)
        retry = await guesses_exhausted(store, key, now=now, window=LINK_GUESS_WINDOW, limit=LINK_GUESS_LIMIT)
        if retry is not None:
            raise PrinterLinkGuesses(f"too many unknown printer links from {source}", retry_after=retry)
        link = await resolve_link(self._db, token, now=now)
        if link is None:
            await store.throttle_failure(key, now=now, window=LINK_GUESS_WINDOW)
            log.info("unknown, expired or revoked personal printer link from %s", source)
            raise PrinterLinkUnknown("unknown, expired or revoked personal printer link")
        owner = Owner(tenant_id=link.tenant_id, email=link.email)
        try:
            tenant = self._login.config.tenant(owner.tenant_id)
        except BridgeError as exc:
            raise PrinterLinkUnknown(f"the link's tenant {owner.tenant_id} is gone") from exc
        tenant_id_var.set(tenant.id)
        await self._login.provisioned_user(tenant, owner.email)
        return owner

    async def _forget_quietly(self, email: str) -> None:
        try:
            await self.forget(email)
        except StoreError as exc:  # the refusal is what the client must hear
            log.warning("print verification cache not cleared for a refused login: %s", exc.detail or exc.code)

    async def _verify(self, identifier: str, password: str, source: str | None) -> Owner:
        tenant, user = await self._login.verify_password(identifier=identifier, password=password,
                                                         mode=LoginMode.PRINTER, source=source)
        log.info("print credentials verified for %s", user.email)
        return Owner(tenant_id=tenant.id, email=user.email)

    async def _still_allowed(self, owner: Owner) -> Owner:
        """A cache hit: the user must still exist and be enabled."""
        try:
            tenant = self._login.config.tenant(owner.tenant_id)
            tenant_id_var.set(tenant.id)
            await self._login.provisioned_user(tenant, owner.email)
        except BridgeError as exc:
            if not isinstance(exc, StoreError):
                await self._forget_quietly(owner.email)
            raise
        return owner
