"""The simulator's SAML 2.0 ECP IdP (bridge.idpsim.ecp), driven over real loopback https.

The SP side here is pysaml2's own (SPConfig + Saml2Client with a generated key)
or a hand-built lxml AuthnRequest shaped like the keystoneauth ECP vector.
Signatures are checked with signxml against the simulator's signing
certificate; encrypted assertions are decrypted with pysaml2 (xmlsec1).
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from lxml import etree
from multidict import CIMultiDictProxy
from saml2 import BINDING_PAOS, BINDING_SOAP
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.mdstore import MetadataStore
from saml2.metadata import entity_descriptor
from saml2.soap import make_soap_enveloped_saml_thingy
from signxml.exceptions import InvalidSignature
from signxml.verifier import VerifyResult, XMLVerifier

from bridge.errors import ConfigError, RequestError
from bridge.idpsim.app import SIM_SIGNING, make_app
from bridge.idpsim.config import SigningAlgorithmName, SimConfig, parse_config
from bridge.idpsim.ecp import (
    AuthFailureMode,
    EcpControls,
    EcpSettings,
    EncryptionAlgorithm,
    parse_ecp_settings,
)
from bridge.idpsim.ecp.documents import basic_credentials
from bridge.idpsim.ecp.routes import ECP_RUNTIME, mount_ecp
from bridge.idpsim.issuance import WRONG_AUDIENCE, SigningMaterial
from bridge.idpsim.keys import SimKeys, ensure_keys, server_ssl_context
from bridge.idpsim.state import SIM_STATE, FailMode, SimState
from tests.keys import make_key_and_cert
from tests.paths import VECTORS

ECP_PATH = "/idp/profile/SAML2/SOAP/ECP"
SP_ENTITY = "https://bridge.example.com/shibboleth-sp"
SP_ACS = "https://bridge.example.com/Shibboleth.sso/SAML2/ECP"
ALICE, ALICE_PASSWORD = "alice@example.com", "alice pa<ss>&]]>word"
NS = {
    "soap11": "http://schemas.xmlsoap.org/soap/envelope/",
    "ecp": "urn:oasis:names:tc:SAML:2.0:profiles:SSO:ecp",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
needs_xmlsec1 = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 binary not installed")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sim_config() -> SimConfig:
    return parse_config(
        {
            "relying_parties": ["urn:loginbridge:example.com"],
            "users": [
                {"upn": ALICE, "password": ALICE_PASSWORD, "display_name": "Alice Example"},
                {"upn": "bob@corp.example.com", "email": "bob@example.com", "password": "bob-pass"},
                {"upn": "disabled@example.com", "password": "disabled-pass", "enabled": False},
            ],
        },
        source="test",
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SimKeys:
    return ensure_keys(tmp_path_factory.mktemp("ecp-sim-keys"), host="127.0.0.1")


@dataclass(frozen=True, kw_only=True, slots=True)
class Sp:
    """A pysaml2 service provider with its own key (also its encryption key)."""

    client: Saml2Client
    metadata: bytes
    key_file: Path
    entity_id: str


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Sp:
    return make_sp(tmp_path_factory.mktemp("ecp-sp"), SP_ENTITY, SP_ACS)


def make_sp(directory: Path, entity_id: str, acs: str) -> Sp:
    key_pem, cert_pem = make_key_and_cert(f"sp {entity_id}")
    (directory / "sp.key").write_bytes(key_pem)
    (directory / "sp.pem").write_bytes(cert_pem)
    conf = SPConfig().load(
        {
            "entityid": entity_id,
            "key_file": str(directory / "sp.key"),
            "cert_file": str(directory / "sp.pem"),
            "encryption_keypairs": [{"key_file": str(directory / "sp.key"), "cert_file": str(directory / "sp.pem")}],
            "service": {"sp": {"endpoints": {"assertion_consumer_service": [(acs, BINDING_PAOS)]}}},
            "xmlsec_binary": shutil.which("xmlsec1") or "/usr/bin/xmlsec1",
        }
    )
    metadata = str(entity_descriptor(conf)).encode("utf-8")
    return Sp(client=Saml2Client(config=conf), metadata=metadata, key_file=directory / "sp.key", entity_id=entity_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class Running:
    base_url: str
    app: web.Application
    keys: SimKeys

    @property
    def ecp_url(self) -> str:
        return self.base_url + ECP_PATH

    @property
    def state(self) -> SimState:
        return self.app[SIM_STATE]

    @property
    def signing_cert_pem(self) -> bytes:
        return self.app[SIM_SIGNING].cert_pem


@pytest.fixture
async def sim(sim_config: SimConfig, keys: SimKeys) -> AsyncIterator[Running]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    port = int(sock.getsockname()[1])
    config = sim_config.resolved("127.0.0.1", port)
    app = make_app(config, keys_dir=keys.keys_dir, keys=keys)
    if ECP_RUNTIME not in app:  # the lead may already mount it in make_app
        mount_ecp(app, config=config, signing=app[SIM_SIGNING], settings=EcpSettings())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=server_ssl_context(keys))
    await site.start()
    try:
        yield Running(base_url=f"https://127.0.0.1:{port}", app=app, keys=keys)
    finally:
        await runner.cleanup()
        sock.close()


@pytest.fixture
async def http(keys: SimKeys) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(keys.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


@pytest.fixture
async def trusted(sim: Running, http: aiohttp.ClientSession, sp: Sp) -> Running:
    """The simulator with the test SP's metadata registered over the control endpoint."""
    async with http.post(sim.base_url + "/_sim/ecp/sp-metadata", data=sp.metadata) as answer:
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["entity_id"] == sp.entity_id
    return sim


