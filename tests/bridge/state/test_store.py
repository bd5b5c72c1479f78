"""The SQLite store: users, devices, sessions, CSV import; a real database file in tmp_path."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest

from bridge.config import Protocol, TenantConfig
from bridge.errors import RequestError, StoreError
from bridge.state.store import SCHEMA_VERSION, DeviceMode, Store

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
SSO_2FA = "accounts of an SSO tenant cannot use two-factor authentication on the platform"


def tenant(tenant_id: str = "example", domains: tuple[str, ...] = ("example.com",)) -> TenantConfig:
    return TenantConfig(id=tenant_id, name=tenant_id.title(), domains=domains, protocol=Protocol.WSTRUST,
                        idp_whitelist=(ip_network("127.0.0.1/32"),), session_ttl=timedelta(hours=8),
                        wstrust=None, saml2=None, source=Path("/dev/null"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path) as s:
        yield s


# -- users --------------------------------------------------------------------


def test_email_is_unique_per_tenant_case_insensitively(store: Store) -> None:
    user = store.add_user(tenant(), email="Alice@Example.com", username="alice", group="Sales")
    assert user.email == "Alice@Example.com" and user.enabled and not user.has_password
    assert store.get_user("example", "alice@EXAMPLE.COM") == user
    with pytest.raises(RequestError, match="already exists in tenant example"):
        store.add_user(tenant(), email="ALICE@example.com", username="alice2")
    # The same address may exist in another tenant.
    other = store.add_user("other", sso=True, email="alice@example.com", username="alice")
    assert other.tenant_id == "other"
    assert [u.email for u in store.list_users("example")] == ["Alice@Example.com"]
    assert store.get_user("example", "nobody@example.com") is None
    assert store.get_user("example", "not an email") is None


def test_user_domain_must_belong_to_the_tenant(store: Store) -> None:
    with pytest.raises(RequestError, match="could never sign in"):
        store.add_user(tenant(), email="bob@elsewhere.org", username="bob")
    with pytest.raises(RequestError, match="not a valid email"):
        store.add_user(tenant(), email="bob at example.com", username="bob")


def test_password_is_hashed_with_scrypt(store: Store, tmp_path: Path) -> None:
    user = store.add_user(tenant(), email="carol@example.com", username="carol", password="S3cret<&]]>")
    assert user.has_password
    assert store.check_user_password("example", "CAROL@example.com", "S3cret<&]]>")
    assert not store.check_user_password("example", "carol@example.com", "wrong")
    conn = sqlite3.connect(tmp_path / "loginbridge.db")
    stored = conn.execute("SELECT password_hash FROM users").fetchone()[0]
    conn.close()
    assert stored.startswith("scrypt$") and "S3cret" not in stored


def test_twofa_refused_for_sso_tenant(store: Store) -> None:
    with pytest.raises(RequestError, match=SSO_2FA):
        store.add_user(tenant(), email="dan@example.com", username="dan", twofa=True)
    assert store.get_user("example", "dan@example.com") is None  # nothing created
    store.add_user(tenant(), email="dan@example.com", username="dan")
    with pytest.raises(RequestError, match="2FA is the identity provider's job"):
        store.set_twofa(tenant(), "dan@example.com", True)
    # A non-SSO tenant (given by id) may use platform 2FA.
    local = store.add_user("local", sso=False, email="eve@example.com", username="eve", twofa=True)
    assert local.twofa_enabled
    store.set_twofa("local", "eve@example.com", False, sso=False)
    user = store.get_user("local", "eve@example.com")
    assert user is not None and not user.twofa_enabled


def test_disable_user_revokes_sessions(store: Store) -> None:
    store.add_user(tenant(), email="frank@example.com", username="frank")
    store.add_user(tenant(), email="grace@example.com", username="grace")
    sessions = ((b"t1", "Frank@example.com"), (b"t2", "frank@example.com"), (b"t3", "grace@example.com"))
    for token, email in sessions:
        store.create_session(token_hash=hashlib.sha256(token).digest(), tenant_id="example", user_email=email,
                             device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
    assert store.disable_user("example", "FRANK@example.com") == 2
    user = store.get_user("example", "frank@example.com")
    assert user is not None and not user.enabled
    assert store.get_session(hashlib.sha256(b"t1").digest(), T0) is None
    assert store.get_session(hashlib.sha256(b"t2").digest(), T0) is None
    assert store.get_session(hashlib.sha256(b"t3").digest(), T0) is not None
    with pytest.raises(RequestError, match=r"no user nobody@example\.com"):
        store.disable_user("example", "nobody@example.com")


# -- devices --------------------------------------------------------------------


def test_device_registration_and_authentication(store: Store) -> None:
    device, secret = store.add_device("example", name="3rd floor MFP", mode="user-prompt",
                                      allowed_networks=["10.0.0.0/24", "2001:db8::/32"], now=T0)
    assert device.device_id.startswith("dev-") and len(device.device_id) == 14
    assert len(secret) >= 40 and device.mode is DeviceMode.USER_PROMPT
    assert device.allowed_networks == (ip_network("10.0.0.0/24"), ip_network("2001:db8::/32"))
    assert store.authenticate_device(device.device_id, secret) == device
    assert store.authenticate_device(device.device_id, secret + "x") is None
    assert store.authenticate_device("dev-unknown000", secret) is None
    store.touch_device(device.device_id, "10.0.0.7", T0 + timedelta(minutes=5))
    (listed,) = store.list_devices("example")
    assert listed.last_seen_addr == "10.0.0.7" and listed.last_seen_at == T0 + timedelta(minutes=5)
    assert store.list_devices("other") == []


def test_device_auth_compares_in_constant_time_even_for_unknown_devices(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    device, secret = store.add_device("example", name="mfp", mode=DeviceMode.USER_PROMPT)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert store.authenticate_device("no-such-device", secret) is None
    assert store.authenticate_device(device.device_id, "wrong-secret") is None
    assert store.authenticate_device(device.device_id, secret) is not None
    assert len(calls) == 3
    assert all(len(a) == len(b) == 32 for a, b in calls)  # same digest work in every case


def test_disabled_and_rotated_devices_stop_authenticating(store: Store) -> None:
    store.add_user(tenant(), email="henry@example.com", username="henry")
    device, secret = store.add_device("example", name="mfp", mode="user-prompt")
    store.create_session(token_hash=b"h" * 32, tenant_id="example", user_email="henry@example.com",
                         device_id=device.device_id, expires_at=T0 + timedelta(hours=1), now=T0)
    new_secret = store.rotate_device_secret(device.device_id)
    assert new_secret != secret
    assert store.authenticate_device(device.device_id, secret) is None
    assert store.authenticate_device(device.device_id, new_secret) is not None
    store.disable_device(device.device_id)
    assert store.authenticate_device(device.device_id, new_secret) is None
    assert store.get_session(b"h" * 32, T0) is None  # its sessions ended too
    with pytest.raises(RequestError, match="no device nope"):
        store.rotate_device_secret("nope")


def test_demo_seed_device_with_fixed_id_and_secret(store: Store) -> None:
    device, secret = store.add_device("example", name="Demo MFP", mode="user-prompt", device_id="demo-mfp",
                                      secret="demo-mfp-secret")
    assert (device.device_id, secret) == ("demo-mfp", "demo-mfp-secret")
    assert store.authenticate_device("demo-mfp", "demo-mfp-secret") == device
    with pytest.raises(RequestError, match="already exists"):
        store.add_device("example", name="again", mode="user-prompt", device_id="demo-mfp")


def test_device_mode_rules(store: Store) -> None:
    with pytest.raises(RequestError, match="needs the shared user"):
        store.add_device("example", name="lobby", mode="shared-account")
    with pytest.raises(RequestError, match=r"no user lobby@example\.com"):
        store.add_device("example", name="lobby", mode="shared-account",
                         shared_user_email="lobby@example.com")
    store.add_user(tenant(), email="lobby@example.com", username="lobby")
    device, _ = store.add_device("example", name="lobby", mode="shared-account",
                                 shared_user_email="Lobby@example.com")
    assert device.shared_user_email == "lobby@example.com"
    with pytest.raises(RequestError, match="unknown device mode"):
        store.add_device("example", name="x", mode="kiosk")
    with pytest.raises(RequestError, match="CIDR"):
        store.add_device("example", name="x", mode="user-prompt", allowed_networks=["10.0.0.1/24"])


# -- sessions -------------------------------------------------------------------


def test_session_expiry_and_revocation(store: Store) -> None:
    store.add_user(tenant(), email="ivy@example.com", username="ivy")
    session = store.create_session(token_hash=b"a" * 32, tenant_id="example", user_email="ivy@example.com",
                                   device_id=None, expires_at=T0 + timedelta(hours=8), now=T0)
    assert "aaaa" not in repr(session)
    found = store.get_session(b"a" * 32, T0 + timedelta(hours=7, minutes=59))
    assert found == session
    assert store.get_session(b"a" * 32, T0 + timedelta(hours=8)) is None  # expired at expires_at
    assert store.get_session(b"b" * 32, T0) is None
    assert store.revoke_session(b"a" * 32)
    assert store.get_session(b"a" * 32, T0) is None
    assert not store.revoke_session(b"z" * 32)
    assert store.purge_sessions(T0) == 1


def test_sessions_only_for_provisioned_users(store: Store) -> None:
    with pytest.raises(RequestError, match=r"no user ghost@example\.com"):
        store.create_session(token_hash=b"g" * 32, tenant_id="example", user_email="ghost@example.com",
                             device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
    assert store.get_user("example", "ghost@example.com") is None  # no user made as a side effect


# -- CSV import -------------------------------------------------------------------

GOOD_CSV = """\
username,email,group,password,language,fax_number
alice,alice@example.com,Sales,,en,+15145550100
bob,Bob@Example.com,Support,Pa55word!,fr,
"""


def test_import_good_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("\ufeff" + GOOD_CSV, encoding="utf-8")
    report = store.import_users_csv(tenant(), path)
    assert report.errors == ()
    assert [u.email for u in report.imported] == ["alice@example.com", "Bob@Example.com"]
    alice = store.get_user("example", "alice@example.com")
    assert alice is not None and not alice.has_password  # SSO users need no password
    assert (alice.group, alice.language, alice.fax_number) == ("Sales", "en", "+15145550100")
    bob = store.get_user("example", "bob@example.com")
    assert bob is not None and bob.has_password and bob.fax_number is None
    assert store.check_user_password("example", "bob@example.com", "Pa55word!")


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


def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_imported(store: Store) -> None:
    store.add_user(tenant(), email="taken@example.com", username="taken")
    report = store.import_users_csv(tenant(), BAD_CSV)
    assert report.imported == ()
    got = {e.line: e.reason for e in report.errors}
    assert sorted(got) == [3, 4, 5, 6, 7, 8]
    assert "not a valid email" in got[3]
    assert "missing field username" in got[4]
    assert "duplicate email GOOD@example.com (already on line 2)" in got[5]
    assert "already exists" in got[6]
    assert "could never sign in" in got[7]
    assert "more fields than columns" in got[8]
    assert [u.email for u in store.list_users("example")] == ["taken@example.com"]  # all or nothing


def test_skip_invalid_imports_the_good_rows(store: Store) -> None:
    store.add_user(tenant(), email="taken@example.com", username="taken")
    report = store.import_users_csv(tenant(), BAD_CSV, skip_invalid=True)
    assert [u.email for u in report.imported] == ["good@example.com", "fine@example.com"]
    assert len(report.errors) == 6
    assert {u.email for u in store.list_users("example")} == {"taken@example.com", "good@example.com",
                                                              "fine@example.com"}


def test_header_problems_stop_the_import(store: Store) -> None:
    report = store.import_users_csv(tenant(), "username,email,grp,shoe_size\nx,x@example.com,A,9\n",
                                    skip_invalid=True)
    reasons = [(e.line, e.reason) for e in report.errors]
    assert report.imported == ()
    assert (1, "missing required column 'group'") in reasons
    assert any(line == 1 and "unknown column 'shoe_size'" in r for line, r in reasons)
    assert store.import_users_csv(tenant(), "").errors[0].line == 1


def test_quoted_multiline_field_keeps_line_numbers_right(store: Store) -> None:
    text = 'username,email,group\n"multi\nline",a@example.com,A\nbad,bad@,A\n'
    report = store.import_users_csv(tenant(), text)
    assert [(e.line, "not a valid email" in e.reason) for e in report.errors] == [(4, True)]


# -- the database itself ---------------------------------------------------------------


def test_schema_is_versioned_and_data_persists(tmp_path: Path) -> None:
    with Store.open(tmp_path / "loginbridge.db") as s:
        s.add_user(tenant(), email="kim@example.com", username="kim")
    conn = sqlite3.connect(tmp_path / "loginbridge.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "loginbridge.db").stat().st_mode & 0o077 == 0
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store.open(tmp_path)


def test_reopen_keeps_users(tmp_path: Path) -> None:
    with Store.open(tmp_path) as s:
        s.add_user(tenant(), email="lee@example.com", username="lee")
        assert s.ping()
    with Store.open(tmp_path) as s:
        assert s.get_user("example", "LEE@example.com") is not None


def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store.open(tmp_path / "missing-dir" / "loginbridge.db")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Store.open(tmp_path / "junk.db")


# -- the assertion replay cache ------------------------------------------------------


IDP_A = "http://adfs.example.com/adfs/services/trust"
IDP_B = "https://idp.example.org/idp/shibboleth"


def test_replay_cache_refuses_a_known_assertion_per_issuer(store: Store) -> None:
    expires = T0 + timedelta(minutes=65)
    assert store.check_and_remember(IDP_A, "_a1", expires, now=T0) is True
    assert store.check_and_remember(IDP_A, "_a1", expires, now=T0 + timedelta(seconds=1)) is False
    assert store.check_and_remember(IDP_B, "_a1", expires, now=T0) is True  # ids are unique per issuer only
    # Until the expiry it stays refused; after it, the id counts as new again (and is renewed).
    assert store.check_and_remember(IDP_A, "_a1", expires, now=expires - timedelta(microseconds=1)) is False
    assert store.check_and_remember(IDP_A, "_a1", expires + timedelta(hours=1), now=expires) is True
    assert store.check_and_remember(IDP_A, "_a1", expires, now=expires + timedelta(minutes=1)) is False


def test_replay_cache_survives_a_restart(tmp_path: Path) -> None:
    with Store.open(tmp_path) as s:
        assert s.check_and_remember(IDP_A, "_r1", T0 + timedelta(hours=1), now=T0)
    with Store.open(tmp_path) as s:
        assert s.check_and_remember(IDP_A, "_r1", T0 + timedelta(hours=1), now=T0 + timedelta(minutes=5)) is False


def test_replay_cache_is_shared_by_two_connections(tmp_path: Path) -> None:
    """The server and a `loginbridge check` process open the same file: one insert wins."""
    with Store.open(tmp_path) as first, Store.open(tmp_path) as second:
        assert first.check_and_remember(IDP_A, "_s1", T0 + timedelta(hours=1), now=T0)
        assert second.check_and_remember(IDP_A, "_s1", T0 + timedelta(hours=1), now=T0) is False


def test_schema_2_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    from bridge.state import store as store_module

    db = tmp_path / "loginbridge.db"
    conn = sqlite3.connect(db)
    for statement in (*store_module._SCHEMA_V1, *store_module._SCHEMA_V2):
        conn.execute(statement)
    conn.execute("INSERT INTO users (tenant_id, email, email_lc, username, created_at)"
                 " VALUES ('example', 'Old@example.com', 'old@example.com', 'old', ?)", (T0.isoformat(),))
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Store.open(tmp_path) as s:
        assert s.get_user("example", "old@example.com") is not None
        assert s.check_and_remember(IDP_A, "_m1", T0 + timedelta(hours=1), now=T0)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(seen_assertions)")}
    assert "seen_assertions_by_expiry" in indexes
    conn.close()


def test_expired_assertions_are_pruned_a_bounded_batch_at_a_time(store: Store) -> None:
    from bridge.state.store import REPLAY_PRUNE_BATCH, REPLAY_PRUNE_EVERY

    for index in range(REPLAY_PRUNE_BATCH + 50):  # live at T0, expired by T0 + 1 h
        store.check_and_remember(IDP_A, f"_old{index}", T0 + timedelta(minutes=5), now=T0)
    assert store.seen_assertion_count() == REPLAY_PRUNE_BATCH + 50  # the prunes so far found nothing expired
    live = T0 + timedelta(hours=3)
    later = T0 + timedelta(hours=1)
    # The login path prunes every REPLAY_PRUNE_EVERY inserts, at most REPLAY_PRUNE_BATCH rows, never a live one.
    pruned_before = store.seen_assertion_count()
    for index in range(REPLAY_PRUNE_EVERY):
        store.check_and_remember(IDP_A, f"_new{index}", live, now=later)
    count = store.seen_assertion_count()
    assert count >= pruned_before + REPLAY_PRUNE_EVERY - REPLAY_PRUNE_BATCH  # one bounded prune at most
    assert count < pruned_before + REPLAY_PRUNE_EVERY  # but a prune did run
    assert store.prune_seen_assertions(later) == count - REPLAY_PRUNE_EVERY  # the rest, on demand
    assert store.seen_assertion_count() == REPLAY_PRUNE_EVERY  # every live row is still there
    assert all(store.check_and_remember(IDP_A, f"_new{index}", live, now=later) is False
               for index in range(REPLAY_PRUNE_EVERY))


def test_prune_reads_the_expiry_index_not_the_table(store: Store) -> None:
    from bridge.state import store as store_module

    plan = store._conn.execute("EXPLAIN QUERY PLAN " + store_module._PRUNE_SEEN, ("2030-01-01", 10)).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "seen_assertions_by_expiry" in details and "SCAN seen_assertions" not in details
