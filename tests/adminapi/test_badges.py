"""Badge bindings through /admin/v1: listed per tenant (never the badge), revoked at once, another tenant's
invisible, tokens checked; and disabling the user through the API deletes them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from bridge.state.pairings import BadgeBinding, bind_badge, resolve_badge
from tests.adminapi.conftest import CAROL, Admin, acme_tenant

PATH = "/tenants/{}/badge-bindings"
FIELDS = {"id", "tenant", "email", "device_id", "created_at", "expires_at", "last_used_at"}


async def _bind(admin: Admin, email: str, *, tenant_id: str = "example",
                device_id: str | None = "demo-badge") -> tuple[BadgeBinding, bytes]:
    badge = os.urandom(32)
    binding = await bind_badge(admin.bridge.store.database, tenant_id=tenant_id, badge_hash=badge, email=email,
                               device_id=device_id, lifetime=timedelta(days=30))
    return binding, badge


async def _works(admin: Admin, badge: bytes, tenant_id: str = "example") -> bool:
    found = await resolve_badge(admin.bridge.store.database, tenant_id=tenant_id, badge_hash=badge,
                                now=datetime.now(UTC))
    return found is not None


async def test_list_filter_and_revoke(admin: Admin) -> None:
    alice, alice_badge = await _bind(admin, "alice@example.com")
    mallory, _ = await _bind(admin, "Mallory@Example.com", device_id=None)
    listed = await admin.ok("GET", PATH.format("example"))
    assert [b["id"] for b in listed["badge_bindings"]] == [mallory.id, alice.id]  # newest first
    first = listed["badge_bindings"][1]
    assert set(first) == FIELDS
    assert (first["email"], first["device_id"], first["tenant"], first["last_used_at"]) == (
        "alice@example.com", "demo-badge", "example", None)
    assert first["expires_at"].endswith("Z") and first["expires_at"] > first["created_at"]
    assert listed["badge_bindings"][0]["device_id"] is None
    assert alice_badge.hex() not in str(listed)
    only_mallory = await admin.ok("GET", PATH.format("example") + "?email=mallory@example.com")
    assert [b["id"] for b in only_mallory["badge_bindings"]] == [mallory.id]  # the address case-insensitively

    assert await _works(admin, alice_badge)  # a use shows in the list
    used = await admin.ok("GET", PATH.format("example") + "?email=alice@example.com")
    assert used["badge_bindings"][0]["last_used_at"] is not None

    revoked = await admin.ok("DELETE", f"{PATH.format('example')}/{alice.id}")
    assert revoked["revoked"]["id"] == alice.id and set(revoked["revoked"]) == FIELDS
    assert not await _works(admin, alice_badge)
    assert [b["id"] for b in (await admin.ok("GET", PATH.format("example")))["badge_bindings"]] == [mallory.id]
    again = await admin.call("DELETE", f"{PATH.format('example')}/{alice.id}")
    assert (again.status, again.body["error"]) == (404, "resource_not_found")
    changes = [(e.result, e.tenant_id, e.email, e.device_id, e.actor, e.mode) for e in await admin.changes()]
    assert changes == [("badge_binding_revoked", "example", "alice@example.com", "demo-badge", "ops", "admin-api")]


async def test_unknown_and_malformed_ids_are_404_never_500(admin: Admin) -> None:
    binding, badge = await _bind(admin, "alice@example.com")
    for raw in ("999999", "abc", "%C2%B2", "1" * 30, "-1", f"{binding.id}.0"):
        answer = await admin.call("DELETE", f"{PATH.format('example')}/{raw}")
        assert (answer.status, answer.body["error"]) == (404, "resource_not_found"), raw
    assert await _works(admin, badge)
    # printer links take their id the same way ("²" is a digit to str.isdigit, not to int)
    for raw in ("%C2%B2", "1" * 30):
        answer = await admin.call("DELETE", f"/tenants/example/printer-links/{raw}")
        assert (answer.status, answer.body["error"]) == (404, "resource_not_found"), raw
    assert await admin.changes() == []


async def test_another_tenants_binding_is_invisible(admin: Admin) -> None:
    await admin.ok("POST", "/tenants", acme_tenant(admin.bridge.sim), status=201)
    await admin.ok("POST", "/tenants/acme/users", {"email": CAROL}, status=201)
    carol, carol_badge = await _bind(admin, CAROL, tenant_id="acme", device_id=None)
    alice, _ = await _bind(admin, "alice@example.com")

    # The global token, through the wrong tenant's path: as unknown as a made-up id.
    wrong = await admin.call("DELETE", f"{PATH.format('example')}/{carol.id}")
    assert (wrong.status, wrong.body["error"]) == (404, "resource_not_found")
    assert await _works(admin, carol_badge, "acme")
    assert [b["id"] for b in (await admin.ok("GET", PATH.format("acme")))["badge_bindings"]] == [carol.id]
    assert [b["id"] for b in (await admin.ok("GET", PATH.format("example")))["badge_bindings"]] == [alice.id]

    # example's token: its own tenant only; acme answers as a tenant that does not exist.
    own = await admin.ok("GET", PATH.format("example"), token=admin.scoped)
    assert [b["id"] for b in own["badge_bindings"]] == [alice.id]
    for method, path in (("GET", PATH.format("acme")), ("DELETE", f"{PATH.format('acme')}/{carol.id}"),
                         ("DELETE", f"{PATH.format('example')}/{carol.id}")):
        answer = await admin.call(method, path, token=admin.scoped)
        assert (answer.status, answer.body["error"]) == (404, "resource_not_found"), (method, path)
    assert await _works(admin, carol_badge, "acme")
    await admin.ok("DELETE", f"{PATH.format('example')}/{alice.id}", token=admin.scoped)
    assert [(e.result, e.actor) for e in await admin.changes()][-1] == ("badge_binding_revoked", "example-admin")


async def test_a_token_is_needed(admin: Admin) -> None:
    binding, badge = await _bind(admin, "alice@example.com")
    for method, path in (("GET", PATH.format("example")), ("DELETE", f"{PATH.format('example')}/{binding.id}")):
        for token in (None, "lbadmin_" + "A" * 43):
            answer = await admin.call(method, path, token=token)
            assert (answer.status, answer.body["error"]) == (401, "admin_unauthorized"), (method, token)
            assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="loginbridge-admin"')
    assert await _works(admin, badge)


async def test_disabling_or_deleting_the_user_deletes_its_bindings(admin: Admin) -> None:
    _, alice_badge = await _bind(admin, "alice@example.com")
    mallory, mallory_badge = await _bind(admin, "mallory@example.com")
    _, alice_again = await _bind(admin, "alice@example.com")
    await admin.ok("POST", "/tenants/example/users/alice@example.com/disable")
    assert not await _works(admin, alice_badge) and not await _works(admin, alice_again)
    assert [b["id"] for b in (await admin.ok("GET", PATH.format("example")))["badge_bindings"]] == [mallory.id]
    await admin.ok("DELETE", "/tenants/example/users/mallory@example.com")
    assert not await _works(admin, mallory_badge)
    assert (await admin.ok("GET", PATH.format("example")))["badge_bindings"] == []
