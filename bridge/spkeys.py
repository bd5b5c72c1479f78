"""The bridge's own SAML SP key pair: signs requests where an IdP wants it, decrypts EncryptedAssertion.

Generated once in the state directory (private key mode 0600) and kept, so the
SP metadata an administrator registered at the IdP stays valid across restarts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bridge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class SpKeys:
    key_pem: bytes = field(repr=False)
    cert_pem: bytes


def ensure_sp_keys(state_dir: Path) -> SpKeys:
    directory = state_dir / "sp"
    key_file, cert_file = directory / "sp.key", directory / "sp.pem"
    try:
        if key_file.is_file() and cert_file.is_file():
            return SpKeys(key_pem=key_file.read_bytes(), cert_pem=cert_file.read_bytes())
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loginbridge SAML SP")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        cert_file.write_bytes(cert_pem)
        log.info("generated the SAML SP key pair in %s", directory)
        return SpKeys(key_pem=key_pem, cert_pem=cert_pem)
    except OSError as exc:
        raise ConfigError(f"cannot read or create the SP key pair in {directory} ({exc.strerror})") from exc
