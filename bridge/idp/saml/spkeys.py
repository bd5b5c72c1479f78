"""The bridge's own SAML SP key pair: signs requests where an IdP wants it, decrypts EncryptedAssertion.

Generated once in the state directory (private key mode 0600) and kept, so the
SP metadata an administrator registered at the IdP stays valid across restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization

from bridge.errors import ConfigError
from bridge.keyfiles import key_pem, new_rsa_key, self_signed_builder, write_private

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
        key = new_rsa_key()
        cert = self_signed_builder(key, "loginbridge SAML SP", days=3650).sign(key, hashes.SHA256())
        private, cert_pem = key_pem(key), cert.public_bytes(serialization.Encoding.PEM)
        write_private(key_file, private)
        cert_file.write_bytes(cert_pem)
        log.info("generated the SAML SP key pair in %s", directory)
        return SpKeys(key_pem=private, cert_pem=cert_pem)
    except OSError as exc:
        raise ConfigError(f"cannot read or create the SP key pair in {directory} ({exc.strerror})") from exc
