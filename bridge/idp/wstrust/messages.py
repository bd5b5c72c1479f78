"""WS-Trust (1.3 and Feb 2005) client messages for AD FS usernamemixed endpoints.

Pure protocol code: :func:`build_rst` turns credentials into the SOAP 1.2
request bytes, :func:`parse_rstr` reads the answer into an :class:`RstrResult`
or raises the project's error, and :func:`read_rstr` does so for a whole HTTP
answer (status, body, content type), so that a fault, a bare 401/403 or an
error page each become the class of refusal they are (:mod:`bridge.idp.refusals`).
No I/O happens here.  The RSTR's signature is checked elsewhere on the same
raw bytes, so nothing here re-serializes the answer.
"""

from __future__ import annotations

import copy
import enum
import functools
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lxml import etree

from bridge.errors import (
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    RequestError,
    XmlRejected,
)
from bridge.idp.assertion import SamlVersion
from bridge.idp.refusals import (
    Refusal,
    error_for_status,
    log_unreadable,
    refusal_error,
    refusal_from_status,
    refusal_from_text,
)
from bridge.xml.safe import full_text, parse_untrusted

log = logging.getLogger(__name__)

SOAP12_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
RSTR_MAX_BYTES = 256 * 1024
FAULT_DETAIL_MAX = 300

NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_WSP = "http://schemas.xmlsoap.org/ws/2004/09/policy"
NS_TRUST13 = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
NS_TRUST2005 = "http://schemas.xmlsoap.org/ws/2005/02/trust"
NS_SAML11 = "urn:oasis:names:tc:SAML:1.0:assertion"
NS_SAML20 = "urn:oasis:names:tc:SAML:2.0:assertion"
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
PASSWORD_TEXT = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"  # noqa: S105 (a URI)


class WsTrustVersion(enum.Enum):
    V13 = "1.3"
    V2005 = "2005"


class TokenType(enum.Enum):
    SAML11 = NS_SAML11
    SAML20 = NS_SAML20


@dataclass(frozen=True, kw_only=True, slots=True)
class _VersionUris:
    namespace: str
    action: str
    request_type: str
    key_type: str


# WS-Trust 1.3 (OASIS, section 4.1) and the Feb 2005 draft AD FS still serves.
_URIS: dict[WsTrustVersion, _VersionUris] = {
    WsTrustVersion.V13: _VersionUris(
        namespace=NS_TRUST13,
        action=NS_TRUST13 + "/RST/Issue",
        request_type=NS_TRUST13 + "/Issue",
        key_type=NS_TRUST13 + "/Bearer",
    ),
    WsTrustVersion.V2005: _VersionUris(
        namespace=NS_TRUST2005,
        action=NS_TRUST2005 + "/RST/Issue",
        request_type=NS_TRUST2005 + "/Issue",
        key_type="http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey",
    ),
}

