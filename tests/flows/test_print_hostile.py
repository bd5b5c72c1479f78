"""The printer under hostile requests, over real HTTP on loopback: budgets, the lane, a responsive event loop.

The attacker streams a chunked request without ``Expect: 100-continue`` (so no
expect handler runs) whose attribute section is an endless 1setOf of tiny
values.  The bridge's API listener runs on the same event loop as the
printer: while the attack is under way, a ticker measures how late the loop
wakes up and a prober asks ``/healthz``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from printers.ipp import Attribute, ValueTag, decode
from printers.lane import UNAUTHENTICATED_BURST, UNAUTHENTICATED_MAX_WAIT, UNAUTHENTICATED_RATE
from printers.server import UNAUTHENTICATED_BYTES, UNAUTHENTICATED_LIMITS
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.print_support import ALICE, PrintBridge, PrintBridgeFactory, ipp_post, ipp_request, make_print_bridge

__all__ = ["make_print_bridge"]

TINY = bytes((ValueTag.KEYWORD, 0, 0, 0, 1)) + b"k"
"""One more keyword of a 1setOf: empty name, one octet of value (RFC 8010 section 3.1.5)."""
BLOCK = TINY * 10_000  # 60 kB, 10 000 values per chunk
MAX_LAG = 0.25
"""Longest the event loop may sleep through.  Decoding the old 1 MiB section took about one second."""


def endless_request_head(operation: int) -> bytes:
    """An IPP request whose attribute section never ends: it opens a 1setOf that BLOCK continues."""
    start = ipp_request(operation, Attribute.of("requested-attributes", ValueTag.KEYWORD, "k"))
    return start[:-1]  # without end-of-attributes


def http_head(port: int, *extra: str) -> bytes:
    lines = ["POST /ipp/print HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/ipp", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def basic(user: tuple[str, str]) -> str:
    KNOWN_SECRETS.add(user[1])
    return "Authorization: Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


@dataclass
class Answer:
    status_line: bytes
    headers: bytes
    body: bytes
    seconds: float


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


async def stream_attack(port: int, operation: int, *headers: str, values: int = 3_000_000) -> Answer:
    """Stream ``values`` tiny values chunked until the printer answers; the answer and how fast it came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0

    async def pump() -> None:
        nonlocal sent
        writer.write(http_head(port, "Transfer-Encoding: chunked", *headers) + chunk(endless_request_head(operation)))
        while sent < values:
            writer.write(chunk(BLOCK))
            sent += BLOCK.count(TINY)
            await writer.drain()

    started = time.monotonic()
    pumping = asyncio.create_task(pump())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        seconds = time.monotonic() - started
        status_line, _, rest = head.partition(b"\r\n")
        length = 0
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        await asyncio.sleep(0.3)  # keep streaming a little: the refused connection is drained, not decoded
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pumping
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return Answer(status_line=status_line, headers=rest, body=body, seconds=seconds)


@dataclass
class Responsiveness:
    """The event loop's worst wake-up delay and the bridge API's /healthz latencies while it runs."""

    api: str
    max_lag: float = 0.0
    probes: list[float] = field(default_factory=list)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            self.max_lag = max(self.max_lag, loop.time() - before - 0.005)

    async def _probe(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                before = time.monotonic()
                async with http.get(f"{self.api}/healthz") as resp:
                    assert resp.status == 200
                    await resp.read()
                self.probes.append(time.monotonic() - before)
                await asyncio.sleep(0.01)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Responsiveness]:
        tasks = [asyncio.create_task(self._tick()), asyncio.create_task(self._probe())]
        await asyncio.sleep(0.05)
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def api_url(bridge: PrintBridge) -> str:
    return f"http://127.0.0.1:{bridge.runner.addresses[0][1]}"


def assert_responsive(watch: Responsiveness) -> None:
    assert len(watch.probes) >= 5, watch.probes  # /healthz kept answering during the attack
    assert watch.max_lag < MAX_LAG, f"event loop stalled for {watch.max_lag:.3f} s"
    assert max(watch.probes) < 2 * MAX_LAG, f"/healthz took {max(watch.probes):.3f} s"


