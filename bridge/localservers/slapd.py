"""A throwaway OpenLDAP ``slapd`` for the tests: Debian's own binaries, a temp dir, loopback only, TLS from a test CA.

``run_slapd()`` makes a temp dir, a test CA and a server certificate for 127.0.0.1/localhost (with
``cryptography``), writes a cn=config LDIF (the standard core/cosine/inetorgperson schemas, a small
AD-like test schema, the MDB backend, the memberof overlay, a size limit that only paged searches get
past) and loads it with ``slapadd -n0 -F slapd.d``; then starts ``slapd -F slapd.d -h "ldap://… ldaps://…"
-d 0`` in the foreground as a child process on two free loopback ports, waits until it answers and
yields a :class:`SlapdServer`. Entries go in with ``ldapadd`` (:meth:`SlapdServer.add`). The process is
always killed and its temp dir removed on the way out.

The AD-like test schema (OIDs under the private arc 1.3.6.1.4.1.55555.1) gives an auxiliary class
``lbTestADAccount`` with ``userAccountControl`` (integer; bit 2 is ACCOUNTDISABLE), ``sAMAccountName``
and ``userPrincipalName``: the directory sync's AD defaults work against it.

Under root slapd runs as root (no ``-u``/``-g``): the temp dir is ours. The pytest fixtures on top of it
are in ``tests/servers/slapd.py``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MODULE_DIR = Path("/usr/lib/ldap")
SCHEMA_DIR = Path("/etc/ldap/schema")
SUFFIX = "dc=example,dc=com"
ROOT_DN = f"cn=admin,{SUFFIX}"
TEST_OID_ARC = "1.3.6.1.4.1.55555.1"

AD_TEST_SCHEMA = f"""dn: cn=lbtestad,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: lbtestad
olcAttributeTypes: ( {TEST_OID_ARC}.1.1 NAME 'userAccountControl' DESC 'AD-like account flags (test)'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
olcAttributeTypes: ( {TEST_OID_ARC}.1.2 NAME 'sAMAccountName' DESC 'AD-like logon name (test)'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{{256}}
  SINGLE-VALUE )
olcAttributeTypes: ( {TEST_OID_ARC}.1.3 NAME 'userPrincipalName' DESC 'AD-like UPN (test)'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{{1024}} SINGLE-VALUE )
olcObjectClasses: ( {TEST_OID_ARC}.2.1 NAME 'lbTestADAccount' DESC 'AD-like account attributes (test)'
  AUXILIARY MAY ( userAccountControl $ sAMAccountName $ userPrincipalName ) )
"""


class SlapdError(RuntimeError):
    """slapd could not be found, configured or started, or an ldap-utils command failed."""


def find_binary(name: str, places: Sequence[str] = ("/usr/sbin", "/usr/bin", "/sbin")) -> str:
    found = shutil.which(name) or next((f"{p}/{name}" for p in places if os.access(f"{p}/{name}", os.X_OK)), None)
    if found is None:
        raise SlapdError(f"no {name}: `apt-get install -y slapd ldap-utils` (as .ci/run does)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# -- the test CA --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A CA (its certificate in ``ca_file``) and a server certificate for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_test_ca(directory: Path, *, name: str = "loginbridge test LDAP CA",
                 hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` (0600) into ``directory``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca = TlsFiles(ca_file=directory / "ca.pem", cert_file=directory / "server.pem",
                  key_file=directory / "server.key")
    ca.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(ca.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_pem_key(key))
    return ca


# -- configuration --------------------------------------------------------------------------------------------


def render_config(base: Path, ca: TlsFiles, *, suffix: str, root_password: str, size_limit: int) -> str:
    """The cn=config LDIF for ``slapadd -n0``: schemas, the MDB database and its memberof overlay."""
    schemas = [f"include: file://{SCHEMA_DIR / name}.ldif" for name in ("core", "cosine", "inetorgperson")]
    limit = f"size.soft={size_limit} size.hard={size_limit} size.pr=unlimited size.prtotal=unlimited"
    return "\n".join([
        "dn: cn=config",
        "objectClass: olcGlobal",
        "cn: config",
        f"olcPidFile: {base / 'slapd.pid'}",
        f"olcArgsFile: {base / 'slapd.args'}",
        f"olcTLSCACertificateFile: {ca.ca_file}",
        f"olcTLSCertificateFile: {ca.cert_file}",
        f"olcTLSCertificateKeyFile: {ca.key_file}",
        "olcLogLevel: none",
        "",
        "dn: cn=module{0},cn=config",
        "objectClass: olcModuleList",
        "cn: module{0}",
        f"olcModulePath: {MODULE_DIR}",
        "olcModuleLoad: back_mdb",
        "olcModuleLoad: memberof",
        "",
        "dn: cn=schema,cn=config",
        "objectClass: olcSchemaConfig",
        "cn: schema",
        "",
        *schemas,
        "",
        AD_TEST_SCHEMA,
        "dn: olcDatabase={-1}frontend,cn=config",
        "objectClass: olcDatabaseConfig",
        "objectClass: olcFrontendConfig",
        "olcDatabase: {-1}frontend",
        f"olcSizeLimit: {limit}",
        "",
        "dn: olcDatabase={0}config,cn=config",
        "objectClass: olcDatabaseConfig",
        "olcDatabase: {0}config",
        "olcAccess: {0}to * by * none",
        "",
        "dn: olcDatabase={1}mdb,cn=config",
        "objectClass: olcDatabaseConfig",
        "objectClass: olcMdbConfig",
        "olcDatabase: {1}mdb",
        f"olcDbDirectory: {base / 'data'}",
        f"olcSuffix: {suffix}",
        f"olcRootDN: cn=admin,{suffix}",
        f"olcRootPW: {root_password}",
        "olcDbMaxSize: 268435456",
        "olcDbNoSync: TRUE",  # a throwaway directory: no fsync per entry
        "olcDbIndex: objectClass eq",
        "olcDbIndex: uid,mail,memberOf eq",
        f"olcSizeLimit: {limit}",
        "olcAccess: {0}to attrs=userPassword by self =xw by anonymous auth by * none",
        "olcAccess: {1}to * by users read by * none",
        "",
        "dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config",
        "objectClass: olcOverlayConfig",
        "objectClass: olcMemberOf",
        "olcOverlay: {0}memberof",
        "olcMemberOfRefInt: TRUE",
        "",
    ])


# -- the server -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlapdServer:
    """A running slapd: ``ldap_url`` (plain, StartTLS offered) and ``ldaps_url`` on 127.0.0.1."""

    ldap_url: str
    ldaps_url: str
    ldap_port: int
    ldaps_port: int
    suffix: str
    root_dn: str
    root_password: str = field(repr=False)
    ca: TlsFiles
    base_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    # -- entries (ldap-utils, bound as the root DN over the plain loopback port) -------------------------
    def _tool(self, name: str, args: Sequence[str], ldif: str | None = None) -> str:
        password_file = self.base_dir / "root.pw"
        cmd = [find_binary(name), "-x", "-H", self.ldap_url, "-D", self.root_dn, "-y", str(password_file), *args]
        done = subprocess.run(cmd, input=None if ldif is None else ldif.encode(),  # noqa: S603 (ldap-utils)
                              capture_output=True, timeout=120, check=False, env={**os.environ, "LDAPNOINIT": "1"})
        if done.returncode != 0:
            raise SlapdError(f"{name} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode(errors="replace")

    def add(self, ldif: str) -> None:
        """``ldapadd`` the entries of ``ldif``."""
        self._tool("ldapadd", [], ldif)

    def modify(self, ldif: str) -> None:
        """``ldapmodify`` with change records (``changetype: modify`` …)."""
        self._tool("ldapmodify", [], ldif)

    def delete(self, *dns: str) -> None:
        self._tool("ldapdelete", list(dns))

    def search(self, filter_: str, *attributes: str) -> str:
        """``ldapsearch`` under the suffix (LDIF text; tests)."""
        return self._tool("ldapsearch", ["-LLL", "-E", "pr=1000/noprompt", "-b", self.suffix, filter_, *attributes])

    # -- the process ------------------------------------------------------------------------------------------
    def raise_if_exited(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise SlapdError(f"slapd exited ({code}){_tail(self.log_file)}")

    def stop(self) -> None:
        """SIGTERM (slapd's clean shutdown), then SIGKILL; idempotent."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n--- slapd log ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _run(cmd: list[str], *, cwd: Path, what: str, timeout: float = 60) -> None:
    done = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,  # noqa: S603 (our argv)
                          timeout=timeout, check=False)
    if done.returncode != 0:
        out = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise SlapdError(f"{what} failed ({done.returncode}): {out[-2000:]}")


def _answers(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _start(base: Path, ldap_port: int, ldaps_port: int, timeout: float) -> subprocess.Popen[bytes]:
    urls = f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
    log_file = base / "slapd.log"
    with open(log_file, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 (Debian's slapd, our generated config)
            [find_binary("slapd"), "-F", str(base / "slapd.d"), "-h", urls, "-d", "0"],
            cwd=base, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    try:
        while not (_answers(ldap_port) and _answers(ldaps_port)):
            if process.poll() is not None:
                raise SlapdError(f"slapd exited ({process.returncode}){_tail(log_file)}")
            if time.monotonic() > deadline:
                raise SlapdError(f"slapd did not answer within {timeout}s{_tail(log_file)}")
            time.sleep(0.02)
    except BaseException:
        process.kill()
        process.wait(timeout=5)
        raise
    return process


@contextmanager
def run_slapd(*, suffix: str = SUFFIX, size_limit: int = 100, start_timeout: float = 15.0) -> Iterator[SlapdServer]:
    """Start a throwaway slapd with an empty ``suffix`` (its top entry only); stop it and remove its files after.

    ``size_limit``: the most entries a search that is not paged may return (paged searches: unlimited).
    """
    for binary in ("slapd", "slapadd", "ldapadd"):
        find_binary(binary)
    if not (MODULE_DIR / "back_mdb.la").exists() and not (MODULE_DIR / "back_mdb.so").exists():
        raise SlapdError(f"no MDB backend module in {MODULE_DIR}: `apt-get install -y slapd`")
    base = Path(tempfile.mkdtemp(prefix="lb-slapd-"))
    server: SlapdServer | None = None
    try:
        (base / "data").mkdir(mode=0o700)
        (base / "slapd.d").mkdir(mode=0o700)
        ca = make_test_ca(base / "tls")
        root_password = os.urandom(12).hex()
        fd = os.open(base / "root.pw", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(root_password)  # no newline: ldap-utils' -y sends the file's bytes as they are
        (base / "config.ldif").write_text(render_config(base, ca, suffix=suffix, root_password=root_password,
                                                        size_limit=size_limit))
        _run([find_binary("slapadd"), "-n0", "-F", str(base / "slapd.d"), "-l", str(base / "config.ldif")],
             cwd=base, what="slapadd -n0 (cn=config)")
        process: subprocess.Popen[bytes] | None = None
        for attempt in range(3):  # a free port can be taken before slapd binds it: try others
            ldap_port, ldaps_port = free_port(), free_port()
            try:
                process = _start(base, ldap_port, ldaps_port, start_timeout)
                break
            except SlapdError as exc:
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
        assert process is not None
        first = suffix.split(",", 1)[0]
        attr, value = first.split("=", 1)
        server = SlapdServer(
            ldap_url=f"ldap://127.0.0.1:{ldap_port}", ldaps_url=f"ldaps://127.0.0.1:{ldaps_port}",
            ldap_port=ldap_port, ldaps_port=ldaps_port, suffix=suffix, root_dn=f"cn=admin,{suffix}",
            root_password=root_password, ca=ca, base_dir=base, log_file=base / "slapd.log", process=process,
        )
        top = "objectClass: dcObject\nobjectClass: organization\n" if attr.lower() == "dc" else (
            "objectClass: organization\n")
        server.add(f"dn: {suffix}\n{top}{attr}: {value}\no: {value}\n")
        yield server
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
