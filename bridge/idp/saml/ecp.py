"""SAML 2.0 ECP, client side: the AuthnRequest we post to the IdP and the checks on its answer.

The bridge is both the SP and the ECP client (saml-profiles section 4.2), so
there is no SP round trip: the request goes straight into a SOAP 1.1
envelope for the IdP.  Per section 4.2.4.2 the ECP sends the IdP only the
AuthnRequest in the Body (the SP-facing ``paos:Request``/``ecp:Request``
headers are removed; Shibboleth and Keycloak read the Body, and Keycloak
checks ``Destination`` against its endpoint).

Pure: bytes in, typed values out, no I/O.  pysaml2 does not check
InResponseTo or Destination on the SOAP path, so this module does, then
hands :func:`bridge.idp.assertion.validate_assertion` the bytes to verify.

:func:`read_ecp_answer` takes the whole HTTP answer (status, body, content
type): every refusal an IdP can give, in any dialect (a SAML status, a SOAP
fault, HTTP 401/403, an error page), becomes one of the classes of
:mod:`bridge.idp.refusals`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from bridge.errors import (
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    XmlRejected,
)
from bridge.idp.refusals import (
    Refusal,
    clip,
    error_for_status,
    log_unreadable,
    refusal_error,
    refusal_from_status,
    refusal_from_text,
)
from bridge.idp.saml.response import (
    RESPONSE_TAG,
    STATUS_PREFIX,
    STATUS_SUCCESS,
    check_addressing,
    read_status,
    take_assertion,
)
from bridge.xml.safe import full_text, parse_untrusted
from bridge.xml.signature import NS_SAML2, NS_SAMLP2, sign_enveloped

log = logging.getLogger(__name__)

NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_ECP = "urn:oasis:names:tc:SAML:2.0:profiles:SSO:ecp"
NS_PAOS = "urn:liberty:paos:2003-08"
BINDING_PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"

MAX_ECP_RESPONSE_BYTES = 512 * 1024  # encrypted assertions grow base64 by a third

_STATUS = STATUS_PREFIX
# saml-core section 3.2.2.2: what each status code says about a refused login.
_STATUS_REFUSALS: dict[str, Refusal] = {
    # AuthnFailed and UnknownPrincipal look the same to the user: never reveal which.
    f"{_STATUS}AuthnFailed": Refusal.CREDENTIALS,
    f"{_STATUS}UnknownPrincipal": Refusal.CREDENTIALS,
    # The bridge never asks for passive authentication; Keycloak forces IsPassive on ECP, so its
    # NoPassive means the Basic credentials did not authenticate anybody (e.g. an unknown user).
    f"{_STATUS}NoPassive": Refusal.CREDENTIALS,
    # "Able to process the request but has chosen not to respond": the IdP refuses this principal
    # (Shibboleth and the simulator for a disabled account; Keycloak's default for its own errors).
    f"{_STATUS}RequestDenied": Refusal.ACCOUNT,
    # The request itself asks for something the IdP will not do: our configuration.
    f"{_STATUS}VersionMismatch": Refusal.CONFIGURATION,
    f"{_STATUS}RequestUnsupported": Refusal.CONFIGURATION,
    f"{_STATUS}UnsupportedBinding": Refusal.CONFIGURATION,
    # The IdP cannot satisfy the authentication context with the password it was given: it wants a
    # second factor (the simulator answers an MFA user so).  Never read as a wrong password.
    f"{_STATUS}NoAuthnContext": Refusal.MFA_REQUIRED,
    f"{_STATUS}InvalidNameIDPolicy": Refusal.CONFIGURATION,
    f"{_STATUS}InvalidAttrNameOrValue": Refusal.CONFIGURATION,
    f"{_STATUS}UnknownAttrProfile": Refusal.CONFIGURATION,
    f"{_STATUS}NoAvailableIDP": Refusal.CONFIGURATION,
    f"{_STATUS}NoSupportedIDP": Refusal.CONFIGURATION,
    f"{_STATUS}ProxyCountExceeded": Refusal.CONFIGURATION,
    f"{_STATUS}ResourceNotRecognized": Refusal.CONFIGURATION,
    f"{_STATUS}RequestVersionDeprecated": Refusal.CONFIGURATION,
    f"{_STATUS}RequestVersionTooHigh": Refusal.CONFIGURATION,
    f"{_STATUS}RequestVersionTooLow": Refusal.CONFIGURATION,
}

_S = f"{{{NS_SOAP11}}}"
_P = f"{{{NS_SAMLP2}}}"
_A = f"{{{NS_SAML2}}}"
_RESPONSE = RESPONSE_TAG


@dataclass(frozen=True, kw_only=True, slots=True)
class EcpRequest:
    """The SOAP envelope to POST to the IdP's ECP endpoint, and the id its answer must echo."""

    request_id: str
    envelope: bytes
    issued_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class EcpAnswer:
    """A successful ECP answer, ready for ``validate_assertion``.

    ``response_xml`` is the received envelope untouched when the assertion was
    in the clear (so a signature on the Response or on the assertion can be
    checked), or the decrypted assertion's plaintext octets when it was
    encrypted; in that case the assertion must carry its own signature (this
    module has already required one), and a signature the Response carries
    over the ciphertext is verified on the envelope by the caller
    (:func:`bridge.idp.assertion.verify_response_signature`).
    """

    response_xml: bytes
    encrypted: bool
    status: str


