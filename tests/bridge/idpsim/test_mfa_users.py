"""Users with a second factor: the users-file keys, the "MFA required" answers of the password paths, ``idp-sim otp``.

The password paths are driven over real loopback https with the bridge's own
messages (``build_rst``, ``build_authn_request``) against the demo users file:
dave (WS-Trust tenant) and erin (SAML tenant) have ``password_logins:
mfa_required``; alice has ``mfa: totp`` but her password logins still work.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pyotp
import pytest
from lxml import etree

from bridge.errors import ConfigError, RequestError
from bridge.idp.saml.ecp import build_authn_request
from bridge.idp.wstrust.messages import SOAP12_CONTENT_TYPE, WsTrustVersion, build_rst, soap_action
from bridge.idpsim import namespaces as ns
from bridge.idpsim.browser.websso import (
    RedirectMessage,
    inflate_request,
    read_redirect_query,
    redirect_signature_valid,
)
from bridge.idpsim.cli import main as sim_main
from bridge.idpsim.config import MfaMethod, PasswordLogins, SimConfig, parse_config
from bridge.idpsim.namespaces import TrustVersion
from bridge.idpsim.server import RunningSimulator
from tests.keys import make_key_and_cert
from tests.paths import REPO

USERS_FILE = REPO / "conf" / "idp-sim" / "users.yaml"
RP, SP = "urn:loginbridge:example.com", "urn:loginbridge:example.org"
ALICE, ALICE_PASSWORD, ALICE_SECRET = "alice@example.com", "alice-demo-pass", "ALICEDEMOTOTPKEYJBSWY3DPEHPK3PXP"
DAVE, DAVE_PASSWORD = "dave@example.com", "dave-demo-pass"
ERIN, ERIN_PASSWORD, ERIN_SECRET = "erin@example.org", "erin-demo-pass", "ERINDEMOTOTPKEY2JBSWY3DPEHPK3PXP"
MSIS7102 = "MSIS7102: Requested Authentication Method is not supported on the STS."
MFA_MESSAGE = "Multi-factor authentication is required for this account."
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
ECP_PATH = "/idp/profile/SAML2/SOAP/ECP"


@pytest.fixture
def http(client: aiohttp.ClientSession) -> aiohttp.ClientSession:
    return client


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="bridge.idpsim")
    yield
    for secret in (ALICE_PASSWORD, DAVE_PASSWORD, ERIN_PASSWORD, ALICE_SECRET, ERIN_SECRET):
        assert secret not in caplog.text


# --------------------------------------------------------------------------- WS-Trust: MSIS7102


async def post_rst(
    http: aiohttp.ClientSession, sim: RunningSimulator, version: WsTrustVersion, login: str, password: str
) -> tuple[int, bytes]:
    trust = TrustVersion.WS_TRUST_13 if version is WsTrustVersion.V13 else TrustVersion.WS_TRUST_2005
    endpoint = sim.endpoint(trust)
    body = build_rst(version=version, endpoint_url=endpoint, username=login, password=password,
                     applies_to=RP, token_type=None, now=datetime.now(UTC))
    headers = {"Content-Type": SOAP12_CONTENT_TYPE, "SOAPAction": soap_action(version)}
    async with http.post(endpoint, data=body, headers=headers) as answer:
        return answer.status, await answer.read()


def fault12(raw: bytes) -> tuple[str, str, str, str]:
    """(Code, Subcode QName as written, Subcode namespace, Reason) of a SOAP 1.2 fault."""
    root = etree.fromstring(raw)
    s = f"{{{ns.SOAP12}}}"
    code = root.find(f"{s}Body/{s}Fault/{s}Code")
    assert code is not None
    subcode = code.find(f"{s}Subcode/{s}Value")
    assert subcode is not None
    prefix = (subcode.text or "").split(":", 1)[0]
    reason = root.findtext(f"{s}Body/{s}Fault/{s}Reason/{s}Text") or ""
    return code.findtext(f"{s}Value") or "", subcode.text or "", subcode.nsmap.get(prefix, ""), reason


@pytest.mark.parametrize("version", list(WsTrustVersion))
async def test_wstrust_mfa_required_user_gets_msis7102_after_a_right_password(
    http: aiohttp.ClientSession, sim: RunningSimulator, version: WsTrustVersion
) -> None:
    status, raw = await post_rst(http, sim, version, DAVE, DAVE_PASSWORD)
    assert status == 500
    trust_ns = ns.WST13 if version is WsTrustVersion.V13 else ns.WST2005
    assert fault12(raw) == ("s:Receiver", "a:RequestFailed", trust_ns, MSIS7102)
    assert b"RequestedSecurityToken" not in raw
    assert sim.state.counters["fault.mfa_required"] == 1
    # A wrong password for the same user is still just a wrong password.
    status, raw = await post_rst(http, sim, version, "dave", "not-daves-password")
    assert status == 500
    code, subcode, _, reason = fault12(raw)
    assert (code, subcode.rsplit(":", 1)[-1]) == ("s:Sender", "FailedAuthentication")
    assert reason.startswith("ID3242:")
    assert sim.state.counters["fault.mfa_required"] == 1


async def test_wstrust_totp_user_still_gets_tokens(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    """AD FS asks alice for MFA in the browser only: her password logins keep working."""
    for version in WsTrustVersion:
        status, raw = await post_rst(http, sim, version, ALICE, ALICE_PASSWORD)
        assert status == 200 and b"RequestedSecurityToken" in raw


# --------------------------------------------------------------------------- ECP: NoAuthnContext


async def post_ecp(http: aiohttp.ClientSession, sim: RunningSimulator, login: str, password: str) -> tuple[int, bytes, str]:
    url = sim.base_url + ECP_PATH
    request = build_authn_request(sp_entity_id=SP, acs_url="https://bridge.example/saml/example-org/acs",
                                  idp_ecp_url=url, now=datetime.now(UTC))
    headers = {"Content-Type": "text/xml; charset=utf-8", "Authorization": aiohttp.encode_basic_auth(login, password)}
    async with http.post(url, data=request.envelope, headers=headers) as answer:
        return answer.status, await answer.read(), request.request_id


async def test_ecp_mfa_required_user_gets_no_authn_context(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    status, raw, request_id = await post_ecp(http, sim, ERIN, ERIN_PASSWORD)
    assert status == 200
    envelope = etree.fromstring(raw)
    assert envelope.find(f"{{{SOAP11}}}Header/{{urn:oasis:names:tc:SAML:2.0:profiles:SSO:ecp}}Response") is not None
    response = envelope.find(f"{{{SOAP11}}}Body/{{{SAMLP}}}Response")
    assert response is not None
    assert response.get("InResponseTo") == request_id
    status_el = response.find(f"{{{SAMLP}}}Status")
    assert status_el is not None
    codes = [code.get("Value") for code in status_el.iter(f"{{{SAMLP}}}StatusCode")]
    assert codes == [STATUS + "Responder", STATUS + "NoAuthnContext"]
    assert status_el.findtext(f"{{{SAMLP}}}StatusMessage") == MFA_MESSAGE
    assert not list(envelope.iter("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion"))
    assert b"EncryptedAssertion" not in raw
    assert sim.state.counters["ecp.mfa_required"] == 1


async def test_ecp_mfa_required_user_with_wrong_password_gets_the_usual_answer(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    status, raw, _ = await post_ecp(http, sim, "erin", "not-erins-password")
    assert status == 401  # the demo's dialect: the Basic challenge again
    assert b"NoAuthnContext" not in raw
    assert sim.state.counters["ecp.auth_failed"] == 1 and sim.state.counters["ecp.mfa_required"] == 0


# --------------------------------------------------------------------------- the users file


def test_demo_users_have_their_factors(config: SimConfig) -> None:
    alice, dave, erin = (config.find_user(u) for u in (ALICE, DAVE, ERIN))
    assert alice is not None and dave is not None and erin is not None
    assert (alice.mfa, alice.password_logins) == (MfaMethod.TOTP, PasswordLogins.ALLOWED)
    assert (dave.mfa, dave.password_logins) == (None, PasswordLogins.MFA_REQUIRED)
    assert (erin.mfa, erin.password_logins) == (MfaMethod.TOTP, PasswordLogins.MFA_REQUIRED)
    assert config.authenticate("dave", DAVE_PASSWORD) is dave
    assert dave.display_name == "Dave Example" and erin.display_name == "Erin Example"
    assert alice.otp_is(pyotp.TOTP(ALICE_SECRET).now())
    erins_code = pyotp.TOTP(ERIN_SECRET).now()
    assert erin.otp_is(erins_code)
    assert alice.otp_is(erins_code) is pyotp.TOTP(ALICE_SECRET).verify(erins_code, valid_window=1)
    assert not dave.otp_is("123456")
    for text in (repr(alice), repr(erin), repr(config)):
        assert ALICE_SECRET not in text and ERIN_SECRET not in text


def test_codes_one_step_off_are_accepted_two_are_not(config: SimConfig) -> None:
    alice = config.find_user(ALICE)
    assert alice is not None
    totp = pyotp.TOTP(ALICE_SECRET)
    now = datetime.now(UTC)
    current = totp.at(now)
    # The check uses the wall clock; codes for ±30 s pass, ±90 s do not (unless they collide with a valid one).
    valid = {totp.at(now + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    assert alice.otp_is(current) and alice.otp_is(f" {current[:3]} {current[3:]} ")
    for far in (totp.at(now - timedelta(seconds=95)), totp.at(now + timedelta(seconds=95))):
        assert alice.otp_is(far) is (far in valid)
    assert not alice.otp_is(current + "0") and not alice.otp_is("abcdef") and not alice.otp_is("")


def _users(**extra: object) -> dict[str, object]:
    return {"users": [{"upn": "u@example.com", "password": "pw", **extra}]}


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"mfa": "sms", "totp_secret": ALICE_SECRET}, "users[0].mfa"),
        ({"mfa": True}, "users[0].mfa"),
        ({"mfa": "totp"}, "users[0].totp_secret"),
        ({"mfa": "totp", "totp_secret": "not base32 at all!"}, "users[0].totp_secret"),
        ({"mfa": "totp", "totp_secret": "JBSWY3DPEHPK3PXPALICEDEMO"}, "users[0].totp_secret"),  # 25 chars: bad padding
        ({"mfa": "totp", "totp_secret": "JBSWY3DPEHPK3PXP"}, "users[0].totp_secret"),  # 80 bits: too short
        ({"mfa": "totp", "totp_secret": 12345}, "users[0].totp_secret"),
        ({"totp_secret": ALICE_SECRET}, "users[0].totp_secret"),
        ({"password_logins": "never"}, "users[0].password_logins"),
        ({"password_logins": True}, "users[0].password_logins"),
    ],
)
def test_users_file_errors_name_the_key(extra: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_users(**extra), source="users.yaml")
    assert caught.value.key == key
    assert key in str(caught.value)
    assert ALICE_SECRET not in str(caught.value)


def test_secret_is_normalised() -> None:
    config = parse_config(_users(mfa="totp", totp_secret="alic edem ototpkeyjbswy3dpehpk3pxp"), source="t")
    assert config.users[0].totp_secret == ALICE_SECRET
    assert config.users[0].password_logins is PasswordLogins.ALLOWED


# --------------------------------------------------------------------------- idp-sim otp


def test_otp_command_prints_the_current_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["otp", "--users", str(USERS_FILE), ALICE]) == 0
    code = capsys.readouterr().out.strip()
    assert len(code) == 6 and code.isdigit()
    assert pyotp.TOTP(ALICE_SECRET).verify(code, valid_window=1)
    # Through the loginbridge command, by account name.
    from bridge.cli import main as loginbridge_main

    assert loginbridge_main(["idp-sim", "otp", "--users", str(USERS_FILE), "erin"]) == 0
    assert pyotp.TOTP(ERIN_SECRET).verify(capsys.readouterr().out.strip(), valid_window=1)


@pytest.mark.parametrize(("login", "words"), [("nobody@example.com", "no user"), (DAVE, "no second factor")])
def test_otp_command_refuses_users_without_a_code(
    capsys: pytest.CaptureFixture[str], login: str, words: str
) -> None:
    assert sim_main(["otp", "--users", str(USERS_FILE), login]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and words in captured.err


def test_otp_command_reports_a_bad_users_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "users.yaml"
    bad.write_text("users:\n  - upn: a@b.c\n    password: x\n    mfa: totp\n")
    assert sim_main(["otp", "--users", str(bad), "a@b.c"]) == 2
    assert "totp_secret" in capsys.readouterr().err


# --------------------------------------------------------------------------- the Redirect binding's pieces


def test_redirect_query_keeps_the_raw_octets_for_the_signature() -> None:
    key_pem, cert_pem = make_key_and_cert("redirect signer")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    # Lower-case percent escapes, as some SPs write them: the octets must be used as received.
    signed = "SAMLRequest=abc%2bdef&RelayState=a%2fb&SigAlg=http%3a%2f%2fwww.w3.org%2f2001%2f04%2fxmldsig-more%23rsa-sha256"
    signature = base64.b64encode(key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    query = signed + "&Signature=" + signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    message = read_redirect_query(query)
    assert message.saml_request == "abc+def" and message.relay_state == "a/b"
    assert message.signed_octets == signed.encode()
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert redirect_signature_valid(message, [cert])
    other = x509.load_pem_x509_certificate(make_key_and_cert("someone else")[1])
    assert not redirect_signature_valid(message, [other])
    unknown_alg = RedirectMessage(
        saml_request="x", relay_state=None, sig_alg="urn:nope", signature=signature, signed_octets=signed.encode()
    )
    assert not redirect_signature_valid(unknown_alg, [cert])


def test_inflate_is_bounded() -> None:
    import zlib

    compressor = zlib.compressobj(wbits=-15)
    bomb = base64.b64encode(compressor.compress(b"<" * (10 * 1024 * 1024)) + compressor.flush()).decode()
    with pytest.raises(RequestError, match="size limit"):
        inflate_request(bomb)
