"""Network steps toward an IdP host: name resolution, whitelist, TCP connect, TLS handshake.

No byte goes to an address outside the tenant's ``idp_whitelist``: the TCP and
TLS steps only contact addresses the whitelist step let through, and nothing
is sent over them but a TLS handshake.  The TLS step uses the same context as
logins (:func:`bridge.idp.http.make_ssl_context`), so a chain that verifies
here verifies for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from yarl import URL

from bridge.errors import BridgeError
from bridge.idp.allowlist import IPAddress, IPNetwork, is_whitelisted, resolve_host, suggested_entry
from bridge.idp.http import make_ssl_context
from bridge.toolkit.certs import days_left, expiry_status
from bridge.toolkit.report import Status, Step

log = logging.getLogger(__name__)

X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """One IdP host the tenant's URLs name."""

    host: str
    port: int

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def targets_from_urls(urls: Sequence[str]) -> tuple[Target, ...]:
    """Distinct (host, port) pairs of https URLs, in the order given."""
    seen: list[Target] = []
    for raw in urls:
        url = URL(raw)
        if not url.host:
            continue
        target = Target(host=url.raw_host or url.host, port=url.port or 443)
        if target not in seen:
            seen.append(target)
    return tuple(seen)


async def resolve_step(target: Target) -> tuple[Step, list[IPAddress]]:
    name = f"resolve {target.host}"
    started = time.perf_counter()
    try:
        addresses = await resolve_host(target.host, target.port)
    except BridgeError as exc:
        return Step(name=name, status=Status.FAIL, summary=exc.detail or exc.code,
                    hint="check the host name in the tenant file and the bridge's DNS servers (/etc/resolv.conf)",
                    seconds=time.perf_counter() - started, code="idp_unreachable"), []
    elapsed = time.perf_counter() - started
    if not addresses:
        return Step(name=name, status=Status.FAIL, summary="no address", seconds=elapsed,
                    hint="the name has no A/AAAA record; check the host name", code="idp_unreachable"), []
    return Step(name=name, status=Status.PASS, summary=", ".join(str(a) for a in addresses),
                seconds=elapsed), addresses


def whitelist_step(target: Target, addresses: Sequence[IPAddress],
                   whitelist: Sequence[IPNetwork]) -> tuple[Step, list[IPAddress]]:
    """Pure: which addresses may be contacted; a FAIL names the exact lines to add."""
    name = f"whitelist {target.host}"
    inside = [a for a in addresses if is_whitelisted(a, whitelist)]
    outside = [a for a in addresses if not is_whitelisted(a, whitelist)]
    shown = ", ".join(str(n) for n in whitelist)
    if outside:
        lines = "\n".join(f"- {suggested_entry(a)}" for a in outside)
        return Step(
            name=name, status=Status.FAIL,
            summary=f"{', '.join(str(a) for a in outside)} not in idp_whitelist ({shown}); "
                    "no password is sent to this host",
            hint=f"add to idp_whitelist in the tenant file (if this is really the IdP's address):\n{lines}",
            code="idp_not_whitelisted",
        ), inside
    return Step(name=name, status=Status.PASS,
                summary=f"every address is inside idp_whitelist ({shown})"), inside


async def tcp_step(target: Target, address: IPAddress, limit_seconds: float) -> Step:
    name = f"tcp {address}:{target.port}"
    started = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(str(address), target.port), limit_seconds)
    except TimeoutError:
        return Step(name=name, status=Status.FAIL, summary=f"no answer within {limit_seconds:g} s",
                    hint="a firewall drops the traffic: open outbound TCP from the bridge to this address and port",
                    seconds=time.perf_counter() - started, code="idp_timeout")
    except OSError as exc:
        return Step(name=name, status=Status.FAIL, summary=f"cannot connect: {exc.strerror or exc}",
                    hint="nothing listens there or a firewall refuses: check the IdP is running, the port, "
                         "and outbound firewall rules",
                    seconds=time.perf_counter() - started, code="idp_unreachable")
    elapsed = time.perf_counter() - started
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    status = Status.PASS if elapsed < 1.0 else Status.WARN
    return Step(name=name, status=status, summary=f"connected in {elapsed * 1000:.0f} ms",
                hint="" if status is Status.PASS else "slow connect: expect slow sign-ins", seconds=elapsed)


