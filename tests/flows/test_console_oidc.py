"""The console and OpenID Connect tenants over real HTTP: the form's oidc fieldset, the tenants list, test login.

The simulator's OpenID Provider gets a client of its own (client_secret_basic, password grant allowed);
a tenant made with the form must then sign a device's user in through it, and a refusal of the
tenant file's rules must land at the field of the oidc key it names.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.idpsim.config import SimConfig
from bridge.idpsim.oidc.settings import ClientAuthMethod, OidcClient
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.state.tenants import get_tenant_record
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.test_console import ConsoleFactory, browser_like, console_bridge, csrf_of, sign_in
from tests.flows.test_console_admin import field_errors, get, input_value, post, textarea

__all__ = ["browser_like", "console_bridge"]

CLIENT_ID = "loginbridge-console-test"
CLIENT_SECRET = "console-test-client-secret-0815"  # the simulator's copy of this test client's secret
KNOWN_SECRETS.add(CLIENT_SECRET)
OSCAR = ("oscar@example.net", "oscar-demo-pass")  # at the simulator: password only


@pytest.fixture
async def sim(sim_config: SimConfig, sim_keys_dir: Path) -> AsyncIterator[RunningSimulator]:
    """The simulator with this file's client registered at its OpenID Provider."""
    client = OidcClient(client_id=CLIENT_ID, auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
                        client_secret=CLIENT_SECRET, redirect_uris=("https://bridge.test/oidc/acme-net/callback",),
                        password_grant=True)
    config = dataclasses.replace(sim_config, oidc=sim_config.oidc.with_client(client))
    async with run_simulator(config, sim_keys_dir) as running:
        yield running


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(CLIENT_SECRET + "\n")
    path.chmod(0o600)
    return path


