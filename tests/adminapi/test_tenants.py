"""Tenants through /admin/v1: validated like the files (errors name the JSON path), ids and domains unique,
served at once, deleted only once empty; every change audited under the token's name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bridge.state.tenants import get_tenant_record
from tests.adminapi.conftest import CAROL, Admin, acme_tenant


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


async def test_create_read_replace_delete(admin: Admin) -> None:
    sim = admin.bridge.sim
    created = await admin.call("POST", "/tenants", acme_tenant(sim))
    assert created.status == 201, created.body
    assert created.headers["Location"] == "/admin/v1/tenants/acme"
    assert created.body["origin"] == "api:ops" and created.body["domains"] == ["acme.test"]
    assert created.body["document"]["wstrust"]["applies_to"] == "urn:loginbridge:acme.test"
    record = await get_tenant_record(admin.bridge.store.database, "acme")
    assert record is not None and record.document.startswith("{\n  \"id\": \"acme\"")  # indented JSON, as sent

    again = await admin.call("POST", "/tenants", acme_tenant(sim, domains=["acme-other.test"]))
    assert (again.status, again.body["error"]) == (409, "resource_conflict")
    assert "tenant acme already exists" in again.body["detail"]

    replaced = await admin.ok("PUT", "/tenants/acme", acme_tenant(sim, name="Acme Corp", domains=["acme.test",
                                                                                                   "acme.example"]))
    assert (replaced["name"], replaced["domains"]) == ("Acme Corp", ["acme.test", "acme.example"])
    # Relative paths are read from the configuration's tenants_dir, as in a tenant file.
    relative = _relative(sim.ca_file, admin.bridge.config.tenants_dir)
    assert not relative.startswith("/")
    await admin.ok("PUT", "/tenants/acme", acme_tenant(sim, name="Acme Corp", domains=["acme.test", "acme.example"],
                                                        wstrust={"ca_file": relative}))
    read = await admin.ok("GET", "/tenants/acme")
    assert read["document"]["wstrust"]["ca_file"] == relative
    assert read["name"] == "Acme Corp" and read["document"]["name"] == "Acme Corp"
    file_tenant = await admin.ok("GET", "/tenants/example")
    assert file_tenant["origin"].startswith("file:") and file_tenant["document"]["id"] == "example"

    await admin.ok("POST", "/tenants/acme/users", {"email": CAROL}, status=201)
    refused = await admin.call("DELETE", "/tenants/acme")
    assert (refused.status, refused.body["error"]) == (409, "resource_conflict")
    assert "1 user(s) and 0 device(s)" in refused.body["detail"]
    await admin.ok("DELETE", f"/tenants/acme/users/{CAROL}")
    deleted = await admin.ok("DELETE", "/tenants/acme")
    assert deleted == {"deleted": "acme", "warnings": []}
    assert (await admin.call("GET", "/tenants/acme")).status == 404
    assert (await admin.call("POST", "/tenants/acme/users", {"email": CAROL})).status == 404

    results = [(e.result, e.tenant_id, e.actor) for e in await admin.changes()]
    assert results == [("tenant_created", "acme", "ops"), ("tenant_replaced", "acme", "ops"),
                       ("tenant_replaced", "acme", "ops"),
                       ("user_created", "acme", "ops"), ("user_deleted", "acme", "ops"),
                       ("tenant_deleted", "acme", "ops")]


@pytest.mark.parametrize(("change", "path", "words"), [
    ({"wstrust": {"adfs_url": "http://127.0.0.1:1"}}, "/wstrust/adfs_url", "https"),
    ({"domains": ["not a domain"]}, "/domains/0", "not a valid DNS domain name"),
    ({"domains": ["acme.test", "acme.test"]}, "/domains/1", "listed twice"),
    ({"idp_whitelist": ["10.0.0.0/33"]}, "/idp_whitelist/0", ""),
    ({"protocol": "ws-fed"}, "/protocol", "must be one of"),
    ({"wstrus": {}}, "/wstrus", "did you mean wstrust"),
    ({"wstrust": {"ca_file": "/nonexistent/ca.pem"}}, "/wstrust/ca_file", "file not found"),
    ({"throttle": {"user_failures": "five"}}, "/throttle/user_failures", ""),
    ({"id": "Acme!"}, "/id", "lower-case"),
])
async def test_validation_errors_name_the_json_path(admin: Admin, change: dict[str, Any], path: str,
                                                    words: str) -> None:
    body = acme_tenant(admin.bridge.sim)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict) and value:
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    answer = await admin.call("POST", "/tenants", body)
    assert (answer.status, answer.body["error"], answer.body["path"]) == (422, "invalid_tenant", path), answer.body
    assert words in answer.body["detail"]
    assert await get_tenant_record(admin.bridge.store.database, str(body["id"])) is None


async def test_missing_members_and_id_mismatch(admin: Admin) -> None:
    body = acme_tenant(admin.bridge.sim)
    del body["id"]
    answer = await admin.call("POST", "/tenants", body)
    assert (answer.status, answer.body["path"]) == (422, "/id")
    answer = await admin.call("PUT", "/tenants/example", acme_tenant(admin.bridge.sim))
    assert (answer.status, answer.body["path"]) == (422, "/id")
    assert "is not the tenant's id in the path" in answer.body["detail"]
    answer = await admin.call("PUT", "/tenants/nowhere", acme_tenant(admin.bridge.sim, id="nowhere"))
    assert (answer.status, answer.body["error"]) == (404, "resource_not_found")


async def test_a_domain_of_another_tenant_is_a_conflict_naming_it(admin: Admin) -> None:
    answer = await admin.call("POST", "/tenants", acme_tenant(admin.bridge.sim, domains=["acme.test", "Example.COM"]))
    assert (answer.status, answer.body["error"]) == (409, "resource_conflict")
    assert answer.body["detail"] == "/domains/1: domain example.com is already claimed by tenant example"
    await admin.ok("POST", "/tenants", acme_tenant(admin.bridge.sim), status=201)
    example = await admin.ok("GET", "/tenants/example")
    taken = await admin.call("PUT", "/tenants/example", {**example["document"], "domains": ["example.com",
                                                                                           "acme.test"]})
    assert taken.status == 409 and "claimed by tenant acme" in taken.body["detail"]


async def test_bodies_that_are_not_json_objects(admin: Admin) -> None:
    answer = await admin.call("POST", "/tenants", raw=b"id: acme\n", content_type="application/yaml")
    assert (answer.status, answer.body["error"]) == (415, "unsupported_media_type")
    answer = await admin.call("POST", "/tenants", raw=b"[1, 2]")
    assert (answer.status, answer.body["error"]) == (400, "bad_request")
    answer = await admin.call("POST", "/tenants", raw=b"{nope")
    assert (answer.status, answer.body["error"]) == (400, "bad_request")
    answer = await admin.call("POST", "/tenants", raw=b"{" + b" " * (300 * 1024) + b"}")
    assert answer.status == 413
