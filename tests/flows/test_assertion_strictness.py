"""Assertions held to the letter, end to end against the simulator.

- The signed subject must be the typed email up to NFC and ASCII letter case:
  the simulator's directory (which, like many, matches logins with casefold)
  holds accounts whose UPN is a look-alike of the address typed.
- A samlp:Response that carries its own signature must have it verify, also
  around an encrypted, separately signed assertion.
- An accepted WS-Trust token is remembered in the store: replayed to a new
  app on the same state directory (a restart), it is refused.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Any

import pytest

from bridge.idpsim.config import SimConfig, SimUser
from bridge.idpsim.config import load_config as load_sim_config
from bridge.idpsim.server import RunningSimulator
from bridge.idpsim.state import Mischief
from tests.flows.conftest import (
    KNOWN_SECRETS,
    SIM_USERS,
    Bridge,
    BridgeFactory,
    saml_tenant_yaml,
    sim_control,
    tenant_yaml,
)

ALICE = "alice@example.com"
ALICE_PASS = "alice-demo-pass"
BOB = "bob@example.org"
BOB_PASS = "bob-demo-pass"
ORG_DEVICE = ("demo-mfp-org", "demo-mfp-org-secret")
LONG_S = "\u017f"
KELVIN = "\u212a"
RENE_NFC = unicodedata.normalize("NFC", "ren\u00e9@example.com")
RENE_NFD = unicodedata.normalize("NFD", RENE_NFC)

# (upn the IdP signs, address the directory matches the login on, password)
LOOKALIKES = (
    (f"{LONG_S}am@example.com", "sam@example.com", "sam-pass-1"),
    (f"{KELVIN}ate@example.com", "kate@example.com", "kate-pass-1"),
    (RENE_NFD, RENE_NFC, "rene-pass-1"),
    ("Carol@Example.COM", "carol@example.com", "carol-pass-1"),
)


@pytest.fixture(scope="module")
def sim_config() -> SimConfig:
    """The demo directory plus accounts whose UPN differs from their mail address in a Unicode way."""
    base = load_sim_config(SIM_USERS)
    extra = tuple(
        SimUser(username=mail.split("@")[0], upn=upn, email=mail, password=password, display_name=mail)
        for upn, mail, password in LOOKALIKES
    )
    KNOWN_SECRETS.update(user.password for user in (*base.users, *extra))
    return dataclasses.replace(base, users=base.users + extra)


async def provision(bridge: Bridge, *emails: str) -> None:
    for email in emails:
        await bridge.store.add_user("example", email=email, username=email.split("@")[0])


# --- the subject --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "upn"),
    [("sam@example.com", f"{LONG_S}am@example.com")],
    ids=["long-s"],
)
async def test_lookalike_subject_is_refused(
    make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture, typed: str, upn: str
) -> None:
    bridge = await make_bridge()
    await provision(bridge, typed)
    assert typed.casefold() == upn.casefold()  # what the old comparison let through
    status, body = await bridge.user_prompt(typed, dict((m, p) for _, m, p in LOOKALIKES)[typed])
    assert (status, body["error"]) == (502, "assertion_invalid"), body
    assert "session" not in body
    assert bridge.trust_calls() == 1  # the IdP said yes; its signed subject is not the address typed
    assert "subject_mismatch" in caplog.text


@pytest.mark.parametrize(
    ("typed", "provisioned"),
    [
        ("kate@example.com", "kate@example.com"),  # the IdP signs KELVIN SIGN + "ate": canonically "Kate"
        (RENE_NFC, RENE_NFC),  # the IdP signs the NFD form
        (RENE_NFD, RENE_NFC),  # typed decomposed, stored composed
        ("carol@example.com", "carol@example.com"),  # the IdP signs Carol@Example.COM
        ("CAROL@example.com", "carol@example.com"),
    ],
    ids=["kelvin-sign-at-idp", "nfc-typed", "nfd-typed", "ascii-case-at-idp", "ascii-case-typed"],
)
async def test_same_address_in_another_form_is_accepted(
    make_bridge: BridgeFactory, typed: str, provisioned: str
) -> None:
    bridge = await make_bridge()
    await provision(bridge, provisioned)
    password = dict((unicodedata.normalize("NFC", m).lower(), p) for _, m, p in LOOKALIKES)[provisioned]
    status, body = await bridge.user_prompt(typed, password)
    assert status == 200, body
    assert body["user"]["email"] == provisioned


async def test_typed_lookalike_of_a_provisioned_account_never_reaches_the_idp(make_bridge: BridgeFactory) -> None:
    """A long s typed for sam is another address (no compatibility folding): refused before the IdP."""
    bridge = await make_bridge()
    await provision(bridge, "sam@example.com")
    status, body = await bridge.user_prompt(f"{LONG_S}am@example.com", "sam-pass-1")
    assert (status, body["error"]) == (403, "user_not_provisioned"), body
    assert bridge.trust_calls() == 0


# --- WS-Trust Recipient ------------------------------------------------------------------------


async def test_configured_recipient_is_accepted_and_tokens_without_one_pass(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(wstrust={"recipient": "https://bridge.example.com/wstrust"})
    assert bridge.config.tenants[0].wstrust is not None
    assert bridge.config.tenants[0].wstrust.recipient == "https://bridge.example.com/wstrust"
    status, body = await bridge.user_prompt(ALICE, ALICE_PASS)  # AD FS-like: no Recipient in the token
    assert status == 200, body


# --- replay across a restart ---------------------------------------------------------------------


async def test_replayed_wstrust_token_is_refused_after_a_restart(
    make_bridge: BridgeFactory, sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    first = await make_bridge()
    status, body = await first.user_prompt(ALICE, ALICE_PASS)
    assert status == 200, body
    # A new app on the same state directory: nothing of the first one's memory, only the store.
    second = await make_bridge()
    assert second.url != first.url
    sim.state.mischief = Mischief.REPLAY  # the IdP side answers the token it issued before, unchanged
    caplog.clear()
    status, body = await second.user_prompt(ALICE, ALICE_PASS)
    assert (status, body["error"]) == (502, "assertion_invalid"), body
    assert sim.state.counters["mischief.replay"] == 1
    assert "replayed" in caplog.text
    # A fresh token is fine: the refusal was about that one assertion id.
    sim.state.mischief = None
    status, body = await second.user_prompt(ALICE, ALICE_PASS)
    assert status == 200, body


# --- ECP: the Response's own signature ------------------------------------------------------------


@pytest.fixture
async def ecp(sim: RunningSimulator) -> Any:
    await sim_control(sim, "/_sim/ecp", {"reset": True})

    async def control(**body: Any) -> Any:
        return await sim_control(sim, "/_sim/ecp", body)

    return control


async def saml_bridge(make_bridge: BridgeFactory, sim: RunningSimulator) -> Bridge:
    KNOWN_SECRETS.add(ORG_DEVICE[1])
    bridge = await make_bridge(tenants=[tenant_yaml(sim), saml_tenant_yaml(sim)])
    async with bridge.http.get(bridge.url + "/saml/example-org/metadata") as resp:
        assert resp.status == 200
        metadata = await resp.read()
    await sim_control(sim, "/_sim/ecp/sp-metadata", None, raw=metadata)  # so the IdP can encrypt for us
    return bridge


@pytest.mark.parametrize("encrypt", [False, True], ids=["clear", "encrypted"])
async def test_both_signatures_good_is_accepted(
    make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any, encrypt: bool
) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    await ecp(trust_any_sp=False, sign_assertion=True, sign_response=True, encrypt_assertion=encrypt)
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert status == 200, body


@pytest.mark.parametrize("encrypt", [False, True], ids=["clear", "encrypted"])
async def test_tampered_response_signature_is_refused_despite_a_good_assertion_signature(
    make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any, encrypt: bool, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    await ecp(trust_any_sp=False, sign_assertion=True, sign_response=True, encrypt_assertion=encrypt,
              mischief="tampered-response")
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert (status, body["error"]) == (502, "assertion_invalid"), body
    assert sim.state.counters["ecp.mischief.tampered-response"] == 1
    assert "signature_invalid" in caplog.text