def oidc_form(sim: RunningSimulator, secret_file: Path, **changes: str) -> dict[str, str]:
    """The new-tenant form for acme-net (domain example.net, OpenID Connect at the simulator), as a browser posts it.

    The WS-Trust fields are left filled in, as a browser sends them after the protocol was switched.
    """
    form = {
        "id": "acme-net", "name": "Acme Net", "domains": "example.net", "idp_whitelist": "127.0.0.1/32",
        "session_ttl_seconds": "", "protocol": "oidc", "signing_certificates": "",
        "wstrust.adfs_url": sim.base_url, "wstrust.endpoint": "", "wstrust.applies_to": "urn:left:over",
        "saml2.metadata_url": "", "saml2.ecp_url": "", "saml2.entity_id": "", "saml2.sp_entity_id": "",
        "oidc.issuer": f"{sim.base_url}/oidc", "oidc.client_id": CLIENT_ID, "oidc.client_auth": "client_secret_basic",
        "oidc.client_secret_env": "", "oidc.client_secret_file": str(secret_file), "oidc.email_claim": "email",
        "oidc.password_grant": "on",
        "yaml": f"oidc:\n  ca_file: {sim.ca_file}\n  signing_algorithms: [RS256]\n",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def oidc_tenant_file(sim: RunningSimulator, secret_file: Path, **oidc: Any) -> dict[str, Any]:
    section = {"issuer": f"{sim.base_url}/oidc", "client_id": CLIENT_ID, "client_auth": "client_secret_basic",
               "client_secret_file": str(secret_file), "email_claim": "email", "password_grant": True,
               "ca_file": str(sim.ca_file), **oidc}
    return {"id": "example-net", "name": "Example Net", "domains": ["example.net"], "protocol": "oidc",
            "idp_whitelist": ["127.0.0.1/32"], "oidc": section}


def selected(page: str, name: str) -> str:
    """The selected option of a select (the field's id, as field_errors names it)."""
    match = re.search(rf'<select id="f-{re.escape(name)}".*?</select>', page, re.S)
    assert match, f"no select {name}"
    chosen = re.findall(r'<option value="([^"]*)" selected>', match.group(0))
    assert len(chosen) == 1, match.group(0)
    return html.unescape(chosen[0])


def checked(page: str, name: str) -> bool:
    match = re.search(rf'<input type="checkbox" id="f-{re.escape(name)}"[^>]*>', page)
    assert match, f"no checkbox {name}"
    return " checked" in match.group(0)


async def test_an_oidc_tenant_from_the_form_signs_a_device_user_in(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession, secret_file: Path) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    page = await get(browser_like, bridge, "/console/tenants/new")
    assert "OpenID Connect" in page and 'name="oidc.issuer"' in page
    assert selected(page, "oidc-client_auth") == "" and selected(page, "oidc-email_claim") == ""
    assert f"{bridge.config.public_url}/oidc/TENANT-ID/callback" in page

    status, page, resp = await post(browser_like, bridge, "/console/tenants/new", oidc_form(bridge.sim, secret_file),
                                    csrf_from="/console/tenants/new")
    assert status == 200 and "Tenant created" in page, field_errors(page)
    assert resp.url.path == "/console/tenants/acme-net/edit"
    record = await get_tenant_record(bridge.store.database, "acme-net")
    assert record is not None
    document = json.loads(record.document)
    assert "wstrust" not in document and "saml2" not in document  # only the chosen protocol's section
    assert document["oidc"] == {"issuer": f"{bridge.sim.base_url}/oidc", "client_id": CLIENT_ID,
                                "client_auth": "client_secret_basic", "client_secret_file": str(secret_file),
                                "email_claim": "email", "password_grant": True, "ca_file": str(bridge.sim.ca_file),
                                "signing_algorithms": ["RS256"]}
    # The edit page shows the fields back, the redirect URI to register, and only the rest as YAML.
    assert input_value(page, "oidc-issuer") == f"{bridge.sim.base_url}/oidc"
    assert selected(page, "oidc-client_auth") == "client_secret_basic" and selected(page, "oidc-email_claim") == "email"
    assert checked(page, "oidc-password_grant")
    assert "issuer" not in textarea(page, "yaml") and "ca_file" in textarea(page, "yaml")
    assert f"{bridge.config.public_url}/oidc/acme-net/callback" in page

    # Live at once: a device of the new tenant signs oscar in with the password grant.
    await bridge.store.add_user("acme-net", email=OSCAR[0], username="oscar")
    device, secret = await bridge.store.add_device("acme-net", name="Net MFP", mode="user-prompt")
    KNOWN_SECRETS.add(secret)
    status, body = await bridge.device_login(*OSCAR, device=(device.device_id, secret))
    assert status == 200, body

    tenants = await get(browser_like, bridge, "/console/tenants")
    row = re.search(r"<strong>acme-net</strong>.*?</tr>", tenants, re.S)
    assert row and "<td>OpenID Connect</td>" in row.group(0) and "keys from its JWK Set" in row.group(0)
    assert f"{bridge.sim.base_url}/oidc" in row.group(0)
    example = re.search(r"<strong>example</strong>.*?</tr>", tenants, re.S)
    assert example and "<td>WS-Trust</td>" in example.group(0)


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"oidc.issuer": "http://127.0.0.1:1/oidc"}, "oidc-issuer", "https"),
    ({"oidc.client_id": ""}, "oidc-client_id", "missing required key"),
    ({"oidc.client_secret_env": "SOME_VARIABLE"}, "oidc-client_secret_env", "exactly one of"),
    ({"oidc.email_claim": "mail"}, "oidc-email_claim", "mail"),
    ({"oidc.client_auth": "private_key_jwt", "oidc.client_secret_file": ""}, "oidc-private_key_file", ""),
    ({"oidc.client_auth": "private_key_jwt"}, "oidc-client_secret_file", "only used with"),
])
async def test_a_bad_oidc_field_is_refused_at_that_field(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession, secret_file: Path,
        change: dict[str, str], field: str, words: str) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    form = oidc_form(bridge.sim, secret_file, **change)
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new", form, csrf_from="/console/tenants/new")
    assert status == 422, page
    errors = field_errors(page)
    if field == "oidc-private_key_file":  # a key the form has no field for: shown at the section (the YAML's key)
        assert list(errors) == ["yaml"] and "private_key_jwt needs private_key_file" in errors["yaml"], errors
    else:
        assert field in errors and words in errors[field], errors
        assert f'aria-describedby="e-f-{field}"' in page
    assert await get_tenant_record(bridge.store.database, "acme-net") is None


