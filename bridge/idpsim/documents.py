"""WS-Trust messages of the simulator: read the RST, write the RSTR and AD FS-worded SOAP faults.

Pure: bytes in, typed values out; bytes out.  The request is untrusted
input, so :func:`parse_rst` either returns an :class:`RstRequest` or raises
:class:`RstRejected` (a :class:`~bridge.errors.RequestError`) carrying the
fault AD FS would answer with.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lxml import etree

from bridge.errors import RequestError, XmlRejected
from bridge.idpsim import namespaces as ns
from bridge.idpsim.namespaces import TrustVersion
from bridge.xml.safe import full_text, parse_untrusted

MAX_RST_BYTES = 64 * 1024
SOAP12_CONTENT_TYPE = "application/soap+xml; charset=utf-8"


class FaultKind(enum.Enum):
    """The faults the simulator answers with, each worded as AD FS words it."""

    FAILED_AUTHENTICATION = "failed_authentication"  # bad password or unknown user
    FAILED_AUTHENTICATION_ADFS2 = "failed_authentication_adfs2"  # the same, in AD FS 2.0's (WCF's) words
    ACCESS_DENIED = "access_denied"  # authenticated, but issuance authorization refuses
    INVALID_SCOPE = "invalid_scope"  # AppliesTo is not a known relying party
    INVALID_SECURITY = "invalid_security"  # no usable wsse:Security / UsernameToken
    INVALID_REQUEST = "invalid_request"  # not a WS-Trust Issue request we can read
    REQUEST_FAILED = "request_failed"  # anything else
    MFA_REQUIRED = "mfa_required"  # right password, but an additional-authentication rule applies


@dataclass(frozen=True, kw_only=True, slots=True)
class _FaultWording:
    code: str  # Sender | Receiver
    subcode_ns: str | None  # None: the WS-Trust namespace of the endpoint
    subcode: str
    reason: str


# Codes and texts as AD FS sends them (SOAP 1.2 part 1 section 5.4 for the structure).
_WORDING = {
    FaultKind.FAILED_AUTHENTICATION: _FaultWording(
        code="Sender",
        subcode_ns=ns.WSSE,
        subcode="FailedAuthentication",
        reason="ID3242: The security token could not be authenticated or authorized.",
    ),
    # The shape of the fault keystoneauth captured from an AD FS 2.0 farm (tests/.../ADFS_fault.xml).
    FaultKind.FAILED_AUTHENTICATION_ADFS2: _FaultWording(
        code="Sender",
        subcode_ns=ns.WSSE,
        subcode="FailedAuthentication",
        reason="At least one security token in the message could not be validated.",
    ),
    # AD FS raises MSIS7068 from its issuance pipeline after authentication succeeded,
    # which WIF reports as a trust RequestFailed receiver fault.
    FaultKind.ACCESS_DENIED: _FaultWording(
        code="Receiver", subcode_ns=None, subcode="RequestFailed", reason="MSIS7068: Access denied."
    ),
    FaultKind.INVALID_SCOPE: _FaultWording(
        code="Sender",
        subcode_ns=None,
        subcode="InvalidRequest",
        reason="ID3082: The request scope is not valid or is unsupported.",
    ),
    FaultKind.INVALID_SECURITY: _FaultWording(
        code="Sender",
        subcode_ns=ns.WSSE,
        subcode="InvalidSecurity",
        reason="An error occurred when verifying security for the message.",
    ),
    FaultKind.INVALID_REQUEST: _FaultWording(
        code="Sender",
        subcode_ns=None,
        subcode="InvalidRequest",
        reason="MSIS3127: The specified request failed.",
    ),
    FaultKind.REQUEST_FAILED: _FaultWording(
        code="Receiver",
        subcode_ns=None,
        subcode="RequestFailed",
        reason="MSIS3127: The specified request failed.",
    ),
    # AD FS's answer on an active (WS-Trust) endpoint when an additional-authentication rule
    # covers the user: the password was right, but no second factor can travel this way.
    FaultKind.MFA_REQUIRED: _FaultWording(
        code="Receiver",
        subcode_ns=None,
        subcode="RequestFailed",
        reason="MSIS7102: Requested Authentication Method is not supported on the STS.",
    ),
}


class RstRejected(RequestError):
    """The RST could not be used; ``fault`` is what to answer."""

    code = "wstrust_request_rejected"

    def __init__(self, fault: FaultKind, detail: str, *, message_id: str | None = None) -> None:
        super().__init__(detail)
        self.fault = fault
        self.message_id = message_id


class SamlTokenKind(enum.Enum):
    SAML11 = "1.1"
    SAML20 = "2.0"


@dataclass(frozen=True, kw_only=True, slots=True)
class RstRequest:
    """What the simulator needs from an RST (Issue) request."""

    version: TrustVersion
    username: str
    password: str = field(repr=False)
    applies_to: str | None
    token_type: str | None
    action: str
    message_id: str | None

    @property
    def token_kind(self) -> SamlTokenKind:
        """SAML 2.0 only when asked for; AD FS defaults to SAML 1.1."""
        if self.token_type in (ns.SAML20_TOKEN_TYPE, ns.SAML20_PROFILE_TYPE):
            return SamlTokenKind.SAML20
        return SamlTokenKind.SAML11

    @property
    def answered_token_type(self) -> str:
        """The TokenType written in the RSTR: the requested form, else the SAML 1.0 URN."""
        if self.token_kind is SamlTokenKind.SAML20:
            return self.token_type or ns.SAML20_TOKEN_TYPE
        if self.token_type == ns.SAML11_PROFILE_TYPE:
            return ns.SAML11_PROFILE_TYPE
        return ns.SAML11_TOKEN_TYPE


def _child(parent: etree._Element | None, namespaces: tuple[str, ...], local: str) -> etree._Element | None:
    if parent is None:
        return None
    for namespace in namespaces:
        found = parent.find(f"{{{namespace}}}{local}")
        if found is not None:
            return found
    return None


def parse_rst(raw: bytes, *, version: TrustVersion) -> RstRequest:
    """Read a SOAP 1.2 RST for the endpoint of ``version``; raise RstRejected otherwise."""
    try:
        envelope = parse_untrusted(raw, what="RST", max_bytes=MAX_RST_BYTES)
    except XmlRejected as exc:
        raise RstRejected(FaultKind.INVALID_REQUEST, str(exc)) from exc
    if envelope.tag != f"{{{ns.SOAP12}}}Envelope":
        raise RstRejected(
            FaultKind.INVALID_REQUEST, f"not a SOAP 1.2 envelope: {etree.QName(envelope).localname}"
        )
    header = _child(envelope, (ns.SOAP12,), "Header")
    body = _child(envelope, (ns.SOAP12,), "Body")
    addressing = (ns.WSA, ns.WSA_2004)
    message_id_el = _child(header, addressing, "MessageID")
    message_id = full_text(message_id_el).strip() or None
    action = full_text(_child(header, addressing, "Action")).strip()
    if action != version.request_action:
        raise RstRejected(FaultKind.INVALID_REQUEST, f"unexpected action {action!r}", message_id=message_id)
    security = _child(header, (ns.WSSE,), "Security")
    token = _child(security, (ns.WSSE,), "UsernameToken")
    username_el = _child(token, (ns.WSSE,), "Username")
    password_el = _child(token, (ns.WSSE,), "Password")
    if username_el is None or password_el is None:
        raise RstRejected(
            FaultKind.INVALID_SECURITY,
            "no wsse:UsernameToken with Username and Password",
            message_id=message_id,
        )
    password_type = password_el.get("Type")
    if password_type not in (None, ns.PASSWORD_TEXT):
        raise RstRejected(FaultKind.INVALID_SECURITY, "only PasswordText is supported", message_id=message_id)
    username = full_text(username_el).strip()
    if not username:
        raise RstRejected(FaultKind.INVALID_SECURITY, "empty Username", message_id=message_id)
    rst = _child(body, (version.namespace,), "RequestSecurityToken")
    if rst is None:
        raise RstRejected(
            FaultKind.INVALID_REQUEST,
            f"no RequestSecurityToken in {version.namespace}",
            message_id=message_id,
        )
    request_type = full_text(_child(rst, (version.namespace,), "RequestType")).strip()
    if request_type and request_type != version.request_type:
        raise RstRejected(
            FaultKind.INVALID_REQUEST, f"unsupported RequestType {request_type!r}", message_id=message_id
        )
    applies_to_el = _child(
        _child(_child(rst, (ns.WSP,), "AppliesTo"), addressing, "EndpointReference"), addressing, "Address"
    )
    token_type = full_text(_child(rst, (version.namespace,), "TokenType")).strip() or None
    return RstRequest(
        version=version,
        username=username,
        password=full_text(password_el),
        applies_to=full_text(applies_to_el).strip() or None,
        token_type=token_type,
        action=action,
        message_id=message_id,
    )


def _el(
    parent: etree._Element, namespace: str, local: str, text: str | None = None, **attrs: str
) -> etree._Element:
    child = etree.SubElement(parent, f"{{{namespace}}}{local}", attrib=attrs)
    if text is not None:
        child.text = text
    return child


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _envelope(action: str, relates_to: str | None) -> tuple[etree._Element, etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{ns.SOAP12}}}Envelope", nsmap={"s": ns.SOAP12, "a": ns.WSA, "u": ns.WSU})
    header = _el(envelope, ns.SOAP12, "Header")
    _el(header, ns.WSA, "Action", action).set(f"{{{ns.SOAP12}}}mustUnderstand", "1")
    if relates_to:
        _el(header, ns.WSA, "RelatesTo", relates_to)
    body = _el(envelope, ns.SOAP12, "Body")
    return envelope, header, body


def build_fault(kind: FaultKind, *, version: TrustVersion, relates_to: str | None = None) -> bytes:
    """A SOAP 1.2 fault as AD FS sends it (served with HTTP 500)."""
    wording = _WORDING[kind]
    envelope, _, body = _envelope(ns.FAULT_ACTION, relates_to)
    fault = _el(body, ns.SOAP12, "Fault")
    code = _el(fault, ns.SOAP12, "Code")
    _el(code, ns.SOAP12, "Value", f"s:{wording.code}")
    subcode = _el(code, ns.SOAP12, "Subcode")
    subcode_ns = wording.subcode_ns or version.namespace
    value = etree.SubElement(subcode, f"{{{ns.SOAP12}}}Value", nsmap={"a": subcode_ns})
    value.text = f"a:{wording.subcode}"
    reason = _el(fault, ns.SOAP12, "Reason")
    _el(reason, ns.SOAP12, "Text", wording.reason).set(f"{{{ns.XML}}}lang", "en-US")
    return bytes(etree.tostring(envelope, encoding="utf-8"))


def fault_reason(kind: FaultKind) -> str:
    return _WORDING[kind].reason


@dataclass(frozen=True, kw_only=True, slots=True)
class IssuedToken:
    """Token elements to put under RequestedSecurityToken, with what the RSTR says about them."""

    elements: tuple[etree._Element, ...]
    assertion_id: str
    kind: SamlTokenKind
    created: datetime
    expires: datetime


def _token_reference(parent: etree._Element, local: str, namespace: str, token: IssuedToken) -> None:
    holder = _el(parent, namespace, local)
    reference = etree.SubElement(
        holder, f"{{{ns.WSSE}}}SecurityTokenReference", nsmap={"o": ns.WSSE, "k": ns.WSSE11}
    )
    saml20 = token.kind is SamlTokenKind.SAML20
    reference.set(f"{{{ns.WSSE11}}}TokenType", ns.SAML20_PROFILE_TYPE if saml20 else ns.SAML11_PROFILE_TYPE)
    _el(
        reference,
        ns.WSSE,
        "KeyIdentifier",
        token.assertion_id,
        ValueType=ns.SAML20_ID_VALUE_TYPE if saml20 else ns.SAML11_ID_VALUE_TYPE,
    )


def fill_rstr(
    response: etree._Element,
    *,
    version: TrustVersion,
    applies_to: str | None,
    token: IssuedToken,
    token_type: str,
    references: bool = True,
) -> None:
    """Write the children of a RequestSecurityTokenResponse, in the order AD FS writes them.

    Shared by the WS-Trust answer and the WS-Federation passive ``wresult``
    (which AD FS sends without the attached/unattached references).
    """
    trust = version.namespace
    lifetime = _el(response, trust, "Lifetime")
    _el(lifetime, ns.WSU, "Created", _iso(token.created))
    _el(lifetime, ns.WSU, "Expires", _iso(token.expires))
    if applies_to is not None:
        applies = etree.SubElement(response, f"{{{ns.WSP}}}AppliesTo", nsmap={"wsp": ns.WSP})
        reference = etree.SubElement(applies, f"{{{ns.WSA}}}EndpointReference", nsmap={"wsa": ns.WSA})
        _el(reference, ns.WSA, "Address", applies_to)
    holder = _el(response, trust, "RequestedSecurityToken")
    for element in token.elements:
        holder.append(element)
    if references:
        _token_reference(response, "RequestedAttachedReference", trust, token)
        _token_reference(response, "RequestedUnattachedReference", trust, token)
    _el(response, trust, "TokenType", token_type)
    _el(response, trust, "RequestType", version.request_type)
    _el(response, trust, "KeyType", version.key_type)


def build_rstr(
    request: RstRequest, token: IssuedToken, *, now: datetime, doctype: str | None = None
) -> bytes:
    """The RSTR (1.3: inside a RequestSecurityTokenResponseCollection; 2005: bare)."""
    version = request.version
    trust = version.namespace
    envelope, header, body = _envelope(version.response_action, request.message_id)
    security = _el(header, ns.WSSE, "Security")
    security.set(f"{{{ns.SOAP12}}}mustUnderstand", "1")
    timestamp = _el(security, ns.WSU, "Timestamp")
    timestamp.set(f"{{{ns.WSU}}}Id", "_0")
    _el(timestamp, ns.WSU, "Created", _iso(now))
    _el(timestamp, ns.WSU, "Expires", _iso(now + timedelta(minutes=5)))
    if version is TrustVersion.WS_TRUST_13:
        collection = etree.SubElement(
            body, f"{{{trust}}}RequestSecurityTokenResponseCollection", nsmap={"trust": trust}
        )
        response = _el(collection, trust, "RequestSecurityTokenResponse")
    else:
        response = etree.SubElement(body, f"{{{trust}}}RequestSecurityTokenResponse", nsmap={"t": trust})
    fill_rstr(
        response,
        version=version,
        applies_to=request.applies_to,
        token=token,
        token_type=request.answered_token_type,
    )
    if doctype is not None:
        return bytes(etree.tostring(envelope, encoding="utf-8", xml_declaration=True, doctype=doctype))
    return bytes(etree.tostring(envelope, encoding="utf-8"))
