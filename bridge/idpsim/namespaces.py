"""XML namespaces and fixed URIs of the AD FS documents the simulator writes and reads."""

from __future__ import annotations

import enum

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSA_2004 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSSE11 = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSP = "http://schemas.xmlsoap.org/ws/2004/09/policy"
WST13 = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
WST2005 = "http://schemas.xmlsoap.org/ws/2005/02/trust"
SP13 = "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702"
SP2005 = "http://schemas.xmlsoap.org/ws/2005/07/securitypolicy"
MSSP = "http://schemas.microsoft.com/ws/2005/07/securitypolicy"
HTTP_POLICY = "http://schemas.microsoft.com/ws/06/2004/policy/http"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSAW = "http://www.w3.org/2006/05/addressing/wsdl"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
STS_TNS = "http://schemas.microsoft.com/ws/2008/06/identity/securitytokenservice"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
FED = "http://docs.oasis-open.org/wsfed/federation/200706"
AUTH = "http://docs.oasis-open.org/wsfed/authorization/200706"
DS = "http://www.w3.org/2000/09/xmldsig#"
XML = "http://www.w3.org/XML/1998/namespace"

SOAP_HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"  # noqa: S105
)

# Token types (WS-Trust TokenType values AD FS accepts and answers with).
SAML11_TOKEN_TYPE = "urn:oasis:names:tc:SAML:1.0:assertion"  # noqa: S105
SAML20_TOKEN_TYPE = "urn:oasis:names:tc:SAML:2.0:assertion"  # noqa: S105
SAML11_PROFILE_TYPE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1"
SAML20_PROFILE_TYPE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
SAML11_ID_VALUE_TYPE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.0#SAMLAssertionID"
SAML20_ID_VALUE_TYPE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID"

# Claim types AD FS issues (the "Windows identity" claim URIs).
CLAIM_UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
CLAIM_EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
CLAIM_NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
CLAIM_GROUP = "http://schemas.xmlsoap.org/claims/Group"


class TrustVersion(enum.Enum):
    """The two WS-Trust dialects AD FS serves on ``/13/`` and ``/2005/``."""

    WS_TRUST_13 = "13"
    WS_TRUST_2005 = "2005"

    @property
    def namespace(self) -> str:
        return WST13 if self is TrustVersion.WS_TRUST_13 else WST2005

    @property
    def request_action(self) -> str:
        return f"{self.namespace}/RST/Issue"

    @property
    def response_action(self) -> str:
        if self is TrustVersion.WS_TRUST_13:
            return f"{WST13}/RSTRC/IssueFinal"
        return f"{WST2005}/RSTR/Issue"

    @property
    def request_type(self) -> str:
        return f"{self.namespace}/Issue"

    @property
    def key_type(self) -> str:
        if self is TrustVersion.WS_TRUST_13:
            return f"{WST13}/Bearer"
        return "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey"

    @property
    def mixed_path(self) -> str:
        return f"/adfs/services/trust/{self.value}/usernamemixed"
