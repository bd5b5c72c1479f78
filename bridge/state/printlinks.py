"""Personal printer URLs: ``ipps://HOST:PORT/ipp/print/u/TOKEN``, a print queue that needs no password.

Print clients that never prompt for credentials (Windows' IPP class driver retries a 401
silently; many phone print apps cannot store a password) can still print as their user:
the secret part of the URL names the user. The token is 192 random bits behind the
prefix ``lbp_`` (secret scanners and people can tell what leaked); only its SHA-256 is
stored (``printer_links``, migration 12), so the store never holds a usable URL, and a
lookup is one indexed equality on the hash. A link expires (the tenant's
``printer_link_days``), is listed and revoked by the user's administrators, and is
deleted with the user's sessions when the user is disabled or deleted
(:meth:`bridge.state.store.Store.deactivate_user`): it stops working at once on every
instance, because every request looks it up.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from bridge.config import BridgeConfig
from bridge.errors import RequestError
from bridge.state.db import Database, Row
from bridge.state.records import _dt, _now, _ts, normalize_email, tenant_user_filter

log = logging.getLogger(__name__)

PREFIX = "lbp_"
TOKEN_PATTERN = re.compile(r"lbp_[A-Za-z0-9_-]{32}")
LAST_USED_PRECISION = timedelta(seconds=60)  # last_used_at is written at most once a minute per link
MAX_LINKS_PER_USER = 20
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_COLUMNS = "id, tenant_id, email, label, created_by, created_at, expires_at, last_used_at"
# A hash compared when no row matched, so a miss does the same work as a hit.
_NO_TOKEN = hashlib.sha256(b"loginbridge: no such printer link").digest()


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterLink:
    """A stored personal printer link (never its token)."""

    id: int
    tenant_id: str
    email: str
    label: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def queue_url(config: BridgeConfig, token: str, *, port: int | None = None) -> str:
    """The personal queue URL: the bridge's public host, the printer's port, ``ipps`` when TLS is configured.

    ``port`` is the bound port when known (a listener on port 0); the host comes from ``public_url``,
    never from a request header.
    """
    printer = config.printer
    if printer is None:
        raise RequestError("this bridge has no printer")
    host = urlsplit(config.public_url).hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    scheme = "ipps" if printer.tls is not None else "ipp"
    return f"{scheme}://{host}:{port or printer.port}/ipp/print/u/{token}"


def link_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _link(row: Row) -> PrinterLink:
    return PrinterLink(id=int(row[0]), tenant_id=str(row[1]), email=str(row[2]), label=str(row[3]),
                       created_by=str(row[4]), created_at=_dt(str(row[5])), expires_at=_dt(str(row[6])),
                       last_used_at=None if row[7] is None else _dt(str(row[7])))


async def create_link(db: Database, *, tenant_id: str, email: str, label: str, created_by: str, lifetime: timedelta,
                      now: datetime | None = None) -> tuple[PrinterLink, str]:
    """A new link for an existing user; returns it and its token, shown this once and stored nowhere.

    A user keeps at most :data:`MAX_LINKS_PER_USER` live links: the oldest go first.
    """
    label = label.strip() or "printer"
    if not _LABEL.fullmatch(label):
        raise RequestError("a printer link's label is 1 to 64 characters without control characters")
    when = now or _now()
    email_lc = normalize_email(email)
    token = PREFIX + secrets.token_urlsafe(24)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM printer_links WHERE tenant_id = ? AND email_lc = ? AND expires_at <= ?",
                         (tenant_id, email_lc, _ts(when)))
        ids = [int(r[0]) for r in await tx.fetchall(
            "SELECT id FROM printer_links WHERE tenant_id = ? AND email_lc = ? ORDER BY created_at DESC, id DESC",
            (tenant_id, email_lc))]
        for old in ids[MAX_LINKS_PER_USER - 1:]:
            await tx.execute("DELETE FROM printer_links WHERE id = ?", (old,))
        row = await tx.fetchone(
            "INSERT INTO printer_links (tenant_id, email, email_lc, token_hash, label, created_by, created_at,"  # noqa: S608
            f" expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
            (tenant_id, email.strip(), email_lc, link_hash(token), label, created_by[:128], _ts(when),
             _ts(when + lifetime)))
    if row is None:
        raise RequestError("the printer link was not stored")
    link = _link(row)
    log.info("printer link %s created for %s in tenant %s by %s", link.id, email_lc, tenant_id, created_by)
    return link, token


async def resolve_link(db: Database, token: str, *, now: datetime | None = None) -> PrinterLink | None:
    """The live link this token belongs to, else None (malformed, unknown, expired or revoked)."""
    if not TOKEN_PATTERN.fullmatch(token):
        hmac.compare_digest(link_hash(token[:64]), _NO_TOKEN)
        return None
    wanted = link_hash(token)
    row = await db.fetchone(f"SELECT {_COLUMNS}, token_hash FROM printer_links WHERE token_hash = ?",  # noqa: S608
                            (wanted,))
    stored = bytes(row[8]) if row is not None else _NO_TOKEN
    if not hmac.compare_digest(wanted, stored) or row is None:
        return None
    link = _link(row)
    when = now or _now()
    if link.expired(when):
        return None
    if link.last_used_at is None or not timedelta(0) <= when - link.last_used_at < LAST_USED_PRECISION:
        await db.execute("UPDATE printer_links SET last_used_at = ? WHERE id = ?", (_ts(when), link.id))
    return link


async def list_links(db: Database, *, tenant_id: str | None = None, email: str | None = None,
                     limit: int = 500) -> list[PrinterLink]:
    """Links, newest first: all, one tenant's, or one user's (``email`` needs ``tenant_id``)."""
    clause, params = tenant_user_filter(tenant_id, email)
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM printer_links{clause} ORDER BY created_at DESC, id DESC"  # noqa: S608
                          " LIMIT ?", (*params, limit))
    return [_link(r) for r in rows]


async def revoke_link(db: Database, link_id: int, *, tenant_id: str | None = None) -> PrinterLink | None:
    """Delete a link (within ``tenant_id`` when given); the link that was, or None."""
    async with db.transaction() as tx:
        row = await tx.fetchone(f"SELECT {_COLUMNS} FROM printer_links WHERE id = ?", (link_id,))  # noqa: S608
        if row is None or (tenant_id is not None and str(row[1]) != tenant_id):
            return None
        await tx.execute("DELETE FROM printer_links WHERE id = ?", (link_id,))
    link = _link(row)
    log.info("printer link %s of %s in tenant %s revoked", link.id, link.email, link.tenant_id)
    return link


async def prune_links(db: Database, now: datetime) -> int:
    """Remove expired links."""
    return await db.execute("DELETE FROM printer_links WHERE expires_at <= ?", (_ts(now),))
