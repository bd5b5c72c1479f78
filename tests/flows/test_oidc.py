"""OpenID Connect tenants, whole journeys: the bridge and the simulator's OpenID Provider over loopback TLS.

The demo tenant example.net as the files in conf/ describe it (private_key_jwt with the demo key, the
password grant allowed), with its callback at the address the bridge really listens on.  Phone pairing
runs the authorization code flow with PKCE through the simulator's login and TOTP pages; the password
prompt runs the password grant, whose refusals in each IdP's dialect must land on our codes and feed
the lockout protection; defective ID tokens the simulator is told to issue must all be refused.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from bridge.idpsim.config import SimConfig
from bridge.idpsim.server import RunningSimulator, run_simulator
from printers.ipp import Attribute, GroupTag, ValueTag
from tests.flows.conftest import KNOWN_SECRETS, Bridge, BridgeFactory, sim_control
from tests.flows.oidc_support import (
    DEVICE,
    JWT,
    NINA,
    NINA_PASSWORD,
    OSCAR,
    OSCAR_PASSWORD,
    SECRET_CLIENT_ID,
    SECRET_CLIENT_SECRET,
    oidc_sim_config,
    oidc_tenant_yaml,
    sign_in_at_provider,
    totp_secret,
)
from tests.flows.pairing_support import (
    APP_ORIGIN,
    Browser,
    forms_of,
    free_port,
    phone,
    poll,
    start_pairing,
    text_of,
)
from tests.flows.print_support import PrintBridgeFactory, ipp_post, ipp_request, make_print_bridge, minimal_pdf

__all__ = ["make_print_bridge"]  # the printer's fixture, used by name


@pytest.fixture
def bridge_port() -> int:
    return free_port()


@pytest.fixture
async def sim(sim_config: SimConfig, sim_keys_dir: Path, bridge_port: int) -> AsyncIterator[RunningSimulator]:
    """The demo simulator, whose OIDC clients also accept this test bridge's callback (and a secret client)."""
    async with run_simulator(oidc_sim_config(sim_config, f"http://127.0.0.1:{bridge_port}"), sim_keys_dir) as running:
        yield running


async def oidc_bridge(make_bridge: BridgeFactory, sim: RunningSimulator, port: int, **oidc: Any) -> Bridge:
    return await make_bridge(tenants=[oidc_tenant_yaml(sim, **oidc)], listen={"port": port},
                             main_extra={"public_url": f"http://127.0.0.1:{port}",
                                         "web_signin": {"return_to": [APP_ORIGIN]}})


@pytest.fixture
async def bridge(make_bridge: BridgeFactory, sim: RunningSimulator, bridge_port: int) -> Bridge:
    return await oidc_bridge(make_bridge, sim, bridge_port)


@pytest.fixture(autouse=True)
def no_tokens_in_logs(caplog: pytest.LogCaptureFixture) -> Any:
    """No ID token, access token or client assertion (all JWTs) in any log record."""
    yield
    text = "\n".join(caplog.handler.format(record) + " " + repr(record.args) for record in caplog.records)
    assert not JWT.search(text), "a JWT was written to the log"


def counter(sim: RunningSimulator, name: str) -> int:
    return int(sim.state.counters[name])


async def phone_pairing(bridge: Bridge, sim: RunningSimulator) -> tuple[dict[str, Any], Browser, Any]:
    started = await start_pairing(bridge, DEVICE)
    http = phone()
    browser = Browser(http, sim)
    await browser.go("GET", started["verification_uri_complete"])
    assert "Example Net" in text_of(browser.html)
    await browser.submit(button="yes")
    assert browser.url.startswith(f"{sim.base_url}/oidc/authorize"), browser.url
    return started, browser, http


# -- phone pairing: authorization code with PKCE ------------------------------------------------------


