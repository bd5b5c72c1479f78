"""Reading AD FS FederationMetadata.xml: the issuer and its signing certificates.

Pure: bytes in, :class:`FederationMetadata` out, or ``IdpProtocolError``.
The metadata is fetched over the tenant's whitelisted TLS connection; its own
signature is not relied on (TLS to the pinned host is the trust here), and
certificates found are only used when the tenant opted in with
``federation_metadata: true``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

from bridge.errors import IdpProtocolError
from bridge.xml.safe import full_text, parse_untrusted

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"


@dataclass(frozen=True, kw_only=True, slots=True)
class FederationMetadata:
    entity_id: str
    signing_certificates: tuple[x509.Certificate, ...]


def _decode_cert(text: str) -> x509.Certificate:
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise IdpProtocolError("federation metadata holds a certificate that cannot be read") from exc


def parse_federation_metadata(raw: bytes) -> FederationMetadata:
    root = parse_untrusted(raw, what="federation metadata", max_bytes=2 * 1024 * 1024)
    if root.tag != f"{{{MD_NS}}}EntityDescriptor":
        raise IdpProtocolError(f"federation metadata root is {etree.QName(root).localname}, not EntityDescriptor")
    entity_id = root.get("entityID") or ""
    if not entity_id:
        raise IdpProtocolError("federation metadata has no entityID")
    certs: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for key_descriptor in root.iter(f"{{{MD_NS}}}KeyDescriptor"):
        if key_descriptor.get("use", "signing") != "signing":
            continue
        for node in key_descriptor.iter(f"{{{DS_NS}}}X509Certificate"):
            cert = _decode_cert(full_text(node))
            fingerprint = cert.fingerprint(hashes.SHA256())
            if fingerprint not in seen:
                seen.add(fingerprint)
                certs.append(cert)
    if not certs:
        raise IdpProtocolError("federation metadata lists no signing certificate")
    return FederationMetadata(entity_id=entity_id, signing_certificates=tuple(certs))

