"""Users, devices and attempts through /admin/v1, and the acceptance journey: a tenant made through the API,
a user without a password, a user-prompt device, a login at the IdP simulator; disabling the user ends it."""

from __future__ import annotations

from tests.adminapi.conftest import CAROL, CAROL_PASS, Admin, acme_tenant


async def test_tenant_user_device_login_then_disable(admin: Admin) -> None:
    bridge = admin.bridge
    await admin.ok("POST", "/tenants", acme_tenant(bridge.sim), status=201)
    user = await admin.call("POST", "/tenants/acme/users", {"email": CAROL, "display_name": "Carol Acme"})
    assert user.status == 201 and user.headers["Location"] == f"/admin/v1/tenants/acme/users/{CAROL}"
    assert (user.body["username"], user.body["has_password"], user.body["enabled"]) == ("carol", False, True)
    created = await admin.ok("POST", "/tenants/acme/devices", {"name": "Acme MFP", "mode": "user-prompt"},
                             status=201)
    device = (created["device"]["device_id"], created["secret"])
    assert created["device"]["tenant"] == "acme" and len(created["secret"]) >= 32
    listed = await admin.ok("GET", "/tenants/acme/devices")
    assert "secret" not in str(listed)  # answered once, never listed

    status, body = await bridge.user_prompt(CAROL, CAROL_PASS, device=device)
    assert status == 200, body
    assert body["user"] == {"email": CAROL, "display_name": "Carol Acme", "tenant": "acme"}
    token = body["session"]["token"]
    assert (await bridge.call("GET", "/v1/session", bearer=token))[0] == 200

    disabled = await admin.ok("POST", f"/tenants/acme/users/{CAROL}/disable")
    assert disabled["sessions_ended"] == 1 and disabled["user"]["enabled"] is False
    status, body = await bridge.call("GET", "/v1/session", bearer=token)
    assert (status, body["error"]) == (401, "session_invalid")
    status, body = await bridge.user_prompt(CAROL, CAROL_PASS, device=device)
    assert (status, body["error"]) == (403, "user_disabled")
    enabled = await admin.ok("POST", f"/tenants/acme/users/{CAROL}/enable")
    assert enabled["user"]["enabled"] is True
    assert (await bridge.user_prompt(CAROL, CAROL_PASS, device=device))[0] == 200

    changes = [(e.result, e.tenant_id, e.email, e.device_id, e.actor) for e in await admin.changes()]
    assert changes == [
        ("tenant_created", "acme", None, None, "ops"),
        ("user_created", "acme", CAROL, None, "ops"),
        ("device_created", "acme", None, device[0], "ops"),
        ("user_disabled", "acme", CAROL, None, "ops"),
        ("user_enabled", "acme", CAROL, None, "ops"),
    ]
    attempts = await admin.ok("GET", "/tenants/acme/attempts")
    assert [a["result"] for a in attempts["attempts"]] == ["ok", "user_disabled", "ok"]
    assert attempts["next_before"] is None
    first = await admin.ok("GET", "/tenants/acme/attempts?limit=2")
    assert len(first["attempts"]) == 2 and first["next_before"] == first["attempts"][-1]["id"]
    rest = await admin.ok("GET", f"/tenants/acme/attempts?limit=2&before={first['next_before']}")
    assert [a["result"] for a in rest["attempts"]] == ["ok"]
    assert (await admin.call("GET", "/tenants/acme/attempts?limit=0")).status == 400