async def test_a_pairing_through_oidc_with_password_and_totp(bridge: Bridge, sim: RunningSimulator,
                                                             sim_config: SimConfig) -> None:
    started, browser, http = await phone_pairing(bridge, sim)
    async with http:
        await sign_in_at_provider(browser, NINA, NINA_PASSWORD, totp_secret(sim_config, NINA))
    assert browser.url.startswith(bridge.url + "/signin/done"), browser.url
    assert browser.status == 200 and f"Signed in as {NINA}" in text_of(browser.html)
    status, body = await poll(bridge, started["device_code"], DEVICE)
    assert status == 200, body
    assert body["user"]["email"] == NINA and body["user"]["tenant"] == "example-net"
    assert counter(sim, "oidc.token.code") == 1 and counter(sim, "oidc.token.password") == 0
    events = await bridge.store.audit_page("example-net", limit=20)
    assert any(e.mode == "pairing" and e.result == "ok" and e.email == NINA for e in events)


async def test_a_wrong_nonce_from_the_provider_refuses_the_pairing(bridge: Bridge, sim: RunningSimulator,
                                                                   sim_config: SimConfig) -> None:
    await sim_control(sim, "/_sim/control", {"oidc_mischief": "wrong_nonce"})
    started, browser, http = await phone_pairing(bridge, sim)
    async with http:
        await sign_in_at_provider(browser, NINA, NINA_PASSWORD, totp_secret(sim_config, NINA))
    assert browser.status == 502 and "could not be trusted" in text_of(browser.html)
    status, body = await poll(bridge, started["device_code"], DEVICE)
    assert (status, body["error"]) == (400, "access_denied")
    events = await bridge.store.audit_page("example-net", limit=20)
    assert any(e.result == "assertion_invalid" and e.reason == "nonce" for e in events), \
        [(e.result, e.reason) for e in events]


async def test_cancel_at_the_provider_denies_the_pairing_with_the_reason_audited(
        bridge: Bridge, sim: RunningSimulator) -> None:
    started, browser, http = await phone_pairing(bridge, sim)
    async with http:
        await browser.submit(button="cancel")
    assert browser.url.startswith(bridge.url + "/oidc/example-net/callback") or browser.status == 403
    assert browser.status == 403 and "refused" in text_of(browser.html)
    status, body = await poll(bridge, started["device_code"], DEVICE)
    assert (status, body["error"]) == (400, "access_denied")
    events = await bridge.store.audit_page("example-net", limit=20)
    denied = [e for e in events if e.mode == "pairing" and e.result == "access_denied"]
    # The IdP's answer is audited with its reason; the device's poll that learnt of it, after it.
    assert any(e.reason == "IdP answered access_denied" for e in denied), [(e.result, e.reason) for e in events]
    assert counter(sim, "oidc.token.code") == 0


async def test_a_web_app_gets_a_session_through_the_provider(bridge: Bridge, sim: RunningSimulator) -> None:
    """/v1/web/login for an OIDC tenant: the email goes as login_hint, the session comes back as a one-time code."""
    async with phone() as http:
        browser = Browser(http, sim)
        await browser.go("GET", f"{bridge.url}/v1/web/login?email=oscar%40example.net&return_to={APP_ORIGIN}")
        assert browser.url.startswith(f"{sim.base_url}/oidc/authorize") and "login_hint=oscar" in browser.url
        assert forms_of(browser.html)[0]["fields"]["username"] == OSCAR  # the hint, prefilled
        KNOWN_SECRETS.add(OSCAR_PASSWORD)
        await browser.submit({"password": OSCAR_PASSWORD}, button="signin", stop_at=APP_ORIGIN)
    assert browser.url.startswith(APP_ORIGIN + "/?code=") or browser.url.startswith(APP_ORIGIN + "?code="), \
        browser.url
    code = browser.url.split("code=", 1)[1]
    KNOWN_SECRETS.add(code)
    status, body = await bridge.call("POST", "/v1/web/session", json={"code": code})
    assert status == 200 and body["user"]["email"] == OSCAR, body
    KNOWN_SECRETS.add(body["session"]["token"])