# TokenType URIs an RSTR may announce, and the SAML version each stands for.
_ANNOUNCED_TOKEN_TYPES: dict[str, SamlVersion] = {
    NS_SAML11: SamlVersion.SAML11,
    NS_SAML20: SamlVersion.SAML20,
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1": SamlVersion.SAML11,
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0": SamlVersion.SAML20,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class RstrResult:
    token_type: str  # the TokenType URI the RSTR announced ("" if absent)
    saml_version: SamlVersion  # decided from the token element's namespace
    assertion_id: str  # AssertionID (1.1) or ID (2.0) of the token element
    # The tree parsed from the raw bytes, so the validator need not parse them again.
    document: etree._Element | None = field(default=None, repr=False, compare=False)


def soap_action(version: WsTrustVersion) -> str:
    """The wsa:Action (and SOAP action) URI of an Issue request in ``version``."""
    return _URIS[version].action


def _timestamp(moment: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix: the form AD FS itself emits."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def build_rst(
    *,
    version: WsTrustVersion,
    endpoint_url: str,
    username: str,
    password: str,
    applies_to: str,
    token_type: TokenType | None,
    now: datetime,
    message_id: str | None = None,
    lifetime: timedelta = timedelta(minutes=5),
) -> bytes:
    """Build the SOAP 1.2 RequestSecurityToken envelope (UTF-8, with XML declaration).

    Every value goes in through lxml, so a password holding ``<``, ``&`` or
    ``]]>`` is escaped by the serializer, never by hand.  A value XML 1.0
    cannot carry at all (NUL, most control characters) raises
    :class:`~bridge.errors.RequestError` without echoing the value.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise BridgeError("build_rst: now must be timezone-aware")
    uris = _URIS[version]
    try:
        return _build(
            uris=uris,
            endpoint_url=endpoint_url,
            username=username,
            password=password,
            applies_to=applies_to,
            token_type=token_type,
            now=now,
            message_id=message_id or f"urn:uuid:{uuid.uuid4()}",
            lifetime=lifetime,
        )
    except ValueError as exc:  # lxml: "All strings must be XML compatible", bad surrogates
        raise RequestError("the user name or password holds characters XML cannot carry") from exc


_S = f"{{{NS_SOAP12}}}"
_WSA = f"{{{NS_WSA}}}"
_WSU = f"{{{NS_WSU}}}"
_WSSE = f"{{{NS_WSSE}}}"
_WSU_ID = f"{_WSU}Id"
_MUST = {f"{_S}mustUnderstand": "1"}


def _build(
    *,
    uris: _VersionUris,
    endpoint_url: str,
    username: str,
    password: str,
    applies_to: str,
    token_type: TokenType | None,
    now: datetime,
    message_id: str,
    lifetime: timedelta,
) -> bytes:
    """A copy of the tenant's envelope skeleton with this request's values filled in.

    Copying a cached lxml tree and setting seven values costs about half of
    building the twenty elements again for every login (bench/login.py).
    """
    envelope = copy.deepcopy(_skeleton(uris, endpoint_url, applies_to, token_type))
    header = envelope[0]
    _child(header, f"{_WSA}MessageID").text = message_id
    security = _child(header, f"{_WSSE}Security")
    stamp = _child(security, f"{_WSU}Timestamp")
    stamp.set(_WSU_ID, f"id-{uuid.uuid4()}")
    _child(stamp, f"{_WSU}Created").text = _timestamp(now)
    _child(stamp, f"{_WSU}Expires").text = _timestamp(now + lifetime)
    token = _child(security, f"{_WSSE}UsernameToken")
    token.set(_WSU_ID, f"id-{uuid.uuid4()}")
    _child(token, f"{_WSSE}Username").text = username
    _child(token, f"{_WSSE}Password").text = password
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _child(parent: etree._Element, tag: str) -> etree._Element:
    # iterchildren(tag) runs in C; find() goes through ElementPath in Python (3 us a call).
    for found in parent.iterchildren(tag):
        return found
    raise BridgeError(f"envelope skeleton lacks {tag}")  # pragma: no cover - the skeleton always has it


@functools.lru_cache(maxsize=64)
def _skeleton(
    uris: _VersionUris, endpoint_url: str, applies_to: str, token_type: TokenType | None
) -> etree._Element:
    """The parts of the RST that are the same for every login to one endpoint (never handed out: copy it)."""
    envelope = etree.Element(
        f"{_S}Envelope",
        nsmap={"s": NS_SOAP12, "wsa": NS_WSA, "wsu": NS_WSU, "wsse": NS_WSSE},
    )
    header = etree.SubElement(envelope, f"{_S}Header")
    etree.SubElement(header, f"{_WSA}Action", _MUST).text = uris.action
    etree.SubElement(header, f"{_WSA}MessageID")
    reply_to = etree.SubElement(header, f"{_WSA}ReplyTo")
    etree.SubElement(reply_to, f"{_WSA}Address").text = WSA_ANONYMOUS
    etree.SubElement(header, f"{_WSA}To", _MUST).text = endpoint_url

    # WSS 1.1 SOAP Message Security section 10 (Timestamp) first, then the UsernameToken
    # (Username Token Profile 1.1 section 3.1, PasswordText).  Built with lxml, not zeep's
    # UsernameToken/get_security_header: the same elements, but zeep's helpers (ElementMaker,
    # header lookups by XPath) took ~35 of the ~100 us build_rst cost per login.
    security = etree.SubElement(header, f"{_WSSE}Security", _MUST)
    stamp = etree.SubElement(security, f"{_WSU}Timestamp")
    etree.SubElement(stamp, f"{_WSU}Created")
    etree.SubElement(stamp, f"{_WSU}Expires")
    token = etree.SubElement(security, f"{_WSSE}UsernameToken")
    etree.SubElement(token, f"{_WSSE}Username")
    etree.SubElement(token, f"{_WSSE}Password", Type=PASSWORD_TEXT)

    wst = f"{{{uris.namespace}}}"
    body = etree.SubElement(envelope, f"{_S}Body")
    rst = etree.SubElement(body, f"{wst}RequestSecurityToken", nsmap={"wst": uris.namespace})
    applies = etree.SubElement(rst, f"{{{NS_WSP}}}AppliesTo", nsmap={"wsp": NS_WSP})
    epr = etree.SubElement(applies, f"{_WSA}EndpointReference")
    etree.SubElement(epr, f"{_WSA}Address").text = applies_to
    etree.SubElement(rst, f"{wst}KeyType").text = uris.key_type
    etree.SubElement(rst, f"{wst}RequestType").text = uris.request_type
    if token_type is not None:
        etree.SubElement(rst, f"{wst}TokenType").text = token_type.value
    return envelope


# --- the answer ----------------------------------------------------------------

# Fault subcodes with a meaning of their own: WS-Security 1.1 section 12 (wsse:) and WS-Trust 1.3
# section 11 (wst:).  A bare wst:RequestFailed ("The specified request failed", AD FS's MSIS3127) says
# nothing about why, so it is not here: such a fault is a refusal the bridge cannot classify.
_SUBCODE_REFUSALS: dict[str, Refusal] = {
    "FailedAuthentication": Refusal.CREDENTIALS,
    "InvalidScope": Refusal.SP_NOT_REGISTERED,
    "InvalidRequest": Refusal.CONFIGURATION,
    "BadRequest": Refusal.CONFIGURATION,
    "InvalidSecurity": Refusal.CONFIGURATION,
    "InvalidSecurityToken": Refusal.CONFIGURATION,
    "UnsupportedSecurityToken": Refusal.CONFIGURATION,
    "UnsupportedAlgorithm": Refusal.CONFIGURATION,
    "FailedCheck": Refusal.CONFIGURATION,
    "MessageExpired": Refusal.CONFIGURATION,
    "InvalidTimeRange": Refusal.CONFIGURATION,
    "ExpiredData": Refusal.CONFIGURATION,
}


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Element children only: comments and processing instructions are skipped."""
    return [child for child in parent if isinstance(child.tag, str)]


def _qname(element: etree._Element) -> tuple[str, str]:
    q = etree.QName(element)
    return q.namespace or "", q.localname


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True, kw_only=True, slots=True)
class _Fault:
    codes: tuple[str, ...]  # Code/Value, then each nested Subcode/Value (1.2); faultcode (1.1)
    reasons: tuple[str, ...]  # every Reason/Text (1.2); faultstring (1.1)

    def detail(self) -> str:
        text = f"SOAP fault {' / '.join(self.codes) or '(no code)'}: {' | '.join(self.reasons)}"
        return text[:FAULT_DETAIL_MAX]


