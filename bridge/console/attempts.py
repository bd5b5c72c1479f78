"""The login attempts page: one line per attempt, its specific reason, filters, paging, the viewer's time zone.

Where the reason on a line comes from, best first:

1. the reason the bridge recorded with the attempt, at the time
   (``AuditEvent.reason``, migration 11; ``bridge.login.guard``): the assertion
   check that failed (e.g. ``expired``); which throttle refused
   (``temporarily_locked``, ``device_throttled``: per user, device or source
   address, or a spray block, with the setting); the stale-password guard
   answering a pair the IdP already refused (``invalid_credentials``,
   ``access_denied``); the address the IdP host resolved to and the
   ``idp_whitelist`` line to add (``idp_not_whitelisted``); the IdP's timeout,
   TLS or DNS failure, or HTTP status (``idp_timeout``, ``idp_unreachable``,
   ``idp_rejected_request``, ``idp_protocol_error``...);
2. what the event itself tells (no IdP latency on a refused password: the
   stale-password guard answered; the source address of a network refusal;
   the distinct users of a spray block ...);
3. for events without a recorded reason (older ones, or codes the bridge
   records none for), a fact looked up now and marked so (whether a refused
   device id is enrolled or disabled; the whitelist line the tenant's IdP host
   needs today; the IdP timeout configured today), which may differ from what
   happened at the time;
4. the first clause of the error catalogue's note for the code.

The console runs no script (its CSP has no ``script-src``), so the browser cannot
convert times: the viewer picks a zone (``tz``, remembered in a cookie, UTC by
default), every time is shown in it, and the UTC time is in each ``<time>``'s
``datetime`` and ``title`` (on hover).

Paging is by cursor (``before``/``after`` an audit id), so a page does not slide
when new attempts arrive; the filters run over the newest
:data:`ATTEMPTS_SCANNED` events of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from bridge.appkeys import STORE
from bridge.config import BridgeConfig, TenantConfig
from bridge.console.guide import first_clause, guide, inline
from bridge.console.views import BASE, CONSOLE_MODE, _config, _render, _session, _set_cookie
from bridge.errorcatalog import ADMIN_DETAIL, catalogue
from bridge.errors import BridgeError, StoreError
from bridge.idp.allowlist import is_whitelisted, resolve_host, suggested_entry
from bridge.state.audit import RESULT_OK, AuditEvent, AuditKind
from bridge.state.store import Store
from bridge.toolkit.check import idp_urls
from bridge.toolkit.network import targets_from_urls

log = logging.getLogger(__name__)

ATTEMPTS_SCANNED = 5000  # the newest events the filters and pages run over
PER_PAGE = 10
PER_PAGE_CHOICES = (10, 25, 50, 100)
TZ_COOKIE = "lb_tz"
TZ_COOKIE_SECONDS = 365 * 24 * 3600
RESOLVE_SECONDS = 2.0
_PANEL = {entry.code: entry.panel_message for entry in catalogue()}
_TIME_INPUT = "%Y-%m-%dT%H:%M"


# -- the viewer's zone -----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """UTC first, then every IANA zone the system (or the tzdata package) knows, sorted."""
    with contextlib.suppress(OSError, ValueError):
        names = zoneinfo.available_timezones()
        return ("UTC", *sorted(n for n in names if "/" in n and not n.startswith(("Etc/", "SystemV/", "posix/",
                                                                                "right/"))))
    return ("UTC",)


def zone_of(name: str) -> tzinfo | None:
    if name == "UTC":
        return UTC
    if name not in zone_names():
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


# -- filters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    tenant: str = ""
    result: str = ""  # "", "failed", "ok" or an error code
    mode: str = ""
    user: str = ""  # part of the email, any case
    device: str = ""
    since: str = ""  # datetime-local text, in the zone tz
    until: str = ""
    tz: str = "UTC"
    per: int = PER_PAGE

    def query(self, **cursor: int) -> str:
        """This view's query string (defaults left out), with a paging cursor."""
        items: list[tuple[str, str]] = [(k, v) for k, v in (
            ("tenant", self.tenant), ("result", self.result), ("mode", self.mode), ("user", self.user),
            ("device", self.device), ("since", self.since), ("until", self.until), ("tz", self.tz)) if v]
        if self.per != PER_PAGE:
            items.append(("per", str(self.per)))
        items += [(k, str(v)) for k, v in cursor.items()]
        return urlencode(items)

    @property
    def active(self) -> bool:
        return any((self.tenant, self.result, self.mode, self.user, self.device, self.since, self.until))


