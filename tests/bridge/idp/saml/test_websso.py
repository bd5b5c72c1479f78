"""SAML 2.0 Web Browser SSO: the Redirect the phone follows, the POST it brings back, and SamlIdp around both.

Answers are built from really signed (and really encrypted) assertions and
Responses, posted as the ACS form would receive them, and checked through
``SamlIdp.finish_browser_signin``: the same expectations and validator as the
ECP path, then the replay cache.
"""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from lxml import etree
from saml2.attribute_converter import ac_factory
from saml2.config import Config
from saml2.mdstore import InMemoryMetaData, MetadataStore

from bridge.config import Protocol, Saml2Config, TenantConfig
from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpNotWhitelisted,
    IdpProtocolError,
    IdpRejectedRequest,
)
from bridge.idp.assertion import MemoryReplayCache, SamlVersion
from bridge.idp.browser import BrowserSignin
from bridge.idp.http import IdpHttp, make_ssl_context
from bridge.idp.saml.client import SamlIdp
from bridge.idp.saml.metadata import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    BINDING_PAOS,
    build_sp_metadata,
    parse_idp_metadata,
)
from bridge.idp.saml.spkeys import SpKeys
from bridge.idp.saml.websso import (
    MAX_POST_RESPONSE_CHARS,
    NAMEID_EMAIL,
    SIG_ALG_RSA_SHA256,
    build_browser_authn_request,
    read_post_response,
    redirect_url,
)
from bridge.idpsim.tokens import TokenClaims, build_saml20_assertion, saml_datetime, signed_token
from bridge.xml.signature import NS_SAML2, NS_SAMLP2, sign_enveloped
from tests.bridge.idp.saml.test_metadata import keycloak_metadata, okta_metadata, shibboleth_metadata
from tests.bridge.xml.test_encryption import encrypt_assertion
from tests.keys import load_cert, make_key_and_cert

IDP = "https://idp.example.org/idp/shibboleth"
SP = "urn:loginbridge:acme"
PUBLIC = "https://bridge.example"
ACS = f"{PUBLIC}/saml/acme/acs"
SSO = "https://127.0.0.1/idp/profile/SAML2/Redirect/SSO"
USER = "alice@example.org"
ST = "urn:oasis:names:tc:SAML:2.0:status:"
P, A = f"{{{NS_SAMLP2}}}", f"{{{NS_SAML2}}}"


def _idp_keys() -> tuple[bytes, bytes]:
    return make_key_and_cert("websso-idp")


def _sp_keys() -> SpKeys:
    key, cert = make_key_and_cert("websso-sp")
    return SpKeys(key_pem=key, cert_pem=cert)


def _tenant(**saml: object) -> TenantConfig:
    values: dict[str, object] = {
        "metadata_file": None, "metadata_url": None, "entity_id": IDP, "ecp_url": None,
        "signing_certificates": (load_cert(_idp_keys()[1]),), "sp_entity_id": SP,
        "clock_skew": timedelta(seconds=300), "subject_claim": "nameid", "signature_algorithms": ("rsa-sha256",),
        "ca_file": None, "sso_url": SSO,
    }
    values.update(saml)
    return TenantConfig(id="acme", name="Acme", domains=("example.org",), protocol=Protocol.SAML2,
                        idp_whitelist=(ip_network("127.0.0.1/32"),), session_ttl=timedelta(hours=1),
                        wstrust=None, saml2=Saml2Config(**values), source=Path("/dev/null"))  # type: ignore[arg-type]


def _idp(**saml: object) -> SamlIdp:
    http = IdpHttp(whitelist=(ip_network("127.0.0.1/32"),), ssl_context=make_ssl_context(None),
                   connect_timeout=1, timeout=1, max_connections=1)
    return SamlIdp(_tenant(**saml), http, _sp_keys(), PUBLIC)


def _claims(request_id: str, **overrides: object) -> TokenClaims:
    values: dict[str, object] = {"issuer": IDP, "audience": SP, "subject": USER,
                                 "issued_at": datetime.now(UTC), "recipient": ACS, "in_response_to": request_id}
    values.update(overrides)
    return TokenClaims(**values)  # type: ignore[arg-type]


