"""MFA required at the password paths: every dialect becomes MfaRequired, never a wrong password.

The WS-Trust and ECP answers are built by hand in the shapes AD FS, Entra and
the simulator send; the wrong-password dialects next to them must keep their
classes.  MfaRequired must also stay outside what the lockout guard counts.
"""

from __future__ import annotations

import pytest
from lxml import etree

from bridge.errors import (
    AccessDenied,
    BridgeError,
    IdpRefused,
    InvalidCredentials,
    LoginRefused,
    MfaRequired,
)
from bridge.idp.refusals import Refusal, refusal_error, refusal_from_text
from bridge.idp.saml.ecp import NS_SOAP11, read_ecp_answer
from bridge.idp.wstrust.messages import NS_SOAP12, WsTrustVersion, read_rstr
from bridge.xml.signature import NS_SAML2, NS_SAMLP2

ST = "urn:oasis:names:tc:SAML:2.0:status:"
ACS = "https://bridge.example/saml/acme/acs"
RID = "_mfa1"
SIM_ADFS_REASON = "MSIS7102: Requested Authentication Method is not supported on the STS."
SIM_ECP_MESSAGE = "Multi-factor authentication is required for this account."
AADSTS50076 = ("AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a "
               "new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.")
AADSTS50079 = ("AADSTS50079: Due to a configuration change made by your administrator, or because you moved to a "
               "new location, you must enroll in multi-factor authentication to access 'urn:x'.")


@pytest.mark.parametrize(
    "text",
    [
        SIM_ADFS_REASON,
        "MSIS7102",
        "Requested Authentication Method is not supported on the STS",
        AADSTS50076,
        AADSTS50079,
        "AADSTS50074: Strong Authentication is required.",
        "AADSTS50158: External security challenge not satisfied.",
        SIM_ECP_MESSAGE,
        "MFA required",
        "mfa is required for this user",
        "Additional authentication required",
        "additional authentication is required by policy",
        "Strong authentication required",
        "multifactor authentication is required",
        # MFA is checked first: the account is named, but the password was right.
        "Multi-factor authentication is required: access denied without a second factor.",
    ],
)
def test_mfa_wording(text: str) -> None:
    assert refusal_from_text(text) is Refusal.MFA_REQUIRED
    error = refusal_error(Refusal.MFA_REQUIRED, text)
    assert type(error) is MfaRequired and text in error.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ID3242: The security token could not be authenticated or authorized.", Refusal.CREDENTIALS),
        ("SimpleSAML\\Error\\Error: WRONGUSERPASS", Refusal.CREDENTIALS),
        ("MSIS7068: Access denied.", Refusal.ACCOUNT),
        ("AADSTS50126: Error validating credentials due to invalid username or password.", Refusal.CREDENTIALS),
        ("AADSTS50053: The account is locked.", Refusal.ACCOUNT),
        ("MSIS3127: The specified request failed.", None),
        ("Authentication method not recorded", None),  # no "required": not MFA
    ],
)
def test_neighbouring_wording_is_not_mfa(text: str, expected: Refusal | None) -> None:
    assert refusal_from_text(text) is expected


def test_mfa_required_is_not_what_the_lockout_guard_counts() -> None:
    """bridge.login.guard counts (InvalidCredentials, AccessDenied, IdpRefused) only."""
    error = refusal_error(Refusal.MFA_REQUIRED, "x")
    assert isinstance(error, LoginRefused)
    assert not isinstance(error, InvalidCredentials | AccessDenied | IdpRefused)
    assert error.code == "mfa_required"


# --- WS-Trust ---------------------------------------------------------------------------------------------


def _soap12_fault(reason: str, subcode: str = "a:RequestFailed", code: str = "s:Receiver") -> bytes:
    s = f"{{{NS_SOAP12}}}"
    envelope = etree.Element(f"{s}Envelope", nsmap={"s": NS_SOAP12, "a": "http://docs.oasis-open.org/ws-sx/ws-trust/200512"})
    fault = etree.SubElement(etree.SubElement(envelope, f"{s}Body"), f"{s}Fault")
    code_el = etree.SubElement(fault, f"{s}Code")
    etree.SubElement(code_el, f"{s}Value").text = code
    etree.SubElement(etree.SubElement(code_el, f"{s}Subcode"), f"{s}Value").text = subcode
    etree.SubElement(etree.SubElement(fault, f"{s}Reason"), f"{s}Text").text = reason
    return etree.tostring(envelope, encoding="UTF-8")