def _read_fault(fault: etree._Element) -> _Fault:
    ns = etree.QName(fault).namespace
    codes: list[str] = []
    reasons: list[str] = []
    if ns == NS_SOAP12:
        code = fault.find(f"{{{NS_SOAP12}}}Code")
        while code is not None:
            codes.append(_squash(full_text(code.find(f"{{{NS_SOAP12}}}Value"))))
            code = code.find(f"{{{NS_SOAP12}}}Subcode")
        reason = fault.find(f"{{{NS_SOAP12}}}Reason")
        if reason is not None:
            reasons.extend(_squash(full_text(t)) for t in reason.findall(f"{{{NS_SOAP12}}}Text"))
    else:  # SOAP 1.1: unqualified faultcode / faultstring (section 4.4)
        codes.append(_squash(full_text(fault.find("faultcode"))))
        reasons.append(_squash(full_text(fault.find("faultstring"))))
    return _Fault(codes=tuple(c for c in codes if c), reasons=tuple(r for r in reasons if r))


def parse_fault(root: etree._Element, *, status: int = 200) -> BridgeError | None:
    """The error a SOAP 1.2 or 1.1 fault in ``root`` (an Envelope) stands for, or None.

    The Reason text decides first when it names the failure (MSIS7068 is access
    denied even under a FailedAuthentication subcode; ID3082 and MSIS7007 are an
    unknown relying party), then the most specific subcode, then an HTTP 401 or
    403 around the fault.  A fault that fits none (MSIS3127 "The specified
    request failed", an unknown code) is :class:`~bridge.errors.IdpRefused`: it
    answers this user's request, so it counts toward the throttles.  Fault
    text is not secret, so it goes into the admin detail.
    """
    ns, local = _qname(root)
    if local != "Envelope" or ns not in (NS_SOAP12, NS_SOAP11):
        return None
    body = root.find(f"{{{ns}}}Body")
    if body is None:
        return None
    faults = [child for child in _elements(body) if _qname(child) == (ns, "Fault")]
    if not faults:
        return None
    fault = _read_fault(faults[0])
    detail = fault.detail() if status == 200 else f"HTTP {status}, {fault.detail()}"
    refusal = refusal_from_text(" ".join(fault.reasons))
    if refusal is None:
        subcodes = [code.rsplit(":", 1)[-1] for code in reversed(fault.codes)]
        refusal = next((_SUBCODE_REFUSALS[c] for c in subcodes if c in _SUBCODE_REFUSALS), None)
    return refusal_error(refusal or refusal_from_status(status), detail)


