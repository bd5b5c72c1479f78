"""The client's address behind a load balancer: ``X-Forwarded-For`` from trusted proxies only.

Without ``listen.trusted_proxies`` the client is the TCP peer, whatever the
headers say.  With it, and only when the TCP peer is one of those proxies, the
``X-Forwarded-For`` chain is read from the right: every proxy appends the
address it received the request from, so the addresses on the right were
written by proxies we trust.  Addresses that are themselves trusted proxies are
skipped; the first other address is the client.  When every address is a
trusted proxy, the leftmost one is.  Nothing to the left of the client is ever
read: it is whatever the client chose to send.

The header's lines count as one list in their order (HAProxy's
``option forwardfor`` adds its own line after one a client sent).  An entry
that is not a plain IP address where the walk has to read it (``unknown``, a
port, an empty item) makes the whole header count for nothing: the peer stays
the client.  ``Forwarded`` (RFC 7239) is not read.

:func:`forwarded_middleware` applies this once per request and hands on a
clone whose ``remote`` is the client, so every ``request.remote`` after it
(throttles, spray detection, device networks, the audit, the logs) sees the
client.  An ``expect_handler`` runs before middlewares: it calls
:func:`client_address` itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from bridge.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> IPAddress | None:
    """A plain IPv4 or IPv6 address (IPv4-mapped IPv6 as IPv4); None for anything else."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def forwarded_client(peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[IPNetwork]) -> str | None:
    """The client's address: ``peer`` unless it is a trusted proxy with a readable forwarded chain.

    ``forwarded_for`` is the ``X-Forwarded-For`` header's lines in order.
    """
    if not proxies or not forwarded_for or peer is None:
        return peer
    peer_ip = _address(peer)
    if peer_ip is None or not _trusted(peer_ip, proxies):
        return peer
    client: IPAddress | None = None
    for item in reversed(",".join(forwarded_for).split(",")):
        client = _address(item)
        if client is None:
            return peer  # malformed where we must read it: the header counts for nothing
        if not _trusted(client, proxies):
            break
    # The first untrusted address from the right; when all are trusted proxies, the leftmost one.
    return str(client)


def client_address(request: web.BaseRequest, proxies: Sequence[IPNetwork]) -> str | None:
    """:func:`forwarded_client` for this request's peer and headers."""
    return forwarded_client(request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, []), proxies)


def forwarded_middleware(proxies: Sequence[IPNetwork]) -> Middleware:
    """A middleware giving the rest of the application the client's address as ``request.remote``."""
    trusted = tuple(proxies)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = client_address(request, trusted)
        if client is not None and client != request.remote:
            request = request.clone(remote=client)
        return await handler(request)

    return middleware
