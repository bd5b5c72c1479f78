"""The tenant's IdP IP whitelist, checked before a password leaves the bridge.

The product promise (help article, footnote *): password prompts only go to
IdP addresses the tenant had whitelisted.  The check is done on the addresses
the connection will actually use: :class:`WhitelistResolver` resolves the IdP
host, refuses unless every address is inside the whitelist, and hands exactly
those addresses to aiohttp, which connects to them without a second lookup
(so DNS rebinding cannot slip past) while TLS still verifies the host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.errors import IdpNotWhitelisted, IdpProtocolError, IdpUnreachable

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(text: str) -> IPAddress | None:
    """The address in ``text`` (brackets and zone ids tolerated), or None."""
    candidate = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def _normalise(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_whitelisted(address: IPAddress, whitelist: Sequence[IPNetwork]) -> bool:
    address = _normalise(address)
    return any(address.version == net.version and address in net for net in whitelist)


def suggested_entry(address: IPAddress) -> str:
    """The exact whitelist line an administrator would add for ``address``."""
    address = _normalise(address)
    return f"{address}/{address.max_prefixlen}"


def require_whitelisted(host: str, addresses: Sequence[IPAddress], whitelist: Sequence[IPNetwork], *,
                        refusing: str = "send credentials") -> None:
    """Raise :class:`IdpNotWhitelisted` unless every address is whitelisted (``refusing``: what the log says)."""
    if not addresses:
        raise IdpUnreachable(f"IdP host {host} did not resolve to any address",
                             cause=f"DNS: IdP host {host} resolved to no address")
    outside = [a for a in addresses if not is_whitelisted(a, whitelist)]
    if outside:
        lines = ", ".join(suggested_entry(a) for a in outside)
        log.warning(
            "refusing to %s: IdP host %s resolves to %s, not in the tenant's idp_whitelist; "
            "add to idp_whitelist: %s",
            refusing,
            host,
            ", ".join(str(a) for a in outside),
            lines,
        )
        raise IdpNotWhitelisted(f"IdP host {host} resolves to an address outside the whitelist; add: {lines}",
                                cause=_not_whitelisted_cause(host, outside))


# The addresses a recorded reason names (a host may resolve to many); the log line names them all.
_CAUSE_ADDRESSES = 4


def _not_whitelisted_cause(host: str, outside: Sequence[IPAddress]) -> str:
    """The audit trail's reason: the address(es) the host resolved to for this attempt, and the lines to add."""
    shown = outside[:_CAUSE_ADDRESSES]
    more = f" (+{len(outside) - len(shown)} more)" if len(outside) > len(shown) else ""
    addresses = ", ".join(str(_normalise(a)) for a in shown) + more
    lines = ", ".join(suggested_entry(a) for a in shown) + more
    where = addresses if parse_ip(host) is not None else f"IdP host {host} resolved to {addresses}:"
    return f"{where} not in idp_whitelist; add {lines} to idp_whitelist"


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        why = f"IdP host {host} does not resolve ({exc.strerror or exc})"
        raise IdpUnreachable(why, cause=f"DNS: {why}") from exc
    seen: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = parse_ip(str(sockaddr[0]))
        if address is not None and address not in seen:
            seen.append(address)
    return seen


class WhitelistResolver(AbstractResolver):
    """aiohttp resolver that only ever returns whitelisted addresses."""

    def __init__(self, whitelist: Sequence[IPNetwork]) -> None:
        self._whitelist = tuple(whitelist)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve_host(host, port)
        require_whitelisted(host, addresses, self._whitelist)
        results: list[ResolveResult] = []
        for address in addresses:
            fam = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": fam,
                    "proto": socket.IPPROTO_TCP,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        return None


def check_literal(host: str, whitelist: Sequence[IPNetwork]) -> None:
    """aiohttp bypasses the resolver for IP literals: check those here."""
    literal = parse_ip(host)
    if literal is not None:
        require_whitelisted(host, [literal], whitelist)




async def require_whitelisted_url(url: str, whitelist: Sequence[IPNetwork], *, refusing: str) -> None:
    """An https URL whose host resolves only to whitelisted addresses, checked without contacting it.

    For the browser sign-in: the user's browser, not the bridge, connects to the
    IdP's sign-in page, so no password of the bridge's travels there; the rule is
    still that the bridge only ever points at whitelisted IdP addresses.  The
    bridge's resolver may see other addresses than the phone's (split DNS): this
    is the administrator's promise checked as far as the bridge can see it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise IdpProtocolError(f"the IdP sign-in URL {url[:200]!r} is not a valid URL") from exc
    host = parts.hostname or ""
    if parts.scheme != "https" or not host:
        raise IdpProtocolError(f"refusing to {refusing}: the IdP sign-in URL {url[:200]!r} is not an https URL")
    require_whitelisted(host, await resolve_host(host, port), whitelist, refusing=refusing)
