"""One shared, periodically refreshed lookup of an IdP document (FederationMetadata, MEX, SAML metadata).

Single flight: logins that need the value while it is being fetched wait on
that one fetch and share its outcome, instead of queueing on a lock and each
paying its own timeout (with a hanging IdP the k-th login used to wait k
timeouts).  A fetch that failed on the way to the IdP (:class:`IdpTimeout`,
:class:`IdpUnreachable`) is remembered for :data:`FAILURE_MEMORY_SECONDS`, so
logins arriving just after it answer at once instead of waiting out another
timeout.  A quick refusal (an HTTP error status, an unreadable document) is
not remembered: asking again costs little and recovers at once.

What a failed *refresh* means is the loader's decision: it receives the
previous value and may return it (keep serving) or raise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from bridge.errors import IdpError, IdpTimeout, IdpUnreachable
from bridge.idp.http import IdpContact, note_idp_contact, track_idp_contact

log = logging.getLogger(__name__)

T = TypeVar("T")

# Long enough to absorb a burst of logins during an outage, short enough that a recovered IdP
# is used again within seconds.  A constant: no deployment has needed to tune it.
FAILURE_MEMORY_SECONDS = 5.0
_REMEMBERED = (IdpTimeout, IdpUnreachable)


class SharedLookup(Generic[T]):
    """The value ``load`` fetches, cached for ``max_age`` seconds, fetched by one task at a time."""

    def __init__(
        self,
        load: Callable[[T | None], Awaitable[T]],
        *,
        max_age: float,
        what: str,
        failure_memory: float = FAILURE_MEMORY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age = max_age
        self._what = what
        self._failure_memory = failure_memory
        self._clock = clock
        self._value: T | None = None
        self._loaded_at = 0.0
        self._task: asyncio.Task[T] | None = None
        self._task_contact = IdpContact()  # what the fetch under way did at the IdP
        self._failure: IdpError | None = None
        self._failure_at = 0.0

    @property
    def value(self) -> T | None:
        """The last value loaded (possibly stale), or None."""
        return self._value

    @property
    def loading(self) -> bool:
        """A fetch is under way (a caller that wants a fresh copy can join it)."""
        return self._task is not None

    def _fresh(self, now: float) -> bool:
        return self._value is not None and now - self._loaded_at < self._max_age

    async def get(self, *, refresh: bool = False) -> T:
        """The cached value, or the outcome of the one fetch under way (started here if none is).

        ``refresh``: not the cached value, a fetch now (or the one under way): an OpenID Connect ID
        token names a key the cached JWK Set lacks.
        """
        now = self._clock()
        if not refresh and self._fresh(now):
            assert self._value is not None
            return self._value
        if self._failure is not None and now - self._failure_at < self._failure_memory:
            failure = self._failure
            ago = now - self._failure_at
            # A new exception each time: one instance raised in many tasks would pile up tracebacks.
            remembered = f" ({ago:.1f} s ago; not retried for {self._failure_memory:g} s)"
            raise type(failure)(failure.detail + remembered,
                                cause=failure.cause + remembered if failure.cause else "")
        task = self._task
        if task is None:
            self._task_contact = IdpContact()
            task = asyncio.get_running_loop().create_task(self._run(self._task_contact), name=f"lookup {self._what}")
            task.add_done_callback(_consume)
            self._task = task
        contact, started = self._task_contact, time.perf_counter()
        try:
            # shield: a login that gives up (its client went away) must not cancel the others' fetch.
            return await asyncio.shield(task)
        finally:
            if contact.contacted:  # every waiter waited on the IdP, not only the one that started the fetch
                note_idp_contact(time.perf_counter() - started)

    async def _run(self, contact: IdpContact) -> T:
        try:
            with track_idp_contact(contact):
                value = await self._load(self._value)
        except _REMEMBERED as exc:
            self._failure, self._failure_at = exc, self._clock()
            raise
        finally:
            self._task = None
        self._value, self._loaded_at = value, self._clock()
        self._failure = None
        return value

    def close(self) -> None:
        """Cancel a fetch under way (the app is stopping)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None


def _consume(task: asyncio.Task[T]) -> None:
    """Retrieve the outcome, so a fetch whose every waiter left is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()
