"""Personal printer links in the store (bridge/state/printlinks.py), on a SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.config import load_config
from bridge.errors import RequestError
from bridge.state.printlinks import (
    MAX_LINKS_PER_USER,
    TOKEN_PATTERN,
    create_link,
    list_links,
    prune_links,
    queue_url,
    resolve_link,
    revoke_link,
)
from bridge.state.store import Store
from tests.bridge.state.test_store import tenant
from tests.paths import REPO
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await Store.open(store_url) as s:
        await s.add_user(tenant(), email="Frank@example.com", username="frank")
        await s.add_user(tenant(), email="grace@example.com", username="grace")
        yield s


async def test_a_link_resolves_to_its_user_and_only_its_hash_is_stored(store: Store) -> None:
    link, token = await create_link(store.database, tenant_id="example", email="Frank@example.com", label="laptop",
                                    created_by="print-setup", lifetime=30 * DAY, now=T0)
    assert TOKEN_PATTERN.fullmatch(token)
    assert (link.email, link.label, link.expires_at) == ("Frank@example.com", "laptop", T0 + 30 * DAY)
    found = await resolve_link(store.database, token, now=T0 + DAY)
    assert found is not None and (found.id, found.tenant_id, found.email) == (link.id, "example", "Frank@example.com")
    assert found.last_used_at is None  # the row as read; the use is written for the next reader
    again = await resolve_link(store.database, token, now=T0 + DAY + timedelta(seconds=5))
    assert again is not None and again.last_used_at == T0 + DAY
    rows = await store.database.fetchall("SELECT token_hash FROM printer_links")
    assert [bytes(r[0]) for r in rows] == [hashlib.sha256(token.encode()).digest()]
    dump = str(await store.database.fetchall("SELECT * FROM printer_links"))
    assert token not in dump and token[4:] not in dump


@pytest.mark.parametrize("guess", ["", "lbp_", "lbp_" + "A" * 31, "lbp_" + "A" * 32, "x" * 5000, "lbp_%00" + "A" * 29])
async def test_unknown_or_malformed_tokens_resolve_to_nothing(store: Store, guess: str) -> None:
    await create_link(store.database, tenant_id="example", email="frank@example.com", label="l",
                      created_by="t", lifetime=DAY, now=T0)
    assert await resolve_link(store.database, guess, now=T0) is None


async def test_expired_and_revoked_links_stop_working(store: Store) -> None:
    link, token = await create_link(store.database, tenant_id="example", email="frank@example.com", label="l",
                                    created_by="t", lifetime=DAY, now=T0)
    assert await resolve_link(store.database, token, now=T0 + DAY - timedelta(seconds=1)) is not None
    assert await resolve_link(store.database, token, now=T0 + DAY) is None
    other, token2 = await create_link(store.database, tenant_id="example", email="frank@example.com", label="l2",
                                      created_by="t", lifetime=DAY, now=T0)
    assert await revoke_link(store.database, other.id, tenant_id="elsewhere") is None  # another tenant's admin
    assert await resolve_link(store.database, token2, now=T0) is not None
    revoked = await revoke_link(store.database, other.id, tenant_id="example")
    assert revoked is not None and revoked.id == other.id
    assert await resolve_link(store.database, token2, now=T0) is None
    assert await revoke_link(store.database, other.id) is None
    assert await prune_links(store.database, T0 + 2 * DAY) == 1
    assert [x.id for x in await list_links(store.database)] == []
    assert link.id != other.id


async def test_disabling_or_deleting_the_user_deletes_its_links(store: Store) -> None:
    _, frank = await create_link(store.database, tenant_id="example", email="frank@example.com", label="a",
                                 created_by="t", lifetime=DAY)
    _, grace = await create_link(store.database, tenant_id="example", email="grace@example.com", label="b",
                                 created_by="t", lifetime=DAY)
    await store.deactivate_user("example", "FRANK@example.com")
    assert await resolve_link(store.database, frank) is None
    assert await resolve_link(store.database, grace) is not None
    await store.delete_user("example", "grace@example.com")
    assert await resolve_link(store.database, grace) is None
    assert await list_links(store.database) == []


async def test_listing_and_the_per_user_cap(store: Store) -> None:
    made = []
    for i in range(MAX_LINKS_PER_USER + 2):
        link, _ = await create_link(store.database, tenant_id="example", email="frank@example.com", label=f"d{i}",
                                    created_by="t", lifetime=DAY, now=T0 + timedelta(seconds=i))
        made.append(link.id)
    await create_link(store.database, tenant_id="example", email="grace@example.com", label="g", created_by="t",
                      lifetime=DAY, now=T0)
    franks = await list_links(store.database, tenant_id="example", email="Frank@Example.com")
    assert [x.id for x in franks] == made[::-1][:MAX_LINKS_PER_USER]  # newest first; the oldest went
    assert len(await list_links(store.database, tenant_id="example")) == MAX_LINKS_PER_USER + 1
    assert await list_links(store.database, tenant_id="nobody") == []
    with pytest.raises(RequestError, match="label"):
        await create_link(store.database, tenant_id="example", email="grace@example.com", label="a\nb",
                          created_by="t", lifetime=DAY)


def test_the_queue_url_follows_the_public_host_and_the_printer_tls() -> None:
    config = load_config(REPO / "conf" / "bridge.yaml", require_files=False)
    assert config.printer is not None and config.printer.tls is not None  # the demo prints over ipps
    assert queue_url(config, "lbp_x").startswith("ipps://127.0.0.1:8631/ipp/print/u/")
    plain = dataclasses.replace(config, public_url="https://print.example.com",
                                printer=dataclasses.replace(config.printer, tls=None, port=8631))
    assert queue_url(plain, "lbp_x") == "ipp://print.example.com:8631/ipp/print/u/lbp_x"
    assert queue_url(plain, "lbp_x", port=9999).endswith(":9999/ipp/print/u/lbp_x")
    v6 = dataclasses.replace(plain, public_url="http://[::1]:8080")
    assert queue_url(v6, "t") == "ipp://[::1]:8631/ipp/print/u/t"
