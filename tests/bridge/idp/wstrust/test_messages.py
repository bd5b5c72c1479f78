"""bridge.idp.wstrust.messages: the RST we send and the RSTR / SOAP faults AD FS answers with."""

from __future__ import annotations

import copy
import logging
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.errors import (
    AccessDenied,
    BridgeError,
    IdpProtocolError,
    IdpRefused,
    IdpRejectedRequest,
    IdpTimeout,
    IdpUnreachable,
    InvalidCredentials,
    RequestError,
    SpNotRegistered,
    XmlRejected,
)
from bridge.idp.wstrust.messages import (
    NS_SAML11,
    NS_SAML20,
    NS_SOAP11,
    NS_SOAP12,
    NS_TRUST13,
    NS_TRUST2005,
    NS_WSA,
    NS_WSSE,
    NS_WSU,
    SOAP12_CONTENT_TYPE,
    RstrResult,
    SamlVersion,
    TokenType,
    WsTrustVersion,
    build_rst,
    parse_rstr,
    read_rstr,
    soap_action,
)
from bridge.xml.safe import full_text, parse_untrusted
from tests.paths import VECTORS

ENDPOINT = "https://fs.example.com/adfs/services/trust/13/usernamemixed"
NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
NS_WSP = "http://schemas.xmlsoap.org/ws/2004/09/policy"
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
)


def vector(name: str) -> bytes:
    path = VECTORS / "adfs" / name
    if not path.is_file():
        pytest.skip(f"shared test vectors not found at {VECTORS} (../shared beside the checkout)")
    return path.read_bytes()


def rst(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "version": WsTrustVersion.V13,
        "endpoint_url": ENDPOINT,
        "username": "alice@example.com",
        "password": "correct horse",
        "applies_to": "urn:loginbridge:test",
        "token_type": TokenType.SAML20,
        "now": NOW,
        "message_id": "urn:uuid:11111111-2222-3333-4444-555555555555",
    }
    args.update(overrides)
    return build_rst(**args)  # type: ignore[arg-type]


def one(root: etree._Element, path: str) -> etree._Element:
    ns = {
        "s": NS_SOAP12,
        "wsa": NS_WSA,
        "wsse": NS_WSSE,
        "wsu": NS_WSU,
        "wsp": NS_WSP,
        "t13": NS_TRUST13,
        "t05": NS_TRUST2005,
    }
    found = root.xpath(path, namespaces=ns)
    assert isinstance(found, list) and len(found) == 1, (path, found)
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


# --- build_rst -----------------------------------------------------------------


def test_rst_13_has_every_header_and_body_element() -> None:
    raw = rst()
    assert raw.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = parse_untrusted(raw)
    must = f"{{{NS_SOAP12}}}mustUnderstand"
    action = one(root, "/s:Envelope/s:Header/wsa:Action")
    assert action.text == "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
    assert action.get(must) == "1"
    assert (
        one(root, "/s:Envelope/s:Header/wsa:MessageID").text
        == "urn:uuid:11111111-2222-3333-4444-555555555555"
    )
    assert one(root, "/s:Envelope/s:Header/wsa:ReplyTo/wsa:Address").text == (
        "http://www.w3.org/2005/08/addressing/anonymous"
    )
    to = one(root, "/s:Envelope/s:Header/wsa:To")
    assert to.text == ENDPOINT and to.get(must) == "1"
    security = one(root, "/s:Envelope/s:Header/wsse:Security")
    assert security.get(must) == "1"
    children = [etree.QName(c).localname for c in security]
    assert children == ["Timestamp", "UsernameToken"]
    assert one(root, "//wsu:Timestamp/wsu:Created").text == "2024-05-06T07:08:09.123Z"
    assert one(root, "//wsu:Timestamp/wsu:Expires").text == "2024-05-06T07:13:09.123Z"
    token = one(root, "//wsse:Security/wsse:UsernameToken")
    assert token.get(f"{{{NS_WSU}}}Id")
    assert one(token, "wsse:Username").text == "alice@example.com"
    password = one(token, "wsse:Password")
    assert password.text == "correct horse" and password.get("Type") == PASSWORD_TEXT
    body_rst = one(root, "/s:Envelope/s:Body/t13:RequestSecurityToken")
    assert one(body_rst, "wsp:AppliesTo/wsa:EndpointReference/wsa:Address").text == "urn:loginbridge:test"
    assert one(body_rst, "t13:KeyType").text == "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer"
    assert one(body_rst, "t13:RequestType").text == "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
    assert one(body_rst, "t13:TokenType").text == "urn:oasis:names:tc:SAML:2.0:assertion"


