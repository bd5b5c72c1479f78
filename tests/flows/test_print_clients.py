"""Real IPP clients print through the bridge: pyipp's client, and a real CUPS with driverless queues.

CUPS prints over plain ``ipp://`` from loopback, and over ``ipps://`` to a bridge that takes
no password in clear: with credentials in the queue's URI, and through a personal printer URL
with none.  See :func:`test_cups_prints_over_ipps_trusting_only_the_test_ca` for how cupsd's
ipps backend is made to check the printer's certificate against the test CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyipp import IPP
from pyipp.enums import IppOperation

from bridge.state import printlinks
from printers.ipp import Attribute, GroupTag, ValueTag, decode
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.print_support import (
    ALICE,
    PrintBridge,
    PrintBridgeFactory,
    ipp_request,
    make_print_bridge,
    minimal_pdf,
)
from tests.flows.test_print_tls import Pki, pki, tls_bridge

__all__ = ["make_print_bridge", "pki"]

CUPSD = shutil.which("cupsd") or ("/usr/sbin/cupsd" if Path("/usr/sbin/cupsd").exists() else None)


async def test_pyipp_print_job_delivers_the_same_bytes(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    pdf = minimal_pdf(3, text="pyipp")
    async with IPP(host="127.0.0.1", port=bridge.port, base_path="/ipp/print", username=ALICE[0],
                   password=ALICE[1]) as ipp:
        response = await ipp.execute(IppOperation.PRINT_JOB, {
            "operation-attributes-tag": {
                "requesting-user-name": "pyipp",
                "job-name": "pyipp test",
                "document-format": "application/pdf",
            },
            "data": pdf,
        })
    assert response["status-code"] == 0, response
    assert response["jobs"][0]["job-id"] > 0
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]
    assert bridge.delivered_bytes(manifest) == pdf


async def _run(*argv: str, env: dict[str, str], within: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, f"{argv[0]} failed: {text}"
    return text


class Cups:
    """cupsd with its own configuration, spool and logs in a temporary directory.

    It listens on a Unix socket inside that directory, never on a TCP port: a
    port picked free and released can be taken by anything before cupsd binds
    it, and the start-up probe would then succeed against the wrong server.
    """

    def __init__(self, root: Path, *, site_ca: Path | None = None) -> None:
        self.root = root
        self.site_ca = site_ca
        self.socket = root / "cupsd.sock"
        self.proc: asyncio.subprocess.Process | None = None
        self.env = {**os.environ, "CUPS_SERVER": str(self.socket), "CUPS_SERVERROOT": str(root / "etc")}

    def configure(self) -> None:
        for name in ("etc", "etc/ppd", "spool", "spool/tmp", "cache", "log", "state", "run"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        (self.root / "etc" / "cupsd.conf").write_text(
            f"Listen {self.socket}\nLogLevel debug\nMaxLogSize 0\nBrowsing No\nDefaultAuthType None\n"
            "WebInterface No\n<Location />\n  Order allow,deny\n  Allow all\n</Location>\n"
            "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
        )
        (self.root / "etc" / "cups-files.conf").write_text(
            f"ServerRoot {self.root / 'etc'}\nRequestRoot {self.root / 'spool'}\nTempDir {self.root / 'spool/tmp'}\n"
            f"CacheDir {self.root / 'cache'}\nStateDir {self.root / 'state'}\nErrorLog {self.root / 'log/error_log'}\n"
            f"AccessLog {self.root / 'log/access_log'}\nPageLog {self.root / 'log/page_log'}\n"
            "ServerBin /usr/lib/cups\nDataDir /usr/share/cups\nFileDevice No\n"
        )
        if self.site_ca is not None:
            # Read by the backends: cupsd gives them CUPS_SERVERROOT=ServerRoot, and libcups reads
            # $CUPS_SERVERROOT/client.conf (cups/usersys.c).  See trust_site_ca() for what each line does.
            (self.root / "etc" / "client.conf").write_text(
                "TrustOnFirstUse No\nValidateCerts Yes\nAllowAnyRoot No\nAllowExpiredCerts No\n")

    async def start(self) -> None:
        assert CUPSD is not None
        self.configure()
        etc = self.root / "etc"
        self.proc = await asyncio.create_subprocess_exec(
            CUPSD, "-f", "-c", str(etc / "cupsd.conf"), "-s", str(etc / "cups-files.conf"), env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            if self.proc.returncode is not None:
                break
            try:
                _, writer = await asyncio.open_unix_connection(str(self.socket))
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"cupsd did not start: {self.log()}")

    def trust_site_ca(self) -> Path:
        """Put the site CA where the ipps backend looks, once cupsd has cleaned its TempDir at start-up.

        The backend runs as user lp (it is not mode 0700) with HOME=TempDir (cupsd's default for
        children, scheduler/env.c; cupsd.conf cannot set HOME), here RequestRoot/tmp, which cupsd
        empties when it starts (scheduler/main.c).  For a non-root user libcups keeps
        certificates in $HOME/.cups/ssl (cups/tls-gnutls.c, http_gnutls_default_path); root's
        would be the compiled-in /etc/cups/ssl, which a test must not touch.
        """
        assert self.site_ca is not None
        ssl_dir = self.root / "spool" / "tmp" / ".cups" / "ssl"
        ssl_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.site_ca, ssl_dir / "site.crt")
        for path in (ssl_dir.parent, ssl_dir, ssl_dir / "site.crt"):
            shutil.chown(path, "lp", "lp")
        return ssl_dir

    async def printer_attributes(self, queue: str, *names: str) -> dict[str, object]:
        """Get-Printer-Attributes for one of this cupsd's queues (first values), over its socket."""
        return {name: values[0] for name, values in (await self.printer_values(queue, *names)).items()}

    async def printer_values(self, queue: str, *names: str) -> dict[str, list[object]]:
        """Get-Printer-Attributes for one of this cupsd's queues (all values), over its socket."""
        body = ipp_request(int(IppOperation.GET_PRINTER_ATTRIBUTES),
                           Attribute.of("requested-attributes", ValueTag.KEYWORD, *names),
                           printer_uri=f"ipp://localhost/printers/{queue}")
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket))) as http, \
                http.post(f"http://localhost/printers/{queue}", data=body,
                          headers={"Content-Type": "application/ipp"}) as resp:
            msg = decode(await resp.read())
        found = {group.get(name) for group in msg.groups_of(GroupTag.PRINTER) for name in names}
        return {attr.name: [v.value for v in attr.values] for attr in found if attr is not None}

    async def wait_driverless_ready(self, queue: str, within: float = 60) -> None:
        """Wait until cupsd has built the queue's IPP Everywhere PPD and its filters.

        CUPS 2.4 answers ``lpadmin -m everywhere`` at once and builds the PPD in
        a background thread (querying the printer); until then the queue is a
        placeholder whose filters assume PostScript.  A job sent in that window
        is aborted ("Unable to convert file") or runs filters against a PPD that
        is not written yet ("Filter failed").  cupsd itself recognises a ready
        driverless queue by "IPP Everywhere" in printer-make-and-model, set
        from the PPD's NickName; CUPS 2.5 delays the lpadmin answer instead.
        """
        deadline = asyncio.get_running_loop().time() + within
        seen: dict[str, object] = {}
        while asyncio.get_running_loop().time() < deadline:
            seen = await self.printer_attributes(queue, "printer-make-and-model", "printer-state",
                                                 "printer-is-accepting-jobs")
            model = seen.get("printer-make-and-model")
            if (isinstance(model, str) and "IPP Everywhere" in model and seen.get("printer-state") == 3
                    and seen.get("printer-is-accepting-jobs") is True):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"queue {queue} not ready after {within} s: {seen}\n{self.log()}")

    def log(self) -> str:
        """The error_log lines that explain a job's fate (the debug log is too long to show whole)."""
        path = self.root / "log" / "error_log"
        if not path.exists():
            return "(no error_log)"
        keep = re.compile(r"^[EWI] |\] (PID \d+|Started|STATE:|Unable|Aborting|Generating|.*failed|Credentials)")
        lines = [line for line in path.read_text(errors="replace").splitlines() if keep.search(line)]
        return "\n".join(lines[-60:])

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)


