"""Pure documents of the ECP IdP: Basic credentials, SOAP 1.1 envelopes, IdP and SP metadata.

No I/O here: bytes or text in, typed values or bytes out, project errors only.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from bridge.errors import RequestError, XmlRejected
from bridge.xml.safe import parse_untrusted

NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_ECP = "urn:oasis:names:tc:SAML:2.0:profiles:SSO:ecp"
NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
BINDING_SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
BINDING_PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
PROTOCOL_SAML2 = "urn:oasis:names:tc:SAML:2.0:protocol"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
SOAP_ACTOR_NEXT = "http://schemas.xmlsoap.org/soap/actor/next"
MAX_METADATA_BYTES = 512 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class BasicCredentials:
    """Login and password from an ``Authorization: Basic`` header (RFC 7617)."""

    login: str
    password: str = field(repr=False)


def basic_credentials(header: str | None) -> BasicCredentials | None:
    """The credentials in an Authorization header value, or None when absent or unreadable."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    login, colon, password = decoded.partition(":")
    if not colon or not login:
        return None
    return BasicCredentials(login=login, password=password)


def ecp_response_envelope(response: etree._Element, *, acs_url: str) -> bytes:
    """SOAP 1.1 envelope with the ``ecp:Response`` header (saml-ecp-v2.0 section 2.3.2) around a Response.

    ``response`` is moved into the new envelope; its signatures stay valid under exclusive C14N.
    """
    envelope = etree.Element(f"{{{NS_SOAP11}}}Envelope", nsmap={"soap11": NS_SOAP11})
    header = etree.SubElement(envelope, f"{{{NS_SOAP11}}}Header")
    etree.SubElement(
        header,
        f"{{{NS_ECP}}}Response",
        {
            f"{{{NS_SOAP11}}}mustUnderstand": "1",
            f"{{{NS_SOAP11}}}actor": SOAP_ACTOR_NEXT,
            "AssertionConsumerServiceURL": acs_url,
        },
        nsmap={"ecp": NS_ECP},
    )
    body = etree.SubElement(envelope, f"{{{NS_SOAP11}}}Body")
    body.append(response)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def soap_fault(*, client_error: bool, text: str) -> bytes:
    """A SOAP 1.1 Fault (SOAP 1.1 section 4.4): what Shibboleth answers when it cannot read the request."""
    envelope = etree.Element(f"{{{NS_SOAP11}}}Envelope", nsmap={"soap11": NS_SOAP11})
    body = etree.SubElement(envelope, f"{{{NS_SOAP11}}}Body")
    fault = etree.SubElement(body, f"{{{NS_SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = "soap11:Client" if client_error else "soap11:Server"
    etree.SubElement(fault, "faultstring").text = text
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _cert_base64(cert_pem: bytes) -> str:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise RequestError("signing certificate is not PEM") from exc
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")


def idp_metadata(
    *,
    entity_id: str,
    sso_url: str,
    signing_cert_pem: bytes,
    browser_sso: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The IdP's EntityDescriptor (saml-metadata section 2.4.3), shaped like Shibboleth's.

    ``sso_url`` is the ECP (SOAP) SingleSignOnService; ``browser_sso`` adds
    (Binding, Location) pairs for Web Browser SSO, which an SP needs to find
    where a browser sign-in starts.
    """
    root = etree.Element(f"{{{NS_MD}}}EntityDescriptor", {"entityID": entity_id}, nsmap={"md": NS_MD, "ds": NS_DS})
    idp = etree.SubElement(root, f"{{{NS_MD}}}IDPSSODescriptor", protocolSupportEnumeration=PROTOCOL_SAML2)
    key = etree.SubElement(idp, f"{{{NS_MD}}}KeyDescriptor", use="signing")
    info = etree.SubElement(key, f"{{{NS_DS}}}KeyInfo")
    data = etree.SubElement(info, f"{{{NS_DS}}}X509Data")
    etree.SubElement(data, f"{{{NS_DS}}}X509Certificate").text = _cert_base64(signing_cert_pem)
    etree.SubElement(idp, f"{{{NS_MD}}}NameIDFormat").text = NAMEID_EMAIL
    for binding, location in browser_sso:
        etree.SubElement(idp, f"{{{NS_MD}}}SingleSignOnService", Binding=binding, Location=location)
    etree.SubElement(idp, f"{{{NS_MD}}}SingleSignOnService", Binding=BINDING_SOAP, Location=sso_url)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def sp_entity_id(raw: bytes) -> str:
    """The entityID of an SP's EntityDescriptor; RequestError if it is not one."""
    try:
        root = parse_untrusted(raw, what="SP metadata", max_bytes=MAX_METADATA_BYTES)
    except XmlRejected as exc:
        raise RequestError(exc.detail) from exc
    if root.tag != f"{{{NS_MD}}}EntityDescriptor":
        raise RequestError("SP metadata must be one md:EntityDescriptor")
    if root.find(f"{{{NS_MD}}}SPSSODescriptor") is None:
        raise RequestError("SP metadata has no md:SPSSODescriptor")
    entity_id = (root.get("entityID") or "").strip()
    if not entity_id:
        raise RequestError("SP metadata has no entityID")
    return entity_id
