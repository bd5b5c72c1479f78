"""HTTP/1.1 over a raw loopback socket: bytes written as a network delivers them, answers read as sent.

For tests whose point is what arrives when (a body in several TCP segments,
a request line that never ends, a connection left idle); everything else uses
aiohttp's client.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict

# A wait no test should reach: the server is expected to answer or close long before.
GIVE_UP = 30.0


@dataclass
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(raw: bytes) -> RawResponse:
    """One HTTP/1.1 answer (Content-Length or read to the close; chunked decoded)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete answer: {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
        return RawResponse(status=status, headers=headers, body=bytes(body))
    if "Content-Length" in headers:
        rest = rest[:int(headers["Content-Length"])]
    return RawResponse(status=status, headers=headers, body=rest)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
    return reader, writer


async def write_parts(writer: asyncio.StreamWriter, parts: tuple[bytes, ...], pause: float) -> None:
    for i, part in enumerate(parts):
        if i and pause:
            await asyncio.sleep(pause)
        writer.write(part)
        await writer.drain()


async def exchange(port: int, *parts: bytes, pause: float = 0.05) -> RawResponse:
    """Write the parts with a pause between them, then read the answer (send ``Connection: close``)."""
    reader, writer = await connect(port)
    try:
        await write_parts(writer, parts, pause)
        raw = await asyncio.wait_for(reader.read(), GIVE_UP)
    finally:
        writer.close()
    return parse_response(raw)


async def read_answer(reader: asyncio.StreamReader) -> RawResponse:
    """One answer with a Content-Length, read without waiting for the connection to close."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
    answer = parse_response(head)
    length = int(answer.headers.get("Content-Length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), GIVE_UP)
    return RawResponse(status=answer.status, headers=answer.headers, body=body)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = bytearray()
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), GIVE_UP):
            received += chunk
    except ConnectionResetError:
        pass
    return bytes(received)


async def seconds_until_closed(port: int, *parts: bytes, pause: float = 0.0) -> tuple[float, bytes]:
    """Write the parts, then wait: (seconds from the first byte written until the server closed, what it sent)."""
    reader, writer = await connect(port)
    started = time.monotonic()
    try:
        try:
            await write_parts(writer, parts, pause)
        except ConnectionResetError:
            return time.monotonic() - started, b""
        received = await read_until_closed(reader)
        return time.monotonic() - started, received
    finally:
        writer.close()


def request(method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
            close: bool = True) -> bytes:
    """A request's bytes (Content-Length from the body unless the headers say chunked)."""
    all_headers = {"Host": "127.0.0.1", **(headers or {})}
    if body and "Transfer-Encoding" not in all_headers:
        all_headers.setdefault("Content-Length", str(len(body)))
    if close:
        all_headers["Connection"] = "close"
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 section 7.1); ``chunk(b"")`` is the last one."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
