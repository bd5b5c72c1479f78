"""SharedLookup: one fetch for every waiting login, a failed fetch remembered briefly, refreshes on schedule."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.errors import IdpProtocolError, IdpTimeout, IdpUnreachable
from bridge.idp.http import IdpContact, note_idp_contact, track_idp_contact
from bridge.idp.lookup import FAILURE_MEMORY_SECONDS, SharedLookup


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Counts calls; each call waits ``delay`` then returns the next value or raises ``error``."""

    def __init__(self, *, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.error = error
        self.previous: list[str | None] = []

    async def __call__(self, previous: str | None) -> str:
        self.calls += 1
        self.previous.append(previous)
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return f"value-{self.calls}"


async def test_concurrent_callers_share_one_fetch() -> None:
    loader = Loader(delay=0.2)
    lookup = SharedLookup(loader, max_age=60, what="test")
    started = time.perf_counter()
    results = await asyncio.gather(*(lookup.get() for _ in range(5)))
    elapsed = time.perf_counter() - started
    assert results == ["value-1"] * 5 and loader.calls == 1
    assert elapsed < 0.2 * 2  # one fetch's time, not five
    assert await lookup.get() == "value-1" and loader.calls == 1  # cached


async def test_concurrent_callers_share_one_failure_which_is_remembered() -> None:
    clock = Clock()
    loader = Loader(delay=0.2, error=IdpTimeout("IdP did not answer within 0.2 s"))
    lookup = SharedLookup(loader, max_age=60, what="test", clock=clock)
    started = time.perf_counter()
    results = await asyncio.gather(*(lookup.get() for _ in range(5)), return_exceptions=True)
    assert time.perf_counter() - started < 0.2 * 2
    assert all(isinstance(r, IdpTimeout) for r in results) and loader.calls == 1
    # Within the memory: answered at once, the IdP is not asked.
    clock.now += FAILURE_MEMORY_SECONDS - 0.1
    with pytest.raises(IdpTimeout, match="not retried"):
        await lookup.get()
    assert loader.calls == 1
    # After it: asked again.
    clock.now += 0.2
    loader.error = None
    assert await lookup.get() == "value-2"


@pytest.mark.parametrize("error", [IdpUnreachable("cannot connect"), IdpTimeout("slow")])
async def test_transport_failures_are_remembered(error: Exception) -> None:
    loader = Loader(error=error)
    lookup = SharedLookup(loader, max_age=60, what="test", clock=Clock())
    for _ in range(3):
        with pytest.raises(type(error)):
            await lookup.get()
    assert loader.calls == 1


async def test_a_quick_refusal_is_not_remembered() -> None:
    loader = Loader(error=IdpProtocolError("metadata answered HTTP 503"))
    lookup = SharedLookup(loader, max_age=60, what="test", clock=Clock())
    for _ in range(2):
        with pytest.raises(IdpProtocolError):
            await lookup.get()
    assert loader.calls == 2
    loader.error = None
    assert await lookup.get() == "value-3"


async def test_refresh_after_max_age_receives_the_previous_value() -> None:
    clock = Clock()
    loader = Loader()
    lookup = SharedLookup(loader, max_age=60, what="test", clock=clock)
    assert await lookup.get() == "value-1"
    clock.now += 59
    assert await lookup.get() == "value-1"
    clock.now += 2
    assert await lookup.get() == "value-2"
    assert loader.previous == [None, "value-1"]
    assert lookup.value == "value-2"


async def test_a_caller_that_gives_up_does_not_cancel_the_others_fetch() -> None:
    loader = Loader(delay=0.2)
    lookup = SharedLookup(loader, max_age=60, what="test")
    first = asyncio.ensure_future(lookup.get())
    second = asyncio.ensure_future(lookup.get())
    await asyncio.sleep(0.05)
    first.cancel()
    assert await second == "value-1"
    assert first.cancelled() and loader.calls == 1


async def test_every_waiter_of_a_fetch_that_reached_the_idp_counts_a_contact() -> None:
    async def fetch(previous: str | None) -> str:
        await asyncio.sleep(0.1)
        note_idp_contact(0.1)  # what IdpHttp does for a request that reached the IdP
        return "value"

    lookup: SharedLookup[str] = SharedLookup(fetch, max_age=60, what="test")

    async def login() -> IdpContact:
        with track_idp_contact() as contact:
            await lookup.get()
        return contact

    contacts = await asyncio.gather(*(login() for _ in range(3)))
    assert all(c.requests == 1 and c.seconds >= 0.09 for c in contacts)
    later = await login()  # served from the cache: nothing reached the IdP
    assert later.requests == 0


async def test_close_cancels_a_fetch_under_way() -> None:
    loader = Loader(delay=5)
    lookup = SharedLookup(loader, max_age=60, what="test")
    waiter = asyncio.ensure_future(lookup.get())
    await asyncio.sleep(0.05)
    lookup.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