def new_request_id() -> str:
    """An xs:ID (must not start with a digit) with 128 bits of randomness."""
    return "_" + uuid.uuid4().hex


def issue_instant(now: datetime) -> datetime:
    """``now`` in UTC, whole seconds: the IssueInstant every IdP parses (some refuse fractions)."""
    return (now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)).replace(microsecond=0)


def authn_request_element(
    *,
    request_id: str,
    issued: datetime,
    destination: str,
    protocol_binding: str,
    acs_url: str,
    sp_entity_id: str,
    name_id_format: str | None = None,
) -> etree._Element:
    """Our samlp:AuthnRequest (saml-core 3.4.1), for either binding that carries it.

    NameIDPolicy AllowCreate is false: signing in must never make the IdP create
    an identifier (or an account) for the bridge.
    """
    request = etree.Element(
        f"{_P}AuthnRequest",
        nsmap={"samlp": NS_SAMLP2, "saml": NS_SAML2},
        ID=request_id,
        Version="2.0",
        IssueInstant=issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        Destination=destination,
        ProtocolBinding=protocol_binding,
        AssertionConsumerServiceURL=acs_url,
    )
    etree.SubElement(request, f"{_A}Issuer").text = sp_entity_id
    policy = etree.SubElement(request, f"{_P}NameIDPolicy")
    if name_id_format is not None:
        policy.set("Format", name_id_format)
    policy.set("AllowCreate", "false")
    return request


def build_authn_request(
    *,
    sp_entity_id: str,
    acs_url: str,
    idp_ecp_url: str,
    now: datetime,
    request_id: str | None = None,
    signing_key: tuple[bytes, bytes] | None = None,
) -> EcpRequest:
    """The SOAP 1.1 envelope holding our AuthnRequest (saml-core 3.4.1, profiles 4.2.4.2).

    ``signing_key`` (key PEM, certificate PEM) signs the AuthnRequest, for IdPs
    whose metadata says WantAuthnRequestsSigned.
    """
    rid = request_id if request_id is not None else new_request_id()
    issued = issue_instant(now)
    envelope = etree.Element(f"{_S}Envelope", nsmap={"S": NS_SOAP11})
    body = etree.SubElement(envelope, f"{_S}Body")
    request = authn_request_element(
        request_id=rid, issued=issued, destination=idp_ecp_url, protocol_binding=BINDING_PAOS,
        acs_url=acs_url, sp_entity_id=sp_entity_id,
    )
    if signing_key is not None:
        request = sign_enveloped(request, key_pem=signing_key[0], cert_pem=signing_key[1])
    body.append(request)
    raw = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return EcpRequest(request_id=rid, envelope=raw, issued_at=issued)


def parse_ecp_response(raw: bytes, *, request_id: str, acs_url: str, sp_key_pem: bytes | None) -> EcpAnswer:
    """Check the IdP's SOAP answer; return what to validate, or raise a :class:`BridgeError`."""
    root = parse_untrusted(raw, what="ECP response", max_bytes=MAX_ECP_RESPONSE_BYTES)
    return _parse_guarded(root, raw, request_id=request_id, acs_url=acs_url, sp_key_pem=sp_key_pem, status=200)


def read_ecp_answer(
    *, status: int, body: bytes, content_type: str, request_id: str, acs_url: str, sp_key_pem: bytes | None
) -> EcpAnswer:
    """The whole HTTP answer of the ECP endpoint: what to validate, or the error it stands for.

    200 is read as a SOAP answer (a fault there is a refusal too).  Any other
    status is read as SOAP when the body is a SOAP envelope (a fault or a SAML
    error Response, with 401/403 deciding a fault the bridge cannot place);
    otherwise the status decides (:func:`bridge.idp.refusals.error_for_status`):
    a 5xx error page is an outage, not a protocol error.  An answer that cannot
    be read is logged at INFO with its shape (never its content).
    """
    try:
        if status == 200:
            return parse_ecp_response(body, request_id=request_id, acs_url=acs_url, sp_key_pem=sp_key_pem)
        try:
            root = parse_untrusted(body, what="ECP response", max_bytes=MAX_ECP_RESPONSE_BYTES)
        except XmlRejected:
            root = None
        if root is not None and root.tag == f"{_S}Envelope":
            _parse_guarded(root, body, request_id=request_id, acs_url=acs_url, sp_key_pem=sp_key_pem, status=status)
            raise IdpProtocolError(f"IdP answered HTTP {status} with a successful ECP response")
        raise error_for_status(status, body, content_type, what="the ECP endpoint")
    except IdpProtocolError as exc:
        if not isinstance(exc, AssertionRejected):
            log_unreadable(log, "ECP", status=status, content_type=content_type, body=body, exc=exc)
        raise


