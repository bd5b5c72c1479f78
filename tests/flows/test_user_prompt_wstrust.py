"""User-prompt login over WS-Trust, end to end against the AD FS simulator."""

from __future__ import annotations

import logging
import socket

import pytest

from bridge.idpsim.state import FailMode, Mischief
from tests.flows.conftest import BridgeFactory
from tests.keys import make_key_and_cert

ALICE = "alice@example.com"
ALICE_PASS = "alice-demo-pass"


@pytest.mark.parametrize("version", ["1.3", "2005"])
@pytest.mark.parametrize("token_type", ["saml2", "saml11"])
async def test_good_password_opens_a_session(make_bridge: BridgeFactory, version: str, token_type: str) -> None:
    bridge = await make_bridge(wstrust={"version": version, "token_type": token_type})
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert status == 200, body
    token = body["session"]["token"]
    assert len(token) >= 43  # 256 bits, base64url
    assert body["session"]["expires_at"].endswith("Z")
    assert body["user"] == {"email": ALICE, "display_name": body["user"]["display_name"], "tenant": "example"}
    counters = bridge.sim.state.counters
    assert counters["trust13" if version == "1.3" else "trust2005"] == 1, counters
    assert counters["trust2005" if version == "1.3" else "trust13"] == 0, counters

    status, session = await bridge.call("GET", "/v1/session", bearer=token)
    assert status == 200
    assert session["user"] == {"email": ALICE, "tenant": "example"}
    assert session["session"]["device_id"] == "demo-mfp"


