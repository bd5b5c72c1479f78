"""SAML token builders for the IdP simulator and tests: pure, lxml-built, AD FS-shaped.

SAML 1.1 follows what AD FS issues over WS-Trust (claims as
AttributeNamespace/AttributeName, bearer confirmation in every Subject);
SAML 2.0 follows saml-core section 2 element order (Issuer, Signature,
Subject, Conditions, statements).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from lxml import etree

from bridge.idp.assertion import SamlVersion
from bridge.xml.signature import NS_SAML1, NS_SAML2, SignatureAlgorithm, sign_enveloped

CLAIM_UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
CLAIM_EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"

CM_BEARER_11 = "urn:oasis:names:tc:SAML:1.0:cm:bearer"
CM_BEARER_20 = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_AUTHN_METHOD_11 = "urn:oasis:names:tc:SAML:1.0:am:password"
_AUTHN_CONTEXT_20 = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
_NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
_NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
_ATTRNAME_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenClaims:
    """What a token says; ``subject`` becomes the NameID and the upn + emailaddress claims."""

    issuer: str
    audience: str
    subject: str
    issued_at: datetime
    lifetime: timedelta = timedelta(hours=1)
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    assertion_id: str | None = None  # "_" + uuid4 hex when None
    recipient: str | None = None  # SAML 2.0 SubjectConfirmationData
    in_response_to: str | None = None


def saml_datetime(value: datetime) -> str:
    """xs:dateTime in UTC with milliseconds and Z, as AD FS writes it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _claims(claims: TokenClaims) -> dict[str, tuple[str, ...]]:
    merged: dict[str, tuple[str, ...]] = {CLAIM_UPN: (claims.subject,), CLAIM_EMAIL: (claims.subject,)}
    merged.update(claims.attributes)
    return merged


def _id(claims: TokenClaims) -> str:
    return claims.assertion_id if claims.assertion_id is not None else "_" + uuid.uuid4().hex


def build_saml11_assertion(claims: TokenClaims) -> etree._Element:
    """An unsigned SAML 1.1 assertion in the shape AD FS issues."""

    def q(tag: str) -> str:
        return f"{{{NS_SAML1}}}{tag}"

    start = saml_datetime(claims.issued_at)
    assertion = etree.Element(
        q("Assertion"),
        nsmap={"saml": NS_SAML1},
        MajorVersion="1",
        MinorVersion="1",
        AssertionID=_id(claims),
        Issuer=claims.issuer,
        IssueInstant=start,
    )
    conditions = etree.SubElement(
        assertion,
        q("Conditions"),
        NotBefore=start,
        NotOnOrAfter=saml_datetime(claims.issued_at + claims.lifetime),
    )
    restriction = etree.SubElement(conditions, q("AudienceRestrictionCondition"))
    etree.SubElement(restriction, q("Audience")).text = claims.audience

    def subject(parent: etree._Element) -> None:
        subj = etree.SubElement(parent, q("Subject"))
        etree.SubElement(subj, q("NameIdentifier"), Format=_NAMEID_UNSPECIFIED).text = claims.subject
        confirmation = etree.SubElement(subj, q("SubjectConfirmation"))
        etree.SubElement(confirmation, q("ConfirmationMethod")).text = CM_BEARER_11

    statement = etree.SubElement(assertion, q("AttributeStatement"))
    subject(statement)
    for uri, values in _claims(claims).items():
        namespace, _, name = uri.rpartition("/")
        attribute = etree.SubElement(
            statement, q("Attribute"), AttributeName=name, AttributeNamespace=namespace
        )
        for value in values:
            etree.SubElement(attribute, q("AttributeValue")).text = value
    authn = etree.SubElement(
        assertion,
        q("AuthenticationStatement"),
        AuthenticationMethod=_AUTHN_METHOD_11,
        AuthenticationInstant=start,
    )
    subject(authn)
    return assertion


def build_saml20_assertion(claims: TokenClaims) -> etree._Element:
    """An unsigned SAML 2.0 assertion with bearer confirmation."""

    def q(tag: str) -> str:
        return f"{{{NS_SAML2}}}{tag}"

    start = saml_datetime(claims.issued_at)
    end = saml_datetime(claims.issued_at + claims.lifetime)
    assertion = etree.Element(
        q("Assertion"), nsmap={"saml": NS_SAML2}, ID=_id(claims), Version="2.0", IssueInstant=start
    )
    etree.SubElement(assertion, q("Issuer")).text = claims.issuer
    subject = etree.SubElement(assertion, q("Subject"))
    etree.SubElement(subject, q("NameID"), Format=_NAMEID_EMAIL).text = claims.subject
    confirmation = etree.SubElement(subject, q("SubjectConfirmation"), Method=CM_BEARER_20)
    data = etree.SubElement(confirmation, q("SubjectConfirmationData"), NotOnOrAfter=end)
    if claims.recipient is not None:
        data.set("Recipient", claims.recipient)
    if claims.in_response_to is not None:
        data.set("InResponseTo", claims.in_response_to)
    conditions = etree.SubElement(assertion, q("Conditions"), NotBefore=start, NotOnOrAfter=end)
    restriction = etree.SubElement(conditions, q("AudienceRestriction"))
    etree.SubElement(restriction, q("Audience")).text = claims.audience
    authn = etree.SubElement(assertion, q("AuthnStatement"), AuthnInstant=start)
    context = etree.SubElement(authn, q("AuthnContext"))
    etree.SubElement(context, q("AuthnContextClassRef")).text = _AUTHN_CONTEXT_20
    statement = etree.SubElement(assertion, q("AttributeStatement"))
    for uri, values in _claims(claims).items():
        attribute = etree.SubElement(statement, q("Attribute"), Name=uri, NameFormat=_ATTRNAME_URI)
        for value in values:
            etree.SubElement(attribute, q("AttributeValue")).text = value
    return assertion


def signed_token(
    claims: TokenClaims,
    *,
    version: SamlVersion,
    key_pem: bytes,
    cert_pem: bytes,
    algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_SHA256,
) -> etree._Element:
    """Build and sign an assertion of the given version (enveloped signature on the assertion)."""
    unsigned = (
        build_saml11_assertion(claims) if version is SamlVersion.SAML11 else build_saml20_assertion(claims)
    )
    return sign_enveloped(unsigned, key_pem=key_pem, cert_pem=cert_pem, algorithm=algorithm)
