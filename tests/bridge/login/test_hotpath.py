"""What the login hot path's shortcuts must keep: same answers, nothing shared between requests."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from bridge.errors import RequestError
from bridge.idp.wstrust.messages import NS_WSSE, NS_WSU, TokenType, WsTrustVersion, build_rst
from bridge.logcontext import LOG_FORMAT, ContextFilter, _Formatter
from bridge.metrics import BridgeMetrics
from bridge.state.store import TOUCH_INTERVAL, DeviceMode, Store
from bridge.xml.safe import parse_untrusted

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


async def test_last_seen_is_written_once_per_interval_unless_the_address_changes(tmp_path: Path) -> None:
    async with await Store.open(tmp_path) as store:
        device, _ = await store.add_device("example", name="mfp", mode=DeviceMode.USER_PROMPT, now=T0)
        await store.touch_device(device.device_id, "10.0.0.7", T0)
        await store.touch_device(device.device_id, "10.0.0.7", T0 + TOUCH_INTERVAL / 2)  # gated: no write
        seen = await store.get_device(device.device_id)
        assert seen is not None and (seen.last_seen_at, seen.last_seen_addr) == (T0, "10.0.0.7")
        await store.touch_device(device.device_id, "10.0.0.8", T0 + TOUCH_INTERVAL / 2)  # moved: written at once
        seen = await store.get_device(device.device_id)
        assert seen is not None and (seen.last_seen_at, seen.last_seen_addr) == (T0 + TOUCH_INTERVAL / 2,
                                                                                  "10.0.0.8")
        later = T0 + TOUCH_INTERVAL * 2
        await store.touch_device(device.device_id, "10.0.0.8", later)
        seen = await store.get_device(device.device_id)
        assert seen is not None and seen.last_seen_at == later
        # WAL with synchronous=NORMAL (1): no fsync per commit.
        assert await store.database.fetchval("PRAGMA journal_mode") == "wal"
        assert await store.database.fetchval("PRAGMA synchronous") == 1


async def test_session_for_an_unknown_user_is_refused_by_the_single_insert(tmp_path: Path) -> None:
    async with await Store.open(tmp_path) as store:
        await store.add_user("example", sso=False, email="ann@example.com", username="ann", group="staff")
        made = await store.create_session(token_hash=b"h" * 32, tenant_id="example", user_email="Ann@example.com",
                                    device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
        assert made.user_email == "Ann@example.com"
        assert await store.get_session(b"h" * 32, T0) is not None
        with pytest.raises(RequestError, match=r"no user bob@example\.com in tenant example"):
            await store.create_session(token_hash=b"x" * 32, tenant_id="example", user_email="bob@example.com",
                                 device_id=None, expires_at=T0 + timedelta(hours=1), now=T0)
        assert await store.get_session(b"x" * 32, T0) is None


def _rst(username: str, password: str) -> etree._Element:
    raw = build_rst(version=WsTrustVersion.V13, endpoint_url="https://adfs.example.com/adfs/services/trust/13/usernamemixed",
                    username=username, password=password, applies_to="urn:loginbridge:example.com",
                    token_type=TokenType.SAML20, now=T0)
    return parse_untrusted(raw)


def test_envelopes_from_the_cached_skeleton_share_no_values() -> None:
    first = _rst("ann@example.com", "first-secret")
    second = _rst("bob@example.com", "second <&> secret")
    user_tag, password_tag = f"{{{NS_WSSE}}}Username", f"{{{NS_WSSE}}}Password"
    assert [e.text for e in first.iter(user_tag, password_tag)] == ["ann@example.com", "first-secret"]
    assert [e.text for e in second.iter(user_tag, password_tag)] == ["bob@example.com", "second <&> secret"]
    wsu_id = f"{{{NS_WSU}}}Id"
    ids = [e.get(wsu_id) for doc in (first, second) for e in doc.iter() if e.get(wsu_id)]
    assert len(ids) == 4 and len(set(ids)) == 4  # Timestamp and UsernameToken ids are fresh per request
    assert b"first-secret" not in etree.tostring(second)


def test_formatter_writes_the_same_time_text_as_the_standard_one() -> None:
    ours, standard = _Formatter(LOG_FORMAT), logging.Formatter(LOG_FORMAT)
    context = ContextFilter()
    for created in (1_900_000_000.0, 1_900_000_000.999, 1_900_000_001.5):
        record = logging.LogRecord("bridge.x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        context.filter(record)
        assert ours.format(record) == standard.format(record)


def test_cached_metric_children_count_like_labels() -> None:
    metrics = BridgeMetrics()
    for _ in range(3):
        metrics.count_login(tenant="example", mode="user-prompt", result="ok")
    metrics.count_login(tenant="example", mode="user-prompt", result="invalid_credentials")
    metrics.observe_idp_latency(tenant="example", seconds=0.03)
    text = metrics.render().decode()
    assert 'loginbridge_logins_total{mode="user-prompt",result="ok",tenant="example"} 3.0' in text
    assert 'loginbridge_logins_total{mode="user-prompt",result="invalid_credentials",tenant="example"} 1.0' in text
    assert 'loginbridge_idp_latency_seconds_count{tenant="example"} 1.0' in text


def test_each_thread_parses_with_its_own_parser() -> None:
    results: dict[int, list[str]] = {}

    def work(n: int) -> None:
        results[n] = [parse_untrusted(f"<r{n}><c>{i}</c></r{n}>".encode()).tag for i in range(200)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: [f"r{n}"] * 200 for n in range(4)}