async def test_user_rules_update_and_delete(admin: Admin) -> None:
    base = "/tenants/example/users"
    new = await admin.ok("POST", base, {"email": "Dana@Example.com", "username": "dana", "group": "Staff"},
                         status=201)
    assert new["email"] == "Dana@Example.com"
    for body, words in (
        ({"email": "dana@example.com"}, "already exists"),
        ({"email": "erin@example.com", "password": "secret-pass"}, "without a password"),
        ({"email": "erin@example.com", "twofa": True}, "2FA"),
        ({"email": "erin@example.org"}, "not one of tenant example's domains"),
        ({"email": "erin"}, ""),
        ({"username": "erin"}, "missing member(s): email"),
        ({"email": "erin@example.com", "role": "admin"}, "unknown member"),
    ):
        answer = await admin.call("POST", base, body)
        assert answer.status in (400, 409) and words in answer.body.get("detail", ""), (body, answer.body)
    updated = await admin.ok("PATCH", f"{base}/dana@example.com", {"display_name": "Dana E.", "fax_number": "+1"})
    assert (updated["display_name"], updated["fax_number"], updated["group"]) == ("Dana E.", "+1", "Staff")
    assert (await admin.call("PATCH", f"{base}/dana@example.com", {"email": "x@example.com"})).status == 400
    assert (await admin.call("PATCH", f"{base}/nobody@example.com", {"group": "x"})).status == 404
    assert (await admin.ok("GET", f"{base}/DANA@example.com"))["display_name"] == "Dana E."

    status, body = await admin.bridge.user_prompt("alice@example.com", "alice-demo-pass")
    assert status == 200
    gone = await admin.ok("DELETE", f"{base}/alice@example.com")
    assert gone == {"deleted": "alice@example.com", "sessions_ended": 1}
    status, _ = await admin.bridge.call("GET", "/v1/session", bearer=body["session"]["token"])
    assert status == 401
    assert (await admin.call("GET", f"{base}/alice@example.com")).status == 404
    shared = await admin.call("DELETE", f"{base}/frontdesk@example.com")  # demo-lobby signs in as it
    assert (shared.status, shared.body["error"]) == (409, "resource_conflict") and "demo-lobby" in shared.body["detail"]
    results = [e.result for e in await admin.changes()]
    assert results == ["user_created", "user_updated", "user_deleted"]


async def test_csv_import(admin: Admin) -> None:
    path = "/tenants/example/user-imports"
    good = b"username,email,group\nerin,erin@example.com,Staff\nfinn,finn@example.com,Staff\n"
    imported = await admin.ok("POST", path, raw=good, content_type="text/csv")
    assert [u["email"] for u in imported["imported"]] == ["erin@example.com", "finn@example.com"]
    assert imported["errors"] == []
    bad = b"username,email,group\ngus,gus@example.com,Staff\nerin,erin@example.com,Staff\nhal,hal@other.org,Staff\n"
    refused = await admin.call("POST", path, raw=bad, content_type="text/csv")
    assert (refused.status, refused.body["error"]) == (422, "invalid_import")
    assert [e["line"] for e in refused.body["errors"]] == [3, 4]
    assert (await admin.call("GET", "/tenants/example/users/gus@example.com")).status == 404
    partial = await admin.ok("POST", path + "?skip_invalid=true", raw=bad, content_type="text/csv")
    assert [u["email"] for u in partial["imported"]] == ["gus@example.com"] and len(partial["errors"]) == 2
    wrong_type = await admin.call("POST", path, raw=good, content_type="application/json")
    assert wrong_type.status == 415
    assert [(e.result, e.email) for e in await admin.changes()] == [
        ("user_imported", "erin@example.com"), ("user_imported", "finn@example.com"),
        ("user_imported", "gus@example.com")]


