"""Keys and certificates of the simulator, generated once and kept on disk.

A private CA signs the TLS server certificate (so clients verify the
connection against ``ca.pem`` instead of turning verification off), and a
self-signed token-signing certificate plays the AD FS "ADFS Signing" one.
Everything is reused on restart so devices and tenants configured with the
signing certificate keep working.

The same CA signs the demo printer's certificate (``printer.pem``, for
loopback and this machine's host name), which conf/bridge.yaml names as
``printer.tls``: whatever starts the simulator (``demo``, ``cluster-demo``)
has it.  :func:`ensure_server_cert` issues such a certificate for any names.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.errors import ConfigError
from bridge.keyfiles import key_pem, new_rsa_key, self_signed_builder, write_private

log = logging.getLogger(__name__)

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
TLS_CERT_FILE = "tls.pem"
TLS_KEY_FILE = "tls.key"
SIGNING_CERT_FILE = "signing.pem"
SIGNING_KEY_FILE = "signing.key"
PRINTER_CERT_FILE = "printer.pem"
PRINTER_KEY_FILE = "printer.key"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_DNS_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class SimKeys:
    """Where the simulator's key material lives, plus the signing pair in memory."""

    keys_dir: Path
    ca_file: Path
    tls_cert_file: Path
    tls_key_file: Path
    signing_cert_file: Path
    signing_key_file: Path
    signing_cert_pem: bytes
    signing_key_pem: bytes = field(repr=False)
    printer_cert_file: Path | None = None
    printer_key_file: Path | None = None


def self_signed_signing_cert(key: rsa.RSAPrivateKey, host: str, *, days: int = 365) -> x509.Certificate:
    """A certificate shaped like AD FS's own: self-signed, CN "ADFS Signing - host"."""
    return (
        self_signed_builder(key, f"ADFS Signing - {host}", days=days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def generate_signing_pair(host: str) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a fresh token-signing identity."""
    key = new_rsa_key()
    cert = self_signed_signing_cert(key, host)
    return key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def cert_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint, hex, as administrators compare them."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()


def ensure_keys(keys_dir: Path, *, host: str = "localhost") -> SimKeys:
    """Create whatever is missing in ``keys_dir`` and return the whole set."""
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = _ensure_ca(keys_dir)
        _ensure_issued(keys_dir, TLS_CERT_FILE, TLS_KEY_FILE, (*_LOOPBACK_NAMES, host), host or "localhost",
                       ca_key, ca_cert)
        names = printer_names()
        _ensure_issued(keys_dir, PRINTER_CERT_FILE, PRINTER_KEY_FILE, names, names[-1], ca_key, ca_cert)
        signing_key_pem, signing_cert_pem = _ensure_signing(keys_dir, host)
    except OSError as exc:
        raise ConfigError(f"cannot write simulator keys ({exc.strerror})", file=str(keys_dir)) from exc
    return SimKeys(
        keys_dir=keys_dir,
        ca_file=keys_dir / CA_FILE,
        tls_cert_file=keys_dir / TLS_CERT_FILE,
        tls_key_file=keys_dir / TLS_KEY_FILE,
        signing_cert_file=keys_dir / SIGNING_CERT_FILE,
        signing_key_file=keys_dir / SIGNING_KEY_FILE,
        signing_cert_pem=signing_cert_pem,
        signing_key_pem=signing_key_pem,
        printer_cert_file=keys_dir / PRINTER_CERT_FILE,
        printer_key_file=keys_dir / PRINTER_KEY_FILE,
    )


def printer_names() -> tuple[str, ...]:
    """The demo printer's names: loopback, and this machine's host name when it is a DNS name."""
    hostname = socket.gethostname()
    return (*_LOOPBACK_NAMES, hostname) if _DNS_NAME.match(hostname) and ".." not in hostname else _LOOPBACK_NAMES


def ensure_server_cert(keys_dir: Path, cert_name: str, key_name: str, names: Sequence[str]) -> tuple[Path, Path]:
    """A TLS server certificate for ``names`` (host names and addresses) signed by the demo CA of ``keys_dir``.

    Kept while it is this CA's, unexpired and covers every name; else issued
    again.  Returns (certificate file, key file).
    """
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = _ensure_ca(keys_dir)
        _ensure_issued(keys_dir, cert_name, key_name, names, names[0] if names else "localhost", ca_key, ca_cert)
    except OSError as exc:
        raise ConfigError(f"cannot write demo certificates ({exc.strerror})", file=str(keys_dir)) from exc
    return keys_dir / cert_name, keys_dir / key_name


def server_ssl_context(keys: SimKeys) -> ssl.SSLContext:
    """TLS 1.2+ server context presenting the CA-issued certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(keys.tls_cert_file), str(keys.tls_key_file))
    return context


def _load_pair(key_path: Path, cert_path: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate] | None:
    if not (key_path.exists() and cert_path.exists()):
        return None
    try:
        # The simulator's own keys, written by it: the RSA consistency check (~0.13 s a key, four keys at
        # every start) would only re-prove what it made.  A key that is not its certificate's is caught below.
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        log.warning("unreadable key pair %s / %s, generating a new one", key_path, cert_path)
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        log.warning("key %s is not the key of certificate %s, generating a new pair", key_path, cert_path)
        return None
    if cert.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=1):
        log.warning("certificate %s has expired, generating a new one", cert_path)
        return None
    return key, cert


def _ensure_ca(keys_dir: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    pair = _load_pair(keys_dir / CA_KEY_FILE, keys_dir / CA_FILE)
    if pair is not None:
        return pair
    key = new_rsa_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        self_signed_builder(key, "loginbridge idp-sim test CA", days=3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(keys_dir / CA_KEY_FILE, key_pem(key))
    (keys_dir / CA_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # A new CA invalidates any older server certificate.
    (keys_dir / TLS_CERT_FILE).unlink(missing_ok=True)
    log.info("generated simulator CA in %s", keys_dir)
    return key, cert


def _san_for(names: Sequence[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for value in dict.fromkeys(names):
        if not value or value in {"0.0.0.0", "::"}:  # noqa: S104 - a wildcard bind is not a name
            continue
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            sans.append(x509.DNSName(value))
    return sans


def _covers(cert: x509.Certificate, wanted: list[x509.GeneralName]) -> bool:
    try:
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(name in present for name in wanted)


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Signed by this CA (not merely by one of the same name, as a regenerated CA has)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ensure_issued(keys_dir: Path, cert_name: str, key_name: str, names: Sequence[str], common_name: str,
                   ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate) -> None:
    sans = _san_for(names)
    pair = _load_pair(keys_dir / key_name, keys_dir / cert_name)
    if pair is not None and _issued_by(pair[1], ca_cert) and _covers(pair[1], sans):
        return
    key = new_rsa_key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(keys_dir / key_name, key_pem(key))
    (keys_dir / cert_name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("generated %s for %s", keys_dir / cert_name, ", ".join(str(n.value) for n in sans))


def _ensure_signing(keys_dir: Path, host: str) -> tuple[bytes, bytes]:
    key_path, cert_path = keys_dir / SIGNING_KEY_FILE, keys_dir / SIGNING_CERT_FILE
    pair = _load_pair(key_path, cert_path)
    if pair is not None:
        return key_path.read_bytes(), cert_path.read_bytes()
    key_bytes, cert_bytes = generate_signing_pair(host or "localhost")
    write_private(key_path, key_bytes)
    cert_path.write_bytes(cert_bytes)
    log.info("generated simulator token-signing certificate %s", cert_path)
    return key_bytes, cert_bytes