async def _peer_certificate(address: IPAddress, port: int, context: ssl.SSLContext, server_hostname: str,
                            limit_seconds: float) -> tuple[x509.Certificate | None, str]:
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(str(address), port, ssl=context, server_hostname=server_hostname,
                                ssl_handshake_timeout=limit_seconds), limit_seconds)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        version = ssl_object.version() if ssl_object is not None else ""
        return (x509.load_der_x509_certificate(der) if der else None), version or ""
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _names(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return ", ".join(str(c.value) for c in cns) or "(no names)"
    dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(n) for n in san.get_values_for_type(x509.IPAddress)]
    return ", ".join(dns + ips) or "(no names)"


def _issuer(cert: x509.Certificate) -> str:
    cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.issuer.rfc4514_string()


async def tls_step(target: Target, address: IPAddress, ca_file: Path | None,
                   limit_seconds: float) -> tuple[Step, datetime | None]:
    """Handshake as a login would: chain, host name, days to expiry."""
    name = f"tls {target.host}"
    anchors = f"ca_file {ca_file}" if ca_file is not None else "the system trust store"
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        context = make_ssl_context(ca_file)
    except BridgeError as exc:  # the ca_file changed since the configuration was checked
        return Step(name=name, status=Status.FAIL, summary=exc.detail, code=exc.code,
                    hint="ca_file must hold the PEM certificate(s) of the CA that issued the IdP's TLS "
                         "certificate; run loginbridge config check"), None
    try:
        cert, version = await _peer_certificate(address, target.port, context, target.host, limit_seconds)
    except ssl.SSLCertVerificationError as exc:
        elapsed = time.perf_counter() - started
        seen = await _unverified_certificate(address, target, limit_seconds)
        return _verification_failure(name, exc, seen, anchors, target, now, elapsed), (
            seen.not_valid_after_utc if seen is not None else None)
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        return Step(name=name, status=Status.FAIL, summary=f"handshake failed: {exc}",
                    hint="the port does not speak TLS, or an inspecting proxy interferes: check adfs_url / the "
                         "metadata URL (https, right port)",
                    seconds=time.perf_counter() - started, code="idp_unreachable"), None
    elapsed = time.perf_counter() - started
    if cert is None:
        return Step(name=name, status=Status.FAIL, summary="no certificate received", seconds=elapsed,
                    code="idp_unreachable"), None
    not_after = cert.not_valid_after_utc
    days = days_left(not_after, now)
    summary = (f"{version}, chain verifies with {anchors}, host name matches; issued by {_issuer(cert)}; "
               f"expires {not_after:%Y-%m-%d} ({days} days)")
    status = expiry_status(not_after, now)
    hint = "" if status is Status.PASS else "the IdP's TLS certificate expires soon: tell the IdP's administrator"
    return Step(name=name, status=status, summary=summary, hint=hint, seconds=elapsed), not_after


async def _unverified_certificate(address: IPAddress, target: Target, limit_seconds: float) -> x509.Certificate | None:
    """The certificate offered, read without verifying it, only to explain a verification failure."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        cert, _ = await _peer_certificate(address, target.port, context, target.host, limit_seconds)
    except (ssl.SSLError, OSError, TimeoutError):
        return None
    return cert


def _verification_failure(name: str, exc: ssl.SSLCertVerificationError, seen: x509.Certificate | None,
                          anchors: str, target: Target, now: datetime, elapsed: float) -> Step:
    reason = exc.verify_message or str(exc)
    about = ""
    if seen is not None:
        about = (f"; the certificate names {_names(seen)}, issued by {_issuer(seen)}, "
                 f"expires {seen.not_valid_after_utc:%Y-%m-%d}")
    if exc.verify_code in (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH):
        hint = f"the certificate is not for {target.host}: use a host name it names in the tenant's URL"
    elif exc.verify_code == X509_V_ERR_CERT_HAS_EXPIRED:
        hint = "the IdP's TLS certificate has expired: the IdP's administrator must renew it"
    else:
        hint = (f"the chain does not verify with {anchors}: set ca_file in the tenant's section to the PEM "
                "bundle of the CA that issued the IdP's certificate")
    return Step(name=name, status=Status.FAIL, summary=f"certificate not trusted: {reason}{about}", hint=hint,
                seconds=elapsed, code="idp_unreachable")