def _single(found: list[etree._Element], what: str) -> etree._Element:
    if len(found) != 1:
        raise IdpProtocolError(f"RSTR: expected exactly one {what}, found {len(found)}")
    return found[0]


def read_rstr(*, status: int, body: bytes, content_type: str, version: WsTrustVersion) -> RstrResult:
    """The whole HTTP answer of a usernamemixed endpoint: the token, or the error it stands for.

    AD FS answers faults with HTTP 500, so a SOAP fault is read whatever the
    status.  An answer with no fault and a status other than 200 - an HTML
    error page, an empty 401 - is decided by its status
    (:func:`bridge.idp.refusals.error_for_status`): a 5xx page is an outage,
    not a protocol error.  An answer that cannot be read is logged at INFO with
    its shape (never its content).
    """
    try:
        if status == 200:
            return parse_rstr(body, version=version)
        try:
            root = parse_untrusted(body, what="WS-Trust response", max_bytes=RSTR_MAX_BYTES)
        except XmlRejected:
            root = None
        error = parse_fault(root, status=status) if root is not None else None
        if error is not None:
            log.debug("AD FS answered HTTP %s with a SOAP fault: %s", status, error.detail)
            raise error
        raise error_for_status(status, body, content_type, what="AD FS")
    except IdpProtocolError as exc:
        if not isinstance(exc, AssertionRejected):
            log_unreadable(log, "WS-Trust", status=status, content_type=content_type, body=body, exc=exc)
        raise


