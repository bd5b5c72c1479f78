"""Reading AD FS FederationMetadata.xml: the issuer, its signing certificates, its passive endpoint.

Pure: bytes in, :class:`FederationMetadata` out, or ``IdpProtocolError``.
The metadata is fetched over the tenant's whitelisted TLS connection; its own
signature is not relied on (TLS to the pinned host is the trust here), and
certificates found are only used when the tenant opted in with
``federation_metadata: true``.  The WS-Federation passive endpoint
(``fed:PassiveRequestorEndpoint`` of the security token service role) is where a
browser sign-in starts; a farm published under another name says so here.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

from bridge.errors import IdpProtocolError
from bridge.xml.safe import full_text, parse_untrusted

log = logging.getLogger(__name__)

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
FED_NS = "http://docs.oasis-open.org/wsfed/federation/200706"
WSA_NS = "http://www.w3.org/2005/08/addressing"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True, kw_only=True, slots=True)
class FederationMetadata:
    entity_id: str
    signing_certificates: tuple[x509.Certificate, ...]
    passive_url: str | None = None  # the STS's PassiveRequestorEndpoint (https), if it names one


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
    return FederationMetadata(entity_id=entity_id, signing_certificates=tuple(certs),
                              passive_url=_passive_url(root))


def _passive_url(root: etree._Element) -> str | None:
    """The https PassiveRequestorEndpoint address, the security token service role's first.

    AD FS lists it twice: under ``fed:SecurityTokenServiceType`` (where users
    sign in) and ``fed:ApplicationServiceType`` (AD FS as a relying party); the
    first is the one meant, the other a fallback.  A non-https address is ignored.
    """
    found: list[tuple[bool, str]] = []
    for role in root.iterfind(f"{{{MD_NS}}}RoleDescriptor"):
        is_sts = _xsi_type(role) == (FED_NS, "SecurityTokenServiceType")
        for address in role.iterfind(f"{{{FED_NS}}}PassiveRequestorEndpoint/{{{WSA_NS}}}EndpointReference/"
                                     f"{{{WSA_NS}}}Address"):
            url = full_text(address).strip()
            try:
                usable = urlsplit(url).scheme == "https" and bool(urlsplit(url).hostname)
            except ValueError:
                usable = False
            if usable:
                found.append((is_sts, url))
            else:
                log.warning("federation metadata: ignoring a PassiveRequestorEndpoint that is not an https URL")
    found.sort(key=lambda item: not item[0])  # stable: the STS role's first, in document order
    return found[0][1] if found else None


def _xsi_type(element: etree._Element) -> tuple[str, str] | None:
    """The xsi:type of ``element`` as (namespace, local name), its prefix resolved where it is declared."""
    value = (element.get(f"{{{XSI_NS}}}type") or "").strip()
    prefix, _, local = value.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    return (namespace, local) if namespace is not None and local else None

