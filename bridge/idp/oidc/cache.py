"""A provider document kept for a while and re-read on demand, by one fetch that every waiter shares.

Like :class:`bridge.idp.lookup.SharedLookup` (single flight, a fetch that
failed on the way to the IdP remembered for a few seconds, the loader decides
what a failed refresh means), plus what OpenID Connect needs: a caller may ask
for a fresh copy now (``refresh=True``: an ID token names a key the cached JWK
Set does not have), and may see whether a fetch is under way to join it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from bridge.errors import IdpError, IdpTimeout, IdpUnreachable
from bridge.idp.http import IdpContact, note_idp_contact, track_idp_contact
from bridge.idp.lookup import FAILURE_MEMORY_SECONDS

T = TypeVar("T")
_REMEMBERED = (IdpTimeout, IdpUnreachable)


class RefreshingValue(Generic[T]):
    """The value ``load`` fetches, reused for ``max_age`` seconds; ``load`` gets the previous one (or None)."""

    def __init__(self, load: Callable[[T | None], Awaitable[T]], *, max_age: float, what: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._max_age = max_age
        self._what = what
        self._clock = clock
        self._value: T | None = None
        self._loaded_at = 0.0
        self._task: asyncio.Task[T] | None = None
        self._contact = IdpContact()
        self._failure: IdpError | None = None
        self._failure_at = 0.0

    @property
    def value(self) -> T | None:
        return self._value

    @property
    def loading(self) -> bool:
        """A fetch is under way (a caller that wants a fresh copy can join it)."""
        return self._task is not None

    async def get(self, *, refresh: bool = False) -> T:
        """The cached value while fresh (unless ``refresh``), else the outcome of the one fetch under way."""
        now = self._clock()
        if not refresh and self._value is not None and now - self._loaded_at < self._max_age:
            return self._value
        if self._task is None and self._failure is not None and now - self._failure_at < FAILURE_MEMORY_SECONDS:
            failure, ago = self._failure, now - self._failure_at
            remembered = f" ({ago:.1f} s ago; not retried for {FAILURE_MEMORY_SECONDS:g} s)"
            raise type(failure)(failure.detail + remembered, cause=failure.cause + remembered if failure.cause else "")
        task = self._task
        if task is None:
            self._contact = IdpContact()
            task = asyncio.get_running_loop().create_task(self._run(self._contact), name=f"fetch {self._what}")
            task.add_done_callback(_consume)
            self._task = task
        contact, started = self._contact, time.perf_counter()
        try:
            # shield: a caller that gives up must not cancel the fetch the others wait on.
            return await asyncio.shield(task)
        finally:
            if contact.contacted:
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
        self._value, self._loaded_at, self._failure = value, self._clock(), None
        return value

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def _consume(task: asyncio.Task[T]) -> None:
    if not task.cancelled():
        task.exception()