def _signed_assertion(request_id: str, **overrides: object) -> etree._Element:
    key, cert = _idp_keys()
    return signed_token(_claims(request_id, **overrides), version=SamlVersion.SAML20, key_pem=key, cert_pem=cert)


def _response(
    request_id: str | None,
    payload: etree._Element | None,
    *,
    codes: tuple[str, ...] = (f"{ST}Success",),
    message: str | None = None,
    destination: str | None = ACS,
    sign: bool = False,
) -> etree._Element:
    response = etree.Element(f"{P}Response", nsmap={"samlp": NS_SAMLP2, "saml": NS_SAML2},
                             ID="_r" + (request_id or "none").lstrip("_"), Version="2.0",
                             IssueInstant=saml_datetime(datetime.now(UTC)))
    if request_id is not None:
        response.set("InResponseTo", request_id)
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
        key, cert = _idp_keys()
        response = sign_enveloped(response, key_pem=key, cert_pem=cert)
    return response


def _form(response: etree._Element | bytes, relay_state: str = "st-1") -> dict[str, str]:
    raw = response if isinstance(response, bytes) else etree.tostring(response)
    return {"SAMLResponse": base64.b64encode(raw).decode("ascii"), "RelayState": relay_state}


async def _finish(form: dict[str, str], request_id: str | None, replay: MemoryReplayCache | None = None,
                  idp: SamlIdp | None = None) -> str:
    client = idp or _idp()
    validated = await client.finish_browser_signin(form=form, request_id=request_id,
                                                   replay=replay if replay is not None else MemoryReplayCache())
    return validated.subject


async def _rejected(form: dict[str, str], request_id: str | None) -> str:
    with pytest.raises(AssertionRejected) as info:
        await _finish(form, request_id)
    return info.value.reason


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def _inflate(saml_request: str) -> etree._Element:
    return etree.fromstring(zlib.decompress(base64.b64decode(saml_request, validate=True), -15))


# --- the Redirect -------------------------------------------------------------------------------------


def test_samlidp_is_a_browser_signin() -> None:
    idp: BrowserSignin = _idp()  # mypy checks the protocol; this checks the methods exist at run time
    assert callable(idp.begin_browser_signin) and callable(idp.finish_browser_signin)


async def test_redirect_url_inflates_back_to_our_request() -> None:
    redirect = await _idp().begin_browser_signin(state="st-1", login_hint=USER)
    assert redirect.url.startswith(SSO + "?")
    query = _query(redirect.url)
    assert set(query) == {"SAMLRequest", "RelayState"}  # unsigned: no SigAlg, no Signature
    assert query["RelayState"] == ["st-1"]
    request = _inflate(query["SAMLRequest"][0])
    assert request.tag == f"{P}AuthnRequest"
    assert request.get("ID") == redirect.request_id and redirect.request_id is not None
    assert redirect.request_id.startswith("_") and len(redirect.request_id) == 33
    assert request.get("Version") == "2.0"
    assert request.get("Destination") == SSO
    assert request.get("ProtocolBinding") == BINDING_HTTP_POST
    assert request.get("AssertionConsumerServiceURL") == ACS
    issued = datetime.strptime(request.get("IssueInstant") or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(issued - datetime.now(UTC)) < timedelta(seconds=5)
    assert request.findtext(f"{A}Issuer") == SP
    policy = request.find(f"{P}NameIDPolicy")
    assert policy is not None and {k: policy.get(k) for k in policy.keys()} == {"Format": NAMEID_EMAIL, "AllowCreate": "false"}
    # No Subject: in SAML it would be a demand, and Entra refuses it.
    assert request.find(f"{A}Subject") is None and USER not in redirect.url


async def test_each_redirect_has_a_fresh_request_id() -> None:
    idp = _idp()
    first = await idp.begin_browser_signin(state="a")
    second = await idp.begin_browser_signin(state="a")
    assert first.request_id != second.request_id


async def test_no_email_name_id_format_is_demanded_when_the_subject_is_an_attribute() -> None:
    redirect = await _idp(subject_claim="upn").begin_browser_signin(state="s")
    policy = _inflate(_query(redirect.url)["SAMLRequest"][0]).find(f"{P}NameIDPolicy")
    assert policy is not None and {k: policy.get(k) for k in policy.keys()} == {"AllowCreate": "false"}


def _verify_redirect_signature(url: str, cert_pem: bytes) -> None:
    """What an IdP does (saml-bindings 3.4.4.1): verify over the parameters exactly as they came in the URL."""
    raw = dict(item.split("=", 1) for item in urlsplit(url).query.split("&"))
    signed = "&".join(f"{name}={raw[name]}" for name in ("SAMLRequest", "RelayState", "SigAlg") if name in raw)
    public = load_cert(cert_pem).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(unquote(raw["Signature"])), signed.encode("ascii"), PKCS1v15(), hashes.SHA256())


