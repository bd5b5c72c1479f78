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
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    IdpRejectedRequest,
    IdpTimeout,
    IdpUnreachable,
    InvalidCredentials,
    XmlRejected,
)
from bridge.xml.encryption import decrypt_assertion
from bridge.xml.safe import full_text, parse_untrusted
from bridge.xml.signature import NS_DS, NS_SAML2, NS_SAMLP2, sign_enveloped

log = logging.getLogger(__name__)

NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_ECP = "urn:oasis:names:tc:SAML:2.0:profiles:SSO:ecp"
NS_PAOS = "urn:liberty:paos:2003-08"
BINDING_PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"

MAX_ECP_RESPONSE_BYTES = 512 * 1024  # encrypted assertions grow base64 by a third

_STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
STATUS_SUCCESS = f"{_STATUS}Success"
_CREDENTIAL_STATUSES = frozenset({f"{_STATUS}AuthnFailed", f"{_STATUS}UnknownPrincipal"})
_DENIED_STATUSES = frozenset({f"{_STATUS}RequestDenied"})
# Fault texts that mean "wrong user or password" (Keycloak puts its message key in faultstring).
_FAULT_BAD_CREDENTIALS = re.compile(
    r"authentication\s+failed|invalid\s+(user|credentials|password)|invalidUserMessage|"
    r"invalidUserCredentials",
    re.IGNORECASE,
)

_S = f"{{{NS_SOAP11}}}"
_P = f"{{{NS_SAMLP2}}}"
_A = f"{{{NS_SAML2}}}"
_RESPONSE = f"{_P}Response"
_ASSERTION = f"{_A}Assertion"
_ENCRYPTED_ASSERTION = f"{_A}EncryptedAssertion"
_DETAIL_CHARS = 300


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
    encrypted; in that case only a signature on the assertion itself can be
    verified, and this module has already required that one is present.
    """

    response_xml: bytes
    encrypted: bool
    status: str


def new_request_id() -> str:
    """An xs:ID (must not start with a digit) with 128 bits of randomness."""
    return "_" + uuid.uuid4().hex


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
    issued = (now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)).replace(microsecond=0)
    envelope = etree.Element(f"{_S}Envelope", nsmap={"S": NS_SOAP11})
    body = etree.SubElement(envelope, f"{_S}Body")
    request = etree.SubElement(
        body,
        f"{_P}AuthnRequest",
        nsmap={"samlp": NS_SAMLP2, "saml": NS_SAML2},
        ID=rid,
        Version="2.0",
        IssueInstant=issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        Destination=idp_ecp_url,
        ProtocolBinding=BINDING_PAOS,
        AssertionConsumerServiceURL=acs_url,
    )
    etree.SubElement(request, f"{_A}Issuer").text = sp_entity_id
    etree.SubElement(request, f"{_P}NameIDPolicy", AllowCreate="false")
    if signing_key is not None:
        signed = sign_enveloped(request, key_pem=signing_key[0], cert_pem=signing_key[1])
        body.replace(request, signed)
    raw = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return EcpRequest(request_id=rid, envelope=raw, issued_at=issued)


def parse_ecp_response(raw: bytes, *, request_id: str, acs_url: str, sp_key_pem: bytes | None) -> EcpAnswer:
    """Check the IdP's SOAP answer; return what to validate, or raise a :class:`BridgeError`."""
    try:
        return _parse(raw, request_id=request_id, acs_url=acs_url, sp_key_pem=sp_key_pem)
    except BridgeError:
        raise
    except Exception as exc:  # a parser of untrusted input lets nothing else escape
        log.exception("unexpected failure reading an ECP response")
        raise IdpProtocolError("ECP response could not be read") from exc


def error_for_http_status(status: int) -> BridgeError | None:
    """The error an ECP endpoint's HTTP status means; None when the body must be read (200, 500 = fault)."""
    if status in (200, 500):
        return None
    if status == 401:  # Shibboleth and Keycloak answer bad Basic credentials with 401
        return InvalidCredentials("IdP answered 401 to the ECP request")
    if status == 403:
        return AccessDenied("IdP answered 403 to the ECP request")
    if 300 <= status < 400:
        return IdpProtocolError(f"IdP answered {status} (a redirect): the URL is not an ECP endpoint")
    if status in (404, 405):
        return IdpRejectedRequest(f"IdP answered {status}: ECP is not enabled at this URL")
    if status == 504:
        return IdpTimeout("IdP answered 504")
    if status >= 500:
        return IdpUnreachable(f"IdP answered {status}")
    if 400 <= status < 500:
        return IdpRejectedRequest(f"IdP answered {status} to the ECP request")
    return IdpProtocolError(f"IdP answered unexpected HTTP status {status}")


# --- parsing ------------------------------------------------------------------------------------


