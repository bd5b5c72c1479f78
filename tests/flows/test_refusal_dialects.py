"""Every way an IdP says "no" feeds the lockout protection, and every panel text is right for it.

The simulator answers a wrong password in each dialect real IdPs speak (AD FS
faults, bare 401/403, SAML statuses as Shibboleth, Keycloak and SimpleSAMLphp
word them).  For each, five wrong passwords in a row reach the IdP and get the
panel text of their class; the sixth is refused by the bridge itself
(``temporarily_locked``), which the simulator's request counters prove.
Also: an IdP that does not know the bridge (``sp_not_registered``, in the
answer and in ``loginbridge check``), and error pages that are outages.
"""

from __future__ import annotations

import logging

import pytest

from bridge.errors import AccessDenied, BridgeError, IdpRefused, InvalidCredentials, SpNotRegistered
from bridge.idpsim.ecp.settings import AuthFailureMode
from bridge.idpsim.server import RunningSimulator
from bridge.idpsim.state import AdfsAuthFailure, FailMode
from bridge.toolkit.check import Credentials, check_command
from bridge.toolkit.report import Status
from tests.flows.conftest import Bridge, BridgeFactory, sim_control
from tests.flows.modes_support import CASES, Case, idp_calls, request, two_tenant_bridge

PROMPT = "/v1/mfp/user-prompt"

# The class each dialect's wrong password belongs to (what the panel must say).
ADFS_DIALECTS: dict[AdfsAuthFailure, type[BridgeError]] = {
    AdfsAuthFailure.ID3242: InvalidCredentials,
    AdfsAuthFailure.ADFS2_WORDING: InvalidCredentials,
    AdfsAuthFailure.HTTP_401: InvalidCredentials,
    AdfsAuthFailure.HTTP_401_BARE: InvalidCredentials,
    AdfsAuthFailure.HTTP_403: InvalidCredentials,  # the ID3242 fault inside says more than the status
    AdfsAuthFailure.HTTP_403_BARE: AccessDenied,
    AdfsAuthFailure.REQUEST_FAILED: IdpRefused,  # MSIS3127 names no cause: counted, not called a wrong password
}
ECP_DIALECTS: dict[AuthFailureMode, type[BridgeError]] = {
    AuthFailureMode.HTTP_401: InvalidCredentials,
    AuthFailureMode.HTTP_401_FAULT: InvalidCredentials,
    AuthFailureMode.HTTP_403: AccessDenied,
    AuthFailureMode.HTTP_403_FAULT: InvalidCredentials,
    AuthFailureMode.SAML_STATUS: InvalidCredentials,
    AuthFailureMode.REQUESTER_AUTHN_FAILED: InvalidCredentials,
    AuthFailureMode.UNKNOWN_PRINCIPAL: InvalidCredentials,
    AuthFailureMode.NO_PASSIVE: InvalidCredentials,
    AuthFailureMode.REQUEST_DENIED: AccessDenied,
    AuthFailureMode.WRONGUSERPASS: InvalidCredentials,
    AuthFailureMode.RESPONDER_ONLY: IdpRefused,
}
DIALECTS: list[tuple[str, str, type[BridgeError]]] = [
    *[("wstrust", dialect.value, expected) for dialect, expected in ADFS_DIALECTS.items()],
    *[("saml2", dialect.value, expected) for dialect, expected in ECP_DIALECTS.items()],
]


def test_every_dialect_of_the_simulator_is_covered() -> None:
    assert set(ADFS_DIALECTS) == set(AdfsAuthFailure)
    assert set(ECP_DIALECTS) == set(AuthFailureMode)


async def answer_wrong_passwords_in(sim: RunningSimulator, protocol: str, dialect: str) -> None:
    """Turn the knob the way a technician does: the loopback control endpoint of that side."""
    if protocol == "wstrust":
        snapshot = await sim_control(sim, "/_sim/control", {"auth_failure": dialect})
    else:
        snapshot = await sim_control(sim, "/_sim/ecp", {"auth_failure": dialect})
    assert snapshot["auth_failure"] == dialect


def failures_answered(bridge: Bridge, case: Case) -> int:
    counters = bridge.sim.state.counters
    return counters["ecp.auth_failed"] if case.protocol == "saml2" else counters["fault.failed_authentication"]


def expected_answer(error: type[BridgeError]) -> tuple[int, dict[str, str]]:
    return error.http_status, {"error": error.code, "message": error.panel_message}


