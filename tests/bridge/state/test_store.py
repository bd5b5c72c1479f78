"""Store: test_store.py's tests, async, on a SQLite file and on a real PostgreSQL 15; plus what only it does."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest

from bridge.config import Protocol, TenantConfig
from bridge.errors import ConfigError, RequestError, StoreError
from bridge.passwords import hash_password
from bridge.state import store as sqlstore_module
from bridge.state.audit import AuditEvent, AuditKind
from bridge.state.db import current_version
from bridge.state.store import (
    MIGRATIONS,
    PRUNE_SEEN,
    PRUNE_THROTTLE,
    REPLAY_PRUNE_BATCH,
    REPLAY_PRUNE_EVERY,
    SCHEMA_VERSION,
    THROTTLE_PRUNE_BATCH,
    THROTTLE_PRUNE_EVERY,
    TOUCH_INTERVAL,
    DeviceMode,
    Spray,
    Store,
    ThrottleAdmission,
    hash_device_secret,
)
from tests.servers.postgres import PgDatabase, PostgresServer, pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]  # the real-server fixtures, used by name below

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
LATEST = max(m.version for m in MIGRATIONS)
SSO_2FA = "accounts of an SSO tenant cannot use two-factor authentication on the platform"


def tenant(tenant_id: str = "example", domains: tuple[str, ...] = ("example.com",)) -> TenantConfig:
    return TenantConfig(id=tenant_id, name=tenant_id.title(), domains=domains, protocol=Protocol.WSTRUST,
                        idp_whitelist=(ip_network("127.0.0.1/32"),), session_ttl=timedelta(hours=8),
                        wstrust=None, saml2=None, source=Path("/dev/null"))


@pytest.fixture
def url(store_url: str) -> str:
    return store_url


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    async with await Store.open(url) as s:
        yield s


# -- users --------------------------------------------------------------------


async def test_email_is_unique_per_tenant_case_insensitively(store: Store) -> None:
    user = await store.add_user(tenant(), email="Alice@Example.com", username="alice", group="Sales")
    assert user.email == "Alice@Example.com" and user.enabled and not user.has_password
    assert await store.get_user("example", "alice@EXAMPLE.COM") == user
    with pytest.raises(RequestError, match="already exists in tenant example"):
        await store.add_user(tenant(), email="ALICE@example.com", username="alice2")
    # The same address may exist in another tenant.
    other = await store.add_user("other", sso=True, email="alice@example.com", username="alice")
    assert other.tenant_id == "other"
    assert [u.email for u in await store.list_users("example")] == ["Alice@Example.com"]
    assert await store.get_user("example", "nobody@example.com") is None
    assert await store.get_user("example", "not an email") is None


async def test_user_domain_must_belong_to_the_tenant(store: Store) -> None:
    with pytest.raises(RequestError, match="could never sign in"):
        await store.add_user(tenant(), email="bob@elsewhere.org", username="bob")
    with pytest.raises(RequestError, match="not a valid email"):
        await store.add_user(tenant(), email="bob at example.com", username="bob")


async def test_password_is_hashed_with_scrypt(store: Store) -> None:
    user = await store.add_user(tenant(), email="carol@example.com", username="carol", password="S3cret<&]]>")
    assert user.has_password
    assert await store.check_user_password("example", "CAROL@example.com", "S3cret<&]]>")
    assert not await store.check_user_password("example", "carol@example.com", "wrong")
    stored = await store.database.fetchval("SELECT password_hash FROM users")
    assert stored.startswith("scrypt$") and "S3cret" not in stored


async def test_twofa_refused_for_sso_tenant(store: Store) -> None:
    with pytest.raises(RequestError, match=SSO_2FA):
        await store.add_user(tenant(), email="dan@example.com", username="dan", twofa=True)
    assert await store.get_user("example", "dan@example.com") is None  # nothing created
    await store.add_user(tenant(), email="dan@example.com", username="dan")
    with pytest.raises(RequestError, match="2FA is the identity provider's job"):
        await store.set_twofa(tenant(), "dan@example.com", True)
    # A non-SSO tenant (given by id) may use platform 2FA.
    local = await store.add_user("local", sso=False, email="eve@example.com", username="eve", twofa=True)
    assert local.twofa_enabled
    await store.set_twofa("local", "eve@example.com", False, sso=False)
    user = await store.get_user("local", "eve@example.com")
    assert user is not None and not user.twofa_enabled


async def test_disable_user_revokes_sessions(store: Store) -> None:
    await store.add_user(tenant(), email="frank@example.com", username="frank")
    await store.add_user(tenant(), email="grace@example.com", username="grace")
    sessions = ((b"t1", "Frank@example.com"), (b"t2", "frank@example.com"), (b"t3", "grace@example.com"))
    for token, email in sessions:
        await store.create_session(token_hash=hashlib.sha256(token).digest(), tenant_id="example", user_email=email,
                                   device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
    assert await store.disable_user("example", "FRANK@example.com") == 2
    user = await store.get_user("example", "frank@example.com")
    assert user is not None and not user.enabled
    assert await store.get_session(hashlib.sha256(b"t1").digest(), T0) is None
    assert await store.get_session(hashlib.sha256(b"t2").digest(), T0) is None
    assert await store.get_session(hashlib.sha256(b"t3").digest(), T0) is not None
    with pytest.raises(RequestError, match=r"no user nobody@example\.com"):
        await store.disable_user("example", "nobody@example.com")


# -- devices --------------------------------------------------------------------


async def test_device_registration_and_authentication(store: Store) -> None:
    device, secret = await store.add_device("example", name="3rd floor MFP", mode="user-prompt",
                                            allowed_networks=["10.0.0.0/24", "2001:db8::/32"], now=T0)
    assert device.device_id.startswith("dev-") and len(device.device_id) == 14
    assert len(secret) >= 40 and device.mode is DeviceMode.USER_PROMPT
    assert device.allowed_networks == (ip_network("10.0.0.0/24"), ip_network("2001:db8::/32"))
    assert await store.authenticate_device(device.device_id, secret) == device
    assert await store.authenticate_device(device.device_id, secret + "x") is None
    assert await store.authenticate_device("dev-unknown000", secret) is None
    await store.touch_device(device.device_id, "10.0.0.7", T0 + timedelta(minutes=5))
    (listed,) = await store.list_devices("example")
    assert listed.last_seen_addr == "10.0.0.7" and listed.last_seen_at == T0 + timedelta(minutes=5)
    assert await store.list_devices("other") == []


async def test_device_auth_compares_in_constant_time_even_for_unknown_devices(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    device, secret = await store.add_device("example", name="mfp", mode=DeviceMode.USER_PROMPT)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert await store.authenticate_device("no-such-device", secret) is None
    assert await store.authenticate_device(device.device_id, "wrong-secret") is None
    assert await store.authenticate_device(device.device_id, secret) is not None
    assert len(calls) == 3
    assert all(len(a) == len(b) == 32 for a, b in calls)  # same digest work in every case


async def test_disabled_and_rotated_devices_stop_authenticating(store: Store) -> None:
    await store.add_user(tenant(), email="henry@example.com", username="henry")
    device, secret = await store.add_device("example", name="mfp", mode="user-prompt")
    await store.create_session(token_hash=b"h" * 32, tenant_id="example", user_email="henry@example.com",
                               device_id=device.device_id, expires_at=T0 + timedelta(hours=1), now=T0)
    new_secret = await store.rotate_device_secret(device.device_id)
    assert new_secret != secret
    assert await store.authenticate_device(device.device_id, secret) is None
    assert await store.authenticate_device(device.device_id, new_secret) is not None
    await store.disable_device(device.device_id)
    assert await store.authenticate_device(device.device_id, new_secret) is None
    assert await store.get_session(b"h" * 32, T0) is None  # its sessions ended too
    with pytest.raises(RequestError, match="no device nope"):
        await store.rotate_device_secret("nope")


async def test_demo_seed_device_with_fixed_id_and_secret(store: Store) -> None:
    device, secret = await store.add_device("example", name="Demo MFP", mode="user-prompt", device_id="demo-mfp",
                                            secret="demo-mfp-secret")
    assert (device.device_id, secret) == ("demo-mfp", "demo-mfp-secret")
    assert await store.authenticate_device("demo-mfp", "demo-mfp-secret") == device
    with pytest.raises(RequestError, match="already exists"):
        await store.add_device("example", name="again", mode="user-prompt", device_id="demo-mfp")


async def test_device_mode_rules(store: Store) -> None:
    with pytest.raises(RequestError, match="needs the shared user"):
        await store.add_device("example", name="lobby", mode="shared-account")
    with pytest.raises(RequestError, match=r"no user lobby@example\.com"):
        await store.add_device("example", name="lobby", mode="shared-account",
                               shared_user_email="lobby@example.com")
    await store.add_user(tenant(), email="lobby@example.com", username="lobby")
    device, _ = await store.add_device("example", name="lobby", mode="shared-account",
                                       shared_user_email="Lobby@example.com")
    assert device.shared_user_email == "lobby@example.com"
    with pytest.raises(RequestError, match="unknown device mode"):
        await store.add_device("example", name="x", mode="kiosk")
    with pytest.raises(RequestError, match="CIDR"):
        await store.add_device("example", name="x", mode="user-prompt", allowed_networks=["10.0.0.1/24"])


# -- sessions -------------------------------------------------------------------


async def test_session_expiry_and_revocation(store: Store) -> None:
    await store.add_user(tenant(), email="ivy@example.com", username="ivy")
    session = await store.create_session(token_hash=b"a" * 32, tenant_id="example", user_email="ivy@example.com",
                                         device_id=None, expires_at=T0 + timedelta(hours=8), now=T0)
    assert "aaaa" not in repr(session)
    found = await store.get_session(b"a" * 32, T0 + timedelta(hours=7, minutes=59))
    assert found == session
    assert await store.get_session(b"a" * 32, T0 + timedelta(hours=8)) is None  # expired at expires_at
    assert await store.get_session(b"b" * 32, T0) is None
    assert await store.revoke_session(b"a" * 32)
    assert await store.get_session(b"a" * 32, T0) is None
    assert not await store.revoke_session(b"z" * 32)
    assert await store.purge_sessions(T0) == 1


async def test_sessions_only_for_provisioned_users(store: Store) -> None:
    with pytest.raises(RequestError, match=r"no user ghost@example\.com"):
        await store.create_session(token_hash=b"g" * 32, tenant_id="example", user_email="ghost@example.com",
                                   device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
    assert await store.get_user("example", "ghost@example.com") is None  # no user made as a side effect


# -- CSV import -------------------------------------------------------------------

GOOD_CSV = """\
username,email,group,password,language,fax_number
alice,alice@example.com,Sales,,en,+15145550100
bob,Bob@Example.com,Support,Pa55word!,fr,
"""


async def test_import_good_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("\ufeff" + GOOD_CSV, encoding="utf-8")
    report = await store.import_users_csv(tenant(), path)
    assert report.errors == ()
    assert [u.email for u in report.imported] == ["alice@example.com", "Bob@Example.com"]
    alice = await store.get_user("example", "alice@example.com")
    assert alice is not None and not alice.has_password  # SSO users need no password
    assert (alice.group, alice.language, alice.fax_number) == ("Sales", "en", "+15145550100")
    bob = await store.get_user("example", "bob@example.com")
    assert bob is not None and bob.has_password and bob.fax_number is None
    assert await store.check_user_password("example", "bob@example.com", "Pa55word!")
    assert list(report.imported) == await store.list_users("example")


BAD_CSV = """\
username,email,group
good,good@example.com,A
bad-email,not-an-email,A
,missing@example.com,A
dup,GOOD@example.com,A
taken,taken@example.com,A
foreign,x@other.org,A
extra,extra@example.com,A,surplus
fine,fine@example.com,B
"""


async def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_imported(store: Store) -> None:
    await store.add_user(tenant(), email="taken@example.com", username="taken")
    report = await store.import_users_csv(tenant(), BAD_CSV)
    assert report.imported == ()
    got = {e.line: e.reason for e in report.errors}
    assert sorted(got) == [3, 4, 5, 6, 7, 8]
    assert "not a valid email" in got[3]
    assert "missing field username" in got[4]
    assert "duplicate email GOOD@example.com (already on line 2)" in got[5]
    assert "already exists" in got[6]
    assert "could never sign in" in got[7]
    assert "more fields than columns" in got[8]
    assert [u.email for u in await store.list_users("example")] == ["taken@example.com"]  # all or nothing


async def test_skip_invalid_imports_the_good_rows(store: Store) -> None:
    await store.add_user(tenant(), email="taken@example.com", username="taken")
    report = await store.import_users_csv(tenant(), BAD_CSV, skip_invalid=True)
    assert [u.email for u in report.imported] == ["good@example.com", "fine@example.com"]
    assert len(report.errors) == 6
    assert {u.email for u in await store.list_users("example")} == {"taken@example.com", "good@example.com",
                                                                    "fine@example.com"}


async def test_header_problems_stop_the_import(store: Store) -> None:
    report = await store.import_users_csv(tenant(), "username,email,grp,shoe_size\nx,x@example.com,A,9\n",
                                          skip_invalid=True)
    reasons = [(e.line, e.reason) for e in report.errors]
    assert report.imported == ()
    assert (1, "missing required column 'group'") in reasons
    assert any(line == 1 and "unknown column 'shoe_size'" in r for line, r in reasons)
    assert (await store.import_users_csv(tenant(), "")).errors[0].line == 1


async def test_quoted_multiline_field_keeps_line_numbers_right(store: Store) -> None:
    text = 'username,email,group\n"multi\nline",a@example.com,A\nbad,bad@,A\n'
    report = await store.import_users_csv(tenant(), text)
    assert [(e.line, "not a valid email" in e.reason) for e in report.errors] == [(4, True)]


async def test_a_large_import_goes_in_chunks_in_file_order(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlstore_module, "_IMPORT_CHUNK", 7)
    monkeypatch.setattr(sqlstore_module, "_LOOKUP_CHUNK", 5)
    await store.add_user(tenant(), email="u05@example.com", username="u05")
    await store.add_user(tenant(), email="u17@example.com", username="u17")
    text = "username,email,group\n" + "".join(f"u{n:02d},U{n:02d}@example.com,G\n" for n in range(30, -1, -1))
    refused = await store.import_users_csv(tenant(), text)
    assert refused.imported == () and [(e.line, e.reason) for e in refused.errors] == [
        (15, "user U17@example.com already exists"), (27, "user U05@example.com already exists")]
    report = await store.import_users_csv(tenant(), text, skip_invalid=True)
    assert [u.email for u in report.imported] == [f"U{n:02d}@example.com" for n in range(30, -1, -1) if n not in (5, 17)]
    assert len(await store.list_users("example")) == 31


async def test_users_added_meanwhile_are_reported_not_duplicated(store: Store,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer adds a user between the import's check and its transaction."""
    real = Store._existing
    victims = ["good@example.com", "late@example.com"]

    async def then_another_writer(self: Store, tenant_id: str, emails_lc: list[str]) -> set[str]:
        found = await real(self, tenant_id, emails_lc)
        for email in victims:
            if email in emails_lc and email not in found:
                await self.add_user(tenant(), email=email, username="meanwhile")
        return found

    monkeypatch.setattr(Store, "_existing", then_another_writer)
    report = await store.import_users_csv(tenant(), "username,email,group\ngood,good@example.com,A\n"
                                                    "fine,fine@example.com,B\n")
    assert report.imported == () and [(e.line, e.reason) for e in report.errors] == [
        (2, "user good@example.com already exists")]
    assert [u.email for u in await store.list_users("example")] == ["good@example.com"]  # fine@ rolled back
    report = await store.import_users_csv(tenant(), "username,email,group\nbad,bad@,A\nnew,new@example.com,A\n"
                                                    "late,late@example.com,A\n", skip_invalid=True)
    assert [u.email for u in report.imported] == ["new@example.com"]
    assert [(e.line, e.reason.split(" (")[0]) for e in report.errors] == [
        (2, "not a valid email address: 'bad@'"), (4, "user late@example.com already exists")]
    late = await store.get_user("example", "late@example.com")
    assert late is not None and late.username == "meanwhile"


