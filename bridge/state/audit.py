"""The audit trail: every login attempt and every spray block, as JSON lines and in the database.

The file is append-only (opened with ``O_APPEND``, one line per event, flushed
at once) so an administrator can ``tail -f`` it or ship it to a SIEM; the
database copy serves ``loginbridge audit tail``.  An event never holds a
password, a device secret, a session token or an assertion: only who, where,
how and the result code.

Some of that is what a client sent (the email typed, a claimed device id), so
an event holds only text every sink can take: control, format and separator
characters and lone surrogates are written as ``\\uXXXX`` (a line of the file
stays one line, a terminal running ``audit tail`` gets no escape sequences,
UTF-8 and SQLite take every row), and each field is capped in length.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

log = logging.getLogger(__name__)

RESULT_OK = "ok"
MAX_FIELD_CHARS = 512
_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format, lone surrogates, line/paragraph separators


def audit_text(value: str) -> str:
    """``value`` as the audit records it: unsafe code points as ``\\uXXXX`` (``\\UXXXXXXXX``), at most
    :data:`MAX_FIELD_CHARS` characters (the cut marked with an ellipsis).  Idempotent."""
    if not value.isprintable():  # the fast path is every ordinary value; this also catches NBSP and friends
        value = "".join(
            (f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
            if unicodedata.category(ch) in _ESCAPED else ch
            for ch in value
        )
    if len(value) > MAX_FIELD_CHARS:
        value = value[:MAX_FIELD_CHARS - 1] + "\u2026"
    return value


class AuditKind(enum.Enum):
    LOGIN = "login"
    SPRAY_DETECTED = "spray_detected"
    DEVICE_CHANGED = "device_changed"  # enabled/disabled by a technician (result says which)
    PROVISIONING = "provisioning"  # a user or group written over SCIM (result says what; actor: the token's name)
    DIRECTORY_SYNC = "directory_sync"  # an account created/updated/re-enabled/disabled by the directory sync
    ADMIN_CHANGE = "admin_change"  # a change through the admin API (result says what; actor: the token's name)


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEvent:
    """One line of the audit trail; ``id`` is set once the database has it."""

    at: datetime
    kind: AuditKind
    result: str
    tenant_id: str | None = None
    device_id: str | None = None
    mode: str | None = None
    email: str | None = None
    source: str | None = None
    idp_latency_ms: int | None = None
    request_id: str | None = None
    distinct_users: int | None = None
    actor: str | None = None  # who made a change through an API: the bearer token's name (never the token)
    reason: str | None = None  # the specific check that refused an attempt (e.g. not_yet_valid), set by the bridge
    id: int | None = None

    def __post_init__(self) -> None:
        # Frozen: the one place the text fields are made safe, whoever built the event.
        object.__setattr__(self, "result", audit_text(self.result))
        for name in ("tenant_id", "device_id", "mode", "email", "source", "request_id", "actor", "reason"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, audit_text(value))

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "time": self.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": self.kind.value,
            "tenant": self.tenant_id,
            "device": self.device_id,
            "mode": self.mode,
            "email": self.email,
            "source": self.source,
            "result": self.result,
            "idp_latency_ms": self.idp_latency_ms,
            "request_id": self.request_id,
        }
        if self.distinct_users is not None:
            body["distinct_users"] = self.distinct_users
        if self.actor is not None:
            body["actor"] = self.actor
        if self.reason is not None:
            body["reason"] = self.reason
        if self.id is not None:
            body["id"] = self.id
        return body

    def line(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)


class AuditSink(Protocol):
    """Where the database copy goes: the store implements it, so this module never imports the store."""

    async def add_audit_event(self, event: AuditEvent) -> int: ...


class AuditLog:
    """Writes each event to the JSON-lines file and the store; a write failure is logged, not raised.

    Failing open is deliberate: a full disk must not stop every device in the
    building from signing in; the error is logged at ERROR for monitoring.
    """

    def __init__(self, path: Path | None, store: AuditSink | None) -> None:
        self.path = path
        self._store = store
        self._file: IO[str] | None = None

    def open(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def record(self, event: AuditEvent) -> None:
        if self._store is not None:
            try:
                event_id = await self._store.add_audit_event(event)
            except Exception:
                log.exception("cannot write the audit event to the database")
            else:
                event = replace(event, id=event_id)
        if self._file is not None:
            try:
                self._file.write(event.line() + "\n")
                self._file.flush()
            except (OSError, ValueError) as exc:  # ValueError: the file was closed under us
                log.error("cannot append to the audit file %s: %s", self.path, getattr(exc, "strerror", None) or exc)