@pytest.mark.parametrize(("protocol", "dialect", "expected"), DIALECTS, ids=[f"{p}-{d}" for p, d, _ in DIALECTS])
async def test_the_sixth_wrong_password_never_reaches_the_idp(
    make_bridge: BridgeFactory, sim: RunningSimulator, protocol: str, dialect: str, expected: type[BridgeError]
) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim)
    assert bridge.config.tenant(case.tenant).throttle.user_failures == 5
    await answer_wrong_passwords_in(sim, protocol, dialect)
    for attempt in range(5):
        status, body, headers = await request(
            bridge, "POST", PROMPT, json={"email": case.email, "password": f"Guess-{dialect}-{attempt}"},
            auth=case.prompt_device)
        assert (status, body) == expected_answer(expected), (attempt, body)
        if status == 401:
            assert "WWW-Authenticate" in headers
    assert idp_calls(bridge, case) == 5
    assert failures_answered(bridge, case) == 5  # each one answered in the dialect, by the IdP
    status, body, headers = await request(
        bridge, "POST", PROMPT, json={"email": case.email, "password": f"Guess-{dialect}-5"}, auth=case.prompt_device)
    assert (status, body["error"]) == (429, "temporarily_locked")
    assert int(headers["Retry-After"]) >= 1
    assert idp_calls(bridge, case) == 5  # the sixth never left the bridge
    events = await bridge.store.audit_events(tenant_id=case.tenant, last=6)
    assert [e.result for e in events] == [expected.code] * 5 + ["temporarily_locked"]


@pytest.mark.parametrize(
    ("protocol", "dialect", "remembered"),
    [
        ("saml2", AuthFailureMode.REQUEST_DENIED.value, True),  # an account refusal: remembered like a password
        ("wstrust", AdfsAuthFailure.HTTP_403_BARE.value, True),
        ("saml2", AuthFailureMode.RESPONDER_ONLY.value, False),  # unclassified: counted, never remembered
        ("wstrust", AdfsAuthFailure.REQUEST_FAILED.value, False),
    ],
)
async def test_the_stale_password_guard_repeats_account_refusals_only(
    make_bridge: BridgeFactory, sim: RunningSimulator, protocol: str, dialect: str, remembered: bool
) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim)
    await answer_wrong_passwords_in(sim, protocol, dialect)
    answers = []
    for _ in range(3):
        status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": "Retried-1"},
                                        auth=case.prompt_device)
        answers.append((status, body["error"]))
    assert len(set(answers)) == 1  # the guard answers what the IdP answered
    assert idp_calls(bridge, case) == (1 if remembered else 3)


async def test_unclassified_and_account_refusals_feed_spray_detection(
    make_bridge: BridgeFactory, sim: RunningSimulator
) -> None:
    case = CASES["wstrust"]
    bridge = await two_tenant_bridge(make_bridge, sim, example={"throttle": {"spray_distinct_users": 3}})
    await answer_wrong_passwords_in(sim, "wstrust", AdfsAuthFailure.REQUEST_FAILED.value)
    for email in ("alice@example.com", "frontdesk@example.com"):
        status, body, _ = await request(bridge, "POST", PROMPT, json={"email": email, "password": "Spring2024!"},
                                        auth=case.prompt_device)
        assert (status, body["error"]) == (403, "idp_refused")
    await answer_wrong_passwords_in(sim, "wstrust", AdfsAuthFailure.HTTP_403_BARE.value)
    status, body, _ = await request(bridge, "POST", PROMPT,
                                    json={"email": "mallory@example.com", "password": "Spring2024!"},
                                    auth=case.prompt_device)
    assert (status, body["error"]) == (403, "access_denied")
    status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": case.password},
                                    auth=case.prompt_device)
    assert (status, body["error"]) == (429, "device_throttled")
    assert idp_calls(bridge, case) == 3


# --- the IdP does not know the bridge -------------------------------------------------------------


