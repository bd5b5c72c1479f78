"""bridge/tasks.py: stopping a background task never swallows the stopper's own cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from bridge.tasks import stop_task


async def _slow_to_stop(stopping: asyncio.Event) -> None:
    """A task that needs a moment to stop (like a delivery finishing its database write)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        stopping.set()
        await asyncio.sleep(0.05)
        raise


async def _stopper(child: asyncio.Task[None], stop: object) -> str:
    if stop is stop_task:
        await stop_task(child)
    else:  # the pattern stop_task replaces
        child.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await child
    return "carried on"


@pytest.mark.parametrize("stop", [stop_task, "suppress"])
async def test_the_stoppers_cancellation_propagates(stop: object) -> None:
    stopping = asyncio.Event()
    child = asyncio.create_task(_slow_to_stop(stopping))
    await asyncio.sleep(0)
    stopper = asyncio.create_task(_stopper(child, stop))
    await stopping.wait()  # the stopper now waits for the child
    stopper.cancel()
    await asyncio.wait({stopper})
    if stop is stop_task:
        assert stopper.cancelled()
    else:  # the old pattern swallowed it: the reason for stop_task
        assert stopper.result() == "carried on"
    await asyncio.wait({child})  # the child still stops: it was cancelled first
    assert child.cancelled()


async def test_a_task_that_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails(), name="failing-chore")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="bridge.tasks"):
        await stop_task(task)
    assert "failing-chore" in caplog.text
    await stop_task(None)
