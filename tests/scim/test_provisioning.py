"""SCIM provisioning end to end: a real bridge on loopback, its device API, and the SCIM endpoint."""

from __future__ import annotations

from typing import Any

from bridge.state.audit import AuditKind
from bridge.state.tokens import list_tokens, revoke_token
from tests.scim.conftest import DANA, DANA_PASS, SCIM, ScimBridge

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def is_error(body: Any, status: int, scim_type: str | None = None) -> bool:
    return (body["schemas"] == [ERROR] and body["status"] == str(status)
            and (scim_type is None or body.get("scimType") == scim_type))


async def test_acceptance_provision_login_deactivate(scim: ScimBridge) -> None:
    """Provision over SCIM, a device signs the user in, active:false (Entra's form) ends it at once."""
    bridge = scim.bridge
    status, body = await bridge.user_prompt(DANA, DANA_PASS)
    assert body["error"] == "user_not_provisioned"  # SSO never creates users

    user = await scim.create_user("dana@example.com", name={"givenName": "Dana", "familyName": "Example"},
                                  emails=[{"value": DANA, "type": "work", "primary": True}], externalId="e-42")
    assert user.get("active") is not False and user["id"] and user["meta"]["resourceType"] == "User"
    account = await bridge.store.get_user("example", DANA)
    assert account is not None and account.enabled and account.display_name == "Dana Example"
    assert not account.has_password

    status, body = await bridge.user_prompt(DANA, DANA_PASS)
    assert status == 200, body
    token = body["session"]["token"]
    assert (await bridge.call("GET", "/v1/session", bearer=token))[0] == 200

    answer = await scim.patch(user["id"], {"op": "Replace", "path": "active", "value": "False"})
    assert answer.status == 200, answer.body
    assert answer.body["active"] is False
    status, body = await bridge.call("GET", "/v1/session", bearer=token)
    assert status == 401, body
    status, body = await bridge.user_prompt(DANA, DANA_PASS)
    assert (status, body["error"]) == (403, "user_disabled"), body

    events = [e for e in await bridge.store.audit_events(tenant_id="example") if e.kind is AuditKind.PROVISIONING]
    assert [(e.result, e.email, e.actor, e.mode) for e in events] == [
        ("user_created", DANA, "entra-prod", "scim"), ("user_deactivated", DANA, "entra-prod", "scim")]
    assert all(e.to_json()["actor"] == "entra-prod" for e in events)

    # Okta's form brings her back.
    answer = await scim.patch(user["id"], {"op": "replace", "value": {"active": True}})
    assert (answer.status, answer.body["active"]) == (200, True)
    assert (await bridge.user_prompt(DANA, DANA_PASS))[0] == 200


async def test_discovery_content_type_and_auth(scim: ScimBridge) -> None:
    answer = await scim.call("GET", "/ServiceProviderConfig", token=None)  # RFC 7643 §5: no token needed
    assert answer.status == 200 and answer.headers["Content-Type"].startswith(SCIM)
    assert answer.body["patch"]["supported"] is True and answer.body["filter"]["supported"] is True
    names = {r["name"] for r in (await scim.call("GET", "/ResourceTypes")).body["Resources"]}
    assert names == {"User", "Group"}
    schemas = {s["id"] for s in (await scim.call("GET", "/Schemas")).body["Resources"]}
    assert {USER, ENTERPRISE, "urn:ietf:params:scim:schemas:core:2.0:Group"} <= schemas

    for token in (None, "lbscim_not-a-token", "something else", scim.other_token):
        answer = await scim.call("GET", "/Users", token=token)
        assert answer.status == 401, (token, answer.body)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.headers["Content-Type"].startswith(SCIM) and is_error(answer.body, 401)
    # The other tenant's token works on its own tenant only.
    answer = await scim.call("GET", "/Users", token=scim.other_token, tenant="example-org")
    assert answer.status == 200
    assert {u["userName"] for u in answer.body["Resources"]} == {"bob", "erin"}
    assert (await scim.call("GET", "/Users", token=scim.other_token, tenant="nope")).status == 401
    assert is_error((await scim.call("GET", "/Nope")).body, 404)


