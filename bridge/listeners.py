"""Deadlines on the HTTP listeners (the device API and the printer), so slow or silent clients let go.

aiohttp closes a kept-alive connection that stays idle for ``keepalive_timeout``,
but nothing bounds how long a client may take to send a request's head once
bytes of it started to arrive: a client trickling header bytes ("slowloris")
keeps its socket, and so does one that connects and leaves a half request
line.  :class:`ListenerRunner` is an ``AppRunner`` whose connections also have
a header deadline:

* it starts when a connection opens, and when the first bytes of a new request
  arrive on an idle kept-alive connection;
* it stops when the request line and headers are parsed;
* when it passes while no request is being handled, the connection is closed.

A request's *body* is not under this deadline (a print job may stream for
minutes); a handler that reads a small body bounds that read itself.  The idle
timeout is aiohttp's own ``keepalive_timeout``: after a response, a connection
that sends nothing for that long is closed.

The hooks are the installed aiohttp's (3.10+ ``web_protocol.RequestHandler``):
``data_received`` counts parsed requests in ``_request_count``, and the
handler loop waits for the next request on ``_waiter``, exactly the state
aiohttp's own keep-alive check reads.  Import fails loudly if they change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

if not {"_request_count", "_waiter"} <= set(RequestHandler.__slots__):  # pragma: no cover (an aiohttp upgrade)
    raise ImportError("aiohttp's RequestHandler changed: bridge/listeners.py needs _request_count and _waiter")


class HeaderDeadlineHandler(RequestHandler):
    """aiohttp's connection protocol, closing a connection whose request head does not arrive in time."""

    __slots__ = ("_header_timeout", "_header_timer")

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm()  # a request line and its headers are complete (or refused with a 400)
        elif data and self._header_timer is None and self._idle():
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        """Waiting for a request's head, no handler running (what aiohttp's keep-alive check reads)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self._loop.call_later(self._header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport is not None and self._idle():
            log.info("closing a connection from %s: no complete request head within %g s",
                     _peer(self.transport), self._header_timeout)
            self.force_close()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "an unknown address"


class _HeaderDeadlineServer(web.Server):
    """aiohttp's connection manager, making :class:`HeaderDeadlineHandler` protocols."""

    def __init__(self, base: web.Server, *, header_timeout: float) -> None:
        super().__init__(base.request_handler, request_factory=base.request_factory,
                         handler_cancellation=base.handler_cancellation, loop=asyncio.get_running_loop(),
                         **base._kwargs)
        self.header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return HeaderDeadlineHandler(self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs)


class ListenerRunner(web.AppRunner):
    """An ``AppRunner`` with a header deadline and an idle timeout on every connection (seconds)."""

    def __init__(self, app: web.Application, *, header_timeout: float, idle_timeout: float, **kwargs: Any) -> None:
        if header_timeout <= 0 or idle_timeout <= 0:
            raise ValueError("listener timeouts must be positive")
        super().__init__(app, keepalive_timeout=idle_timeout, **kwargs)
        self.header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        # AppRunner's own: starts the application and makes aiohttp's server with every handler argument.
        base = await super()._make_server()
        return _HeaderDeadlineServer(base, header_timeout=self.header_timeout)
