"""What the console keeps in the store, so that every instance behind the load balancer agrees.

- **Signed-out sessions.**  A console cookie is signed (``security.Signer``) and carries its own
  expiry, so any instance can check it without the store; signing out must still end it on
  every instance.  The nonce of a signed-out session goes to ``console_revocations`` (a keyed
  hash, never the cookie) until the cookie would have expired anyway; every console request
  looks it up by primary key.  Logged on PostgreSQL (not UNLOGGED): a failover must not bring a
  signed-out session back.
- **The sign-in limiter.**  Failed console sign-ins per source address are counted in the
  lockout protection's failure table (``Store.throttle_failure``; the key is a keyed hash of
  the address), so ten wrong passwords spread over three instances are still ten.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from bridge.console.security import FAILURE_WINDOW, MAX_FAILURES, ConsoleSession, derive_key
from bridge.state.store import Store


class ConsoleState:
    """Revocations and sign-in failures of the console, in the shared store."""

    def __init__(self, hmac_key: bytes) -> None:
        self._key = derive_key(hmac_key, "shared state")
        self._window = timedelta(seconds=FAILURE_WINDOW)

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\0{value}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    async def revoked(self, store: Store, session: ConsoleSession) -> bool:
        found = await store.database.fetchval(
            "SELECT count(*) FROM console_revocations WHERE nonce_hash = ? AND expires_at > ?",
            (self._digest("nonce", session.nonce), datetime.now(UTC)))
        return bool(found)

    async def revoke(self, store: Store, session: ConsoleSession) -> None:
        now = datetime.now(UTC)
        expires = datetime.fromtimestamp(session.expires, UTC)
        async with store.database.transaction() as tx:
            await tx.execute("INSERT INTO console_revocations (nonce_hash, expires_at) VALUES (?, ?)"
                             " ON CONFLICT (nonce_hash) DO NOTHING", (self._digest("nonce", session.nonce), expires))
            await tx.execute("DELETE FROM console_revocations WHERE expires_at <= ?", (now,))  # the expiry index

    async def blocked(self, store: Store, source: str) -> bool:
        """Too many failed sign-ins from ``source`` in the window, counted on every instance."""
        count = await store.throttle_count(self._digest("sign-in", source), now=datetime.now(UTC),
                                           window=self._window)
        return count >= MAX_FAILURES

    async def failed(self, store: Store, source: str) -> None:
        await store.throttle_failure(self._digest("sign-in", source), now=datetime.now(UTC), window=self._window)

    async def succeeded(self, store: Store, source: str) -> None:
        await store.throttle_clear(self._digest("sign-in", source))