async def test_a_callback_naming_no_sign_in_or_repeating_a_parameter_is_refused(bridge: Bridge) -> None:
    async with phone() as http:
        async with http.get(bridge.url + "/oidc/example-net/callback?code=x&state=nope") as resp:
            assert resp.status == 400 and "start again" in (await resp.text()).lower()
        async with http.get(bridge.url + "/oidc/example-net/callback?code=x&state=a&state=b") as resp:
            assert resp.status == 400 and "repeats a parameter" in await resp.text()


# -- the password grant --------------------------------------------------------------------------------


async def test_the_password_grant_good_and_bad(bridge: Bridge, sim: RunningSimulator) -> None:
    status, body = await bridge.user_prompt(OSCAR, OSCAR_PASSWORD, device=DEVICE)
    assert status == 200, body
    assert body["user"]["email"] == OSCAR
    status, body = await bridge.user_prompt(OSCAR, "not-oscars-password", device=DEVICE)
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert counter(sim, "oidc.token.password") == 2


async def test_a_client_secret_with_odd_characters_authenticates(make_bridge: BridgeFactory, sim: RunningSimulator,
                                                                 bridge_port: int, tmp_path: Path) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(SECRET_CLIENT_SECRET + "\n")
    secret_file.chmod(0o600)
    bridge = await oidc_bridge(make_bridge, sim, bridge_port, client_id=SECRET_CLIENT_ID,
                               client_auth="client_secret_basic", client_secret_file=str(secret_file),
                               private_key_file=None, private_key_algorithm=None)
    status, body = await bridge.user_prompt(OSCAR, OSCAR_PASSWORD, device=DEVICE)
    assert status == 200, body


async def test_without_the_password_grant_the_prompt_is_unsupported_and_nothing_is_sent(
        make_bridge: BridgeFactory, sim: RunningSimulator, bridge_port: int) -> None:
    bridge = await oidc_bridge(make_bridge, sim, bridge_port, password_grant=False)
    status, body = await bridge.user_prompt(OSCAR, OSCAR_PASSWORD, device=DEVICE)
    assert (status, body["error"]) == (403, "password_login_unsupported")
    assert counter(sim, "oidc.token") == 0


@pytest.mark.parametrize(("controls", "code", "status"), [
    ({"oidc_dialect": "entra"}, "invalid_credentials", 401),  # AADSTS50126
    ({"oidc_dialect": "keycloak"}, "invalid_credentials", 401),  # "Invalid user credentials"
    ({"oidc_dialect": "okta"}, "invalid_credentials", 401),  # "The credentials provided were invalid."
    ({"oidc_dialect": "entra", "oidc_refusal": "locked"}, "access_denied", 403),  # AADSTS50053
    ({"oidc_dialect": "keycloak", "oidc_refusal": "locked"}, "access_denied", 403),  # "Account temporarily disabled"
    ({"oidc_dialect": "entra", "oidc_refusal": "ca_blocked"}, "access_denied", 403),  # AADSTS53003
    ({"oidc_dialect": "keycloak", "oidc_refusal": "not_set_up"}, "access_denied", 403),  # "Account is not fully set up"
])
async def test_each_dialect_is_mapped_and_counted_toward_the_lockout(
        bridge: Bridge, sim: RunningSimulator, controls: dict[str, str], code: str, status: int) -> None:
    """Five refusals reach the IdP; the sixth attempt is refused by the bridge without a call (429).

    Each try sends another password: the same refused pair again would be answered by the
    stale-password guard without the IdP, which is another protection.
    """
    await sim_control(sim, "/_sim/control", controls)
    for n in range(5):
        got, body = await bridge.user_prompt(OSCAR, f"guess-{n}", device=DEVICE)
        assert (got, body["error"]) == (status, code), body
    got, body = await bridge.user_prompt(OSCAR, "guess-5", device=DEVICE)
    assert (got, body["error"]) == (429, "temporarily_locked")
    assert counter(sim, "oidc.token.password") == 5
    events = await bridge.store.audit_page("example-net", limit=10)
    assert [e.result for e in events[:6]] == ["temporarily_locked"] + [code] * 5