async def test_signed_redirect_verifies_with_the_sp_certificate() -> None:
    state = "st+/=&? ü"  # characters that must be percent-encoded, in the signed string as in the URL
    redirect = await _idp(sign_requests=True).begin_browser_signin(state=state)
    query = _query(redirect.url)
    assert query["SigAlg"] == [SIG_ALG_RSA_SHA256] and query["RelayState"] == [state]
    assert list(dict.fromkeys(p.split("=", 1)[0] for p in urlsplit(redirect.url).query.split("&"))) == [
        "SAMLRequest", "RelayState", "SigAlg", "Signature"]
    _verify_redirect_signature(redirect.url, _sp_keys().cert_pem)
    # The signed Redirect carries no XML signature (saml-bindings 3.4.4.1 says to remove one).
    assert _inflate(query["SAMLRequest"][0]).find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None
    tampered = redirect.url.replace("RelayState=", "RelayState=x", 1)
    with pytest.raises(InvalidSignature):
        _verify_redirect_signature(tampered, _sp_keys().cert_pem)
    other_cert = make_key_and_cert("websso-not-the-sp")[1]
    with pytest.raises(InvalidSignature):
        _verify_redirect_signature(redirect.url, other_cert)


def test_the_sso_urls_own_query_is_kept_outside_the_signature() -> None:
    request = build_browser_authn_request(sp_entity_id=SP, acs_url=ACS, sso_url=SSO, now=datetime.now(UTC))
    url = redirect_url(sso_url="https://idp.example/sso?idpid=C01&SAMLRequest=stale#frag", request_xml=request.xml,
                       relay_state="st", signing_key_pem=_sp_keys().key_pem)
    parts = urlsplit(url)
    assert (parts.path, parts.fragment) == ("/sso", "")
    assert parts.query.startswith("idpid=C01&SAMLRequest=")
    assert _query(url)["idpid"] == ["C01"] and len(_query(url)["SAMLRequest"]) == 1
    _verify_redirect_signature(url, _sp_keys().cert_pem)


def test_relay_state_over_80_bytes_is_refused() -> None:
    request = build_browser_authn_request(sp_entity_id=SP, acs_url=ACS, sso_url=SSO, now=datetime.now(UTC))
    assert "RelayState=" + "a" * 80 in redirect_url(sso_url=SSO, request_xml=request.xml, relay_state="a" * 80)
    with pytest.raises(BridgeError, match="80-byte"):
        redirect_url(sso_url=SSO, request_xml=request.xml, relay_state="ä" * 41)  # 82 bytes


async def test_the_sso_url_comes_from_metadata_when_not_configured(tmp_path: Path) -> None:
    metadata = tmp_path / "idp.xml"
    metadata.write_bytes(shibboleth_metadata().replace(b"https://idp.example.org/idp/profile/SAML2/Redirect/SSO",
                                                       SSO.encode()))
    redirect = await _idp(sso_url=None, metadata_file=metadata, entity_id=None).begin_browser_signin(state="s")
    assert redirect.url.startswith(SSO + "?SAMLRequest=")


