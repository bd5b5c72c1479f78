"""User-prompt login for a SAML 2.0 tenant over ECP, against the simulator's pysaml2-based IdP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from saml2.mdstore import MetadataStore

from bridge.idpsim.server import RunningSimulator
from tests.flows.conftest import KNOWN_SECRETS, Bridge, BridgeFactory, saml_tenant_yaml, sim_control, tenant_yaml
from tests.keys import make_key_and_cert

BOB = "bob@example.org"
BOB_PASS = "bob-demo-pass"
ORG_DEVICE = ("demo-mfp-org", "demo-mfp-org-secret")
KNOWN_SECRETS.add("demo-mfp-org-secret")


@pytest.fixture
async def ecp(sim: RunningSimulator) -> Any:
    """Set the simulator's ECP knobs for one test; always starts from its settings."""
    await sim_control(sim, "/_sim/ecp", {"reset": True})

    async def control(**body: Any) -> Any:
        return await sim_control(sim, "/_sim/ecp", body)

    return control


async def saml_bridge(make_bridge: BridgeFactory, sim: RunningSimulator, **saml2: Any) -> Bridge:
    return await make_bridge(tenants=[tenant_yaml(sim), saml_tenant_yaml(sim, saml2=saml2)])


async def register_sp(bridge: Bridge) -> None:
    """What an administrator does: give the IdP the bridge's SP metadata."""
    async with bridge.http.get(bridge.url + "/saml/example-org/metadata") as resp:
        assert resp.status == 200
        metadata = await resp.read()
    await sim_control(bridge.sim, "/_sim/ecp/sp-metadata", None, raw=metadata)


def ecp_calls(bridge: Bridge) -> int:
    return bridge.sim.state.counters["ecp"]


@pytest.mark.parametrize(
    "mode",
    [
        {"sign_assertion": True, "sign_response": False},
        {"sign_assertion": False, "sign_response": True},
        {"sign_assertion": True, "sign_response": True},
    ],
    ids=["signed-assertion", "signed-response", "both-signed"],
)
async def test_bob_logs_in_over_ecp(make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any, mode: dict[str, bool]) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    await ecp(trust_any_sp=False, **mode)
    await register_sp(bridge)
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert status == 200, body
    assert body["user"] == {"email": BOB, "display_name": "Bob Example", "tenant": "example-org"}
    assert ecp_calls(bridge) == 1
    status, session = await bridge.call("GET", "/v1/session", bearer=body["session"]["token"])
    assert (status, session["user"]["email"]) == (200, BOB)