def test_rst_2005_uses_the_2005_namespace_and_uris() -> None:
    root = parse_untrusted(rst(version=WsTrustVersion.V2005, token_type=TokenType.SAML11))
    assert one(root, "//wsa:Action").text == "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue"
    body_rst = one(root, "/s:Envelope/s:Body/t05:RequestSecurityToken")
    assert one(body_rst, "t05:KeyType").text == "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey"
    assert one(body_rst, "t05:RequestType").text == "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue"
    assert one(body_rst, "t05:TokenType").text == NS_SAML11
    assert root.xpath("//t13:*", namespaces={"t13": NS_TRUST13}) == []


def test_rst_without_token_type_has_no_token_type_element() -> None:
    root = parse_untrusted(rst(token_type=None))
    assert root.xpath("//t13:TokenType", namespaces={"t13": NS_TRUST13}) == []


def test_rst_shape_matches_adal_reference() -> None:
    """Every element ADAL's captured template sends is in ours (its ``messageID`` typo corrected)."""
    reference = parse_untrusted(vector("adal-RST-request.xml"))
    ours = parse_untrusted(rst(token_type=None))

    def shape(root: etree._Element) -> set[tuple[str, ...]]:
        paths = set()
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
            chain = [el, *el.iterancestors()]
            names = tuple(etree.QName(e).text.replace("}messageID", "}MessageID") for e in reversed(chain))
            paths.add(names)
        return paths

    missing = shape(reference) - shape(ours)
    assert not missing
    must = f"{{{NS_SOAP12}}}mustUnderstand"
    ref_must = {etree.QName(e).localname for e in reference.iter() if e.get(must) == "1"}
    our_must = {
        etree.QName(e).localname for e in ours.iter() if isinstance(e.tag, str) and e.get(must) == "1"
    }
    assert ref_must == our_must == {"Action", "To", "Security"}


TRICKY = [
    "p<a>ss",
    "a&b&amp;c",
    "x]]>y",
    "<![CDATA[z]]>",
    "quote\"and'apos",
    "grüße-пароль-密码-🔑",
    "  spaces around  ",
    "tab\tnewline\ncr\rcrlf\r\n",
    "&#60;not-an-entity&lt;",
    "</wsse:Password><wsse:Password>injected",
]


@pytest.mark.parametrize("password", TRICKY)
def test_password_round_trips_exactly(password: str) -> None:
    raw = rst(password=password, username=password + "@example.com")
    root = parse_untrusted(raw)
    assert full_text(one(root, "//wsse:Password")) == password
    assert full_text(one(root, "//wsse:Username")) == password + "@example.com"
    assert len(root.findall(f".//{{{NS_WSSE}}}Password")) == 1
    assert b"CDATA[z" not in raw or b"&lt;![CDATA[z" in raw


XML_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cs"],
        blacklist_characters="".join(chr(c) for c in range(32) if c not in (9, 10, 13)) + "\ufffe\uffff",
    ),
    max_size=80,
)


@given(password=XML_TEXT)
@settings(max_examples=300, deadline=None)
def test_any_xml_representable_password_round_trips(password: str) -> None:
    root = parse_untrusted(rst(password=password))
    assert full_text(one(root, "//wsse:Password")) == password


@pytest.mark.parametrize("password", ["nul\x00byte", "bell\x07", "esc\x1b[0m", "lone\ud800surrogate"])
def test_password_xml_cannot_carry_is_refused_without_echo(password: str) -> None:
    with pytest.raises(RequestError) as info:
        rst(password=password)
    assert password not in str(info.value)
    assert password not in info.value.detail


def test_naive_now_is_refused() -> None:
    with pytest.raises(BridgeError):
        rst(now=datetime(2024, 5, 6, 7, 8, 9))


def test_other_timezone_is_written_in_utc_with_lifetime() -> None:
    cet = timezone(timedelta(hours=2))
    root = parse_untrusted(
        rst(now=datetime(2024, 5, 6, 9, 0, 0, 5000, tzinfo=cet), lifetime=timedelta(minutes=1))
    )
    assert one(root, "//wsu:Created").text == "2024-05-06T07:00:00.005Z"
    assert one(root, "//wsu:Expires").text == "2024-05-06T07:01:00.005Z"