async def test_tenant_isolation(scim: ScimBridge) -> None:
    user = await scim.create_user("iso@example.com")
    for method in ("GET", "DELETE"):
        answer = await scim.call(method, f"/Users/{user['id']}", token=scim.other_token, tenant="example-org")
        assert answer.status == 404 and is_error(answer.body, 404), answer.body
    answer = await scim.call("PATCH", f"/Users/{user['id']}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": False}]}, token=scim.other_token,
        tenant="example-org")
    assert answer.status == 404
    account = await scim.bridge.store.get_user("example", "iso@example.com")
    assert account is not None and account.enabled
    # A user in another tenant's domain cannot be provisioned here.
    answer = await scim.call("POST", "/Users", {"schemas": [USER], "userName": "x@example.org"})
    assert answer.status == 400 and is_error(answer.body, 400, "invalidValue")


async def test_email_rule(scim: ScimBridge) -> None:
    async def post(body: dict[str, Any]) -> Any:
        return await scim.call("POST", "/Users", {"schemas": [USER], **body})

    for body in ({"userName": "jdoe"}, {"userName": "jdoe", "emails": [{"value": "j@elsewhere.com", "primary": True}]},
                 {"userName": "jdoe@elsewhere.com"}):
        answer = await post(body)
        assert answer.status == 400 and is_error(answer.body, 400, "invalidValue"), answer.body
        assert "example.com" in answer.body["detail"]
    # Entra ID: userName is the UPN; the primary email is the address devices use.
    answer = await post({"userName": "JDoe@corp.local", "emails": [
        {"value": "other@example.com", "type": "home"}, {"value": "John.Doe@Example.com", "type": "work", "primary": True}]})
    assert answer.status == 201, answer.body
    account = await scim.bridge.store.get_user("example", "john.doe@example.com")
    assert account is not None and account.username == "JDoe@corp.local"
    # Same address again: 409 uniqueness; same user name (another case): 409 too.
    answer = await post({"userName": "john.doe@example.com"})
    assert answer.status == 409 and is_error(answer.body, 409, "uniqueness")
    answer = await post({"userName": "jdoe@CORP.local", "emails": [{"value": "jd2@example.com", "primary": True}]})
    assert answer.status == 409 and is_error(answer.body, 409, "uniqueness")
    # A password is accepted but never stored (SSO accounts sign in at their IdP) nor returned.
    answer = await post({"userName": "pw@example.com", "password": "S3cret-never-stored"})
    assert answer.status == 201 and "password" not in answer.body
    account = await scim.bridge.store.get_user("example", "pw@example.com")
    assert account is not None and not account.has_password
    row = await scim.bridge.store.database.fetchone("SELECT resource FROM scim_users WHERE email_lc = ?",
                                                    ("pw@example.com",))
    assert row is not None and "S3cret" not in str(row[0])


async def test_filters_and_paging(scim: ScimBridge) -> None:
    for n in range(5):
        await scim.create_user(f"page{n}@example.com", externalId=f"ext-{n}",
                               emails=[{"value": f"page{n}@example.com", "primary": True, "type": "work"},
                                       {"value": f"alt{n}@example.net", "type": "home"}])

    async def find(expression: str, **params: str) -> Any:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        from urllib.parse import quote
        answer = await scim.call("GET", f"/Users?filter={quote(expression)}" + (f"&{query}" if query else ""))
        assert answer.status == 200, (expression, answer.body)
        return answer.body

    assert [u["userName"] for u in (await find('userName eq "PAGE1@example.com"'))["Resources"]] == ["page1@example.com"]
    assert (await find('emails[value eq "alt2@example.net"]'))["Resources"][0]["userName"] == "page2@example.com"
    assert (await find('emails.value eq "page3@example.com"'))["totalResults"] == 1
    assert (await find('externalId eq "ext-4"'))["Resources"][0]["userName"] == "page4@example.com"
    one = (await find('userName eq "page0@example.com"'))["Resources"][0]
    assert (await find(f'id eq "{one["id"]}"'))["Resources"][0]["userName"] == "page0@example.com"
    assert (await find('externalId eq "ext-1" and userName eq "page1@example.com"'))["totalResults"] == 1
    assert (await find('externalId eq "ext-1" and userName eq "page2@example.com"'))["totalResults"] == 0
    assert (await find('userName sw "page"'))["totalResults"] == 5
    # The demo's CSV accounts are there too (ids given on first listing): an IdP matching on userName finds them.
    assert (await find('userName eq "alice"'))["Resources"][0]["emails"][0]["value"] == "alice@example.com"

    everyone = await scim.call("GET", "/Users")
    total = everyone.body["totalResults"]
    assert total == len(everyone.body["Resources"]) == 10  # 5 from the demo's CSV
    seen: list[str] = []
    for start in range(1, total + 1, 3):
        page = (await scim.call("GET", f"/Users?startIndex={start}&count=3")).body
        assert page["totalResults"] == total and page["startIndex"] == start
        assert page["itemsPerPage"] == len(page["Resources"]) <= 3
        seen += [u["id"] for u in page["Resources"]]
    assert sorted(seen) == sorted(u["id"] for u in everyone.body["Resources"])
    filtered = (await find('userName sw "page"', startIndex="2", count="2"))
    assert (filtered["totalResults"], len(filtered["Resources"])) == (5, 2)

    for bad in ('userName eq', 'nosuch eq "x"', 'userName zz "x"'):
        from urllib.parse import quote
        answer = await scim.call("GET", f"/Users?filter={quote(bad)}")
        assert answer.status == 400 and is_error(answer.body, 400, "invalidFilter"), (bad, answer.body)


