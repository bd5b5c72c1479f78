"""IdpHttp under faults: every TLS or connection failure is idp_unreachable, and only a real contact counts.

Real sockets on loopback: the AD FS simulator for the good answers, and small
servers that misbehave the way networks do (close at once, speak plain HTTP on
the TLS port, hang, cut the body short with a reset).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from ipaddress import ip_network
from pathlib import Path

import pytest

from bridge.errors import IdpNotWhitelisted, IdpTimeout, IdpUnreachable
from bridge.idp.allowlist import IPNetwork
from bridge.idp.http import IdpHttp, make_ssl_context, track_idp_contact
from bridge.idpsim.config import load_config as load_sim_config
from bridge.idpsim.keys import SimKeys, ensure_keys, server_ssl_context
from bridge.idpsim.server import RunningSimulator, run_simulator
from tests.paths import REPO

LOOPBACK: tuple[IPNetwork, ...] = (ip_network("127.0.0.0/8"),)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SimKeys:
    return ensure_keys(tmp_path_factory.mktemp("idp-http-keys"))


@pytest.fixture
async def sim(keys: SimKeys) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(load_sim_config(REPO / "conf" / "idp-sim" / "users.yaml"), keys.ca_file.parent) as s:
        yield s


def client(ca_file: Path | None, *, whitelist: tuple[IPNetwork, ...] = LOOPBACK, timeout: float = 5) -> IdpHttp:
    return IdpHttp(whitelist=whitelist, ssl_context=make_ssl_context(ca_file), connect_timeout=timeout,
                   timeout=timeout, max_connections=2)


@asynccontextmanager
async def serving(handler: Handler, *, tls: ssl.SSLContext | None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def _close_at_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _plain_http(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


async def _answer_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def _reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5000\r\n\r\n<partial")
    await writer.drain()
    raw = writer.get_extra_info("socket")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(30)


async def test_an_answer_counts_as_contact(sim: RunningSimulator) -> None:
    http = client(sim.ca_file)
    try:
        with track_idp_contact() as contact:
            resp = await http.request("GET", sim.metadata_url)
        assert resp.status == 200 and b"EntityDescriptor" in resp.body
        assert contact.requests == 1 and 0 < contact.seconds < 5
    finally:
        await http.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_whitelist_refusal_is_not_a_contact(sim: RunningSimulator, host: str) -> None:
    http = client(sim.ca_file, whitelist=(ip_network("192.0.2.0/24"),))
    try:
        with track_idp_contact() as contact, pytest.raises(IdpNotWhitelisted):
            await http.request("GET", f"https://{host}:{sim.port}/FederationMetadata/2007-06/FederationMetadata.xml")
        assert contact.requests == 0
        assert sim.state.counters["metadata"] == 0
    finally:
        await http.close()


@pytest.mark.parametrize(
    ("handler", "tls", "words"),
    [
        (_close_at_once, False, "connect"),  # TCP accepted, closed before the TLS handshake
        (_plain_http, False, "TLS"),  # not TLS at all on the https port
        (_close_at_once, True, ""),  # handshake done, closed before any answer
        (_answer_nothing, True, ""),  # request read, closed without an answer (ServerDisconnected)
        (_reset_mid_body, True, ""),  # headers, a few bytes, then a TCP reset
    ],
    ids=["close-before-tls", "plain-http", "close-after-tls", "no-answer", "reset-mid-body"],
)
async def test_connection_faults_are_idp_unreachable(
    keys: SimKeys, handler: Handler, tls: bool, words: str
) -> None:
    http = client(keys.ca_file)
    try:
        async with serving(handler, tls=server_ssl_context(keys) if tls else None) as port:
            with track_idp_contact() as contact, pytest.raises(IdpUnreachable) as info:
                await http.request("GET", f"https://127.0.0.1:{port}/FederationMetadata/2007-06/FederationMetadata.xml")
        assert words in info.value.detail
        assert contact.requests == 1  # a connection was attempted to a whitelisted address
    finally:
        await http.close()


async def test_closed_port_is_idp_unreachable(keys: SimKeys) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = client(keys.ca_file)
    try:
        with pytest.raises(IdpUnreachable, match="cannot connect"):
            await http.request("GET", f"https://127.0.0.1:{port}/")
    finally:
        await http.close()


async def test_untrusted_certificate_is_idp_unreachable(sim: RunningSimulator) -> None:
    http = client(None)  # the system trust store does not know the simulator's CA
    try:
        with pytest.raises(IdpUnreachable, match="did not verify"):
            await http.request("GET", sim.metadata_url)
    finally:
        await http.close()


async def test_hanging_idp_is_idp_timeout_after_the_timeout(keys: SimKeys) -> None:
    http = client(keys.ca_file, timeout=0.4)
    try:
        async with serving(_hang, tls=server_ssl_context(keys)) as port:
            started = time.perf_counter()
            with pytest.raises(IdpTimeout):
                await http.request("GET", f"https://127.0.0.1:{port}/adfs/services/trust/mex")
            assert 0.35 < time.perf_counter() - started < 2
    finally:
        await http.close()


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage\n", b"-----BEGIN CERTIFICATE-----\nAAAA!!!\n-----END CERTIFICATE-----\n", None],
    ids=["empty", "garbage", "broken-pem", "missing"],
)
def test_unusable_ca_file_is_idp_unreachable(tmp_path: Path, content: bytes | None) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    with pytest.raises(IdpUnreachable, match="ca_file"):
        make_ssl_context(ca_file)
