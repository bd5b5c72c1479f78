"""The listeners' deadlines (bridge/listeners.py), on a small app over loopback with raw sockets.

HEADER and IDLE are short so the suite stays quick; the bounds allow for a
busy machine but still tell the two timeouts apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bridge.config import load_config, summarize
from bridge.errors import ConfigError
from bridge.listeners import ListenerRunner
from tests.connectors.rawhttp import connect, exchange, read_until_closed, request, seconds_until_closed

HEADER = 0.5
IDLE = 1.5


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"{len(body)} bytes")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/", echo)
    runner = ListenerRunner(app, header_timeout=HEADER, idle_timeout=IDLE, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def test_a_silent_connection_is_closed_after_the_header_timeout(port: int) -> None:
    elapsed, sent = await seconds_until_closed(port)
    assert HEADER * 0.9 <= elapsed < IDLE, elapsed
    assert sent == b""


async def test_half_a_request_line_is_closed_after_the_header_timeout(port: int) -> None:
    elapsed, sent = await seconds_until_closed(port, b"POST /v1/mfp/user-pr")
    assert HEADER * 0.9 <= elapsed < IDLE, elapsed
    assert sent == b""


async def test_trickled_headers_do_not_extend_the_deadline(port: int) -> None:
    # A byte every 0.1 s: never silent, but the head is still not complete at the deadline.
    head = request("GET", "/", headers={"X-Padding": "p" * 40})
    elapsed, _ = await seconds_until_closed(port, *[bytes([b]) for b in head], pause=0.1)
    assert HEADER * 0.9 <= elapsed < HEADER + 1.0, elapsed


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(port: int) -> None:
    reader, writer = await connect(port)
    try:
        writer.write(request("GET", "/", close=False))
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"0 bytes"), 5)
        assert answer.startswith(b"HTTP/1.1 200")
        started = asyncio.get_running_loop().time()
        assert await read_until_closed(reader) == b""
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        writer.close()
    assert IDLE * 0.9 <= elapsed < IDLE + 2.0, elapsed  # the idle timeout, not the (shorter) header one


async def test_the_next_request_on_a_kept_alive_connection_has_the_header_deadline(port: int) -> None:
    reader, writer = await connect(port)
    try:
        writer.write(request("GET", "/", close=False))
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"0 bytes"), 5)
        writer.write(b"GET / HT")  # the next request starts, then stalls
        await writer.drain()
        started = asyncio.get_running_loop().time()
        assert await read_until_closed(reader) == b""
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        writer.close()
    assert HEADER * 0.9 <= elapsed < IDLE, elapsed


async def test_requests_on_one_connection_each_get_their_own_deadline(port: int) -> None:
    reader, writer = await connect(port)
    try:
        for _ in range(3):  # together longer than the header timeout, each well within it
            writer.write(request("GET", "/", close=False))
            await writer.drain()
            assert (await asyncio.wait_for(reader.readuntil(b"0 bytes"), 5)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(HEADER * 0.6)
    finally:
        writer.close()


async def test_a_slow_steady_body_is_not_cut(port: int) -> None:
    # Headers at once, then 20 bytes over about 2.4 s: longer than both timeouts.
    body = b"x" * 20
    parts = [request("POST", "/", headers={"Content-Length": "20"})] + [body[i:i + 2] for i in range(0, 20, 2)]
    answer = await exchange(port, *parts, pause=0.24)
    assert answer.status == 200 and answer.body == b"20 bytes"


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ListenerRunner(web.Application(), header_timeout=0, idle_timeout=1)


def _main_file(tmp_path: Path, listen: str) -> Path:
    (tmp_path / "tenants").mkdir(exist_ok=True)
    path = tmp_path / "bridge.yaml"
    path.write_text(f"listen:\n{listen}state_dir: state\nsecrets:\n  hmac_key: {{file: state/hmac.key, generate: true}}\n")
    return path


def test_the_timeouts_come_from_the_listen_section(tmp_path: Path) -> None:
    defaults = load_config(_main_file(tmp_path, "  port: 0\n"), require_files=False).listener_timeouts
    assert (defaults.header, defaults.idle) == (10.0, 60.0)
    config = load_config(_main_file(tmp_path, "  header_timeout_seconds: 5\n  idle_timeout_seconds: 30.5\n"),
                         require_files=False)
    assert (config.listener_timeouts.header, config.listener_timeouts.idle) == (5.0, 30.5)
    assert "request head within 5 s, idle connections closed after 30.5 s" in summarize(config)


def test_a_bad_timeout_names_file_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_main_file(tmp_path, "  port: 0\n  header_timeout_seconds: 0\n"), require_files=False)
    assert caught.value.key == "listen.header_timeout_seconds" and caught.value.line == 3
    assert caught.value.file.endswith("bridge.yaml")