async def test_patch_forms_entra_and_okta(scim: ScimBridge) -> None:
    user = await scim.create_user("pat@example.com", emails=[{"value": "pat@example.com", "primary": True}])
    uid = user["id"]
    # Entra ID: capitalised ops, path filters that match nothing yet, a remove carrying a value, the extension.
    answer = await scim.patch(uid,
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "pat.work@example.com"},
        {"op": "Replace", "path": "name.givenName", "value": "Pat"},
        {"op": "Add", "path": "name.familyName", "value": "Example"},
        {"op": "Replace", "path": "displayName", "value": "Pat Example"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Finance"},
        {"op": "Add", "path": 'phoneNumbers[type eq "fax"].value', "value": "+1 555 0100"})
    assert answer.status == 200, answer.body
    body = answer.body
    assert {"value": "pat.work@example.com", "type": "work"} in body["emails"]
    assert body["name"] == {"givenName": "Pat", "familyName": "Example"}
    assert body[ENTERPRISE]["department"] == "Finance"
    account = await scim.bridge.store.get_user("example", "pat@example.com")
    assert account is not None and account.display_name == "Pat Example" and account.fax_number == "+1 555 0100"

    answer = await scim.patch(uid, {"op": "Remove", "path": "emails", "value": [{"value": "pat.work@example.com"}]},
                              {"op": "remove", "path": "name.givenName"})
    assert answer.status == 200, answer.body
    assert [e["value"] for e in answer.body["emails"]] == ["pat@example.com"]
    assert answer.body["name"] == {"familyName": "Example"}
    # Okta: a path-less replace with a dict.
    answer = await scim.patch(uid, {"op": "replace", "value": {"name": {"givenName": "P", "familyName": "E"},
                                                                "displayName": "P. E."}})
    assert answer.status == 200 and answer.body["displayName"] == "P. E."
    # Entra ID's string booleans; then an unknown attribute (ignored) and a bad op (400).
    assert (await scim.patch(uid, {"op": "Replace", "path": "active", "value": "True"})).body["active"] is True
    answer = await scim.patch(uid, {"op": "frobnicate", "path": "active", "value": True})
    assert answer.status == 400 and is_error(answer.body, 400)
    # Moving the primary email out of the tenant's domains while userName is an address of it keeps the account;
    # a userName that is no address then cannot stand on its own: refused, nothing changed.
    answer = await scim.patch(uid, {"op": "replace", "path": "emails",
                                    "value": [{"value": "pat@elsewhere.com", "primary": True}]})
    assert answer.status == 200
    answer = await scim.patch(uid, {"op": "replace", "path": "userName", "value": "pat"})
    assert answer.status == 400 and is_error(answer.body, 400, "invalidValue")
    assert (await scim.call("GET", f"/Users/{uid}")).body["userName"] == "pat@example.com"


async def test_email_change_rekeys_and_ends_sessions(scim: ScimBridge) -> None:
    bridge = scim.bridge
    user = await scim.create_user(DANA)
    status, body = await bridge.user_prompt(DANA, DANA_PASS)
    assert status == 200
    token = body["session"]["token"]
    answer = await scim.patch(user["id"], {"op": "replace", "path": "userName", "value": "dana.new@example.com"})
    assert answer.status == 200 and answer.body["id"] == user["id"]
    assert (await bridge.call("GET", "/v1/session", bearer=token))[0] == 401
    assert await bridge.store.get_user("example", DANA) is None
    assert await bridge.store.get_user("example", "dana.new@example.com") is not None
    events = [e for e in await bridge.store.audit_events(tenant_id="example") if e.kind is AuditKind.PROVISIONING]
    assert events[-1].result == "user_email_changed"


