"""The printer with ``printer.tls``: ipps and ipp on one port, and passwords only over TLS off loopback.

Real TLS over loopback with a CA made here.  A client "outside" is one bound to
127.0.0.2 while ``plain_http_from`` names 127.0.0.1/32 only.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from bridge.config import load_config
from bridge.errors import ConfigError
from printers.ipp import Attribute, GroupTag, IppMessage, ValueTag, decode
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.print_support import (
    ALICE,
    IPPTOOL,
    PrintBridge,
    PrintBridgeFactory,
    ipp_request,
    job_value,
    make_print_bridge,
    minimal_pdf,
)

__all__ = ["make_print_bridge"]

PDF = minimal_pdf(1)
OUTSIDE = "127.0.0.2"
ONLY_LOCALHOST = ["127.0.0.1/32"]
SUITES = Path("/usr/share/cups/ipptool")


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    other_key_file: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for 127.0.0.1 / localhost that it signed (ECDSA: quick to make)."""
    where = tmp_path_factory.mktemp("print-tls-pki")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("print test CA")).issuer_name(_name("print test CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(ca_file=where / "ca.pem", cert_file=where / "printer.pem", key_file=where / "printer.key",
                  other_key_file=where / "other.key")
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(_pem_key(key))
    pki.other_key_file.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    return pki


def client_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_file))


async def tls_bridge(factory: PrintBridgeFactory, pki: Pki, *, plain_http_from: list[str] | None = None,
                     listen: dict[str, Any] | None = None) -> PrintBridge:
    printer: dict[str, Any] = {"tls": {"cert": str(pki.cert_file), "key": str(pki.key_file)}}
    if plain_http_from is not None:
        printer["plain_http_from"] = plain_http_from
    return await factory(printer=printer, listen=listen)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    ipp: IppMessage | None
    text: str


async def post(bridge: PrintBridge, body: bytes, *, tls: ssl.SSLContext | None = None,
               auth: tuple[str, str] | None = None, source: str = "127.0.0.1", expect100: bool = False) -> Reply:
    """POST to /ipp/print over https (``tls``) or http, from ``source``."""
    headers = {"Content-Type": "application/ipp"}
    if auth is not None:
        KNOWN_SECRETS.add(auth[1])
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    scheme = "https" if tls is not None else "http"
    connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=tls if tls is not None else False)
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            f"{scheme}://127.0.0.1:{bridge.port}/ipp/print", data=body, headers=headers, expect100=expect100) as resp:
        raw = await resp.read()
        ipp = decode(raw) if resp.content_type == "application/ipp" else None
        return Reply(resp.status, dict(resp.headers), ipp, "" if ipp is not None else raw.decode("utf-8", "replace"))


def printer_values(msg: IppMessage | None, name: str) -> list[object]:
    assert msg is not None
    attr = msg.find(GroupTag.PRINTER, name)
    assert attr is not None, f"{name} missing"
    return [v.value for v in attr.values]


def print_job(uri: str = "ipp://127.0.0.1/ipp/print") -> bytes:
    return ipp_request(Op.PRINT_JOB, Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"),
                       data=PDF, printer_uri=uri)


GPA = ipp_request(Op.GET_PRINTER_ATTRIBUTES,
                  Attribute.of("requested-attributes", ValueTag.KEYWORD, "printer-uri-supported",
                               "uri-security-supported", "uri-authentication-supported", "printer-more-info"))


# --------------------------------------------------------------------------


async def test_ipps_lists_the_ipps_uri_with_tls(make_print_bridge: PrintBridgeFactory, pki: Pki) -> None:
    bridge = await tls_bridge(make_print_bridge, pki)
    reply = await post(bridge, GPA, tls=client_context(pki))
    assert reply.status == 200 and reply.ipp is not None and reply.ipp.code == IppStatus.OK
    base = f"127.0.0.1:{bridge.port}/ipp/print"
    # From loopback plain ipp is usable too: both, the secure one first, three parallel 1setOf.
    assert printer_values(reply.ipp, "printer-uri-supported") == [f"ipps://{base}", f"ipp://{base}"]
    assert printer_values(reply.ipp, "uri-security-supported") == ["tls", "none"]
    assert printer_values(reply.ipp, "uri-authentication-supported") == ["basic", "basic"]
    assert printer_values(reply.ipp, "printer-more-info") == [f"https://127.0.0.1:{bridge.port}/"]

    reply = await post(bridge, GPA)  # the same port, plain
    assert printer_values(reply.ipp, "printer-uri-supported") == [f"ipps://{base}", f"ipp://{base}"]
    assert printer_values(reply.ipp, "printer-more-info") == [f"http://127.0.0.1:{bridge.port}/"]