async def test_mex_discovery_prefers_13_and_never_http(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(wstrust={"version": "auto"})
    status, _ = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert status == 200
    counters = bridge.sim.state.counters
    assert (counters["mex"], counters["trust13"], counters["trust2005"]) == (1, 1, 0), counters


async def test_email_typed_in_other_case_and_spaces(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.user_prompt("  Alice@Example.COM ", ALICE_PASS)
    assert status == 200, body
    assert body["user"]["email"] == ALICE


async def test_bad_password(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.user_prompt(ALICE, "Wr0ng <&]]> pass")
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert body["message"]


async def test_username_instead_of_email(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.user_prompt("alice", ALICE_PASS)
    assert (status, body["error"]) == (400, "email_required")
    assert "email" in body["message"].lower()
    assert bridge.trust_calls() == 0


async def test_unknown_domain(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.user_prompt("alice@unknown.test", ALICE_PASS)
    assert (status, body["error"]) == (403, "unknown_domain")


async def test_user_unknown_at_the_idp(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    await bridge.store.add_user("example", email="ghost@example.com", username="ghost")
    status, body = await bridge.user_prompt("ghost@example.com", "ghost-pass-1")
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert bridge.trust_calls() == 1


async def test_user_missing_from_tenant_never_reaches_the_idp(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.user_prompt("bob@example.com", "bob-pass-1")
    assert (status, body["error"]) == (403, "user_not_provisioned")
    assert bridge.trust_calls() == 0
    assert await bridge.store.get_user("example", "bob@example.com") is None  # SSO never creates users


async def test_user_disabled_in_tenant(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.user_prompt("disabled@example.com", "disabled-demo-pass")
    assert (status, body["error"]) == (403, "user_disabled")
    assert bridge.trust_calls() == 0


async def test_user_disabled_at_the_idp(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    await bridge.store.enable_user("example", "disabled@example.com")
    status, body = await bridge.user_prompt("disabled@example.com", "disabled-demo-pass")
    assert (status, body["error"]) == (403, "access_denied")


async def test_wrong_applies_to(make_bridge: BridgeFactory) -> None:
    # AD FS knows no relying party trust by that identifier (ID3082): the SP is not registered there.
    bridge = await make_bridge(wstrust={"applies_to": "urn:loginbridge:somebody-else"})
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "sp_not_registered")


async def test_idp_not_whitelisted(make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture) -> None:
    bridge = await make_bridge(idp_whitelist=["192.0.2.0/24"])
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "idp_not_whitelisted")
    assert sum(bridge.sim.state.counters.values()) == 0  # nothing at all reached the IdP
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("127.0.0.1/32" in m for m in warnings), warnings


async def test_idp_down(make_bridge: BridgeFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    _, cert_pem = make_key_and_cert("unused-pin")
    pin = tmp_path_factory.mktemp("pin") / "pin.pem"
    pin.write_bytes(cert_pem)
    bridge = await make_bridge(
        wstrust={"adfs_url": f"https://127.0.0.1:{closed_port}", "version": "1.3",
                 "federation_metadata": False, "issuer": "http://adfs.invalid/adfs/services/trust",
                 "signing_certificates": [str(pin)]}
    )
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "idp_unreachable")


async def test_idp_timeout(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(timeout_seconds=1)
    bridge.sim.state.delay_seconds = 3
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (504, "idp_timeout")


async def test_idp_answers_http_503(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(wstrust={"version": "1.3"})
    status, _ = await bridge.user_prompt(ALICE, ALICE_PASS)  # metadata fetched and cached
    assert status == 200
    bridge.sim.state.fail_mode = FailMode.HTTP_503
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "idp_unreachable")


@pytest.mark.parametrize(
    ("mischief", "code"),
    [
        (Mischief.TAMPER, "assertion_invalid"),
        (Mischief.WRONG_KEY, "assertion_invalid"),
        (Mischief.EXPIRED, "assertion_invalid"),
        (Mischief.WRONG_AUDIENCE, "assertion_invalid"),
        (Mischief.WRAP, "idp_protocol_error"),  # two tokens: refused by the RSTR reader already
        (Mischief.COMMENT_INJECTION, "assertion_invalid"),
        (Mischief.UNSIGNED, "assertion_invalid"),
        (Mischief.DOCTYPE, "idp_protocol_error"),
    ],
)
@pytest.mark.parametrize("token_type", ["saml2", "saml11"])
async def test_untrustworthy_tokens_are_refused(
    make_bridge: BridgeFactory, mischief: Mischief, code: str, token_type: str
) -> None:
    bridge = await make_bridge(wstrust={"token_type": token_type})
    bridge.sim.state.mischief = mischief
    bridge.sim.state.mischief_subject = "mallory@example.com"
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, code), body
    assert "session" not in body


async def test_wrong_pinned_certificate(make_bridge: BridgeFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    _, other_pem = make_key_and_cert("not-the-adfs-signer")
    pin = tmp_path_factory.mktemp("pin") / "other.pem"
    pin.write_bytes(other_pem)
    bridge = await make_bridge(wstrust={"federation_metadata": False, "signing_certificates": [str(pin)]})
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "assertion_invalid")


async def test_bad_device_secret(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS, device=("demo-mfp", "not-the-secret"))
    assert (status, body["error"]) == (401, "device_unauthorized")
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS, device=("no-such-device", "x"))
    assert (status, body["error"]) == (401, "device_unauthorized")
    status, body = await bridge.call("POST", "/v1/mfp/user-prompt", json={"email": ALICE, "password": ALICE_PASS})
    assert (status, body["error"]) == (401, "device_unauthorized")
    assert bridge.trust_calls() == 0


async def test_malformed_bodies(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    auth = ("demo-mfp", "demo-mfp-secret")
    status, body = await bridge.call("POST", "/v1/mfp/user-prompt", data=b"{not json", auth=auth)
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await bridge.call("POST", "/v1/mfp/user-prompt", json={"email": ALICE}, auth=auth)
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await bridge.call("POST", "/v1/mfp/user-prompt", json=[ALICE], auth=auth)
    assert (status, body["error"]) == (400, "bad_request")


async def test_session_endpoint_refuses_unknown_tokens(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.call("GET", "/v1/session", bearer="made-up-token")
    assert (status, body["error"]) == (401, "session_invalid")
    status, body = await bridge.call("GET", "/v1/session")
    assert (status, body["error"]) == (401, "session_invalid")


async def test_health(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await bridge.call("GET", "/healthz")
    assert (status, body["status"]) == (200, "alive")
    status, body = await bridge.call("GET", "/readyz")
    assert status == 200, body
    assert body["checks"] == {"config": "ok", "state_dir": "ok", "database": "ok"}


async def test_federation_metadata_is_read_again_after_the_refresh_interval(make_bridge: BridgeFactory) -> None:
    """AD FS publishes a rolled-over signing certificate in its metadata first: re-reading picks it up."""
    import asyncio

    bridge = await make_bridge(wstrust={"metadata_refresh_seconds": 1})
    assert (await bridge.user_prompt(ALICE, ALICE_PASS))[0] == 200
    assert (await bridge.user_prompt(ALICE, ALICE_PASS))[0] == 200
    assert bridge.sim.state.counters["metadata"] == 1  # cached within the interval
    await asyncio.sleep(1.1)
    assert (await bridge.user_prompt(ALICE, ALICE_PASS))[0] == 200
    assert bridge.sim.state.counters["metadata"] == 2


async def test_readyz_warns_about_a_pinned_certificate_expiring_soon(
    make_bridge: BridgeFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, soon_pem = make_key_and_cert("adfs-signing-expiring", days=10)
    pin = tmp_path_factory.mktemp("pin") / "expiring.pem"
    pin.write_bytes(soon_pem)
    bridge = await make_bridge(wstrust={"signing_certificates": [str(pin)]})
    status, body = await bridge.call("GET", "/readyz")
    assert status == 200
    assert any("expires" in w and "adfs-signing-expiring" in w for w in body["warnings"]), body["warnings"]