# --------------------------------------------------------------------------- helpers


def authn_request(sim: Running, sp: Sp, *, acs: str | None = SP_ACS) -> tuple[str, bytes]:
    """(request ID, SOAP envelope) built by pysaml2's SP client."""
    kwargs = {} if acs is None else {"assertion_consumer_service_url": acs}
    request_id, request = sp.client.create_authn_request(sim.ecp_url, binding=BINDING_PAOS, **kwargs)
    return str(request_id), make_soap_enveloped_saml_thingy(request).encode("utf-8")


def lxml_authn_request(sim: Running, *, issuer: str, acs: str) -> tuple[str, bytes]:
    """An ECP envelope shaped like keystoneauth's vector (PAOS + ecp:Request headers), built with lxml."""
    soap, samlp, saml, ecp = NS["soap11"], NS["samlp"], NS["saml"], NS["ecp"]
    request_id = "_" + uuid.uuid4().hex
    envelope = etree.Element(f"{{{soap}}}Envelope", nsmap={"S": soap})
    header = etree.SubElement(envelope, f"{{{soap}}}Header")
    etree.SubElement(
        header,
        "{urn:liberty:paos:2003-08}Request",
        {
            f"{{{soap}}}mustUnderstand": "1",
            f"{{{soap}}}actor": "http://schemas.xmlsoap.org/soap/actor/next",
            "responseConsumerURL": acs,
            "service": "urn:oasis:names:tc:SAML:2.0:profiles:SSO:ecp",
        },
    )
    ecp_request = etree.SubElement(header, f"{{{ecp}}}Request", {f"{{{soap}}}mustUnderstand": "1"})
    etree.SubElement(ecp_request, f"{{{saml}}}Issuer").text = issuer
    body = etree.SubElement(envelope, f"{{{soap}}}Body")
    request = etree.SubElement(
        body,
        f"{{{samlp}}}AuthnRequest",
        AssertionConsumerServiceURL=acs,
        ID=request_id,
        IssueInstant=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ProtocolBinding=BINDING_PAOS,
        Version="2.0",
    )
    etree.SubElement(request, f"{{{saml}}}Issuer").text = issuer
    etree.SubElement(request, f"{{{samlp}}}NameIDPolicy", AllowCreate="1")
    return request_id, etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def signing_of(keys: SimKeys) -> SigningMaterial:
    return SigningMaterial(
        key_pem=keys.signing_key_pem, cert_pem=keys.signing_cert_pem, algorithm=SigningAlgorithmName.RSA_SHA256
    )


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