async def test_sp_not_registered_at_the_ecp_idp(
    make_bridge: BridgeFactory, sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    case = CASES["saml2"]
    bridge = await two_tenant_bridge(make_bridge, sim)
    await sim_control(sim, "/_sim/ecp", {"trust_any_sp": False})  # the administrator never registered the SP
    for _ in range(6):
        status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": case.password},
                                        auth=case.prompt_device)
        assert (status, body) == expected_answer(SpNotRegistered)
    assert "administrator" in body["message"]
    assert idp_calls(bridge, case) == 6  # a configuration refusal is nobody's failed login: no lock
    details = [r.getMessage() for r in caplog.records if r.name == "bridge.app" and "sp_not_registered" in
               r.getMessage()]
    assert details and "does not know this service provider" in details[-1]
    assert "unknown service provider" in details[-1]

    report = await check_command(bridge.config, case.tenant, Credentials(email=case.email, password=case.password))
    login = next(s for s in report.steps if s.name.startswith("login "))
    assert (login.status, login.code, login.panel_message) == (Status.FAIL, "sp_not_registered",
                                                              SpNotRegistered.panel_message)
    assert f"{bridge.config.public_url}/saml/{case.tenant}/metadata" in login.hint
    assert not report.ok

    # Registering the metadata, as the step says, is the fix.
    async with bridge.http.get(bridge.url + f"/saml/{case.tenant}/metadata") as resp:
        metadata = await resp.read()
    await sim_control(sim, "/_sim/ecp/sp-metadata", None, raw=metadata)
    status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": case.password},
                                    auth=case.prompt_device)
    assert status == 200, body


async def test_relying_party_not_registered_at_adfs(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    case = CASES["wstrust"]
    unknown = "urn:loginbridge:not-registered"
    bridge = await two_tenant_bridge(make_bridge, sim, example={"wstrust": {"applies_to": unknown}})
    status, body, _ = await request(bridge, "POST", PROMPT, json={"email": case.email, "password": case.password},
                                    auth=case.prompt_device)
    assert (status, body) == expected_answer(SpNotRegistered)
    assert sim.state.counters["fault.invalid_scope"] == 1

    report = await check_command(bridge.config, case.tenant, Credentials(email=case.email, password=case.password))
    login = next(s for s in report.steps if s.name.startswith("login "))
    assert (login.status, login.code) == (Status.FAIL, "sp_not_registered")
    assert "relying party trust" in login.hint and unknown in login.hint
    assert "ID3082" in login.summary


# --- outages are outages ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["wstrust", "saml2"])
async def test_an_html_error_page_is_an_outage_and_locks_nobody(
    make_bridge: BridgeFactory, sim: RunningSimulator, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim, example={"wstrust": {"version": "1.3"}})
    login = {"email": case.email, "password": case.password}
    status, body, _ = await request(bridge, "POST", PROMPT, json=login, auth=case.prompt_device)
    assert status == 200, body  # endpoint and metadata known: the next answer is the login's own
    sim.state.fail_mode = FailMode.HTTP_500_PAGE
    for _ in range(6):
        status, body, _ = await request(bridge, "POST", PROMPT, json=login, auth=case.prompt_device)
        assert (status, body["error"]) == (502, "idp_unreachable")
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.app" and "idp_unreachable" in r.getMessage()]
    assert lines and "HTTP 500 (text/html" in lines[-1] and "not a SOAP answer" in lines[-1]
    assert "Internal Server Error" not in lines[-1]  # the page's text is not copied into the log
    sim.state.fail_mode = None
    status, body, _ = await request(bridge, "POST", PROMPT, json=login, auth=case.prompt_device)
    assert status == 200, body  # six outages locked nobody out


@pytest.mark.parametrize("protocol", ["wstrust", "saml2"])
async def test_an_unreadable_answer_explains_itself_in_the_log(
    make_bridge: BridgeFactory, sim: RunningSimulator, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    case = CASES[protocol]
    bridge = await two_tenant_bridge(make_bridge, sim, example={"wstrust": {"version": "1.3"}})
    login = {"email": case.email, "password": case.password}
    status, body, _ = await request(bridge, "POST", PROMPT, json=login, auth=case.prompt_device)
    assert status == 200, body
    sim.state.fail_mode = FailMode.GARBAGE  # HTTP 200, a SOAP content type, bytes that are no XML
    caplog.clear()
    status, body, _ = await request(bridge, "POST", PROMPT, json=login, auth=case.prompt_device)
    assert (status, body["error"]) == (502, "idp_protocol_error")
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "answer not usable" in r.getMessage()]
    assert len(infos) == 1
    line = infos[0].getMessage()
    assert "HTTP 200" in line and "content type " in line and " bytes" in line and "first element " in line
    assert "GARBAGE" not in line  # the shape of the answer, never its content
