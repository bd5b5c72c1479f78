"""Who is printing: HTTP Basic ``email:password`` checked with the tenant's IdP.

A print queue sends several requests per job (Get-Printer-Attributes,
Validate-Job, Print-Job or Create-Job + Send-Document, Get-Job-Attributes...),
each with the same credentials.  A short-lived verification cache keeps that
to one IdP round trip per job: the key is HMAC-SHA256(server secret,
email NUL password), the value the tenant, the email and an expiry; the
password itself is never stored.  Any failure for an email drops its
entries, and a hit still checks that the user exists and is enabled.
Concurrent misses with the same credentials share one IdP call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from bridge.basicauth import parse_basic
from bridge.errors import BridgeError, LoginRefused, RequestError, TemporarilyLocked
from bridge.logcontext import tenant_id_var
from bridge.login.guard import LoginMode
from bridge.login.service import LoginService
from printers.errors import PrintAuthRequired
from printers.jobs import Owner

log = logging.getLogger(__name__)

MAX_CACHE_ENTRIES = 10_000


@dataclass(frozen=True, kw_only=True, slots=True)
class _Verified:
    tenant_id: str
    email: str
    expires_at: float


def asks_for_credentials(exc: BridgeError) -> bool:
    """True when the answer should be HTTP 401 (the queue may ask the user again).

    A refused login is; an IdP outage or a lockout is not (the queue would
    prompt for a password that is not the problem): those become IPP statuses.
    """
    if isinstance(exc, TemporarilyLocked):
        return False
    return isinstance(exc, LoginRefused | RequestError | PrintAuthRequired)


class PrintAuthenticator:
    def __init__(self, login: LoginService, *, hmac_key: bytes, ttl: timedelta) -> None:
        self._login = login
        self._key = hmac_key
        self._ttl = ttl.total_seconds()
        self._cache: dict[bytes, _Verified] = {}
        self._inflight: dict[bytes, asyncio.Future[Owner]] = {}

    def _cache_key(self, identifier: str, password: str) -> bytes:
        material = identifier.strip().lower().encode("utf-8") + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def forget(self, email: str) -> None:
        """Drop every cached verification of ``email``."""
        wanted = email.strip().lower()
        for key in [k for k, v in self._cache.items() if v.email == wanted]:
            del self._cache[key]

    async def authenticate(self, authorization: str | None, *, source: str | None = None) -> Owner:
        """The owner for an ``Authorization`` header, or the BridgeError that refused it.

        ``source`` is the client's address (the per-source throttle counts it).
        """
        creds = parse_basic(authorization)
        if creds is None:
            raise PrintAuthRequired("no Basic credentials")
        identifier, password = creds
        key = self._cache_key(identifier, password)
        cached = self._cache.get(key)
        if cached is not None:
            if cached.expires_at > time.monotonic():
                return await self._still_allowed(key, cached)
            del self._cache[key]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Owner] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            owner = await self._verify(identifier, password, source)
        except BaseException as exc:
            self.forget(identifier)
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # marked retrieved: no warning when nobody else waits
            else:
                future.cancel()
            raise
        else:
            future.set_result(owner)
            if self._ttl > 0:
                if len(self._cache) >= MAX_CACHE_ENTRIES:
                    self._purge()
                self._cache[key] = _Verified(tenant_id=owner.tenant_id, email=owner.email,
                                             expires_at=time.monotonic() + self._ttl)
            return owner
        finally:
            del self._inflight[key]

    async def _verify(self, identifier: str, password: str, source: str | None) -> Owner:
        tenant, user = await self._login.verify_password(identifier=identifier, password=password,
                                                         mode=LoginMode.PRINTER, source=source)
        log.info("print credentials verified for %s", user.email)
        return Owner(tenant_id=tenant.id, email=user.email)

    async def _still_allowed(self, key: bytes, cached: _Verified) -> Owner:
        """A cache hit: the user must still exist and be enabled."""
        try:
            tenant = self._login.config.tenant(cached.tenant_id)
            tenant_id_var.set(tenant.id)
            await self._login.provisioned_user(tenant, cached.email)
        except BridgeError:
            self._cache.pop(key, None)
            self.forget(cached.email)
            raise
        return Owner(tenant_id=cached.tenant_id, email=cached.email)

    def _purge(self) -> None:
        now = time.monotonic()
        for k in [k for k, v in self._cache.items() if v.expires_at <= now]:
            del self._cache[k]
        while len(self._cache) >= MAX_CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
