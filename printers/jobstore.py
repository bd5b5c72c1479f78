"""The printer's job table: its own SQLite file, ``<state_dir>/printer.db``.

A separate file from the main database so the printer's write rate (one row
per job, several updates during delivery) never contends with logins.  Every
write commits with ``synchronous=FULL`` before the caller answers the client:
a successful-ok means the job survives a crash.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bridge.errors import StoreError
from printers.ipp import Attribute
from printers.jobs import Job, JobState, Owner, decode_template, encode_template

log = logging.getLogger(__name__)

DB_FILENAME = "printer.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    user_email TEXT NOT NULL,
    name TEXT NOT NULL,
    state INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    document_format TEXT,
    document_format_detected TEXT,
    document_name TEXT,
    document_file TEXT,
    document_bytes INTEGER NOT NULL DEFAULT 0,
    incoming INTEGER NOT NULL,
    template BLOB NOT NULL,
    created_at REAL NOT NULL,
    processing_at REAL,
    completed_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (user_email, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, incoming, next_attempt_at);
"""
_COLUMNS = ("job_id, uuid, tenant_id, user_email, name, state, reasons, message, document_format,"
            " document_format_detected, document_name, document_file, document_bytes, incoming, template,"
            " created_at, processing_at, completed_at, attempts, next_attempt_at, idempotency_key")


def _ts(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _row(row: sqlite3.Row) -> Job:
    created = _dt(row["created_at"])
    next_attempt = _dt(row["next_attempt_at"])
    assert created is not None and next_attempt is not None
    return Job(
        job_id=row["job_id"],
        uuid=row["uuid"],
        owner=Owner(tenant_id=row["tenant_id"], email=row["user_email"]),
        name=row["name"],
        state=JobState(row["state"]),
        reasons=tuple(row["reasons"].split()),
        message=row["message"],
        document_format=row["document_format"],
        document_format_detected=row["document_format_detected"],
        document_name=row["document_name"],
        document_file=row["document_file"],
        document_bytes=row["document_bytes"],
        incoming=bool(row["incoming"]),
        template=decode_template(row["template"]),
        created_at=created,
        processing_at=_dt(row["processing_at"]),
        completed_at=_dt(row["completed_at"]),
        attempts=row["attempts"],
        next_attempt_at=next_attempt,
        idempotency_key=row["idempotency_key"],
    )


class JobStore:
    """Jobs in SQLite; one connection used from the event-loop thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, state_dir: Path) -> JobStore:
        path = state_dir / DB_FILENAME
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the printer job database {path}: {exc}") from exc
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"printer job database: {exc}") from exc

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"printer job database: {exc}") from exc

    def create(
        self,
        *,
        owner: Owner,
        name: str,
        template: tuple[Attribute, ...],
        state: JobState,
        reasons: tuple[str, ...],
        incoming: bool,
        document_format: str | None = None,
        document_format_detected: str | None = None,
        document_name: str | None = None,
        document_file: str | None = None,
        document_bytes: int = 0,
        now: datetime | None = None,
    ) -> Job:
        when = now or datetime.now(UTC)
        job_uuid = str(uuid.uuid4())
        with self._tx() as conn:
            cur = conn.execute(
                f"INSERT INTO jobs ({_COLUMNS.replace('job_id, ', '', 1)}) VALUES"  # noqa: S608 - constant columns
                " (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0, ?, ?)",
                (job_uuid, owner.tenant_id, owner.email, name, int(state), " ".join(reasons), document_format,
                 document_format_detected, document_name, document_file, document_bytes, int(incoming),
                 encode_template(template), when.timestamp(), when.timestamp(), job_uuid),
            )
            job_id = cur.lastrowid
        assert job_id is not None
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: int) -> Job | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))  # noqa: S608
        return _row(rows[0]) if rows else None

    def save(self, job: Job) -> Job:
        """Write back the mutable fields of ``job``."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET name = ?, state = ?, reasons = ?, message = ?, document_format = ?,"
                " document_format_detected = ?, document_name = ?, document_file = ?, document_bytes = ?,"
                " incoming = ?, processing_at = ?, completed_at = ?, attempts = ?, next_attempt_at = ?"
                " WHERE job_id = ?",
                (job.name, int(job.state), " ".join(job.reasons), job.message, job.document_format,
                 job.document_format_detected, job.document_name, job.document_file, job.document_bytes,
                 int(job.incoming), _ts(job.processing_at), _ts(job.completed_at), job.attempts,
                 job.next_attempt_at.timestamp(), job.job_id),
            )
        return job

    def update(self, job: Job, **changes: object) -> Job:
        return self.save(replace(job, **changes))  # type: ignore[arg-type]

    def for_user(self, email: str, *, which: str, limit: int | None) -> list[Job]:
        """The user's jobs, newest first for completed ones, oldest first otherwise (as CUPS does)."""
        if which == "completed":
            clause, order = "state >= 7", "DESC"
        elif which == "not-completed":
            clause, order = "state < 7", "ASC"
        else:
            clause, order = "1 = 1", "ASC"
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE user_email = ? AND {clause} ORDER BY job_id {order}"  # noqa: S608
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row(r) for r in self._query(sql, (email,))]

    def active_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM jobs WHERE state < 7")[0][0])

    def intervening(self, job: Job) -> int:
        """Jobs ahead of ``job`` in the delivery queue."""
        rows = self._query("SELECT COUNT(*) FROM jobs WHERE state < 7 AND job_id < ?", (job.job_id,))
        return int(rows[0][0])

    def due(self, now: datetime, limit: int = 16) -> list[Job]:
        """Pending, complete jobs whose next delivery attempt is due."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = ? AND incoming = 0 AND next_attempt_at <= ?"  # noqa: S608
            " ORDER BY job_id LIMIT ?",
            (int(JobState.PENDING), now.timestamp(), limit),
        )
        return [_row(r) for r in rows]

    def next_due_at(self) -> datetime | None:
        rows = self._query("SELECT MIN(next_attempt_at) FROM jobs WHERE state = ? AND incoming = 0",
                           (int(JobState.PENDING),))
        return _dt(rows[0][0]) if rows and rows[0][0] is not None else None

    def stale_incoming(self, before: datetime) -> list[Job]:
        rows = self._query(f"SELECT {_COLUMNS} FROM jobs WHERE state < 7 AND incoming = 1"  # noqa: S608
                           " AND created_at < ?", (before.timestamp(),))
        return [_row(r) for r in rows]

    def interrupted(self) -> list[Job]:
        """Jobs a previous process was delivering when it stopped."""
        rows = self._query(f"SELECT {_COLUMNS} FROM jobs WHERE state = ?",  # noqa: S608
                           (int(JobState.PROCESSING),))
        return [_row(r) for r in rows]

    def referenced_files(self) -> set[str]:
        """Spool files still needed: those of unfinished jobs.

        A finished job's row keeps its file name (number-of-documents), but the
        file itself may be left only by a crash between the final commit and
        its removal; the spool removes it at start-up.
        """
        rows = self._query("SELECT document_file FROM jobs WHERE document_file IS NOT NULL AND state < ?",
                           (int(JobState.CANCELED),))
        return {r[0] for r in rows}