async def post_ecp(
    http: aiohttp.ClientSession, sim: Running, body: bytes, *, login: str = ALICE, password: str = ALICE_PASSWORD
) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    headers = {"Content-Type": "text/xml; charset=utf-8", "Authorization": basic(login, password)}
    async with http.post(sim.ecp_url, data=body, headers=headers) as answer:
        return answer.status, await answer.read(), answer.headers


async def control(http: aiohttp.ClientSession, sim: Running, **fields: object) -> None:
    async with http.post(sim.base_url + "/_sim/ecp", json=fields) as answer:
        assert answer.status == 200, await answer.text()


def one(node: etree._Element, path: str) -> etree._Element:
    found = node.xpath(path, namespaces=NS)
    assert isinstance(found, list) and len(found) == 1, f"{path}: {found!r}"
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


def saml_response(body: bytes, *, acs: str = SP_ACS) -> etree._Element:
    envelope = etree.fromstring(body)
    header = one(envelope, "/soap11:Envelope/soap11:Header/ecp:Response")
    assert header.get("AssertionConsumerServiceURL") == acs
    assert header.get(f"{{{NS['soap11']}}}mustUnderstand") == "1"
    return one(envelope, "/soap11:Envelope/soap11:Body/samlp:Response")


def status_codes(response: etree._Element) -> list[str]:
    return [str(code.get("Value")) for code in response.iter(f"{{{NS['samlp']}}}StatusCode")]


def verify(element: etree._Element, cert_pem: bytes) -> etree._Element:
    """signxml's verdict on the element's own enveloped signature; returns the signed element."""
    data = etree.tostring(element)
    result = XMLVerifier().verify(data, x509_cert=cert_pem.decode("ascii"), id_attribute="ID")
    assert isinstance(result, VerifyResult)
    signed = result.signed_xml
    assert signed is not None
    return signed


def decrypt(sp: Sp, response: etree._Element) -> etree._Element:
    """pysaml2's (xmlsec1) decryption with the SP key of the EncryptedData taken out on its own.

    Decrypting it outside the Response proves the plaintext is self-contained (declares every
    namespace it uses), as a relying party that decrypts octets needs it to be.
    """
    encrypted_data = one(response, "saml:EncryptedAssertion/*[local-name()='EncryptedData']")
    text = sp.client.sec.decrypt(etree.tostring(encrypted_data, encoding="unicode"), str(sp.key_file))
    decrypted = etree.fromstring(text.encode("utf-8"))
    assert decrypted.tag == f"{{{NS['saml']}}}Assertion"
    return decrypted


# --------------------------------------------------------------------------- metadata


