"""SAML 2.0 metadata: what we need from an IdP's, and our own SP's for the IdP administrator.

From the IdP we take its entity id, its ECP endpoint (the SOAP-binding
``SingleSignOnService``; Okta, Entra and F5 publish none, which means
password prompts cannot work for that tenant), its HTTP-Redirect
``SingleSignOnService`` (where a browser sign-in starts; nearly every IdP has
one) and the certificates to pin for signature checks.  The metadata's own signature is not checked here:
the document is trusted as configured by the administrator (or fetched over
TLS by the caller).

Pure: bytes in, typed values out.  Our SP metadata is built with lxml
rather than ``saml2.metadata.entity_descriptor``, which needs a pysaml2
Config that reads key files from disk and numbers ACS indexes from 1.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from bridge.errors import AssertionRejected, ConfigError, IdpProtocolError
from bridge.idp.assertion import parse_saml_datetime
from bridge.xml.safe import full_text, parse_untrusted
from bridge.xml.signature import NS_DS, NS_SAMLP2

log = logging.getLogger(__name__)

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
BINDING_SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
BINDING_PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
BINDING_HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

MAX_METADATA_BYTES = 4 * 1024 * 1024  # one IdP, or a small aggregate; not a whole federation feed
MAX_SIGNING_CERTIFICATES = 8

_M = f"{{{NS_MD}}}"
_D = f"{{{NS_DS}}}"
_ENTITY = f"{_M}EntityDescriptor"
_ENTITIES = f"{_M}EntitiesDescriptor"


@dataclass(frozen=True, kw_only=True, slots=True)
class IdpMetadata:
    """What a SAML tenant needs to know about its IdP."""

    entity_id: str
    ecp_url: str | None  # None: the IdP offers no ECP, so no password sign-in at devices
    signing_certificates: tuple[x509.Certificate, ...]
    valid_until: datetime | None  # earliest validUntil of the entity and its enclosing groups
    sso_redirect_url: str | None = None  # HTTP-Redirect SingleSignOnService: where browser sign-in starts


def parse_idp_metadata(raw: bytes, *, entity_id: str | None = None) -> IdpMetadata:
    """Read an EntityDescriptor, or pick ``entity_id`` out of an EntitiesDescriptor (saml-metadata 2.3)."""
    root = parse_untrusted(raw, what="IdP metadata", max_bytes=MAX_METADATA_BYTES)
    if root.tag == _ENTITY:
        candidates = [root]
    elif root.tag == _ENTITIES:
        candidates = [el for el in root.iter(_ENTITY)]
    else:
        raise IdpProtocolError("metadata: the root is neither EntityDescriptor nor EntitiesDescriptor")
    entity = _pick(candidates, entity_id)
    found_id = (entity.get("entityID") or "").strip()
    idp = _idp_descriptor(entity)
    return IdpMetadata(
        entity_id=found_id,
        ecp_url=_sso_url(idp, BINDING_SOAP),
        signing_certificates=_signing_certificates(idp),
        valid_until=_valid_until(entity),
        sso_redirect_url=_sso_url(idp, BINDING_HTTP_REDIRECT),
    )


def build_sp_metadata(
    *, entity_id: str, acs_url: str, signing_cert_pem: bytes, encryption_cert_pem: bytes, requests_signed: bool = False
) -> bytes:
    """Our SP's EntityDescriptor: PAOS and HTTP-POST consumers at the ACS URL, signed assertions wanted.

    PAOS serves the password path (ECP), HTTP-POST the browser sign-in; the
    POST one is the default, as it is the only one an IdP could answer an
    unsolicited sign-in to (which the bridge refuses, but IdP consoles want a
    default).  The indexes differ, as saml-metadata 2.2.3 requires.
    """
    entity = etree.Element(f"{_M}EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS}, entityID=entity_id)
    sp = etree.SubElement(
        entity,
        f"{_M}SPSSODescriptor",
        protocolSupportEnumeration=NS_SAMLP2,
        AuthnRequestsSigned="true" if requests_signed else "false",
        WantAssertionsSigned="true",
    )
    for use, pem in (("signing", signing_cert_pem), ("encryption", encryption_cert_pem)):
        descriptor = etree.SubElement(sp, f"{_M}KeyDescriptor", use=use)
        data = etree.SubElement(etree.SubElement(descriptor, f"{_D}KeyInfo"), f"{_D}X509Data")
        etree.SubElement(data, f"{_D}X509Certificate").text = _pem_to_b64(pem)
    etree.SubElement(sp, f"{_M}AssertionConsumerService", Binding=BINDING_PAOS, Location=acs_url, index="0")
    etree.SubElement(
        sp, f"{_M}AssertionConsumerService", Binding=BINDING_HTTP_POST, Location=acs_url, index="1", isDefault="true"
    )
    return etree.tostring(entity, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- helpers ----------------------------------------------------------------------------------


def _pick(candidates: list[etree._Element], entity_id: str | None) -> etree._Element:
    if entity_id is not None:
        chosen = [el for el in candidates if (el.get("entityID") or "").strip() == entity_id]
        if not chosen:
            raise IdpProtocolError(f"metadata: no entity {entity_id[:200]!r}")
        if len(chosen) > 1:
            raise IdpProtocolError(f"metadata: entity {entity_id[:200]!r} is described twice")
        return chosen[0]
    with_idp = [el for el in candidates if el.find(f"{_M}IDPSSODescriptor") is not None]
    if len(with_idp) != 1:
        raise IdpProtocolError(f"metadata: {len(with_idp)} IdP entities; name the one to use")
    return with_idp[0]


def _idp_descriptor(entity: etree._Element) -> etree._Element:
    if not (entity.get("entityID") or "").strip():
        raise IdpProtocolError("metadata: EntityDescriptor without entityID")
    for descriptor in entity.iterfind(f"{_M}IDPSSODescriptor"):
        if NS_SAMLP2 in (descriptor.get("protocolSupportEnumeration") or "").split():
            return descriptor
    raise IdpProtocolError("metadata: the entity has no SAML 2.0 IDPSSODescriptor")


def _sso_url(idp: etree._Element, binding: str) -> str | None:
    """The first usable SingleSignOnService Location of ``binding`` (an http(s) URL with a host), or None."""
    for service in idp.iterfind(f"{_M}SingleSignOnService"):
        if service.get("Binding") != binding:
            continue
        location = (service.get("Location") or "").strip()
        try:
            parts = urlsplit(location)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            parts = None
        if parts is not None and parts.scheme in ("https", "http") and parts.netloc:
            return location
        log.warning("metadata: ignoring a SingleSignOnService (%s) with an unusable Location",
                    binding.rsplit(":", 1)[-1])
    return None


def _signing_certificates(idp: etree._Element) -> tuple[x509.Certificate, ...]:
    """Certificates of KeyDescriptors with use="signing" or no use (saml-metadata 2.4.1.1)."""
    found: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for descriptor in idp.iterfind(f"{_M}KeyDescriptor"):
        if descriptor.get("use", "signing") != "signing":
            continue
        for element in descriptor.iterfind(f"{_D}KeyInfo/{_D}X509Data/{_D}X509Certificate"):
            try:
                der = base64.b64decode("".join(full_text(element).split()), validate=True)
                cert = x509.load_der_x509_certificate(der)
            except (binascii.Error, ValueError) as exc:
                raise IdpProtocolError("metadata: a signing certificate cannot be read") from exc
            if der not in seen:
                seen.add(der)
                found.append(cert)
    if not found:
        raise IdpProtocolError("metadata: the IdP publishes no signing certificate")
    if len(found) > MAX_SIGNING_CERTIFICATES:
        raise IdpProtocolError(f"metadata: {len(found)} signing certificates is too many")
    return tuple(found)


def _valid_until(entity: etree._Element) -> datetime | None:
    ends: list[datetime] = []
    node: etree._Element | None = entity
    while node is not None:
        value = node.get("validUntil")
        if value is not None:
            try:
                ends.append(parse_saml_datetime(value))
            except AssertionRejected as exc:
                raise IdpProtocolError("metadata: validUntil is not an xs:dateTime") from exc
        node = node.getparent()
    return min(ends) if ends else None


def _pem_to_b64(pem: bytes) -> str:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError("the SP certificate is not a PEM X.509 certificate") from exc
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")
