"""The simulator's refusal dialects (``auth_failure`` on both sides) and its answer to its own failures.

Driven over real loopback https with the bridge's own protocol messages
(``build_rst``, ``build_authn_request``); what comes back is read with lxml,
as any relying party would.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from lxml import etree

from bridge.idp.saml.ecp import build_authn_request
from bridge.idp.wstrust.messages import SOAP12_CONTENT_TYPE, WsTrustVersion, build_rst, soap_action
from bridge.idpsim import namespaces as ns
from bridge.idpsim.app import make_app
from bridge.idpsim.config import SimConfig, load_config
from bridge.idpsim.ecp.routes import CONTROL_PATH as ECP_CONTROL_PATH
from bridge.idpsim.ecp.settings import AuthFailureMode
from bridge.idpsim.keys import SimKeys, ensure_keys, server_ssl_context
from bridge.idpsim.namespaces import TrustVersion
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.idpsim.state import SIM_STATE, AdfsAuthFailure, SimState
from tests.paths import REPO

USERS_FILE = REPO / "conf" / "idp-sim" / "users.yaml"
ALICE, BOB = "alice@example.com", "bob@example.org"
RP = "urn:loginbridge:example.com"
SP = "urn:loginbridge:example.org"
ECP_PATH = "/idp/profile/SAML2/SOAP/ECP"
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SimKeys:
    return ensure_keys(tmp_path_factory.mktemp("dialect-keys"), host="127.0.0.1")


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return load_config(USERS_FILE)


@pytest.fixture
async def sim(config: SimConfig, keys: SimKeys) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(config, keys.keys_dir) as running:
        yield running


@pytest.fixture
async def http(keys: SimKeys) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(keys.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


async def post_rst(http: aiohttp.ClientSession, sim: RunningSimulator, password: str) -> tuple[int, bytes]:
    endpoint = sim.endpoint(TrustVersion.WS_TRUST_13)
    body = build_rst(version=WsTrustVersion.V13, endpoint_url=endpoint, username=ALICE, password=password,
                     applies_to=RP, token_type=None, now=datetime.now(UTC))
    headers = {"Content-Type": SOAP12_CONTENT_TYPE, "SOAPAction": soap_action(WsTrustVersion.V13)}
    async with http.post(endpoint, data=body, headers=headers) as answer:
        return answer.status, await answer.read()


def fault12(raw: bytes) -> tuple[str, str, str]:
    """(Code, innermost Subcode local name, Reason) of a SOAP 1.2 fault."""
    root = etree.fromstring(raw)
    s = f"{{{ns.SOAP12}}}"
    code = root.find(f"{s}Body/{s}Fault/{s}Code")
    assert code is not None
    values = [(v.text or "") for v in code.iter(f"{s}Value")]
    reason = root.findtext(f"{s}Body/{s}Fault/{s}Reason/{s}Text") or ""
    return values[0], values[-1].rsplit(":", 1)[-1], reason


# --------------------------------------------------------------------------- the AD FS side


@pytest.mark.parametrize(
    ("dialect", "status", "fault"),
    [
        (AdfsAuthFailure.ID3242, 500,
         ("s:Sender", "FailedAuthentication", "ID3242: The security token could not be authenticated or authorized.")),
        (AdfsAuthFailure.ADFS2_WORDING, 500,
         ("s:Sender", "FailedAuthentication", "At least one security token in the message could not be validated.")),
        (AdfsAuthFailure.HTTP_401, 401,
         ("s:Sender", "FailedAuthentication", "ID3242: The security token could not be authenticated or authorized.")),
        (AdfsAuthFailure.HTTP_401_BARE, 401, None),
        (AdfsAuthFailure.HTTP_403, 403,
         ("s:Sender", "FailedAuthentication", "ID3242: The security token could not be authenticated or authorized.")),
        (AdfsAuthFailure.HTTP_403_BARE, 403, None),
        (AdfsAuthFailure.REQUEST_FAILED, 500, ("s:Receiver", "RequestFailed", "MSIS3127: The specified request failed.")),
    ],
)
async def test_adfs_wrong_password_dialects(
    http: aiohttp.ClientSession, sim: RunningSimulator, dialect: AdfsAuthFailure, status: int,
    fault: tuple[str, str, str] | None,
) -> None:
    async with http.post(sim.base_url + "/_sim/control", json={"auth_failure": dialect.value}) as answer:
        assert answer.status == 200
        assert (await answer.json())["auth_failure"] == dialect.value
    got_status, raw = await post_rst(http, sim, "not-alices-password")
    assert got_status == status
    if fault is None:
        assert raw == b""
    else:
        assert fault12(raw) == fault
    assert sim.state.counters["fault.failed_authentication"] == 1
    # The right password is still issued a token whatever the dialect.
    got_status, raw = await post_rst(http, sim, "alice-demo-pass")
    assert got_status == 200 and b"RequestSecurityTokenResponse" in raw


async def test_adfs_dialect_control_validates_and_resets(http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
    async with http.post(sim.base_url + "/_sim/control", json={"auth_failure": "teapot"}) as answer:
        assert answer.status == 400
        assert "id3242" in (await answer.json())["detail"]
    assert sim.state.auth_failure is AdfsAuthFailure.ID3242
    sim.state.apply_control({"auth_failure": "http-403-bare"})
    assert sim.state.snapshot()["auth_failure"] == "http-403-bare"
    sim.state.apply_control({"reset": True})
    assert sim.state.auth_failure is AdfsAuthFailure.ID3242


# --------------------------------------------------------------------------- the ECP side


async def post_ecp(http: aiohttp.ClientSession, sim: RunningSimulator, password: str) -> tuple[int, bytes, str]:
    url = sim.base_url + ECP_PATH
    request = build_authn_request(sp_entity_id=SP, acs_url="https://bridge.example/saml/example-org/acs",
                                  idp_ecp_url=url, now=datetime.now(UTC))
    headers = {"Content-Type": "text/xml; charset=utf-8", "Authorization": aiohttp.encode_basic_auth(BOB, password)}
    async with http.post(url, data=request.envelope, headers=headers) as answer:
        return answer.status, await answer.read(), answer.headers.get("WWW-Authenticate", "")


def saml_status(raw: bytes) -> tuple[list[str], str | None]:
    root = etree.fromstring(raw)
    response = root.find(f"{{{SOAP11}}}Body/{{{SAMLP}}}Response")
    assert response is not None
    status = response.find(f"{{{SAMLP}}}Status")
    assert status is not None
    codes = [code.get("Value", "") for code in status.iter(f"{{{SAMLP}}}StatusCode")]
    return codes, status.findtext(f"{{{SAMLP}}}StatusMessage")


@pytest.mark.parametrize(
    ("mode", "status", "expected"),
    [
        (AuthFailureMode.HTTP_401, 401, "challenge"),
        (AuthFailureMode.HTTP_401_FAULT, 401, "fault"),
        (AuthFailureMode.HTTP_403, 403, "page"),
        (AuthFailureMode.HTTP_403_FAULT, 403, "fault"),
        (AuthFailureMode.SAML_STATUS, 200, ([STATUS + "Responder", STATUS + "AuthnFailed"], None)),
        (AuthFailureMode.REQUESTER_AUTHN_FAILED, 200, ([STATUS + "Requester", STATUS + "AuthnFailed"], None)),
        (AuthFailureMode.UNKNOWN_PRINCIPAL, 200, ([STATUS + "Requester", STATUS + "UnknownPrincipal"], None)),
        (AuthFailureMode.NO_PASSIVE, 200, ([STATUS + "Responder", STATUS + "NoPassive"], None)),
        (AuthFailureMode.REQUEST_DENIED, 200, ([STATUS + "Responder", STATUS + "RequestDenied"], None)),
        (AuthFailureMode.WRONGUSERPASS, 200, ([STATUS + "Responder"], "SimpleSAML\\Error\\Error: WRONGUSERPASS")),
        (AuthFailureMode.RESPONDER_ONLY, 200, ([STATUS + "Responder"], None)),
    ],
)
async def test_ecp_wrong_password_dialects(
    http: aiohttp.ClientSession, sim: RunningSimulator, mode: AuthFailureMode, status: int,
    expected: str | tuple[list[str], str | None],
) -> None:
    async with http.post(sim.base_url + ECP_CONTROL_PATH, json={"auth_failure": mode.value}) as answer:
        assert answer.status == 200
    got_status, raw, challenge = await post_ecp(http, sim, "not-bobs-password")
    assert got_status == status
    if status == 401:
        assert challenge.startswith("Basic realm=")
    if expected == "fault":
        root = etree.fromstring(raw)
        assert root.findtext(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultstring") == "Authentication failed"
    elif expected in ("challenge", "page"):
        assert b"Envelope" not in raw
    else:
        assert saml_status(raw) == expected
    assert b"Assertion " not in raw  # no assertion element (the ecp:Response header names the ACS)
    assert sim.state.counters["ecp.auth_failed"] == 1
    got_status, raw, _ = await post_ecp(http, sim, "bob-demo-pass")
    assert got_status == 200 and b"Assertion " in raw


# --------------------------------------------------------------------------- the simulator's own failures


@pytest.fixture
async def broken_sim(config: SimConfig, keys: SimKeys) -> AsyncIterator[tuple[str, SimState]]:
    """The simulator with extra routes that fail the way a bug does (an exception nobody caught)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    port = int(sock.getsockname()[1])
    app = make_app(config.resolved("127.0.0.1", port), keys_dir=keys.keys_dir, keys=keys)

    async def bug(request: web.Request) -> web.StreamResponse:
        raise KeyError("a bug in the simulator")

    for path in ("/adfs/services/trust/13/broken", "/adfs/services/trust/2005/broken", "/idp/profile/broken",
                 "/_sim/broken"):
        app.router.add_post(path, bug)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=server_ssl_context(keys))
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}", app[SIM_STATE]
    finally:
        await runner.cleanup()
        sock.close()