def _parse(raw: bytes, *, request_id: str, acs_url: str, sp_key_pem: bytes | None) -> EcpAnswer:
    root = parse_untrusted(raw, what="ECP response", max_bytes=MAX_ECP_RESPONSE_BYTES)
    if root.tag != f"{_S}Envelope":
        raise IdpProtocolError(f"ECP response is not a SOAP 1.1 Envelope ({_name(root)})")
    bodies = root.findall(f"{_S}Body")
    if len(bodies) != 1:
        raise IdpProtocolError("ECP response must have exactly one SOAP Body")
    children = [el for el in bodies[0] if isinstance(el.tag, str)]
    faults = [el for el in children if el.tag == f"{_S}Fault"]
    if faults:
        raise _fault_error(faults[0])
    responses = [el for el in root.iter(_RESPONSE)]
    if len(responses) != 1 or len(children) != 1 or children[0] is not responses[0]:
        raise AssertionRejected(
            "wrapped", f"the SOAP Body must hold exactly one samlp:Response ({len(responses)} found)"
        )
    _check_ecp_header(root, acs_url)
    response = responses[0]
    if response.get("Version") != "2.0":
        raise IdpProtocolError("samlp:Response without Version 2.0")
    if response.get("InResponseTo") != request_id:
        raise AssertionRejected("in_response_to", "the Response answers another request")
    destination = response.get("Destination")
    if destination is not None and destination != acs_url:
        raise AssertionRejected("destination", "the Response is addressed to another consumer URL")
    status = _check_status(response)

    plain = [el for el in root.iter(_ASSERTION)]
    encrypted = [el for el in root.iter(_ENCRYPTED_ASSERTION)]
    if len(plain) + len(encrypted) != 1:
        raise AssertionRejected(
            "wrapped" if plain or encrypted else "malformed",
            f"{len(plain)} assertions and {len(encrypted)} encrypted assertions, expected exactly one",
        )
    holder = (plain or encrypted)[0]
    if holder.getparent() is not response:
        raise AssertionRejected("wrapped", "the assertion is not a child of the Response")
    if plain:
        return EcpAnswer(response_xml=bytes(raw), encrypted=False, status=status)
    if sp_key_pem is None:
        raise AssertionRejected("decryption", "the assertion is encrypted and no SP key is configured")
    decrypted = decrypt_assertion(holder, key_pem=sp_key_pem)
    _require_signed_assertion(decrypted.plaintext)
    return EcpAnswer(response_xml=decrypted.plaintext, encrypted=True, status=status)


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


def _check_status(response: etree._Element) -> str:
    """Success, or the error the SAML status means (saml-core 3.2.2.2)."""
    status = response.find(f"{_P}Status")
    code = status.find(f"{_P}StatusCode") if status is not None else None
    if status is None or code is None:
        raise IdpProtocolError("samlp:Response without Status/StatusCode")
    codes: list[str] = []
    node: etree._Element | None = code
    while node is not None and len(codes) < 5:
        codes.append((node.get("Value") or "").strip())
        node = node.find(f"{_P}StatusCode")
    if codes[0] == STATUS_SUCCESS:
        return STATUS_SUCCESS
    message = full_text(status.find(f"{_P}StatusMessage")).strip()
    detail = _clip(" / ".join(codes) + (f": {message}" if message else ""))
    log.debug("IdP refused the ECP request: %s", detail)
    if _CREDENTIAL_STATUSES.intersection(codes):
        # AuthnFailed and UnknownPrincipal look the same to the user: do not reveal which.
        raise InvalidCredentials(detail)
    if _DENIED_STATUSES.intersection(codes):
        raise AccessDenied(detail)
    raise IdpRejectedRequest(detail)


def _fault_error(fault: etree._Element) -> BridgeError:
    """SOAP 1.1 Fault (section 4.4): bad credentials when its text says so, else a refused request."""
    code = full_text(fault.find("faultcode")).strip()
    text = full_text(fault.find("faultstring")).strip()
    detail = _clip(f"SOAP fault {code}: {text}")
    log.debug("IdP answered the ECP request with %s", detail)
    if _FAULT_BAD_CREDENTIALS.search(text):
        return InvalidCredentials(detail)
    return IdpRejectedRequest(detail)


def _require_signed_assertion(plaintext: bytes) -> None:
    """A decrypted assertion must be one saml:Assertion signed by itself: the outer Response's
    signature (if any) covers only the ciphertext, which says nothing once decrypted."""
    try:
        root = parse_untrusted(plaintext, what="decrypted assertion", max_bytes=MAX_ECP_RESPONSE_BYTES)
    except XmlRejected as exc:
        raise AssertionRejected("decryption", "the decrypted assertion is not acceptable XML") from exc
    if root.tag != _ASSERTION:
        raise AssertionRejected("decryption", "the decrypted content is not a saml:Assertion")
    if root.find(f"{{{NS_DS}}}Signature") is None:
        raise AssertionRejected("signature_missing", "an encrypted assertion must be signed itself")


def _name(element: etree._Element) -> str:
    return _clip(str(element.tag), 120)


def _clip(text: str, limit: int = _DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