async def test_no_sso_url_anywhere_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(IdpRejectedRequest) as info:
        await _idp(sso_url=None).begin_browser_signin(state="s")
    assert "HTTP-Redirect SingleSignOnService" in info.value.detail and "saml2.sso_url" in info.value.detail
    assert info.value.message != IdpRejectedRequest.panel_message  # says phone sign-in is not set up


async def test_the_sso_host_must_be_inside_the_whitelist() -> None:
    with pytest.raises(IdpNotWhitelisted) as info:
        await _idp(sso_url="https://192.0.2.10/sso").begin_browser_signin(state="s")
    assert "192.0.2.10/32" in info.value.detail


async def test_a_plain_http_sso_url_from_metadata_is_refused(tmp_path: Path) -> None:
    metadata = tmp_path / "idp.xml"
    metadata.write_bytes(shibboleth_metadata().replace(b"https://idp.example.org/idp/profile/SAML2/Redirect/SSO",
                                                       b"http://127.0.0.1/sso"))
    with pytest.raises(IdpProtocolError, match="not an https URL"):
        await _idp(sso_url=None, metadata_file=metadata, entity_id=None).begin_browser_signin(state="s")


# --- the POSTed answer: accepted ----------------------------------------------------------------------


async def test_a_signed_assertion_validates_and_is_remembered_once() -> None:
    rid = "_ok1"
    form = _form(_response(rid, _signed_assertion(rid)))
    replay = MemoryReplayCache()
    assert await _finish(form, rid, replay) == USER
    assert len(replay) == 1
    with pytest.raises(AssertionRejected) as info:
        await _finish(form, rid, replay)
    assert info.value.reason == "replayed"


async def test_a_signed_response_around_an_unsigned_assertion_validates() -> None:
    rid = "_ok2"
    unsigned = build_saml20_assertion(_claims(rid))
    assert await _finish(_form(_response(rid, unsigned, sign=True)), rid) == USER


async def test_line_wrapped_base64_is_accepted() -> None:
    rid = "_ok3"
    encoded = _form(_response(rid, _signed_assertion(rid)))["SAMLResponse"]
    wrapped = "\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    assert await _finish({"SAMLResponse": wrapped}, rid) == USER


def _encrypted(rid: str) -> etree._Element:
    return encrypt_assertion(etree.tostring(_signed_assertion(rid)), _sp_keys().cert_pem)


async def test_an_encrypted_assertion_in_a_signed_response_validates() -> None:
    rid = "_ok4"
    assert await _finish(_form(_response(rid, _encrypted(rid), sign=True)), rid) == USER


async def test_a_tampered_response_around_an_encrypted_assertion_is_refused() -> None:
    rid = "_enc1"
    signed = _response(rid, _encrypted(rid), sign=True)
    issuer = signed.find(f"{A}Issuer")
    assert issuer is not None
    issuer.text = IDP + "/evil"  # the encrypted assertion still verifies: only the outer signature shows it
    assert await _rejected(_form(signed), rid) == "signature_invalid"


async def test_an_encrypted_unsigned_assertion_is_refused() -> None:
    rid = "_enc2"
    unsigned = encrypt_assertion(etree.tostring(build_saml20_assertion(_claims(rid))), _sp_keys().cert_pem)
    assert await _rejected(_form(_response(rid, unsigned, sign=True)), rid) == "signature_missing"


# --- the POSTed answer: refused -----------------------------------------------------------------------


async def test_a_response_to_another_request_is_refused() -> None:
    assert await _rejected(_form(_response("_other", _signed_assertion("_other"))), "_mine") == "in_response_to"


async def test_an_assertion_for_another_request_in_our_response_is_refused() -> None:
    rid = "_irt2"
    assert await _rejected(_form(_response(rid, _signed_assertion("_other"))), rid) == "in_response_to"


async def test_an_unsolicited_response_is_refused() -> None:
    assert await _rejected(_form(_response(None, _signed_assertion("_x"))), "_mine") == "in_response_to"
    rid = "_irt3"
    assert await _rejected(_form(_response(rid, _signed_assertion(rid))), None) == "in_response_to"