def _time_bound(text: str, zone: tzinfo) -> datetime | None:
    try:
        local = datetime.strptime(text, _TIME_INPUT)
    except ValueError:
        return None
    return local.replace(tzinfo=zone).astimezone(UTC)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() and len(text) <= 18 else None


@dataclass(slots=True)
class Query:
    filters: Filters
    zone: tzinfo
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    after: int | None = None
    notices: list[str] = field(default_factory=list)
    remember_tz: bool = False


def parse_query(request: web.Request, tenants: Sequence[str]) -> Query:
    q = request.query
    notices: list[str] = []
    tz_name = q.get("tz", "").strip()
    remember = bool(tz_name)
    if not tz_name:
        tz_name = request.cookies.get(TZ_COOKIE, "UTC")
    zone = zone_of(tz_name)
    if zone is None:
        notices.append(f"Unknown time zone {tz_name[:64]!r}: times are shown in UTC.")
        tz_name, zone, remember = "UTC", UTC, False
    per = _int(q.get("per")) or PER_PAGE
    tenant = q.get("tenant", "").strip()
    filters = Filters(
        tenant=tenant if tenant in tenants else "", result=q.get("result", "").strip()[:64],
        mode=q.get("mode", "").strip()[:64], user=q.get("user", "").strip().lower()[:254],
        device=q.get("device", "").strip()[:128], since=q.get("since", "").strip()[:16],
        until=q.get("until", "").strip()[:16], tz=tz_name, per=per if per in PER_PAGE_CHOICES else PER_PAGE)
    query = Query(filters=filters, zone=zone, before=_int(q.get("before")), after=_int(q.get("after")),
                  notices=notices, remember_tz=remember)
    if filters.since:
        query.since = _time_bound(filters.since, zone)
        if query.since is None:
            notices.append(f"Not a date and time: {filters.since!r} (the From filter is ignored).")
            query.filters = replace(query.filters, since="")
    if filters.until:
        query.until = _time_bound(filters.until, zone)
        if query.until is None:
            notices.append(f"Not a date and time: {filters.until!r} (the Until filter is ignored).")
            query.filters = replace(query.filters, until="")
    return query


# The audit trail also records changes (SCIM provisioning, directory sync, the admin API): not attempts.
_ATTEMPT_KINDS = frozenset({AuditKind.LOGIN, AuditKind.SPRAY_DETECTED, AuditKind.DEVICE_CHANGED})


def _failed(event: AuditEvent) -> bool:
    return event.kind is not AuditKind.DEVICE_CHANGED and event.result != RESULT_OK


def matches(event: AuditEvent, query: Query) -> bool:
    f = query.filters
    if f.result == "failed" and not _failed(event):
        return False
    if f.result not in ("", "failed") and event.result != f.result:
        return False
    if f.mode and (event.mode or event.kind.value) != f.mode:
        return False
    if f.user and f.user not in (event.email or "").lower():
        return False
    if f.device and f.device.lower() not in (event.device_id or "").lower():
        return False
    if query.since is not None and event.at < query.since:
        return False
    return query.until is None or event.at < query.until


@dataclass(frozen=True, slots=True)
class Page:
    events: list[AuditEvent]  # newest first
    first: int  # 1-based position of the first shown among the matches
    total: int
    newer: int | None  # the cursor of the newer page (after=...), None on the newest
    older: int | None  # before=...


def paginate(matching: list[AuditEvent], query: Query) -> Page:
    """``matching`` newest first; ``before`` and ``after`` are audit ids (the cursors of the links)."""
    per, total = query.filters.per, len(matching)
    start = 0
    if query.before is not None:
        start = next((i for i, e in enumerate(matching) if (e.id or 0) < query.before), total)
    elif query.after is not None:
        newer = [i for i, e in enumerate(matching) if (e.id or 0) > query.after]
        start = max(0, (newer[-1] + 1 if newer else 0) - per)
    shown = matching[start:start + per]
    newer_cursor = shown[0].id if shown and start > 0 else None
    older_cursor = shown[-1].id if shown and start + per < total else None
    return Page(events=shown, first=start + 1, total=total, newer=newer_cursor, older=older_cursor)


# -- what happened, specifically ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reason:
    text: str
    origin: str  # "recorded" | "event" | "now" | "catalogue" | ""


@dataclass(slots=True)
class LiveFacts:
    """Looked up once per page, only for the lines that need them."""

    devices: dict[str, str] = field(default_factory=dict)  # device id -> what is true of it now
    whitelist: dict[str, str] = field(default_factory=dict)  # tenant id -> the whitelist advice now