def parse_rstr(raw: bytes, *, version: WsTrustVersion) -> RstrResult:
    """Read an AD FS answer: the one SAML token it carries, or the error its fault means.

    Accepts a 1.3 RequestSecurityTokenResponseCollection or a bare
    RequestSecurityTokenResponse in either trust namespace (farms differ),
    but exactly one RequestedSecurityToken in the whole document, holding
    exactly one SAML 1.1 or 2.0 Assertion.  The signature is not checked here.
    """
    root = parse_untrusted(raw, what="WS-Trust response", max_bytes=RSTR_MAX_BYTES)
    error = parse_fault(root)
    if error is not None:
        # DEBUG: the request's one outcome line (bridge.app middleware) carries this detail.
        log.debug("AD FS answered with a SOAP fault: %s", error.detail)
        raise error
    ns, local = _qname(root)
    if local != "Envelope" or ns not in (NS_SOAP12, NS_SOAP11):
        raise IdpProtocolError(f"RSTR: root element is {{{ns}}}{local}, not a SOAP Envelope")
    body = _single(root.findall(f"{{{ns}}}Body"), "SOAP Body")

    tokens = [
        el
        for trust_ns in (NS_TRUST13, NS_TRUST2005)
        for el in root.iter(f"{{{trust_ns}}}RequestedSecurityToken")
    ]
    requested = _single(tokens, "RequestedSecurityToken")
    rstr = requested.getparent()
    trust_ns = etree.QName(requested).namespace or ""
    if rstr is None or _qname(rstr) != (trust_ns, "RequestSecurityTokenResponse"):
        raise IdpProtocolError("RSTR: RequestedSecurityToken is not inside a RequestSecurityTokenResponse")
    holder = rstr.getparent()
    if holder is not body:
        if holder is None or _qname(holder) != (trust_ns, "RequestSecurityTokenResponseCollection"):
            raise IdpProtocolError("RSTR: RequestSecurityTokenResponse is not in the SOAP Body")
        if holder.getparent() is not body:
            raise IdpProtocolError("RSTR: RequestSecurityTokenResponseCollection is not in the SOAP Body")
        _single([el for el in _elements(holder)], "RequestSecurityTokenResponse in the collection")
    if trust_ns != _URIS[version].namespace:
        log.debug("WS-Trust %s request answered in namespace %s", version.value, trust_ns)
    return read_requested_token(rstr, requested, document=root)


def read_requested_token(
    rstr: etree._Element, requested: etree._Element, *, document: etree._Element
) -> RstrResult:
    """The one SAML 1.1 or 2.0 Assertion in ``requested`` (a RequestedSecurityToken of ``rstr``).

    Shared by the WS-Trust answer and the WS-Federation ``wresult``: nothing but
    the token inside, with an ID, of the type the RSTR announces (if it does).
    ``document`` is the tree both came from, handed on to the validator.
    """
    trust_ns = etree.QName(requested).namespace or ""
    if (requested.text or "").strip() or any((child.tail or "").strip() for child in requested):
        raise IdpProtocolError("RSTR: RequestedSecurityToken holds text besides the token")
    token = _single(_elements(requested), "element inside RequestedSecurityToken")
    tag_ns, tag_local = _qname(token)
    if tag_local != "Assertion" or tag_ns not in (NS_SAML11, NS_SAML20):
        raise IdpProtocolError(
            f"RSTR: the requested token is {{{tag_ns}}}{tag_local}, not a SAML 1.1 or 2.0 Assertion"
        )
    saml_version = SamlVersion.SAML11 if tag_ns == NS_SAML11 else SamlVersion.SAML20
    assertion_id = token.get("AssertionID" if saml_version is SamlVersion.SAML11 else "ID") or ""
    if not assertion_id.strip():
        raise IdpProtocolError(f"RSTR: the SAML {saml_version.value} Assertion has no ID")

    announced = rstr.findall(f"{{{trust_ns}}}TokenType")
    token_type = _squash(full_text(_single(announced, "TokenType"))) if announced else ""
    expected = _ANNOUNCED_TOKEN_TYPES.get(token_type)
    if expected is not None and expected is not saml_version:
        raise IdpProtocolError(
            f"RSTR: TokenType {token_type} announced, but the token is a SAML {saml_version.value} Assertion"
        )
    return RstrResult(token_type=token_type, saml_version=saml_version, assertion_id=assertion_id,
                      document=document)