async def test_a_response_for_another_consumer_is_refused() -> None:
    rid = "_dst1"
    response = _response(rid, _signed_assertion(rid), destination="https://evil.example/acs")
    assert await _rejected(_form(response), rid) == "destination"


async def test_a_response_without_destination_is_accepted() -> None:
    rid = "_dst2"
    assert await _finish(_form(_response(rid, _signed_assertion(rid), destination=None)), rid) == USER


async def test_a_wrong_recipient_is_refused() -> None:
    rid = "_rcp1"
    payload = _signed_assertion(rid, recipient="https://evil.example/acs")
    assert await _rejected(_form(_response(rid, payload)), rid) == "recipient"


async def test_a_missing_recipient_is_refused() -> None:
    rid = "_rcp2"
    assert await _rejected(_form(_response(rid, _signed_assertion(rid, recipient=None))), rid) == "recipient"


async def test_a_token_for_another_audience_is_refused() -> None:
    rid = "_aud1"
    payload = _signed_assertion(rid, audience="urn:someone-else")
    assert await _rejected(_form(_response(rid, payload)), rid) == "audience"


async def test_an_unsigned_answer_is_refused() -> None:
    rid = "_uns1"
    assert await _rejected(_form(_response(rid, build_saml20_assertion(_claims(rid)))), rid) == "signature_missing"


async def test_a_tampered_assertion_is_refused() -> None:
    rid = "_tmp1"
    payload = _signed_assertion(rid)
    name_id = payload.find(f"{A}Subject/{A}NameID")
    assert name_id is not None
    name_id.text = "mallory@example.org"
    assert await _rejected(_form(_response(rid, payload)), rid) == "signature_invalid"


async def test_a_token_signed_by_another_key_is_refused() -> None:
    rid = "_key1"
    key, cert = make_key_and_cert("websso-impostor")
    payload = signed_token(_claims(rid), version=SamlVersion.SAML20, key_pem=key, cert_pem=cert)
    assert await _rejected(_form(_response(rid, payload)), rid) == "certificate_mismatch"


async def test_a_second_assertion_is_a_wrapping_attempt() -> None:
    rid = "_wrp1"
    response = _response(rid, _signed_assertion(rid))
    evil = build_saml20_assertion(_claims(rid, subject="mallory@example.org"))
    response.insert(2, evil)  # unsigned, before the signed one
    assert await _rejected(_form(response), rid) == "wrapped"


async def test_a_doctype_is_refused() -> None:
    rid = "_dtd1"
    raw = etree.tostring(_response(rid, _signed_assertion(rid)), xml_declaration=True, encoding="UTF-8")
    hostile = raw.replace(b"?>", b'?>\n<!DOCTYPE x [<!ENTITY e "alice">]>', 1)
    assert await _rejected(_form(hostile), rid) == "doctype"


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        "PHNhbWxwOlJlc3BvbnNl",  # base64 of an unclosed tag
        base64.b64encode(b"<html><body>hello</body></html>").decode(),
        "PHg+" + "é",
        "A" * (MAX_POST_RESPONSE_CHARS + 1),
    ],
)
async def test_a_field_that_is_not_a_base64_saml_response_is_malformed(value: str) -> None:
    assert await _rejected({"SAMLResponse": value}, "_m1") == "malformed"


@pytest.mark.parametrize("form", [{}, {"SAMLResponse": ""}, {"SAMLRequest": "abc"}])
async def test_a_post_without_saml_response_is_a_protocol_error(form: dict[str, str]) -> None:
    with pytest.raises(IdpProtocolError, match="no SAMLResponse"):
        await _finish(form, "_m2")


@pytest.mark.parametrize(
    "codes",
    [
        (f"{ST}Responder", f"{ST}AuthnFailed"),
        (f"{ST}Requester", f"{ST}RequestDenied"),
        (f"{ST}Responder", f"{ST}NoPassive"),
        (f"{ST}Responder", f"{ST}NoAuthnContext"),
        (f"{ST}Responder",),
        ("urn:example:made-up",),
    ],
)
async def test_any_non_success_status_is_access_denied(codes: tuple[str, ...]) -> None:
    rid = "_deny1"
    message = "The user cancelled <script>" + "x" * 500
    with pytest.raises(AccessDenied) as info:
        await _finish(_form(_response(rid, None, codes=codes, message=message)), rid)
    assert type(info.value) is AccessDenied
    assert all(code in info.value.detail for code in codes)
    assert len(info.value.detail) < 400  # the IdP's text is clipped
    assert "cancelled" not in info.value.cause and "script" not in info.value.cause  # the audit reason: ours only
    assert codes[-1].rsplit(":", 1)[-1] in info.value.cause or "other" in info.value.cause