async def test_unauthenticated_endless_attributes_without_expect_are_refused_fast(
    make_print_bridge: PrintBridgeFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    """A print job needs credentials: past the small budget the answer is the 401 the queue expects."""
    bridge = await make_print_bridge()
    async with Responsiveness(api_url(bridge)).watching() as watch:
        answer = await stream_attack(bridge.port, Op.PRINT_JOB)
    assert answer.status_line.startswith(b"HTTP/1.1 401"), answer.status_line
    assert b'WWW-Authenticate: Basic realm="loginbridge"' in answer.headers
    assert b"Connection: close" in answer.headers
    assert answer.seconds < 2.0
    refusals = [r.getMessage() for r in caplog.records if "over the unauthenticated budget" in r.getMessage()]
    assert len(refusals) == 1 and f"more than {UNAUTHENTICATED_LIMITS.max_values} values" in refusals[0]
    assert_responsive(watch)


async def test_unauthenticated_public_operation_past_the_budget_is_too_large(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    """Get-Printer-Attributes needs no credentials, so a 401 would not help: IPP request-entity-too-large."""
    bridge = await make_print_bridge()
    async with Responsiveness(api_url(bridge)).watching() as watch:
        answer = await stream_attack(bridge.port, Op.GET_PRINTER_ATTRIBUTES)
    assert answer.status_line.startswith(b"HTTP/1.1 200"), answer.status_line
    assert b"Connection: close" in answer.headers
    reply = decode(answer.body)
    assert reply.code == IppStatus.ERROR_REQUEST_ENTITY  # 0x0408
    assert reply.version == (2, 0) and reply.request_id == 7  # echoed, as ipptool checks
    assert answer.seconds < 2.0
    assert_responsive(watch)


async def test_authenticated_requests_are_capped_on_values_and_never_stall_the_loop(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    """Credentials buy the full budget (1 MiB, 10 000 values), still decoded a few hundred values at a time."""
    bridge = await make_print_bridge()
    async with Responsiveness(api_url(bridge)).watching() as watch:
        answer = await stream_attack(bridge.port, Op.PRINT_JOB, basic(ALICE))
    assert_responsive(watch)
    assert answer.status_line.startswith(b"HTTP/1.1 200"), answer.status_line
    reply = decode(answer.body)
    assert reply.code == IppStatus.ERROR_REQUEST_ENTITY
    status_message = reply.operation_attributes.get("status-message")  # type: ignore[union-attr]
    assert status_message is not None and "10000 values" in str(status_message.first)
    assert bridge.manifests() == []


async def test_unauthenticated_content_length_past_the_budget_is_401_before_the_body(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    bridge = await make_print_bridge()
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(http_head(bridge.port, f"Content-Length: {UNAUTHENTICATED_BYTES + 1}"))  # no Expect, no body
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 401"), head
    writer.close()
    # the same length with credentials is read (and here refused by IPP, not by HTTP)
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    body = endless_request_head(Op.GET_JOBS)
    body += TINY * ((UNAUTHENTICATED_BYTES + 1 - len(body)) // len(TINY))
    body += bytes(UNAUTHENTICATED_BYTES + 1 - len(body))
    writer.write(http_head(bridge.port, f"Content-Length: {len(body)}", basic(ALICE)) + body)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()


async def test_the_unauthenticated_budget_counts_values_to_the_last_one(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    """A driverless client's Get-Printer-Attributes fits; one value more than the budget does not."""
    bridge = await make_print_bridge()
    budget = UNAUTHENTICATED_LIMITS.max_values
    base = 3  # attributes-charset, attributes-natural-language, printer-uri

    def asking(count: int) -> bytes:
        names = [f"attr-{i}" for i in range(count)]
        return ipp_request(Op.GET_PRINTER_ATTRIBUTES, Attribute.of("requested-attributes", ValueTag.KEYWORD, *names))

    status, reply = await ipp_post(bridge, asking(budget - base))
    assert status == 200 and reply is not None and reply.code == IppStatus.OK
    status, reply = await ipp_post(bridge, asking(budget - base + 1))
    assert status == 200 and reply is not None and reply.code == IppStatus.ERROR_REQUEST_ENTITY
    # with credentials the same request is an ordinary one
    status, reply = await ipp_post(bridge, asking(budget - base + 1), auth=ALICE)
    assert status == 200 and reply is not None and reply.code == IppStatus.OK


async def test_an_unauthenticated_flood_is_paced_and_printing_users_are_not(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    """Requests without credentials share one rate: past it they wait or get 503; credentials skip the lane."""
    bridge = await make_print_bridge()
    body = ipp_request(Op.GET_PRINTER_ATTRIBUTES, Attribute.of("requested-attributes", ValueTag.KEYWORD,
                                                                "printer-state"))
    url = f"http://127.0.0.1:{bridge.port}/ipp/print"
    stop = asyncio.Event()

    async def flooder(http: aiohttp.ClientSession) -> list[tuple[int, str | None]]:
        answers = []
        while not stop.is_set():
            async with http.post(url, data=body, headers={"Content-Type": "application/ipp"}) as resp:
                await resp.read()
                answers.append((resp.status, resp.headers.get("Retry-After")))
        return answers

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        started = time.monotonic()
        workers = [asyncio.create_task(flooder(http)) for _ in range(2 * UNAUTHENTICATED_BURST)]
        await asyncio.sleep(0.5)  # the burst is spent and the lane is full
        before = time.monotonic()
        status, reply = await ipp_post(bridge, ipp_request(Op.GET_JOBS), auth=ALICE)
        alice_seconds = time.monotonic() - before
        # refused credentials are paced like none: no quick 401 to loop on while the lane is full
        before = time.monotonic()
        refused, _ = await ipp_post(bridge, ipp_request(Op.GET_JOBS), auth=("mallory@unknown.test", "guess-1"))
        mallory_seconds = time.monotonic() - before
        stop.set()
        results = [answer for answers in await asyncio.gather(*workers) for answer in answers]
        elapsed = time.monotonic() - started
    assert status == 200 and reply is not None and reply.code == IppStatus.OK
    assert alice_seconds < UNAUTHENTICATED_MAX_WAIT / 2  # never queued behind the anonymous requests
    assert refused in (401, 503) and mallory_seconds > UNAUTHENTICATED_MAX_WAIT / 2
    served = sum(1 for code, _ in results if code == 200)
    busy = [retry for code, retry in results if code == 503]
    assert served + len(busy) == len(results)
    assert served >= UNAUTHENTICATED_BURST
    assert served <= UNAUTHENTICATED_BURST + UNAUTHENTICATED_RATE * (elapsed + UNAUTHENTICATED_MAX_WAIT) + 1
    assert busy and all(retry is not None and int(retry) >= 1 for retry in busy)