async def test_metadata_is_read_by_pysaml2(sim: Running, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    async with http.get(sim.base_url + "/idp/shibboleth") as answer:
        assert answer.status == 200
        document = await answer.text()
    entity_id = sim.base_url + "/idp/shibboleth"
    store = MetadataStore(attrc=[], config=SPConfig().load({"entityid": "urn:test:reader"}))
    store.load("inline", document)
    sso = store.single_sign_on_service(entity_id, BINDING_SOAP)
    assert [s["location"] for s in sso] == [sim.ecp_url]
    certs = store.certs(entity_id, "idpsso", "signing")
    pem_body = "".join(sim.signing_cert_pem.decode().strip().splitlines()[1:-1])
    assert ["".join(c[1].split()) for c in certs] == [pem_body]
    root = etree.fromstring(document.encode())
    assert one(root, "//md:NameIDFormat").text == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    assert one(root, "//md:KeyDescriptor").get("use") == "signing"


# --------------------------------------------------------------------------- successful logins


async def test_signed_assertion_for_registered_sp(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    request_id, body = authn_request(trusted, sp)
    status, answer, headers = await post_ecp(http, trusted, body)
    assert status == 200, answer
    assert headers["Content-Type"].startswith("text/xml")
    response = saml_response(answer)
    assert response.get("InResponseTo") == request_id
    assert response.get("Destination") == SP_ACS
    assert status_codes(response) == [STATUS + "Success"]
    assert response.find(f"{{{NS['ds']}}}Signature") is None  # sign_response defaults to false
    signed = verify(one(response, "saml:Assertion"), trusted.signing_cert_pem)
    assert one(signed, "saml:Subject/saml:NameID").text == ALICE
    assert one(signed, "saml:Subject/saml:NameID").get("Format").endswith("emailAddress")  # type: ignore[union-attr]
    assert one(signed, "saml:Issuer").text == trusted.base_url + "/idp/shibboleth"
    assert one(signed, "saml:Conditions/saml:AudienceRestriction/saml:Audience").text == sp.entity_id
    confirmation = one(signed, "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData")
    assert confirmation.get("InResponseTo") == request_id
    assert confirmation.get("Recipient") == SP_ACS
    friendly = {
        a.get("FriendlyName"): one(a, "saml:AttributeValue").text
        for a in signed.iterfind("saml:AttributeStatement/saml:Attribute", NS)
        if a.get("FriendlyName")
    }
    assert friendly == {"mail": ALICE, "eduPersonPrincipalName": ALICE, "displayName": "Alice Example"}
    assert trusted.state.counters["ecp.issued"] == 1
    assert trusted.state.counters["ecp"] == 1


async def test_nameid_is_mail_and_upn_attribute_is_upn(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, body = authn_request(trusted, sp)
    status, answer, _ = await post_ecp(http, trusted, body, login="bob", password="bob-pass")
    assert status == 200
    signed = verify(one(saml_response(answer), "saml:Assertion"), trusted.signing_cert_pem)
    assert one(signed, "saml:Subject/saml:NameID").text == "bob@example.com"
    upn = one(signed, "saml:AttributeStatement/saml:Attribute[@FriendlyName='eduPersonPrincipalName']")
    assert one(upn, "saml:AttributeValue").text == "bob@corp.example.com"


async def test_lxml_request_shaped_like_the_keystone_vector(
    trusted: Running, http: aiohttp.ClientSession, sp: Sp
) -> None:
    vector = VECTORS / "ecp" / "keystone-template-soap_response.xml"
    if not vector.is_file():
        pytest.skip(f"shared test vectors not found at {VECTORS}")
    headers_in_vector = {etree.QName(h).localname for h in etree.parse(str(vector)).getroot()[0]}
    request_id, body = lxml_authn_request(trusted, issuer=sp.entity_id, acs=SP_ACS)
    sent = {etree.QName(h).localname for h in etree.fromstring(body)[0]}
    assert sent <= headers_in_vector
    status, answer, _ = await post_ecp(http, trusted, body)
    assert status == 200, answer
    response = saml_response(answer)
    assert response.get("InResponseTo") == request_id
    verify(one(response, "saml:Assertion"), trusted.signing_cert_pem)


async def test_acs_taken_from_metadata_when_request_names_none(
    trusted: Running, http: aiohttp.ClientSession, sp: Sp
) -> None:
    _, body = authn_request(trusted, sp, acs=None)
    status, answer, _ = await post_ecp(http, trusted, body)
    assert status == 200
    assert saml_response(answer).get("Destination") == SP_ACS


@needs_xmlsec1
@pytest.mark.parametrize("algorithm", list(EncryptionAlgorithm))
async def test_encrypted_assertion_decrypts_and_verifies(
    trusted: Running, http: aiohttp.ClientSession, sp: Sp, algorithm: EncryptionAlgorithm
) -> None:
    await control(http, trusted, encrypt_assertion=True, sign_response=True, encryption_algorithm=algorithm.value)
    request_id, body = authn_request(trusted, sp)
    status, answer, _ = await post_ecp(http, trusted, body)
    assert status == 200, answer
    response = saml_response(answer)
    assert response.find(f"{{{NS['saml']}}}Assertion") is None
    method = one(response, "saml:EncryptedAssertion/*[local-name()='EncryptedData']/*[local-name()='EncryptionMethod']")
    assert method.get("Algorithm") == algorithm.uri
    assert ALICE.encode() not in answer
    signed_response = verify(response, trusted.signing_cert_pem)
    assert signed_response.get("InResponseTo") == request_id
    assertion = decrypt(sp, response)
    signed = verify(assertion, trusted.signing_cert_pem)
    assert one(signed, "saml:Subject/saml:NameID").text == ALICE


async def test_sign_response_only(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    await control(http, trusted, sign_assertion=False, sign_response=True)
    _, body = authn_request(trusted, sp)
    _, answer, _ = await post_ecp(http, trusted, body)
    response = saml_response(answer)
    assert one(response, "saml:Assertion").find(f"{{{NS['ds']}}}Signature") is None
    signed = verify(response, trusted.signing_cert_pem)
    assert one(signed, "saml:Assertion/saml:Subject/saml:NameID").text == ALICE


async def test_trust_any_sp_uses_the_requested_acs(sim: Running, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    stranger = make_sp(tmp_path, "https://stranger.example.org/sp", "https://stranger.example.org/ecp")
    await control(http, sim, trust_any_sp=True)
    _, body = authn_request(sim, stranger, acs="https://stranger.example.org/ecp")
    status, answer, _ = await post_ecp(http, sim, body)
    assert status == 200
    response = saml_response(answer, acs="https://stranger.example.org/ecp")
    signed = verify(one(response, "saml:Assertion"), sim.signing_cert_pem)
    assert one(signed, "saml:Conditions/saml:AudienceRestriction/saml:Audience").text == stranger.entity_id


async def test_trust_any_sp_cannot_encrypt_without_metadata(
    sim: Running, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    stranger = make_sp(tmp_path, "https://stranger.example.org/sp", "https://stranger.example.org/ecp")
    await control(http, sim, trust_any_sp=True, encrypt_assertion=True)
    _, body = authn_request(sim, stranger, acs="https://stranger.example.org/ecp")
    status, answer, _ = await post_ecp(http, sim, body)
    assert status == 500
    assert b"Fault" in answer and ALICE.encode() not in answer
    assert sim.state.counters["ecp.error"] == 1


# --------------------------------------------------------------------------- failures


async def test_no_credentials_is_a_basic_challenge(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, body = authn_request(trusted, sp)
    async with http.post(trusted.ecp_url, data=body, headers={"Content-Type": "text/xml"}) as answer:
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith('Basic realm="')


@pytest.mark.parametrize(("login", "password"), [(ALICE, "wrong"), ("nobody@example.com", ALICE_PASSWORD)])
async def test_bad_password_or_unknown_user_is_401(
    trusted: Running, http: aiohttp.ClientSession, sp: Sp, login: str, password: str
) -> None:
    _, body = authn_request(trusted, sp)
    status, answer, headers = await post_ecp(http, trusted, body, login=login, password=password)
    assert status == 401
    assert "Basic" in headers["WWW-Authenticate"]
    assert b"Assertion" not in answer
    assert trusted.state.counters["ecp.auth_failed"] == 1


@pytest.mark.parametrize(("login", "password"), [(ALICE, "wrong"), ("nobody@example.com", ALICE_PASSWORD)])
async def test_saml_status_mode_answers_authn_failed(
    trusted: Running, http: aiohttp.ClientSession, sp: Sp, login: str, password: str
) -> None:
    await control(http, trusted, auth_failure="saml-status")
    request_id, body = authn_request(trusted, sp)
    status, answer, _ = await post_ecp(http, trusted, body, login=login, password=password)
    assert status == 200
    response = saml_response(answer)
    assert response.get("InResponseTo") == request_id
    assert status_codes(response) == [STATUS + "Responder", STATUS + "AuthnFailed"]
    assert response.find(f"{{{NS['saml']}}}Assertion") is None


async def test_unknown_sp_is_request_denied(sim: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    request_id, body = authn_request(sim, sp)
    status, answer, _ = await post_ecp(http, sim, body)
    assert status == 200
    response = saml_response(answer)
    assert response.get("InResponseTo") == request_id
    assert status_codes(response) == [STATUS + "Responder", STATUS + "RequestDenied"]
    assert response.find(f"{{{NS['saml']}}}Assertion") is None


async def test_acs_not_in_metadata_is_request_denied(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, body = authn_request(trusted, sp, acs="https://attacker.example.net/acs")
    status, answer, _ = await post_ecp(http, trusted, body)
    assert status == 200
    response = saml_response(answer, acs="https://attacker.example.net/acs")
    assert status_codes(response)[-1] == STATUS + "RequestDenied"
    assert b"Assertion " not in answer and b"NameID" not in answer


async def test_disabled_user_is_request_denied(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, body = authn_request(trusted, sp)
    status, answer, _ = await post_ecp(http, trusted, body, login="disabled@example.com", password="disabled-pass")
    assert status == 200
    assert status_codes(saml_response(answer))[-1] == STATUS + "RequestDenied"


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        b'<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>',
    ],
)
async def test_unreadable_request_is_a_soap_fault(trusted: Running, http: aiohttp.ClientSession, body: bytes) -> None:
    status, answer, _ = await post_ecp(http, trusted, body)
    assert status == 500
    fault = one(etree.fromstring(answer), "/soap11:Envelope/soap11:Body/soap11:Fault")
    assert one(fault, "faultcode").text == "soap11:Client"
    assert trusted.state.counters["ecp.fault"] == 1


async def test_wrong_destination_in_request_is_refused(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, request = sp.client.create_authn_request("https://elsewhere.example/idp/ecp", binding=BINDING_PAOS)
    body = make_soap_enveloped_saml_thingy(request).encode()
    status, _, _ = await post_ecp(http, trusted, body)
    assert status == 500


async def test_simulator_fail_mode_applies(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    trusted.state.fail_mode = FailMode.HTTP_503
    _, body = authn_request(trusted, sp)
    status, _, _ = await post_ecp(http, trusted, body)
    assert status == 503
    assert trusted.state.counters["ecp"] == 1


# --------------------------------------------------------------------------- mischief


async def mischief_response(http: aiohttp.ClientSession, sim: Running, sp: Sp, kind: str) -> tuple[str, etree._Element]:
    await control(http, sim, mischief=kind)
    request_id, body = authn_request(sim, sp)
    status, answer, _ = await post_ecp(http, sim, body)
    assert status == 200
    assert sim.state.counters[f"ecp.mischief.{kind}"] == 1
    return request_id, saml_response(answer)


async def test_mischief_wrong_in_response_to(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    request_id, response = await mischief_response(http, trusted, sp, "wrong-in-response-to")
    assert response.get("InResponseTo") not in (None, request_id)
    signed = verify(one(response, "saml:Assertion"), trusted.signing_cert_pem)
    data = one(signed, "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData")
    assert data.get("InResponseTo") != request_id


async def test_mischief_wrong_destination(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, response = await mischief_response(http, trusted, sp, "wrong-destination")
    assert response.get("Destination") != SP_ACS
    signed = verify(one(response, "saml:Assertion"), trusted.signing_cert_pem)
    data = one(signed, "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData")
    assert data.get("Recipient") != SP_ACS


async def test_mischief_unsigned(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    await control(http, trusted, sign_response=True)
    _, response = await mischief_response(http, trusted, sp, "unsigned")
    assert not list(response.iter(f"{{{NS['ds']}}}Signature"))


async def test_mischief_wrong_key(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, response = await mischief_response(http, trusted, sp, "wrong-key")
    assertion = one(response, "saml:Assertion")
    assert assertion.find(f"{{{NS['ds']}}}Signature") is not None
    with pytest.raises(InvalidSignature):
        verify(assertion, trusted.signing_cert_pem)


async def test_mischief_expired(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, response = await mischief_response(http, trusted, sp, "expired")
    signed = verify(one(response, "saml:Assertion"), trusted.signing_cert_pem)
    not_after = one(signed, "saml:Conditions").get("NotOnOrAfter") or ""
    assert datetime.fromisoformat(not_after.replace("Z", "+00:00")) < datetime.now(UTC)


async def test_mischief_wrong_audience(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, response = await mischief_response(http, trusted, sp, "wrong-audience")
    signed = verify(one(response, "saml:Assertion"), trusted.signing_cert_pem)
    assert one(signed, "saml:Conditions/saml:AudienceRestriction/saml:Audience").text == WRONG_AUDIENCE


async def test_mischief_wrap(trusted: Running, http: aiohttp.ClientSession, sp: Sp) -> None:
    _, response = await mischief_response(http, trusted, sp, "wrap")
    first, second = response.findall(f"{{{NS['saml']}}}Assertion")
    assert first.find(f"{{{NS['ds']}}}Signature") is None
    assert one(first, "saml:Subject/saml:NameID").text == ALICE
    signed = verify(second, trusted.signing_cert_pem)
    assert one(signed, "saml:Subject/saml:NameID").text == "mallory@example.com"


# --------------------------------------------------------------------------- controls and settings


async def test_control_rejects_bad_values_atomically(sim: Running, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.base_url + "/_sim/ecp", json={"sign_response": True, "mischief": "nope"}) as answer:
        assert answer.status == 400
    async with http.get(sim.base_url + "/_sim/ecp") as answer:
        snapshot = await answer.json()
    assert snapshot["sign_response"] is False and snapshot["mischief"] is None
    await control(http, sim, auth_failure="saml-status", mischief="wrap")
    await control(http, sim, reset=True)
    assert sim.app[ECP_RUNTIME].controls.auth_failure is AuthFailureMode.HTTP_401
    assert sim.app[ECP_RUNTIME].controls.mischief is None


async def test_bad_sp_metadata_is_refused(sim: Running, http: aiohttp.ClientSession) -> None:
    for body in (b"<x/>", b"<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'/>"):
        async with http.post(sim.base_url + "/_sim/ecp/sp-metadata", data=body) as answer:
            assert answer.status == 400
    assert sim.app[ECP_RUNTIME].idp.trusted_sps() == ()


def test_sp_metadata_files_are_preloaded(sim_config: SimConfig, keys: SimKeys, sp: Sp, tmp_path: Path) -> None:
    (tmp_path / "sp.xml").write_bytes(sp.metadata)
    settings = parse_ecp_settings(
        {"sp_metadata": ["sp.xml"], "encrypt_assertion": True, "auth_failure": "saml-status"},
        source="users.yaml",
        base_dir=tmp_path,
    )
    app = web.Application()
    mount_ecp(app, config=sim_config, signing=signing_of(keys), settings=settings)
    runtime = app[ECP_RUNTIME]
    assert runtime.idp.trusted_sps() == (sp.entity_id,)
    assert runtime.controls.encrypt_assertion is True
    assert runtime.controls.auth_failure is AuthFailureMode.SAML_STATUS


def test_missing_sp_metadata_file_is_a_config_error(sim_config: SimConfig, keys: SimKeys, tmp_path: Path) -> None:
    app = web.Application()
    with pytest.raises(ConfigError):
        mount_ecp(
            app,
            config=sim_config,
            signing=signing_of(keys),
            settings=EcpSettings(sp_metadata_files=(tmp_path / "missing.xml",)),
        )


@pytest.mark.parametrize(
    "section", [{"nope": 1}, {"sign_assertion": "yes"}, {"auth_failure": "teapot"}, {"sp_metadata": "a.xml"}, []]
)
def test_settings_errors_name_the_key(section: object) -> None:
    with pytest.raises(ConfigError, match="ecp"):
        parse_ecp_settings(section, source="users.yaml")


def test_controls_reject_non_objects() -> None:
    controls = EcpControls.from_settings(EcpSettings())
    with pytest.raises(RequestError):
        controls.apply_control(["sign_response"])
    with pytest.raises(RequestError):
        controls.apply_control({"mischief_subject": "no-at-sign"})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"nocolon").decode(), None),
        ("Basic " + base64.b64encode(b"al:i:ce").decode(), ("al", "i:ce")),
        ("basic " + base64.b64encode("é@x:p ä".encode()).decode(), ("é@x", "p ä")),
    ],
)
def test_basic_credentials(header: str | None, expected: tuple[str, str] | None) -> None:
    parsed = basic_credentials(header)
    assert (None if parsed is None else (parsed.login, parsed.password)) == expected
    if parsed is not None:
        assert parsed.password not in repr(parsed)


@pytest.fixture(autouse=True)
def _no_password_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level("DEBUG", logger="bridge.idpsim")
    yield
    assert ALICE_PASSWORD not in caplog.text