def test_default_message_id_is_a_fresh_uuid_urn() -> None:
    ids = {one(parse_untrusted(rst(message_id=None)), "//wsa:MessageID").text for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", i or "") for i in ids)


def test_headers_for_the_http_layer() -> None:
    assert SOAP12_CONTENT_TYPE == "application/soap+xml; charset=utf-8"
    assert soap_action(WsTrustVersion.V13) == "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
    assert soap_action(WsTrustVersion.V2005) == "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue"
    for version in WsTrustVersion:
        assert one(parse_untrusted(rst(version=version)), "//wsa:Action").text == soap_action(version)


# --- parse_rstr: real documents --------------------------------------------------


def test_real_adfs_rstr_saml11() -> None:
    result = parse_rstr(vector("adal-common.rstr.xml"), version=WsTrustVersion.V13)
    assert result == RstrResult(
        token_type="urn:oasis:names:tc:SAML:1.0:assertion",
        saml_version=SamlVersion.SAML11,
        assertion_id="_bf137f90-7dd7-4668-8a39-8bf55eb52017",
    )


def test_real_prettyprinted_rstr_parses() -> None:
    result = parse_rstr(vector("adal-RSTR-prettyprinted.xml"), version=WsTrustVersion.V13)
    assert result.saml_version is SamlVersion.SAML11
    assert result.assertion_id == "_9bd2b280-f153-471a-9b73-c1df0d555075"


@pytest.mark.parametrize("version", list(WsTrustVersion))
def test_real_adfs_bad_password_fault(version: WsTrustVersion) -> None:
    with pytest.raises(InvalidCredentials) as info:
        parse_rstr(vector("keystone-ADFS_fault.xml"), version=version)
    assert "FailedAuthentication" in info.value.detail


def test_truncated_real_rstr_is_rejected() -> None:
    raw = vector("adal-common.rstr.xml")
    with pytest.raises(XmlRejected):
        parse_rstr(raw[: len(raw) // 2], version=WsTrustVersion.V13)


# --- parse_rstr: documents built here ----------------------------------------------


def E(
    ns: str, local: str, *children: etree._Element, text: str | None = None, **attrs: str
) -> etree._Element:
    element = etree.Element(f"{{{ns}}}{local}", attrs)
    element.text = text
    element.extend(children)
    return element


def assertion(saml: SamlVersion = SamlVersion.SAML20, ident: str = "_a1b2c3") -> etree._Element:
    if saml is SamlVersion.SAML11:
        return E(
            NS_SAML11,
            "Assertion",
            E(NS_SAML11, "Conditions"),
            AssertionID=ident,
            MajorVersion="1",
            MinorVersion="1",
        )
    return E(
        NS_SAML20,
        "Assertion",
        E(NS_SAML20, "Issuer", text="https://fs.example.com/adfs/services/trust"),
        ID=ident,
        Version="2.0",
    )


def rstr_doc(
    *,
    trust: str = NS_TRUST2005,
    collection: bool = False,
    tokens: list[etree._Element] | None = None,
    token_type: str | None = NS_SAML20,
    soap: str = NS_SOAP12,
    extra_rstr: bool = False,
    header_token: bool = False,
) -> bytes:
    requested = E(trust, "RequestedSecurityToken", *(tokens if tokens is not None else [assertion()]))
    parts = [E(trust, "Lifetime"), requested]
    if token_type is not None:
        parts.append(E(trust, "TokenType", text=token_type))
    response = E(trust, "RequestSecurityTokenResponse", *parts)
    payload = response
    if collection:
        payload = E(trust, "RequestSecurityTokenResponseCollection", response)
        if extra_rstr:
            payload.append(E(trust, "RequestSecurityTokenResponse", E(trust, "TokenType", text=NS_SAML20)))
    header = E(soap, "Header")
    if header_token:
        header.append(E(trust, "RequestedSecurityToken", assertion(ident="_evil")))
    envelope = E(soap, "Envelope", header, E(soap, "Body", payload))
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def test_2005_bare_rstr_with_saml2() -> None:
    result = parse_rstr(rstr_doc(), version=WsTrustVersion.V2005)
    assert result == RstrResult(token_type=NS_SAML20, saml_version=SamlVersion.SAML20, assertion_id="_a1b2c3")


@pytest.mark.parametrize(
    ("trust", "collection"),
    [(NS_TRUST13, True), (NS_TRUST13, False), (NS_TRUST2005, True), (NS_TRUST2005, False)],
)
@pytest.mark.parametrize("version", list(WsTrustVersion))
def test_collection_or_bare_response_in_either_namespace(
    trust: str, collection: bool, version: WsTrustVersion
) -> None:
    result = parse_rstr(rstr_doc(trust=trust, collection=collection), version=version)
    assert result.assertion_id == "_a1b2c3"


def test_token_profile_token_type_and_absent_token_type() -> None:
    profile = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1"
    doc = rstr_doc(tokens=[assertion(SamlVersion.SAML11, "_x")], token_type=profile)
    assert parse_rstr(doc, version=WsTrustVersion.V2005) == RstrResult(
        token_type=profile, saml_version=SamlVersion.SAML11, assertion_id="_x"
    )
    assert parse_rstr(rstr_doc(token_type=None), version=WsTrustVersion.V2005).token_type == ""


def test_soap11_envelope_is_accepted() -> None:
    assert (
        parse_rstr(rstr_doc(soap=NS_SOAP11), version=WsTrustVersion.V2005).saml_version is SamlVersion.SAML20
    )


def test_comment_beside_the_token_is_tolerated() -> None:
    doc = rstr_doc(tokens=[etree.Comment(" issued by AD FS "), assertion()])
    assert parse_rstr(doc, version=WsTrustVersion.V2005).assertion_id == "_a1b2c3"


MALFORMED: list[tuple[str, bytes, str]] = [
    ("two tokens", rstr_doc(tokens=[assertion(), assertion(ident="_two")]), "exactly one element"),
    ("no token", rstr_doc(tokens=[]), "exactly one element"),
    (
        "encrypted assertion",
        rstr_doc(tokens=[E(NS_SAML20, "EncryptedAssertion", E(NS_SAML20, "Blob", text="secret-ciphertext"))]),
        "EncryptedAssertion",
    ),
    (
        "binary token",
        rstr_doc(tokens=[E(NS_WSSE, "BinarySecurityToken", text="c2VjcmV0")]),
        "BinarySecurityToken",
    ),
    ("assertion in the wrong namespace", rstr_doc(tokens=[E("urn:evil", "Assertion", ID="_e")]), "urn:evil"),
    ("assertion without ID", rstr_doc(tokens=[E(NS_SAML20, "Assertion", Version="2.0")]), "no ID"),
    (
        "SAML 1.1 with only ID",
        rstr_doc(tokens=[E(NS_SAML11, "Assertion", ID="_e")], token_type=None),
        "no ID",
    ),
    ("token type mismatch", rstr_doc(token_type=NS_SAML11), "TokenType"),
    ("second token in the header", rstr_doc(header_token=True), "exactly one RequestedSecurityToken"),
    ("two responses in the collection", rstr_doc(collection=True, extra_rstr=True), "collection"),
    (
        "no RequestedSecurityToken",
        rstr_doc().replace(b"RequestedSecurityToken", b"RequestedOtherThing"),
        "exactly one RequestedSecurityToken",
    ),
    ("not an envelope", b"<html><body>AD FS maintenance</body></html>", "not a SOAP Envelope"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(m[1], m[2]) for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_rstr_is_a_protocol_error(raw: bytes, expected: str) -> None:
    with pytest.raises(IdpProtocolError) as info:
        parse_rstr(raw, version=WsTrustVersion.V2005)
    assert not isinstance(info.value, InvalidCredentials | IdpRejectedRequest)
    assert expected in info.value.detail
    assert "secret-ciphertext" not in info.value.detail


def test_text_beside_the_token_is_refused() -> None:
    doc = rstr_doc().replace(b"<ns0:Assertion", b"junk<ns0:Assertion", 1)
    assert b"junk" in doc
    with pytest.raises(IdpProtocolError, match="text besides"):
        parse_rstr(doc, version=WsTrustVersion.V2005)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \n",
        b"\x00\xff\xfe garbage",
        b"not xml at all",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        b"<s:Envelope xmlns:s='" + NS_SOAP12.encode() + b"'><s:Body>",
        b"<a>" + b"x" * (256 * 1024) + b"</a>",
    ],
    ids=["empty", "blank", "binary", "text", "doctype", "truncated", "huge"],
)
def test_unreadable_bodies_are_xml_rejected(raw: bytes) -> None:
    with pytest.raises(XmlRejected):
        parse_rstr(raw, version=WsTrustVersion.V13)


# --- SOAP faults ----------------------------------------------------------------------


def fault12(reason: str, subcode: str | None = "a:FailedAuthentication", code: str = "s:Sender") -> bytes:
    s = NS_SOAP12
    code_el = E(s, "Code", E(s, "Value", text=code))
    if subcode is not None:
        code_el.append(E(s, "Subcode", E(s, "Value", text=subcode)))
    fault = E(s, "Fault", code_el, E(s, "Reason", E(s, "Text", text=reason)))
    envelope = E(s, "Envelope", E(s, "Header"), E(s, "Body", fault))
    return bytes(etree.tostring(envelope, encoding="UTF-8"))


def fault11(faultcode: str, faultstring: str) -> bytes:
    fault = E(NS_SOAP11, "Fault")
    etree.SubElement(fault, "faultcode").text = faultcode
    etree.SubElement(fault, "faultstring").text = faultstring
    envelope = E(NS_SOAP11, "Envelope", E(NS_SOAP11, "Body", fault))
    return bytes(etree.tostring(envelope, encoding="UTF-8"))


FAULTS: list[tuple[str, bytes, type[BridgeError]]] = [
    (
        "ID3242",
        fault12("ID3242: The security token could not be authenticated or authorized."),
        InvalidCredentials,
    ),
    (
        "ID3242 no subcode",
        fault12("ID3242: The security token could not be authenticated.", None),
        InvalidCredentials,
    ),
    ("subcode only", fault12("Something else went wrong."), InvalidCredentials),
    (
        "old wording",
        fault12("At least one security token in the message could not be validated.", None),
        InvalidCredentials,
    ),
    ("MSIS7068", fault12("MSIS7068: Access denied.", "a:RequestFailed"), AccessDenied),
    ("MSIS7068 beats subcode", fault12("MSIS7068: Access denied."), AccessDenied),
    ("account locked", fault12("The referenced account is currently locked out.", "a:RequestFailed"), AccessDenied),
    # MSIS3127 is WS-Trust's generic RequestFailed: it names no cause, so it is a refusal the bridge cannot
    # classify (it counts toward the throttles), not a configuration problem.
    (
        "MSIS3127",
        fault12("MSIS3127: The specified request failed.", "a:RequestFailed", "s:Receiver"),
        IdpRefused,
    ),
    # The relying party is unknown: WIF's ID3082 (WS-Trust 1.3 section 11 InvalidScope), AD FS MSIS7007.
    (
        "ID3082",
        fault12("ID3082: The request scope is not valid or is unsupported.", "a:InvalidRequest"),
        SpNotRegistered,
    ),
    ("InvalidScope", fault12("The request scope is not valid.", "a:InvalidScope"), SpNotRegistered),
    (
        "MSIS7007",
        fault12("MSIS7007: The requested relying party trust 'urn:loginbridge:x' is unspecified or unsupported.",
                "a:RequestFailed", "s:Receiver"),
        SpNotRegistered,
    ),
    (
        "MSIS3127 with an unknown relying party",
        fault12("MSIS3127: The specified request failed. The relying party trust 'urn:x' was not found.",
                "a:RequestFailed", "s:Receiver"),
        SpNotRegistered,
    ),
    ("InvalidRequest", fault12("MSIS3127: The specified request failed.", "a:InvalidRequest"), IdpRejectedRequest),
    (
        "security header (clock)",
        fault12("An error occurred when verifying security for the message.", "a:InvalidSecurity"),
        IdpRejectedRequest,
    ),
    ("MessageExpired", fault12("The message has expired.", "a:MessageExpired"), IdpRejectedRequest),
    ("unknown", fault12("MSIS9999: Something new.", "a:Weird"), IdpRefused),
    ("no code at all", fault12("", None, ""), IdpRefused),
    (
        "SOAP 1.1 bad password",
        fault11("wsse:FailedAuthentication", "The security token could not be authenticated"),
        InvalidCredentials,
    ),
    ("SOAP 1.1 other", fault11("soap:Server", "MSIS3127: The specified request failed."), IdpRefused),
]


@pytest.mark.parametrize(("raw", "expected"), [(f[1], f[2]) for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_fault_mapping(raw: bytes, expected: type[BridgeError]) -> None:
    for version in WsTrustVersion:
        with pytest.raises(BridgeError) as info:
            parse_rstr(raw, version=version)
        assert type(info.value) is expected


def test_rejected_request_detail_has_subcode_and_reason() -> None:
    with pytest.raises(IdpRejectedRequest) as info:
        parse_rstr(
            fault12("ID3082: The request scope is not valid.", "a:InvalidRequest"), version=WsTrustVersion.V13
        )
    assert "a:InvalidRequest" in info.value.detail
    assert "ID3082: The request scope is not valid." in info.value.detail


def test_fault_detail_is_truncated() -> None:
    with pytest.raises(IdpRefused) as info:
        parse_rstr(fault12("MSIS3127: " + "x" * 2000, "a:RequestFailed"), version=WsTrustVersion.V13)
    assert 0 < len(info.value.detail) <= 400
    assert info.value.detail.count("x") > 100


# --- the whole HTTP answer ------------------------------------------------------------------------

HTML_500 = b"<!DOCTYPE html>\n<html><head><title>Runtime Error</title></head><body>Server Error in '/' Application."\
           b"</body></html>"
SOAP_TYPE = "application/soap+xml; charset=utf-8"


def read(status: int, body: bytes, content_type: str = SOAP_TYPE) -> RstrResult:
    return read_rstr(status=status, body=body, content_type=content_type, version=WsTrustVersion.V13)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        # AD FS answers faults with HTTP 500: the fault decides
        (500, fault12("ID3242: The security token could not be authenticated or authorized."), SOAP_TYPE,
         InvalidCredentials),
        (500, fault12("MSIS7068: Access denied.", "a:RequestFailed", "s:Receiver"), SOAP_TYPE, AccessDenied),
        (500, fault12("MSIS3127: The specified request failed.", "a:RequestFailed", "s:Receiver"), SOAP_TYPE,
         IdpRefused),
        # a proxy or another STS refusing with the status, with or without the fault
        (401, b"", "", InvalidCredentials),
        (401, fault12("ID3242: The security token could not be authenticated or authorized."), SOAP_TYPE,
         InvalidCredentials),
        (401, fault12("Nope.", "a:RequestFailed"), SOAP_TYPE, InvalidCredentials),
        (403, b"", "", AccessDenied),
        (403, b"<html><body>403 - Forbidden: Access is denied.</body></html>", "text/html", AccessDenied),
        (403, fault12("ID3242: The security token could not be authenticated or authorized."), SOAP_TYPE,
         InvalidCredentials),
        # error pages: an outage, whatever their markup
        (500, HTML_500, "text/html", IdpUnreachable),
        (500, b"Internal Server Error", "text/plain", IdpUnreachable),
        (500, b"", "", IdpUnreachable),
        (503, b"<html><body>Service Unavailable</body></html>", "text/html", IdpUnreachable),
        (500, b'<?xml version="1.0"?><error>busy</error>', "text/xml", IdpUnreachable),
        (500, fault12("x").replace(b"Fault", b"Oops"), SOAP_TYPE, IdpUnreachable),  # a SOAP body without a fault
        (504, b"Gateway Timeout", "text/html", IdpTimeout),
        (404, b"Not Found", "text/html", IdpRejectedRequest),
        (302, b"", "", IdpProtocolError),
    ],
)
def test_every_status_is_read(status: int, body: bytes, content_type: str, expected: type[BridgeError]) -> None:
    with pytest.raises(expected) as info:
        read(status, body, content_type)
    assert type(info.value) is expected
    if status != 500 or expected is IdpUnreachable:
        assert f"HTTP {status}" in info.value.detail


def test_an_html_500_is_an_outage_with_its_status_in_the_detail() -> None:
    with pytest.raises(IdpUnreachable) as info:
        read(500, HTML_500, "text/html; charset=utf-8")
    assert info.value.detail == f"AD FS answered HTTP 500 (text/html, {len(HTML_500)} bytes), an error page, not a "\
                                "SOAP answer"


def test_a_token_needs_http_200() -> None:
    assert read(200, VALID).assertion_id
    with pytest.raises(IdpUnreachable):
        read(500, VALID)


def test_an_unreadable_200_is_logged_by_its_shape(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.idp.wstrust.messages")
    page = b"<html><body>Please sign in: not-to-be-logged</body></html>"
    with pytest.raises(IdpProtocolError):
        read(200, page, "text/html")
    (record,) = [r for r in caplog.records if r.name == "bridge.idp.wstrust.messages" and r.levelno == logging.INFO]
    line = record.getMessage()
    assert "HTTP 200" in line and "content type text/html" in line and f"{len(page)} bytes" in line
    assert "first element html" in line and "not-to-be-logged" not in line


@pytest.mark.parametrize("version", list(WsTrustVersion))
def test_real_adfs_fault_with_http_500(version: WsTrustVersion) -> None:
    with pytest.raises(InvalidCredentials):
        read_rstr(status=500, body=vector("keystone-ADFS_fault.xml"), content_type=SOAP_TYPE, version=version)


# --- robustness --------------------------------------------------------------------------

VALID = rstr_doc(trust=NS_TRUST13, collection=True)


def only_bridge_errors(raw: bytes) -> None:
    try:
        result = parse_rstr(raw, version=WsTrustVersion.V13)
    except BridgeError:
        return
    assert isinstance(result, RstrResult)


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_random_bytes_only_raise_bridge_errors(raw: bytes) -> None:
    only_bridge_errors(raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "cut", "dup"]))
        pos = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=40))]
        elif kind == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [
                        b"<",
                        b">",
                        b"&",
                        b'"',
                        b"]]>",
                        b"<!--",
                        b"-->",
                        b":",
                        b"\x00",
                        b"</ns0:Assertion>",
                        b"<x:y xmlns:x='urn:x'/>",
                        b"&#0;",
                        b"\xc3",
                    ]
                )
            )
        elif kind == "cut":
            del data[pos:]
        else:
            end = pos + draw(st.integers(min_value=1, max_value=200))
            data[pos:pos] = data[pos:end]
    return bytes(data)


