"""The lane that requests without verified credentials share: a rate for the whole printer.

Each such request is held to the decoder's small budget (``UNAUTHENTICATED_LIMITS``
in the server), which bounds what one request costs; the lane bounds how many of
those budgets are spent per second, whatever the number of senders and
connections: ``burst`` at once, then ``rate`` a second.  A request over the rate
waits (a sleep, no CPU) until its turn; one whose turn is more than ``max_wait``
away is refused, before any byte of its body is read, after ``max_wait`` too: a
refusal costs the event loop little, but a sender looping on refusals over many
connections would otherwise be refused as fast as it reconnects.  Requests with
verified credentials never enter the lane, so an unauthenticated flood slows
only unauthenticated requests (a driverless client's first Get-Printer-Attributes),
never printing users or the logins the bridge serves on the same event loop.

Pure: the clock is passed in; the server does the sleeping.  The scheduling is
the generic cell rate algorithm (a token bucket kept as one timestamp).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from printers.errors import PrinterBusy

UNAUTHENTICATED_RATE = 10.0
"""Requests without credentials admitted per second, after the burst.  A print queue sends one or two
before it learns that it needs credentials (a print dialog's Get-Printer-Attributes); ipptool's
conformance suites and CUPS's driverless set-up send 31 in all, well inside the burst."""
UNAUTHENTICATED_BURST = 40
UNAUTHENTICATED_MAX_WAIT = 1.0


class Lane:
    """One per printer; :meth:`admit` once per request that has no verified credentials."""

    def __init__(self, *, rate: float = UNAUTHENTICATED_RATE, burst: int = UNAUTHENTICATED_BURST,
                 max_wait: float = UNAUTHENTICATED_MAX_WAIT, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_wait < 0:
            raise ValueError("a lane needs a positive rate, a burst of at least 1 and a wait of at least 0")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._max_wait = max_wait
        self._clock = clock
        self._next = clock()  # theoretical arrival time of the next request

    def admit(self) -> float:
        """Seconds the caller must wait before it is served; PrinterBusy when that is too long.

        A refused request takes no turn, so refusals never push later requests back.
        """
        now = self._clock()
        start = max(self._next, now)
        wait = max(0.0, start - self._tolerance - now)
        if wait > self._max_wait:
            raise PrinterBusy(f"unauthenticated requests over {1 / self._interval:g}/s: next turn in {wait:.2f} s",
                              retry_after=max(1, round(wait)), hold=self._max_wait)
        self._next = start + self._interval
        return wait
