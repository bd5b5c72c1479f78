"""The console's badge bindings page and devices' locations, over real HTTP (the flows' console bridge).

A binding is listed with its user and the device it was made at (name and location, never the badge),
revoked with the page's CSRF token (then the badge stops resolving, and the change is an ``admin_change``
event naming the console user); a device's location is set when it is added and changed from the list.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import aiohttp

from bridge.state.audit import AuditKind
from bridge.state.pairings import bind_badge, resolve_badge
from tests.flows.test_console import TECH, ConsoleBridge, ConsoleFactory, browser_like, console_bridge, csrf_of, sign_in

__all__ = ["browser_like", "console_bridge"]


async def _page(http: aiohttp.ClientSession, bridge: ConsoleBridge, path: str, **params: str) -> str:
    async with http.get(bridge.url + path, params=params) as resp:
        assert resp.status == 200, (path, resp.status)
        assert resp.headers["Cache-Control"] == "no-store"
        return await resp.text()


async def _resolves(bridge: ConsoleBridge, badge: bytes) -> bool:
    found = await resolve_badge(bridge.store.database, tenant_id="example", badge_hash=badge, now=datetime.now(UTC))
    return found is not None


async def test_the_console_lists_and_revokes_badge_bindings(console_bridge: ConsoleFactory,
                                                            browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    database = bridge.store.database
    alice_badge, mallory_badge = os.urandom(32), os.urandom(32)
    alice = await bind_badge(database, tenant_id="example", badge_hash=alice_badge, email="alice@example.com",
                             device_id="demo-badge", lifetime=timedelta(days=30))
    await bind_badge(database, tenant_id="example", badge_hash=mallory_badge, email="mallory@example.com",
                     device_id=None, lifetime=timedelta(days=30))
    await sign_in(browser_like, bridge)
    page = await _page(browser_like, bridge, "/console/badge-bindings")
    assert 'href="/console/badge-bindings" class="current"' in page  # in the navigation, on every page
    assert "alice@example.com" in page and "mallory@example.com" in page and "2 shown" in page
    # the device it was paired at, by id, name and location (the demo's badge reader)
    assert "demo-badge" in page and "Demo badge-reader MFP (device login)" in page
    assert "3rd floor, next to the kitchen" in page
    assert alice_badge.hex() not in page and mallory_badge.hex() not in page
    devices_page = await _page(browser_like, bridge, "/console/devices")
    assert 'href="/console/badge-bindings"' in devices_page  # linked where the printer links are
    filtered = await _page(browser_like, bridge, "/console/badge-bindings", q="KITCHEN")
    assert "alice@example.com" in filtered and "mallory@example.com" not in filtered
    other = await _page(browser_like, bridge, "/console/badge-bindings", tenant="example-org")
    assert "No badge bindings." in other

    async with browser_like.post(bridge.url + f"/console/badge-bindings/{alice.id}/revoke", data={}) as resp:
        assert resp.status == 403  # no CSRF token
    async with browser_like.post(bridge.url + f"/console/badge-bindings/{alice.id}/revoke",
                                 data={"csrf": "forged"}) as resp:
        assert resp.status == 403
    assert await _resolves(bridge, alice_badge)
    async with browser_like.post(bridge.url + f"/console/badge-bindings/{alice.id}/revoke",
                                 data={"csrf": csrf_of(page)}) as resp:
        done = await resp.text()
        assert resp.status == 200 and "The badge binding of alice@example.com is revoked" in done
    assert "1 shown" in done
    assert not await _resolves(bridge, alice_badge)
    assert await _resolves(bridge, mallory_badge)
    async with browser_like.post(bridge.url + f"/console/badge-bindings/{alice.id}/revoke",
                                 data={"csrf": csrf_of(page)}) as resp:
        assert resp.status == 404  # already revoked, and not audited again
    (event,) = [e for e in await bridge.store.audit_page("example", kinds=(AuditKind.ADMIN_CHANGE,), limit=10)
                if e.result == "badge_binding_revoked"]
    assert (event.actor, event.email, event.device_id, event.mode) == (TECH[0], "alice@example.com", "demo-badge",
                                                                      "console")
    assert event.reason == f"badge binding (id {alice.id})"


async def test_the_badge_page_needs_a_session(console_bridge: ConsoleFactory,
                                              browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    badge = os.urandom(32)
    binding = await bind_badge(bridge.store.database, tenant_id="example", badge_hash=badge,
                               email="alice@example.com", device_id="demo-badge", lifetime=timedelta(days=1))
    async with browser_like.get(bridge.url + "/console/badge-bindings", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/login"
    async with browser_like.post(bridge.url + f"/console/badge-bindings/{binding.id}/revoke", data={},
                                 allow_redirects=False) as resp:
        assert resp.status == 303
    assert await _resolves(bridge, badge)


async def test_a_device_location_is_set_on_adding_and_changed_from_the_list(
        console_bridge: ConsoleFactory, browser_like: aiohttp.ClientSession) -> None:
    bridge = await console_bridge()
    await sign_in(browser_like, bridge)
    form = await _page(browser_like, bridge, "/console/devices/new")
    assert 'name="location"' in form
    async with browser_like.post(bridge.url + "/console/devices/new", data={
            "csrf": csrf_of(form), "tenant": "example", "name": "Lobby 3", "mode": "user-prompt",
            "device_id": "lobby-3", "location": "x" * 129}) as resp:
        page = await resp.text()
        assert resp.status == 422 and 'id="e-location"' in page and "At most 128 printable characters" in page
    assert await bridge.store.get_device("lobby-3") is None
    async with browser_like.post(bridge.url + "/console/devices/new", data={
            "csrf": csrf_of(form), "tenant": "example", "name": "Lobby 3", "mode": "user-prompt",
            "device_id": "lobby-3", "location": " Reception, ground floor "}) as resp:
        page = await resp.text()
        assert resp.status == 200 and "Reception, ground floor" in page  # among the new device's facts
    device = await bridge.store.get_device("lobby-3")
    assert device is not None and device.location == "Reception, ground floor"

    listing = await _page(browser_like, bridge, "/console/devices")
    assert "Reception, ground floor" in listing and "2nd floor print room" in listing  # the demo's too
    assert 'action="/console/devices/lobby-3/location"' in listing
    async with browser_like.post(bridge.url + "/console/devices/lobby-3/location",
                                 data={"location": "Basement"}) as resp:
        assert resp.status == 403  # no CSRF token
    async with browser_like.post(bridge.url + "/console/devices/lobby-3/location",
                                 data={"csrf": csrf_of(listing), "location": "floor\x072"}) as resp:
        assert resp.status == 422 and "printable" in await resp.text()
    async with browser_like.post(bridge.url + "/console/devices/nope-mfp/location",
                                 data={"csrf": csrf_of(listing), "location": "Basement"}) as resp:
        assert resp.status == 404
    async with browser_like.post(bridge.url + "/console/devices/lobby-3/location",
                                 data={"csrf": csrf_of(listing), "location": " Basement, by the lifts "},
                                 allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/devices#d-lobby-3"
    device = await bridge.store.get_device("lobby-3")
    assert device is not None and device.location == "Basement, by the lifts"
    assert "Basement, by the lifts" in await _page(browser_like, bridge, "/console/devices")
    async with browser_like.post(bridge.url + "/console/devices/lobby-3/location",
                                 data={"csrf": csrf_of(listing), "location": "Basement, by the lifts"}) as resp:
        assert resp.status == 200  # the same again: nothing changed, nothing audited
    events = [(e.result, e.device_id, e.actor, e.mode, e.reason)
              for e in await bridge.store.audit_page("example", kinds=(AuditKind.ADMIN_CHANGE,), limit=10)]
    assert events == [("device_updated", "lobby-3", TECH[0], "console", "location: Basement, by the lifts"),
                      ("device_created", "lobby-3", TECH[0], "console", None)]
