"""The client-address rule behind load balancers (bridge/forwarded.py), over real HTTP on loopback.

A small application with the middleware answers the ``request.remote`` its
handler sees; the client is 127.0.0.1 or 127.0.0.3 (its own source address).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import ip_network

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from bridge.config import IPNetwork
from bridge.forwarded import forwarded_client, forwarded_middleware

LOOPBACK = (ip_network("127.0.0.1/32"),)
TWO_HOPS = (ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"))

Echo = Callable[..., Awaitable[str]]


async def _remote(request: web.Request) -> web.Response:
    return web.Response(text=str(request.remote))


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    runners: list[web.AppRunner] = []

    async def call(proxies: tuple[IPNetwork, ...], *forwarded_for: str, local_addr: str = "127.0.0.1") -> str:
        app = web.Application(middlewares=[forwarded_middleware(proxies)])
        app.router.add_get("/", _remote)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        headers = CIMultiDict(("X-Forwarded-For", line) for line in forwarded_for)  # one header line each
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(local_addr, 0))) as http, \
                http.get(f"http://127.0.0.1:{runner.addresses[0][1]}/", headers=headers) as resp:
            assert resp.status == 200
            return await resp.text()

    yield call
    for runner in runners:
        await runner.cleanup()


async def test_a_trusted_peer_names_the_client(echo: Echo) -> None:
    assert await echo(LOOPBACK, "203.0.113.7") == "203.0.113.7"
    assert await echo(LOOPBACK) == "127.0.0.1"  # no header: the peer
    # The rightmost untrusted address, never the leftmost (the client writes whatever it likes there).
    assert await echo(LOOPBACK, "198.51.100.1, 203.0.113.7") == "203.0.113.7"
    # HAProxy adds its own line after one the client sent: the lines are one list.
    assert await echo(LOOPBACK, "198.51.100.1", "203.0.113.7") == "203.0.113.7"
    assert await echo(LOOPBACK, "2001:db8::7") == "2001:db8::7"
    assert await echo(LOOPBACK, "::ffff:203.0.113.7") == "203.0.113.7"


async def test_an_untrusted_peer_cannot_spoof(echo: Echo) -> None:
    assert await echo(LOOPBACK, "203.0.113.7", local_addr="127.0.0.3") == "127.0.0.3"
    assert await echo((), "203.0.113.7") == "127.0.0.1"  # nothing trusted: today's behaviour


async def test_trusted_hops_are_skipped(echo: Echo) -> None:
    # client -> 10.1.2.3 -> 10.9.9.9 -> (127.0.0.1) -> bridge
    assert await echo(TWO_HOPS, "203.0.113.7, 10.1.2.3, 10.9.9.9") == "203.0.113.7"
    assert await echo(TWO_HOPS, "198.51.100.1, 203.0.113.7, 10.1.2.3") == "203.0.113.7"
    # Every address a trusted proxy: the leftmost one sent the request.
    assert await echo(TWO_HOPS, "10.1.2.3, 10.9.9.9") == "10.1.2.3"
    # Only the listed networks are proxies: a 10.x hop behind a balancer trusting 127.0.0.1 alone is the client.
    assert await echo(LOOPBACK, "203.0.113.7, 10.1.2.3") == "10.1.2.3"


@pytest.mark.parametrize("header", ["garbage", "203.0.113.7:4711", "203.0.113.7,", "unknown", "", "203.0.113.7, ",
                                    "[2001:db8::7]", "10.1.2.3, garbage"])
async def test_a_malformed_header_is_ignored(echo: Echo, header: str) -> None:
    assert await echo(LOOPBACK, header) == "127.0.0.1"
    assert await echo(TWO_HOPS, header) == "127.0.0.1"


async def test_garbage_left_of_the_client_is_never_read(echo: Echo) -> None:
    # A client's own junk before the balancer's entry does not push the client back onto the balancer's address.
    assert await echo(LOOPBACK, "garbage", "203.0.113.7") == "203.0.113.7"
    assert await echo(LOOPBACK, "unknown, 203.0.113.7") == "203.0.113.7"


def test_the_rule_without_http() -> None:
    assert forwarded_client("10.9.9.9", ["203.0.113.7, 10.1.2.3"], TWO_HOPS) == "203.0.113.7"
    assert forwarded_client("::ffff:127.0.0.1", ["203.0.113.7"], LOOPBACK) == "203.0.113.7"  # a dual-stack socket
    assert forwarded_client("192.0.2.1", ["203.0.113.7"], TWO_HOPS) == "192.0.2.1"
    assert forwarded_client(None, ["203.0.113.7"], LOOPBACK) is None
    # Applied twice (the printer's expect handler, then its middleware): the same answer.
    for chain in (["203.0.113.7, 10.1.2.3"], ["10.1.2.3, 10.9.9.9"], ["garbage"]):
        once = forwarded_client("127.0.0.1", chain, TWO_HOPS)
        assert forwarded_client(once, chain, TWO_HOPS) == once
