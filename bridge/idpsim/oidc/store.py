"""What the OpenID Provider remembers between requests: codes, access tokens, client assertion ids.

In memory, per app, bounded in number and in age, like the browser's pending
sign-ins.  A code is single-use (RFC 6749 section 4.1.2); its second use is
told apart from an unknown code so the grant can revoke what the first use
issued, as section 4.1.2 recommends.  A client assertion's ``jti`` is
remembered until its ``exp`` (RFC 7523 section 3, item 7) so it cannot be replayed.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

_V = TypeVar("_V")
DEFAULT_MAX_ENTRIES = 10_000
CODE_LIFETIME_SECONDS = 60.0
SPENT_CODE_MEMORY_SECONDS = 600.0  # how long a redeemed code is still recognised as reused


@dataclass(frozen=True, kw_only=True, slots=True)
class CodeGrant:
    """What an authorization code was issued for (all of it checked again at the token endpoint)."""

    client_id: str
    redirect_uri: str
    code_challenge: str | None  # S256 only
    nonce: str | None
    user_upn: str
    scope: str
    auth_time: datetime
    mfa: bool
    issuer: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AccessGrant:
    """What an access token lets its bearer read at userinfo."""

    client_id: str
    user_upn: str
    scope: str
    expires_at: float  # the store's clock
    code: str | None  # the code it was issued for, so reusing that code revokes it


class Redemption(enum.Enum):
    UNKNOWN = "unknown"  # never issued, or forgotten (expired long ago, or pushed out)
    EXPIRED = "expired"
    REUSED = "reused"


class _Bounded(Generic[_V]):
    """Entries by key, each with a deadline; the oldest go first when full."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, _V]] = OrderedDict()

    def put(self, key: str, deadline: float, value: _V) -> None:
        self.purge()
        self._entries.pop(key, None)
        while len(self._entries) >= self._max:
            self._entries.popitem(last=False)
        self._entries[key] = (deadline, value)

    def get(self, key: str) -> _V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def pop(self, key: str) -> tuple[float, _V] | None:
        return self._entries.pop(key, None)

    def items(self) -> list[tuple[str, _V]]:
        return [(key, value) for key, (_, value) in self._entries.items()]

    def purge(self) -> None:
        now = self._clock()
        for key in [k for k, (deadline, _) in self._entries.items() if deadline <= now]:
            del self._entries[key]


class OidcStore:
    """Codes, access tokens and seen assertion ids of one simulator."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic,
                 code_lifetime: float = CODE_LIFETIME_SECONDS) -> None:
        self.clock = clock
        self._code_lifetime = code_lifetime
        # code -> grant; kept past its 60 s (until SPENT_CODE_MEMORY_SECONDS) to tell "expired" from "unknown".
        self._codes: _Bounded[tuple[float, CodeGrant]] = _Bounded(max_entries, clock)
        self._spent: _Bounded[str] = _Bounded(max_entries, clock)  # redeemed code -> its client_id
        self._tokens: _Bounded[AccessGrant] = _Bounded(max_entries, clock)
        self._jtis: _Bounded[bool] = _Bounded(max_entries, clock)

    def issue_code(self, grant: CodeGrant) -> str:
        code = secrets.token_urlsafe(32)
        now = self.clock()
        self._codes.put(code, now + SPENT_CODE_MEMORY_SECONDS, (now + self._code_lifetime, grant))
        return code

    def redeem_code(self, code: str) -> CodeGrant | Redemption:
        """The code's grant, spending it; or why not.  A reuse revokes the tokens the first use got."""
        if self._spent.get(code) is not None:
            self._revoke_for(code)
            return Redemption.REUSED
        entry = self._codes.pop(code)
        if entry is None or entry[0] <= self.clock():
            return Redemption.UNKNOWN
        valid_until, grant = entry[1]
        self._spent.put(code, self.clock() + SPENT_CODE_MEMORY_SECONDS, grant.client_id)
        if valid_until <= self.clock():
            return Redemption.EXPIRED
        return grant

    def issue_access_token(self, *, client_id: str, user_upn: str, scope: str, lifetime: float,
                           code: str | None) -> str:
        token = secrets.token_urlsafe(32)
        expires = self.clock() + lifetime
        grant = AccessGrant(client_id=client_id, user_upn=user_upn, scope=scope, expires_at=expires, code=code)
        self._tokens.put(token, expires, grant)
        return token

    def access_grant(self, token: str) -> AccessGrant | None:
        return self._tokens.get(token) if token else None

    def _revoke_for(self, code: str) -> None:
        for token, grant in self._tokens.items():
            if grant.code == code:
                self._tokens.pop(token)

    def first_use_of_jti(self, client_id: str, jti: str, until: float) -> bool:
        """Remember a client assertion's jti until ``until``; False when it was seen already."""
        key = f"{client_id}\x00{jti}"
        if self._jtis.get(key) is not None:
            return False
        self._jtis.put(key, until, True)
        return True
