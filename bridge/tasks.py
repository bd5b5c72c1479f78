"""Stopping a background task without swallowing the caller's own cancellation.

The obvious way, ``task.cancel()`` then ``with suppress(CancelledError): await task``,
has a hole: when the *caller* is cancelled while it waits there, its own
CancelledError is suppressed too, and the caller carries on as if nothing
happened.  The print delivery worker did exactly that when the printer shut
down just as a delivery finished: it went back to its loop, and the shutdown
waited for it forever (a test-suite hang, seen about once in ten runs of
tests/flows/test_print_everywhere.py).

:func:`stop_task` waits with :func:`asyncio.wait`, which never raises the
task's outcome but does raise the caller's cancellation.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` and wait until it is done; a cancellation of the caller propagates."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task %s ended with an error while stopping", task.get_name(),
                  exc_info=(type(exc), exc, exc.__traceback__))
