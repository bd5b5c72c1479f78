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

:class:`SniffingSite` serves TLS and plain HTTP on one port, as CUPS's cupsd
and ippeveprinter do: it accepts connections itself and looks at the first byte
a client sends (without consuming it) before handing the socket to aiohttp,
with the TLS context or without it.  A TLS connection starts with a handshake
record (byte 0x16); an HTTP request starts with a method name.  It also takes
the RFC 2817 upgrade a CUPS client (libcups) tries after a 426 Upgrade Required:
``OPTIONS * HTTP/1.1`` with ``Connection: Upgrade`` and ``Upgrade: TLS/1.2,...``
as the first request of a connection, answered 101, then TLS on the same
connection.  The first byte (and the TLS handshake, or the upgrade) must come
within one header deadline; the request head then has its own, as on any
listener.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path
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


# --------------------------------------------------------------------------
# TLS and plain HTTP on one port.

TLS_HANDSHAKE = 0x16
"""The content type of a TLS handshake record: the first byte of every TLS connection (its ClientHello)."""
UPGRADE_HEAD_LIMIT = 4096
"""The largest ``OPTIONS *`` upgrade request read (libcups sends about 150 bytes)."""
_TLS_TOKENS = frozenset({"tls/1.2", "tls/1.3"})
_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: TLS/1.2, HTTP/1.1\r\n\r\n"
_OPTIONS_DONE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_NOT_UPGRADE = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n"
                b"Connection: close\r\n\r\nOnly OPTIONS * with Upgrade: TLS/1.2 is served.\r\n")


def tls_server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, ALPN ``http/1.1``, no renegotiation, the certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    # No TLS 1.3 session tickets: OpenSSL sends them after the handshake, and libcups (GnuTLS) with a request
    # timeout (ipptool -T, queues with a timeout) then fails every request and retries without end. Resumption
    # saves one round trip per connection; print queues keep their connection alive anyway.
    context.num_tickets = 0
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


class _Listening(asyncio.AbstractServer):
    """The listening sockets of a :class:`SniffingSite` (what ``AppRunner.addresses`` reads)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket]) -> None:
        self._loop = loop
        self._sockets = sockets
        self._closed = asyncio.Event()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed.is_set() else tuple(self._sockets)

    def close(self) -> None:
        if not self._closed.is_set():
            for sock in self._sockets:
                sock.close()
            self._closed.set()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    async def start_serving(self) -> None:  # serving starts with the site
        return None

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def wait_closed(self) -> None:
        await self._closed.wait()


def _bind(infos: Iterable[tuple[Any, ...]], backlog: int) -> list[socket.socket]:
    """One listening socket per address, as asyncio's create_server makes them (IPv6 sockets IPv6 only)."""
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: "
                                         f"{exc.strerror.lower() if exc.strerror else exc}") from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` has bytes (or an end of stream) to read."""
    ready = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: None if ready.done() else ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _peek_first(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The first byte the client sent, left in the socket; b"" when it closed first."""
    while True:
        await _readable(loop, sock)
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes | None:
    """A request head read (consumed) up to its blank line; None when it is longer, cut off or followed by bytes."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) >= UPGRADE_HEAD_LIMIT:
            return None
        chunk = await loop.sock_recv(sock, UPGRADE_HEAD_LIMIT - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf) if buf.endswith(b"\r\n\r\n") else None


def _is_tls_upgrade(head: bytes) -> bool:
    """``OPTIONS * HTTP/1.1``, ``Connection: Upgrade``, an ``Upgrade`` offering TLS/1.2 or 1.3, and no body."""
    try:
        lines = head.decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        return False
    if lines[0] != "OPTIONS * HTTP/1.1":
        return False
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or name != name.strip():
            return False
        headers.setdefault(name.lower(), []).extend(t.strip().lower() for t in value.split(","))
    if "transfer-encoding" in headers or any(v != "0" for v in headers.get("content-length", [])):
        return False
    return "upgrade" in headers.get("connection", []) and bool(_TLS_TOKENS & set(headers.get("upgrade", [])))


class SniffingSite(web.BaseSite):
    """A TCP site speaking TLS and plain HTTP on the same port, told apart by each connection's first byte.

    The runner's header deadline bounds the wait for the first byte (a client
    that connects and sends nothing is closed) and the TLS handshake; after
    that, the connection is the runner's like any other.  A handshake that
    fails (garbage after 0x16, a client that does not trust the certificate)
    closes that connection only.
    """

    __slots__ = ("_deadline", "_host", "_port", "_tasks")

    def __init__(self, runner: ListenerRunner, host: str | None, port: int, *, ssl_context: ssl.SSLContext,
                 backlog: int = 128) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._deadline = runner.header_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        host = self._host or "0.0.0.0"  # noqa: S104 - a wildcard bind, as aiohttp's TCPSite names it
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}:{self._port} (and http)"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host or None, self._port, family=socket.AF_UNSPEC,
                                       type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        if not infos:
            raise OSError(f"getaddrinfo({self._host!r}) returned no addresses")
        sockets = _bind(infos, self._backlog)
        self._server = _Listening(loop, sockets)
        for sock in sockets:
            self._spawn(self._accept(sock), "printer-accept")

    async def stop(self) -> None:
        # The accept loops first (their readers go with them), then the sockets: no fd closed under a reader.
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._server is not None:
            self._server.close()
        await super().stop()

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, a connection reset before accept
                log.warning("cannot accept a connection: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._spawn(self._hand_over(conn), "printer-sniff")

    async def _hand_over(self, conn: socket.socket) -> None:
        """Look at the first byte, then give the connection to aiohttp, over TLS or not."""
        loop = asyncio.get_running_loop()
        peer = _socket_peer(conn)
        handed = False
        try:
            async with asyncio.timeout(self._deadline):
                first = await _peek_first(loop, conn)
                if not first:
                    return  # closed without a byte
                after = b""
                if first == b"O":  # OPTIONS: maybe libcups asking to upgrade to TLS (RFC 2817)
                    head = await _read_head(loop, conn)
                    if head is None or not _is_tls_upgrade(head):
                        await loop.sock_sendall(conn, _NOT_UPGRADE)
                        return
                    await loop.sock_sendall(conn, _SWITCHING)
                    after = _OPTIONS_DONE  # RFC 2817 section 3.3: the OPTIONS response comes over TLS
                tls = self._ssl_context if first[0] == TLS_HANDSHAKE or after else None
                server = self._runner.server
                if server is None:  # the runner is shutting down
                    return
                transport, _ = await loop.connect_accepted_socket(
                    server, conn, ssl=tls, ssl_handshake_timeout=self._deadline if tls else None)
                handed = True
                if after:
                    transport.write(after)
        except TimeoutError:
            log.info("closing a connection from %s: no request or TLS handshake within %g s", peer, self._deadline)
        except OSError as exc:  # a failed handshake (ssl.SSLError is one), a reset
            log.info("connection from %s closed before HTTP: %s", peer, exc)
        finally:
            if not handed:
                conn.close()


def _socket_peer(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "an unknown address"
    return str(peer[0]) if isinstance(peer, tuple) and peer else "an unknown address"