@pytest.mark.parametrize("controls", [
    {"oidc_dialect": "entra", "oidc_refusal": "mfa_required"},
    {"oidc_dialect": "entra", "user": "mfa"},
])
async def test_an_mfa_answer_is_mfa_required_and_not_a_wrong_password(
        bridge: Bridge, sim: RunningSimulator, sim_config: SimConfig, controls: dict[str, str]) -> None:
    email, password = OSCAR, OSCAR_PASSWORD
    if controls.pop("user", None) == "mfa":
        mfa_users = [u for u in sim_config.users if u.email.endswith("@example.net") and u.password_logins_need_mfa]
        if not mfa_users:
            pytest.fail("the demo users file has no example.net user with password_logins: mfa_required")
        email, password = mfa_users[0].email, mfa_users[0].password
    await sim_control(sim, "/_sim/control", controls)
    for _ in range(7):
        got, body = await bridge.user_prompt(email, password, device=DEVICE)
        assert (got, body["error"]) == (403, "mfa_required"), body
    assert counter(sim, "oidc.token.password") == 7


# -- ID tokens -----------------------------------------------------------------------------------------


async def test_a_key_rotation_at_the_provider_is_picked_up(bridge: Bridge, sim: RunningSimulator) -> None:
    status, body = await bridge.user_prompt(OSCAR, OSCAR_PASSWORD, device=DEVICE)
    assert status == 200, body
    assert counter(sim, "oidc.jwks") == 1
    await sim_control(sim, "/_sim/control", {"oidc_keys": "rotate_drop_old"})
    status, body = await bridge.user_prompt(OSCAR, OSCAR_PASSWORD, device=DEVICE)
    assert status == 200, body
    assert counter(sim, "oidc.jwks") == 2  # the unknown kid made the bridge read the JWKS again, once


@pytest.mark.parametrize(("mischief", "reason"), [
    ("wrong_aud", "audience"),
    ("wrong_iss", "issuer"),
    ("alg_none", "algorithm"),
    ("expired", "expired"),
    ("unknown_key", "unknown_key"),
    ("hs256_with_public_key", "algorithm"),
    ("future_iat", "issued_in_future"),
    ("email_unverified", "email_unverified"),
    ("other_user", "subject_mismatch"),
])
async def test_a_defective_id_token_is_refused(bridge: Bridge, sim: RunningSimulator, mischief: str,
                                               reason: str) -> None:
    await sim_control(sim, "/_sim/control", {"oidc_mischief": mischief})
    status, body = await bridge.user_prompt(OSCAR, OSCAR_PASSWORD, device=DEVICE)
    assert (status, body["error"]) == (502, "assertion_invalid"), body
    assert counter(sim, f"oidc.mischief.{mischief}") >= 1
    events = await bridge.store.audit_page("example-net", limit=5)
    assert events[0].result == "assertion_invalid" and events[0].reason == reason, (events[0].result,
                                                                                    events[0].reason)


async def test_an_id_token_without_the_email_takes_it_from_userinfo(bridge: Bridge, sim: RunningSimulator) -> None:
    await sim_control(sim, "/_sim/control", {"oidc_mischief": "no_email"})
    status, body = await bridge.user_prompt(OSCAR, OSCAR_PASSWORD, device=DEVICE)
    assert status == 200, body
    assert counter(sim, "oidc.userinfo") == 1


# -- the printer -----------------------------------------------------------------------------------------