async def test_encrypted_assertion(make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    await ecp(trust_any_sp=False, encrypt_assertion=True, sign_assertion=True)
    await register_sp(bridge)
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert status == 200, body
    assert sim.state.counters["ecp.issued"] == 1


async def test_bad_password(make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    status, body = await bridge.user_prompt(BOB, "not-bobs-password", device=ORG_DEVICE)
    assert (status, body["error"]) == (401, "invalid_credentials")
    await ecp(auth_failure="saml-status")
    status, body = await bridge.user_prompt(BOB, "not-bobs-password", device=ORG_DEVICE)
    assert (status, body["error"]) == (401, "invalid_credentials")


async def test_user_unknown_at_the_idp(make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    await bridge.store.add_user("example-org", email="carol@example.org", username="carol")
    status, body = await bridge.user_prompt("carol@example.org", "carol-pass-1", device=ORG_DEVICE)
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert ecp_calls(bridge) == 1


@pytest.mark.parametrize(
    ("mischief", "code"),
    [
        ("wrong-in-response-to", "assertion_invalid"),
        ("wrong-destination", "assertion_invalid"),
        ("unsigned", "assertion_invalid"),
        ("wrong-key", "assertion_invalid"),
        ("expired", "assertion_invalid"),
        ("wrong-audience", "assertion_invalid"),
        ("wrap", "assertion_invalid"),
    ],
)
async def test_untrustworthy_answers_are_refused(
    make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any, mischief: str, code: str
) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    await ecp(mischief=mischief, mischief_subject="mallory@example.org")
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert (status, body["error"]) == (502, code), body
    assert "session" not in body


async def test_wrong_pinned_certificate(
    make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any, tmp_path: Path
) -> None:
    _, other_pem = make_key_and_cert("not-the-idp-signer")
    (tmp_path / "other.pem").write_bytes(other_pem)
    async with bridge_http_get(sim, "/idp/shibboleth") as metadata:
        meta_file = tmp_path / "idp-metadata.xml"
        meta_file.write_bytes(_replace_certs(metadata, other_pem))
    bridge = await saml_bridge(make_bridge, sim, metadata_url=None, metadata_file=str(meta_file))
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert (status, body["error"]) == (502, "assertion_invalid")


async def test_certificate_rollover_without_restart(
    make_bridge: BridgeFactory, sim: RunningSimulator, ecp: Any, tmp_path: Path
) -> None:
    """The IdP's metadata gains the new certificate; a refresh picks it up, no restart."""
    _, other_pem = make_key_and_cert("old-idp-signer")
    async with bridge_http_get(sim, "/idp/shibboleth") as metadata:
        real = metadata
    meta_file = tmp_path / "idp-metadata.xml"
    meta_file.write_bytes(_replace_certs(real, other_pem))
    bridge = await saml_bridge(
        make_bridge, sim, metadata_url=None, metadata_file=str(meta_file), metadata_refresh_seconds=1
    )
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert (status, body["error"]) == (502, "assertion_invalid")
    meta_file.write_bytes(real)  # the IdP now publishes its current signing certificate
    await asyncio.sleep(1.1)
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert status == 200, body


async def test_tenant_without_ecp_gets_a_clear_refusal(
    make_bridge: BridgeFactory, sim: RunningSimulator, tmp_path: Path
) -> None:
    """Okta/F5/Entra publish no SOAP SingleSignOnService: nothing is sent to the IdP."""
    async with bridge_http_get(sim, "/idp/shibboleth") as metadata:
        meta_file = tmp_path / "okta-like.xml"
        meta_file.write_bytes(_drop_soap_endpoint(metadata))
    bridge = await saml_bridge(make_bridge, sim, metadata_url=None, metadata_file=str(meta_file))
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert (status, body["error"]) == (403, "password_login_unsupported")
    assert body["message"]
    assert "ECP" in body["detail"]
    assert ecp_calls(bridge) == 0


async def test_sp_metadata_is_read_by_pysaml2(make_bridge: BridgeFactory, sim: RunningSimulator, tmp_path: Path) -> None:
    bridge = await saml_bridge(make_bridge, sim)
    async with bridge.http.get(bridge.url + "/saml/example-org/metadata") as resp:
        assert resp.status == 200
        xml = await resp.text()
    path = tmp_path / "sp.xml"
    path.write_text(xml)
    store = MetadataStore(attrc=[], config=None)
    store.load("local", str(path))
    assert "urn:loginbridge:example.org" in store.keys()
    acs = store.assertion_consumer_service("urn:loginbridge:example.org", "urn:oasis:names:tc:SAML:2.0:bindings:PAOS")
    assert [a["location"] for a in acs] == [bridge.config.public_url + "/saml/example-org/acs"]
    async with bridge.http.get(bridge.url + "/saml/example/metadata") as resp:
        assert resp.status == 404  # a WS-Trust tenant has no SP metadata


async def test_one_domain_one_tenant_for_both_protocols(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    from bridge.errors import ConfigError

    clash = saml_tenant_yaml(sim, domains=["example.org", "example.com"])
    with pytest.raises(ConfigError, match="already claimed"):
        await make_bridge(tenants=[tenant_yaml(sim), clash])


# --- helpers -----------------------------------------------------------------

class bridge_http_get:
    def __init__(self, sim: RunningSimulator, path: str) -> None:
        self.sim, self.path = sim, path

    async def __aenter__(self) -> bytes:
        import ssl

        import aiohttp

        context = ssl.create_default_context(cafile=str(self.sim.ca_file))
        async with aiohttp.ClientSession() as http, http.get(self.sim.base_url + self.path, ssl=context) as resp:
            assert resp.status == 200
            return await resp.read()

    async def __aexit__(self, *exc: object) -> None:
        return None


def _replace_certs(metadata: bytes, cert_pem: bytes) -> bytes:
    from lxml import etree

    body = b"".join(line for line in cert_pem.splitlines() if not line.startswith(b"-----"))
    root = etree.fromstring(metadata)
    for node in root.iter("{http://www.w3.org/2000/09/xmldsig#}X509Certificate"):
        node.text = body.decode()
    return etree.tostring(root)


def _drop_soap_endpoint(metadata: bytes) -> bytes:
    from lxml import etree

    root = etree.fromstring(metadata)
    for node in list(root.iter("{urn:oasis:names:tc:SAML:2.0:metadata}SingleSignOnService")):
        if node.get("Binding", "").endswith("bindings:SOAP"):
            node.getparent().remove(node)
    return etree.tostring(root)



async def test_signed_authn_requests_are_advertised(make_bridge: BridgeFactory, sim: RunningSimulator) -> None:
    # The signature itself is checked in tests/bridge/idp/saml/test_ecp.py. pysaml2's IdP cannot be the judge:
    # it re-serialises the request before verifying it (ns0 prefixes), which breaks any signature.
    bridge = await saml_bridge(make_bridge, sim, sign_requests=True)
    async with bridge.http.get(bridge.url + "/saml/example-org/metadata") as resp:
        assert 'AuthnRequestsSigned="true"' in await resp.text()


async def test_expired_idp_metadata_is_not_relied_on(make_bridge: BridgeFactory, sim: RunningSimulator, tmp_path: Path) -> None:
    from lxml import etree

    async with bridge_http_get(sim, "/idp/shibboleth") as metadata:
        root = etree.fromstring(metadata)
    root.set("validUntil", "2020-01-01T00:00:00Z")
    meta_file = tmp_path / "expired.xml"
    meta_file.write_bytes(etree.tostring(root))
    bridge = await saml_bridge(make_bridge, sim, metadata_url=None, metadata_file=str(meta_file))
    status, body = await bridge.user_prompt(BOB, BOB_PASS, device=ORG_DEVICE)
    assert (status, body["error"]) == (502, "idp_protocol_error")
    assert ecp_calls(bridge) == 0  # no password sent on the strength of expired metadata