async def _whitelist_now(tenant: TenantConfig) -> str:
    try:
        urls = await asyncio.to_thread(idp_urls, tenant)
    except (OSError, BridgeError):
        return ""
    lines: list[str] = []
    for target in targets_from_urls(urls):
        try:
            addresses = await asyncio.wait_for(resolve_host(target.host, target.port), RESOLVE_SECONDS)
        except (TimeoutError, BridgeError, OSError):
            return f"{target.host} does not resolve now (DNS)"
        lines += [suggested_entry(a) for a in addresses if not is_whitelisted(a, tenant.idp_whitelist)]
    if not lines:
        return "idp_whitelist covers the IdP's addresses now (changed since?)"
    return f"add {', '.join(dict.fromkeys(lines))} to idp_whitelist"


async def live_facts(events: Iterable[AuditEvent], config: BridgeConfig, store: Store) -> LiveFacts:
    facts = LiveFacts()
    tenants = {t.id: t for t in config.tenants}
    for event in events:
        if event.result == "device_unauthorized" and event.device_id and event.device_id not in facts.devices:
            try:
                device = await store.get_device(event.device_id)
            except StoreError:
                continue
            facts.devices[event.device_id] = (
                f"no device {event.device_id} is enrolled" if device is None else
                f"device {event.device_id} is disabled" if not device.enabled else
                f"wrong or rotated secret for {event.device_id}")
        if event.result == "idp_not_whitelisted" and not event.reason and event.tenant_id in tenants \
                and event.tenant_id not in facts.whitelist:
            facts.whitelist[event.tenant_id] = await _whitelist_now(tenants[event.tenant_id])
    return facts


def _recorded(event: AuditEvent) -> str:
    """The reason recorded with the attempt (see the module docstring)."""
    return event.reason or ""


def reason_of(event: AuditEvent, facts: LiveFacts, config: BridgeConfig) -> Reason:
    code, latency = event.result, event.idp_latency_ms
    if event.kind is AuditKind.DEVICE_CHANGED:
        return Reason(f"device {event.result} by technician {event.email or '?'}", "event")
    if event.kind is AuditKind.SPRAY_DETECTED:
        who = event.device_id or event.source or "an unknown caller"
        return Reason(f"{event.distinct_users or 'many'} distinct users failed from {who}: blocked", "event")
    if event.mode == CONSOLE_MODE:
        return Reason("console sign-in" if code == RESULT_OK else "wrong console user or password", "event")
    if code == RESULT_OK:
        return Reason("signed in", "")
    if recorded := _recorded(event):
        return Reason(recorded, "recorded")
    match code:
        case "invalid_credentials" if latency is None:
            return Reason("stale password: the IdP was not asked again", "event")
        case "invalid_credentials":
            return Reason("the IdP rejected the password", "event")
        case "access_denied" if latency is None:
            return Reason("refused before: the IdP was not asked again", "event")
        case "idp_timeout":
            return Reason(f"no answer in time (idp_client.timeout_seconds is {config.idp_client.timeout:g} s now)",
                          "now")
        case "source_not_allowed" if event.source:
            return Reason(f"called from {event.source}: outside device_networks and the device's allow-list",
                          "event")
        case "device_unauthorized" if event.device_id in facts.devices:
            return Reason(facts.devices[event.device_id or ""], "now")
        case "idp_not_whitelisted" if facts.whitelist.get(event.tenant_id or ""):
            return Reason(facts.whitelist[event.tenant_id or ""], "now")
        case "user_not_provisioned" if event.email and event.tenant_id:
            return Reason(f"no such account in tenant {event.tenant_id}", "event")
        case "unknown_domain" if event.email and "@" in event.email:
            return Reason(f"no tenant lists the domain {event.email.rsplit('@', 1)[1]}", "event")
        case "user_disabled" if event.email and event.tenant_id:
            return Reason(f"the account is disabled in tenant {event.tenant_id}", "event")
        case "cancelled":
            return Reason("the client went away before the answer", "event")
    note = ADMIN_DETAIL.get(code)
    return Reason(first_clause(note), "catalogue") if note else Reason(code, "")


# -- the view model --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    at: str  # in the viewer's zone
    at_iso: str  # UTC, for <time datetime>
    at_utc: str  # UTC, on hover
    result: str
    css: str
    href: str  # the code's section of the troubleshooting guide, or ""
    reason: Markup
    origin: str
    panel: str
    advice: Markup | None
    user: str
    device: str
    tenant: str
    mode: str
    source: str
    latency: str
    request_id: str


def _panel(event: AuditEvent) -> str:
    if event.kind is AuditKind.DEVICE_CHANGED or event.mode == CONSOLE_MODE:
        return ""
    return "Signed in." if event.result == RESULT_OK else _PANEL.get(event.result, "")