async def test_tls_is_1_2_or_later_with_alpn_http_1_1(make_print_bridge: PrintBridgeFactory, pki: Pki) -> None:
    bridge = await tls_bridge(make_print_bridge, pki)
    context = client_context(pki)
    context.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection("127.0.0.1", bridge.port, ssl=context)
    tls = writer.get_extra_info("ssl_object")
    assert tls.selected_alpn_protocol() == "http/1.1"
    assert tls.version() in ("TLSv1.2", "TLSv1.3")
    writer.close()
    tls12 = client_context(pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    _, writer = await asyncio.open_connection("127.0.0.1", bridge.port, ssl=tls12)
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
    writer.close()


async def test_print_job_over_ipps_is_delivered(make_print_bridge: PrintBridgeFactory, pki: Pki) -> None:
    bridge = await tls_bridge(make_print_bridge, pki, plain_http_from=ONLY_LOCALHOST)
    context = client_context(pki)
    reply = await post(bridge, print_job(), tls=context)  # no credentials over TLS: the usual Basic challenge
    assert reply.status == 401 and reply.headers.get("WWW-Authenticate", "").startswith("Basic ")
    reply = await post(bridge, print_job(f"ipps://127.0.0.1:{bridge.port}/ipp/print"), tls=context, auth=ALICE,
                       source=OUTSIDE, expect100=True)  # outside plain_http_from, but over TLS
    assert reply.status == 200 and reply.ipp is not None and reply.ipp.code == IppStatus.OK, reply
    assert str(job_value(reply.ipp, "job-uri")).startswith(f"ipps://127.0.0.1:{bridge.port}/ipp/print/")
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0] and bridge.delivered_bytes(manifest) == PDF
    assert bridge.trust_calls() == 1


async def test_plain_ipp_from_loopback_still_prints(make_print_bridge: PrintBridgeFactory, pki: Pki) -> None:
    bridge = await tls_bridge(make_print_bridge, pki)
    reply = await post(bridge, print_job(), auth=ALICE, expect100=True)
    assert reply.status == 200 and reply.ipp is not None and reply.ipp.code == IppStatus.OK, reply
    assert str(job_value(reply.ipp, "job-uri")).startswith("ipp://")
    reply = await post(bridge, print_job())  # and a loopback client is still challenged over plain HTTP
    assert reply.status == 401 and "WWW-Authenticate" in reply.headers
    (manifest,) = await bridge.wait_delivered(1)
    assert bridge.delivered_bytes(manifest) == PDF


@pytest.mark.parametrize("expect100", [False, True])
async def test_plain_from_outside_is_refused_before_the_idp(make_print_bridge: PrintBridgeFactory, pki: Pki,
                                                             expect100: bool) -> None:
    bridge = await tls_bridge(make_print_bridge, pki, plain_http_from=ONLY_LOCALHOST)
    ipps = f"ipps://127.0.0.1:{bridge.port}/ipp/print"
    # Credentials in clear: 426, not checked (the simulator sees no login), no challenge.
    reply = await post(bridge, print_job(), auth=ALICE, source=OUTSIDE, expect100=expect100)
    assert reply.status == 426, reply
    assert reply.headers["Upgrade"].startswith("TLS/1.2") and "WWW-Authenticate" not in reply.headers
    assert f"This printer takes passwords only over TLS: use {ipps}" in reply.text
    # No credentials: no Basic challenge over plain HTTP either (it would invite the password in clear).
    reply = await post(bridge, print_job(), source=OUTSIDE, expect100=expect100)
    assert reply.status == 426 and "WWW-Authenticate" not in reply.headers, reply
    reply = await post(bridge, ipp_request(Op.GET_JOBS), source=OUTSIDE, expect100=expect100)
    assert reply.status == 426 and "WWW-Authenticate" not in reply.headers, reply
    # What needs no credentials is answered, and names only the URI this client may use with a password.
    reply = await post(bridge, GPA, source=OUTSIDE)
    assert reply.status == 200 and reply.ipp is not None and reply.ipp.code == IppStatus.OK
    assert printer_values(reply.ipp, "printer-uri-supported") == [ipps]
    assert printer_values(reply.ipp, "uri-security-supported") == ["tls"]
    assert printer_values(reply.ipp, "uri-authentication-supported") == ["basic"]
    assert bridge.trust_calls() == 0
    assert bridge.manifests() == []
    assert [e for e in await bridge.store.audit_events() if e.kind.value == "login"] == []


