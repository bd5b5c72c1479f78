"""bridge.idp.saml.ecp: the AuthnRequest we send, and every answer shape an ECP IdP gives back.

Answers are built here from really signed (and really encrypted) assertions in
the shape of keystoneauth's captured Shibboleth response, and every success is
fed on to ``validate_assertion``, which must accept it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import saml2.soap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    IdpRefused,
    IdpRejectedRequest,
    IdpTimeout,
    IdpUnreachable,
    InvalidCredentials,
    MfaRequired,
    SpNotRegistered,
    XmlRejected,
)
from bridge.idp.assertion import AssertionExpectations, SamlVersion, validate_assertion
from bridge.idp.saml.ecp import (
    BINDING_PAOS,
    NS_ECP,
    NS_SOAP11,
    STATUS_SUCCESS,
    EcpAnswer,
    build_authn_request,
    parse_ecp_response,
    read_ecp_answer,
)
from bridge.idpsim.tokens import TokenClaims, build_saml20_assertion, saml_datetime, signed_token
from bridge.xml.signature import NS_SAML2, NS_SAMLP2, SignaturePolicy, sign_enveloped
from tests.bridge.xml.test_encryption import encrypt_assertion
from tests.keys import load_cert, make_key_and_cert
from tests.paths import VECTORS

IDP = "https://idp.example.org/idp/shibboleth"
SP = "https://bridge.example/sp"
ACS = "https://bridge.example/saml/acs"
ECP_URL = "https://idp.example.org/idp/profile/SAML2/SOAP/ECP"
USER = "alice@example.org"
ST = "urn:oasis:names:tc:SAML:2.0:status:"
P, A, S = f"{{{NS_SAMLP2}}}", f"{{{NS_SAML2}}}", f"{{{NS_SOAP11}}}"


def _idp() -> tuple[bytes, bytes]:
    return make_key_and_cert("ecp-idp")


def _sp() -> tuple[bytes, bytes]:
    return make_key_and_cert("ecp-sp")


def _claims(request_id: str, now: datetime) -> TokenClaims:
    return TokenClaims(issuer=IDP, audience=SP, subject=USER, issued_at=now, recipient=ACS, in_response_to=request_id)


def _response(
    request_id: str,
    *,
    payload: etree._Element | None,
    codes: tuple[str, ...] = (f"{ST}Success",),
    message: str | None = None,
    destination: str | None = ACS,
    sign: bool = False,
) -> etree._Element:
    now = datetime.now(UTC)
    response = etree.Element(
        f"{P}Response",
        nsmap={"saml2p": NS_SAMLP2, "saml": NS_SAML2},  # same prefix as the assertion: lxml would rebind it
        ID="_resp" + request_id.lstrip("_"),
        Version="2.0",
        IssueInstant=saml_datetime(now),
        InResponseTo=request_id,
    )
    if destination is not None:
        response.set("Destination", destination)
    etree.SubElement(response, f"{A}Issuer").text = IDP
    status = etree.SubElement(response, f"{P}Status")
    parent = status
    for code in codes:
        parent = etree.SubElement(parent, f"{P}StatusCode", Value=code)
    if message is not None:
        etree.SubElement(status, f"{P}StatusMessage").text = message
    if payload is not None:
        response.append(payload)
    if sign:
        key, cert = _idp()
        response = sign_enveloped(response, key_pem=key, cert_pem=cert)
    return response


def _envelope(*body: etree._Element, ecp_acs: str | None = ACS) -> bytes:
    envelope = etree.Element(f"{S}Envelope", nsmap={"soap11": NS_SOAP11})
    if ecp_acs is not None:
        header = etree.SubElement(envelope, f"{S}Header")
        ecp = etree.SubElement(
            header, f"{{{NS_ECP}}}Response", nsmap={"ecp": NS_ECP}, AssertionConsumerServiceURL=ecp_acs
        )
        ecp.set(f"{S}actor", "http://schemas.xmlsoap.org/soap/actor/next")
        ecp.set(f"{S}mustUnderstand", "1")
    soap_body = etree.SubElement(envelope, f"{S}Body")
    for element in body:
        soap_body.append(element)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _signed_assertion(request_id: str) -> etree._Element:
    key, cert = _idp()
    return signed_token(_claims(request_id, datetime.now(UTC)), version=SamlVersion.SAML20, key_pem=key, cert_pem=cert)


def _validate(answer: EcpAnswer, request_id: str) -> str:
    expectations = AssertionExpectations(
        issuer=IDP,
        audience=SP,
        certificates=(load_cert(_idp()[1]),),
        policy=SignaturePolicy(),
        clock_skew=timedelta(minutes=5),
        subject_claim="nameid",
        recipient=ACS,
        in_response_to=request_id,
    )
    return validate_assertion(answer.response_xml, expectations, now=datetime.now(UTC)).subject


def _parse(raw: bytes, request_id: str, *, key: bytes | None = None) -> EcpAnswer:
    return parse_ecp_response(raw, request_id=request_id, acs_url=ACS, sp_key_pem=key)


# --- the request ----------------------------------------------------------------------------


def test_request_has_the_profile_fields() -> None:
    now = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    request = build_authn_request(sp_entity_id=SP, acs_url=ACS, idp_ecp_url=ECP_URL, now=now)
    root = etree.fromstring(request.envelope)
    assert root.tag == f"{S}Envelope"
    assert root.find(f"{S}Header") is None  # PAOS/ECP headers are for the SP leg, stripped for the IdP
    (authn,) = root.find(f"{S}Body")  # type: ignore[misc]
    assert authn.tag == f"{P}AuthnRequest"
    assert authn.get("ID") == request.request_id and request.request_id.startswith("_")
    assert authn.get("Version") == "2.0"
    assert authn.get("IssueInstant") == "2025-03-01T12:00:00Z"
    assert request.issued_at == now.replace(microsecond=0)
    assert authn.get("Destination") == ECP_URL
    assert authn.get("ProtocolBinding") == BINDING_PAOS
    assert authn.get("AssertionConsumerServiceURL") == ACS
    assert authn.findtext(f"{A}Issuer") == SP
    policy = authn.find(f"{P}NameIDPolicy")
    assert policy is not None and policy.get("AllowCreate") == "false"


def test_request_ids_are_fresh_unless_given() -> None:
    now = datetime.now(UTC)
    first = build_authn_request(sp_entity_id=SP, acs_url=ACS, idp_ecp_url=ECP_URL, now=now)
    second = build_authn_request(sp_entity_id=SP, acs_url=ACS, idp_ecp_url=ECP_URL, now=now)
    fixed = build_authn_request(sp_entity_id=SP, acs_url=ACS, idp_ecp_url=ECP_URL, now=now, request_id="_x1")
    assert first.request_id != second.request_id
    assert fixed.request_id == "_x1" and b'ID="_x1"' in fixed.envelope


def test_request_escapes_markup_in_values() -> None:
    tricky = 'https://bridge.example/sp?a=1&b="<x>"]]>'
    request = build_authn_request(sp_entity_id=tricky, acs_url=ACS, idp_ecp_url=ECP_URL, now=datetime.now(UTC))
    issuer = etree.fromstring(request.envelope).find(f".//{A}Issuer")
    assert issuer is not None and issuer.text == tricky


def test_pysaml2_reads_our_request_as_an_idp_would() -> None:
    request = build_authn_request(sp_entity_id=SP, acs_url=ACS, idp_ecp_url=ECP_URL, now=datetime.now(UTC))
    body_xml = saml2.soap.parse_soap_enveloped_saml_authn_request(request.envelope.decode())
    parsed = saml2.samlp.authn_request_from_string(body_xml)
    assert parsed.id == request.request_id
    assert parsed.destination == ECP_URL
    assert parsed.protocol_binding == BINDING_PAOS
    assert parsed.assertion_consumer_service_url == ACS
    assert parsed.issuer.text == SP
    assert parsed.name_id_policy.allow_create == "false"


def test_request_has_the_elements_of_the_captured_one() -> None:
    template = VECTORS / "ecp" / "keystone-template-authn_request.xml"
    if not template.is_file():
        pytest.skip(f"shared vectors not found at {template}")
    captured = etree.parse(str(template)).getroot()
    ours = etree.fromstring(
        build_authn_request(sp_entity_id=SP, acs_url=ACS, idp_ecp_url=ECP_URL, now=datetime.now(UTC)).envelope
    )
    # Scoping/IDPList only matters to proxying IdPs: we talk to the one IdP directly.
    optional = {f"{P}Scoping", f"{P}IDPList", f"{P}IDPEntry"}
    assert {el.tag for el in captured.iter()} - optional == {el.tag for el in ours.iter()}
    captured_request, our_request = captured.find(f".//{P}AuthnRequest"), ours.find(f".//{P}AuthnRequest")
    assert captured_request is not None and our_request is not None
    assert set(captured_request.attrib) <= set(our_request.attrib)


# --- successful answers ---------------------------------------------------------------------


def test_success_with_signed_assertion_validates() -> None:
    rid = "_req1"
    raw = _envelope(_response(rid, payload=_signed_assertion(rid)))
    answer = _parse(raw, rid)
    assert answer == EcpAnswer(response_xml=raw, encrypted=False, status=STATUS_SUCCESS)
    assert _validate(answer, rid) == USER


def test_success_with_signed_response_validates() -> None:
    rid = "_req2"
    unsigned = build_saml20_assertion(_claims(rid, datetime.now(UTC)))
    raw = _envelope(_response(rid, payload=unsigned, sign=True))
    answer = _parse(raw, rid)
    assert answer.response_xml is raw or answer.response_xml == raw
    assert _validate(answer, rid) == USER


def test_success_without_ecp_header_or_destination() -> None:
    rid = "_req3"
    raw = _envelope(_response(rid, payload=_signed_assertion(rid), destination=None), ecp_acs=None)
    assert _validate(_parse(raw, rid), rid) == USER


def test_encrypted_assertion_is_decrypted_and_validates() -> None:
    rid = "_req4"
    plaintext = etree.tostring(_signed_assertion(rid))
    encrypted = encrypt_assertion(plaintext, _sp()[1])
    raw = _envelope(_response(rid, payload=encrypted))
    answer = _parse(raw, rid, key=_sp()[0])
    assert answer.encrypted and answer.response_xml == plaintext
    assert _validate(answer, rid) == USER


def test_encrypted_assertion_needs_the_sp_key_and_its_own_signature() -> None:
    rid = "_req5"
    encrypted = encrypt_assertion(etree.tostring(_signed_assertion(rid)), _sp()[1])
    with pytest.raises(AssertionRejected) as info:
        _parse(_envelope(_response(rid, payload=encrypted)), rid)
    assert info.value.reason == "decryption"

    unsigned = etree.tostring(build_saml20_assertion(_claims(rid, datetime.now(UTC))))
    # Signing the outer Response does not help: it covers only ciphertext.
    raw = _envelope(_response(rid, payload=encrypt_assertion(unsigned, _sp()[1]), sign=True))
    with pytest.raises(AssertionRejected) as info:
        _parse(raw, rid, key=_sp()[0])
    assert info.value.reason == "signature_missing"


def test_encrypted_assertion_with_wrong_sp_key() -> None:
    rid = "_req6"
    encrypted = encrypt_assertion(etree.tostring(_signed_assertion(rid)), _sp()[1])
    other_key, _ = make_key_and_cert("ecp-other-sp")
    with pytest.raises(AssertionRejected, match="decryption"):
        _parse(_envelope(_response(rid, payload=encrypted)), rid, key=other_key)


# --- refusals of our own --------------------------------------------------------------------


def test_wrong_in_response_to() -> None:
    raw = _envelope(_response("_other", payload=_signed_assertion("_other")))
    with pytest.raises(AssertionRejected) as info:
        _parse(raw, "_mine")
    assert info.value.reason == "in_response_to"


def test_wrong_destination() -> None:
    rid = "_req7"
    raw = _envelope(_response(rid, payload=_signed_assertion(rid), destination="https://evil.example/acs"))
    with pytest.raises(AssertionRejected) as info:
        _parse(raw, rid)
    assert info.value.reason == "destination"


def test_wrong_ecp_header_consumer_url() -> None:
    rid = "_req8"
    raw = _envelope(_response(rid, payload=_signed_assertion(rid)), ecp_acs="https://evil.example/acs")
    with pytest.raises(AssertionRejected) as info:
        _parse(raw, rid)
    assert info.value.reason == "destination"


def test_two_responses_in_the_body() -> None:
    rid = "_req9"
    raw = _envelope(_response(rid, payload=_signed_assertion(rid)), _response(rid, payload=_signed_assertion(rid)))
    with pytest.raises(AssertionRejected) as info:
        _parse(raw, rid)
    assert info.value.reason == "wrapped"


def test_two_assertions_in_the_response() -> None:
    rid = "_req10"
    response = _response(rid, payload=_signed_assertion(rid))
    response.append(_signed_assertion(rid))
    with pytest.raises(AssertionRejected) as info:
        _parse(_envelope(response), rid)
    assert info.value.reason == "wrapped"


def test_success_without_assertion() -> None:
    rid = "_req11"
    with pytest.raises(AssertionRejected) as info:
        _parse(_envelope(_response(rid, payload=None)), rid)
    assert info.value.reason == "malformed"


# --- IdP refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "message", "expected"),
    [
        # saml-core 3.2.2.2, as Shibboleth, Keycloak and pysaml2-based IdPs send them
        ((f"{ST}Responder", f"{ST}AuthnFailed"), "said the IdP", InvalidCredentials),  # Shibboleth's wording
        ((f"{ST}Requester", f"{ST}AuthnFailed"), None, InvalidCredentials),
        ((f"{ST}AuthnFailed",), None, InvalidCredentials),  # a second-level code at the top: tolerated
        ((f"{ST}Requester", f"{ST}UnknownPrincipal"), "said the IdP", InvalidCredentials),
        # Keycloak forces IsPassive on ECP: NoPassive means the Basic credentials authenticated nobody.
        ((f"{ST}Responder", f"{ST}NoPassive"), "said the IdP", InvalidCredentials),
        ((f"{ST}Responder", f"{ST}RequestDenied"), "said the IdP", AccessDenied),
        ((f"{ST}Requester", f"{ST}RequestDenied"), None, AccessDenied),
        # SimpleSAMLphp: a bare Responder, the failure named in the StatusMessage
        ((f"{ST}Responder",), "SimpleSAML\\Error\\Error: WRONGUSERPASS", InvalidCredentials),
        ((f"{ST}Responder", f"{ST}AuthnFailed"), "AccountLocked", AccessDenied),
        ((f"{ST}Responder", f"{ST}RequestDenied"), "account disabled", AccessDenied),
        ((f"{ST}Responder",), "SimpleSAML\\Error\\Error: METADATANOTFOUND", SpNotRegistered),
        ((f"{ST}Requester", f"{ST}RequestDenied"), "unknown service provider", SpNotRegistered),
        ((f"{ST}Responder", f"{ST}RequestDenied"), "AssertionConsumerServiceURL not in the SP's metadata",
         SpNotRegistered),
        ((f"{ST}Requester", f"{ST}RequestUnsupported"), "said the IdP", IdpRejectedRequest),
        ((f"{ST}Requester", f"{ST}UnsupportedBinding"), None, IdpRejectedRequest),
        # The password alone cannot meet the authentication context: the IdP wants a second factor.
        ((f"{ST}Responder", f"{ST}NoAuthnContext"), "said the IdP", MfaRequired),
        ((f"{ST}Requester", f"{ST}InvalidNameIDPolicy"), None, IdpRejectedRequest),
        ((f"{ST}VersionMismatch",), "said the IdP", IdpRejectedRequest),
        # Nothing to classify by: counted as a refusal all the same (fail closed), not called a wrong password.
        ((f"{ST}Responder",), None, IdpRefused),
        ((f"{ST}Requester",), "said the IdP", IdpRefused),
        ((f"{ST}Responder", f"{ST}PartialLogout"), None, IdpRefused),
        (("urn:example:made-up",), None, IdpRefused),
    ],
)
def test_saml_status_mapping(codes: tuple[str, ...], message: str | None, expected: type[BridgeError]) -> None:
    rid = "_req12"
    raw = _envelope(_response(rid, payload=None, codes=codes, message=message))
    with pytest.raises(expected) as info:
        _parse(raw, rid)
    assert type(info.value) is expected
    assert codes[-1] in info.value.detail
    if message is not None:
        assert message in info.value.detail


def test_unknown_principal_and_bad_password_look_the_same() -> None:
    rid = "_req13"
    errors = []
    for code in ("AuthnFailed", "UnknownPrincipal"):
        raw = _envelope(_response(rid, payload=None, codes=(f"{ST}Responder", f"{ST}{code}")))
        with pytest.raises(InvalidCredentials) as info:
            _parse(raw, rid)
        errors.append(info.value)
    assert errors[0].to_json() == errors[1].to_json()


def test_a_refusal_for_another_request_is_not_believed() -> None:
    raw = _envelope(_response("_someone-else", payload=None, codes=(f"{ST}Responder", f"{ST}AuthnFailed")))
    with pytest.raises(AssertionRejected) as info:
        _parse(raw, "_req13b")
    assert info.value.reason == "in_response_to"


def _fault(code: str, text: str, detail: str | None = None) -> etree._Element:
    fault = etree.Element(f"{S}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = text
    if detail is not None:
        etree.SubElement(fault, "detail").text = detail
    return fault


@pytest.mark.parametrize(
    ("code", "text", "detail", "expected"),
    [
        ("soap11:Client", "Authentication failed", None, InvalidCredentials),
        ("soap11:Client", "invalidUserMessage", None, InvalidCredentials),
        # Keycloak: its catch-all reason, the cause in <detail>
        ("error", "Some error occurred while processing the AuthnRequest.",
         "Client is not allowed to use ECP profile.", IdpRejectedRequest),
        ("soap11:Client", "Client is not allowed to use ECP profile.", None, IdpRejectedRequest),
        # Keycloak's untranslated message keys: an issuer that is no client, a disabled client
        ("error", "invalidRequestMessage", None, SpNotRegistered),
        ("error", "loginRequesterNotEnabledMessage", None, IdpRejectedRequest),
        ("soap11:Client", "Unable to locate metadata for 'urn:loginbridge:example.org'", None, SpNotRegistered),
        # a fault that names no cause: a refusal that counts, not a wrong password
        ("error", "Some error occurred while processing the AuthnRequest.", None, IdpRefused),
        ("soap11:Server", "The IdP could not process the request.", None, IdpRefused),
    ],
)
def test_soap_fault(code: str, text: str, detail: str | None, expected: type[BridgeError]) -> None:
    with pytest.raises(expected) as info:
        _parse(_envelope(_fault(code, text, detail), ecp_acs=None), "_req14")
    assert type(info.value) is expected and text in info.value.detail
    if detail is not None:
        assert detail in info.value.detail


# --- hostile or broken input ----------------------------------------------------------------


def test_doctype_is_refused() -> None:
    rid = "_req15"
    raw = _envelope(_response(rid, payload=_signed_assertion(rid)))
    hostile = raw.replace(b"?>", b'?>\n<!DOCTYPE x [<!ENTITY e "alice">]>', 1)
    with pytest.raises(XmlRejected, match="DOCTYPE"):
        _parse(hostile, rid)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"\xff\xfe\x00<",
        b"<html><body>Sign in</body></html>",
        b'<S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope"><S:Body/></S:Envelope>',
        b'<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>',
        b'<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"/>',
        b"<a>" * 10 + b"x",
        b"<x>" + b"A" * (600 * 1024) + b"</x>",
    ],
)
def test_garbage_raises_bridge_errors(raw: bytes) -> None:
    with pytest.raises((XmlRejected, IdpProtocolError)):
        _parse(raw, "_req16")


def test_captured_shibboleth_shape_reaches_decryption() -> None:
    captured = VECTORS / "ecp" / "keystone-template-saml_assertion.xml"
    if not captured.is_file():
        pytest.skip(f"shared vectors not found at {captured}")
    raw = captured.read_bytes()
    # Template placeholders: the consumer URL is literally "$destination" and the ciphertext is fake.
    with pytest.raises(AssertionRejected) as info:
        parse_ecp_response(
            raw, request_id="_a07186e3992e70e92c17b9d249495643", acs_url="$destination", sp_key_pem=_sp()[0]
        )
    assert info.value.reason == "decryption"
    with pytest.raises(AssertionRejected) as info:
        parse_ecp_response(raw, request_id="_another", acs_url="$destination", sp_key_pem=_sp()[0])
    assert info.value.reason == "in_response_to"


def test_captured_paos_request_is_not_an_answer() -> None:
    captured = VECTORS / "ecp" / "keystone-template-soap_response.xml"
    if not captured.is_file():
        pytest.skip(f"shared vectors not found at {captured}")
    with pytest.raises(AssertionRejected) as info:
        _parse(captured.read_bytes(), "_a07186e3992e70e92c17b9d249495643")
    assert info.value.reason == "wrapped"


def _read(status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
          request_id: str = "_req20") -> EcpAnswer:
    return read_ecp_answer(status=status, body=body, content_type=content_type, request_id=request_id, acs_url=ACS,
                           sp_key_pem=None)


HTML_500 = b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body><h1>Internal Server Error</h1></body></html>"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        # an error page, not a SOAP answer: the IdP is in trouble (an outage), not the protocol
        (500, HTML_500, "text/html", IdpUnreachable),
        (500, b"500 Internal Server Error\n\nServer got itself in trouble", "text/plain", IdpUnreachable),
        (500, b'{"error":"unknown_error"}', "application/json", IdpUnreachable),  # Keycloak's error handler
        (500, b"", "", IdpUnreachable),
        (502, b"<html><body>Bad Gateway</body></html>", "text/html", IdpUnreachable),
        (503, b"Service Unavailable", "text/html", IdpUnreachable),
        (504, b"Gateway Timeout", "text/html", IdpTimeout),
        # the status alone refuses the user (Shibboleth's container and Keycloak: 401 with a Basic challenge)
        (401, b"", "", InvalidCredentials),
        (401, b"<html><body>Unauthorized</body></html>", "text/html", InvalidCredentials),
        (403, b"Forbidden", "text/plain", AccessDenied),
        # error pages that name an SP the IdP does not know
        (400, b"<html><body><p>Unknown login requester.</p></body></html>", "text/html", SpNotRegistered),
        (500, b"<html><body><h2>Metadata not found</h2><p>Unable to locate metadata for "
              b"urn:loginbridge:example.org</p></body></html>", "text/html", SpNotRegistered),
        # our request or URL: configuration
        (404, b"Not Found", "text/html", IdpRejectedRequest),
        (405, b"", "", IdpRejectedRequest),
        (400, b"<html>Bad Request</html>", "text/html", IdpRejectedRequest),
        (302, b"", "", IdpProtocolError),
        (204, b"", "", IdpProtocolError),
    ],
)
def test_answers_without_a_soap_document_are_decided_by_their_status(
    status: int, body: bytes, content_type: str, expected: type[BridgeError]
) -> None:
    with pytest.raises(expected) as info:
        _read(status, body, content_type)
    assert type(info.value) is expected
    assert f"HTTP {status}" in info.value.detail


def test_an_error_page_names_status_type_and_size_not_its_text() -> None:
    with pytest.raises(IdpUnreachable) as info:
        _read(500, HTML_500, "text/html; charset=utf-8")
    assert info.value.detail == (f"the ECP endpoint answered HTTP 500 (text/html, {len(HTML_500)} bytes), "
                                 "an error page, not a SOAP answer")


@pytest.mark.parametrize(
    ("status", "fault", "expected"),
    [
        (500, _fault("soap11:Client", "Authentication failed"), InvalidCredentials),
        (401, _fault("soap11:Client", "Authentication failed"), InvalidCredentials),
        (401, _fault("soap11:Client", "Nope."), InvalidCredentials),  # the fault names nothing: 401 decides
        (403, _fault("soap11:Client", "Nope."), AccessDenied),
        (403, _fault("soap11:Client", "Authentication failed"), InvalidCredentials),  # the words are more specific
        (500, _fault("soap11:Server", "Nope."), IdpRefused),
        (400, _fault("error", "invalidRequestMessage"), SpNotRegistered),
    ],
)
def test_soap_faults_are_read_whatever_the_status(status: int, fault: etree._Element,
                                                 expected: type[BridgeError]) -> None:
    with pytest.raises(expected) as info:
        _read(status, _envelope(fault, ecp_acs=None), SOAP_TYPE)
    assert type(info.value) is expected


SOAP_TYPE = "text/xml; charset=utf-8"


def test_a_saml_refusal_with_an_error_status_is_read() -> None:
    rid = "_req21"
    denied = _envelope(_response(rid, payload=None, codes=(f"{ST}Responder", f"{ST}RequestDenied")))
    with pytest.raises(AccessDenied):
        _read(500, denied, SOAP_TYPE, request_id=rid)
    bare = _envelope(_response(rid, payload=None, codes=(f"{ST}Responder",)))
    with pytest.raises(InvalidCredentials):
        _read(401, bare, SOAP_TYPE, request_id=rid)  # the status decides what the Response does not say
    with pytest.raises(IdpRefused):
        _read(500, bare, SOAP_TYPE, request_id=rid)


def test_a_success_with_an_error_status_is_not_believed() -> None:
    rid = "_req22"
    raw = _envelope(_response(rid, payload=_signed_assertion(rid)))
    assert _read(200, raw, SOAP_TYPE, request_id=rid).status == STATUS_SUCCESS
    with pytest.raises(IdpProtocolError, match="HTTP 500 with a successful ECP response"):
        _read(500, raw, SOAP_TYPE, request_id=rid)


def test_an_unreadable_answer_is_logged_by_its_shape(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.idp.saml.ecp")
    page = b"<!DOCTYPE html><html><body>Sign in to continue: secret-looking-text</body></html>"
    with pytest.raises(IdpProtocolError):
        _read(200, page, "text/html; charset=utf-8")
    (record,) = [r for r in caplog.records if r.name == "bridge.idp.saml.ecp" and r.levelno == logging.INFO]
    line = record.getMessage()
    assert "HTTP 200" in line and "text/html; charset=utf-8" in line and f"{len(page)} bytes" in line
    assert "first element html" in line and "idp_protocol_error" in line
    assert "secret-looking-text" not in line


# --- fuzz -------------------------------------------------------------------------------------

_FUZZ_RID = "_fuzz"
_XML_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=40)


def _fuzz_seed() -> bytes:
    return _envelope(_response(_FUZZ_RID, payload=_signed_assertion(_FUZZ_RID)))


def _check_only_bridge_errors(raw: bytes, key: bytes | None) -> None:
    try:
        answer = parse_ecp_response(raw, request_id=_FUZZ_RID, acs_url=ACS, sp_key_pem=key)
    except BridgeError as exc:
        # The catch-all in parse_ecp_response must not be what produced it.
        assert exc.detail != "ECP response could not be read", repr(exc.__cause__)
    else:
        assert isinstance(answer.response_xml, bytes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(raw: bytes) -> None:
    _check_only_bridge_errors(raw, None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_answers(data: st.DataObject) -> None:
    seed = bytearray(_fuzz_seed())
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(seed) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            seed[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del seed[position : position + data.draw(st.integers(1, 64))]
        else:
            seed[position:position] = data.draw(
                st.sampled_from([b"<", b">", b"&", b"<!---->", b'"', b"<x/>", b"</soap11:Body>", b"\x00"])
            )
        if not seed:
            break
    _check_only_bridge_errors(bytes(seed), _sp()[0])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_encrypted_answers(data: st.DataObject) -> None:
    encrypted = encrypt_assertion(etree.tostring(_signed_assertion(_FUZZ_RID)), _sp()[1])
    tree = etree.fromstring(_envelope(_response(_FUZZ_RID, payload=encrypted)))
    elements = [el for el in tree.iter() if isinstance(el.tag, str)]
    victim = data.draw(st.sampled_from(elements))
    action = data.draw(st.sampled_from(["drop", "text", "attr", "dup"]))
    parent = victim.getparent()
    if action == "drop" and parent is not None:
        parent.remove(victim)
    elif action == "text":
        victim.text = data.draw(_XML_TEXT)
    elif action == "attr" and victim.attrib:
        name = data.draw(st.sampled_from(sorted(victim.attrib)))
        victim.set(name, data.draw(_XML_TEXT))
    elif action == "dup" and parent is not None:
        parent.append(etree.fromstring(etree.tostring(victim)))
    _check_only_bridge_errors(etree.tostring(tree), _sp()[0])


def test_signed_authn_request_verifies_with_the_sp_certificate() -> None:
    from cryptography import x509

    from bridge.xml.signature import SignaturePolicy, verify_signed_node
    from tests.keys import make_key_and_cert

    key_pem, cert_pem = make_key_and_cert("sp-request-signer")
    request = build_authn_request(
        sp_entity_id="urn:sp",
        acs_url="https://bridge.example/saml/t/acs",
        idp_ecp_url="https://idp.example/idp/profile/SAML2/SOAP/ECP",
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        signing_key=(key_pem, cert_pem),
    )
    verified = verify_signed_node(
        request.envelope,
        request.request_id,
        certificates=[x509.load_pem_x509_certificate(cert_pem)],
        policy=SignaturePolicy(),
    )
    assert verified.element.get("ID") == request.request_id
    assert verified.element.get("AssertionConsumerServiceURL") == "https://bridge.example/saml/t/acs"