def _latency(ms: int | None) -> str:
    return "" if ms is None else f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def local_time(at: datetime, zone: tzinfo, now: datetime) -> str:
    """Short and unambiguous: ``29 Nov 14:05:09`` this year, ``2025-11-29 14:05`` before."""
    local = at.astimezone(zone)
    return local.strftime("%d %b %H:%M:%S") if local.year == now.astimezone(zone).year else \
        local.strftime("%Y-%m-%d %H:%M")


def attempt_row(event: AuditEvent, zone: tzinfo, reason: Reason, anchors: frozenset[str],
                now: datetime | None = None) -> Row:
    at_utc = event.at.astimezone(UTC)
    ok = event.result == RESULT_OK
    changed = event.kind is AuditKind.DEVICE_CHANGED
    note = ADMIN_DETAIL.get(event.result)
    # Catalogue text is trusted Markdown; every other reason holds audit text and is escaped.
    text = inline(reason.text) if reason.origin == "catalogue" else Markup.escape(reason.text)
    return Row(
        id=event.id or 0, at=local_time(event.at, zone, now or datetime.now(UTC)),
        at_iso=at_utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
        at_utc=at_utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        result=f"device {event.result}" if changed else event.result,
        css="skip" if changed else "pass" if ok else "fail",
        href=f"{BASE}/troubleshooting#{event.result}" if event.result in anchors else "",
        reason=text, origin=reason.origin, panel=_panel(event),
        advice=inline(note) if note and not ok and not changed else None,
        user=event.email or "", device=event.device_id or "", tenant=event.tenant_id or "",
        mode=event.mode or event.kind.value, source=event.source or "",
        latency=_latency(event.idp_latency_ms),
        request_id=event.request_id or "",
    )


def _options(events: Sequence[AuditEvent]) -> tuple[list[tuple[str, int]], list[str]]:
    """The result codes (with counts, failures only) and the modes present in the scanned events."""
    codes = Counter(e.result for e in events if _failed(e))
    modes = sorted({e.mode or e.kind.value for e in events})
    return sorted(codes.items(), key=lambda item: (-item[1], item[0])), modes


async def attempts(request: web.Request) -> web.Response:
    session = await _session(request)
    config = _config(request)
    store = request.config_dict[STORE]
    known = [t.id for t in config.tenants]
    query = parse_query(request, known)
    try:
        scanned = await store.audit_events(tenant_id=query.filters.tenant or None, last=ATTEMPTS_SCANNED)
    except StoreError:
        log.exception("console: cannot read the audit events")
        scanned = []
        query.notices.append("The audit events cannot be read now (database error): see the log.")
    scanned.reverse()
    scanned = [e for e in scanned if e.kind in _ATTEMPT_KINDS]
    page = paginate([e for e in scanned if matches(e, query)], query)
    facts = await live_facts(page.events, config, store)
    anchors = (await asyncio.to_thread(guide)).anchors
    now = datetime.now(UTC)
    rows = [attempt_row(e, query.zone, reason_of(e, facts, config), anchors, now) for e in page.events]
    codes, modes = _options(scanned)
    f = query.filters
    context: dict[str, Any] = {
        "title": "Login attempts", "page": "attempts", "tenant_ids": known, "filters": f,
        "rows": rows, "first": page.first, "last": page.first + len(rows) - 1, "total": page.total,
        "newer": f"{BASE}/attempts?{f.query(after=page.newer)}" if page.newer is not None else "",
        "older": f"{BASE}/attempts?{f.query(before=page.older)}" if page.older is not None else "",
        "newest": f"{BASE}/attempts?{f.query()}" if page.newer is not None else "",
        "codes": codes, "modes": modes, "zones": zone_names(), "per_choices": PER_PAGE_CHOICES,
        "scanned": len(scanned), "scan_limit": ATTEMPTS_SCANNED, "notices": query.notices,
        "show_tenant": len(known) > 1 and not f.tenant,
    }
    response = _render(request, "attempts.html", context, session=session)
    if query.remember_tz:
        _set_cookie(request, response, TZ_COOKIE, f.tz, TZ_COOKIE_SECONDS)
    return response


async def troubleshooting(request: web.Request) -> web.Response:
    session = await _session(request)
    doc = await asyncio.to_thread(guide)
    return _render(request, "troubleshooting.html", {"title": "Troubleshooting", "page": "troubleshooting",
                                                     "guide": doc}, session=session)


def routes() -> list[web.RouteDef]:
    return [web.get("/attempts", attempts), web.get("/troubleshooting", troubleshooting)]
