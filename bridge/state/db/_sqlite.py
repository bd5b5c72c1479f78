"""SQLite: one connection; statements run inline on the event loop, a busy write lock is waited for in a thread.

Why inline (measured on this project's 2-core VM, ext4, WAL + synchronous=NORMAL, Python
3.11, SQLite 3.40.1; 20,000 calls each through this class, the machine busy with other tests):

- a SELECT by primary key costs 23-30 µs per call (p50; p99 50-140 µs), an autocommit
  INSERT 44-58 µs, an upsert with RETURNING 35-48 µs, a two-statement transaction
  65-90 µs (p99 of the writes 120-250 µs);
- the outliers are WAL auto-checkpoints (every ~1000 pages, one fsync): p99.9 of the
  writes 3-10 ms, worst seen 10-30 ms: about one write in a thousand;
- the same SELECT handed to a single worker thread costs 160-230 µs (p50, against
  12-20 µs inline for the bare sqlite3 call): the thread hop is ~10x the statement, on
  every call, to save a rare checkpoint stall that is shorter than one IdP round trip.

So statements run inline. The one thing that could block the loop for long is another
process (``loginbridge`` CLI commands share the file) holding the write lock: SQLite
would sleep in its busy handler for up to ``busy_timeout``. That is why the connection
runs with ``busy_timeout=0`` inline: a statement that meets the lock fails at once with
SQLITE_BUSY *before doing anything*, and is run again in a single worker thread with the
configured busy timeout (5 s, as the store had), so the wait happens off the loop. Other
callers of this database queue on an asyncio lock meanwhile, not on the loop.

An asyncio lock serialises the connection: a transaction holds it from ``BEGIN
IMMEDIATE`` to ``COMMIT``, so another task's statements never land inside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from bridge.errors import StoreConflict, StoreError
from bridge.state.db._common import (
    Connection,
    Database,
    DbValue,
    Row,
    TransactionBase,
    wait_uncancellable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
PING_TIMEOUT = 2.0  # seconds (a transaction of another task may hold the connection meanwhile)
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a write waits (in the worker thread) for another process's write lock
# RETURNING (used by the store's upserts) needs SQLite >= 3.35; Python 3.11's bundled SQLite here is 3.40.1.
MIN_SQLITE_VERSION = (3, 35, 0)
_SQLITE_BUSY = 5
_SQLITE_BUSY_SNAPSHOT = 517  # a stale read snapshot: waiting cannot help (we never upgrade read transactions)
_UNIQUE_CODES = frozenset({1555, 2067, 2579})  # CONSTRAINT_PRIMARYKEY, CONSTRAINT_UNIQUE, CONSTRAINT_ROWID


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == _SQLITE_BUSY and code != _SQLITE_BUSY_SNAPSHOT


def _store_error(exc: sqlite3.Error, sql: str, *, busy_timeout: float | None = None) -> StoreError:
    where = " ".join(sql.split())[:120]
    if isinstance(exc, sqlite3.IntegrityError) and getattr(exc, "sqlite_errorcode", None) in _UNIQUE_CODES:
        return StoreConflict(f"duplicate key: {exc} (in: {where})")
    if busy_timeout is not None and _is_busy(exc):
        return StoreError(f"database is locked by another connection for more than {busy_timeout:g} s: {exc} "
                          f"(in: {where})")
    return StoreError(f"database error: {exc} (in: {where})")


# -- the statements, run on the connection (inline, or in the worker thread) -------------------------


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[DbValue, ...]) -> int:
    cursor = conn.execute(sql, params)
    try:
        if cursor.description is not None:  # a SELECT, or DML with RETURNING: the rows it gave
            return len(cursor.fetchall())
        return max(cursor.rowcount, 0)
    finally:
        cursor.close()


def _executemany(conn: sqlite3.Connection, sql: str, seq: list[tuple[DbValue, ...]]) -> int:
    cursor = conn.executemany(sql, seq)
    try:
        return max(cursor.rowcount, 0)
    finally:
        cursor.close()


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[DbValue, ...], one: bool) -> list[Row]:
    cursor = conn.execute(sql, params)
    try:
        if one:
            row = cursor.fetchone()
            return [] if row is None else [row]
        return cursor.fetchall()
    finally:
        # Resets the statement: ends an autocommit write's implicit transaction and a read's snapshot.
        cursor.close()


class _SqliteTransaction(TransactionBase):
    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__()
        self._db = db

    async def _tx_execute(self, sql: str, params: tuple[DbValue, ...]) -> int:
        return await self._db._call(lambda conn: _execute(conn, sql, params), sql)

    async def _tx_executemany(self, sql: str, seq: list[tuple[DbValue, ...]]) -> int:
        return await self._db._call(lambda conn: _executemany(conn, sql, seq), sql)

    async def _tx_fetch(self, sql: str, params: tuple[DbValue, ...], *, one: bool) -> list[Row]:
        return await self._db._call(lambda conn: _fetch(conn, sql, params, one), sql)


class SqliteDatabase(Database):
    """One SQLite file (or ``:memory:``): WAL, synchronous=NORMAL, foreign keys on."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self._conn = conn
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None  # the task inside transaction(), if any
        self._thread: ThreadPoolExecutor | None = None
        self._closed = False

    @classmethod
    def open(cls, path: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> SqliteDatabase:
        """Open (creating with mode 0600) ``path``, or an in-memory database for ``:memory:``."""
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: RETURNING needs 3.35 or newer")
        memory = path == ":memory:"
        try:
            if not memory:
                # Created 0600 before SQLite opens it (its -wal and -shm files copy the mode).
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
            conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            # At start-up blocking is fine: the pragmas may wait for another process (timeout above).
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is durable once the WAL is synced at the next checkpoint; a power cut
            # can lose the last few sessions/audit rows but never corrupts the file (FULL: an fsync per commit).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=0")  # inline calls never sleep on a lock: see the module docstring
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot set up database {path}: {exc}") from exc
        return cls(conn, path, busy_timeout=busy_timeout)

    @property
    def url(self) -> str:
        return "sqlite:///:memory:" if self.path == ":memory:" else f"sqlite://{self.path}"

    # -- running statements ---------------------------------------------------------------------

    async def _call(self, work: Callable[[sqlite3.Connection], T], sql: str) -> T:
        """Run ``work`` inline; when another connection holds the write lock, again in the worker thread."""
        try:
            return work(self._conn)
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise _store_error(exc, sql) from exc
        # SQLITE_BUSY: nothing was done; wait for the lock off the event loop.
        future = asyncio.get_running_loop().run_in_executor(self._worker(), self._waiting, work)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await wait_uncancellable(future)  # the connection is in use until the thread is done with it
            raise
        except sqlite3.Error as exc:
            raise _store_error(exc, sql, busy_timeout=self.busy_timeout) from exc

    def _waiting(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self._conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000):d}")
        try:
            return work(self._conn)
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    def _worker(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-busy")
        return self._thread

    def _check_not_owner(self) -> None:
        if self._owner is not None and self._owner is asyncio.current_task():
            raise RuntimeError("this task is inside a transaction of this database: run the statement on the "
                               "connection transaction() gave (waiting for the database here would deadlock)")

    async def _execute(self, sql: str, params: tuple[DbValue, ...]) -> int:
        self._check_not_owner()
        async with self._lock:
            return await self._call(lambda conn: _execute(conn, sql, params), sql)

    async def _executemany(self, sql: str, seq: list[tuple[DbValue, ...]]) -> int:
        self._check_not_owner()
        async with self._lock:
            return await self._call(lambda conn: _executemany(conn, sql, seq), sql)

    async def _fetch(self, sql: str, params: tuple[DbValue, ...], *, one: bool) -> list[Row]:
        self._check_not_owner()
        async with self._lock:
            return await self._call(lambda conn: _fetch(conn, sql, params, one), sql)

    # -- transactions -----------------------------------------------------------------------------

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:  # a closed connection raises here already
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the connection is unusable; the error being raised says why
            log.warning("rollback failed on %s: %s", self.url, exc)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        self._check_not_owner()
        async with self._lock:
            try:
                await self._call(lambda conn: conn.execute("BEGIN IMMEDIATE").close(), "BEGIN IMMEDIATE")
            except BaseException:
                self._rollback()  # cancelled while the thread's BEGIN succeeded
                raise
            tx = _SqliteTransaction(self)
            self._owner = asyncio.current_task()
            try:
                try:
                    yield tx
                except BaseException:
                    self._rollback()
                    raise
                if tx.failed is not None:
                    self._rollback()
                    raise StoreError(f"transaction rolled back: a statement in it failed ({tx.failed})") \
                        from tx.failed
                try:
                    await self._call(lambda conn: conn.execute("COMMIT").close(), "COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            finally:
                tx.closed = True
                self._owner = None

    # -- life cycle -------------------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await self.fetchval("SELECT count(*) FROM sqlite_master")
        except (StoreError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._check_not_owner()
        async with self._lock:  # lets a running transaction finish
            self._closed = True
            self._conn.close()
        if self._thread is not None:
            self._thread.shutdown(wait=False)
