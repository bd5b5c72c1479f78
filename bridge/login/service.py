"""Password login: from a typed email and password to an open session.

The order of checks is the product's rules in order: an email address is
required (not a user name); the email's domain picks the tenant (home-realm
discovery); the account must already exist in the enterprise account and be
enabled (SSO never creates users); only then does the password go to the
tenant's IdP, whose signed answer must name the same email.  "The same" is
:func:`identity_key`: Unicode NFC and ASCII letter case, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.config import BridgeConfig, Protocol, TenantConfig
from bridge.errors import (
    AssertionRejected,
    EmailRequired,
    InvalidText,
    RequestError,
    UnknownDomain,
    UserDisabled,
    UserNotProvisioned,
)
from bridge.idp.assertion import ReplayCache
from bridge.idp.browser import BrowserSignin
from bridge.idp.http import IdpHttp, make_ssl_context
from bridge.idp.oidc.client import OidcIdp
from bridge.idp.saml.client import SamlIdp
from bridge.idp.saml.spkeys import SpKeys
from bridge.idp.wstrust.client import WsTrustIdp
from bridge.logcontext import tenant_id_var
from bridge.login.guard import Attempt, LoginGuard, LoginMode
from bridge.login.sessions import new_token
from bridge.login.tenants import LiveTenants
from bridge.state.store import Device, Store, User
from bridge.webforms import derive_key

log = logging.getLogger(__name__)

# Deliberately simple: one @, a dot in the domain, no spaces.  The IdP and the
# directory are the real judges; this only tells a user name from an email.
_EMAIL = re.compile(r"^[^@\s]{1,128}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)$")
MAX_PASSWORD_CHARS = 1024
RETIRE_AFTER = 120.0
"""Seconds an IdP client made for a tenant's previous settings stays open after the settings changed."""
# Code points outside XML 1.0's Char production (XML 1.0 fifth edition, section 2.2): NUL and the other C0
# controls but tab, LF and CR, lone surrogates, U+FFFE and U+FFFF.  They cannot be encoded as UTF-8 (surrogates)
# or carried in a WS-Trust or ECP envelope, so no IdP could check them.
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, kw_only=True, slots=True)
class LoginOutcome:
    tenant: TenantConfig
    user: User
    token: str
    expires_at: datetime


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def identity_key(text: str) -> str:
    """The form in which two spellings of one address are equal: Unicode NFC, then ASCII letters lower-cased.

    Nothing else folds.  ``casefold()``, NFKC or a full Unicode ``lower()`` would
    make U+017F LONG S an ``s`` (a compatibility mapping, not the same text), so
    another directory entry could pass for the user.  NFC only joins spellings
    Unicode calls canonically equivalent: composed and decomposed accents, and
    the few singletons such as U+212A KELVIN SIGN, which *is* ``K`` canonically.
    """
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFC", text).translate(_ASCII_LOWER)


def split_email(identifier: str) -> tuple[str, str]:
    """(normalised email, domain), or :class:`EmailRequired`; the email in its :func:`identity_key` form."""
    text = identifier.strip()
    match = _EMAIL.match(text)
    if match is None:
        raise EmailRequired("the identifier typed is not an email address")
    return identity_key(text), match.group(1).lower()