async def test_a_print_job_authenticated_by_the_password_grant(make_print_bridge: PrintBridgeFactory,
                                                               sim: RunningSimulator) -> None:
    """Print-to-Web for an OIDC tenant: the job's Basic credentials go to the password grant; a wrong one is 401."""
    bridge = await make_print_bridge(tenant=oidc_tenant_yaml(sim))
    pdf = minimal_pdf(1)
    job = ipp_request(Op.PRINT_JOB, Attribute.of("job-name", ValueTag.NAME, "minutes"),
                      Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"), data=pdf)
    status, _ = await ipp_post(bridge, job, auth=(OSCAR, "not-oscars-password"))
    assert status == 401
    status, reply = await ipp_post(bridge, job, auth=(OSCAR, OSCAR_PASSWORD))
    assert status == 200 and reply is not None and reply.code == IppStatus.OK, reply
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == OSCAR and manifest["tenant"] == "example-net"
    assert bridge.delivered_bytes(manifest) == pdf
    assert counter(sim, "oidc.token.password") == 2
    # MFA required: no printing by password, and no Basic challenge either (the queue would ask forever).
    status, reply = await ipp_post(bridge, job, auth=(NINA, NINA_PASSWORD))
    assert status == 200 and reply is not None and reply.code == IppStatus.ERROR_NOT_AUTHORIZED, reply
    message = reply.find(GroupTag.OPERATION, "status-message")
    assert message is not None and "another sign-in step" in str(message.values[0])
    assert len(bridge.manifests()) == 1


async def test_an_mfa_user_gets_a_personal_printer_url_through_the_providers_page(
        make_print_bridge: PrintBridgeFactory, sim: RunningSimulator, sim_config: SimConfig, bridge_port: int) -> None:
    """nina cannot print by password (MFA); /print/setup's other way in signs her in at the provider and gives
    her a personal printer URL, which then prints as her without any password."""
    api = f"http://127.0.0.1:{bridge_port}"
    bridge = await make_print_bridge(tenant=oidc_tenant_yaml(sim), listen={"port": bridge_port},
                                     main_extra={"public_url": api})
    async with phone() as http:
        browser = Browser(http, sim)
        await browser.go("GET", f"{api}/print/setup")
        forms = forms_of(browser.html)
        assert [f["action"] for f in forms] == ["/print/setup", "/v1/web/print-login"], forms
        await browser.go("GET", f"{api}/v1/web/print-login?email=nina%40example.net")
        assert browser.url.startswith(f"{sim.base_url}/oidc/authorize"), browser.url
        KNOWN_SECRETS.add(NINA_PASSWORD)
        await browser.submit({"username": NINA, "password": NINA_PASSWORD}, button="signin")
        await browser.submit({"otp": pyotp.TOTP(totp_secret(sim_config, NINA)).now()}, button="signin",
                             stop_at=f"{api}/print/setup/finish")
        finish = browser.url
        assert finish.startswith(f"{api}/print/setup/finish?code="), finish
        code = finish.split("code=", 1)[1]
        KNOWN_SECRETS.add(code)
        # A print setup's code opens no session: /v1/web/session does not know it (and it stays unspent).
        async with http.post(f"{api}/v1/web/session", json={"code": code}) as refused:
            assert refused.status == 400 and (await refused.json())["error"] == "invalid_grant"
        await browser.go("GET", finish)
        assert browser.status == 200 and "Your printer address" in browser.html, text_of(browser.html)
        url = re.search(r"ipps?://[^<\s]+/ipp/print/u/[A-Za-z0-9_-]+", browser.html)
        assert url is not None, text_of(browser.html)
        KNOWN_SECRETS.add(url.group(0).rsplit("/", 1)[1])
        async with http.get(browser.url) as again:  # the code is spent
            assert again.status == 400 and "Your printer address" not in await again.text()
    path = "/ipp/print/u/" + url.group(0).rsplit("/", 1)[1]
    pdf = minimal_pdf(1)
    job = ipp_request(Op.PRINT_JOB, Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"),
                      data=pdf, printer_uri=f"ipp://127.0.0.1{path}")
    status, reply = await ipp_post(bridge, job, path=path)
    assert status == 200 and reply is not None and reply.code == IppStatus.OK, reply
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == NINA and manifest["tenant"] == "example-net"
    assert counter(sim, "oidc.token.password") == 0  # never a password grant: the provider's page did it all
    events = await bridge.store.audit_page("example-net", limit=20)
    assert any(e.mode == "printer" and e.result == "ok" and e.email == NINA for e in events)
