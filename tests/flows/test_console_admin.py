"""The console's pages for administrators over real HTTP: tenants, users, devices, API tokens.

The bridge, the IdP simulator and the device API are real (loopback); a change made on a page is
checked where it matters: a device login, the session API, the admin API, the store and the audit trail.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
from typing import Any

import aiohttp
import pytest

from bridge.idpsim.server import RunningSimulator
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.tenants import get_tenant_record
from bridge.state.tokens import create_token
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.test_console import (
    ConsoleBridge,
    ConsoleFactory,
    browser_like,
    console_bridge,
    csrf_of,
    sign_in,
)

__all__ = ["browser_like", "console_bridge"]

CAROL = ("carol@acme.test", "carol-demo-pass")  # at the simulator; in no tenant until one is made here
_FIELD_ERROR = re.compile(r'<p class="field-error" id="e-f-([\w.-]+)" role="alert">(.*?)</p>', re.S)
_SECRET = re.compile(r'<pre class="secret" id="secret">([^<]+)</pre>')


def acme_form(sim: RunningSimulator, **changes: str) -> dict[str, str]:
    """The new-tenant form for acme (domain acme.test, WS-Trust at the simulator), as a browser posts it."""
    form = {
        "id": "acme", "name": "Acme", "domains": "acme.test", "idp_whitelist": "127.0.0.1/32",
        "session_ttl_seconds": "", "protocol": "wstrust", "signing_certificates": "",
        "wstrust.adfs_url": sim.base_url, "wstrust.endpoint": "", "wstrust.applies_to": "urn:loginbridge:acme.test",
        "wstrust.federation_metadata": "on",
        "saml2.metadata_url": "", "saml2.ecp_url": "", "saml2.entity_id": "", "saml2.sp_entity_id": "",
        "yaml": f"wstrust:\n  ca_file: {sim.ca_file}\n  signature_algorithms: [rsa-sha256]\n",
    }
    form.update(changes)
    return form


def field_errors(page: str) -> dict[str, str]:
    """The error shown under each field (by the field's name: domains, wstrust-adfs_url, yaml ...)."""
    return {name: html.unescape(text) for name, text in _FIELD_ERROR.findall(page)}


def textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea id="f-{re.escape(name)}"[^>]*>(.*?)</textarea>', page, re.S)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1))


def input_value(page: str, name: str) -> str:
    match = re.search(rf'<input type="\w+" id="f-{re.escape(name)}" name="[^"]+" value="([^"]*)"', page)
    assert match, f"no input {name}"
    return html.unescape(match.group(1))


def shown_secret(page: str) -> str:
    match = _SECRET.search(page)
    assert match, "no secret on the page"
    secret = html.unescape(match.group(1)).strip()
    KNOWN_SECRETS.add(secret)  # never in a log record
    return secret


async def get(http: aiohttp.ClientSession, bridge: ConsoleBridge, path: str, **params: str) -> str:
    async with http.get(bridge.url + path, params=params) as resp:
        assert resp.status == 200, (path, resp.status)
        assert resp.headers["Cache-Control"] == "no-store"
        return await resp.text()


async def post(http: aiohttp.ClientSession, bridge: ConsoleBridge, path: str, form: dict[str, str], *,
               csrf_from: str) -> tuple[int, str, aiohttp.ClientResponse]:
    """POST a form with the CSRF token of the page it is on (redirects followed, as a browser does)."""
    async with http.post(bridge.url + path, data={"csrf": csrf_of(await get(http, bridge, csrf_from)), **form}) as resp:
        return resp.status, await resp.text(), resp


async def run_curl(command: str) -> tuple[int, dict[str, Any]]:
    """Send the request a curl command line shown on a page describes (its -u, -H, -d, -X and URL)."""
    words = shlex.split(command)
    assert words[:2] == ["curl", "-s"], command
    method, headers, data, url = "GET", {}, None, words[-1]
    options = iter(words[2:-1])
    for option in options:
        value = next(options)
        if option == "-u":
            user, _, password = value.partition(":")
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif option == "-H":
            name, _, header = value.partition(": ")
            headers[name] = header
        elif option == "-d":
            method, data = "POST", value
        elif option == "-X":
            method = value
        else:
            raise AssertionError(f"unexpected curl option {option}")
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def changes(bridge: ConsoleBridge) -> list[AuditEvent]:
    return [e for e in await bridge.store.audit_events() if e.kind is AuditKind.ADMIN_CHANGE]


async def session_status(bridge: ConsoleBridge, token: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(bridge.url + "/v1/session",
                                                         headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


# -- tenants --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"idp_whitelist": "127.0.0.1/32\n10.1.2.3/8"}, "idp_whitelist", "has host bits set; did you mean 10.0.0.0/8?"),
    ({"wstrust.adfs_url": "http://127.0.0.1:1"}, "wstrust-adfs_url", "must be an https:// URL"),
    ({"domains": "acme.test\nnot a domain"}, "domains", "not a valid DNS domain name"),
    ({"id": "Acme!"}, "id", "lower-case letters"),
    ({"name": ""}, "name", "missing required key"),
    ({"session_ttl_seconds": "ten"}, "session_ttl_seconds", "expected a whole number"),
    ({"wstrust.adfs_url": "", "wstrust.endpoint": ""}, "wstrust", "give adfs_url"),
    ({"yaml": "throttle:\n  user_failures: 0\n"}, "yaml", "must be between 1 and 1000"),
    ({"yaml": "wstrust: [oops\n"}, "yaml", "YAML syntax error (line"),
    ({"yaml": "wstrus:\n  ca_file: x\n"}, "yaml", "did you mean wstrust"),
    ({"yaml": "name: Acme from the YAML\nthrottle: {user_failures: -1}\n", "name": ""}, "yaml", "between 1 and"),
])
async def test_a_bad_field_is_refused_at_that_field_and_nothing_is_stored(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession, change: dict[str, str], field: str,
        words: str) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new", acme_form(bridge.sim, **change),
                                 csrf_from="/console/tenants/new")
    assert status == 422, page
    errors = field_errors(page)
    assert field in errors and words in errors[field], errors
    assert "Not saved: " in page
    # The input says which message describes it, and what was typed is still there.
    if field not in ("wstrust", "yaml"):
        assert f'aria-describedby="e-f-{field}"' in page
    assert textarea(page, "yaml") == acme_form(bridge.sim, **change)["yaml"]
    assert await get_tenant_record(bridge.store.database, "acme") is None
    assert await changes(bridge) == []


