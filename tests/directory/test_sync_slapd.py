"""The directory sync against a real OpenLDAP slapd (Debian's), over LDAPS with a test CA, paged searches."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import BridgeConfig, TenantConfig
from bridge.directory.plan import Action
from bridge.directory.schedule import run_due_syncs
from bridge.directory.sync import SyncResult, sync_tenant
from bridge.errors import BridgeError
from bridge.localservers.slapd import SlapdServer, make_test_ca
from bridge.state.audit import AuditKind
from bridge.state.store import Store
from tests.directory.conftest import PASSWORD_ENV, directory_yaml, write_config
from tests.servers.slapd import DIRECTORY, GROUPS, SERVICE_PASSWORD

D = DIRECTORY
FIRST_SUMMARY = (
    f"directory sync example: {D.entries} entries, created {D.creatable}, updated 0, re-enabled 0, disabled 0,"
    f" unchanged {D.disabled}, refused 5 (2 outside the tenant's domains, 2 sharing an email address,"
    " 1 without an email address)"
)


async def synced(tenant: TenantConfig, store: Store, **kwargs: object) -> SyncResult:
    result = await sync_tenant(tenant, store, **kwargs)  # type: ignore[arg-type]
    assert result is not None
    return result


async def test_first_sync_creates_the_accounts_then_nothing_changes(tenant: TenantConfig, tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "db") as store:
        dry = await synced(tenant, store, dry_run=True)
        assert dry.summary() == FIRST_SUMMARY.replace("example:", "example (dry run):")
        assert await store.list_users("example") == [] and await store.audit_events() == []  # a dry run writes nothing

        first = await synced(tenant, store)
        print(first.summary())
        assert first.summary() == FIRST_SUMMARY
        assert first.pages == -(-D.entries // 50)  # page size 50: every page was asked for
        users = {u.email: u for u in await store.list_users("example")}
        assert len(users) == D.creatable
        assert not any(u.has_password for u in users.values())  # SSO accounts: no platform password
        assert users["u001@example.com"].username == "u001"
        assert users["u001@example.com"].display_name == "User 001"
        assert "upn-only@example.com" in users  # mail missing: userPrincipalName
        assert "u000@example.com" not in users  # disabled in the directory: not created
        events = await store.audit_events(tenant_id="example")
        assert len(events) == D.creatable and {e.kind for e in events} == {AuditKind.DIRECTORY_SYNC}
        assert events[0].result == "created: new in the directory"
        refused = {c.email: c.reason for c in first.plan.of(Action.REFUSED)}
        assert refused["ext0@other.org"] == "other.org is not one of the tenant's domains (example.com)"

        second = await synced(tenant, store)
        print(second.summary())
        assert second.summary() == (
            f"directory sync example: {D.entries} entries, created 0, updated 0, re-enabled 0, disabled 0,"
            f" unchanged {D.creatable + D.disabled}, refused 5 (2 outside the tenant's domains,"
            " 2 sharing an email address, 1 without an email address)")
        assert len(await store.audit_events(tenant_id="example")) == D.creatable


async def test_left_and_disabled_users_are_disabled_their_sessions_end(
        slapd_server: SlapdServer, tenant: TenantConfig, store_url: str) -> None:
    async with await Store.open(store_url) as store:
        await synced(tenant, store)
        token = hashlib.sha256(b"a session of u001").digest()
        now = datetime.now(UTC)
        await store.create_session(token_hash=token, tenant_id="example", user_email="u001@example.com",
                                   device_id=None, expires_at=now + timedelta(hours=1))
        await store.database.execute(
            "INSERT INTO print_verified (key, tenant_id, email, email_lc, expires_at) VALUES (?, ?, ?, ?, ?)",
            (secrets.token_bytes(32), "example", "u001@example.com", "u001@example.com",
             (now + timedelta(minutes=5)).isoformat()))
        await store.disable_user("example", "u004@example.com")  # an administrator's own decision

        slapd_server.delete(D.dn(1))  # u001 left the company
        slapd_server.modify(f"dn: {D.dn(2)}\nchangetype: modify\nreplace: userAccountControl\n"
                            "userAccountControl: 514\n")  # u002 disabled in the directory
        slapd_server.modify(f"dn: {D.dn(3)}\nchangetype: modify\nreplace: displayName\ndisplayName: Ursula Three\n")
        result = await synced(tenant, store)
        print(result.summary())
        assert (result.plan.count(Action.DISABLE), result.plan.count(Action.UPDATE)) == (2, 1)
        assert result.sessions_ended == 1
        assert await store.get_session(token, datetime.now(UTC)) is None
        assert await store.database.fetchval("SELECT count(*) FROM print_verified") == 0
        users = {u.email: u for u in await store.list_users("example")}
        assert not users["u001@example.com"].enabled  # disabled, never deleted
        assert not users["u002@example.com"].enabled
        assert users["u003@example.com"].display_name == "Ursula Three"
        assert not users["u004@example.com"].enabled
        reasons = {c.email: c.reason for c in result.plan.changes}
        assert reasons["u001@example.com"] == "not in the directory"
        assert reasons["u002@example.com"] == "disabled in the directory"
        assert reasons["u004@example.com"] == "disabled outside the directory sync: left disabled"

        # Enabled again in the directory: the sync's own disable is undone, the administrator's is not.
        slapd_server.modify(f"dn: {D.dn(2)}\nchangetype: modify\nreplace: userAccountControl\n"
                            "userAccountControl: 512\n")
        again = await synced(tenant, store)
        assert again.plan.count(Action.ENABLE) == 1 and again.plan.of(Action.ENABLE)[0].email == "u002@example.com"
        users = {u.email: u for u in await store.list_users("example")}
        assert users["u002@example.com"].enabled and not users["u004@example.com"].enabled
        results = [e.result for e in await store.audit_events(tenant_id="example") if e.email == "u002@example.com"]
        assert results == ["created: new in the directory", "disabled: disabled in the directory",
                           "re-enabled: enabled again in the directory"]


async def test_disabled_filter_and_group_membership(slapd_server: SlapdServer, tmp_path: Path,
                                                    bind_password: str) -> None:
    config = write_config(tmp_path, directory_yaml(slapd_server, disabled_filter="(employeeType=disabled)",
                                                   group_dn=D.group_dn, page_size=7))
    async with await Store.open(tmp_path / "db") as store:
        result = await synced(config.tenant("example"), store)
        print(result.summary())
        disabled = sum(1 for n in range(D.group_members) if D.is_disabled(n))
        assert result.summary() == (
            f"directory sync example: {D.group_members} entries, created {D.group_members - disabled}, updated 0,"
            f" re-enabled 0, disabled 0, unchanged {disabled}, refused 0")
        assert result.pages > D.group_members // 7  # both searches paged
        slapd_server.modify(f"dn: {D.dn(5)}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n")
        slapd_server.modify(f"dn: {D.group_dn}\nchangetype: modify\ndelete: member\nmember: {D.dn(6)}\n")
        after = await synced(config.tenant("example"), store)
        assert {c.email: c.reason for c in after.plan.of(Action.DISABLE)} == {
            "u005@example.com": "disabled in the directory", "u006@example.com": "not in the directory"}


async def test_starttls_on_the_plain_port(slapd_server: SlapdServer, tmp_path: Path, bind_password: str) -> None:
    config = write_config(tmp_path, directory_yaml(slapd_server, url=slapd_server.ldap_url, starttls=True))
    async with await Store.open(tmp_path / "db") as store:
        result = await synced(config.tenant("example"), store, dry_run=True)
        assert result.plan.count(Action.CREATE) == D.creatable


async def test_an_untrusted_certificate_is_a_clear_error(slapd_server: SlapdServer, tmp_path: Path,
                                                         bind_password: str) -> None:
    other = make_test_ca(tmp_path / "other-ca", name="some other CA")
    config = write_config(tmp_path, directory_yaml(slapd_server, ca_file=str(other.ca_file)))
    async with await Store.open(tmp_path / "db") as store:
        with pytest.raises(BridgeError) as caught:
            await sync_tenant(config.tenant("example"), store)
        assert await store.list_users("example") == []
    assert str(caught.value) == (f"cannot connect to the directory at {slapd_server.ldaps_url}: its TLS certificate"
                                 f" is not trusted by the CA in {other.ca_file}")


async def test_a_wrong_bind_password_is_a_clear_error_without_the_password(
        slapd_server: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-Password-" + secrets.token_hex(8)
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    config = write_config(tmp_path, directory_yaml(slapd_server))
    async with await Store.open(tmp_path / "db") as store:
        with pytest.raises(BridgeError) as caught:
            await sync_tenant(config.tenant("example"), store)
    message = str(caught.value)
    assert message == (f"the directory at {slapd_server.ldaps_url} refused the bind as"
                       f" cn=loginbridge-sync,ou=services,dc=example,dc=com: invalidCredentials"
                       f" (check bind_dn and the password in ${PASSWORD_ENV})")
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    for secret in (wrong, SERVICE_PASSWORD):
        assert secret not in message and secret not in logged


async def test_an_empty_search_never_disables_the_whole_tenant(slapd_server: SlapdServer, tmp_path: Path,
                                                               bind_password: str) -> None:
    config = write_config(tmp_path, directory_yaml(slapd_server))
    async with await Store.open(tmp_path / "db") as store:
        await synced(config.tenant("example"), store)
        wrong = write_config(tmp_path, directory_yaml(slapd_server, base_dn=GROUPS))  # no person under it
        with pytest.raises(BridgeError, match=f"refusing to disable {D.creatable} accounts"):
            await sync_tenant(wrong.tenant("example"), store)
        assert all(u.enabled for u in await store.list_users("example"))


async def test_one_instance_at_a_time_once_per_period(slapd_server: SlapdServer, tmp_path: Path,
                                                     bind_password: str, store_url: str) -> None:
    config = write_config(tmp_path, directory_yaml(slapd_server, sync_every_minutes=60))
    async with await Store.open(store_url) as store:
        assert [r.plan.count(Action.CREATE) for r in await run_due_syncs(config, store, audit=None, owner="b")] == [
            D.creatable]
        # Within the period the other instances (and this one) have nothing to do.
        assert await run_due_syncs(config, store, audit=None, owner="c") == []
        assert await run_due_syncs(config, store, audit=None, owner="b") == []
        later = datetime.now(UTC) + timedelta(minutes=61)
        assert not await store.claim_directory_sync("example", "c", now=later - timedelta(minutes=2),
                                                    lease=timedelta(minutes=5), every=timedelta(minutes=60))
        assert await store.claim_directory_sync("example", "c", now=later, lease=timedelta(minutes=5),
                                                every=timedelta(minutes=60))
        # While c holds the lease, no one else syncs the tenant, by hand or on schedule.
        with pytest.raises(BridgeError, match="running elsewhere"):
            await sync_tenant(config.tenant("example"), store, owner="b")
        assert not await store.claim_directory_sync("example", "b", now=later + timedelta(minutes=1),
                                                    lease=timedelta(minutes=5))
        # Its lease runs out (an instance that died), or it gives it back.
        assert await store.claim_directory_sync("example", "b", now=later + timedelta(minutes=6),
                                                lease=timedelta(minutes=5))
        await store.release_directory_sync("example", "b", now=later + timedelta(minutes=7))
        assert await store.claim_directory_sync("example", "a", now=later + timedelta(minutes=7),
                                                lease=timedelta(minutes=5))


def test_the_command_prints_the_refused_rows_and_the_summary(config: BridgeConfig, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bridge_yaml = str(tmp_path / "conf" / "bridge.yaml")
    assert main(["directory", "sync", "--tenant", "example", "--dry-run", "--config", bridge_yaml]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == FIRST_SUMMARY.replace("example:", "example (dry run):")
    assert "refused: ext0@other.org [uid=ext0,ou=people,dc=example,dc=com]: other.org is not one of the" \
           " tenant's domains (example.com)" in out
    assert main(["directory", "sync", "--tenant", "example", "--config", bridge_yaml]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == FIRST_SUMMARY
    assert main(["directory", "sync", "--tenant", "nope", "--config", bridge_yaml]) == 2


async def test_the_running_service_syncs_on_schedule(slapd_server: SlapdServer, tmp_path: Path, bind_password: str,
                                                     aiohttp_client: Any) -> None:
    from bridge.app import make_app
    from bridge.appkeys import STORE

    config = write_config(tmp_path, directory_yaml(slapd_server, sync_every_minutes=5))
    app = make_app(config)
    await aiohttp_client(app)  # started: its background sync runs at once, then every 5 minutes
    store = app[STORE]
    for _ in range(300):  # the sync runs in the background: poll the store
        if len(await store.list_users("example")) == D.creatable:
            break
        await asyncio.sleep(0.1)
    assert len(await store.list_users("example")) == D.creatable
    events = await store.audit_events(tenant_id="example")
    assert {e.kind for e in events} == {AuditKind.DIRECTORY_SYNC} and len(events) == D.creatable
    assert config.audit_file is None or config.audit_file.read_text().count('"directory_sync"') == D.creatable