async def test_forwarded_proto_counts_only_from_a_trusted_proxy(make_print_bridge: PrintBridgeFactory,
                                                                 pki: Pki) -> None:
    """Behind a TLS-terminating balancer (trusted, 127.0.0.1): X-Forwarded-Proto https is TLS, http is not."""
    bridge = await tls_bridge(make_print_bridge, pki, plain_http_from=[], listen={"trusted_proxies": ["127.0.0.1/32"]})
    body = print_job()
    KNOWN_SECRETS.add(ALICE[1])
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()

    async def send(proto: list[str], source: str = "127.0.0.1") -> int:
        headers: list[tuple[str, str]] = [("Content-Type", "application/ipp"), ("Authorization", f"Basic {token}"),
                                          ("X-Forwarded-For", "198.51.100.20")]
        headers += [("X-Forwarded-Proto", value) for value in proto]
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as http, http.post(
                f"http://127.0.0.1:{bridge.port}/ipp/print", data=body, headers=headers) as resp:
            return resp.status

    assert await send(["http"]) == 426
    assert await send(["https", "http"]) == 426  # a client's "https" before the balancer's own "http"
    assert await send(["https"], source=OUTSIDE) == 426  # not from the balancer: the header is the client's
    assert bridge.trust_calls() == 0
    assert await send(["https"]) == 200
    assert bridge.trust_calls() == 1


async def _closed_within(reader: asyncio.StreamReader, within: float) -> float:
    started = asyncio.get_running_loop().time()
    try:
        data = await asyncio.wait_for(reader.read(), within)
    except ConnectionResetError:
        data = b""
    assert data == b"" or data.startswith(b"HTTP/1.1 4")
    return asyncio.get_running_loop().time() - started


async def test_a_silent_connection_is_closed_after_the_deadline(make_print_bridge: PrintBridgeFactory,
                                                                 pki: Pki) -> None:
    bridge = await tls_bridge(make_print_bridge, pki, listen={"header_timeout_seconds": 0.5})
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", bridge.port)
    half_reader, half = await asyncio.open_connection("127.0.0.1", bridge.port)
    half.write(b"\x16\x03\x01")  # a handshake that never finishes: the same deadline
    waited = await asyncio.gather(_closed_within(silent_reader, 5), _closed_within(half_reader, 5))
    assert all(0.4 < t < 3 for t in waited), waited
    silent.close()
    half.close()
    reply = await post(bridge, GPA, tls=client_context(pki))
    assert reply.status == 200


async def test_a_garbage_handshake_is_closed_without_disturbing_others(make_print_bridge: PrintBridgeFactory,
                                                                       pki: Pki) -> None:
    bridge = await tls_bridge(make_print_bridge, pki)
    context = client_context(pki)

    async def garbage() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(b"\x16\x03\x01\x00\x40" + os.urandom(64))
        try:
            return await _closed_within(reader, 5)
        finally:
            writer.close()

    results = await asyncio.gather(*(garbage() for _ in range(5)), *(post(bridge, GPA, tls=context) for _ in range(3)),
                                   post(bridge, GPA), post(bridge, print_job(), tls=context, auth=ALICE))
    assert all(isinstance(t, float) and t < 1 for t in results[:5]), results[:5]
    assert all(isinstance(r, Reply) and r.status == 200 for r in results[5:]), results[5:]
    # A client that does not trust the certificate fails its handshake; the printer carries on.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await post(bridge, GPA, tls=ssl.create_default_context())
    assert (await post(bridge, GPA, tls=context)).status == 200
    # OPTIONS that is not the RFC 2817 upgrade: refused and closed, not handed to the application.
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 ")
    writer.close()