async def test_pinned_certificates_are_not_written_for_an_oidc_tenant(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession, secret_file: Path) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    form = oidc_form(bridge.sim, secret_file, signing_certificates="certs/left-over.pem")
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new", form, csrf_from="/console/tenants/new")
    assert status == 200 and "Tenant created" in page, field_errors(page)
    record = await get_tenant_record(bridge.store.database, "acme-net")
    assert record is not None and "signing_certificates" not in json.loads(record.document)["oidc"]


async def test_an_unchecked_password_grant_leaves_the_key_out(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession, secret_file: Path) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    form = oidc_form(bridge.sim, secret_file, **{"oidc.email_claim": ""})
    del form["oidc.password_grant"]  # a browser sends no unchecked box
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new", form, csrf_from="/console/tenants/new")
    assert status == 200, field_errors(page)
    record = await get_tenant_record(bridge.store.database, "acme-net")
    assert record is not None
    section = json.loads(record.document)["oidc"]
    assert "password_grant" not in section and "email_claim" not in section  # the tenant file's defaults
    assert not checked(page, "oidc-password_grant") and selected(page, "oidc-email_claim") == ""


async def test_test_login_of_an_oidc_tenant(console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession,
                                            sim: RunningSimulator, secret_file: Path, tmp_path: Path) -> None:
    bridge = await console_bridge(extra_tenants=(oidc_tenant_file(sim, secret_file),))
    await sign_in(browser_like, bridge)
    page = await get(browser_like, bridge, "/console/test-login")
    KNOWN_SECRETS.add("oscar-typed-this-wrong")
    async with browser_like.post(bridge.url + "/console/test-login", data={
            "csrf": csrf_of(page), "email": OSCAR[0], "password": "oscar-typed-this-wrong"}) as resp:
        wrong = await resp.text()
    assert "invalid_credentials" in wrong and "Wrong email address or password." in wrong
    async with browser_like.post(bridge.url + "/console/test-login", data={
            "csrf": csrf_of(page), "email": OSCAR[0], "password": OSCAR[1]}) as resp:
        good = await resp.text()
    assert ">ok<" in good and "Signed in." in good
    results = [e.result for e in await bridge.store.audit_events(tenant_id="example-net", last=2)]
    assert results == ["invalid_credentials", "ok"]
    tenants = await get(browser_like, bridge, "/console/tenants")
    assert "<td>OpenID Connect</td>" in tenants and "<td>WS-Trust</td>" in tenants


async def test_test_login_without_the_password_grant_says_to_pair(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession, sim: RunningSimulator,
        secret_file: Path) -> None:
    bridge = await console_bridge(extra_tenants=(oidc_tenant_file(sim, secret_file, password_grant=False),))
    await sign_in(browser_like, bridge)
    page = await get(browser_like, bridge, "/console/test-login")
    async with browser_like.post(bridge.url + "/console/test-login", data={
            "csrf": csrf_of(page), "email": OSCAR[0], "password": OSCAR[1]}) as resp:
        answer = html.unescape(await resp.text())
    assert "password_login_unsupported" in answer
    assert "Password sign-in at this device is not available for your company." in answer
    assert "oidc.password_grant is off" in answer and '"Sign in with phone"' in answer
    assert sim.state.counters["oidc.token"] == 0  # no password went to the provider
