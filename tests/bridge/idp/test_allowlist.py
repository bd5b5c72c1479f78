"""The IdP whitelist: every resolved address must be inside, and the connection uses exactly those."""

from __future__ import annotations

import ipaddress
import logging
import socket

import pytest

from bridge.errors import IdpNotWhitelisted, IdpUnreachable
from bridge.idp.allowlist import (
    WhitelistResolver,
    check_literal,
    is_whitelisted,
    parse_ip,
    require_whitelisted,
    resolve_host,
    suggested_entry,
)

NETS = (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize(
    ("text", "inside"),
    [
        ("203.0.113.7", True),
        ("203.0.114.7", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("::ffff:203.0.113.7", True),  # v4-mapped v6 is judged as the v4 address
        ("[2001:db8::5]", True),
    ],
)
def test_membership(text: str, inside: bool) -> None:
    address = parse_ip(text)
    assert address is not None
    assert is_whitelisted(address, NETS) is inside


def test_not_an_address() -> None:
    assert parse_ip("adfs.example.com") is None


def test_suggested_entry_is_a_host_route() -> None:
    assert suggested_entry(ipaddress.ip_address("198.51.100.4")) == "198.51.100.4/32"
    assert suggested_entry(ipaddress.ip_address("2001:db8::4")) == "2001:db8::4/128"
    assert suggested_entry(ipaddress.ip_address("::ffff:198.51.100.4")) == "198.51.100.4/32"


def test_one_address_outside_refuses_all(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    addresses = [ipaddress.ip_address("203.0.113.7"), ipaddress.ip_address("198.51.100.9")]
    with pytest.raises(IdpNotWhitelisted) as info:
        require_whitelisted("adfs.example.com", addresses, NETS)
    assert "198.51.100.9/32" in info.value.detail
    assert "198.51.100.9/32" in caplog.text  # the log names the line the administrator must add


def test_no_address_is_unreachable() -> None:
    with pytest.raises(IdpUnreachable):
        require_whitelisted("adfs.example.com", [], NETS)


def test_ip_literal_checked_without_resolver() -> None:
    check_literal("203.0.113.7", NETS)
    check_literal("adfs.example.com", NETS)  # names go through the resolver instead
    with pytest.raises(IdpNotWhitelisted):
        check_literal("192.0.2.1", NETS)


async def test_resolver_returns_only_checked_addresses() -> None:
    resolver = WhitelistResolver([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")])
    results = await resolver.resolve("localhost", 443, socket.AF_UNSPEC)
    assert results
    for result in results:
        assert result["hostname"] == "localhost"  # TLS still verifies the name
        assert is_whitelisted(ipaddress.ip_address(result["host"]), resolver._whitelist)
        assert result["flags"] & socket.AI_NUMERICHOST  # aiohttp connects to it without another lookup


async def test_resolver_refuses_before_connecting() -> None:
    resolver = WhitelistResolver([ipaddress.ip_network("192.0.2.0/24")])
    with pytest.raises(IdpNotWhitelisted):
        await resolver.resolve("localhost", 443, socket.AF_UNSPEC)


async def test_unresolvable_host() -> None:
    with pytest.raises(IdpUnreachable):
        await resolve_host("no-such-host.invalid", 443)
