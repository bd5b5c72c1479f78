"""Admin tokens: missing, unknown, revoked or of another kind is 401; a tenant's token sees only its tenant;
the document at /admin/v1/openapi.json is valid OpenAPI 3.1, public, and describes every route."""

from __future__ import annotations

from pathlib import Path

import yaml
from openapi_spec_validator import validate

from bridge.adminapi import PREFIX
from bridge.adminapi.document import build_document
from bridge.app import make_app
from bridge.config import load_config
from bridge.state.tokens import create_token, list_tokens, revoke_token
from tests.adminapi.conftest import Admin, acme_tenant
from tests.flows.conftest import KNOWN_SECRETS


def test_document_is_valid_openapi() -> None:
    validate(build_document())


def test_every_admin_route_is_described_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "secrets": {"hmac_key": {"file": str(tmp_path / "hmac.key"), "generate": True}},
    }))
    app = make_app(load_config(tmp_path / "bridge.yaml", require_files=False))
    routes = {(r.method.lower(), r.resource.canonical.removeprefix(PREFIX)) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None and r.resource.canonical.startswith(PREFIX + "/")}
    described = {(method, path) for path, item in build_document()["paths"].items() for method in item}
    assert routes == described


async def test_the_document_is_served_without_a_token(admin: Admin) -> None:
    body = await admin.ok("GET", "/openapi.json", token=None)
    assert body == build_document()


async def test_missing_unknown_revoked_and_scim_tokens_are_401_with_a_bearer_challenge(admin: Admin) -> None:
    missing = await admin.call("GET", "/tenants", token=None)
    assert missing.status == 401 and missing.body["error"] == "admin_unauthorized"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="loginbridge-admin"'
    db = admin.bridge.store.database
    _, scim = await create_token(db, kind="scim", name="entra", tenant_id="example")
    revoked, revoked_plain = await create_token(db, kind="admin", name="gone", tenant_id=None)
    KNOWN_SECRETS.update((scim, revoked_plain))
    await revoke_token(db, revoked.id, kind="admin")
    for bad in ("lbadmin_" + "A" * 43, scim, revoked_plain, admin.token + "x"):
        answer = await admin.call("GET", "/tenants", token=bad)
        assert answer.status == 401, bad
        assert answer.body["error"] == "admin_unauthorized"
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="loginbridge-admin", error="invalid_token"'
    basic = await admin.call("POST", "/tenants", acme_tenant(admin.bridge.sim), token=None)
    assert basic.status == 401  # checked before the body
    used = {t.name: t.last_used_at for t in await list_tokens(db, kind="admin")}
    assert used["ops"] is None and used["gone"] is None


async def test_a_tenant_token_sees_and_changes_only_its_tenant(admin: Admin) -> None:
    sim = admin.bridge.sim
    await admin.ok("POST", "/tenants", acme_tenant(sim), status=201)
    device = (await admin.ok("POST", "/tenants/acme/devices", {"name": "Acme MFP", "mode": "user-prompt"},
                             status=201))["device"]
    scoped = admin.scoped
    listed = await admin.ok("GET", "/tenants", token=scoped)
    assert [t["id"] for t in listed["tenants"]] == ["example"]
    assert {t["id"] for t in (await admin.ok("GET", "/tenants"))["tenants"]} == {"example", "acme"}
    assert (await admin.ok("GET", "/tenants/example", token=scoped))["id"] == "example"
    assert len((await admin.ok("GET", "/tenants/example/users", token=scoped))["users"]) > 0
    # Another tenant is answered as one that does not exist, whatever the operation.
    for method, path, body in (
        ("GET", "/tenants/acme", None),
        ("GET", "/tenants/acme/users", None),
        ("POST", "/tenants/acme/users", {"email": "x@acme.test"}),
        ("GET", "/tenants/acme/devices", None),
        ("POST", f"/tenants/acme/devices/{device['device_id']}/disable", None),
        ("GET", "/tenants/acme/attempts", None),
        ("GET", "/tenants/nowhere", None),
        ("PUT", "/tenants/acme", acme_tenant(sim, name="Stolen")),
        ("DELETE", "/tenants/acme", None),
    ):
        answer = await admin.call(method, path, body, token=scoped)
        assert (answer.status, answer.body["error"]) == (404, "resource_not_found"), (method, path, answer.body)
    # Its own tenant's path does not reach another tenant's device either.
    answer = await admin.call("GET", f"/tenants/example/devices/{device['device_id']}", token=scoped)
    assert answer.status == 404
    # Tenant settings take a global token.
    for method, path, body in (
        ("POST", "/tenants", acme_tenant(sim, id="acme2", domains=["acme2.test"])),
        ("PUT", "/tenants/example", None),
        ("DELETE", "/tenants/example", None),
    ):
        answer = await admin.call(method, path, body, token=scoped)
        assert (answer.status, answer.body["error"]) == (403, "admin_forbidden"), (method, path)
    assert (await admin.ok("GET", "/tenants/acme/devices"))["devices"][0]["enabled"] is True
    assert [e.actor for e in await admin.changes()] == ["ops", "ops"]  # nothing the scoped token tried happened


async def test_unknown_paths_and_methods(admin: Admin) -> None:
    answer = await admin.call("PATCH", "/tenants")
    assert answer.status == 405 and "Allow" in answer.headers
