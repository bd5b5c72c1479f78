"""PostgreSQL: psycopg 3 (async) through a psycopg_pool pool that never blocks the event loop.

- Connections are in autocommit: a single statement is its own transaction;
  :meth:`PostgresDatabase.transaction` sends ``BEGIN``/``COMMIT``/``ROLLBACK`` itself on one
  pooled connection. psycopg prepares a statement after it ran 5 times on a connection
  (``prepare_threshold``), so the store's hot statements run prepared.
- Checkouts cost no round trip (``_check_idle``, the pool's ``check``): a connection idle in the
  pool has nothing to read, so a zero-timeout ``poll()`` of its socket tells a live one from one
  the server closed (a restart or a stop: EOF or its FATAL message make it readable). Only a
  readable one is checked with an empty query, and closed when that fails, so the pool discards
  it and never hands it out. Before, every checkout ran ``check_connection`` (an empty
  query, one round trip per statement). A connection that breaks *under* a statement fails that
  statement (StoreUnavailable, 503; never retried: a write must not be applied twice) and the
  pool discards it when it comes back.
- :meth:`PostgresDatabase.batch` sends a fixed list of statements in one pipeline with a single
  Sync: one round trip, and one implicit transaction (an error rolls all of them back; each
  statement takes its own snapshot, so a lock taken by the first is held while the later ones
  read). The throttle's admission (advisory lock + conditional INSERT) is one such batch instead
  of BEGIN, lock, INSERT, COMMIT.
- Failing fast: a checkout waits at most ``pool_timeout`` (2 s) and a new connection at most
  libpq's ``connect_timeout`` (the same, at least 2 s, libpq's floor); a statement with its
  checkout at most ``command_timeout`` (10 s). Then StoreError, with the last connection
  error in its detail (``password authentication failed``, ``No such file or directory``...).
- Recovering by itself: the pool's reconnection back-off is capped by ``reconnect_timeout``
  (3 s, instead of psycopg_pool's 5 minutes, whose doubling delays would leave a pool idle
  for a minute or more after the server came back); after that the next call that needs a
  connection starts a new attempt. Measured: the first call after the server is back
  succeeds, in 12-26 ms, after outages of 0.5, 6 and 12 s with calls failing meanwhile and
  after an idle 10 s outage.

Cost per call (PostgreSQL 15 on its Unix socket, the same loaded 2-core VM as the SQLite
figures): a psycopg statement costs 130-190 µs of client CPU however small (one suspension of the
task: send, add_reader, the loop's epoll, recv), and this class adds 50 µs (checkout and return
20 µs, ``asyncio.timeout`` 12 µs); a two-statement batch 270 µs against 700 µs for BEGIN, two
statements and COMMIT. Before: a single statement 0.55-0.9 ms p50 wall with its checked checkout
(0.48 ms without the check). The cost is per statement, about 5x SQLite's inline call even
without the round trip: the store should not add statements per login.

A successful WS-Trust user-prompt login (bench/cluster.py, N=300, C=8, 2-core VM shared with
other engineers' test runs): 21 statements and round trips on PostgreSQL before (9 of them the
checkout's empty query; the admission BEGIN, lock, INSERT, COMMIT), now 8 round trips and 9
statements (device, actor state, user, the admission batch of 2, replay cache, session, the
success's ticket-back-and-reset in one statement, audit row). Bridge CPU per login on PostgreSQL,
quiet machine: 9.77 ms before, 6.77-7.80 ms after. SQLite's figure moved between runs more than
the change did (3.30-5.83 ms), so the ratio is not settled: 2.29x before (against 4.27 ms); after,
1.22x and 1.23x in two runs on the working tree, 2.36x in one run on a snapshot (SQLite at 3.30
ms), 1.48x of the minima over three alternating runs under load. Compare alternating rounds, not
single runs. What remains is psycopg's fixed cost per statement (above).
"""

from __future__ import annotations