# --- parsing ------------------------------------------------------------------------------------


def _parse_guarded(
    root: etree._Element, raw: bytes, *, request_id: str, acs_url: str, sp_key_pem: bytes | None, status: int
) -> EcpAnswer:
    try:
        return _parse(root, raw, request_id=request_id, acs_url=acs_url, sp_key_pem=sp_key_pem, status=status)
    except BridgeError:
        raise
    except Exception as exc:  # a parser of untrusted input lets nothing else escape
        log.exception("unexpected failure reading an ECP response")
        raise IdpProtocolError("ECP response could not be read") from exc


def _parse(
    root: etree._Element, raw: bytes, *, request_id: str, acs_url: str, sp_key_pem: bytes | None, status: int
) -> EcpAnswer:
    if root.tag != f"{_S}Envelope":
        raise IdpProtocolError(f"ECP response is not a SOAP 1.1 Envelope ({_name(root)})")
    bodies = root.findall(f"{_S}Body")
    if len(bodies) != 1:
        raise IdpProtocolError("ECP response must have exactly one SOAP Body")
    children = [el for el in bodies[0] if isinstance(el.tag, str)]
    faults = [el for el in children if el.tag == f"{_S}Fault"]
    if faults:
        raise _fault_error(faults[0], status)
    responses = [el for el in root.iter(_RESPONSE)]
    if len(responses) != 1 or len(children) != 1 or children[0] is not responses[0]:
        raise AssertionRejected(
            "wrapped", f"the SOAP Body must hold exactly one samlp:Response ({len(responses)} found)"
        )
    _check_ecp_header(root, acs_url)
    response = responses[0]
    check_addressing(response, request_id=request_id, acs_url=acs_url)
    status_code = _check_status(response, status)
    taken = take_assertion(root, response, raw, sp_key_pem=sp_key_pem, max_bytes=MAX_ECP_RESPONSE_BYTES)
    return EcpAnswer(response_xml=taken.xml, encrypted=taken.encrypted, status=status_code)


def _check_ecp_header(root: etree._Element, acs_url: str) -> None:
    """saml-profiles 4.2.4.3: the ecp:Response header names where the ECP may deliver."""
    headers = root.findall(f"{_S}Header")
    if len(headers) > 1:
        raise IdpProtocolError("ECP response has more than one SOAP Header")
    if not headers:
        return
    ecp_responses = headers[0].findall(f"{{{NS_ECP}}}Response")
    if len(ecp_responses) > 1:
        raise IdpProtocolError("more than one ecp:Response header")
    if ecp_responses and ecp_responses[0].get("AssertionConsumerServiceURL") != acs_url:
        raise AssertionRejected("destination", "ecp:Response names another consumer URL")


def _check_status(response: etree._Element, http_status: int) -> str:
    """Success, or the error the SAML status means (saml-core 3.2.2.2).

    The StatusMessage decides first when it names the failure (SimpleSAMLphp
    sends a bare Responder with ``WRONGUSERPASS``; an unknown SP is said in
    words), then the most specific status code.  A refusal that fits no class
    is :class:`~bridge.errors.IdpRefused` (unless it came with HTTP 401 or 403):
    the Response answers our request for this user, so it counts toward the
    throttles all the same.
    """
    status = read_status(response)
    if status.success:
        return STATUS_SUCCESS
    detail = status.detail()
    log.debug("IdP refused the ECP request: %s", detail)
    refusal = refusal_from_text(status.message)
    if refusal is None:
        refusal = next((_STATUS_REFUSALS[c] for c in reversed(status.codes) if c in _STATUS_REFUSALS), None)
    raise refusal_error(refusal or refusal_from_status(http_status), detail)


def _fault_error(fault: etree._Element, status: int) -> BridgeError:
    """SOAP 1.1 Fault (section 4.4): classed by its faultstring and detail, else by the HTTP status.

    Keycloak puts its message key in faultstring and the reason in ``detail``
    ("Client is not allowed to use ECP profile.").
    """
    code = full_text(fault.find("faultcode")).strip()
    text = " ".join(full_text(fault.find("faultstring")).split())
    extra = " ".join(full_text(fault.find("detail")).split())
    detail = clip(f"SOAP fault {code}: {text}" + (f" ({extra})" if extra else ""))
    log.debug("IdP answered the ECP request with %s", detail)
    refusal = refusal_from_text(f"{text} {extra}") or refusal_from_status(status)
    return refusal_error(refusal, f"HTTP {status}, {detail}" if status != 200 else detail)


def _name(element: etree._Element) -> str:
    return clip(str(element.tag), 120)