@pytest.mark.skipif(CUPSD is None, reason="cupsd is not installed (Debian 'cups'; .ci/run installs it)")
async def test_cups_driverless_queue_prints_as_the_authenticated_user(make_print_bridge: PrintBridgeFactory) -> None:
    bridge: PrintBridge = await make_print_bridge()
    # cupsd runs filters and backends as user lp: pytest's tmp_path (mode 0700) is out of its reach.
    cups = Cups(Path(tempfile.mkdtemp(prefix="loginbridge-cups-")))
    await cups.start()
    try:
        device_uri = bridge.uri_for(*ALICE)
        await _run("lpadmin", "-h", str(cups.socket), "-p", "bridge", "-E", "-v", device_uri,
                   "-m", "everywhere", env=cups.env)
        await cups.wait_driverless_ready("bridge")
        document = cups.root / "letter.pdf"
        pdf = minimal_pdf(1, text="through CUPS")
        document.write_bytes(pdf)
        await _run("lp", "-h", str(cups.socket), "-d", "bridge", "-t", "cups test", str(document), env=cups.env)
        try:
            (manifest,) = await bridge.wait_delivered(1, within=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cups.log()}") from exc
        assert manifest["user_email"] == ALICE[0]
        assert manifest["document_format"] == "application/pdf"
        delivered = bridge.delivered_bytes(manifest)
        # Rewritten by pdftopdf: the job took the driverless queue's filter chain, not a placeholder's.
        assert delivered.startswith(b"%PDF-") and delivered != pdf
        assert bridge.trust_calls() == 1
    finally:
        await cups.stop()
        shutil.rmtree(cups.root, ignore_errors=True)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def other_ca_chain(where: Path) -> tuple[Path, Path]:
    """A CA that is not the test CA, and a certificate it signed for localhost and 127.0.0.1: (chain, key)."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("another CA")).issuer_name(_name("another CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    sans = [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain, key_file = where / "other-chain.pem", where / "other.key"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return chain, key_file


@dataclasses.dataclass
class Impostor:
    """A TLS server on loopback that completes handshakes and records whatever is sent after them."""

    server: asyncio.Server
    handshakes: int = 0
    received: bytearray = dataclasses.field(default_factory=bytearray)

    @classmethod
    async def start(cls, chain: Path, key: Path) -> Impostor:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(chain), str(key))
        impostor: Impostor

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            impostor.handshakes += 1
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                while data := await asyncio.wait_for(reader.read(65536), 30):
                    impostor.received += data
            writer.close()

        impostor = cls(server=await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context))
        return impostor

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 5)


async def wait_reason(cups: Cups, queue: str, reason: str, within: float = 30) -> list[object]:
    deadline = asyncio.get_running_loop().time() + within
    reasons: list[object] = []
    while asyncio.get_running_loop().time() < deadline:
        reasons = (await cups.printer_values(queue, "printer-state-reasons")).get("printer-state-reasons", [])
        if reason in reasons:
            return reasons
        await asyncio.sleep(0.05)
    raise AssertionError(f"{queue}: no {reason} after {within} s: {reasons}\n{cups.log()}")


@pytest.mark.skipif(CUPSD is None, reason="cupsd is not installed (Debian 'cups'; .ci/run installs it)")
async def test_cups_prints_over_ipps_trusting_only_the_test_ca(make_print_bridge: PrintBridgeFactory, pki: Pki,
                                                                tmp_path: Path) -> None:
    """cupsd prints over ipps to a bridge that takes no password in clear, as alice and through her personal URL.

    How cupsd's ipps backend (CUPS 2.4.2, libcups with GnuTLS) judges a printer's certificate:
    the TLS handshake itself accepts any certificate (cups/tls-gnutls.c, ``_httpTLSStart``: no
    trust store, no ``gnutls_certificate_verify_peers``); then backend/ipp.c calls
    ``httpCredentialsGetTrust(credentials, host)`` and, unless the answer is OK (or "renewed"),
    sets ``cups-pki-invalid`` (``-changed``/``-expired``/``-unknown``) and stops the queue before
    sending any request; on OK with nothing saved it saves the chain as ``<host>.crt``, which
    later connections must then match.  client.conf's defaults (cups/usersys.c) are
    TrustOnFirstUse Yes, AllowAnyRoot Yes, ValidateCerts No: any certificate is accepted the
    first time and pinned.  Here client.conf says TrustOnFirstUse No, ValidateCerts Yes,
    AllowAnyRoot No, AllowExpiredCerts No, and ``site.crt`` in the backend's ``~/.cups/ssl`` is
    the test CA: a printer with no saved certificate passes only if its leaf is valid for the
    URI's host and the rest of the chain it sends is byte for byte ``site.crt``.  So the bridge
    serves its certificate followed by the CA's, and a printer whose chain ends in another CA
    is refused before any byte (or password) is sent to it.  libcups compares bytes and checks
    no signature: a certificate from another CA followed by a copy of the (public) test CA
    certificate passes; the test shows that too.  This is as much as cupsd 2.4 can verify.
    """
    chain = tmp_path / "printer-chain.pem"
    chain.write_bytes(pki.cert_file.read_bytes() + pki.ca_file.read_bytes())
    bridge = await tls_bridge(make_print_bridge, dataclasses.replace(pki, cert_file=chain), plain_http_from=[])
    _, token = await printlinks.create_link(bridge.store.database, tenant_id="example", email=ALICE[0], label="cups",
                                            created_by="test", lifetime=timedelta(days=1))
    KNOWN_SECRETS.add(token)
    personal = printlinks.queue_url(bridge.config, token, port=bridge.port)
    assert personal == f"ipps://127.0.0.1:{bridge.port}/ipp/print/u/{token}"
    with_password = bridge.uri_for(*ALICE)
    assert with_password.startswith("ipp://") and with_password.endswith(f"@127.0.0.1:{bridge.port}/ipp/print")
    with_password = "ipps://" + with_password.removeprefix("ipp://")
    other_chain, other_key = other_ca_chain(tmp_path)
    impostor = await Impostor.start(other_chain, other_key)
    to_impostor = with_password.replace(f"@127.0.0.1:{bridge.port}/", f"@localhost:{impostor.port}/")
    forged_chain = tmp_path / "forged-chain.pem"  # the other CA's leaf, then the test CA's certificate
    leaf = other_chain.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    forged_chain.write_text(leaf + pki.ca_file.read_text())
    forger = await Impostor.start(forged_chain, other_key)

    cups = Cups(Path(tempfile.mkdtemp(prefix="loginbridge-cups-")), site_ca=pki.ca_file)
    await cups.start()
    try:
        ssl_dir = cups.trust_site_ca()
        document = cups.root / "letter.pdf"
        pdf = minimal_pdf(1, text="through CUPS over TLS")
        document.write_bytes(pdf)
        sock = str(cups.socket)

        # A printer whose certificate another CA signed: the backend stops before sending alice's password.
        await _run("lpadmin", "-h", sock, "-p", "impostor", "-E", "-v", to_impostor, env=cups.env)
        await _run("lp", "-h", sock, "-d", "impostor", "-t", "to the impostor", str(document), env=cups.env)
        await wait_reason(cups, "impostor", "cups-pki-invalid")
        assert impostor.handshakes >= 1 and bytes(impostor.received) == b""
        # The same certificate followed by the test CA's passes (no credentials in this URI): a limit of CUPS 2.4.
        await _run("lpadmin", "-h", sock, "-p", "forger", "-E", "-v", f"ipps://localhost:{forger.port}/ipp/print",
                   env=cups.env)
        await _run("lp", "-h", sock, "-d", "forger", "-t", "to the forger", str(document), env=cups.env)
        deadline = asyncio.get_running_loop().time() + 30
        while not forger.received.startswith(b"POST /ipp/print "):
            assert asyncio.get_running_loop().time() < deadline, f"the forger got no request\n{cups.log()}"
            await asyncio.sleep(0.05)

        await _run("lpadmin", "-h", sock, "-p", "bridge", "-E", "-v", with_password, "-m", "everywhere",
                   env=cups.env)
        await _run("lpadmin", "-h", sock, "-p", "mine", "-E", "-v", personal, "-m", "everywhere", env=cups.env)
        await asyncio.gather(cups.wait_driverless_ready("bridge"), cups.wait_driverless_ready("mine"))
        await _run("lp", "-h", sock, "-d", "bridge", "-t", "cups over ipps", str(document), env=cups.env)
        await _run("lp", "-h", sock, "-d", "mine", "-t", "cups personal link", str(document), env=cups.env)
        try:
            manifests = await bridge.wait_delivered(2, within=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cups.log()}") from exc
        assert sorted(m["job_name"] for m in manifests) == ["cups over ipps", "cups personal link"]
        for manifest in manifests:
            assert manifest["user_email"] == ALICE[0]
            assert manifest["document_format"] == "application/pdf"
            delivered = bridge.delivered_bytes(manifest)
            assert delivered.startswith(b"%PDF-") and delivered != pdf  # through pdftopdf: driverless queues
        assert bridge.trust_calls() == 1  # alice's password, once; the personal URL needs none
        # The backend pinned the chain it accepted; nothing for the impostor's host.
        saved = sorted(p.name for p in ssl_dir.iterdir())
        assert saved == ["127.0.0.1.crt", "localhost.crt", "site.crt"], saved  # localhost: the forger's
        for queue in ("bridge", "mine"):
            reasons = (await cups.printer_values(queue, "printer-state-reasons"))["printer-state-reasons"]
            assert not any(str(r).startswith("cups-pki") for r in reasons), reasons
        assert bytes(impostor.received) == b""
    finally:
        await cups.stop()
        await impostor.close()
        await forger.close()
        shutil.rmtree(cups.root, ignore_errors=True)
