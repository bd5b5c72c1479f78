"""The printer's jobs in the store (table ``print_jobs``, migration 5), shared by every instance.

Any instance answers for any job (its id comes from the store), and any instance delivers any
acknowledged job.  Three rules keep that safe:

- **Optimistic writes.**  Every row carries a ``version``; :meth:`JobStore.update` writes back only
  the version it read (``WHERE job_id = ? AND version = ?``) and raises :class:`JobChanged`
  otherwise.  A Cancel-Job racing with another instance's claim, or a Send-Document racing with
  the stale-job sweep, loses cleanly instead of overwriting.
- **Delivery leases.**  :meth:`JobStore.claim` turns due pending jobs - and processing jobs whose
  lease ran out (their instance died) - into processing jobs leased to the caller until
  ``lease_until``, in one statement (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so instances
  claiming together never wait on or take each other's rows; SQLite: one statement is one write
  transaction).  The worker renews its lease while it delivers (:meth:`renew`).  ``claims``
  counts claims and ``attempts`` failed ones: a claim that finds ``claims > attempts + 1`` knows
  an earlier claim ended without a verdict (its instance died mid-delivery), and the worker asks
  the sink first (the idempotency key makes a repeat harmless either way).
- **Durable acknowledgements.**  A job is committed before the client hears successful-ok: on
  PostgreSQL every commit is (``synchronous_commit`` on); on SQLite, where the store runs with
  ``synchronous=NORMAL`` for logins, the statements that create or queue a job run under
  ``synchronous=FULL``.

A lease names its instance ``host/pid/nonce``.  An instance restarted on the same host finds the
leases of its dead predecessors (same host, pid no longer alive) at start-up and releases them
at once instead of waiting for them to run out; it never touches a live process's lease.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.errors import StoreError
from bridge.state.db import Database, Row, decode_time
from printers.errors import JobChanged
from printers.ipp import Attribute
from printers.jobs import Job, JobState, Owner, decode_template, encode_template

log = logging.getLogger(__name__)

LEGACY_DB = "printer.db"
"""The printer's own SQLite file before the jobs moved into the store; imported once, then renamed."""

_COLUMNS = ("job_id, uuid, tenant_id, user_email, name, state, reasons, message, document_format,"
            " document_format_detected, document_name, document_file, document_bytes, incoming, template,"
            " created_at, processing_at, completed_at, attempts, next_attempt_at, idempotency_key, version, claims")