@given(mutated())
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_rstr_only_raises_bridge_errors(raw: bytes) -> None:
    only_bridge_errors(raw)


def test_valid_seed_of_the_fuzzer_parses() -> None:
    assert parse_rstr(VALID, version=WsTrustVersion.V13).assertion_id == "_a1b2c3"


TREE_NAMESPACES = [NS_TRUST13, NS_TRUST2005, NS_SAML11, NS_SAML20, NS_SOAP12, NS_SOAP11, "urn:other"]


@st.composite
def tree_mutated(draw: st.DrawFn) -> bytes:
    """Well-formed variants of the seed: elements removed, copied, moved, renamed, emptied."""
    root = etree.fromstring(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        elements = [el for el in root.iter() if isinstance(el.tag, str)]
        target = draw(st.sampled_from(elements))
        parent = target.getparent()
        op = draw(st.sampled_from(["remove", "copy", "move", "rename", "attrs", "text"]))
        if op == "remove" and parent is not None:
            parent.remove(target)
        elif op == "copy" and parent is not None:
            parent.append(copy.deepcopy(target))
        elif op == "move" and parent is not None:
            destination = draw(st.sampled_from([el for el in elements if target not in el.iterancestors()]))
            if destination is not target:
                destination.append(target)
        elif op == "rename":
            ns = draw(st.sampled_from(TREE_NAMESPACES))
            target.tag = f"{{{ns}}}{etree.QName(target).localname}"
        elif op == "attrs":
            target.attrib.clear()
        else:
            target.text = draw(st.sampled_from(["", " ", "x", NS_SAML20, NS_SAML11]))
    return bytes(etree.tostring(root))


@given(tree_mutated())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_tree_mutated_rstr_only_raises_bridge_errors(raw: bytes) -> None:
    only_bridge_errors(raw)


@pytest.mark.parametrize("password", ["plain", "p<&>'\"]]>é"])
def test_username_token_matches_zeeps(password: str) -> None:
    """zeep's WS-Security helper is the reference for the UsernameToken we build with lxml.

    The hot path builds the header itself (a cached skeleton costs a third of zeep's
    helpers per login, bench/login.py); zeep still decides what the element must be.
    """
    from zeep.wsse.username import UsernameToken

    ours = one(parse_untrusted(rst(password=password)), "/s:Envelope/s:Header/wsse:Security/wsse:UsernameToken")
    envelope = etree.fromstring(f'<s:Envelope xmlns:s="{NS_SOAP12}"><s:Header/><s:Body/></s:Envelope>'.encode())
    UsernameToken("alice@example.com", password).apply(envelope, {})
    theirs = envelope.find(".//{*}UsernameToken")
    assert theirs is not None

    def shape(token: etree._Element) -> list[tuple[str, str | None, str | None]]:
        return [(child.tag, child.get("Type"), child.text) for child in token]

    assert shape(ours) == shape(theirs)
