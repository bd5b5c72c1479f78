"""The AD FS simulator over real https on loopback: documents, tokens, faults and controls."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from bridge.errors import ConfigError, XmlRejected
from bridge.idpsim import namespaces as ns
from bridge.idpsim.app import STATS_PATH, make_app
from bridge.idpsim.config import SimConfig, parse_config
from bridge.idpsim.keys import cert_fingerprint
from bridge.idpsim.namespaces import TrustVersion
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.idpsim.state import Mischief
from bridge.xml.safe import full_text, parse_untrusted
from tests.paths import REPO, VECTORS

USERS_FILE = REPO / "conf" / "idp-sim" / "users.yaml"
RP = "urn:loginbridge:example.com"
ALICE = "alice@example.com"
ALICE_PASSWORD = "alice-demo-pass"
SAML1 = "urn:oasis:names:tc:SAML:1.0:assertion"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
NSMAP = {
    "s": ns.SOAP12,
    "a": ns.WSA,
    "wst": ns.WST13,
    "t": ns.WST2005,
    "wsp": ns.WSP,
    "o": ns.WSSE,
    "saml1": SAML1,
    "saml2": SAML2,
    "ds": ns.DS,
    "md": ns.MD,
    "fed": ns.FED,
    "wsdl": ns.WSDL,
    "soap12": ns.WSDL_SOAP12,
    "u": ns.WSU,
}


# --------------------------------------------------------------------------- fixtures














# --------------------------------------------------------------------------- helpers


def xp(node: etree._Element, path: str, **variables: str) -> list[etree._Element]:
    """Elements an XPath selects (typed for mypy)."""
    found = node.xpath(path, namespaces=NSMAP, **variables)  # type: ignore[arg-type]
    assert isinstance(found, list)
    return [item for item in found if isinstance(item, etree._Element)]


def xs(node: etree._Element, path: str, **variables: str) -> str:
    """The string value of an XPath expression."""
    found = node.xpath(f"string({path})", namespaces=NSMAP, **variables)  # type: ignore[arg-type]
    assert isinstance(found, str)
    return found


def build_rst(
    version: TrustVersion,
    endpoint: str,
    *,
    username: str = ALICE,
    password: str = ALICE_PASSWORD,
    applies_to: str | None = RP,
    token_type: str | None = None,
    message_id: str | None = None,
    with_security: bool = True,
) -> tuple[bytes, str]:
    """An RST as a WS-Trust client sends it, built with lxml; returns (bytes, MessageID)."""
    message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
    trust = version.namespace
    env = etree.Element(f"{{{ns.SOAP12}}}Envelope", nsmap={"s": ns.SOAP12, "wsa": ns.WSA, "wsu": ns.WSU})
    header = etree.SubElement(env, f"{{{ns.SOAP12}}}Header")
    action = etree.SubElement(header, f"{{{ns.WSA}}}Action")
    action.text = version.request_action
    action.set(f"{{{ns.SOAP12}}}mustUnderstand", "1")
    etree.SubElement(header, f"{{{ns.WSA}}}MessageID").text = message_id
    reply = etree.SubElement(header, f"{{{ns.WSA}}}ReplyTo")
    etree.SubElement(reply, f"{{{ns.WSA}}}Address").text = ns.ANONYMOUS
    etree.SubElement(header, f"{{{ns.WSA}}}To").text = endpoint
    if with_security:
        security = etree.SubElement(header, f"{{{ns.WSSE}}}Security", nsmap={"wsse": ns.WSSE})
        security.set(f"{{{ns.SOAP12}}}mustUnderstand", "1")
        now = datetime.now(UTC)
        stamp = etree.SubElement(security, f"{{{ns.WSU}}}Timestamp")
        etree.SubElement(stamp, f"{{{ns.WSU}}}Created").text = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        expires = now + timedelta(minutes=10)
        etree.SubElement(stamp, f"{{{ns.WSU}}}Expires").text = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
        token = etree.SubElement(security, f"{{{ns.WSSE}}}UsernameToken")
        etree.SubElement(token, f"{{{ns.WSSE}}}Username").text = username
        pw = etree.SubElement(token, f"{{{ns.WSSE}}}Password", Type=ns.PASSWORD_TEXT)
        pw.text = password
    body = etree.SubElement(env, f"{{{ns.SOAP12}}}Body")
    rst = etree.SubElement(body, f"{{{trust}}}RequestSecurityToken", nsmap={"wst": trust})
    if applies_to is not None:
        applies = etree.SubElement(rst, f"{{{ns.WSP}}}AppliesTo", nsmap={"wsp": ns.WSP})
        ref = etree.SubElement(applies, f"{{{ns.WSA}}}EndpointReference")
        etree.SubElement(ref, f"{{{ns.WSA}}}Address").text = applies_to
    etree.SubElement(rst, f"{{{trust}}}KeyType").text = version.key_type
    etree.SubElement(rst, f"{{{trust}}}RequestType").text = version.request_type
    if token_type is not None:
        etree.SubElement(rst, f"{{{trust}}}TokenType").text = token_type
    return etree.tostring(env, encoding="utf-8"), message_id


async def post_rst(
    client: aiohttp.ClientSession,
    sim: RunningSimulator,
    version: TrustVersion = TrustVersion.WS_TRUST_13,
    **kwargs: object,
) -> tuple[int, str, bytes, str]:
    url = sim.endpoint(version)
    body, message_id = build_rst(version, url, **kwargs)  # type: ignore[arg-type]
    headers = {"Content-Type": "application/soap+xml; charset=utf-8"}
    async with client.post(url, data=body, headers=headers) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.read(), message_id


async def metadata_cert_pem(client: aiohttp.ClientSession, sim: RunningSimulator) -> bytes:
    async with client.get(sim.metadata_url) as resp:
        assert resp.status == 200
        root = parse_untrusted(await resp.read())
    texts = xp(
        root, "md:RoleDescriptor/md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data/ds:X509Certificate"
    )
    assert len(texts) == 1
    der = base64.b64decode(full_text(texts[0]))
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def verify(raw: bytes, cert_pem: bytes, *, sha1: bool = False) -> etree._Element:
    """Verify the assertion signature on the raw response bytes; return what the signature covers."""
    config = SignatureConfiguration(
        signature_methods=frozenset({SignatureMethod.RSA_SHA1 if sha1 else SignatureMethod.RSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA1 if sha1 else DigestAlgorithm.SHA256}),
    )
    root = etree.fromstring(raw)
    assert len(xp(root, "//*[ds:Signature]")) == 1
    id_attribute = "AssertionID" if xp(root, "//saml1:Assertion[ds:Signature]") else "ID"
    result = XMLVerifier().verify(
        raw, x509_cert=cert_pem.decode(), id_attribute=id_attribute, expect_config=config
    )
    assert not isinstance(result, list)
    assert result.signed_xml is not None
    return result.signed_xml


def assertions(raw: bytes) -> list[etree._Element]:
    root = parse_untrusted(raw)
    found: list[etree._Element] = xp(root, "//wst:RequestedSecurityToken/* | //t:RequestedSecurityToken/*")
    return found


def subject_of(assertion: etree._Element) -> str:
    names = xp(assertion, ".//saml1:NameIdentifier | .//saml2:NameID")
    values = {full_text(n) for n in names}
    assert len(values) == 1
    return values.pop()


def fault_of(raw: bytes) -> tuple[str, tuple[str, str], str, str]:
    """(code, (subcode namespace, local), reason, RelatesTo) of a SOAP 1.2 fault."""
    root = parse_untrusted(raw)
    code = xs(root, "s:Body/s:Fault/s:Code/s:Value")
    sub = xp(root, "s:Body/s:Fault/s:Code/s:Subcode/s:Value")[0]
    prefix, local = full_text(sub).split(":", 1)
    reason = xs(root, "s:Body/s:Fault/s:Reason/s:Text")
    relates = xs(root, "s:Header/a:RelatesTo")
    return str(code), (sub.nsmap[prefix], local), str(reason), str(relates)


# --------------------------------------------------------------------------- documents


async def test_mex_lists_https_usernamemixed_ports_and_an_http_trap(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    async with client.get(sim.mex_url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/xml")
        root = parse_untrusted(await resp.read())
    assert etree.QName(root).localname == "definitions"
    ports = {
        str(port.get("name")): xs(port, "soap12:address/@location")
        for port in xp(root, "wsdl:service/wsdl:port")
    }
    authority = f"127.0.0.1:{sim.port}"
    assert (
        ports["UserNameWSTrustBinding_IWSTrust13Async"]
        == f"https://{authority}/adfs/services/trust/13/usernamemixed"
    )
    assert (
        ports["UserNameWSTrustBinding_IWSTrustFeb2005Async"]
        == f"https://{authority}/adfs/services/trust/2005/usernamemixed"
    )
    assert (
        ports["UserNameWSTrustBinding_IWSTrust13Async1"]
        == f"http://{authority}/adfs/services/trust/13/username"
    )
    for name in ports:
        binding = xp(root, "wsdl:binding[@name=$n]", n=name)[0]
        transport = xs(binding, "soap12:binding/@transport")
        assert transport == ns.SOAP_HTTP_TRANSPORT
        policy_id = xs(binding, "wsp:PolicyReference/@URI").lstrip("#")
        policy = xp(root, "wsp:Policy[@u:Id=$i]", i=policy_id)
        assert len(policy) == 1
        local_names = {etree.QName(el).localname for el in policy[0].iter() if isinstance(el.tag, str)}
        if name.startswith("UserName"):
            assert "WssUsernameToken10" in local_names
            # Only the https ports use transport security; the http trap relies on message security.
            assert ("TransportBinding" in local_names) == ports[name].startswith("https://")


def _policy_shape(root: etree._Element, policy_id: str) -> list[str]:
    policy = xp(root, "//wsp:Policy[@u:Id=$i]", i=policy_id)[0]
    return [etree.QName(el).localname for el in policy.iter() if isinstance(el.tag, str)]


async def test_mex_username_policies_have_the_shape_of_a_real_adfs(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    real_file = VECTORS / "adfs" / "mex" / "common.mex.xml"
    if not real_file.exists():
        pytest.skip(f"shared vectors not found at {VECTORS.resolve()} (real AD FS MEX needed)")
    real = parse_untrusted(real_file.read_bytes(), max_bytes=1 << 20)
    async with client.get(sim.mex_url) as resp:
        ours = parse_untrusted(await resp.read())
    for policy_id in (
        "UserNameWSTrustBinding_IWSTrust13Async_policy",
        "UserNameWSTrustBinding_IWSTrustFeb2005Async_policy",
    ):
        real_shape = [n for n in _policy_shape(real, policy_id) if n not in {"EndorsingSupportingTokens"}]
        ours_shape = _policy_shape(ours, policy_id)
        # Everything ours says, the real one says in the same order (we leave out endorsing tokens).
        it = iter(real_shape)
        assert all(name in it for name in ours_shape), (policy_id, ours_shape, real_shape)


async def test_federation_metadata_names_issuer_and_signing_cert(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    async with client.get(sim.metadata_url) as resp:
        assert resp.status == 200
        root = parse_untrusted(await resp.read())
    assert root.get("entityID") == sim.issuer == f"http://127.0.0.1:{sim.port}/adfs/services/trust"
    role = xp(root, "md:RoleDescriptor")[0]
    assert role.get(f"{{{ns.XSI}}}type") == "fed:SecurityTokenServiceType"
    passive = xs(role, "fed:PassiveRequestorEndpoint//*[local-name()='Address']")
    assert passive == f"https://127.0.0.1:{sim.port}/adfs/ls/"
    assert await metadata_cert_pem(client, sim) == x509.load_pem_x509_certificate(
        sim.signing_cert_pem
    ).public_bytes(Encoding.PEM)
    cert = x509.load_pem_x509_certificate(sim.signing_cert_pem)
    assert cert.subject.rfc4514_string() == "CN=ADFS Signing - 127.0.0.1"


# --------------------------------------------------------------------------- issuing tokens


@pytest.mark.parametrize("version", list(TrustVersion))
@pytest.mark.parametrize(
    ("token_type", "saml_ns"),
    [
        (None, SAML1),
        (ns.SAML11_PROFILE_TYPE, SAML1),
        (SAML2, SAML2),
        (ns.SAML20_PROFILE_TYPE, SAML2),
    ],
)
async def test_rstr_carries_a_token_signed_with_the_metadata_certificate(
    client: aiohttp.ClientSession,
    sim: RunningSimulator,
    version: TrustVersion,
    token_type: str | None,
    saml_ns: str,
) -> None:
    status, content_type, raw, message_id = await post_rst(client, sim, version, token_type=token_type)
    assert status == 200
    assert content_type == "application/soap+xml; charset=utf-8"
    root = parse_untrusted(raw)
    assert xs(root, "s:Header/a:Action") == version.response_action
    assert xs(root, "s:Header/a:RelatesTo") == message_id
    if version is TrustVersion.WS_TRUST_13:
        rstrs = xp(root, "s:Body/wst:RequestSecurityTokenResponseCollection/wst:RequestSecurityTokenResponse")
    else:
        rstrs = xp(root, "s:Body/t:RequestSecurityTokenResponse")
    assert len(rstrs) == 1
    rstr = rstrs[0]
    trust = version.namespace
    assert rstr.findtext(f"{{{trust}}}TokenType") == (token_type or SAML1)
    assert rstr.findtext(f"{{{trust}}}RequestType") == version.request_type
    assert rstr.findtext(f"{{{trust}}}KeyType") == version.key_type
    assert xs(rstr, "wsp:AppliesTo/a:EndpointReference/a:Address") == RP
    created = xs(rstr, "*[local-name()='Lifetime']/u:Created")
    expires = xs(rstr, "*[local-name()='Lifetime']/u:Expires")
    lifetime = datetime.fromisoformat(expires) - datetime.fromisoformat(created)
    assert lifetime == timedelta(hours=1)

    tokens = assertions(raw)
    assert len(tokens) == 1
    assertion = tokens[0]
    assert etree.QName(assertion).namespace == saml_ns
    assertion_id = assertion.get("AssertionID") or assertion.get("ID")
    for ref in ("RequestedAttachedReference", "RequestedUnattachedReference"):
        assert xs(rstr, f"*[local-name()='{ref}']//o:KeyIdentifier") == assertion_id

    signed = verify(raw, await metadata_cert_pem(client, sim))
    assert signed.get("AssertionID", signed.get("ID")) == assertion_id
    assert subject_of(signed) == ALICE
    if saml_ns == SAML1:
        assert signed.get("Issuer") == sim.issuer
        audience = xs(signed, ".//saml1:Audience")
        claims = {
            f"{a.get('AttributeNamespace')}/{a.get('AttributeName')}": [full_text(v) for v in a]
            for a in xp(signed, ".//saml1:Attribute")
        }
    else:
        assert xs(signed, "saml2:Issuer") == sim.issuer
        audience = xs(signed, ".//saml2:Audience")
        claims = {str(a.get("Name")): [full_text(v) for v in a] for a in xp(signed, ".//saml2:Attribute")}
    assert audience == RP
    assert claims[ns.CLAIM_UPN] == [ALICE]
    assert claims[ns.CLAIM_EMAIL] == [ALICE]
    assert claims[ns.CLAIM_NAME] == ["Alice Example"]
    assert claims[ns.CLAIM_GROUP] == ["Staff", "Printing"]


async def test_rstr_children_follow_the_real_adfs_order(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    real_file = VECTORS / "adfs" / "adal-common.rstr.xml"
    if not real_file.exists():
        pytest.skip(f"shared vectors not found at {VECTORS.resolve()} (real AD FS RSTR needed)")
    _, _, raw, _ = await post_rst(client, sim)

    def order(document: bytes) -> list[str]:
        rstr = xp(parse_untrusted(document), "//wst:RequestSecurityTokenResponse")[0]
        return [etree.QName(child).localname for child in rstr]

    assert order(raw) == order(real_file.read_bytes())


@pytest.mark.parametrize("login", ["ALICE@Example.com", "alice"])
async def test_login_by_upn_any_case_or_account_name(
    client: aiohttp.ClientSession, sim: RunningSimulator, login: str
) -> None:
    status, _, raw, _ = await post_rst(client, sim, username=login)
    assert status == 200
    assert subject_of(assertions(raw)[0]) == ALICE


async def test_password_with_xml_metacharacters_round_trips(keys_dir: Path) -> None:
    password = "p<a>&ss]]>'\"  "
    config = parse_config(
        {
            "relying_parties": [RP],
            "users": [{"upn": "odd@example.com", "password": password}],
        }
    )
    async with run_simulator(config, keys_dir) as sim:
        context = ssl.create_default_context(cafile=str(sim.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
            ok, _, raw, _ = await post_rst(client, sim, username="odd@example.com", password=password)
            bad, _, _, _ = await post_rst(client, sim, username="odd@example.com", password=password.strip())
    assert ok == 200
    assert subject_of(assertions(raw)[0]) == "odd@example.com"
    assert bad == 500


async def test_rsa_sha1_signing_like_older_farms(keys_dir: Path, config: SimConfig) -> None:
    sha1 = parse_config(
        {
            "relying_parties": [RP],
            "users": [{"upn": ALICE, "password": ALICE_PASSWORD}],
            "signing": {"key": "signing.key", "cert": "signing.pem", "algorithm": "rsa-sha1"},
        },
        base_dir=keys_dir,
    )
    async with run_simulator(sha1, keys_dir) as sim:
        context = ssl.create_default_context(cafile=str(sim.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
            status, _, raw, _ = await post_rst(client, sim)
            cert = await metadata_cert_pem(client, sim)
    assert status == 200
    method = xs(assertions(raw)[0], ".//ds:SignatureMethod/@Algorithm")
    assert method == "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    assert subject_of(verify(raw, cert, sha1=True)) == ALICE
    with pytest.raises(InvalidInput, match="RSA_SHA1"):
        verify(raw, cert)  # a default (SHA-256 only) verifier must refuse it


# --------------------------------------------------------------------------- faults


WSSE_FAILED = (ns.WSSE, "FailedAuthentication")


@pytest.mark.parametrize("version", list(TrustVersion))
@pytest.mark.parametrize(
    ("kwargs", "code", "subcode", "reason"),
    [
        (
            {"password": "wrong"},
            "s:Sender",
            WSSE_FAILED,
            "ID3242: The security token could not be authenticated or authorized.",
        ),
        (
            {"username": "nobody@example.com"},
            "s:Sender",
            WSSE_FAILED,
            "ID3242: The security token could not be authenticated or authorized.",
        ),
        (
            {"username": "disabled@example.com", "password": "wrong"},
            "s:Sender",
            WSSE_FAILED,
            "ID3242: The security token could not be authenticated or authorized.",
        ),
        (
            {"username": "disabled@example.com", "password": "disabled-demo-pass"},
            "s:Receiver",
            (None, "RequestFailed"),
            "MSIS7068: Access denied.",
        ),
        (
            {"applies_to": "urn:somebody:else"},
            "s:Sender",
            (None, "InvalidRequest"),
            "ID3082: The request scope is not valid or is unsupported.",
        ),
        (
            {"applies_to": None},
            "s:Sender",
            (None, "InvalidRequest"),
            "ID3082: The request scope is not valid or is unsupported.",
        ),
        (
            {"with_security": False},
            "s:Sender",
            (ns.WSSE, "InvalidSecurity"),
            "An error occurred when verifying security for the message.",
        ),
    ],
)
async def test_faults_are_worded_as_adfs_and_sent_with_500(
    client: aiohttp.ClientSession,
    sim: RunningSimulator,
    version: TrustVersion,
    kwargs: dict[str, object],
    code: str,
    subcode: tuple[str | None, str],
    reason: str,
) -> None:
    status, content_type, raw, message_id = await post_rst(client, sim, version, **kwargs)
    assert status == 500
    assert content_type == "application/soap+xml; charset=utf-8"
    got_code, (got_ns, got_local), got_reason, relates = fault_of(raw)
    assert got_code == code
    assert (got_ns, got_local) == (subcode[0] or version.namespace, subcode[1])
    assert got_reason == reason
    assert relates == message_id
    assert b"demo-pass" not in raw and b"wrong" not in raw


@pytest.mark.parametrize(
    "body",
    [
        b"this is not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        b'<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body/></Envelope>',
        b"",
    ],
)
async def test_unreadable_requests_get_invalid_request(
    client: aiohttp.ClientSession, sim: RunningSimulator, body: bytes
) -> None:
    async with client.post(sim.endpoint(TrustVersion.WS_TRUST_13), data=body) as resp:
        assert resp.status == 500
        code, subcode, reason, _ = fault_of(await resp.read())
    assert (code, subcode, reason) == (
        "s:Sender",
        (ns.WST13, "InvalidRequest"),
        "MSIS3127: The specified request failed.",
    )


async def test_rst_of_the_other_version_is_refused(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    body, _ = build_rst(TrustVersion.WS_TRUST_2005, sim.endpoint(TrustVersion.WS_TRUST_13))
    async with client.post(sim.endpoint(TrustVersion.WS_TRUST_13), data=body) as resp:
        assert resp.status == 500
        _, subcode, _, _ = fault_of(await resp.read())
    assert subcode == (ns.WST13, "InvalidRequest")


# --------------------------------------------------------------------------- controls


async def test_counters_count_per_endpoint_and_outcome(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    await post_rst(client, sim, TrustVersion.WS_TRUST_13)
    await post_rst(client, sim, TrustVersion.WS_TRUST_2005, password="nope")
    await post_rst(client, sim, TrustVersion.WS_TRUST_2005)
    async with client.get(sim.mex_url) as resp:
        await resp.read()
    async with client.get(sim.base_url + STATS_PATH) as resp:
        assert resp.status == 200
        stats = await resp.json()
    assert stats["counters"] == {
        "trust13": 1,
        "trust2005": 2,
        "mex": 1,
        "issued": 2,
        "fault.failed_authentication": 1,
    }
    assert sim.state.counters["trust2005"] == 2


async def test_control_endpoint_sets_and_validates(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    control = sim.base_url + "/_sim/control"
    await post_rst(client, sim)
    async with client.post(
        control,
        json={
            "fail_mode": "http-503",
            "delay_seconds": 0.1,
            "mischief": "tamper",
            "mischief_subject": "bob@example.org",
            "reset_counters": True,
        },
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["fail_mode"] == "http-503" and body["mischief"] == "tamper" and body["counters"] == {}
    assert sim.state.delay_seconds == pytest.approx(0.1)
    assert sim.state.mischief is Mischief.TAMPER and sim.state.mischief_subject == "bob@example.org"
    async with client.post(control, json={"fail_mode": "explode", "delay_seconds": 5}) as resp:
        assert resp.status == 400
        assert "fail_mode" in (await resp.json())["detail"]
    assert sim.state.delay_seconds == pytest.approx(0.1)  # all-or-nothing
    async with client.post(control, json={"bogus": 1}) as resp:
        assert resp.status == 400
    async with client.post(control, data=b"{not json") as resp:
        assert resp.status == 400
    async with client.post(control, json={"reset": True}) as resp:
        assert resp.status == 200
    assert sim.state.fail_mode is None and sim.state.mischief is None and sim.state.delay_seconds == 0


@pytest.mark.parametrize("path", [STATS_PATH, "/_sim/control"])
async def test_controls_refuse_non_loopback_peers(config: SimConfig, keys_dir: Path, path: str) -> None:
    app = make_app(config, keys_dir=keys_dir)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("192.0.2.7", 40000) if name == "peername" else default
    )
    method = "GET" if path == STATS_PATH else "POST"
    request = make_mocked_request(method, path, app=app, transport=transport)
    match = await app.router.resolve(request)
    response = await match.handler(request)
    assert response.status == 403


def _non_loopback_ipv4() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_controls_refuse_a_real_non_loopback_connection(config: SimConfig, keys_dir: Path) -> None:
    address = _non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    async with run_simulator(config, keys_dir, host="0.0.0.0") as sim:
        context = ssl.create_default_context(cafile=str(sim.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
            url = f"https://{address}:{sim.port}"
            async with client.get(url + STATS_PATH, server_hostname="localhost") as resp:
                assert resp.status == 403
            async with client.post(
                url + "/_sim/control", json={"fail_mode": "garbage"}, server_hostname="localhost"
            ) as resp:
                assert resp.status == 403
            async with client.get(f"https://127.0.0.1:{sim.port}{STATS_PATH}") as resp:
                assert resp.status == 200
        assert sim.state.fail_mode is None


async def test_delay_holds_answers_without_serialising_them(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    sim.state.delay_seconds = 0.5
    start = time.monotonic()
    results = await asyncio.gather(*(post_rst(client, sim) for _ in range(6)))
    elapsed = time.monotonic() - start
    assert [r[0] for r in results] == [200] * 6
    assert 0.5 <= elapsed < 2.0


async def test_fail_mode_http_503(client: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    sim.state.apply_control({"fail_mode": "http-503"})
    status, _, _, _ = await post_rst(client, sim)
    async with client.get(sim.mex_url) as resp:
        mex_status = resp.status
    assert (status, mex_status) == (503, 503)
    assert sim.state.counters["trust13"] == 1 and sim.state.counters["mex"] == 1


async def test_fail_mode_garbage(client: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    sim.state.apply_control({"fail_mode": "garbage"})
    status, _, raw, _ = await post_rst(client, sim)
    assert status == 200
    with pytest.raises(XmlRejected):
        parse_untrusted(raw)


async def test_fail_mode_drop_connection(client: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    sim.state.apply_control({"fail_mode": "drop-connection"})
    with pytest.raises(aiohttp.ClientError):
        await post_rst(client, sim)
    sim.state.apply_control({"fail_mode": None})
    status, _, _, _ = await post_rst(client, sim)  # the server is still up
    assert status == 200


# --------------------------------------------------------------------------- mischief


async def _mischief(
    client: aiohttp.ClientSession, sim: RunningSimulator, mode: str, token_type: str | None = None
) -> tuple[bytes, bytes]:
    sim.state.apply_control({"mischief": mode})
    status, _, raw, _ = await post_rst(client, sim, token_type=token_type)
    assert status == 200
    return raw, await metadata_cert_pem(client, sim)


@pytest.mark.parametrize("token_type", [None, SAML2])
async def test_mischief_tamper_breaks_the_signature(
    client: aiohttp.ClientSession, sim: RunningSimulator, token_type: str | None
) -> None:
    raw, cert = await _mischief(client, sim, "tamper", token_type)
    assert subject_of(assertions(raw)[0]) == "mallory@example.com"
    with pytest.raises(InvalidSignature):
        verify(raw, cert)


async def test_mischief_wrong_key_does_not_verify_with_the_metadata_cert(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    raw, cert = await _mischief(client, sim, "wrong-key")
    with pytest.raises(InvalidSignature):
        verify(raw, cert)
    embedded = xs(assertions(raw)[0], ".//ds:X509Certificate")
    stranger = x509.load_der_x509_certificate(base64.b64decode(embedded)).public_bytes(Encoding.PEM)
    assert subject_of(verify(raw, stranger)) == ALICE  # properly signed, just by someone else


async def test_mischief_expired_is_signed_but_past(
    client: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    raw, cert = await _mischief(client, sim, "expired", SAML2)
    signed = verify(raw, cert)
    not_after = xs(signed, "saml2:Conditions/@NotOnOrAfter")
    assert datetime.fromisoformat(not_after) < datetime.now(UTC)


async def test_mischief_wrong_audience(client: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    raw, cert = await _mischief(client, sim, "wrong-audience")
    signed = verify(raw, cert)
    assert xs(signed, ".//saml1:Audience") not in ("", RP)


@pytest.mark.parametrize("token_type", [None, SAML2])
async def test_mischief_wrap_puts_an_unsigned_forgery_first(
    client: aiohttp.ClientSession, sim: RunningSimulator, token_type: str | None
) -> None:
    raw, cert = await _mischief(client, sim, "wrap", token_type)
    first, second = assertions(raw)
    assert subject_of(first) == ALICE
    assert not xp(first, "ds:Signature")
    assert subject_of(second) == "mallory@example.com"
    assert subject_of(verify(raw, cert)) == "mallory@example.com"


@pytest.mark.parametrize("token_type", [None, SAML2])
async def test_mischief_comment_injection_keeps_a_valid_signature(
    client: aiohttp.ClientSession, sim: RunningSimulator, token_type: str | None
) -> None:
    raw, cert = await _mischief(client, sim, "comment-injection", token_type)
    token = assertions(raw)[0]
    name = xp(token, ".//saml1:NameIdentifier | .//saml2:NameID")[0]
    assert name.text == ALICE  # what a naive reader sees
    assert full_text(name) == ALICE + ".evil.com"
    assert subject_of(verify(raw, cert)) == ALICE + ".evil.com"  # what was signed


async def test_mischief_doctype_and_unsigned(client: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    raw, _ = await _mischief(client, sim, "doctype")
    assert b"<!DOCTYPE" in raw[:200]
    with pytest.raises(XmlRejected):
        parse_untrusted(raw)
    raw, _ = await _mischief(client, sim, "unsigned")
    assert subject_of(assertions(raw)[0]) == ALICE
    assert b"Signature" not in raw
    assert sim.state.counters["mischief.unsigned"] == 1


# --------------------------------------------------------------------------- keys, config, CLI


async def test_keys_are_reused_across_restarts(config: SimConfig, tmp_path: Path) -> None:
    async with run_simulator(config, tmp_path) as first:
        fingerprint = cert_fingerprint(first.signing_cert_pem)
        ca = first.ca_file.read_bytes()
    async with run_simulator(config, tmp_path) as second:
        assert cert_fingerprint(second.signing_cert_pem) == fingerprint
        assert second.ca_file.read_bytes() == ca
        assert second.port != 0
    for name in ("tls.key", "signing.key", "ca.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    tls = x509.load_pem_x509_certificate((tmp_path / "tls.pem").read_bytes())
    sans = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost"}
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


async def test_ipv6_loopback_is_served_with_a_verified_certificate(config: SimConfig, keys_dir: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        async with run_simulator(config, keys_dir, host="::1") as sim:
            context = ssl.create_default_context(cafile=str(sim.ca_file))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
                async with client.get(sim.mex_url) as resp:
                    assert resp.status == 200
            assert sim.base_url.startswith("https://[::1]:")
            assert sim.issuer == f"http://[::1]:{sim.port}/adfs/services/trust"
    except OSError as exc:
        pytest.skip(f"cannot bind ::1 here ({exc})")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"users": [], "colour": "blue"}, "colour"),
        ({"users": [{"upn": "a@b.c", "password": "x", "shoe": 1}]}, "users[0].shoe"),
        (
            {"users": [{"upn": "a@b.c", "password": "x"}], "signing": {"algorithm": "md5"}},
            "signing.algorithm",
        ),
        ({"users": [{"upn": "a@b.c"}]}, "users[0].password"),
        ({"users": [{"upn": "a@b.c", "password": "x"}, {"upn": "A@b.c", "password": "y"}]}, "users[1]"),
        ({"token_lifetime_seconds": -5}, "token_lifetime_seconds"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="users.yaml")
    assert caught.value.key == key
    assert key in str(caught.value)


def test_demo_users_file_and_secret_free_repr(config: SimConfig) -> None:
    assert config.relying_parties == ("urn:loginbridge:example.com", "urn:loginbridge:example.org",
                                      "urn:loginbridge:acme.test")
    logins = {u.upn: u.enabled for u in config.users}
    assert logins == {
        "alice@example.com": True,
        "frontdesk@example.com": True,
        "disabled@example.com": False,
        "mallory@example.com": True,
        "bob@example.org": True,
        "carol@acme.test": True,
        "dave@example.com": True,
        "erin@example.org": True,
        "nina@example.net": True,
        "oscar@example.net": True,
    }
    assert config.authenticate("bob@example.org", "bob-demo-pass") is not None
    assert config.authenticate("bob@example.org", "alice-demo-pass") is None
    assert "demo-pass" not in repr(config)


def test_cli_reports_a_bad_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.idpsim.cli import main

    bad = tmp_path / "users.yaml"
    bad.write_text("users: []\nsurprise: 1\n")
    assert main(["--users", str(bad), "--keys-dir", str(tmp_path / "k"), "--port", "0"]) == 2
    assert "surprise" in capsys.readouterr().err


def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.idpsim",
            "--users",
            str(USERS_FILE),
            "--port",
            "0",
            "--keys-dir",
            str(tmp_path / "keys"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("AD FS simulator listening on https://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[1].strip()
        context = ssl.create_default_context(cafile=str(tmp_path / "keys" / "ca.pem"))
        import urllib.request

        with urllib.request.urlopen(base_url + "/adfs/services/trust/mex", context=context) as resp:
            assert resp.status == 200
            assert b"usernamemixed" in resp.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
