"""A samlp:Response's own signature must verify, also around a separately signed (and encrypted) assertion.

Real keys and signatures throughout: the IdP signs the assertion and then the
Response around it (the ciphertext, when the assertion is encrypted for the
SP); the tampered cases change the Response outside the assertion after it
was signed, so the assertion's own signature still verifies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from bridge.errors import AssertionRejected
from bridge.idp.assertion import (
    AssertionExpectations,
    SamlVersion,
    validate_assertion,
    verify_response_signature,
)
from bridge.idp.saml.ecp import NS_ECP, NS_SOAP11, EcpAnswer, parse_ecp_response
from bridge.idpsim.tokens import TokenClaims, saml_datetime, signed_token
from bridge.xml.signature import NS_SAML2, NS_SAMLP2, SignaturePolicy, sign_enveloped
from tests.bridge.xml.test_encryption import encrypt_assertion
from tests.keys import load_cert, make_key_and_cert

IDP = "https://idp.example.org/idp/shibboleth"
SP = "https://bridge.example/sp"
ACS = "https://bridge.example/saml/acs"
USER = "alice@example.org"
A, P, S = f"{{{NS_SAML2}}}", f"{{{NS_SAMLP2}}}", f"{{{NS_SOAP11}}}"


def _idp() -> tuple[bytes, bytes]:
    return make_key_and_cert("ecp-idp")


def _sp() -> tuple[bytes, bytes]:
    return make_key_and_cert("ecp-sp")


def _signed_assertion(request_id: str) -> etree._Element:
    claims = TokenClaims(issuer=IDP, audience=SP, subject=USER, issued_at=datetime.now(UTC), recipient=ACS,
                         in_response_to=request_id)
    key, cert = _idp()
    return signed_token(claims, version=SamlVersion.SAML20, key_pem=key, cert_pem=cert)


def _response(request_id: str, *, payload: etree._Element) -> etree._Element:
    response = etree.Element(
        f"{P}Response", nsmap={"saml2p": NS_SAMLP2, "saml": NS_SAML2}, ID="_resp" + request_id.lstrip("_"),
        Version="2.0", IssueInstant=saml_datetime(datetime.now(UTC)), InResponseTo=request_id, Destination=ACS,
    )
    etree.SubElement(response, f"{A}Issuer").text = IDP
    status = etree.SubElement(response, f"{P}Status")
    etree.SubElement(status, f"{P}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:Success")
    response.append(payload)
    return response


def _envelope(response: etree._Element) -> bytes:
    envelope = etree.Element(f"{S}Envelope", nsmap={"soap11": NS_SOAP11})
    header = etree.SubElement(envelope, f"{S}Header")
    etree.SubElement(header, f"{{{NS_ECP}}}Response", nsmap={"ecp": NS_ECP}, AssertionConsumerServiceURL=ACS)
    etree.SubElement(envelope, f"{S}Body").append(response)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _parse(raw: bytes, request_id: str, *, key: bytes | None = None) -> EcpAnswer:
    return parse_ecp_response(raw, request_id=request_id, acs_url=ACS, sp_key_pem=key)


def _expectations(request_id: str) -> AssertionExpectations:
    return AssertionExpectations(
        issuer=IDP, audience=SP, certificates=(load_cert(_idp()[1]),), policy=SignaturePolicy(),
        clock_skew=timedelta(minutes=5), subject_claim="nameid", recipient=ACS, in_response_to=request_id,
    )


def _validate(answer: EcpAnswer, request_id: str) -> str:
    expectations = _expectations(request_id)
    return validate_assertion(answer.response_xml, expectations, now=datetime.now(UTC)).subject


def _signed_response(payload: etree._Element, request_id: str, *, key: tuple[bytes, bytes] | None = None,
                     tamper: bool = False) -> bytes:
    """The Response signed by the IdP (or ``key``), optionally changed afterwards outside the payload."""
    response = _response(request_id, payload=payload)
    signing_key, cert = key if key is not None else _idp()
    signed = sign_enveloped(response, key_pem=signing_key, cert_pem=cert)
    if tamper:
        issuer = signed.find(f"{A}Issuer")
        assert issuer is not None
        issuer.text = IDP + "/evil"
    return _envelope(signed)


# --- assertion in the clear -------------------------------------------------------------------


def test_signed_response_around_signed_assertion_validates() -> None:
    rid = "_rs1"
    raw = _signed_response(_signed_assertion(rid), rid)
    assert _validate(_parse(raw, rid), rid) == USER


def test_tampered_response_signature_is_refused_although_the_assertion_signature_holds() -> None:
    rid = "_rs2"
    raw = _signed_response(_signed_assertion(rid), rid, tamper=True)
    answer = _parse(raw, rid)  # the structure is fine; the signatures are the validator's
    with pytest.raises(AssertionRejected) as info:
        _validate(answer, rid)
    assert info.value.reason == "signature_invalid"


def test_response_signed_with_an_unpinned_key_is_refused() -> None:
    rid = "_rs3"
    raw = _signed_response(_signed_assertion(rid), rid, key=make_key_and_cert("not-the-ecp-idp"))
    with pytest.raises(AssertionRejected) as info:
        _validate(_parse(raw, rid), rid)
    assert info.value.reason == "certificate_mismatch"


# --- encrypted assertion -------------------------------------------------------------------------


def _encrypted(rid: str) -> etree._Element:
    return encrypt_assertion(etree.tostring(_signed_assertion(rid)), _sp()[1])


def test_encrypted_signed_assertion_in_a_signed_response_validates() -> None:
    rid = "_rs4"
    raw = _signed_response(_encrypted(rid), rid)
    answer = _parse(raw, rid, key=_sp()[0])
    assert answer.encrypted
    assert verify_response_signature(raw, _expectations(rid), now=datetime.now(UTC)) is True
    assert _validate(answer, rid) == USER


def test_tampered_response_around_an_encrypted_assertion_is_refused() -> None:
    rid = "_rs5"
    raw = _signed_response(_encrypted(rid), rid, tamper=True)
    answer = _parse(raw, rid, key=_sp()[0])
    # The decrypted assertion alone still verifies: only the envelope shows the broken outer signature.
    assert validate_assertion(answer.response_xml, _expectations(rid), now=datetime.now(UTC)).subject == USER
    with pytest.raises(AssertionRejected) as info:
        verify_response_signature(raw, _expectations(rid), now=datetime.now(UTC))
    assert info.value.reason == "signature_invalid"


def test_unsigned_response_around_an_encrypted_assertion_has_nothing_to_verify() -> None:
    rid = "_rs6"
    raw = _envelope(_response(rid, payload=_encrypted(rid)))
    assert verify_response_signature(raw, _expectations(rid), now=datetime.now(UTC)) is False