_SELECT = f"SELECT {_COLUMNS} FROM print_jobs"  # noqa: S608 (fixed text)
_INSERT = (
    "INSERT INTO print_jobs (uuid, tenant_id, user_email, user_email_lc, name, state, reasons, message,"
    " document_format, document_format_detected, document_name, document_file, document_bytes, incoming,"
    " template, created_at, processing_at, completed_at, attempts, next_attempt_at, idempotency_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A write keeps the lease only while the job stays processing (a verdict ends it).
_UPDATE = (
    "UPDATE print_jobs SET name = ?, state = ?, reasons = ?, message = ?, document_format = ?,"  # noqa: S608
    " document_format_detected = ?, document_name = ?, document_file = ?, document_bytes = ?, incoming = ?,"
    " processing_at = ?, completed_at = ?, attempts = ?, next_attempt_at = ?, version = version + 1,"
    " lease_owner = CASE WHEN ? = 5 THEN lease_owner END, lease_until = CASE WHEN ? = 5 THEN lease_until END"
    f" WHERE job_id = ? AND version = ? RETURNING {_COLUMNS}"
)
_DUE = "incoming = 0 AND ((state = 3 AND next_attempt_at <= ?) OR (state = 5 AND lease_until <= ?))"
_CLAIM_SET = (
    "UPDATE print_jobs SET state = 5, reasons = 'job-printing', message = 'Delivering to the platform.',"
    " processing_at = coalesce(processing_at, ?), lease_owner = ?, lease_until = ?, version = version + 1,"
    " claims = claims + 1"
)
_PICK = f"SELECT job_id FROM print_jobs WHERE {_DUE} ORDER BY job_id LIMIT ?"  # noqa: S608 (fixed text)
_CLAIM = {  # SQLite has no row locks: one statement is one write transaction there
    "sqlite": f"{_CLAIM_SET} WHERE job_id IN ({_PICK}) RETURNING {_COLUMNS}",
    "postgres": f"{_CLAIM_SET} WHERE job_id IN ({_PICK} FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}",
}
_WHICH = {
    "completed": ("state >= 7", "DESC"),
    "not-completed": ("state < 7", "ASC"),
    "all": ("1 = 1", "ASC"),
}


def instance_name() -> str:
    """This process's name on a lease: ``host/pid/nonce`` (the nonce tells a reused pid apart)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def _dead_here(owner: str, host: str) -> bool:
    """``owner`` is a process of this host that no longer runs."""
    parts = owner.split("/")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def _time(value: object) -> datetime | None:
    return None if value is None else decode_time(str(value))


def _job(row: Row) -> Job:
    created, next_attempt = _time(row[15]), _time(row[19])
    assert created is not None and next_attempt is not None
    return Job(
        job_id=int(row[0]), uuid=str(row[1]), owner=Owner(tenant_id=str(row[2]), email=str(row[3])),
        name=str(row[4]), state=JobState(int(row[5])), reasons=tuple(str(row[6]).split()), message=str(row[7]),
        document_format=row[8], document_format_detected=row[9], document_name=row[10], document_file=row[11],
        document_bytes=int(row[12]), incoming=bool(row[13]), template=decode_template(bytes(row[14])),
        created_at=created, processing_at=_time(row[16]), completed_at=_time(row[17]), attempts=int(row[18]),
        next_attempt_at=next_attempt, idempotency_key=str(row[20]), version=int(row[21]), claims=int(row[22]),
    )


class JobStore:
    """The printer's view of ``print_jobs`` on the store's database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, *, instance: str | None = None) -> None:
        self._db = db
        self.instance = instance or instance_name()

    @asynccontextmanager
    async def _durable(self) -> AsyncIterator[None]:
        """SQLite: this commit reaches the disk before the call returns (the store's default is NORMAL)."""
        if self._db.dialect != "sqlite":
            yield
            return
        await self._db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            await self._db.execute("PRAGMA synchronous=NORMAL")

    async def create(
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
        job_uuid: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """A new job, committed (durably) before this returns."""
        when = now or datetime.now(UTC)
        job_uuid = job_uuid or str(uuid.uuid4())
        async with self._durable():
            row = await self._db.fetchone(
                f"{_INSERT} RETURNING {_COLUMNS}",
                (job_uuid, owner.tenant_id, owner.email, owner.email.lower(), name, int(state), " ".join(reasons), "",
                 document_format, document_format_detected, document_name, document_file, document_bytes,
                 incoming, encode_template(template), when, None, None, 0, when, idempotency_key or job_uuid),
            )
        assert row is not None
        return _job(row)

    async def get(self, job_id: int) -> Job | None:
        if not -(2**31) <= job_id < 2**31:
            return None  # no such job-id on either engine (and PostgreSQL would refuse the comparison)
        row = await self._db.fetchone(f"{_SELECT} WHERE job_id = ?", (job_id,))
        return None if row is None else _job(row)

    async def update(self, job: Job, **changes: object) -> Job:
        """Write ``job`` with ``changes`` if nobody changed it since it was read; JobChanged otherwise."""
        new: Job = replace(job, **changes)  # type: ignore[arg-type]
        queued = job.incoming and not new.incoming
        params = (new.name, int(new.state), " ".join(new.reasons), new.message, new.document_format,
                  new.document_format_detected, new.document_name, new.document_file, new.document_bytes,
                  new.incoming, new.processing_at, new.completed_at, new.attempts, new.next_attempt_at,
                  int(new.state), int(new.state), job.job_id, job.version)
        if queued or new.document_file != job.document_file:
            async with self._durable():  # the client is told successful-ok right after this
                row = await self._db.fetchone(_UPDATE, params)
        else:
            row = await self._db.fetchone(_UPDATE, params)
        if row is None:
            raise JobChanged(f"job {job.job_id} changed meanwhile (another request or instance); try again")
        return _job(row)

    async def for_user(self, owner: Owner, *, which: str, limit: int | None) -> list[Job]:
        """The user's jobs, newest first for completed ones, oldest first otherwise (as CUPS does)."""
        clause, order = _WHICH.get(which, _WHICH["all"])
        sql = (f"{_SELECT} WHERE tenant_id = ? AND user_email_lc = ? AND {clause}"
               f" ORDER BY job_id {order}")
        params: tuple[object, ...] = (owner.tenant_id, owner.email.lower())
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        return [_job(r) for r in await self._db.fetchall(sql, params)]  # type: ignore[arg-type]

    async def active_count(self) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM print_jobs WHERE state < 7") or 0)

    async def intervening(self, job: Job) -> int:
        """Jobs ahead of ``job`` in the delivery queue."""
        return int(await self._db.fetchval("SELECT count(*) FROM print_jobs WHERE state < 7 AND job_id < ?",
                                           (job.job_id,)) or 0)

    # -- delivery ---------------------------------------------------------------------------------

    async def claim(self, *, now: datetime, lease: timedelta, limit: int = 4) -> list[Job]:
        """Due jobs (and jobs whose lease ran out), now processing and leased to this instance."""
        rows = await self._db.fetchall(
            _CLAIM[self._db.dialect], (now, self.instance, now + lease, now, now, limit))
        return sorted((_job(r) for r in rows), key=lambda j: j.job_id)

    async def renew(self, job_ids: list[int], *, until: datetime) -> int:
        """Extend this instance's leases on ``job_ids``; how many it still held."""
        renewed = 0
        for job_id in job_ids:
            renewed += await self._db.execute(
                "UPDATE print_jobs SET lease_until = ? WHERE job_id = ? AND state = 5 AND lease_owner = ?",
                (until, job_id, self.instance))
        return renewed

    async def release_dead_local_leases(self, now: datetime) -> int:
        """Leases of processes of this host that died: due at once (never a live process's lease)."""
        host = socket.gethostname()
        owners = await self._db.fetchall(
            "SELECT DISTINCT lease_owner FROM print_jobs WHERE state = 5 AND lease_until > ?", (now,))
        released = 0
        for (owner,) in owners:
            if owner and owner != self.instance and _dead_here(str(owner), host):
                released += await self._db.execute(
                    "UPDATE print_jobs SET lease_until = ? WHERE state = 5 AND lease_owner = ?", (now, owner))
        if released:
            log.info("delivery: %s job(s) of a stopped process on this host queued again", released)
        return released

    async def next_due_at(self) -> datetime | None:
        value = await self._db.fetchval(
            "SELECT min(next_attempt_at) FROM print_jobs WHERE state = 3 AND incoming = 0")
        return _time(value)

    async def next_lease_end(self) -> datetime | None:
        return _time(await self._db.fetchval("SELECT min(lease_until) FROM print_jobs WHERE state = 5"))

    async def stale_incoming(self, before: datetime) -> list[Job]:
        rows = await self._db.fetchall(f"{_SELECT} WHERE state < 7 AND incoming = 1 AND created_at < ?", (before,))
        return [_job(r) for r in rows]

    async def referenced_files(self) -> set[str]:
        """Spool files still needed: those of unfinished jobs."""
        rows = await self._db.fetchall(
            "SELECT document_file FROM print_jobs WHERE document_file IS NOT NULL AND state < 7")
        return {str(r[0]) for r in rows}

    # -- the printer's file before the store ------------------------------------------------------

    async def import_legacy(self, state_dir: Path) -> int:
        """Unfinished jobs of ``<state_dir>/printer.db`` (before migration 5) into the store, once.

        They keep their UUIDs and idempotency keys (a job delivered just before the upgrade is
        recognised by the platform) but get new job ids; the file is then renamed
        ``printer.db.imported``.  Finished jobs are history only and are not carried over.
        """
        path = state_dir / LEGACY_DB
        if not path.is_file():
            return 0
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows = conn.execute(
                    "SELECT uuid, tenant_id, user_email, name, state, reasons, message, document_format,"
                    " document_format_detected, document_name, document_file, document_bytes, incoming, template,"
                    " created_at, attempts, idempotency_key FROM jobs WHERE state < 7 ORDER BY job_id").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the previous printer job file {path}: {exc}") from exc
        imported = 0
        for r in rows:
            exists = await self._db.fetchval("SELECT count(*) FROM print_jobs WHERE uuid = ?", (r[0],))
            if exists:
                continue
            state = JobState.PENDING if int(r[4]) == JobState.PROCESSING else JobState(int(r[4]))
            await self.create(
                owner=Owner(tenant_id=r[1], email=r[2]), name=r[3], template=decode_template(bytes(r[13])),
                state=state, reasons=tuple(str(r[5]).split()), incoming=bool(r[12]), document_format=r[7],
                document_format_detected=r[8], document_name=r[9], document_file=r[10], document_bytes=int(r[11]),
                now=datetime.fromtimestamp(float(r[14]), UTC), job_uuid=r[0], idempotency_key=r[16])
            imported += 1
        path.rename(path.with_name(LEGACY_DB + ".imported"))
        log.info("printer: %s unfinished job(s) imported from %s into the store", imported, path)
        return imported
