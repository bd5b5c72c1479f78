"""Bearer tokens of the bridge's APIs: SCIM provisioning (one tenant each) and the admin API (global or one tenant).

A token is 256 random bits (``secrets.token_urlsafe(32)``) behind a prefix naming its kind
(``lbscim_``, ``lbadmin_``) so that secret scanners and people can tell what leaked. Only its
SHA-256 is stored (``api_tokens``, migration 8): there is nothing to brute-force in 256 bits, and a
lookup is one indexed equality on the hash. The plaintext is returned once, by :func:`create_token`,
and never logged. A revoked token stops working at once on every instance (each request looks it
up); revocation is kept (``revoked_at``), not deleted, so ``list`` still shows what a name was.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bridge.errors import RequestError
from bridge.state.db import Database, Row
from bridge.state.records import _dt, _now, _ts

log = logging.getLogger(__name__)

TokenKind = Literal["scim", "admin"]
KINDS: tuple[TokenKind, ...] = ("scim", "admin")
_PREFIX = {"scim": "lbscim_", "admin": "lbadmin_"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,63}")
LAST_USED_PRECISION = timedelta(seconds=60)  # last_used_at is written at most once a minute per token
_COLUMNS = "id, kind, name, tenant_id, token_hash, created_at, last_used_at, revoked_at"
# A hash compared when no row matched, so a miss does the same work as a hit.
_NO_TOKEN = hashlib.sha256(b"loginbridge: no such token").digest()


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiToken:
    """A stored token (never its plaintext)."""

    id: int
    kind: TokenKind
    name: str
    tenant_id: str | None  # None: an admin token for every tenant
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _token(row: Row) -> ApiToken:
    kind = str(row[1])
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    return ApiToken(id=int(row[0]), kind="scim" if kind == "scim" else "admin", name=str(row[2]),
                    tenant_id=None if row[3] is None else str(row[3]), created_at=_dt(str(row[5])),
                    last_used_at=None if row[6] is None else _dt(str(row[6])),
                    revoked_at=None if row[7] is None else _dt(str(row[7])))


async def create_token(db: Database, *, kind: TokenKind, name: str, tenant_id: str | None,
                       now: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token; returns it and its plaintext, which is shown this once and stored nowhere.

    A SCIM token belongs to one tenant; an admin token to one tenant or (``tenant_id=None``) all.
    Names are for people and the audit trail: unique among the live tokens of a kind and tenant.
    """
    if kind not in KINDS:
        raise RequestError(f"unknown token kind {kind!r} (kinds: {', '.join(KINDS)})")
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise RequestError("a token name is 1 to 64 letters, digits, spaces or . _ @ : - (starting with a letter "
                           "or digit)")
    if kind == "scim" and tenant_id is None:
        raise RequestError("a SCIM token belongs to one tenant")
    async with db.transaction() as tx:
        same_tenant = "tenant_id IS NULL" if tenant_id is None else "tenant_id = ?"
        taken = await tx.fetchval(
            "SELECT count(*) FROM api_tokens WHERE kind = ? AND name = ? AND revoked_at IS NULL"  # noqa: S608
            f" AND {same_tenant}", (kind, name) if tenant_id is None else (kind, name, tenant_id))
        if int(taken or 0):
            raise RequestError(f"a live {kind} token named {name!r} already exists"
                               + (f" for tenant {tenant_id}" if tenant_id else ""))
        plaintext = _PREFIX[kind] + secrets.token_urlsafe(32)
        row = await tx.fetchone(
            f"INSERT INTO api_tokens (kind, name, tenant_id, token_hash, created_at) VALUES (?, ?, ?, ?, ?)"  # noqa: S608 (fixed text)
            f" RETURNING {_COLUMNS}", (kind, name, tenant_id, token_hash(plaintext), _ts(now or _now())))
    if row is None:
        raise RequestError("the token was not stored")
    token = _token(row)
    log.info("%s token %s (id %s) created for %s", kind, token.name, token.id, tenant_id or "every tenant")
    return token, plaintext


async def verify_token(db: Database, plaintext: str, *, kind: TokenKind,
                       now: datetime | None = None) -> ApiToken | None:
    """The live token of this kind whose plaintext this is, else None (unknown, revoked, another kind)."""
    if not plaintext.startswith(_PREFIX[kind]) or len(plaintext) > 128:
        hmac.compare_digest(token_hash(plaintext), _NO_TOKEN)
        return None
    wanted = token_hash(plaintext)
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = ?", (wanted,))  # noqa: S608
    stored = bytes(row[4]) if row is not None else _NO_TOKEN
    if not hmac.compare_digest(wanted, stored) or row is None:
        return None
    token = _token(row)
    if token.kind != kind or not token.active:
        return None
    when = now or _now()
    if token.last_used_at is None or not timedelta(0) <= when - token.last_used_at < LAST_USED_PRECISION:
        await db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (_ts(when), token.id))
    return token


async def list_tokens(db: Database, *, kind: TokenKind | None = None, tenant_id: str | None = None,
                      include_revoked: bool = True) -> list[ApiToken]:
    """Tokens in creation order, optionally of one kind and one tenant."""
    where: list[str] = []
    args: list[str] = []
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if tenant_id is not None:
        where.append("tenant_id = ?")
        args.append(tenant_id)
    if not include_revoked:
        where.append("revoked_at IS NULL")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM api_tokens{clause} ORDER BY id", args)  # noqa: S608
    return [_token(row) for row in rows]


async def revoke_token(db: Database, token_id: int, *, kind: TokenKind | None = None,
                       now: datetime | None = None) -> ApiToken:
    """Revoke a token at once (every instance refuses it from its next request); returns it."""
    args: list[str | int] = [_ts(now or _now()), token_id]
    clause = ""
    if kind is not None:
        clause = " AND kind = ?"
        args.append(kind)
    row = await db.fetchone(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"  # noqa: S608 (fixed text)
        f"{clause} RETURNING {_COLUMNS}", args)
    if row is None:
        raise RequestError(f"no {kind + ' ' if kind else ''}token with id {token_id}")
    token = _token(row)
    log.info("%s token %s (id %s) revoked", token.kind, token.name, token.id)
    return token


def token_json(token: ApiToken) -> dict[str, object]:
    """A token as ``list --json`` shows it (never the token itself)."""
    return {"id": token.id, "name": token.name, "tenant": token.tenant_id,
            "created_at": token.created_at.isoformat(),
            "last_used_at": None if token.last_used_at is None else token.last_used_at.isoformat(),
            "revoked_at": None if token.revoked_at is None else token.revoked_at.isoformat()}


def token_line(token: ApiToken) -> str:
    """A token as ``list`` shows it: id, tenant (``*``: every tenant), name, state, creation, last use."""
    used = "never used" if token.last_used_at is None else f"last used {token.last_used_at:%Y-%m-%d %H:%M}"
    state = "live" if token.revoked_at is None else f"revoked {token.revoked_at:%Y-%m-%d %H:%M}"
    created = f"created {token.created_at:%Y-%m-%d %H:%M}"
    return f"{token.id}\t{token.tenant_id or '*'}\t{token.name}\t{state}\t{created}\t{used}"
