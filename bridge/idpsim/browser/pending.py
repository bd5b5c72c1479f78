"""Browser sign-ins between their pages, kept in the simulator's memory.

A sign-in spans several requests (login page, password, maybe a code); what the
relying party asked for must survive between them without trusting the browser
to carry it back intact.  The browser carries only a random id (a hidden form
field); the rest lives here, in the app (never a module global, so two
simulators in one process never mix), bounded in number and in age.
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from bridge.idpsim.ecp.idp import EcpAuthnRequest

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(minutes=10)
DEFAULT_MAX_ENTRIES = 1000
MAX_FLOW_ID_CHARS = 64


class SigninProtocol(enum.Enum):
    SAML = "saml"
    WSFED = "wsfed"
    OIDC = "oidc"


@dataclass(frozen=True, kw_only=True, slots=True)
class SamlTarget:
    """Where and how a SAML Web Browser SSO answer goes."""

    base_url: str  # the IdP's https://host:port as the browser reached it (picks the pysaml2 Server)
    authn: EcpAuthnRequest
    acs_url: str
    relay_state: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class WsFedTarget:
    """Where and how a WS-Federation ``wsignin1.0`` answer goes."""

    realm: str  # wtrealm: the token's audience
    reply: str  # wreply: where the browser posts the answer
    context: str | None  # wctx, returned unchanged
    issuer: str  # the simulator's issuer as the browser reached it


@dataclass(frozen=True, kw_only=True, slots=True)
class OidcTarget:
    """An OpenID Connect authorization request that passed its checks: where the code (or the refusal) goes."""

    client_id: str
    redirect_uri: str  # registered, compared exactly: safe to redirect to
    state: str | None  # returned unchanged
    nonce: str | None  # goes into the ID token
    scope: str
    code_challenge: str | None  # S256
    issuer: str  # the OP's issuer as the browser reached it (the redirect's iss, RFC 9207)


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingSignin:
    """One sign-in between pages; ``user_upn`` is set once the password was right (code step next)."""

    target: SamlTarget | WsFedTarget | OidcTarget
    relying_party: str  # shown on the pages
    action: str  # the path the pages' forms post to
    user_upn: str | None = None
    otp_failures: int = 0

    @property
    def protocol(self) -> SigninProtocol:
        if isinstance(self.target, SamlTarget):
            return SigninProtocol.SAML
        return SigninProtocol.OIDC if isinstance(self.target, OidcTarget) else SigninProtocol.WSFED

    @property
    def can_cancel(self) -> bool:
        """SAML and OIDC have a refusal to send back; WS-Federation has none (AD FS shows no Cancel)."""
        return self.protocol is not SigninProtocol.WSFED


class PendingSignins:
    """The open sign-ins by random id: at most ``max_entries``, each for at most ``ttl`` after it began."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._ttl = ttl.total_seconds()
        self._clock = clock
        # id -> (deadline, sign-in); insertion order is start order, so the oldest come first.
        self._entries: OrderedDict[str, tuple[float, PendingSignin]] = OrderedDict()

    def __len__(self) -> int:
        self._purge()
        return len(self._entries)

    def start(self, signin: PendingSignin) -> str:
        """Remember a new sign-in; returns the id its pages carry."""
        self._purge()
        while len(self._entries) >= self._max:
            self._entries.popitem(last=False)
            log.warning("too many open browser sign-ins (%s): dropped the oldest", self._max)
        flow_id = secrets.token_urlsafe(24)
        self._entries[flow_id] = (self._clock() + self._ttl, signin)
        return flow_id

    def get(self, flow_id: str) -> PendingSignin | None:
        """The sign-in, or None when unknown or expired."""
        self._purge()
        if not flow_id or len(flow_id) > MAX_FLOW_ID_CHARS:
            return None
        entry = self._entries.get(flow_id)
        return None if entry is None else entry[1]

    def update(self, flow_id: str, signin: PendingSignin) -> None:
        """Replace a sign-in's state; its deadline stays the one it started with."""
        entry = self._entries.get(flow_id)
        if entry is not None:
            self._entries[flow_id] = (entry[0], signin)

    def finish(self, flow_id: str) -> PendingSignin | None:
        """Forget the sign-in (answered, cancelled or given up): its id cannot be used again."""
        entry = self._entries.pop(flow_id, None)
        return None if entry is None else entry[1]

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            deadline, _ = next(iter(self._entries.values()))
            if deadline > now:
                break
            self._entries.popitem(last=False)
