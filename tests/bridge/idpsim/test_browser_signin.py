"""The simulator's browser sign-in (SAML 2.0 Web Browser SSO, WS-Federation passive) over real loopback https.

A browser is played by aiohttp's client and the standard library's HTML parser:
the tests send the bridge's own AuthnRequest (``authn_request_element``) by the
HTTP-Redirect or HTTP-POST binding or a ``wsignin1.0`` query, fill the login
page's form (password, then a TOTP code computed with pyotp), and check the
auto-posted answer with the bridge's own validator (``validate_assertion``)
against the simulator's token-signing certificate.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
import shutil
import ssl
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus, urlencode

import aiohttp
import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
from saml2.config import SPConfig
from saml2.mdstore import MetadataStore
from saml2.metadata import entity_descriptor
from yarl import URL

from bridge.errors import AssertionRejected
from bridge.idp.assertion import AssertionExpectations, SamlVersion, validate_assertion
from bridge.idp.saml.ecp import authn_request_element
from bridge.idp.saml.metadata import parse_idp_metadata
from bridge.idpsim import namespaces as ns
from bridge.idpsim.browser.pending import PendingSignin, PendingSignins, WsFedTarget
from bridge.idpsim.config import SigningAlgorithmName, SigningSettings, SimConfig
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.idpsim.state import FailMode, Mischief
from bridge.xml.signature import SignatureAlgorithm, SignaturePolicy, sign_enveloped
from tests.bridge.idpsim.browser_forms import Form, only_form, read_page
from tests.keys import make_key_and_cert
from tests.paths import REPO

USERS_FILE = REPO / "conf" / "idp-sim" / "users.yaml"
REDIRECT_SSO = "/idp/profile/SAML2/Redirect/SSO"
POST_SSO = "/idp/profile/SAML2/POST/SSO"
WSFED = "/adfs/ls/"
ALICE, ALICE_PASSWORD, ALICE_SECRET = "alice@example.com", "alice-demo-pass", "ALICEDEMOTOTPKEYJBSWY3DPEHPK3PXP"
BOB, BOB_PASSWORD = "bob@example.org", "bob-demo-pass"
DAVE, DAVE_PASSWORD = "dave@example.com", "dave-demo-pass"
ERIN, ERIN_PASSWORD, ERIN_SECRET = "erin@example.org", "erin-demo-pass", "ERINDEMOTOTPKEY2JBSWY3DPEHPK3PXP"
SP_ENTITY = "urn:loginbridge:example.org"
ACS = "https://bridge.example/saml/example-org/acs"
RP = "urn:loginbridge:example.com"
WREPLY = "https://bridge.example/wsfed/example"
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "saml1": "urn:oasis:names:tc:SAML:1.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "fed": ns.FED,
    "t": ns.WST2005,
    "wsp": ns.WSP,
    "wsa": ns.WSA,
    "wsu": ns.WSU,
}
SECRETS = (ALICE_PASSWORD, BOB_PASSWORD, DAVE_PASSWORD, ERIN_PASSWORD, ALICE_SECRET, ERIN_SECRET)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def http(client: aiohttp.ClientSession) -> aiohttp.ClientSession:
    return client














@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="bridge.idpsim")
    yield
    for secret in SECRETS:
        assert secret not in caplog.text
    # No six-digit code either: none of the simulator's own records carry one.
    assert not re.search(r"(?<![\d.:-])\d{6}(?![\d.:-])", "\n".join(r.getMessage() for r in caplog.records))


@dataclass(frozen=True, kw_only=True)
class Sp:
    """A registered SP: its metadata (HTTP-POST ACS, signing certificate) and its key."""

    entity_id: str
    key_pem: bytes
    cert_pem: bytes
    metadata: bytes


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Sp:
    directory = tmp_path_factory.mktemp("browser-sp")
    key_pem, cert_pem = make_key_and_cert("browser sp")
    (directory / "sp.key").write_bytes(key_pem)
    (directory / "sp.pem").write_bytes(cert_pem)
    conf = SPConfig().load(
        {
            "entityid": SP_ENTITY,
            "key_file": str(directory / "sp.key"),
            "cert_file": str(directory / "sp.pem"),
            "service": {"sp": {"endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)]}}},
            "xmlsec_binary": shutil.which("xmlsec1") or "/usr/bin/xmlsec1",
        }
    )
    metadata = str(entity_descriptor(conf)).encode("utf-8")
    return Sp(entity_id=SP_ENTITY, key_pem=key_pem, cert_pem=cert_pem, metadata=metadata)


async def register(http: aiohttp.ClientSession, sim: RunningSimulator, sp: Sp) -> None:
    async with http.post(sim.base_url + "/_sim/ecp/sp-metadata", data=sp.metadata) as answer:
        assert answer.status == 200, await answer.text()


# --------------------------------------------------------------------------- a browser, played by hand


def authn_request(sim: RunningSimulator, path: str, *, acs: str = ACS, sp: str = SP_ENTITY) -> tuple[str, bytes]:
    """(ID, XML) of the bridge's own AuthnRequest, answer by HTTP-POST, to the endpoint at ``path``."""
    request_id = "_" + uuid.uuid4().hex
    element = authn_request_element(
        request_id=request_id,
        issued=datetime.now(UTC),
        destination=sim.base_url + path,
        protocol_binding=BINDING_HTTP_POST,
        acs_url=acs,
        sp_entity_id=sp,
    )
    return request_id, etree.tostring(element, encoding="UTF-8")