def _wstrust(status: int, body: bytes) -> BridgeError:
    for version in WsTrustVersion:
        with pytest.raises(BridgeError) as info:
            read_rstr(status=status, body=body, content_type="application/soap+xml; charset=utf-8", version=version)
    return info.value


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, _soap12_fault(SIM_ADFS_REASON), MfaRequired),  # the simulator's and AD FS's answer
        (200, _soap12_fault(SIM_ADFS_REASON), MfaRequired),
        (500, _soap12_fault(SIM_ADFS_REASON, "a:FailedAuthentication", "s:Sender"), MfaRequired),  # words win
        (500, _soap12_fault(AADSTS50076), MfaRequired),
        (500, _soap12_fault("AADSTS50158: External security challenge not satisfied."), MfaRequired),
        (401, _soap12_fault("Additional authentication required."), MfaRequired),  # words win over the 401
        # unchanged neighbours
        (500, _soap12_fault("ID3242: The security token could not be authenticated or authorized.",
                            "a:FailedAuthentication", "s:Sender"), InvalidCredentials),
        (500, _soap12_fault("MSIS7068: Access denied."), AccessDenied),
        (500, _soap12_fault("MSIS3127: The specified request failed."), IdpRefused),
    ],
)
def test_wstrust_faults(status: int, body: bytes, expected: type[BridgeError]) -> None:
    error = _wstrust(status, body)
    assert type(error) is expected


def test_a_soap11_mfa_fault() -> None:
    envelope = etree.Element(f"{{{NS_SOAP11}}}Envelope")
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{NS_SOAP11}}}Body"), f"{{{NS_SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = "s:Server"
    etree.SubElement(fault, "faultstring").text = SIM_ADFS_REASON
    error = _wstrust(500, etree.tostring(envelope))
    assert type(error) is MfaRequired and "MSIS7102" in error.detail


# --- ECP ------------------------------------------------------------------------------------------------


def _ecp_refusal(codes: tuple[str, ...], message: str | None) -> bytes:
    p, a, s = f"{{{NS_SAMLP2}}}", f"{{{NS_SAML2}}}", f"{{{NS_SOAP11}}}"
    envelope = etree.Element(f"{s}Envelope", nsmap={"soap11": NS_SOAP11})
    response = etree.SubElement(etree.SubElement(envelope, f"{s}Body"), f"{p}Response",
                                nsmap={"samlp": NS_SAMLP2, "saml": NS_SAML2}, ID="_resp-mfa", Version="2.0",
                                IssueInstant="2026-01-01T00:00:00Z", InResponseTo=RID, Destination=ACS)
    etree.SubElement(response, f"{a}Issuer").text = "https://idp.example.org/idp/shibboleth"
    status = etree.SubElement(response, f"{p}Status")
    parent = status
    for code in codes:
        parent = etree.SubElement(parent, f"{p}StatusCode", Value=code)
    if message is not None:
        etree.SubElement(status, f"{p}StatusMessage").text = message
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _ecp_fault(text: str) -> bytes:
    s = f"{{{NS_SOAP11}}}"
    envelope = etree.Element(f"{s}Envelope", nsmap={"soap11": NS_SOAP11})
    fault = etree.SubElement(etree.SubElement(envelope, f"{s}Body"), f"{s}Fault")
    etree.SubElement(fault, "faultcode").text = "soap11:Client"
    etree.SubElement(fault, "faultstring").text = text
    return etree.tostring(envelope)


def _ecp(status: int, body: bytes) -> BridgeError:
    with pytest.raises(BridgeError) as info:
        read_ecp_answer(status=status, body=body, content_type="text/xml; charset=utf-8", request_id=RID,
                        acs_url=ACS, sp_key_pem=None)
    return info.value


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # the simulator's answer: Responder / NoAuthnContext with its words, HTTP 200
        (200, _ecp_refusal((f"{ST}Responder", f"{ST}NoAuthnContext"), SIM_ECP_MESSAGE), MfaRequired),
        (200, _ecp_refusal((f"{ST}Responder", f"{ST}NoAuthnContext"), None), MfaRequired),  # the code alone
        (200, _ecp_refusal((f"{ST}Responder",), "MFA required"), MfaRequired),  # the words alone
        (200, _ecp_refusal((f"{ST}Responder", f"{ST}AuthnFailed"), AADSTS50079), MfaRequired),  # words win
        (500, _ecp_refusal((f"{ST}Responder", f"{ST}NoAuthnContext"), SIM_ECP_MESSAGE), MfaRequired),
        (200, _ecp_fault("AADSTS50076: you must use multi-factor authentication"), MfaRequired),
        # unchanged neighbours
        (200, _ecp_refusal((f"{ST}Responder", f"{ST}AuthnFailed"), None), InvalidCredentials),
        (200, _ecp_refusal((f"{ST}Responder",), "SimpleSAML\\Error\\Error: WRONGUSERPASS"), InvalidCredentials),
        (200, _ecp_refusal((f"{ST}Responder", f"{ST}RequestDenied"), None), AccessDenied),
        (200, _ecp_fault("Authentication failed"), InvalidCredentials),
    ],
)
def test_ecp_answers(status: int, body: bytes, expected: type[BridgeError]) -> None:
    error = _ecp(status, body)
    assert type(error) is expected
    if expected is MfaRequired and b"NoAuthnContext" in body:
        assert "NoAuthnContext" in error.detail
