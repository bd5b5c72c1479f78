"""MEX (WS-MetadataExchange WSDL) and FederationMetadata.xml of the simulator, built with lxml.

Pure: the base URL and certificate come in, document bytes go out.  The MEX
has the structure of a real AD FS one (policies, messages, port types, SOAP
1.2 bindings, service ports), including noise a client must skip: Windows
transport ports and, like AD FS v4, a plain-http ``/13/username`` port whose
policy also names WssUsernameToken10.  A correct client never picks it.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from bridge.idpsim import namespaces as ns

_MEX_NSMAP = {
    "wsdl": ns.WSDL,
    "xsd": ns.XSD,
    "t": ns.WST2005,
    "trust": ns.WST13,
    "soap12": ns.WSDL_SOAP12,
    "tns": ns.STS_TNS,
    "wsa10": ns.WSA,
    "wsaw": ns.WSAW,
    "wsu": ns.WSU,
    "wsp": ns.WSP,
}
_CLAIMS_OFFERED = (
    (ns.CLAIM_EMAIL, "E-Mail Address"),
    (ns.CLAIM_NAME, "Name"),
    (ns.CLAIM_UPN, "UPN"),
    (ns.CLAIM_GROUP, "Group"),
)


def _el(
    parent: etree._Element,
    namespace: str,
    local: str,
    attrs: Mapping[str, str] | None = None,
    text: str | None = None,
) -> etree._Element:
    child = etree.SubElement(parent, f"{{{namespace}}}{local}", attrib=dict(attrs or {}))
    if text is not None:
        child.text = text
    return child


def _nested(parent: etree._Element, sp: str, local: str) -> etree._Element:
    """``<sp:local><wsp:Policy/></sp:local>``; returns the inner policy."""
    return _el(_el(parent, sp, local), ns.WSP, "Policy")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Port:
    name: str
    contract: str  # IWSTrust13Async or IWSTrustFeb2005Async
    path: str
    scheme: str
    policy: str  # username-mixed | username-message | windows


def _transport_binding(parent: etree._Element, sp: str) -> None:
    inner = _nested(parent, sp, "TransportBinding")
    https = _el(_nested(inner, sp, "TransportToken"), sp, "HttpsToken")
    if sp == ns.SP2005:
        https.set("RequireClientCertificate", "false")
    _el(_nested(inner, sp, "AlgorithmSuite"), sp, "Basic256")
    _el(_nested(inner, sp, "Layout"), sp, "Strict")
    _el(inner, sp, "IncludeTimestamp")


def _symmetric_binding(parent: etree._Element, sp: str) -> None:
    inner = _nested(parent, sp, "SymmetricBinding")
    x509_token = _el(_nested(inner, sp, "ProtectionToken"), sp, "X509Token")
    x509_token.set(f"{{{sp}}}IncludeToken", f"{sp}/IncludeToken/Never")
    token_policy = _el(x509_token, ns.WSP, "Policy")
    for local in ("RequireDerivedKeys", "RequireThumbprintReference", "WssX509V3Token10"):
        _el(token_policy, sp, local)
    _el(_nested(inner, sp, "AlgorithmSuite"), sp, "Basic256")
    _el(_nested(inner, sp, "Layout"), sp, "Strict")
    for local in ("IncludeTimestamp", "EncryptSignature", "OnlySignEntireHeadersAndBody"):
        _el(inner, sp, local)


def _username_token(parent: etree._Element, sp: str, wrapper: str) -> None:
    token = _el(_el(_el(parent, sp, wrapper), ns.WSP, "Policy"), sp, "UsernameToken")
    token.set(f"{{{sp}}}IncludeToken", f"{sp}/IncludeToken/AlwaysToRecipient")
    _el(_el(token, ns.WSP, "Policy"), sp, "WssUsernameToken10")


def _policy(root: etree._Element, port: _Port) -> None:
    is13 = port.contract == "IWSTrust13Async"
    sp = ns.SP13 if is13 else ns.SP2005
    policy = _el(root, ns.WSP, "Policy", {f"{{{ns.WSU}}}Id": f"{port.name}_policy"})
    everything = _el(_el(policy, ns.WSP, "ExactlyOne"), ns.WSP, "All")
    if port.policy == "windows":
        _el(everything, ns.HTTP_POLICY, "NegotiateAuthentication")
        _transport_binding(everything, sp)
    elif port.policy == "username-mixed":
        _transport_binding(everything, sp)
        # 1.3 AD FS writes SignedEncryptedSupportingTokens, 2005 SignedSupportingTokens.
        _username_token(
            everything, sp, "SignedEncryptedSupportingTokens" if is13 else "SignedSupportingTokens"
        )
    else:  # username over message security on plain http
        _symmetric_binding(everything, sp)
        _username_token(
            everything, sp, "SignedEncryptedSupportingTokens" if is13 else "SignedSupportingTokens"
        )
    wss11 = _nested(everything, sp, "Wss11")
    for local in (
        "MustSupportRefKeyIdentifier",
        "MustSupportRefIssuerSerial",
        "MustSupportRefThumbprint",
        "MustSupportRefEncryptedKey",
    ):
        _el(wss11, sp, local)
    trust = _nested(everything, sp, "Trust13" if is13 else "Trust10")
    for local in ("MustSupportIssuedTokens", "RequireClientEntropy", "RequireServerEntropy"):
        _el(trust, sp, local)
    _el(everything, ns.WSAW, "UsingAddressing")


_PORTS = (
    _Port(
        name="CustomBinding_IWSTrustFeb2005Async",
        contract="IWSTrustFeb2005Async",
        path="/adfs/services/trust/2005/windowstransport",
        scheme="https",
        policy="windows",
    ),
    _Port(
        name="UserNameWSTrustBinding_IWSTrustFeb2005Async",
        contract="IWSTrustFeb2005Async",
        path="/adfs/services/trust/2005/usernamemixed",
        scheme="https",
        policy="username-mixed",
    ),
    # The trap, listed before the good 1.3 port so "first match wins" clients fall into it.
    _Port(
        name="UserNameWSTrustBinding_IWSTrust13Async1",
        contract="IWSTrust13Async",
        path="/adfs/services/trust/13/username",
        scheme="http",
        policy="username-message",
    ),
    _Port(
        name="UserNameWSTrustBinding_IWSTrust13Async",
        contract="IWSTrust13Async",
        path="/adfs/services/trust/13/usernamemixed",
        scheme="https",
        policy="username-mixed",
    ),
    _Port(
        name="CustomBinding_IWSTrust13Async",
        contract="IWSTrust13Async",
        path="/adfs/services/trust/13/windowstransport",
        scheme="https",
        policy="windows",
    ),
)


def build_mex(authority: str) -> bytes:
    """The MEX WSDL for a server reachable at ``authority`` (``host:port``)."""
    root = etree.Element(
        f"{{{ns.WSDL}}}definitions", nsmap=_MEX_NSMAP, name="SecurityTokenService", targetNamespace=ns.STS_TNS
    )
    ports = _PORTS
    for port in ports:
        _policy(root, port)
    contracts = {
        "IWSTrustFeb2005Async": (
            "TrustFeb2005IssueAsync",
            ns.WST2005,
            "t:RequestSecurityToken",
            "t:RequestSecurityTokenResponse",
            f"{ns.WST2005}/RSTR/Issue",
        ),
        "IWSTrust13Async": (
            "Trust13IssueAsync",
            ns.WST13,
            "trust:RequestSecurityToken",
            "trust:RequestSecurityTokenResponseCollection",
            f"{ns.WST13}/RSTRC/IssueFinal",
        ),
    }
    for contract, (operation, _, request_el, response_el, _) in contracts.items():
        _el(
            _el(root, ns.WSDL, "message", {"name": f"{contract}_{operation}_InputMessage"}),
            ns.WSDL,
            "part",
            {"name": "request", "element": request_el},
        )
        _el(
            _el(root, ns.WSDL, "message", {"name": f"{contract}_{operation}_OutputMessage"}),
            ns.WSDL,
            "part",
            {"name": f"{operation}Result", "element": response_el},
        )
    for contract, (operation, trust_ns, _, _, response_action) in contracts.items():
        port_type = _el(root, ns.WSDL, "portType", {"name": contract})
        op = _el(port_type, ns.WSDL, "operation", {"name": operation})
        _el(
            op,
            ns.WSDL,
            "input",
            {
                f"{{{ns.WSAW}}}Action": f"{trust_ns}/RST/Issue",
                "message": f"tns:{contract}_{operation}_InputMessage",
            },
        )
        _el(
            op,
            ns.WSDL,
            "output",
            {f"{{{ns.WSAW}}}Action": response_action, "message": f"tns:{contract}_{operation}_OutputMessage"},
        )
    for port in ports:
        operation, trust_ns = contracts[port.contract][0], contracts[port.contract][1]
        binding = _el(root, ns.WSDL, "binding", {"name": port.name, "type": f"tns:{port.contract}"})
        _el(binding, ns.WSP, "PolicyReference", {"URI": f"#{port.name}_policy"})
        _el(binding, ns.WSDL_SOAP12, "binding", {"transport": ns.SOAP_HTTP_TRANSPORT})
        op = _el(binding, ns.WSDL, "operation", {"name": operation})
        _el(op, ns.WSDL_SOAP12, "operation", {"soapAction": f"{trust_ns}/RST/Issue", "style": "document"})
        for direction in ("input", "output"):
            _el(_el(op, ns.WSDL, direction), ns.WSDL_SOAP12, "body", {"use": "literal"})
    service = _el(root, ns.WSDL, "service", {"name": "SecurityTokenService"})
    for port in ports:
        address = f"{port.scheme}://{authority}{port.path}"
        wsdl_port = _el(service, ns.WSDL, "port", {"name": port.name, "binding": f"tns:{port.name}"})
        _el(wsdl_port, ns.WSDL_SOAP12, "address", {"location": address})
        _el(_el(wsdl_port, ns.WSA, "EndpointReference"), ns.WSA, "Address", text=address)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def certificate_base64(cert_pem: bytes) -> str:
    """The DER certificate in base64 on one line, as X509Certificate holds it."""
    return base64.b64encode(x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)).decode(
        "ascii"
    )


def _key_descriptor(parent: etree._Element, cert_b64: str) -> None:
    descriptor = _el(parent, ns.MD, "KeyDescriptor", {"use": "signing"})
    key_info = etree.SubElement(descriptor, f"{{{ns.DS}}}KeyInfo", nsmap={None: ns.DS})  # type: ignore[dict-item]
    _el(_el(key_info, ns.DS, "X509Data"), ns.DS, "X509Certificate", text=cert_b64)


def _endpoint(parent: etree._Element, local: str, address: str) -> None:
    reference = etree.SubElement(
        _el(parent, ns.FED, local),
        f"{{{ns.WSA}}}EndpointReference",
        nsmap={None: ns.WSA},  # type: ignore[dict-item]
    )
    _el(reference, ns.WSA, "Address", text=address)


def build_federation_metadata(*, issuer: str, authority: str, signing_cert_pem: bytes) -> bytes:
    """FederationMetadata.xml naming the issuer and its token-signing certificate (unsigned)."""
    cert_b64 = certificate_base64(signing_cert_pem)
    base = f"https://{authority}"
    root = etree.Element(
        f"{{{ns.MD}}}EntityDescriptor",
        nsmap={None: ns.MD},  # type: ignore[dict-item]
        ID=f"_{uuid.uuid4()}",
        entityID=issuer,
    )
    sts = etree.SubElement(
        root,
        f"{{{ns.MD}}}RoleDescriptor",
        nsmap={"xsi": ns.XSI, "fed": ns.FED, "auth": ns.AUTH},
        attrib={
            f"{{{ns.XSI}}}type": "fed:SecurityTokenServiceType",
            "protocolSupportEnumeration": f"{ns.WST13} {ns.WST2005} {ns.FED}",
        },
    )
    _key_descriptor(sts, cert_b64)
    token_types = _el(sts, ns.FED, "TokenTypesOffered")
    for uri in (ns.SAML20_TOKEN_TYPE, ns.SAML11_TOKEN_TYPE):
        _el(token_types, ns.FED, "TokenType", {"Uri": uri})
    claims = _el(sts, ns.FED, "ClaimTypesOffered")
    for uri, display in _CLAIMS_OFFERED:
        claim = _el(claims, ns.AUTH, "ClaimType", {"Uri": uri, "Optional": "true"})
        _el(claim, ns.AUTH, "DisplayName", text=display)
    _endpoint(sts, "SecurityTokenServiceEndpoint", f"{base}/adfs/services/trust/13/usernamemixed")
    _endpoint(sts, "PassiveRequestorEndpoint", f"{base}/adfs/ls/")
    idp = _el(
        root,
        ns.MD,
        "IDPSSODescriptor",
        {"protocolSupportEnumeration": "urn:oasis:names:tc:SAML:2.0:protocol"},
    )
    _key_descriptor(idp, cert_b64)
    for name_format in (
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    ):
        _el(idp, ns.MD, "NameIDFormat", text=name_format)
    for binding in ("HTTP-Redirect", "HTTP-POST"):
        _el(
            idp,
            ns.MD,
            "SingleSignOnService",
            {"Binding": f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}", "Location": f"{base}/adfs/ls/"},
        )
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))