def deflated(xml: bytes) -> str:
    compressor = zlib.compressobj(wbits=-15)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode("ascii")


def redirect_url(
    sim: RunningSimulator, xml: bytes, *, relay_state: str | None = "opaque relay/state+1", key_pem: bytes | None = None
) -> URL:
    """The HTTP-Redirect URL, signed per saml-bindings 3.4.4.1 when ``key_pem`` is given."""
    params = [("SAMLRequest", deflated(xml))]
    if relay_state is not None:
        params.append(("RelayState", relay_state))
    query = urlencode(params)
    if key_pem is not None:
        query += "&" + urlencode([("SigAlg", RSA_SHA256)])
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(query.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        query += "&Signature=" + quote_plus(base64.b64encode(signature).decode("ascii"))
    return URL(f"{sim.base_url}{REDIRECT_SSO}?{query}", encoded=True)


async def fetch(http: aiohttp.ClientSession, url: URL | str) -> tuple[int, str, str]:
    async with http.get(url) as answer:
        return answer.status, await answer.text(), answer.headers.get("Content-Security-Policy", "")


async def submit(
    http: aiohttp.ClientSession, sim: RunningSimulator, form: Form, **fields: str
) -> tuple[int, str]:
    """Post ``form`` as a browser would after the user filled ``fields`` (and pressed Sign in unless told)."""
    assert form.method == "post"
    assert form.action.startswith("/"), form.action
    data = {**form.fields, "action": "signin", **fields}
    async with http.post(sim.base_url + form.action, data=data) as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
        assert answer.headers["Cache-Control"] == "no-store"
        return answer.status, await answer.text()


def is_login_page(html: str) -> Form:
    page = read_page(html)
    assert page.title == "Sign in"
    form = only_form(html)
    assert set(form.fields) >= {"flow", "username", "password"}
    assert form.input_types["password"] == "password" and form.input_types["flow"] == "hidden"
    assert ("action", "signin", "Sign in") in form.buttons
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
    assert "<link" not in html and "src=" not in html  # no external assets
    return form


def is_otp_page(html: str) -> Form:
    form = only_form(html)
    assert "otp" in form.fields and "password" not in form.fields
    return form


def autoposted(html: str, target: str) -> dict[str, str]:
    """The fields of the auto-posting page (which must post to ``target`` and submit itself)."""
    page = read_page(html)
    form = only_form(html)
    assert form.method == "post" and form.action == target
    assert [label for _, _, label in form.buttons] == ["Continue"]
    assert any(".submit()" in script for script in page.scripts)
    return form.fields


def saml_expectations(sim: RunningSimulator, request_id: str) -> AssertionExpectations:
    return AssertionExpectations(
        issuer=sim.base_url + "/idp/shibboleth",
        audience=SP_ENTITY,
        certificates=(x509.load_pem_x509_certificate(sim.signing_cert_pem),),
        policy=SignaturePolicy(),
        clock_skew=timedelta(minutes=2),
        subject_claim="nameid",
        recipient=ACS,
        in_response_to=request_id,
    )


def wsfed_expectations(sim: RunningSimulator) -> AssertionExpectations:
    return AssertionExpectations(
        issuer=sim.issuer,
        audience=RP,
        certificates=(x509.load_pem_x509_certificate(sim.signing_cert_pem),),
        policy=SignaturePolicy(),
        clock_skew=timedelta(minutes=2),
        subject_claim="upn",
    )


def response_of(fields: dict[str, str]) -> tuple[bytes, etree._Element]:
    raw = base64.b64decode(fields["SAMLResponse"])
    return raw, etree.fromstring(raw)


def status_codes(response: etree._Element) -> list[str]:
    return [str(code.get("Value")) for code in response.iter(f"{{{NS['samlp']}}}StatusCode")]


def code_for(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def wrong_code(secret: str) -> str:
    """A six-digit code no window of ±1 step accepts."""
    totp = pyotp.TOTP(secret)
    now = datetime.now(UTC)
    valid = {totp.at(now + timedelta(seconds=30 * step)) for step in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(0, 1_000_000, 7919)) if c not in valid)


async def saml_login_page(http: aiohttp.ClientSession, sim: RunningSimulator) -> tuple[str, Form]:
    request_id, xml = authn_request(sim, REDIRECT_SSO)
    status, html, csp = await fetch(http, redirect_url(sim, xml))
    assert status == 200, html
    assert "form-action 'self'" in csp and "script-src" not in csp
    return request_id, is_login_page(html)


# --------------------------------------------------------------------------- SAML Web Browser SSO


async def test_saml_redirect_with_totp_user_posts_a_signed_response(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    request_id, form = await saml_login_page(http, sim)
    status, html = await submit(http, sim, form, username=ALICE, password=ALICE_PASSWORD)
    assert status == 200
    otp_form = is_otp_page(html)
    assert otp_form.fields["flow"] == form.fields["flow"]
    status, html = await submit(http, sim, otp_form, otp=code_for(ALICE_SECRET))
    assert status == 200
    fields = autoposted(html, ACS)
    assert fields["RelayState"] == "opaque relay/state+1"
    raw, response = response_of(fields)
    assert response.get("InResponseTo") == request_id
    assert response.get("Destination") == ACS
    assert status_codes(response) == [STATUS + "Success"]
    validated = validate_assertion(raw, saml_expectations(sim, request_id), now=datetime.now(UTC))
    assert validated.subject == ALICE
    assert validated.version is SamlVersion.SAML20
    assertion = response.find("saml:Assertion", NS)
    assert assertion is not None
    assert assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) == ALICE
    assert assertion.find("saml:Subject/saml:NameID", NS).get("Format", "").endswith("emailAddress")  # type: ignore[union-attr]
    audience = assertion.findtext("saml:Conditions/saml:AudienceRestriction/saml:Audience", namespaces=NS)
    assert audience == SP_ENTITY
    data = assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    assert data is not None and data.get("Recipient") == ACS and data.get("InResponseTo") == request_id
    assert assertion.findtext(".//saml:AuthnContextClassRef", namespaces=NS) == "https://refeds.org/profile/mfa"
    counters = sim.state.counters
    assert counters["browser.saml"] == 1 and counters["browser.otp_prompt"] == 1
    assert counters["browser.issued.saml"] == 1 and counters["browser.otp_failed"] == 0
    # The sign-in's id is spent: posting the code again finds nothing.
    status, html = await submit(http, sim, otp_form, otp=code_for(ALICE_SECRET))
    assert status == 400 and "expired" in html
    assert sim.state.counters["browser.expired"] == 1


async def test_autopost_page_allows_only_its_own_script_and_the_acs(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    _, form = await saml_login_page(http, sim)
    async with http.post(sim.base_url + form.action, data={**form.fields, "username": "dave",
                                                           "password": DAVE_PASSWORD, "action": "signin"}) as answer:
        csp = answer.headers["Content-Security-Policy"]
        html = await answer.text()
        assert answer.headers["X-Frame-Options"] == "DENY"
    autoposted(html, ACS)
    assert "form-action https://bridge.example" in csp and "script-src 'sha256-" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]


async def test_user_without_totp_goes_straight_to_the_answer(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    """Dave's policy refuses password logins; the browser sign-in is what works for him."""
    request_id, form = await saml_login_page(http, sim)
    status, html = await submit(http, sim, form, username="dave", password=DAVE_PASSWORD)
    assert status == 200
    raw, _ = response_of(autoposted(html, ACS))
    validated = validate_assertion(raw, saml_expectations(sim, request_id), now=datetime.now(UTC))
    assert validated.subject == DAVE
    assert b"PasswordProtectedTransport" in raw


async def test_wrong_password_and_disabled_account_show_the_page_again(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    _, form = await saml_login_page(http, sim)
    status, html = await submit(http, sim, form, username=ALICE, password="not-her-password")
    assert status == 200
    again = is_login_page(html)
    assert "Incorrect user ID or password." in html
    assert again.fields["username"] == ALICE and again.fields["password"] == ""
    status, html = await submit(http, sim, again, username="nobody@example.com", password="x")
    assert "Incorrect user ID or password." in html
    status, html = await submit(http, sim, again, username="disabled", password="disabled-demo-pass")
    assert status == 200 and "Your account is disabled." in html
    is_login_page(html)
    assert sim.state.counters["browser.login_failed"] == 2 and sim.state.counters["browser.disabled"] == 1
    # The same sign-in still completes with the right password.
    status, html = await submit(http, sim, again, username="bob", password=BOB_PASSWORD)
    assert "SAMLResponse" in autoposted(html, ACS)


async def test_wrong_code_stays_on_the_code_page(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    request_id, form = await saml_login_page(http, sim)
    _, html = await submit(http, sim, form, username="erin", password=ERIN_PASSWORD)
    otp_form = is_otp_page(html)
    status, html = await submit(http, sim, otp_form, otp=wrong_code(ERIN_SECRET))
    assert status == 200
    is_otp_page(html)
    assert "The code is not correct" in html
    status, html = await submit(http, sim, otp_form, otp="12ab56")
    assert "The code is not correct" in html
    assert sim.state.counters["browser.otp_failed"] == 2
    _, html = await submit(http, sim, otp_form, otp=code_for(ERIN_SECRET))
    raw, _ = response_of(autoposted(html, ACS))
    assert validate_assertion(raw, saml_expectations(sim, request_id), now=datetime.now(UTC)).subject == ERIN


async def test_five_wrong_codes_end_the_sign_in(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    _, form = await saml_login_page(http, sim)
    _, html = await submit(http, sim, form, username=ALICE, password=ALICE_PASSWORD)
    otp_form = is_otp_page(html)
    for _ in range(4):
        status, html = await submit(http, sim, otp_form, otp=wrong_code(ALICE_SECRET))
        assert status == 200 and "otp" in only_form(html).fields
    status, html = await submit(http, sim, otp_form, otp=wrong_code(ALICE_SECRET))
    assert status == 400 and "Too many wrong codes" in html
    status, html = await submit(http, sim, otp_form, otp=code_for(ALICE_SECRET))
    assert status == 400 and "SAMLResponse" not in html


@pytest.mark.parametrize("at_code_page", [False, True])
async def test_cancel_posts_authn_failed(
    http: aiohttp.ClientSession, sim: RunningSimulator, at_code_page: bool
) -> None:
    request_id, form = await saml_login_page(http, sim)
    assert ("action", "cancel", "Cancel") in form.buttons
    if at_code_page:
        _, html = await submit(http, sim, form, username=ALICE, password=ALICE_PASSWORD)
        form = is_otp_page(html)
    status, html = await submit(http, sim, form, action="cancel")
    assert status == 200
    fields = autoposted(html, ACS)
    assert fields["RelayState"] == "opaque relay/state+1"
    raw, response = response_of(fields)
    assert response.get("InResponseTo") == request_id
    assert response.get("Destination") == ACS
    assert status_codes(response) == [STATUS + "Responder", STATUS + "AuthnFailed"]
    assert response.find("saml:Assertion", NS) is None and b"EncryptedAssertion" not in raw
    assert sim.state.counters["browser.cancelled"] == 1
    with pytest.raises(AssertionRejected):
        validate_assertion(raw, saml_expectations(sim, request_id), now=datetime.now(UTC))


async def test_saml_post_binding(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    request_id, xml = authn_request(sim, POST_SSO)
    data = {"SAMLRequest": base64.b64encode(xml).decode("ascii")}
    async with http.post(sim.base_url + POST_SSO, data=data) as answer:
        assert answer.status == 200
        form = is_login_page(await answer.text())
    assert form.action == POST_SSO
    status, html = await submit(http, sim, form, username="bob", password=BOB_PASSWORD)
    assert status == 200
    fields = autoposted(html, ACS)
    assert "RelayState" not in fields  # none was sent, none comes back
    raw, _ = response_of(fields)
    assert validate_assertion(raw, saml_expectations(sim, request_id), now=datetime.now(UTC)).subject == BOB


async def test_registered_sp_signed_redirect_is_verified(
    http: aiohttp.ClientSession, sim: RunningSimulator, sp: Sp
) -> None:
    await register(http, sim, sp)
    _, xml = authn_request(sim, REDIRECT_SSO)
    status, html, _ = await fetch(http, redirect_url(sim, xml, key_pem=sp.key_pem))
    assert status == 200, html
    is_login_page(html)
    # Signed with another key: refused before any login page.
    stranger_key, _ = make_key_and_cert("not the sp")
    status, html, _ = await fetch(http, redirect_url(sim, xml, key_pem=stranger_key))
    assert status == 400 and "signature could not be verified" in html
    assert 'name="password"' not in html
    # RelayState changed after signing (the query as received is what is checked).
    good = str(redirect_url(sim, xml, relay_state="state-a", key_pem=sp.key_pem))
    status, html, _ = await fetch(http, URL(good.replace("state-a", "state-b"), encoded=True))
    assert status == 400
    # Unsigned requests from the registered SP are accepted.
    status, html, _ = await fetch(http, redirect_url(sim, xml))
    assert status == 200
    assert sim.state.counters["browser.refused"] == 2


async def test_registered_sp_embedded_signature_on_post(
    http: aiohttp.ClientSession, sim: RunningSimulator, sp: Sp
) -> None:
    await register(http, sim, sp)
    _, xml = authn_request(sim, POST_SSO)
    for key_pem, cert_pem, expected in ((sp.key_pem, sp.cert_pem, 200), (*make_key_and_cert("intruder"), 400)):
        signed = sign_enveloped(etree.fromstring(xml), key_pem=key_pem, cert_pem=cert_pem)
        data = {"SAMLRequest": base64.b64encode(etree.tostring(signed)).decode("ascii"), "RelayState": "r"}
        async with http.post(sim.base_url + POST_SSO, data=data) as answer:
            assert answer.status == expected, await answer.text()


async def test_registered_sp_acs_must_be_in_its_metadata(
    http: aiohttp.ClientSession, sim: RunningSimulator, sp: Sp
) -> None:
    await register(http, sim, sp)
    _, xml = authn_request(sim, REDIRECT_SSO, acs="https://attacker.example.net/acs")
    status, html, _ = await fetch(http, redirect_url(sim, xml))
    assert status == 400 and "not registered" in html
    assert "attacker.example.net" not in html.split("Error details", 1)[0]


async def test_unknown_sp_without_trust_any_sp_is_refused(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    async with http.post(sim.base_url + "/_sim/ecp", json={"trust_any_sp": False}) as answer:
        assert answer.status == 200
    _, xml = authn_request(sim, REDIRECT_SSO)
    status, html, _ = await fetch(http, redirect_url(sim, xml))
    assert status == 400 and "unknown service provider" in html


@pytest.mark.parametrize(
    "query",
    [
        "",
        "SAMLRequest=%%%",
        "SAMLRequest=" + quote_plus(base64.b64encode(b"<not deflated/>").decode()),
        "SAMLRequest=" + quote_plus(deflated(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')),
        "SAMLRequest=" + quote_plus(deflated(b"\x00" * (1024 * 1024))),
        "SAMLRequest=a&SAMLRequest=b",
    ],
)
async def test_unreadable_redirect_requests_get_an_error_page(
    http: aiohttp.ClientSession, sim: RunningSimulator, query: str
) -> None:
    status, html, _ = await fetch(http, URL(f"{sim.base_url}{REDIRECT_SSO}?{query}", encoded=True))
    assert status == 400
    assert "An error occurred" in html and "<form" not in html


async def test_request_for_another_destination_is_refused(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    _, xml = authn_request(sim, "/somewhere/else")
    status, html, _ = await fetch(http, redirect_url(sim, xml))
    assert status == 400 and 'name="password"' not in html


async def test_acs_must_be_http_or_https(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    _, xml = authn_request(sim, REDIRECT_SSO, acs="javascript:alert(1)")
    status, html, _ = await fetch(http, redirect_url(sim, xml))
    assert status == 400 and "javascript:" not in html.split("Error details", 1)[0]


async def test_mischief_reaches_the_browser_answer(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    async with http.post(sim.base_url + "/_sim/ecp", json={"mischief": "wrong-audience"}) as answer:
        assert answer.status == 200
    request_id, form = await saml_login_page(http, sim)
    _, html = await submit(http, sim, form, username="bob", password=BOB_PASSWORD)
    raw, _ = response_of(autoposted(html, ACS))
    with pytest.raises(AssertionRejected) as caught:
        validate_assertion(raw, saml_expectations(sim, request_id), now=datetime.now(UTC))
    assert caught.value.reason == "audience"
    assert sim.state.counters["browser.mischief.wrong-audience"] == 1


async def test_sign_response_signs_both(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    async with http.post(sim.base_url + "/_sim/ecp", json={"sign_response": True}) as answer:
        assert answer.status == 200
    request_id, form = await saml_login_page(http, sim)
    _, html = await submit(http, sim, form, username="bob", password=BOB_PASSWORD)
    raw, response = response_of(autoposted(html, ACS))
    assert response.find("ds:Signature", NS) is not None
    assert validate_assertion(raw, saml_expectations(sim, request_id), now=datetime.now(UTC)).subject == BOB


async def test_fail_mode_applies_to_browser_endpoints(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    sim.state.fail_mode = FailMode.HTTP_503
    _, xml = authn_request(sim, REDIRECT_SSO)
    status, _, _ = await fetch(http, redirect_url(sim, xml))
    assert status == 503
    status, _, _ = await fetch(http, f"{sim.base_url}{WSFED}?wa=wsignin1.0&wtrealm={RP}&wreply={WREPLY}")
    assert status == 503
    assert sim.state.counters["browser.saml"] == 1 and sim.state.counters["browser.wsfed"] == 1


async def test_idp_metadata_lists_the_browser_endpoints(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    status, document, _ = await fetch(http, sim.base_url + "/idp/shibboleth")
    assert status == 200
    entity_id = sim.base_url + "/idp/shibboleth"
    store = MetadataStore(attrc=[], config=SPConfig().load({"entityid": "urn:test:reader"}))
    store.load("inline", document)
    assert [s["location"] for s in store.single_sign_on_service(entity_id, BINDING_HTTP_REDIRECT)] == [
        sim.base_url + REDIRECT_SSO
    ]
    assert [s["location"] for s in store.single_sign_on_service(entity_id, BINDING_HTTP_POST)] == [
        sim.base_url + POST_SSO
    ]
    assert [s["location"] for s in store.single_sign_on_service(entity_id, BINDING_SOAP)] == [
        sim.base_url + "/idp/profile/SAML2/SOAP/ECP"
    ]
    # The bridge's own reader finds where a browser sign-in starts, and the ECP endpoint as before.
    parsed = parse_idp_metadata(document.encode("utf-8"))
    assert parsed.sso_redirect_url == sim.base_url + REDIRECT_SSO
    assert parsed.ecp_url == sim.base_url + "/idp/profile/SAML2/SOAP/ECP"


# --------------------------------------------------------------------------- WS-Federation passive


def wsignin_url(sim: RunningSimulator, **overrides: str | None) -> URL:
    params: dict[str, str | None] = {
        "wa": "wsignin1.0",
        "wtrealm": RP,
        "wctx": "rm=0&id=passive&ru=%2f<ctx>",
        "wreply": WREPLY,
        **overrides,
    }
    query = urlencode([(k, v) for k, v in params.items() if v is not None])
    return URL(f"{sim.base_url}{WSFED}?{query}", encoded=True)


async def test_wsfed_signin_posts_a_signed_saml11_token(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    status, html, _ = await fetch(http, wsignin_url(sim, username="alice"))
    assert status == 200
    form = is_login_page(html)
    assert form.action == WSFED and form.fields["username"] == "alice"
    assert RP in read_page(html).text
    assert not [b for b in form.buttons if b[1] == "cancel"]  # AD FS's forms page has no Cancel
    _, html = await submit(http, sim, form, username="alice", password=ALICE_PASSWORD)
    otp_form = is_otp_page(html)
    _, html = await submit(http, sim, otp_form, otp=code_for(ALICE_SECRET))
    fields = autoposted(html, WREPLY)
    assert fields["wa"] == "wsignin1.0"
    assert fields["wctx"] == "rm=0&id=passive&ru=%2f<ctx>"
    wresult = fields["wresult"].encode("utf-8")
    validated = validate_assertion(wresult, wsfed_expectations(sim), now=datetime.now(UTC))
    assert validated.version is SamlVersion.SAML11
    assert validated.subject == ALICE
    assert validated.issuer == sim.issuer
    rstr = etree.fromstring(wresult)
    assert rstr.tag == f"{{{ns.WST2005}}}RequestSecurityTokenResponse"
    assert [etree.QName(child).localname for child in rstr] == [
        "Lifetime", "AppliesTo", "RequestedSecurityToken", "TokenType", "RequestType", "KeyType",
    ]
    assert rstr.findtext("wsp:AppliesTo/wsa:EndpointReference/wsa:Address", namespaces=NS) == RP
    assert rstr.findtext("t:TokenType", namespaces=NS) == "urn:oasis:names:tc:SAML:1.0:assertion"
    assert rstr.findtext("t:RequestType", namespaces=NS) == f"{ns.WST2005}/Issue"
    assert rstr.findtext("t:KeyType", namespaces=NS) == "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey"
    assert rstr.findtext("t:Lifetime/wsu:Created", namespaces=NS) and rstr.findtext("t:Lifetime/wsu:Expires", namespaces=NS)
    assertions = rstr.findall("t:RequestedSecurityToken/saml1:Assertion", NS)
    assert len(assertions) == 1
    assertion = assertions[0]
    assert assertion.findtext(".//saml1:Audience", namespaces=NS) == RP
    assert assertion.findtext(".//saml1:NameIdentifier", namespaces=NS) == ALICE
    method = assertion.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS)
    assert method is not None and method.get("Algorithm") == RSA_SHA256
    assert sim.state.counters["browser.wsfed"] == 1 and sim.state.counters["browser.issued.wsfed"] == 1


async def test_wsfed_token_is_rsa_sha1_when_the_users_file_says_so(config: SimConfig, keys_dir: Path) -> None:
    sha1 = dataclasses.replace(config, signing=SigningSettings(algorithm=SigningAlgorithmName.RSA_SHA1))
    async with run_simulator(sha1, keys_dir) as sim:
        context = ssl.create_default_context(cafile=str(sim.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            _, html, _ = await fetch(http, wsignin_url(sim))
            _, html = await submit(http, sim, only_form(html), username="dave", password=DAVE_PASSWORD)
            wresult = autoposted(html, WREPLY)["wresult"].encode()
    method = etree.fromstring(wresult).find(".//ds:SignatureMethod", NS)
    assert method is not None and method.get("Algorithm") == "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    expectations = dataclasses.replace(
        wsfed_expectations(sim), policy=SignaturePolicy(algorithms=frozenset({SignatureAlgorithm.RSA_SHA1}))
    )
    assert validate_assertion(wresult, expectations, now=datetime.now(UTC)).subject == DAVE


async def test_wsfed_by_post_without_context(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    data = {"wa": "wsignin1.0", "wtrealm": "urn:loginbridge:example.org", "wreply": WREPLY}
    async with http.post(sim.base_url + WSFED, data=data) as answer:
        assert answer.status == 200
        form = is_login_page(await answer.text())
    _, html = await submit(http, sim, form, username=BOB, password=BOB_PASSWORD)
    fields = autoposted(html, WREPLY)
    assert "wctx" not in fields
    expectations = dataclasses.replace(wsfed_expectations(sim), audience="urn:loginbridge:example.org")
    assert validate_assertion(fields["wresult"].encode(), expectations, now=datetime.now(UTC)).subject == BOB


async def test_wsfed_honours_token_mischief(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    sim.state.mischief = Mischief.TAMPER
    _, html, _ = await fetch(http, wsignin_url(sim))
    _, html = await submit(http, sim, only_form(html), username="dave", password=DAVE_PASSWORD)
    fields = autoposted(html, WREPLY)
    with pytest.raises(AssertionRejected):
        validate_assertion(fields["wresult"].encode(), wsfed_expectations(sim), now=datetime.now(UTC))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"wtrealm": "urn:someone:else"}, "MSIS7007"),
        ({"wtrealm": None}, "MSIS7007"),
        ({"wreply": None}, "wreply"),
        ({"wreply": "javascript:alert(1)"}, "wreply"),
        ({"wa": "wsignout1.0"}, "wa="),
        ({"wa": None}, "wa="),
    ],
)
async def test_wsfed_bad_requests_get_an_adfs_error_page(
    http: aiohttp.ClientSession, sim: RunningSimulator, overrides: dict[str, str | None], words: str
) -> None:
    status, html, _ = await fetch(http, wsignin_url(sim, **overrides))
    assert status == 400
    assert "An error occurred" in html and words in html
    assert "<form" not in html
    assert sim.state.counters["browser.refused"] == 1


async def test_wsfed_login_hint_is_escaped(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    status, html, _ = await fetch(http, wsignin_url(sim, username='"><script>alert(1)</script>'))
    assert status == 200
    assert "<script>alert(1)" not in html
    assert only_form(html).fields["username"] == '"><script>alert(1)</script>'


async def test_a_flow_id_is_bound_to_its_endpoint(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    _, html, _ = await fetch(http, wsignin_url(sim))
    form = only_form(html)
    status, html = await submit(
        http, sim, Form(action=POST_SSO, method="post", fields=form.fields), username=BOB, password=BOB_PASSWORD
    )
    assert status == 400 and "SAMLResponse" not in html


async def test_stats_show_the_browser_counters(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    _, form = await saml_login_page(http, sim)
    await submit(http, sim, form, username=ALICE, password="wrong")
    status, text, _ = await fetch(http, sim.base_url + "/_sim/stats")
    assert status == 200
    assert '"browser.saml": 1' in text and '"browser.login_failed": 1' in text


# --------------------------------------------------------------------------- pending sign-ins


def _pending(realm: str = RP) -> PendingSignin:
    target = WsFedTarget(realm=realm, reply=WREPLY, context=None, issuer="urn:issuer")
    return PendingSignin(target=target, relying_party=realm, action=WSFED)


def test_pending_signins_expire_after_their_ttl() -> None:
    now = [1000.0]
    store = PendingSignins(ttl=timedelta(minutes=10), clock=lambda: now[0])
    flow = store.start(_pending())
    assert len(flow) >= 32 and store.get(flow) is not None
    now[0] += 9 * 60
    store.update(flow, _pending("urn:changed"))
    pending = store.get(flow)
    assert pending is not None and pending.relying_party == "urn:changed"
    now[0] += 61  # ten minutes after the start, whatever the update
    assert store.get(flow) is None and len(store) == 0
    assert store.get("") is None and store.get("x" * 500) is None


def test_pending_signins_are_bounded_oldest_first() -> None:
    store = PendingSignins(max_entries=3)
    flows = [store.start(_pending(f"urn:rp:{i}")) for i in range(5)]
    assert len(store) == 3
    assert [store.get(f) is not None for f in flows] == [False, False, True, True, True]
    assert store.finish(flows[4]) is not None and store.finish(flows[4]) is None
    assert len({*flows}) == 5


async def test_the_simulators_own_failure_is_an_html_page(
    http: aiohttp.ClientSession, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridge.idpsim.browser.routes as routes

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(routes, "read_signin", broken)
    async with http.get(wsignin_url(sim)) as answer:
        assert answer.status == 500
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "An error occurred" in await answer.text()
    assert sim.state.counters["sim.failure"] == 1


async def test_redirect_endpoint_takes_posts_only_for_the_form(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    _, xml = authn_request(sim, REDIRECT_SSO)
    async with http.post(sim.base_url + REDIRECT_SSO, data={"SAMLRequest": deflated(xml)}) as answer:
        assert answer.status == 400
        assert 'name="password"' not in await answer.text()