async def test_delete_deprovisions_and_hides(scim: ScimBridge) -> None:
    bridge = scim.bridge
    user = await scim.create_user(DANA)
    status, body = await bridge.user_prompt(DANA, DANA_PASS)
    assert status == 200
    token = body["session"]["token"]
    answer = await scim.call("DELETE", f"/Users/{user['id']}")
    assert answer.status == 204 and answer.body is None
    assert (await bridge.call("GET", "/v1/session", bearer=token))[0] == 401
    assert (await bridge.user_prompt(DANA, DANA_PASS))[1]["error"] == "user_disabled"
    assert (await scim.call("GET", f"/Users/{user['id']}")).status == 404
    assert (await scim.call("DELETE", f"/Users/{user['id']}")).status == 404
    account = await bridge.store.get_user("example", DANA)
    assert account is not None and not account.enabled  # kept, disabled: nothing is deleted
    # Provisioned again later: a new id, enabled.
    again = await scim.create_user(DANA)
    assert again["id"] != user["id"]
    assert (await bridge.user_prompt(DANA, DANA_PASS))[0] == 200
    results = [e.result for e in await bridge.store.audit_events(tenant_id="example")
               if e.kind is AuditKind.PROVISIONING]
    assert results == ["user_created", "user_deprovisioned", "user_created"]


async def test_put_replaces(scim: ScimBridge) -> None:
    user = await scim.create_user("put@example.com", displayName="Before", title="Clerk")
    answer = await scim.call("PUT", f"/Users/{user['id']}", {
        "schemas": [USER], "userName": "put@example.com", "displayName": "After", "active": False})
    assert answer.status == 200, answer.body
    assert answer.body["displayName"] == "After" and "title" not in answer.body and answer.body["active"] is False
    account = await scim.bridge.store.get_user("example", "put@example.com")
    assert account is not None and not account.enabled and account.display_name == "After"


async def test_groups(scim: ScimBridge) -> None:
    user = await scim.create_user("member@example.com")
    answer = await scim.call("POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                  "displayName": "Sales", "members": [{"value": user["id"]}]})
    assert answer.status == 201, answer.body
    listed = (await scim.call("GET", "/Groups")).body
    assert [g["displayName"] for g in listed["Resources"]] == ["Sales"]
    assert listed["Resources"][0]["members"][0]["value"] == user["id"]
    assert (await scim.call("GET", "/Groups?filter=displayName%20eq%20%22sales%22")).body["totalResults"] == 1
    assert (await scim.call("GET", "/Groups", token=scim.other_token, tenant="example-org")).body["totalResults"] == 0


async def test_revoked_token_is_refused_at_once(scim: ScimBridge) -> None:
    assert (await scim.call("GET", "/Users")).status == 200
    db = scim.bridge.store.database
    (token,) = [t for t in await list_tokens(db, kind="scim", tenant_id="example")]
    assert token.name == "entra-prod" and token.last_used_at is not None
    await revoke_token(db, token.id)
    answer = await scim.call("GET", "/Users")
    assert answer.status == 401 and is_error(answer.body, 401)


async def test_addresses_of_any_configured_domain(make_bridge: Any, sim: Any) -> None:
    """A tenant's domain decides, not a mail library's list of reserved names (acme.test, as in the README)."""
    from bridge.state.tokens import create_token
    from tests.flows.conftest import KNOWN_SECRETS, tenant_yaml
    from tests.scim.conftest import ScimBridge as Scim

    acme = tenant_yaml(sim, id="acme", name="Acme", domains=["acme.test"],
                       wstrust={"applies_to": "urn:loginbridge:acme.test"})
    bridge = await make_bridge(tenants=[tenant_yaml(sim), acme])
    _, token = await create_token(bridge.store.database, kind="scim", name="okta", tenant_id="acme")
    KNOWN_SECRETS.add(token)
    scim = Scim(bridge=bridge, token=token, other_token=token)
    answer = await scim.call("POST", "/Users", {"schemas": [USER], "userName": "carol",
                                                "emails": [{"value": "Carol@acme.test", "primary": True}]},
                             tenant="acme")
    assert answer.status == 201, answer.body
    account = await bridge.store.get_user("acme", "carol@acme.test")
    assert account is not None and account.username == "carol"
    answer = await scim.call("POST", "/Users", {"schemas": [USER], "userName": "x@example.com"}, tenant="acme")
    assert answer.status == 400 and is_error(answer.body, 400, "invalidValue")
