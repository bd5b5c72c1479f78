"""Test helper: RSA keys and self-signed certificates, made once per test session.

RSA key generation costs tens of milliseconds, so results are cached per
argument tuple; a test that needs a distinct signer asks for a distinct ``cn``.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def make_key_and_cert(
    cn: str = "test-signer", days: int = 365, not_before: datetime | None = None
) -> tuple[bytes, bytes]:
    """Return ``(key_pem, cert_pem)``: an RSA-2048 key and a self-signed certificate for it."""
    return _make(cn, days, not_before)


@functools.cache
def _make(cn: str, days: int, not_before: datetime | None) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = not_before if not_before is not None else datetime.now(UTC) - timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def load_cert(cert_pem: bytes) -> x509.Certificate:
    """Parse a PEM certificate (convenience for tests that pin certificates)."""
    return x509.load_pem_x509_certificate(cert_pem)