async def test_every_mistake_found_is_shown_at_its_own_field(console_bridge: ConsoleFactory,
                                                              browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    form = acme_form(bridge.sim, idp_whitelist="10.1.2.3/8", **{"wstrust.adfs_url": "http://127.0.0.1:1"})
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new", form, csrf_from="/console/tenants/new")
    assert status == 422
    errors = field_errors(page)
    # The tenant file's check names the first mistake, or (when it goes on past one) all of them.
    assert "has host bits set" in errors["idp_whitelist"]
    assert set(errors) <= {"idp_whitelist", "wstrust-adfs_url"}
    if "wstrust-adfs_url" in errors:
        assert "must be an https:// URL" in errors["wstrust-adfs_url"]
        assert "Not saved: 2 problems, each shown at its field below." in page


async def test_a_saml_tenant_from_the_form_uses_only_its_own_section(console_bridge: ConsoleFactory,
                                                                     browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    sim = bridge.sim
    form = acme_form(sim, id="example-org", name="Example Org", domains="example.org", protocol="saml2",
                     yaml=f"saml2:\n  ca_file: {sim.ca_file}\n  signature_algorithms: [rsa-sha256]\n",
                     **{"saml2.metadata_url": f"{sim.base_url}/idp/shibboleth",
                        "saml2.sp_entity_id": "urn:loginbridge:example.org"})  # the WS-Trust fields stay filled in
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new", form, csrf_from="/console/tenants/new")
    assert status == 200 and "Tenant created" in page, field_errors(page)
    record = await get_tenant_record(bridge.store.database, "example-org")
    assert record is not None
    document = json.loads(record.document)
    assert "wstrust" not in document and document["saml2"]["sp_entity_id"] == "urn:loginbridge:example.org"
    assert "federation_metadata" not in document["saml2"]
    await bridge.store.add_user("example-org", email="bob@example.org", username="bob")
    device, secret = await bridge.store.add_device("example-org", name="Org MFP", mode="user-prompt")
    KNOWN_SECRETS.add(secret)
    status, body = await bridge.device_login("bob@example.org", "bob-demo-pass", (device.device_id, secret))
    assert status == 200, body


async def test_a_good_tenant_is_live_at_once_and_audited(console_bridge: ConsoleFactory,
                                                         browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    status, page, resp = await post(browser_like, bridge, "/console/tenants/new", acme_form(bridge.sim),
                                    csrf_from="/console/tenants/new")
    assert status == 200 and resp.url.path == "/console/tenants/acme/edit", page
    assert "Tenant created: it is live now" in page and field_errors(page) == {}
    record = await get_tenant_record(bridge.store.database, "acme")
    assert record is not None and record.origin == "console:tech"
    assert '"id": "acme"' in record.document  # stored as the JSON document, like the admin API's
    tenants = await get(browser_like, bridge, "/console/tenants")
    assert "acme.test" in tenants and 'href="/console/tenants/acme/edit"' in tenants

    # Live at once: a device of the new tenant signs its user in at the simulator.
    await bridge.store.add_user("acme", email=CAROL[0], username="carol")
    device, secret = await bridge.store.add_device("acme", name="Acme MFP", mode="user-prompt")
    KNOWN_SECRETS.add(secret)
    status, body = await bridge.device_login(*CAROL, device=(device.device_id, secret))
    assert status == 200, body

    [event] = await changes(bridge)
    assert (event.result, event.tenant_id, event.actor, event.mode) == ("tenant_created", "acme", "tech", "console")


async def test_editing_keeps_the_keys_the_form_does_not_show(console_bridge: ConsoleFactory,
                                                             browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    advanced = (f"device_networks: [127.0.0.0/8]\nthrottle:\n  user_failures: 3\nwstrust:\n  ca_file: {bridge.sim.ca_file}\n"
                "  signature_algorithms: [rsa-sha256]\n  clock_skew_seconds: 120\n")
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new",
                                 acme_form(bridge.sim, yaml=advanced, session_ttl_seconds="3600"),
                                 csrf_from="/console/tenants/new")
    assert status == 200, page

    page = await get(browser_like, bridge, "/console/tenants/acme/edit")
    shown = textarea(page, "yaml")
    assert "user_failures: 3" in shown and "clock_skew_seconds: 120" in shown and "127.0.0.0/8" in shown
    assert "adfs_url" not in shown and "name:" not in shown  # those are the form's fields
    assert input_value(page, "name") == "Acme" and input_value(page, "session_ttl_seconds") == "3600"
    assert textarea(page, "domains") == "acme.test"
    assert 'name="id"' not in page  # the id is fixed
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', page)
    assert digest
    form = acme_form(bridge.sim, name="Acme Two", domains="acme.test\nacme.example", yaml=shown,
                     session_ttl_seconds=input_value(page, "session_ttl_seconds"), digest=digest.group(1))
    del form["id"]
    async with browser_like.post(bridge.url + "/console/tenants/acme/edit",
                                 data={"csrf": csrf_of(page), **form}) as resp:
        saved = await resp.text()
        assert resp.status == 200 and "Saved: the new settings are live now." in saved, saved
    record = await get_tenant_record(bridge.store.database, "acme")
    assert record is not None
    document: dict[str, Any] = json.loads(record.document)
    assert document["name"] == "Acme Two" and document["domains"] == ["acme.test", "acme.example"]
    assert document["throttle"] == {"user_failures": 3} and document["device_networks"] == ["127.0.0.0/8"]
    assert document["wstrust"]["clock_skew_seconds"] == 120 and document["session_ttl_seconds"] == 3600
    assert document["id"] == "acme"

    # The same form again, opened before that change: refused, not silently overwritten.
    async with browser_like.post(bridge.url + "/console/tenants/acme/edit",
                                 data={"csrf": csrf_of(page), **form, "name": "Acme Stale"}) as resp:
        stale = await resp.text()
        assert resp.status == 409 and "changed by console user tech" in stale
    record = await get_tenant_record(bridge.store.database, "acme")
    assert record is not None and json.loads(record.document)["name"] == "Acme Two"
    results = [(e.result, e.tenant_id, e.actor) for e in await changes(bridge)]
    assert results == [("tenant_created", "acme", "tech"), ("tenant_replaced", "acme", "tech")]


async def test_a_file_tenant_is_editable_with_a_note_that_the_file_wins(console_bridge: ConsoleFactory,
                                                                         browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    page = await get(browser_like, bridge, "/console/tenants/example/edit")
    assert "This tenant is declared by the file" in page and "example.yaml" in page and "the file wins" in page
    assert input_value(page, "wstrust-adfs_url") == bridge.sim.base_url
    assert "ca_file:" in textarea(page, "yaml")
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', page)
    assert digest
    form = {**acme_form(bridge.sim), "name": "Example Renamed", "domains": "example.com",
            "wstrust.applies_to": "urn:loginbridge:example.com", "yaml": textarea(page, "yaml"),
            "digest": digest.group(1)}
    async with browser_like.post(bridge.url + "/console/tenants/example/edit",
                                 data={"csrf": csrf_of(page), **form}) as resp:
        assert resp.status == 200 and "Saved" in await resp.text()
    assert "Example Renamed" in await get(browser_like, bridge, "/console/tenants")
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200, body
    record = await get_tenant_record(bridge.store.database, "example")
    assert record is not None and record.origin == "console:tech"


async def test_a_domain_claimed_by_another_tenant_is_refused_at_the_domains_field(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new",
                                 acme_form(bridge.sim, domains="acme.test\nexample.com"),
                                 csrf_from="/console/tenants/new")
    assert status == 409
    assert field_errors(page) == {"domains": "domain example.com is already claimed by tenant example"}
    status, page, _ = await post(browser_like, bridge, "/console/tenants/new", acme_form(bridge.sim, id="example"),
                                 csrf_from="/console/tenants/new")
    assert status == 409 and field_errors(page) == {"id": "tenant example already exists"}
    assert await get_tenant_record(bridge.store.database, "acme") is None
    assert await changes(bridge) == []


# -- users ----------------------------------------------------------------------------------------------


async def test_users_search_page_disable_and_enable(console_bridge: ConsoleFactory,
                                                    browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    for n in range(60):
        await bridge.store.add_user("example", email=f"user{n:02d}@example.com", username=f"user{n:02d}",
                                    display_name=f"Printer User {n}")
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200
    token = body["session"]["token"]
    await sign_in(browser_like, bridge)

    page = await get(browser_like, bridge, "/console/users", tenant="example")
    assert "1–50 of" in page and 'rel="next"' in page and page.count("<tr") == 51  # a header and fifty users
    more = re.search(r'href="(/console/users\?[^"]+)" rel="next"', page)
    assert more
    older = await get(browser_like, bridge, html.unescape(more.group(1)))
    assert "51–" in older and 'rel="prev"' in older
    page = await get(browser_like, bridge, "/console/users", tenant="example", q="printer user 1")
    assert "user10@example.com" in page and "user01@example.com" in page and "user02@example.com" not in page
    assert "alice@" not in page and "1–11 of 11 matching" in page
    page = await get(browser_like, bridge, "/console/users", tenant="example", q="ALI")
    assert "alice@example.com" in page and "user01" not in page and "1–1 of 1 matching" in page

    async with browser_like.post(bridge.url + "/console/users/disable", data={
            "csrf": csrf_of(page), "tenant": "example", "email": "alice@example.com", "q": "ALI", "page": "1"}) as resp:
        done = await resp.text()
        assert resp.status == 200
    assert "alice@example.com is disabled: 1 session ended at once." in done
    assert '<span class="badge fail">disabled</span>' in done
    assert await session_status(bridge, token) == 401
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert (status, body["error"]) == (403, "user_disabled")

    async with browser_like.post(bridge.url + "/console/users/enable", data={
            "csrf": csrf_of(done), "tenant": "example", "email": "alice@example.com"}) as resp:
        assert resp.status == 200 and "alice@example.com is enabled" in await resp.text()
    status, _ = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200
    async with browser_like.post(bridge.url + "/console/users/disable", data={
            "csrf": csrf_of(done), "tenant": "example", "email": "nobody@example.com"}) as resp:
        assert resp.status == 404

    results = [(e.result, e.tenant_id, e.email, e.actor, e.mode) for e in await changes(bridge)]
    assert results == [("user_disabled", "example", "alice@example.com", "tech", "console"),
                       ("user_enabled", "example", "alice@example.com", "tech", "console")]


# -- devices --------------------------------------------------------------------------------------------


async def _add_device(http: aiohttp.ClientSession, bridge: ConsoleBridge, **form: str) -> tuple[int, str, str]:
    async with http.post(bridge.url + "/console/devices/new", data={
            "csrf": csrf_of(await get(http, bridge, "/console/devices/new")), **form}) as resp:
        return resp.status, await resp.text(), resp.headers.get("Cache-Control", "")


async def test_add_a_device_shows_its_secret_once_and_the_secret_works(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    status, page, _ = await _add_device(browser_like, bridge, tenant="example", name="Lobby", mode="shared-account",
                                        shared_user="", networks="10.1.2.3/8")
    assert status == 422
    assert 'id="e-shared_user"' in page and "needs the email of the tenant user" in page
    assert 'id="e-networks"' in page and "did you mean 10.0.0.0/8?" in page

    status, page, cache = await _add_device(browser_like, bridge, tenant="example", name="2nd floor MFP",
                                            mode="user-prompt", shared_user="", networks="127.0.0.0/8\n",
                                            device_id="floor2-mfp")
    assert status == 200 and cache == "no-store"
    secret = shown_secret(page)
    assert "Device added: floor2-mfp" in page and "shown once" in page
    commands = [html.unescape(c) for c in re.findall(r'<pre class="command">(.*?)</pre>', page, re.S)]
    assert commands[0].startswith(f"curl -s -u floor2-mfp:{secret} -H 'Content-Type: application/json' -d ")
    assert commands[0].endswith(f"{bridge.url}/v1/mfp/user-prompt")  # public_url unset: where the page was read
    # The command as shown, with alice's address and password, signs her in through the device API.
    status, body = await run_curl(commands[0].replace("someone@example.com", "alice@example.com")
                                  .replace("THEIR-PASSWORD", "alice-demo-pass"))
    assert status == 200, body
    KNOWN_SECRETS.add(body["session"]["token"])
    assert commands[1] == f"curl -s -X DELETE -H 'Authorization: Bearer TOKEN-FROM-THE-ANSWER' {bridge.url}/v1/session"
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass", ("floor2-mfp", secret))
    assert status == 200, body

    devices = await get(browser_like, bridge, "/console/devices")
    assert "floor2-mfp" in devices and "2nd floor MFP" in devices and secret not in devices
    assert 'action="/console/devices/floor2-mfp/rotate"' in devices
    status, page, _ = await _add_device(browser_like, bridge, tenant="example", name="Again", mode="user-prompt",
                                        device_id="floor2-mfp")
    assert status == 422 and 'id="e-device_id"' in page and "already exists" in page
    [event] = await changes(bridge)
    assert (event.result, event.device_id, event.tenant_id, event.actor) == ("device_created", "floor2-mfp",
                                                                             "example", "tech")


async def test_a_shared_account_device_gets_its_own_command(console_bridge: ConsoleFactory,
                                                            browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    status, page, _ = await _add_device(browser_like, bridge, tenant="example", name="Lobby 2", mode="shared-account",
                                        shared_user="frontdesk@example.com")
    assert status == 200
    secret = shown_secret(page)
    device_id = re.search(r"Device added: (dev-[a-z0-9]+)", page)
    assert device_id
    command = f"curl -s -u {device_id.group(1)}:{secret} -X POST {bridge.url}/v1/mfp/shared-account"
    assert f'<pre class="command">{command}</pre>' in page
    status, body = await run_curl(command)
    assert status == 200 and body["session"]["token"], body
    KNOWN_SECRETS.add(body["session"]["token"])


async def test_rotating_makes_the_old_secret_fail_and_the_new_one_work(console_bridge: ConsoleFactory,
                                                                       browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    status, page, _ = await _add_device(browser_like, bridge, tenant="example", name="Rotating", mode="user-prompt",
                                        device_id="rot-mfp")
    old = shown_secret(page)
    async with browser_like.post(bridge.url + "/console/devices/rot-mfp/rotate",
                                 data={"csrf": csrf_of(await get(browser_like, bridge, "/console/devices"))}) as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        page = await resp.text()
    new = shown_secret(page)
    assert new != old and "New secret for device rot-mfp" in page and old not in page
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass", ("rot-mfp", old))
    assert (status, body["error"]) == (401, "device_unauthorized")
    status, body = await bridge.device_login("alice@example.com", "alice-demo-pass", ("rot-mfp", new))
    assert status == 200, body
    async with browser_like.post(bridge.url + "/console/devices/nope-mfp/rotate",
                                 data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 404
    results = [(e.result, e.device_id, e.actor) for e in await changes(bridge)]
    assert results == [("device_created", "rot-mfp", "tech"), ("device_secret_rotated", "rot-mfp", "tech")]


# -- API tokens -----------------------------------------------------------------------------------------


async def _admin_status(bridge: ConsoleBridge, token: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(bridge.url + "/admin/v1/tenants",
                                                         headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def test_tokens_listed_revoked_and_made(console_bridge: ConsoleFactory,
                                              browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    ops, ops_plain = await create_token(bridge.store.database, kind="admin", name="ops", tenant_id=None)
    _, scim_plain = await create_token(bridge.store.database, kind="scim", name="okta-scim", tenant_id="example")
    KNOWN_SECRETS.update({ops_plain, scim_plain})
    assert await _admin_status(bridge, ops_plain) == 200
    await sign_in(browser_like, bridge)

    page = await get(browser_like, bridge, "/console/tokens")
    assert "ops" in page and "okta-scim" in page and "every tenant" in page and "2 live · 0 revoked" in page
    assert ops_plain not in page and scim_plain not in page
    async with browser_like.post(bridge.url + f"/console/tokens/{ops.id}/revoke",
                                 data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 200
        done = await resp.text()
    assert "The admin API token ops is revoked" in done and "1 live · 1 revoked" in done
    assert await _admin_status(bridge, ops_plain) == 401
    async with browser_like.post(bridge.url + f"/console/tokens/{ops.id}/revoke",
                                 data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 200 and "was already revoked" in await resp.text()  # and not audited again
    async with browser_like.post(bridge.url + "/console/tokens/999/revoke", data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 404

    async with browser_like.post(bridge.url + "/console/tokens/new", data={
            "csrf": csrf_of(done), "kind": "scim", "name": "no tenant", "tenant": ""}) as resp:
        assert resp.status == 422 and "A SCIM token belongs to one tenant" in await resp.text()
    async with browser_like.post(bridge.url + "/console/tokens/new", data={
            "csrf": csrf_of(done), "kind": "admin", "name": "console-made", "tenant": ""}) as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        made = await resp.text()
    plain = shown_secret(made)
    assert plain.startswith("lbadmin_")
    [command] = [html.unescape(c) for c in re.findall(r'<pre class="command">(.*?)</pre>', made, re.S)]
    assert command == f"curl -s -H 'Authorization: Bearer {plain}' {bridge.url}/admin/v1/tenants"
    status, answer = await run_curl(command)
    assert status == 200 and {t["id"] for t in answer["tenants"]} == {"example"}
    assert plain not in await get(browser_like, bridge, "/console/tokens")

    results = [(e.result, e.tenant_id, e.actor, e.reason) for e in await changes(bridge)]
    assert results[0] == ("token_revoked", None, "tech", f"admin token ops (id {ops.id})")
    assert results[1][:3] == ("token_created", None, "tech") and "console-made" in (results[1][3] or "")


# -- every page needs a session, every POST the CSRF token ------------------------------------------------


async def test_pages_need_a_session_and_posts_the_csrf_token(console_bridge: ConsoleFactory,
                                                             browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    ops, ops_plain = await create_token(bridge.store.database, kind="admin", name="ops", tenant_id=None)
    KNOWN_SECRETS.add(ops_plain)
    for path in ("/console/tenants/new", "/console/tenants/example/edit", "/console/users", "/console/devices/new",
                 "/console/tokens", "/console/badge-bindings"):
        async with browser_like.get(bridge.url + path, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/console/login", path
    posts: list[tuple[str, dict[str, str]]] = [
        ("/console/tenants/new", acme_form(bridge.sim)),
        ("/console/tenants/example/edit", {**acme_form(bridge.sim), "name": "Forged"}),
        ("/console/users/disable", {"tenant": "example", "email": "alice@example.com"}),
        ("/console/devices/new", {"tenant": "example", "name": "Forged", "mode": "user-prompt"}),
        ("/console/devices/demo-mfp/rotate", {}),
        ("/console/devices/demo-mfp/location", {"location": "Forged"}),
        ("/console/badge-bindings/1/revoke", {}),
        (f"/console/tokens/{ops.id}/revoke", {}),
        ("/console/tokens/new", {"kind": "admin", "name": "forged", "tenant": ""}),
    ]
    for path, form in posts:
        async with browser_like.post(bridge.url + path, data=form, allow_redirects=False) as resp:
            assert resp.status == 303, path  # no session: to the sign-in page
    await sign_in(browser_like, bridge)
    for path, form in posts:
        for token in (None, "forged"):
            data = form if token is None else {**form, "csrf": token}
            async with browser_like.post(bridge.url + path, data=data, allow_redirects=False) as resp:
                assert resp.status == 403, (path, token)
    assert await get_tenant_record(bridge.store.database, "acme") is None
    alice = await bridge.store.get_user("example", "alice@example.com")
    assert alice is not None and alice.enabled
    assert await _admin_status(bridge, ops_plain) == 200
    status, _ = await bridge.device_login("alice@example.com", "alice-demo-pass")
    assert status == 200  # demo-mfp's secret was not rotated
    demo_mfp = await bridge.store.get_device("demo-mfp")
    assert demo_mfp is not None and demo_mfp.location == "2nd floor print room"  # not moved
    assert await changes(bridge) == []