async def test_a_refusal_without_in_response_to_is_believed_but_one_for_another_request_is_not() -> None:
    denied = (f"{ST}Responder", f"{ST}AuthnFailed")
    with pytest.raises(AccessDenied):
        await _finish(_form(_response(None, None, codes=denied)), "_mine")
    assert await _rejected(_form(_response("_other", None, codes=denied)), "_mine") == "in_response_to"
    assert await _rejected(_form(_response("_mine", None, codes=denied, destination="https://x/acs")),
                           "_mine") == "destination"


def test_the_pure_reader_returns_the_document_as_received() -> None:
    rid = "_pure1"
    raw = etree.tostring(_response(rid, _signed_assertion(rid)))
    posted = read_post_response(_form(raw), request_id=rid, acs_url=ACS, sp_key_pem=None)
    assert posted.response_xml == raw and posted.assertion.xml == raw and not posted.assertion.encrypted
    with pytest.raises(AssertionRejected, match="decryption"):
        read_post_response(_form(_response(rid, _encrypted(rid))), request_id=rid, acs_url=ACS, sp_key_pem=None)


@pytest.mark.parametrize("flip", range(0, 4000, 97))
def test_mutated_answers_raise_only_bridge_errors(flip: int) -> None:
    rid = "_fz1"
    raw = bytearray(etree.tostring(_response(rid, _signed_assertion(rid))))
    raw[flip % len(raw)] ^= 0x5A
    try:
        read_post_response(_form(bytes(raw)), request_id=rid, acs_url=ACS, sp_key_pem=_sp_keys().key_pem)
    except BridgeError as exc:
        assert exc.detail != "the SAMLResponse could not be read", repr(exc.__cause__)


# --- metadata -----------------------------------------------------------------------------------------


def test_idp_metadata_names_the_redirect_sso_url() -> None:
    assert parse_idp_metadata(shibboleth_metadata()).sso_redirect_url == (
        "https://idp.example.org/idp/profile/SAML2/Redirect/SSO")
    assert parse_idp_metadata(keycloak_metadata()).sso_redirect_url == "https://kc.example.com/realms/acme/protocol/saml"
    okta = parse_idp_metadata(okta_metadata())
    assert okta.ecp_url is None and okta.sso_redirect_url is not None and okta.sso_redirect_url.endswith("/sso/saml")
    only_post = okta_metadata().replace(BINDING_HTTP_REDIRECT.encode(), b"urn:x:other")
    assert parse_idp_metadata(only_post).sso_redirect_url is None


def test_sp_metadata_lists_a_post_consumer_beside_paos() -> None:
    _, signing = make_key_and_cert("meta-sp-signing")
    xml = build_sp_metadata(entity_id=SP, acs_url=ACS, signing_cert_pem=signing, encryption_cert_pem=signing)
    loaded = InMemoryMetaData(ac_factory(), metadata=xml.decode())
    loaded.load()
    store = MetadataStore(ac_factory(), Config())
    store.metadata["bridge"] = loaded
    (post,) = store.assertion_consumer_service(SP, binding=BINDING_HTTP_POST)
    (paos,) = store.assertion_consumer_service(SP, binding=BINDING_PAOS)
    assert post["location"] == paos["location"] == ACS
    assert post["index"] != paos["index"]
    root = etree.fromstring(xml)
    defaults = [el.get("Binding") for el in root.iter("{urn:oasis:names:tc:SAML:2.0:metadata}AssertionConsumerService")
                if el.get("isDefault") == "true"]
    assert defaults == [BINDING_HTTP_POST]