import asyncio
import logging
import math
import select
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Self, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from bridge.errors import StoreConflict, StoreError, StoreUnavailable
from bridge.state.db._common import (
    DEFAULT_COMMAND_TIMEOUT,
    Connection,
    Database,
    DbValue,
    Row,
    TransactionBase,
    to_pyformat,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
PgConnection = psycopg.AsyncConnection[TupleRow]
DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
DEFAULT_POOL_TIMEOUT = 2.0
DEFAULT_RECONNECT_TIMEOUT = 3.0

# -- errors ---------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _ConnectFailures:
    """The last error of a new connection (the pool only says "couldn't get a connection")."""

    def __init__(self) -> None:
        self.last: str | None = None


def _connection_class(failures: _ConnectFailures) -> type[PgConnection]:
    class _RecordingConnection(psycopg.AsyncConnection[TupleRow]):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                conn = await super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                failures.last = _one_line(exc)
                raise
            failures.last = None
            return conn

    return _RecordingConnection


# -- the database ---------------------------------------------------------------------------------


async def _check_idle(conn: PgConnection) -> None:
    """The pool's checkout check, without a round trip while nothing is wrong (see the module docstring).

    A connection idle in the pool has nothing to read: when its socket is readable the server
    closed it (a restart: EOF, or its FATAL message) or sent a notice. Only then is it checked
    with an empty query, which consumes a notice and fails on a closed connection; a connection
    that fails is closed, so the pool discards it (and opens a new one) instead of taking it back.
    """
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    poll = select.poll()
    poll.register(pgconn.socket, select.POLLIN)
    if not poll.poll(0):
        return
    try:
        await conn.execute("")
    except BaseException:
        await conn.close()
        raise


def _gave_rows(cursor: psycopg.AsyncCursor[TupleRow]) -> bool:
    """Whether the statement gave a result set (a SELECT, or DML with RETURNING); ``cursor.description`` without
    building its Column objects."""
    result = cursor.pgresult
    return result is not None and (result.nfields > 0 or result.status == pq.ExecStatus.TUPLES_OK)


async def _batch(conn: PgConnection, statements: list[tuple[str, tuple[DbValue, ...]]]) -> list[list[Row]]:
    """The statements in one pipeline: one Sync, so one implicit transaction, and one round trip."""
    cursors: list[psycopg.AsyncCursor[TupleRow]] = []
    async with conn.pipeline():
        for sql, params in statements:
            cursor = conn.cursor()
            cursors.append(cursor)
            await cursor.execute(to_pyformat(sql), params)
    return [await cursor.fetchall() if _gave_rows(cursor) else [] for cursor in cursors]


async def _execute(conn: PgConnection, query: str, params: tuple[DbValue, ...]) -> int:
    async with conn.cursor() as cursor:
        await cursor.execute(query, params)
        if _gave_rows(cursor):  # a SELECT, or DML with RETURNING: the rows it gave
            return len(await cursor.fetchall())
        return max(cursor.rowcount, 0)


async def _executemany(conn: PgConnection, query: str, seq: list[tuple[DbValue, ...]]) -> int:
    async with conn.cursor() as cursor:
        await cursor.executemany(query, seq)
        return max(cursor.rowcount, 0)


async def _fetch(conn: PgConnection, query: str, params: tuple[DbValue, ...], one: bool) -> list[Row]:
    async with conn.cursor() as cursor:
        await cursor.execute(query, params)
        if not _gave_rows(cursor):  # no result set (as SQLite: no rows)
            return []
        if one:
            row = await cursor.fetchone()
            return [] if row is None else [row]
        return await cursor.fetchall()


class _PostgresTransaction(TransactionBase):
    def __init__(self, db: PostgresDatabase, conn: PgConnection) -> None:
        super().__init__()
        self._db = db
        self._conn = conn

    async def _tx_execute(self, sql: str, params: tuple[DbValue, ...]) -> int:
        return await self._db._on(self._conn, sql, lambda conn: _execute(conn, to_pyformat(sql), params))

    async def _tx_executemany(self, sql: str, seq: list[tuple[DbValue, ...]]) -> int:
        return await self._db._on(self._conn, sql, lambda conn: _executemany(conn, to_pyformat(sql), seq))

    async def _tx_fetch(self, sql: str, params: tuple[DbValue, ...], *, one: bool) -> list[Row]:
        return await self._db._on(self._conn, sql, lambda conn: _fetch(conn, to_pyformat(sql), params, one))


class PostgresDatabase(Database):
    """A PostgreSQL database through an :class:`AsyncConnectionPool` (see the module docstring)."""

    dialect = "postgres"

    def __init__(self, pool: AsyncConnectionPool[PgConnection], *, url: str, pool_timeout: float,
                 command_timeout: float, failures: _ConnectFailures) -> None:
        self.pool = pool
        self._url = url
        self.pool_timeout = pool_timeout
        self.command_timeout = command_timeout
        self._failures = failures

    @classmethod
    async def open(cls, conninfo: str, *, url: str, min_size: int = DEFAULT_MIN_SIZE,
                   max_size: int = DEFAULT_MAX_SIZE, pool_timeout: float = DEFAULT_POOL_TIMEOUT,
                   command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
                   reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT) -> PostgresDatabase:
        """Open the pool and wait (``pool_timeout``) for its first ``min_size`` connections.

        ``conninfo`` is any libpq URL or key=value string; ``url`` its display form (no password).
        """
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(conninfo):
            kwargs["connect_timeout"] = max(2, math.ceil(pool_timeout))  # libpq: whole seconds, at least 2
        failures = _ConnectFailures()
        pool: AsyncConnectionPool[PgConnection] = AsyncConnectionPool(
            conninfo, connection_class=_connection_class(failures), kwargs=kwargs, min_size=min_size,
            max_size=max_size, open=False, check=_check_idle, timeout=pool_timeout,
            reconnect_timeout=reconnect_timeout, name=f"store {url}",
        )
        try:
            await pool.open(wait=True, timeout=pool_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot connect to {url} within {pool_timeout:g} s: "
                             f"{failures.last or _one_line(exc)}") from exc
        except psycopg.Error as exc:
            await pool.close()
            raise StoreError(f"cannot open the pool for {url}: {_one_line(exc)}") from exc
        return cls(pool, url=url, pool_timeout=pool_timeout, command_timeout=command_timeout, failures=failures)

    @property
    def url(self) -> str:
        return self._url

    def _store_error(self, exc: BaseException, sql: str) -> StoreError:
        where = " ".join(sql.split())[:120]
        if isinstance(exc, pg_errors.UniqueViolation):
            return StoreConflict(f"duplicate key: {_one_line(exc)} (in: {where})")
        if isinstance(exc, PoolTimeout):
            last = self._failures.last
            why = f"; last connection error: {last}" if last else " (all connections busy)"
            return StoreUnavailable(f"database unavailable: no connection within {self.pool_timeout:g} s{why}")
        if isinstance(exc, PoolClosed):
            return StoreError(f"the database {self._url} is closed")
        if isinstance(exc, TimeoutError):
            return StoreUnavailable(f"the database did not answer within {self.command_timeout:g} s (in: {where})")
        if isinstance(exc, psycopg.OperationalError):  # the connection broke under the statement
            return StoreUnavailable(f"database connection lost: {_one_line(exc)} (in: {where})")
        state = getattr(exc, "sqlstate", None)
        return StoreError(f"database error{f' {state}' if state else ''}: {_one_line(exc)} (in: {where})")

    # -- running statements ---------------------------------------------------------------------

    async def _single(self, sql: str, work: Callable[[PgConnection], Awaitable[T]]) -> T:
        """Check a connection out, run ``work`` on it (autocommit), give it back; all within command_timeout."""
        try:
            async with asyncio.timeout(self.command_timeout):
                conn = await self.pool.getconn(timeout=self.pool_timeout)
                try:
                    return await work(conn)
                finally:
                    await self.pool.putconn(conn)
        except (psycopg.Error, TimeoutError) as exc:
            raise self._store_error(exc, sql) from exc

    async def _on(self, conn: PgConnection, sql: str, work: Callable[[PgConnection], Awaitable[T]]) -> T:
        """Run ``work`` on a connection already checked out (a transaction's), within command_timeout."""
        try:
            async with asyncio.timeout(self.command_timeout):
                return await work(conn)
        except (psycopg.Error, TimeoutError) as exc:
            raise self._store_error(exc, sql) from exc

    async def _execute(self, sql: str, params: tuple[DbValue, ...]) -> int:
        query = to_pyformat(sql)
        return await self._single(sql, lambda conn: _execute(conn, query, params))

    async def _executemany(self, sql: str, seq: list[tuple[DbValue, ...]]) -> int:
        query = to_pyformat(sql)
        return await self._single(sql, lambda conn: _executemany(conn, query, seq))

    async def _fetch(self, sql: str, params: tuple[DbValue, ...], *, one: bool) -> list[Row]:
        query = to_pyformat(sql)
        return await self._single(sql, lambda conn: _fetch(conn, query, params, one))

    async def _batch(self, statements: list[tuple[str, tuple[DbValue, ...]]]) -> list[list[Row]]:
        return await self._single("; ".join(sql for sql, _ in statements), lambda conn: _batch(conn, statements))

    # -- transactions -----------------------------------------------------------------------------

    async def _begin(self) -> PgConnection:
        try:
            async with asyncio.timeout(self.command_timeout):
                conn = await self.pool.getconn(timeout=self.pool_timeout)
                try:
                    await conn.execute("BEGIN")
                except BaseException:
                    await self.pool.putconn(conn)
                    raise
                return conn
        except (psycopg.Error, TimeoutError) as exc:
            raise self._store_error(exc, "BEGIN") from exc

    async def _rollback(self, conn: PgConnection) -> None:
        # A broken connection fails here at once; the pool discards it when it comes back.
        with suppress(psycopg.Error, TimeoutError):
            async with asyncio.timeout(self.command_timeout):
                await conn.execute("ROLLBACK")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        conn = await self._begin()
        tx = _PostgresTransaction(self, conn)
        try:
            try:
                yield tx
            except BaseException:
                await self._rollback(conn)
                raise
            if tx.failed is not None:
                await self._rollback(conn)
                raise StoreError(f"transaction rolled back: a statement in it failed ({tx.failed})") from tx.failed
            try:
                await self._on(conn, "COMMIT", lambda c: c.execute("COMMIT"))
            except BaseException:
                await self._rollback(conn)
                raise
        finally:
            tx.closed = True
            await self.pool.putconn(conn)

    # -- life cycle -------------------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.pool_timeout + 1.0):
                await self.fetchval("SELECT 1")
        except (StoreError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        await self.pool.close(timeout=5.0)
