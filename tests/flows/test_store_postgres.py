"""The bridge on PostgreSQL: logins through a real database, and what a device sees while it is down.

Fail closed: with the database gone a login answers 503 ``service_unavailable`` quickly, the IdP
is not asked (the user lookup and the throttles need the store), ``/readyz`` says not ready; when
the database is back the same process serves again by itself.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.flows.conftest import BridgeFactory
from tests.servers.postgres import PgDatabase, pg_database, postgres_server

__all__ = ["pg_database", "postgres_server"]  # the real-server fixtures, used by name below

ALICE = ("alice@example.com", "alice-demo-pass")


async def test_logins_on_postgres_and_through_an_outage(
    make_bridge: BridgeFactory, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGINBRIDGE_STORE_URL", pg_database.url)
    bridge = await make_bridge()
    assert bridge.config.store_url == pg_database.url
    status, body = await bridge.user_prompt(*ALICE)
    assert status == 200, body
    calls = bridge.trust_calls()

    await pg_database.server.stop_async()
    started = time.monotonic()
    status, body = await bridge.user_prompt(*ALICE)
    assert (status, body["error"]) == (503, "service_unavailable"), body
    assert time.monotonic() - started < 6  # the pool gives up within its timeout, not the IdP's
    assert bridge.trust_calls() == calls  # fail closed: no password went to the IdP
    async with bridge.http.get(bridge.url + "/readyz") as resp:
        ready = await resp.json()
        assert resp.status == 503 and ready["checks"]["database"] == "unavailable"

    await pg_database.server.start_async()
    deadline = time.monotonic() + 20
    while True:
        status, body = await bridge.user_prompt(*ALICE)
        if status == 200:
            break
        assert (status, body["error"]) == (503, "service_unavailable"), body
        assert time.monotonic() < deadline, "the bridge did not recover after the database came back"
        await asyncio.sleep(0.5)
    assert bridge.trust_calls() == calls + 1
    async with bridge.http.get(bridge.url + "/readyz") as resp:
        assert resp.status == 200
    rows = await bridge.store.audit_events(last=10)
    assert rows[-1].result == "ok" and rows[-1].email == ALICE[0]