# -- the database itself ---------------------------------------------------------------


async def test_schema_is_versioned_and_data_persists(tmp_path: Path) -> None:
    path = tmp_path / "loginbridge.db"
    async with await Store.open(f"sqlite://{path}") as s:
        await s.add_user(tenant(), email="kim@example.com", username="kim")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.stat().st_mode & 0o077 == 0
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', '')", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this program"):
        await Store.open(f"sqlite://{path}")


async def test_postgres_schema_is_versioned(pg_database: PgDatabase) -> None:
    async with await Store.open(pg_database.url) as s:
        assert await current_version(s.database) == SCHEMA_VERSION == LATEST
        await s.database.execute("INSERT INTO schema_version VALUES (?, 'from the future', '')",
                                 (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this program"):
        await Store.open(pg_database.url)


async def test_reopen_keeps_users(url: str) -> None:
    async with await Store.open(url) as s:
        await s.add_user(tenant(), email="lee@example.com", username="lee")
        assert await s.ping()
    async with await Store.open(url) as s:
        assert await s.get_user("example", "LEE@example.com") is not None
    assert await s.ping() is False  # closed


async def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await Store.open(f"sqlite://{tmp_path}/missing-dir/loginbridge.db")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        await Store.open(f"sqlite://{tmp_path}/junk.db")
    with pytest.raises(StoreError, match="cannot connect"):
        await Store.open(f"postgresql://postgres@/x?host={tmp_path}&port=5999&pool_timeout=0.5")
    with pytest.raises(ConfigError):
        await Store.open("mysql://db/loginbridge")  # no such engine
    async with await Store.open(tmp_path) as by_path:  # a directory: its loginbridge.db (tools, tests)
        assert by_path.url == f"sqlite://{tmp_path}/loginbridge.db"


# -- the assertion replay cache ------------------------------------------------------


IDP_A = "http://adfs.example.com/adfs/services/trust"
IDP_B = "https://idp.example.org/idp/shibboleth"


async def test_replay_cache_refuses_a_known_assertion_per_issuer(store: Store) -> None:
    expires = T0 + timedelta(minutes=65)
    assert await store.check_and_remember(IDP_A, "_a1", expires, now=T0) is True
    assert await store.check_and_remember(IDP_A, "_a1", expires, now=T0 + timedelta(seconds=1)) is False
    assert await store.check_and_remember(IDP_B, "_a1", expires, now=T0) is True  # ids are unique per issuer only
    # Until the expiry it stays refused; after it, the id counts as new again (and is renewed).
    assert await store.check_and_remember(IDP_A, "_a1", expires, now=expires - timedelta(microseconds=1)) is False
    assert await store.check_and_remember(IDP_A, "_a1", expires + timedelta(hours=1), now=expires) is True
    assert await store.check_and_remember(IDP_A, "_a1", expires, now=expires + timedelta(minutes=1)) is False


async def test_replay_cache_survives_a_restart(url: str) -> None:
    async with await Store.open(url) as s:
        assert await s.check_and_remember(IDP_A, "_r1", T0 + timedelta(hours=1), now=T0)
    async with await Store.open(url) as s:
        assert await s.check_and_remember(IDP_A, "_r1", T0 + timedelta(hours=1), now=T0 + timedelta(minutes=5)) is False


async def test_replay_cache_is_shared_by_two_connections(url: str) -> None:
    """The server and a `loginbridge check` process open the same database: one insert wins."""
    async with await Store.open(url) as first, await Store.open(url) as second:
        assert await first.check_and_remember(IDP_A, "_s1", T0 + timedelta(hours=1), now=T0)
        assert await second.check_and_remember(IDP_A, "_s1", T0 + timedelta(hours=1), now=T0) is False


async def test_fifty_concurrent_checks_of_one_assertion_let_exactly_one_through(url: str) -> None:
    async with await Store.open(url) as first, await Store.open(url) as second:
        calls = [(first if n % 2 else second).check_and_remember(IDP_A, "_c1", T0 + timedelta(hours=1), now=T0)
                 for n in range(50)]
        results = await asyncio.gather(*calls)
        assert results.count(True) == 1 and results.count(False) == 49
        assert await first.seen_assertion_count() == 1


async def test_schema_2_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "loginbridge.db"
    conn = sqlite3.connect(db)
    for statement in (*MIGRATIONS[0].statements_for("sqlite"), *MIGRATIONS[1].statements_for("sqlite")):
        conn.execute(statement)
    conn.execute("INSERT INTO users (tenant_id, email, email_lc, username, created_at)"
                 " VALUES ('example', 'Old@example.com', 'old@example.com', 'old', ?)", (T0.isoformat(),))
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    async with await Store.open(f"sqlite://{db}") as s:
        assert await s.get_user("example", "old@example.com") is not None
        assert await s.check_and_remember(IDP_A, "_m1", T0 + timedelta(hours=1), now=T0)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == LATEST
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(seen_assertions)")}
    assert "seen_assertions_by_expiry" in indexes
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == sorted(m.version for m in MIGRATIONS)
    conn.close()


async def test_expired_assertions_are_pruned_a_bounded_batch_at_a_time(store: Store) -> None:
    for index in range(REPLAY_PRUNE_BATCH + 50):  # live at T0, expired by T0 + 1 h
        await store.check_and_remember(IDP_A, f"_old{index}", T0 + timedelta(minutes=5), now=T0)
    assert await store.seen_assertion_count() == REPLAY_PRUNE_BATCH + 50  # the prunes so far found nothing expired
    live = T0 + timedelta(hours=3)
    later = T0 + timedelta(hours=1)
    # The login path prunes every REPLAY_PRUNE_EVERY inserts, at most REPLAY_PRUNE_BATCH rows, never a live one.
    pruned_before = await store.seen_assertion_count()
    for index in range(REPLAY_PRUNE_EVERY):
        await store.check_and_remember(IDP_A, f"_new{index}", live, now=later)
    count = await store.seen_assertion_count()
    assert count >= pruned_before + REPLAY_PRUNE_EVERY - REPLAY_PRUNE_BATCH  # one bounded prune at most
    assert count < pruned_before + REPLAY_PRUNE_EVERY  # but a prune did run
    assert await store.prune_seen_assertions(later) == count - REPLAY_PRUNE_EVERY  # the rest, on demand
    assert await store.seen_assertion_count() == REPLAY_PRUNE_EVERY  # every live row is still there
    assert [await store.check_and_remember(IDP_A, f"_new{index}", live, now=later)
            for index in range(REPLAY_PRUNE_EVERY)] == [False] * REPLAY_PRUNE_EVERY
    assert await store.prune_seen_assertions(live, limit=0) == 0


async def test_prune_reads_the_expiry_index_not_the_table(store: Store) -> None:
    db = store.database
    if db.dialect == "sqlite":
        plan = await db.fetchall("EXPLAIN QUERY PLAN " + PRUNE_SEEN, ("2030-01-01", "2030-01-01", 10))
        details = " ".join(str(row[-1]) for row in plan)
        assert "seen_assertions_by_expiry" in details and "SCAN seen_assertions" not in details
        return
    # PostgreSQL plans by statistics: a table as the login path keeps it (20,000 live rows, 400 expired).
    await db.execute("INSERT INTO seen_assertions (issuer, assertion_id, expires_at)"
                     " SELECT 'idp', 'a' || CAST(n AS TEXT), CAST(2030 + n % 50 AS TEXT) || '-01-01'"
                     " FROM generate_series(1, 20000) AS n")
    await db.execute("ANALYZE seen_assertions")
    plan = await db.fetchall("EXPLAIN " + PRUNE_SEEN, ("2030-06-01", "2030-06-01", REPLAY_PRUNE_BATCH))
    details = "\n".join(str(row[0]) for row in plan)
    assert "seen_assertions_by_expiry" in details and "Seq Scan" not in details, details


# -- what only Store does ---------------------------------------------------------------


# The schema that SQLite files written before the store moved onto bridge.state.db carry (user_version 3):
# a frozen copy of what is on administrators' disks, so adoption stays tested after the old code is gone.
_V3_FILE_V1 = (
    """CREATE TABLE users (
        tenant_id TEXT NOT NULL,
        email TEXT NOT NULL,
        email_lc TEXT NOT NULL,
        username TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '',
        group_name TEXT NOT NULL DEFAULT '',
        enabled INTEGER NOT NULL DEFAULT 1,
        password_hash TEXT,
        twofa_enabled INTEGER NOT NULL DEFAULT 0,
        language TEXT,
        fax_number TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant_id, email_lc)
    )""",
    """CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('shared-account', 'device-login', 'user-prompt')),
        secret_hash BLOB NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        shared_user_email TEXT,
        allowed_networks TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        last_seen_at TEXT,
        last_seen_addr TEXT
    )""",
    """CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        user_email TEXT NOT NULL,
        user_email_lc TEXT NOT NULL,
        device_id TEXT REFERENCES devices(device_id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        FOREIGN KEY (tenant_id, user_email_lc) REFERENCES users(tenant_id, email_lc)
    )""",
    "CREATE INDEX sessions_by_user ON sessions(tenant_id, user_email_lc)",
    "CREATE INDEX sessions_by_device ON sessions(device_id)",
    "CREATE INDEX devices_by_tenant ON devices(tenant_id)",
)

# Version 2: the audit trail (bridge/state/audit.py); never a password or token.
_V3_FILE_V2 = (
    """CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        result TEXT NOT NULL,
        tenant_id TEXT,
        device_id TEXT,
        mode TEXT,
        email TEXT,
        source TEXT,
        idp_latency_ms INTEGER,
        request_id TEXT,
        distinct_users INTEGER
    )""",
    "CREATE INDEX audit_by_tenant ON audit_events(tenant_id, id)",
)
# Version 3: the assertion replay cache (Store.check_and_remember).  Keyed by (issuer, assertion id);
# a row lives until the token's NotOnOrAfter plus the clock skew, and the expiry index lets expired
# rows be pruned a few at a time without scanning the table.
_V3_FILE_V3 = (
    """CREATE TABLE seen_assertions (
        issuer TEXT NOT NULL,
        assertion_id TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (issuer, assertion_id)
    )""",
    "CREATE INDEX seen_assertions_by_expiry ON seen_assertions(expires_at)",
)


def write_v3_file(path: Path, *, secret: str) -> None:
    """A loginbridge.db as the sqlite3 store of schema 3 left it, with one row in every table."""
    conn = sqlite3.connect(path)
    try:
        for statement in (*_V3_FILE_V1, *_V3_FILE_V2, *_V3_FILE_V3):
            conn.execute(statement)
        at = "2030-05-01T12:00:00.000000+00:00"
        conn.execute("INSERT INTO users (tenant_id, email, email_lc, username, password_hash, created_at)"
                     " VALUES ('example', 'Old@example.com', 'old@example.com', 'old', ?, ?)",
                     (hash_password("0ld-Passw0rd"), at))
        conn.execute("INSERT INTO devices (device_id, tenant_id, name, mode, secret_hash, shared_user_email,"
                     " allowed_networks, created_at) VALUES ('old-mfp', 'example', 'mfp', 'device-login', ?,"
                     " 'old@example.com', '[\"10.1.0.0/16\"]', ?)", (hash_device_secret(secret), at))
        conn.execute("INSERT INTO sessions (token_hash, tenant_id, user_email, user_email_lc, device_id, created_at,"
                     " expires_at) VALUES (?, 'example', 'Old@example.com', 'old@example.com', 'old-mfp', ?,"
                     " '2030-05-01T13:00:00.000000+00:00')", (b"s" * 32, at))
        conn.execute("INSERT INTO seen_assertions VALUES (?, '_old', '2030-05-01T13:00:00.000000+00:00')", (IDP_A,))
        conn.execute("INSERT INTO audit_events (at, kind, result, tenant_id) VALUES (?, 'login', 'ok', 'example')",
                     (at,))
        conn.execute("PRAGMA user_version = 3")
        conn.commit()
    finally:
        conn.close()


async def test_a_database_written_by_the_sqlite_store_is_adopted_with_its_rows(tmp_path: Path) -> None:
    write_v3_file(tmp_path / "loginbridge.db", secret="old-device-secret")
    async with await Store.open(tmp_path) as s:
        descriptions = [r[0] for r in await s.database.fetchall(
            "SELECT description FROM schema_version ORDER BY version")]
        assert len(descriptions) == len(MIGRATIONS) and all("adopted from user_version 3" in d
                                                            for d in descriptions[:3])
        assert descriptions[3:5] == ["lockout protection", "print jobs, print verifications, printer identity"]
        user = await s.get_user("example", "old@example.com")
        assert user is not None and user.email == "Old@example.com" and user.has_password
        assert await s.check_user_password("example", "old@example.com", "0ld-Passw0rd")
        device = await s.authenticate_device("old-mfp", "old-device-secret")
        assert device is not None and device.shared_user_email == "old@example.com"
        assert [str(n) for n in device.allowed_networks] == ["10.1.0.0/16"]
        session = await s.get_session(b"s" * 32, T0)
        assert session is not None and session.device_id == "old-mfp"
        assert await s.check_and_remember(IDP_A, "_old", T0 + timedelta(hours=1), now=T0) is False
        (old,) = await s.audit_events()
        assert await s.add_audit_event(AuditEvent(at=T0, kind=AuditKind.LOGIN, result="ok")) == (old.id or 0) + 1


async def test_sqlite_schema_is_the_one_on_disk_since_schema_3(tmp_path: Path) -> None:
    """The tables of schema 3 are made today exactly as the sync store made them (later ones are new tables)."""
    def schema(path: Path, tables: set[str] | None = None) -> list[tuple[str, str, str]]:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT type, name, sql, tbl_name FROM sqlite_master WHERE name NOT LIKE"
                                " 'schema_version%' AND name != 'sqlite_sequence' ORDER BY name").fetchall()
        finally:
            conn.close()
        return [(kind, name, " ".join(str(sql).split())) for kind, name, sql, table in rows
                if tables is None or table in tables]

    write_v3_file(tmp_path / "old.db", secret="x")
    await (await Store.open(f"sqlite://{tmp_path}/new.db")).close()
    # Adopted and migrated like any file (migration 8 adds audit_events.actor to both).
    await (await Store.open(f"sqlite://{tmp_path}/old.db")).close()
    old = schema(tmp_path / "old.db")
    assert {"users", "devices", "sessions", "audit_events", "seen_assertions"} <= {name for _, name, _ in old}
    assert schema(tmp_path / "new.db", {name for kind, name, _ in old if kind == "table"}) == old


async def test_duplicates_are_the_sync_stores_request_errors_even_when_racing(store: Store) -> None:
    attempts = [store.add_user(tenant(), email=f"{'R' if n % 2 else 'r'}ace@example.com", username=f"r{n}")
                for n in range(8)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 7 and all(isinstance(r, RequestError) and "already exists in tenant example" in r.detail
                                     for r in refused)
    await store.create_session(token_hash=b"d" * 32, tenant_id="example", user_email="race@example.com",
                               device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
    with pytest.raises(RequestError, match="conflicts with existing data"):
        await store.create_session(token_hash=b"d" * 32, tenant_id="example", user_email="race@example.com",
                                   device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
    with pytest.raises(StoreError) as unknown_device:  # a foreign key, not a duplicate: stays a StoreError
        await store.create_session(token_hash=b"e" * 32, tenant_id="example", user_email="race@example.com",
                                   device_id="no-such-device", expires_at=T0 + timedelta(hours=1), now=T0)
    assert not isinstance(unknown_device.value, RequestError)
    with pytest.raises(RequestError, match="timezone-aware"):
        await store.check_and_remember(IDP_A, "_n", datetime(2030, 1, 1), now=T0)


async def test_users_by_name_enable_and_touch_gate(store: Store) -> None:
    await store.add_user(tenant(), email="kate@example.com", username="Kate")
    await store.add_user(tenant(), email="kate2@example.com", username="Kåte")
    user = await store.get_user_by_username("example", " KATE ")
    assert user is not None and user.email == "kate@example.com"
    assert await store.get_user_by_username("example", "kÅte") is None  # SQLite's lower(): ASCII only, on both
    assert await store.get_user_by_username("example", "") is None
    await store.add_user(tenant(), email="kate3@example.com", username="kate")
    assert await store.get_user_by_username("example", "kate") is None  # ambiguous
    await store.disable_user("example", "kate@example.com")
    assert not await store.check_user_password("example", "kate@example.com", "x")
    await store.enable_user("example", "KATE@example.com")
    found = await store.get_user("example", "kate@example.com")
    assert found is not None and found.enabled
    with pytest.raises(RequestError, match="no user"):
        await store.enable_user("example", "nobody@example.com")

    device, secret = await store.add_device("example", name="mfp", mode="user-prompt", now=T0)
    await store.disable_device(device.device_id)
    await store.enable_device(device.device_id)
    assert await store.authenticate_device(device.device_id, secret) is not None
    with pytest.raises(RequestError, match="no device nope"):
        await store.enable_device("nope")
    with pytest.raises(RequestError, match="no device nope"):
        await store.disable_device("nope")
    await store.touch_device(device.device_id, "10.0.0.7", T0)
    await store.touch_device(device.device_id, "10.0.0.7", T0 + TOUCH_INTERVAL / 2)  # gated: no write
    seen = await store.get_device(device.device_id)
    assert seen is not None and seen.last_seen_at == T0
    await store.touch_device(device.device_id, "10.0.0.8", T0 + TOUCH_INTERVAL / 2)  # moved: written at once
    seen = await store.get_device(device.device_id)
    assert seen is not None and (seen.last_seen_at, seen.last_seen_addr) == (T0 + TOUCH_INTERVAL / 2, "10.0.0.8")
    assert [d.device_id for d in await store.list_devices()] == [device.device_id]


async def test_audit_rows(store: Store) -> None:
    ids = [await store.add_audit_event(AuditEvent(at=T0 + timedelta(seconds=n), kind=AuditKind.LOGIN,
                                                  result="ok" if n % 2 else "invalid_credentials",
                                                  tenant_id="acme" if n % 2 else "globex", idp_latency_ms=n,
                                                  request_id=f"req{n}", distinct_users=None))
           for n in range(6)]
    assert ids == sorted(ids) and len(set(ids)) == 6
    events = await store.audit_events()
    assert [e.id for e in events] == ids and events[0].at == T0 and events[0].kind is AuditKind.LOGIN
    assert [e.request_id for e in await store.audit_events(tenant_id="acme")] == ["req1", "req3", "req5"]
    assert [e.idp_latency_ms for e in await store.audit_events(last=2)] == [4, 5]
    assert [e.request_id for e in await store.audit_events(tenant_id="globex", last=1)] == ["req4"]
    assert [e.request_id for e in await store.audit_events(after_id=ids[3])] == ["req4", "req5"]
    assert await store.audit_events(last=0) == []


async def test_scrypt_runs_in_a_worker_thread_and_outside_transactions(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bool]] = []
    db = store.database

    def in_transaction() -> bool:
        conn = getattr(db, "_conn", None)  # SQLite: the one connection; PostgreSQL: a checked-out one would show
        if conn is not None:
            return bool(conn.in_transaction)
        pool = getattr(db, "pool", None)
        return pool is not None and pool.get_stats().get("pool_available", 0) < pool.get_stats().get("pool_size", 0)

    def spying(real: Callable[..., object]) -> Callable[..., object]:
        def spy(*args: str) -> object:
            seen.append((threading.current_thread().name, in_transaction()))
            return real(*args)
        return spy

    monkeypatch.setattr(sqlstore_module, "hash_password", spying(sqlstore_module.hash_password))
    monkeypatch.setattr(sqlstore_module, "verify_password", spying(sqlstore_module.verify_password))
    await store.add_user(tenant(), email="pat@example.com", username="pat", password="pat-Passw0rd")
    assert await store.check_user_password("example", "pat@example.com", "pat-Passw0rd")
    report = await store.import_users_csv(tenant(), GOOD_CSV)
    assert len(report.imported) == 2
    assert len(seen) == 3
    assert all(thread != threading.main_thread().name and not busy for thread, busy in seen), seen


# -- PostgreSQL going away ------------------------------------------------------------------


async def test_postgres_down_fails_fast_then_the_same_store_works_again(
        pg_database: PgDatabase, postgres_server: PostgresServer) -> None:
    async with await Store.open(pg_database.url) as s:  # the default pool_timeout (2 s), as in production
        await s.add_user(tenant(), email="olga@example.com", username="olga")
        device, secret = await s.add_device("example", name="mfp", mode="user-prompt")
        assert await s.ping()

        await postgres_server.stop_async()
        for attempt in (lambda: s.authenticate_device(device.device_id, secret),
                        lambda: s.check_and_remember(IDP_A, "_down", T0 + timedelta(hours=1), now=T0),
                        lambda: s.disable_user("example", "olga@example.com")):  # a transaction
            started = time.monotonic()
            with pytest.raises(StoreError, match="database unavailable"):
                await attempt()
            assert time.monotonic() - started < 3.0
        started = time.monotonic()
        assert await s.ping() is False
        assert time.monotonic() - started < 3.5

        await postgres_server.start_async()
        started = time.monotonic()
        assert await s.get_user("example", "olga@example.com") is not None  # the same Store, not reopened
        assert time.monotonic() - started < 3.0
        assert await s.authenticate_device(device.device_id, secret) is not None
        assert await s.check_and_remember(IDP_A, "_down", T0 + timedelta(hours=1), now=T0) is True
        assert await s.disable_user("example", "olga@example.com") == 0
        assert await s.ping()


# -- lockout protection (migration 4; bridge/login/throttle.py holds the logic) -------------------------

WINDOW = timedelta(minutes=15)


def _t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_throttle_failures_slide_over_the_window_and_clear(store: Store) -> None:
    assert [await store.throttle_failure(b"user-1", now=_t(t), window=WINDOW) for t in (0, 10, 10, 20)] == [1, 2, 3, 4]
    assert await store.throttle_failure(b"user-2", now=_t(20), window=WINDOW) == 1
    assert await store.throttle_count(b"user-1", now=_t(100), window=WINDOW) == 4
    assert await store.throttle_count(b"user-1", now=_t(910), window=WINDOW) == 1  # at <= now - window: gone
    # Retry-after at a limit: until the event that must leave the window has left it.
    assert await store.throttle_retry_after(b"user-1", now=_t(100), window=WINDOW, limit=4) == 800
    assert await store.throttle_retry_after(b"user-1", now=_t(100), window=WINDOW, limit=2) == 810
    assert await store.throttle_retry_after(b"user-1", now=_t(100), window=WINDOW, limit=5) == 0
    await store.throttle_clear(b"user-1")
    assert await store.throttle_count(b"user-1", now=_t(100), window=WINDOW) == 0
    assert await store.throttle_count(b"user-2", now=_t(100), window=WINDOW) == 1


async def test_throttle_clear_with_a_ticket_ends_that_attempt_too(store: Store) -> None:
    await store.throttle_failure(b"user-1", now=_t(0), window=WINDOW)
    first = await store.throttle_in_flight_start(b"user-1", expires_at=_t(120))
    second = await store.throttle_in_flight_start(b"user-1", expires_at=_t(120))
    await store.throttle_clear(b"user-1", first)
    assert await store.throttle_count(b"user-1", now=_t(10), window=WINDOW) == 0
    assert await store.throttle_in_flight_count(b"user-1", now=_t(10)) == 1  # the other attempt still counts
    await store.throttle_clear(b"user-2", second)  # another key's ticket is not ended
    assert await store.throttle_in_flight_count(b"user-1", now=_t(10)) == 1


async def test_throttle_stale_digests_expire_and_keep_the_latest_answer(store: Store) -> None:
    digest = hashlib.sha256(b"tenant/email/password").digest()
    await store.throttle_remember_stale(digest, "wrong_password", expires_at=_t(3600))
    assert await store.throttle_stale_answer(digest, now=_t(10)) == "wrong_password"
    await store.throttle_remember_stale(digest, "account_refused", expires_at=_t(7200))
    assert await store.throttle_stale_answer(digest, now=_t(3600)) == "account_refused"
    assert await store.throttle_stale_answer(digest, now=_t(7200)) is None
    assert await store.throttle_stale_answer(b"other", now=_t(10)) is None


async def test_throttle_in_flight_tickets_end_or_expire(store: Store) -> None:
    tickets = [await store.throttle_in_flight_start(b"u", expires_at=_t(120)) for _ in range(3)]
    assert len(set(tickets)) == 3
    assert await store.throttle_in_flight_count(b"u", now=_t(0)) == 3
    await store.throttle_in_flight_end(b"u", tickets[0])
    await store.throttle_in_flight_end(b"other", tickets[1])  # another key's ticket: nothing
    assert await store.throttle_in_flight_count(b"u", now=_t(0)) == 2
    await store.throttle_in_flight_end(b"u")  # any one
    assert await store.throttle_in_flight_count(b"u", now=_t(0)) == 1
    assert await store.throttle_in_flight_count(b"u", now=_t(120)) == 0  # a crashed instance's ticket expires


async def test_throttle_admission_counts_failures_tickets_and_stale_pairs(store: Store) -> None:
    async def admit(stale: bytes, now: float = 0) -> object:
        return await store.throttle_admit(b"u", stale, now=_t(now), window=WINDOW, limit=3, expires_at=_t(now + 120))

    first = await admit(b"pw1")
    assert isinstance(first, ThrottleAdmission) and first.ticket is not None
    await store.throttle_rejected([(b"u", WINDOW), (b"actor", WINDOW)], now=_t(1),
                                  stale=(b"pw1", "wrong_password", _t(3600)), release=(b"u", first.ticket))
    assert await store.throttle_in_flight_count(b"u", now=_t(1)) == 0
    assert await store.throttle_count(b"actor", now=_t(1), window=WINDOW) == 1
    assert await admit(b"pw1", 2) == ThrottleAdmission(ticket=None, in_flight=0, newest=(_t(1),),
                                                       stale_answer="wrong_password")
    second, third = await admit(b"pw2", 3), await admit(b"pw3", 3)
    assert second.ticket is not None and third.ticket is not None
    assert await admit(b"pw4", 4) == ThrottleAdmission(ticket=None, in_flight=2, newest=(_t(1),))
    assert (await admit(b"pw4", 130)).ticket is not None  # the two tickets expired meanwhile


async def test_throttle_spray_blocks_once(store: Store) -> None:
    async def fail(user: bytes, now: float) -> int | None:
        return await store.throttle_spray_failure(b"actor", user, now=_t(now), window=timedelta(seconds=300),
                                                  distinct=3)

    assert [await fail(u, 0) for u in (b"a", b"a", b"b")] == [None, None, None]
    assert await fail(b"c", 1) == 3
    assert await store.throttle_blocked_until(b"actor", now=_t(2)) == _t(301)
    assert [await fail(u, 2) for u in (b"d", b"e", b"f")] == [None, None, None]  # blocked already: no new trip
    assert await store.throttle_actor_state(b"actor", now=_t(2), window=WINDOW, limit=1) == (_t(301), 0)
    assert await store.throttle_blocked_until(b"actor", now=_t(301)) is None
    await store.throttle_block(b"other", until=_t(60))
    assert await store.throttle_blocked_until(b"other", now=_t(0)) == _t(60)


async def test_throttle_admission_and_spray_are_atomic_across_two_stores(url: str) -> None:
    """Two instances racing on one database: exactly ``limit`` tickets, exactly one spray trip."""
    async with await Store.open(url) as first, await Store.open(url) as second:
        admissions = await asyncio.gather(*[
            (first if n % 2 else second).throttle_admit(b"u", b"pw%d" % n, now=_t(0), window=WINDOW, limit=5,
                                                        expires_at=_t(120)) for n in range(30)])
        assert sum(a.ticket is not None for a in admissions) == 5
        trips = await asyncio.gather(*[
            (first if n % 2 else second).throttle_spray_failure(b"actor", b"user%d" % n, now=_t(0),
                                                                window=WINDOW, distinct=10) for n in range(30)])
        assert trips.count(10) == 1 and trips.count(None) == 29


SPRAY_WINDOW = timedelta(seconds=300)


def _spray(user: bytes, distinct: int = 10) -> Spray:
    return Spray(actor=b"mfp", user=user, window=SPRAY_WINDOW, distinct=distinct)


async def _admit_for(store: Store, user: bytes, now: float = 0, distinct: int = 10) -> ThrottleAdmission:
    """An admission of ``user`` (its own user key) reserving the spray pair (the actor "mfp", ``user``)."""
    return await store.throttle_admit(b"key-" + user, b"pw-" + user, now=_t(now), window=WINDOW, limit=5,
                                      expires_at=_t(now + 120), spray=_spray(user, distinct))


async def test_throttle_spray_reservations_cap_concurrent_admissions_across_two_stores(url: str) -> None:
    """30 attempts for distinct users from one actor at once, on two instances: 10 tickets, the count; the 10
    rejections trip the detector once, at the 10th; nothing more is admitted."""
    async with await Store.open(url) as first, await Store.open(url) as second:
        stores = [first, second]
        users = [b"user%02d" % n for n in range(30)]
        admissions = await asyncio.gather(*[_admit_for(stores[n % 2], user) for n, user in enumerate(users)])
        admitted = [(n, a.ticket) for n, a in enumerate(admissions) if a.ticket is not None]
        assert len(admitted) == 10
        refused = [a for a in admissions if a.ticket is None]
        assert {(a.blocked_until, a.spray_users) for a in refused} == {(None, 10)}
        trips = await asyncio.gather(*[
            stores[n % 2].throttle_rejected([(b"key-" + users[n], WINDOW)], now=_t(1),
                                            release=(b"key-" + users[n], ticket), spray=_spray(users[n]))
            for n, ticket in admitted])
        assert trips.count(10) == 1 and trips.count(None) == 9
        assert await first.throttle_blocked_until(b"mfp", now=_t(2)) == _t(301)
        late = await asyncio.gather(*[_admit_for(stores[n % 2], b"late%d" % n, now=2) for n in range(6)])
        assert {(a.ticket, a.blocked_until) for a in late} == {(None, _t(301))}
        assert await first.throttle_in_flight_count(b"key-" + users[admitted[0][0]], now=_t(2)) == 0


async def test_throttle_spray_reservation_ends_with_its_ticket(store: Store) -> None:
    """A success and an attempt without a verdict leave nothing counted; an earlier real failure stays."""
    failed = await _admit_for(store, b"a", distinct=3)
    assert failed.ticket is not None
    assert await store.throttle_rejected([], now=_t(1), release=(b"key-a", failed.ticket),
                                         spray=_spray(b"a", 3)) is None
    for user, end in ((b"a", "no verdict"), (b"b", "no verdict"), (b"c", "success")):
        admission = await _admit_for(store, user, now=2, distinct=3)
        assert admission.ticket is not None
        if end == "success":
            await store.throttle_clear(b"key-" + user, admission.ticket)
        else:
            await store.throttle_in_flight_end(b"key-" + user, admission.ticket)
    # Counted for the actor now: "a" (its failure) only. Two more users fit in flight, a third does not.
    assert (await _admit_for(store, b"d", now=3, distinct=3)).ticket is not None
    assert (await _admit_for(store, b"e", now=3, distinct=3)).ticket is not None
    refused = await _admit_for(store, b"f", now=3, distinct=3)
    assert (refused.ticket, refused.blocked_until, refused.spray_users) == (None, None, 3)
    # The same user again is no new user: admitted (its own user limit permitting).
    assert (await _admit_for(store, b"d", now=3, distinct=3)).ticket is not None
    # A crashed instance's reservation expires with its ticket.
    assert (await _admit_for(store, b"f", now=124, distinct=3)).ticket is not None


async def test_throttle_writes_prune_expired_rows_a_bounded_batch_at_a_time(store: Store,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlstore_module, "THROTTLE_PRUNE_BATCH", 7)
    for n in range(30):
        await store.throttle_failure(b"old%d" % n, now=_t(0), window=timedelta(seconds=10))
    for n in range(THROTTLE_PRUNE_EVERY - 30 - 1):
        await store.throttle_remember_stale(b"d%d" % n, "wrong_password", expires_at=_t(10**6))
    assert await store.throttle_row_count() == THROTTLE_PRUNE_EVERY - 1
    await store.throttle_failure(b"new", now=_t(100), window=WINDOW)  # the 100th write: one bounded prune
    assert await store.throttle_row_count() == THROTTLE_PRUNE_EVERY - 7
    assert await store.prune_throttle(_t(100)) == 30 - 7


async def test_throttle_statements_read_the_indexes(store: Store) -> None:
    db = store.database
    statements = [(sqlstore_module._ADMIT, (b"k", "2030", b"k", "2030", b"k", "2030", 5, b"d", "2030")),
                  (sqlstore_module._ACTOR_STATE, (b"k", "2030", b"k", "2030", 4)),
                  (sqlstore_module._ADMIT_RESERVING, (b"k", "2030", b"a", b"u", b"k", "2030", b"k", "2030", 5, b"d",
                                                      "2030", b"a", "2030", b"a", "2030", b"u", b"a", "2030", b"u", 10)),
                  (sqlstore_module._SPRAY_REFUSAL, (b"a", "2030", b"a", "2030", b"u", b"a", "2030", b"u")),
                  (sqlstore_module._TRIP, (b"a", "2030", b"a", "2030", 10, b"a", "2030")),
                  *[(sql, ("2030", "2030", 100)) for sql in PRUNE_THROTTLE.values()]]
    if db.dialect == "sqlite":
        for sql, params in statements:
            plan = " ".join(str(row[-1]) for row in await db.fetchall("EXPLAIN QUERY PLAN " + sql, params))
            assert "SCAN throttle" not in plan, (sql, plan)
        return
    # PostgreSQL plans by statistics: fill the tables as a busy cluster would, then ANALYZE.
    await db.execute("INSERT INTO throttle_failures (key, at, expires_at) SELECT CAST(md5(CAST(n % 5000 AS TEXT))"
                     " AS BYTEA), CAST(2030 + n % 50 AS TEXT), CAST(2030 + n % 50 AS TEXT)"
                     " FROM generate_series(1, 20000) AS n")
    await db.execute("INSERT INTO throttle_stale (digest, answer, expires_at) SELECT CAST(md5(CAST(n AS TEXT))"
                     " AS BYTEA), 'wrong_password', CAST(2030 + n % 50 AS TEXT) FROM generate_series(1, 20000) AS n")
    await db.execute("INSERT INTO throttle_spray (actor, user_digest, at, expires_at) SELECT CAST(md5(CAST(n % 500"
                     " AS TEXT)) AS BYTEA), CAST(md5(CAST(n AS TEXT)) AS BYTEA), CAST(2030 + n % 50 AS TEXT),"
                     " CAST(2030 + n % 50 AS TEXT) FROM generate_series(1, 20000) AS n")
    await db.execute("INSERT INTO throttle_in_flight (key, expires_at, actor, spray_user) SELECT"
                     " CAST(md5(CAST(n AS TEXT)) AS BYTEA), CAST(2030 + n % 50 AS TEXT), CAST(md5(CAST(n % 500 AS TEXT))"
                     " AS BYTEA), CAST(md5(CAST(n AS TEXT)) AS BYTEA) FROM generate_series(1, 20000) AS n")
    for table in PRUNE_THROTTLE:
        await db.execute(f"ANALYZE {table}")
    for sql, params in statements:
        if sql.startswith("DELETE"):
            params = ("2030-06-01", "2030-06-01", THROTTLE_PRUNE_BATCH)
        plan = "\n".join(str(row[0]) for row in await db.fetchall("EXPLAIN " + sql, params))
        for table in ("throttle_failures", "throttle_in_flight", "throttle_stale", "throttle_spray"):
            assert f"Seq Scan on {table}" not in plan, (sql, plan)