@pytest.mark.parametrize(
    ("path", "content_type", "shape"),
    [
        ("/adfs/services/trust/13/broken", "application/soap+xml", (ns.SOAP12, ns.WST13)),
        ("/adfs/services/trust/2005/broken", "application/soap+xml", (ns.SOAP12, ns.WST2005)),
        ("/idp/profile/broken", "text/xml", (SOAP11, None)),
        ("/_sim/broken", "application/json", None),
    ],
)
async def test_a_simulator_failure_is_logged_and_answered_in_protocol(
    http: aiohttp.ClientSession, broken_sim: tuple[str, SimState], caplog: pytest.LogCaptureFixture,
    path: str, content_type: str, shape: tuple[str, str | None] | None,
) -> None:
    base, state = broken_sim
    caplog.set_level(logging.ERROR, logger="bridge.idpsim.app")
    async with http.post(base + path, data=b"<x/>") as answer:
        assert answer.status == 500
        assert answer.headers["Content-Type"].startswith(content_type)
        raw = await answer.read()
    assert b"Internal Server Error" not in raw and b"Server got itself in trouble" not in raw
    if shape is None:
        assert json_of(raw)["error"] == "internal_error"
    else:
        envelope_ns, subcode_ns = shape
        root = etree.fromstring(raw)
        fault = root.find(f"{{{envelope_ns}}}Body/{{{envelope_ns}}}Fault")
        assert fault is not None
        if subcode_ns is not None:
            assert fault12(raw)[1:] == ("RequestFailed", "MSIS3127: The specified request failed.")
            value = fault.find(f"{{{ns.SOAP12}}}Code/{{{ns.SOAP12}}}Subcode/{{{ns.SOAP12}}}Value")
            assert value is not None and value.nsmap.get("a") == subcode_ns
        else:
            assert fault.findtext("faultcode") == "soap11:Server"
    (record,) = [r for r in caplog.records if r.name == "bridge.idpsim.app" and r.levelno == logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is KeyError  # the traceback is in the log
    assert path in record.getMessage()
    assert state.counters["sim.failure"] == 1


def json_of(raw: bytes) -> dict[str, object]:
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


async def test_a_dropped_connection_is_not_answered(
    http: aiohttp.ClientSession, sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.state.apply_control({"fail_mode": "drop-connection"})
    with pytest.raises(aiohttp.ClientError):
        await post_ecp(http, sim, "bob-demo-pass")
    assert sim.state.counters["sim.failure"] == 0
    assert not [r for r in caplog.records if r.name == "bridge.idpsim.app" and r.levelno >= logging.ERROR]
