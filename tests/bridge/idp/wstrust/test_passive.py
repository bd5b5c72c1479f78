"""WS-Federation passive sign-in at AD FS: the wsignin1.0 URL, the POSTed wresult, and WsTrustIdp around both.

Tokens are really signed SAML 1.1 (AD FS's default for WS-Federation) and SAML
2.0 assertions inside the RequestSecurityTokenResponse AD FS posts, in its 2005
form and in the WS-Trust 1.3 collection form, validated by
``WsTrustIdp.finish_browser_signin`` with the password path's expectations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from bridge.config import Protocol, TenantConfig, TokenTypeSetting, WsTrustConfig, WsTrustVersionSetting
from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpNotWhitelisted,
    IdpProtocolError,
    SpNotRegistered,
)
from bridge.idp.assertion import MemoryReplayCache, SamlVersion
from bridge.idp.browser import BrowserSignin
from bridge.idp.http import IdpHttp, make_ssl_context
from bridge.idp.wstrust.client import WsTrustIdp, wsfed_reply_url
from bridge.idp.wstrust.fedmeta import FED_NS, parse_federation_metadata
from bridge.idp.wstrust.messages import NS_SOAP12, NS_TRUST13, NS_TRUST2005
from bridge.idp.wstrust.passive import read_wsfed_post, signin_url
from bridge.idpsim.config import load_config as load_sim_config
from bridge.idpsim.mex import build_federation_metadata
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.idpsim.tokens import TokenClaims, build_saml11_assertion, signed_token
from tests.keys import load_cert, make_key_and_cert
from tests.paths import REPO

ISSUER = "http://fs.example.com/adfs/services/trust"
REALM = "urn:loginbridge:example.com"
PUBLIC = "https://bridge.example"
REPLY = f"{PUBLIC}/wsfed/example"
ADFS = "https://127.0.0.1"
USER = "alice@example.com"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_WSP = "http://schemas.xmlsoap.org/ws/2004/09/policy"
SAML11_TOKEN_TYPE = "urn:oasis:names:tc:SAML:1.0:assertion"
SAML20_TOKEN_TYPE = "urn:oasis:names:tc:SAML:2.0:assertion"


def _adfs_keys() -> tuple[bytes, bytes]:
    return make_key_and_cert("wsfed-adfs")


def _tenant(**wstrust: object) -> TenantConfig:
    values: dict[str, object] = {
        "adfs_url": ADFS, "endpoint": None, "version": WsTrustVersionSetting.V13, "applies_to": REALM,
        "token_type": TokenTypeSetting.SAML2, "issuer": ISSUER, "signing_certificates": (load_cert(_adfs_keys()[1]),),
        "federation_metadata": False, "signature_algorithms": ("rsa-sha256",), "clock_skew": timedelta(seconds=300),
        "subject_claim": "upn", "ca_file": None,
    }
    values.update(wstrust)
    return TenantConfig(id="example", name="Example", domains=("example.com",), protocol=Protocol.WSTRUST,
                        idp_whitelist=(ip_network("127.0.0.1/32"),), session_ttl=timedelta(hours=1),
                        wstrust=WsTrustConfig(**values), saml2=None, source=Path("/dev/null"))  # type: ignore[arg-type]


def _idp(*, public_url: str | None = PUBLIC, ca_file: Path | None = None, **wstrust: object) -> WsTrustIdp:
    http = IdpHttp(whitelist=(ip_network("127.0.0.1/32"),), ssl_context=make_ssl_context(ca_file),
                   connect_timeout=2, timeout=5, max_connections=2)
    return WsTrustIdp(_tenant(ca_file=ca_file, **wstrust), http, public_url)


def _claims(**overrides: object) -> TokenClaims:
    values: dict[str, object] = {"issuer": ISSUER, "audience": REALM, "subject": USER, "issued_at": datetime.now(UTC)}
    values.update(overrides)
    return TokenClaims(**values)  # type: ignore[arg-type]


def _token(version: SamlVersion = SamlVersion.SAML11, *, keys: tuple[bytes, bytes] | None = None,
           **overrides: object) -> etree._Element:
    key, cert = keys or _adfs_keys()
    return signed_token(_claims(**overrides), version=version, key_pem=key, cert_pem=cert)


def _el(ns: str, local: str, *children: etree._Element, text: str | None = None) -> etree._Element:
    element = etree.Element(f"{{{ns}}}{local}")
    element.text = text
    element.extend(children)
    return element


def _rstr(*tokens: etree._Element, collection: bool = False, token_type: str | None = SAML11_TOKEN_TYPE,
          extra: etree._Element | None = None) -> str:
    """A wresult as AD FS posts it: the 2005 bare RSTR, or a WS-Trust 1.3 collection holding one."""
    trust = NS_TRUST13 if collection else NS_TRUST2005
    rstr = _el(trust, "RequestSecurityTokenResponse",
               _el(NS_WSP, "AppliesTo", _el(NS_WSA, "EndpointReference", _el(NS_WSA, "Address", text=REALM))))
    requested = _el(trust, "RequestedSecurityToken")
    requested.extend(tokens)
    rstr.append(requested)
    if token_type is not None:
        rstr.append(_el(trust, "TokenType", text=token_type))
    rstr.append(_el(trust, "RequestType", text=f"{trust}/Issue"))
    if extra is not None:
        rstr.append(extra)
    root = _el(trust, "RequestSecurityTokenResponseCollection", rstr) if collection else rstr
    return etree.tostring(root, encoding="unicode")


def _form(wresult: str, *, wa: str = "wsignin1.0", wctx: str = "st-1") -> dict[str, str]:
    return {"wa": wa, "wresult": wresult, "wctx": wctx}


async def _finish(form: dict[str, str], replay: MemoryReplayCache | None = None,
                  idp: WsTrustIdp | None = None) -> str:
    client = idp or _idp()
    validated = await client.finish_browser_signin(form=form, request_id=None,
                                                   replay=replay if replay is not None else MemoryReplayCache())
    return validated.subject


async def _rejected(form: dict[str, str]) -> str:
    with pytest.raises(AssertionRejected) as info:
        await _finish(form)
    return info.value.reason


# --- the sign-in URL ----------------------------------------------------------------------------------


def test_wsfed_reply_url() -> None:
    assert wsfed_reply_url(_tenant(), PUBLIC) == REPLY


def test_signin_url_carries_the_wsfed_parameters() -> None:
    url = signin_url(passive_url="https://fs.example.com/adfs/ls/?client-request-id=7&wa=old", realm=REALM,
                     reply_url=REPLY, state="st &=/", login_hint="alice+x@example.com")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "fs.example.com", "/adfs/ls/")
    query = parse_qs(parts.query)
    assert query == {"client-request-id": ["7"], "wa": ["wsignin1.0"], "wtrealm": [REALM], "wctx": ["st &=/"],
                     "wreply": [REPLY], "username": ["alice+x@example.com"]}
    assert "wct" not in query
    assert "username" not in parse_qs(urlsplit(signin_url(passive_url="https://fs/adfs/ls/", realm=REALM,
                                                           reply_url=REPLY, state="s")).query)


async def test_wstrustidp_is_a_browser_signin_and_redirects_to_adfs_ls() -> None:
    idp: BrowserSignin = _idp()
    redirect = await idp.begin_browser_signin(state="st-1", login_hint=USER)
    assert redirect.request_id is None
    parts = urlsplit(redirect.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ADFS}/adfs/ls/"
    assert parse_qs(parts.query) == {"wa": ["wsignin1.0"], "wtrealm": [REALM], "wctx": ["st-1"], "wreply": [REPLY],
                                     "username": [USER]}


async def test_the_configured_passive_url_wins() -> None:
    redirect = await _idp(passive_url="https://127.0.0.1:8443/adfs/ls/?x=1").begin_browser_signin(state="s")
    assert redirect.url.startswith("https://127.0.0.1:8443/adfs/ls/?x=1&wa=wsignin1.0&")


async def test_the_passive_host_must_be_inside_the_whitelist() -> None:
    with pytest.raises(IdpNotWhitelisted):
        await _idp(passive_url="https://192.0.2.7/adfs/ls/").begin_browser_signin(state="s")


async def test_without_public_url_browser_signin_says_why() -> None:
    with pytest.raises(BridgeError, match="public_url"):
        await _idp(public_url=None).begin_browser_signin(state="s")


def test_federation_metadata_names_the_sts_passive_endpoint() -> None:
    _, cert = _adfs_keys()
    raw = build_federation_metadata(issuer=ISSUER, authority="fs.example.com", signing_cert_pem=cert)
    assert parse_federation_metadata(raw).passive_url == "https://fs.example.com/adfs/ls/"
    # An application-service role listed first (AD FS as a relying party) does not win over the STS role.
    root = etree.fromstring(raw)
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    app = etree.Element(f"{{{md}}}RoleDescriptor", nsmap={"fed": FED_NS, "xsi": "http://www.w3.org/2001/XMLSchema-instance"})
    app.set("{http://www.w3.org/2001/XMLSchema-instance}type", "fed:ApplicationServiceType")
    endpoint = etree.SubElement(app, f"{{{FED_NS}}}PassiveRequestorEndpoint")
    etree.SubElement(etree.SubElement(endpoint, f"{{{NS_WSA}}}EndpointReference"),
                     f"{{{NS_WSA}}}Address").text = "https://other.example.com/adfs/ls/"
    root.insert(0, app)
    assert parse_federation_metadata(etree.tostring(root)).passive_url == "https://fs.example.com/adfs/ls/"
    # A plain-http endpoint is ignored; none left is None.
    plain = raw.replace(b"https://fs.example.com/adfs/ls/", b"http://fs.example.com/adfs/ls/")
    assert parse_federation_metadata(plain).passive_url is None


@pytest.fixture
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSimulator]:
    config = load_sim_config(REPO / "conf" / "idp-sim" / "users.yaml")
    async with run_simulator(config, tmp_path_factory.mktemp("wsfed-keys")) as running:
        yield running


async def test_federation_metadata_gives_the_passive_url_and_the_certificates(sim: RunningSimulator) -> None:
    idp = _idp(adfs_url=sim.base_url, issuer=None, signing_certificates=(), federation_metadata=True,
               ca_file=sim.ca_file, version=WsTrustVersionSetting.AUTO)
    try:
        redirect = await idp.begin_browser_signin(state="s")
        assert redirect.url.startswith(sim.base_url + "/adfs/ls/?wa=wsignin1.0&")
        # The browser path needs no WS-Trust endpoint: no MEX discovery happened.
        assert (sim.state.counters["metadata"], sim.state.counters["mex"]) == (1, 0)
        token = _token(keys=(sim.keys.signing_key_pem, sim.signing_cert_pem), issuer=sim.issuer)
        assert await _finish(_form(_rstr(token)), idp=idp) == USER
        assert sim.state.counters["metadata"] == 1  # one shared lookup for both steps
        await idp.resolve()  # the password path reuses it too
        assert (sim.state.counters["metadata"], sim.state.counters["mex"]) == (1, 1)
    finally:
        idp.close()
        await idp.http.close()


# --- the POSTed wresult: accepted ---------------------------------------------------------------------


async def test_a_saml11_token_in_a_2005_rstr_validates_once() -> None:
    form = _form(_rstr(_token()))
    replay = MemoryReplayCache()
    assert await _finish(form, replay) == USER
    assert len(replay) == 1
    with pytest.raises(AssertionRejected) as info:
        await _finish(form, replay)
    assert info.value.reason == "replayed"


async def test_a_saml20_token_in_a_13_collection_validates() -> None:
    assert await _finish(_form(_rstr(_token(SamlVersion.SAML20), collection=True,
                                     token_type=SAML20_TOKEN_TYPE))) == USER


async def test_a_recipient_must_be_the_reply_url_or_the_configured_one() -> None:
    assert await _finish(_form(_rstr(_token(SamlVersion.SAML20, recipient=REPLY), token_type=None))) == USER
    wrong = _form(_rstr(_token(SamlVersion.SAML20, recipient="https://evil.example/wsfed"), token_type=None))
    assert await _rejected(wrong) == "recipient"
    configured = _idp(recipient="https://evil.example/wsfed")
    assert await _finish(wrong, idp=configured) == USER


def test_the_pure_reader_keeps_the_bytes_and_the_context() -> None:
    wresult = _rstr(_token())
    answer = read_wsfed_post(_form(wresult, wctx="ctx-9"))
    assert answer.wresult == wresult.encode("utf-8")
    assert answer.context == "ctx-9"
    assert answer.token.saml_version is SamlVersion.SAML11 and answer.token.document is not None


# --- the POSTed wresult: refused ----------------------------------------------------------------------


@pytest.mark.parametrize("wa", ["wsignout1.0", "wsignin1.1", "", None])
async def test_a_post_that_is_not_a_signin_answer_is_a_protocol_error(wa: str | None) -> None:
    form = _form(_rstr(_token()))
    if wa is None:
        del form["wa"]
    else:
        form["wa"] = wa
    with pytest.raises(IdpProtocolError, match=r"wsignin1\.0"):
        await _finish(form)


@pytest.mark.parametrize("wresult", ["", "   "])
async def test_a_post_without_wresult_is_a_protocol_error(wresult: str) -> None:
    with pytest.raises(IdpProtocolError, match="no wresult"):
        await _finish(_form(wresult))


async def test_two_assertions_in_the_token_are_a_wrapping_attempt() -> None:
    evil = build_saml11_assertion(_claims(subject="mallory@example.com"))
    assert await _rejected(_form(_rstr(evil, _token()))) == "wrapped"


async def test_an_assertion_beside_the_token_is_a_wrapping_attempt() -> None:
    evil = build_saml11_assertion(_claims(subject="mallory@example.com"))
    assert await _rejected(_form(_rstr(_token(), extra=evil))) == "wrapped"


async def test_two_requested_tokens_are_a_wrapping_attempt() -> None:
    second = _el(NS_TRUST2005, "RequestedSecurityToken")
    assert await _rejected(_form(_rstr(_token(), extra=second))) == "wrapped"


async def test_a_token_for_another_realm_is_refused() -> None:
    assert await _rejected(_form(_rstr(_token(audience="urn:other-rp")))) == "audience"


async def test_a_token_from_another_issuer_is_refused() -> None:
    assert await _rejected(_form(_rstr(_token(issuer="http://evil.example/adfs/services/trust")))) == "issuer"


async def test_a_tampered_token_is_refused() -> None:
    wresult = _rstr(_token())
    assert USER in wresult
    assert await _rejected(_form(wresult.replace(USER, "mallory@example.com"))) == "signature_invalid"


async def test_an_unsigned_token_is_refused() -> None:
    assert await _rejected(_form(_rstr(build_saml11_assertion(_claims())))) == "signature_missing"


async def test_a_token_signed_by_another_key_is_refused() -> None:
    impostor = _token(keys=make_key_and_cert("wsfed-impostor"))
    assert await _rejected(_form(_rstr(impostor))) == "certificate_mismatch"


async def test_a_doctype_is_refused() -> None:
    hostile = '<!DOCTYPE x [<!ENTITY e "alice">]>' + _rstr(_token())
    assert await _rejected(_form(hostile)) == "doctype"


@pytest.mark.parametrize(
    "wresult",
    ["not xml", "<t:RequestSecurityTokenResponse", "\ud800<x/>", "<x>" + "a" * (300 * 1024) + "</x>"],
)
async def test_unreadable_wresults_are_malformed(wresult: str) -> None:
    assert await _rejected(_form(wresult)) == "malformed"


@pytest.mark.parametrize(
    ("wresult", "message"),
    [
        ("<html><body>Sign in</body></html>", "not a WS-Trust"),
        (_rstr(_token()).replace("RequestSecurityTokenResponse", "RequestSecurityToken"), "not a WS-Trust"),
        (f'<t:RequestSecurityTokenResponse xmlns:t="{NS_TRUST2005}"/>', "no RequestedSecurityToken"),
    ],
)
async def test_a_wresult_without_a_token_is_a_protocol_error(wresult: str, message: str) -> None:
    with pytest.raises(IdpProtocolError, match=message):
        await _finish(_form(wresult))


def _fault(reason: str, subcode: str = "a:RequestFailed") -> str:
    s = NS_SOAP12
    fault = _el(s, "Fault", _el(s, "Code", _el(s, "Value", text="s:Receiver"),
                                _el(s, "Subcode", _el(s, "Value", text=subcode))),
                _el(s, "Reason", _el(s, "Text", text=reason)))
    return etree.tostring(_el(s, "Envelope", _el(s, "Body", fault)), encoding="unicode")


@pytest.mark.parametrize(
    "reason",
    ["MSIS7068: Access denied.", "ID3242: The security token could not be authenticated or authorized.",
     "MSIS7102: Requested Authentication Method is not supported on the STS.", "MSIS3127: The specified request failed."],
)
async def test_a_fault_instead_of_a_token_is_access_denied(reason: str) -> None:
    with pytest.raises(AccessDenied) as info:
        await _finish(_form(_fault(reason)))
    assert type(info.value) is AccessDenied and reason.split(":")[0] in info.value.detail
    assert reason not in info.value.cause


async def test_a_fault_naming_an_unknown_relying_party_says_so() -> None:
    with pytest.raises(SpNotRegistered):
        await _finish(_form(_fault("MSIS7007: The requested relying party trust 'urn:x' is unspecified or unsupported.")))


@pytest.mark.parametrize("flip", range(0, 3000, 89))
def test_mutated_wresults_raise_only_bridge_errors(flip: int) -> None:
    raw = bytearray(_rstr(_token()).encode("utf-8"))
    raw[flip % len(raw)] ^= 0x21
    try:
        read_wsfed_post(_form(raw.decode("utf-8", "replace")))
    except BridgeError as exc:
        assert exc.detail != "the WS-Federation answer could not be read", repr(exc.__cause__)