def test_tls_files_are_checked_when_the_configuration_loads(tmp_path: Path, pki: Pki) -> None:
    conf = tmp_path / "bridge.yaml"
    (tmp_path / "tenants").mkdir()
    base = (f"state_dir: {tmp_path / 'state'}\nsecrets: {{hmac_key: {{file: {tmp_path / 'k'}, generate: true}}}}\n"
            f"printer:\n  delivery: {{outbox_dir: {tmp_path / 'out'}}}\n")

    def load(extra: str) -> str:
        conf.write_text(base + extra)
        with pytest.raises(ConfigError) as caught:
            load_config(conf)
        return str(caught.value)

    assert "printer.tls.key" in load(f"  tls: {{cert: {pki.cert_file}, key: {pki.other_key_file}}}\n")
    assert "is not the key of the certificate" in load(f"  tls: {{cert: {pki.cert_file}, key: {pki.other_key_file}}}\n")
    message = load(f"  tls: {{cert: {tmp_path / 'missing.pem'}, key: {pki.key_file}}}\n")
    assert "printer.tls.cert" in message and "file not found" in message and ":5" in message
    assert "no readable PEM certificate" in load(f"  tls: {{cert: {pki.key_file}, key: {pki.key_file}}}\n")
    assert "printer.tls.key" in load(f"  tls: {{cert: {pki.cert_file}}}\n")
    assert "has host bits set" in load(f"  tls: {{cert: {pki.cert_file}, key: {pki.key_file}}}\n"
                                       "  plain_http_from: [10.1.2.3/8]\n")
    conf.write_text(base + f"  tls: {{cert: {pki.cert_file}, key: {pki.key_file}}}\n")
    printer = load_config(conf).printer
    assert printer is not None and printer.tls is not None and printer.tls.cert == pki.cert_file
    assert [str(n) for n in printer.plain_http_from or ()] == ["127.0.0.0/8", "::1/128"]  # the default with tls
    conf.write_text(base)
    printer = load_config(conf).printer
    assert printer is not None and printer.tls is None and printer.plain_http_from is None  # as before TLS


# --------------------------------------------------------------------------
# CUPS's own client.

ipptool_only = pytest.mark.skipif(IPPTOOL is None or not SUITES.is_dir(), reason="ipptool is not installed")


async def ipptool(home: Path, *argv: str, within: float = 60) -> tuple[int, str]:
    """ipptool with a HOME of its own, so nothing of the real ~/.cups (client.conf, credentials) is read.

    CUPS 2.4's ipptool does not verify the server's certificate at all (see test_print_conformance.py).
    A run that overstays ``within`` is killed, not left behind.
    """
    assert IPPTOOL is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUPS_")}
    env["HOME"] = str(home)
    proc = await asyncio.create_subprocess_exec(IPPTOOL, *argv, cwd=home, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode("utf-8", "replace")


@ipptool_only
async def test_ipptool_over_ipps(make_print_bridge: PrintBridgeFactory, pki: Pki, tmp_path: Path) -> None:
    bridge = await tls_bridge(make_print_bridge, pki)
    (tmp_path / "home").mkdir()
    code, output = await ipptool(tmp_path / "home", "-tv", f"ipps://127.0.0.1:{bridge.port}/ipp/print",
                                 "get-printer-attributes.test")
    assert code == 0 and "[PASS]" in output, output[-3000:]
    assert f"ipps://127.0.0.1:{bridge.port}/ipp/print" in output


@ipptool_only
async def test_ipptool_with_a_request_timeout_prints_over_ipps(make_print_bridge: PrintBridgeFactory, pki: Pki,
                                                               tmp_path: Path) -> None:
    """libcups with a timeout (ipptool -T, as queues run) fails on TLS 1.3 session tickets: the printer sends none."""
    bridge = await tls_bridge(make_print_bridge, pki)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(SUITES / "print-job.test", home)
    (home / "testfile.pdf").write_bytes(PDF)
    uri = bridge.uri_for(*ALICE).replace("ipp://", "ipps://", 1)
    code, output = await ipptool(home, "-T", "10", "-tv", "-f", "testfile.pdf", uri, "print-job.test", within=40)
    assert code == 0 and "[PASS]" in output, output[-3000:]
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]


@ipptool_only
async def test_ipptool_upgrades_a_plain_ipp_uri_to_tls(make_print_bridge: PrintBridgeFactory, pki: Pki,
                                                      tmp_path: Path) -> None:
    """libcups answers 426 by asking for TLS on the same port (RFC 2817); the password then goes over TLS."""
    bridge = await tls_bridge(make_print_bridge, pki, plain_http_from=[])  # nobody may send a password in clear
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(SUITES / "print-job.test", home)
    (home / "testfile.pdf").write_bytes(PDF)
    code, output = await ipptool(home, "-tv", "-f", "testfile.pdf", bridge.uri_for(*ALICE), "print-job.test")
    assert code == 0 and "[PASS]" in output, output[-3000:]
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0] and bridge.delivered_bytes(manifest) == PDF
    assert bridge.trust_calls() == 1