async def test_devices_rotate_disable_enable_and_mode(admin: Admin) -> None:
    bridge = admin.bridge
    base = "/tenants/example/devices"
    created = await admin.ok("POST", base, {"name": "3rd floor", "mode": "user-prompt", "device_id": "mfp-3"},
                             status=201)
    old = ("mfp-3", created["secret"])
    status, body = await bridge.user_prompt("alice@example.com", "alice-demo-pass", device=old)
    assert status == 200
    session = body["session"]["token"]
    duplicate = await admin.call("POST", base, {"name": "again", "mode": "user-prompt", "device_id": "mfp-3"})
    assert duplicate.status == 409
    bad_mode = await admin.call("POST", base, {"name": "x", "mode": "fax"})
    assert bad_mode.status == 400 and "unknown device mode" in bad_mode.body["detail"]

    rotated = await admin.ok("POST", f"{base}/mfp-3/rotate-secret")
    new = ("mfp-3", rotated["secret"])
    assert new[1] != old[1]
    status, body = await bridge.user_prompt("alice@example.com", "alice-demo-pass", device=old)
    assert (status, body["error"]) == (401, "device_unauthorized")
    assert (await bridge.user_prompt("alice@example.com", "alice-demo-pass", device=new))[0] == 200

    assert (await admin.ok("POST", f"{base}/mfp-3/disable"))["enabled"] is False
    status, body = await bridge.user_prompt("alice@example.com", "alice-demo-pass", device=new)
    assert (status, body["error"]) == (401, "device_unauthorized")
    assert (await bridge.call("GET", "/v1/session", bearer=session))[0] == 401
    assert (await admin.ok("POST", f"{base}/mfp-3/enable"))["enabled"] is True
    status, body = await bridge.user_prompt("alice@example.com", "alice-demo-pass", device=new)
    assert status == 200
    session = body["session"]["token"]

    changed = await admin.ok("PATCH", f"{base}/mfp-3", {"mode": "device-login", "name": "Badge 3"})
    assert (changed["mode"], changed["name"]) == ("device-login", "Badge 3")
    assert (await bridge.call("GET", "/v1/session", bearer=session))[0] == 401  # a new mode ends its sessions
    status, body = await bridge.user_prompt("alice@example.com", "alice-demo-pass", device=new)
    assert (status, body["error"]) == (403, "wrong_mode")
    no_user = await admin.call("PATCH", f"{base}/mfp-3", {"mode": "shared-account"})
    assert no_user.status == 400 and "shared user" in no_user.body["detail"]
    shared = await admin.ok("PATCH", f"{base}/mfp-3", {"mode": "shared-account", "shared_user": "alice@example.com"})
    assert shared["shared_user"] == "alice@example.com"
    assert (await admin.call("GET", f"{base}/nope")).status == 404
    assert (await admin.call("POST", "/tenants/example/devices/nope/disable")).status == 404

    results = [(e.result, e.device_id, e.actor) for e in await admin.changes()]
    assert results == [("device_created", "mfp-3", "ops"), ("device_secret_rotated", "mfp-3", "ops"),
                       ("device_disabled", "mfp-3", "ops"), ("device_enabled", "mfp-3", "ops"),
                       ("device_mode_changed", "mfp-3", "ops"), ("device_mode_changed", "mfp-3", "ops")]


async def test_device_location_is_created_changed_and_cleared(admin: Admin) -> None:
    base = "/tenants/example/devices"
    created = await admin.ok("POST", base, {"name": "Front desk", "mode": "user-prompt", "device_id": "front-mfp",
                                            "location": " Reception, ground floor "}, status=201)
    assert created["device"]["location"] == "Reception, ground floor"
    assert (await admin.ok("GET", f"{base}/front-mfp"))["location"] == "Reception, ground floor"
    plain = await admin.ok("POST", base, {"name": "No place", "mode": "user-prompt"}, status=201)
    assert plain["device"]["location"] == ""
    listed = {d["device_id"]: d["location"] for d in (await admin.ok("GET", base))["devices"]}
    assert listed["front-mfp"] == "Reception, ground floor" and listed["demo-mfp"] == "2nd floor print room"

    moved = await admin.ok("PATCH", f"{base}/front-mfp", {"location": "2nd floor print room"})
    assert (moved["location"], moved["name"]) == ("2nd floor print room", "Front desk")
    renamed = await admin.ok("PATCH", f"{base}/front-mfp", {"name": "Front desk MFP"})
    assert renamed["location"] == "2nd floor print room"  # not given: unchanged
    for bad, words in (("x" * 129, "at most 128"), ("floor\n2", "printable"), (7, "must be a string")):
        answer = await admin.call("PATCH", f"{base}/front-mfp", {"location": bad})
        assert answer.status == 400 and words in answer.body["detail"], (bad, answer.body)
        answer = await admin.call("POST", base, {"name": "x", "mode": "user-prompt", "location": bad})
        assert answer.status == 400 and words in answer.body["detail"], (bad, answer.body)
    assert (await admin.ok("GET", f"{base}/front-mfp"))["location"] == "2nd floor print room"
    cleared = await admin.ok("PATCH", f"{base}/front-mfp", {"location": ""})
    assert cleared["location"] == ""
    results = [(e.result, e.device_id) for e in await admin.changes()]
    assert results == [("device_created", "front-mfp"), ("device_created", plain["device"]["device_id"]),
                       ("device_updated", "front-mfp"), ("device_updated", "front-mfp"),
                       ("device_updated", "front-mfp")]