class IdpRegistry:
    """One IdP client (and one connection pool) per tenant, made on first use.

    The replay cache is not the registry's: :class:`LoginService` hands its
    store to each ``authenticate`` call, so accepted assertion ids outlive a
    restart (bridge.idp never imports bridge.state).

    Tenants change live (bridge/login/tenants.py): a client is kept for the tenant settings it was
    made with; when a request brings the tenant's new settings, new clients are made and the old
    ones are closed after :data:`RETIRE_AFTER` seconds (logins still on the old settings finish).
    """

    def __init__(self, config: BridgeConfig, sp_keys: SpKeys) -> None:
        self._config = config
        self._made_for: dict[str, TenantConfig] = {}
        self._wstrust: dict[str, WsTrustIdp] = {}
        self._saml: dict[str, SamlIdp] = {}
        self._oidc: dict[str, OidcIdp] = {}
        self._http: dict[str, IdpHttp] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.sp_keys = sp_keys

    def _current(self, tenant: TenantConfig) -> None:
        """Forget the clients made for other settings of this tenant (closed a little later)."""
        made_for = self._made_for.get(tenant.id)
        if made_for is None or made_for is tenant:
            self._made_for[tenant.id] = tenant
            return
        if made_for == tenant:
            return
        self._made_for[tenant.id] = tenant
        old = (self._wstrust.pop(tenant.id, None), self._saml.pop(tenant.id, None), self._http.pop(tenant.id, None),
               self._oidc.pop(tenant.id, None))
        log.info("tenant %s changed: new IdP clients; the old ones close in %s s", tenant.id, RETIRE_AFTER)
        task = asyncio.get_running_loop().create_task(self._retire(*old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _retire(wstrust: WsTrustIdp | None, saml: SamlIdp | None, http: IdpHttp | None,
                      oidc: OidcIdp | None = None, delay: float | None = None) -> None:
        await asyncio.sleep(RETIRE_AFTER if delay is None else delay)
        if oidc is not None:
            oidc.close()
        if wstrust is not None:
            wstrust.close()
        if saml is not None:
            saml.close()
        if http is not None:
            await http.close()

    def http_for(self, tenant: TenantConfig) -> IdpHttp:
        self._current(tenant)
        http = self._http.get(tenant.id)
        if http is None:
            settings = tenant.wstrust or tenant.saml2 or tenant.oidc
            ca_file = getattr(settings, "ca_file", None)
            client = self._config.idp_client
            http = IdpHttp(
                whitelist=tenant.idp_whitelist,
                ssl_context=make_ssl_context(ca_file),
                connect_timeout=client.connect_timeout,
                timeout=client.timeout,
                max_connections=client.max_connections_per_idp,
            )
            self._http[tenant.id] = http
        return http

    def wstrust_for(self, tenant: TenantConfig) -> WsTrustIdp:
        self._current(tenant)
        idp = self._wstrust.get(tenant.id)
        if idp is None:
            idp = WsTrustIdp(tenant, self.http_for(tenant), self._config.public_url)
            self._wstrust[tenant.id] = idp
        return idp

    def saml_for(self, tenant: TenantConfig) -> SamlIdp:
        self._current(tenant)
        idp = self._saml.get(tenant.id)
        if idp is None:
            idp = SamlIdp(tenant, self.http_for(tenant), self.sp_keys, self._config.public_url)
            self._saml[tenant.id] = idp
        return idp

    def oidc_for(self, tenant: TenantConfig) -> OidcIdp:
        self._current(tenant)
        idp = self._oidc.get(tenant.id)
        if idp is None:
            # The PKCE verifier is derived from the sign-in's state with this key (never stored), so
            # whichever instance takes the callback can present it: every instance shares hmac_key.
            idp = OidcIdp(tenant, self.http_for(tenant), self._config.public_url,
                          pkce_key=derive_key(self._config.hmac_key, "oidc pkce verifier"))
            self._oidc[tenant.id] = idp
        return idp

    def browser_for(self, tenant: TenantConfig) -> BrowserSignin:
        """The tenant's IdP as the phone's browser meets it (pairing and web sign-in)."""
        if tenant.protocol is Protocol.WSTRUST:
            return self.wstrust_for(tenant)
        if tenant.protocol is Protocol.OIDC:
            return self.oidc_for(tenant)
        return self.saml_for(tenant)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for wstrust in self._wstrust.values():
            wstrust.close()
        for saml in self._saml.values():
            saml.close()
        for oidc in self._oidc.values():
            oidc.close()
        for http in self._http.values():
            await http.close()
        self._oidc.clear()
        self._http.clear()
        self._wstrust.clear()
        self._saml.clear()


class LoginService:
    def __init__(self, config: BridgeConfig, store: Store, idps: IdpRegistry, *,
                 tenants: LiveTenants | None = None) -> None:
        # The tenants as they are now (bridge/login/tenants.py): the configuration's, until the app
        # wires the store's live ones.  An attempt keeps the TenantConfig it started with.
        self.tenants = tenants or LiveTenants(config)
        self.store = store
        self.idps = idps
        # Accepted assertion ids live in the store (bridge/state/store.py), so a replay stays refused
        # after a restart; the store is the IdP clients' ReplayCache.
        self.replay: ReplayCache = store
        # Throttles, audit and metrics (bridge/login/guard.py); the app sets it, None runs unguarded.
        self.guard: LoginGuard | None = None

    @property
    def config(self) -> BridgeConfig:
        """The configuration with the tenants of this moment."""
        return self.tenants.config

    def attempt(self, *, mode: LoginMode, source: str | None, device: Device | None = None) -> Attempt:
        """Open the audited, throttled record of one login attempt (a context manager)."""
        return Attempt(self.guard, mode=mode, source=source, device=device)

    def tenant_for_email(self, domain: str) -> TenantConfig:
        tenant = self.config.tenant_for_domain(domain)
        if tenant is None:
            raise UnknownDomain(f"no tenant owns the domain {domain}")
        return tenant

    async def provisioned_user(self, tenant: TenantConfig, email: str) -> User:
        user = await self.store.get_user(tenant.id, email)
        if user is None:
            raise UserNotProvisioned(f"no user {email} in tenant {tenant.id}")
        if not user.enabled:
            raise UserDisabled(f"user {email} is disabled in tenant {tenant.id}")
        return user

    async def verify_password(
        self, *, identifier: str, password: str, device: Device | None = None,
        mode: LoginMode = LoginMode.PASSWORD, source: str | None = None, attempt: Attempt | None = None,
    ) -> tuple[TenantConfig, User]:
        """Check an email and password with the tenant's IdP; no session is opened.

        Used by every password path: the MFP user prompt, apps, and the
        printer (which authenticates each print job, not a session).  Each
        call is one audited attempt, unless the caller passes the ``attempt``
        it already opened (then the caller's ``with`` block finishes it).
        """
        if attempt is not None:
            return await self._verify_password(identifier=identifier, password=password, device=device,
                                               attempt=attempt)
        async with self.attempt(mode=mode, source=source, device=device) as own:
            await own.check_actor()
            return await self._verify_password(identifier=identifier, password=password, device=device,
                                               attempt=own)

    async def _verify_password(
        self, *, identifier: str, password: str, device: Device | None, attempt: Attempt
    ) -> tuple[TenantConfig, User]:
        email, domain = split_email(identifier)
        attempt.email = email
        if NOT_XML_CHAR.search(identifier) or NOT_XML_CHAR.search(password):
            # Every channel (device API, printer Basic credentials, console test login) ends here: refused before
            # an envelope is built.  Neither text is answered or logged (it may be a password).
            raise InvalidText("the email or password holds characters no text can carry (NUL, control characters "
                              "or lone surrogates)")
        if not password:
            raise RequestError("a password is required", message="Enter your password.")
        if len(password) > MAX_PASSWORD_CHARS:
            raise RequestError("the password is too long", message="Enter your password.")
        tenant = self.tenant_for_email(domain)
        tenant_id_var.set(tenant.id)
        if device is not None and device.tenant_id != tenant.id:
            # A device only serves its own enterprise account.
            raise UserNotProvisioned(f"{domain} belongs to tenant {tenant.id}, not to the device's tenant")
        attempt.tenant = tenant
        user = await self.provisioned_user(tenant, email)
        if identity_key(user.email) != email:
            # The store finds accounts case-insensitively (full Unicode lower()); the address typed must
            # still be the account's own, up to ASCII case and NFC, before a password goes anywhere.
            raise UserNotProvisioned(f"no user {email} in tenant {tenant.id} (the closest account differs "
                                     "beyond ASCII letter case)")
        await attempt.check_password_allowed(tenant, email, password)  # locks and stale pairs: before the IdP
        async with attempt.at_idp(tenant, email, password):
            subject = await self._check_password(tenant, email, password)
        if identity_key(subject) != email:
            raise AssertionRejected("subject_mismatch", "the IdP's signed subject is not the email typed")
        return tenant, user

    async def password_login(self, *, identifier: str, password: str, device: Device | None,
                             mode: LoginMode = LoginMode.PASSWORD, source: str | None = None,
                             attempt: Attempt | None = None) -> LoginOutcome:
        tenant, user = await self.verify_password(identifier=identifier, password=password, device=device,
                                                  mode=mode, source=source, attempt=attempt)
        return await self.open_session(tenant, user, device)

    async def _check_password(self, tenant: TenantConfig, email: str, password: str) -> str:
        """Check the password at the IdP; return the signed subject."""
        if tenant.protocol is Protocol.OIDC:
            # The OAuth 2.0 password grant, where the tenant allows it (else PasswordLoginUnsupported).
            token = await self.idps.oidc_for(tenant).authenticate(username=email, password=password,
                                                                  replay=self.replay)
            log.debug("IdP accepted the password (ID token %s)", token.token_id)
            return token.subject
        if tenant.protocol is Protocol.WSTRUST:
            validated = await self.idps.wstrust_for(tenant).authenticate(
                username=email, password=password, replay=self.replay)
        else:
            validated = await self.idps.saml_for(tenant).authenticate(
                username=email, password=password, replay=self.replay)
        log.debug("IdP accepted the password (assertion %s)", validated.assertion_id)
        return validated.subject

    async def open_session(self, tenant: TenantConfig, user: User, device: Device | None) -> LoginOutcome:
        token, digest = new_token()
        expires_at = datetime.now(UTC) + tenant.session_ttl
        await self.store.create_session(
            token_hash=digest,
            tenant_id=tenant.id,
            user_email=user.email,
            device_id=device.device_id if device is not None else None,
            expires_at=expires_at,
        )
        return LoginOutcome(tenant=tenant, user=user, token=token, expires_at=expires_at)
