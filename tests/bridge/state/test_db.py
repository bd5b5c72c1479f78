"""The async database layer (bridge/state/db): the same calls and SQL on SQLite and on a real PostgreSQL 15."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from bridge.errors import ConfigError, StoreConflict, StoreError
from bridge.state.db import (
    ByEngine,
    Database,
    Migration,
    PostgresDatabase,
    SqliteDatabase,
    current_version,
    decode_time,
    encode_time,
    migrate,
    open_database,
    redact_url,
    to_pyformat,
)
from tests.servers.postgres import PgDatabase, PostgresServer, pg_database, postgres_server

__all__ = ["pg_database", "postgres_server"]  # the real-server fixtures, used by name below


class Boom(Exception):
    pass


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database: a file in tmp_path, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/store.db"
    database: PgDatabase = request.getfixturevalue("pg_database")
    return database.url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await open_database(db_url)
    try:
        yield database
    finally:
        await database.close()


def blob(db: Database) -> str:
    return "BLOB" if db.dialect == "sqlite" else "BYTEA"


# -- values ------------------------------------------------------------------------------------


async def test_every_type_round_trips(db: Database) -> None:
    await db.execute(f"CREATE TABLE v (id INTEGER PRIMARY KEY, t TEXT, i BIGINT, r DOUBLE PRECISION, b {blob(db)},"
                     " flag INTEGER, at TEXT, missing TEXT)")
    paris = timezone(timedelta(hours=2))
    rows = [
        (1, "héllo ✓ 'quoted' ? %s %% \\", 2**62, 3.25, b"\x00\xff\x00abc", True,
         datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=paris), None),
        (2, "", -5, -0.5, b"", False, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), None),
    ]
    assert await db.executemany("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows) == 2
    got = await db.fetchall("SELECT id, t, i, r, b, flag, at, missing FROM v ORDER BY id")
    assert got == [
        (1, "héllo ✓ 'quoted' ? %s %% \\", 2**62, 3.25, b"\x00\xff\x00abc", 1, "2024-05-01T12:00:00.123456+00:00", None),
        (2, "", -5, -0.5, b"", 0, "1999-12-31T23:59:59.000000+00:00", None),
    ]
    assert all(type(row[4]) is bytes and type(row[5]) is int for row in got)
    assert decode_time(got[0][6]) == rows[0][6] and decode_time(got[0][6]).utcoffset() == timedelta(0)
    # A bool parameter compares with the stored 0/1 on both engines; a bool expression reads back truthy.
    assert await db.fetchval("SELECT id FROM v WHERE flag = ?", (True,)) == 1
    assert bool(await db.fetchval("SELECT flag = 1 FROM v WHERE id = ?", (1,))) is True
    assert await db.fetchval("SELECT count(*) FROM v") == 2
    assert await db.fetchone("SELECT id FROM v WHERE id = ?", (99,)) is None
    assert await db.fetchval("SELECT id FROM v WHERE id = ?", (99,)) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        await db.execute("UPDATE v SET at = ?", (datetime(2024, 1, 1),))
    with pytest.raises(TypeError, match="sequence of values"):
        await db.execute("SELECT ?", "x")


async def test_timestamps_sort_and_compare_as_text(db: Database) -> None:
    await db.execute("CREATE TABLE times (at TEXT NOT NULL)")
    base = datetime(2024, 1, 1, 9, 59, 59, 999999, tzinfo=UTC)
    moments = [base + timedelta(microseconds=1), base, base + timedelta(days=400), base - timedelta(hours=10),
               datetime(2024, 1, 1, 11, 0, tzinfo=timezone(timedelta(hours=1))) + timedelta(seconds=1)]
    await db.executemany("INSERT INTO times VALUES (?)", [(m,) for m in moments])
    texts = [row[0] for row in await db.fetchall("SELECT at FROM times ORDER BY at")]
    assert [decode_time(t) for t in texts] == sorted(moments)
    assert {len(t) for t in texts} == {32}
    assert await db.fetchval("SELECT count(*) FROM times WHERE at <= ?", (base,)) == 2
    assert encode_time(base) == "2024-01-01T09:59:59.999999+00:00"


# -- "?" placeholders ----------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT ?", "SELECT %s"),
    ("SELECT '?', ?", "SELECT '?', %s"),
    ("SELECT 'it''s ?', ? FROM t", "SELECT 'it''s ?', %s FROM t"),
    ('SELECT "odd?col", "a""?" FROM t WHERE x = ?', 'SELECT "odd?col", "a""?" FROM t WHERE x = %s'),
    ("SELECT 5 % 3, 'a%b', ?", "SELECT 5 %% 3, 'a%%b', %s"),
    ("SELECT ? -- what? 100%\n, ?", "SELECT %s -- what? 100%%\n, %s"),
    ("/* why? */ SELECT ? /* ' */, ?", "/* why? */ SELECT %s /* ' */, %s"),
    ("SELECT $$ ? ' $$, $fn$ ? $$ $fn$, ?", "SELECT $$ ? ' $$, $fn$ ? $$ $fn$, %s"),
    ("SELECT E'\\' ?', ?", "SELECT E'\\' ?', %s"),
    ("SELECT 'C:\\', ?", "SELECT 'C:\\', %s"),  # a standard string: the backslash is a character
    ("SELECT ?,?,?", "SELECT %s,%s,%s"),
    ("UPDATE t SET a = ? WHERE b = ?", "UPDATE t SET a = %s WHERE b = %s"),
])
def test_placeholders_become_pyformat_outside_literals(sql: str, expected: str) -> None:
    assert to_pyformat(sql) == expected


def test_placeholder_translation_refuses_what_it_cannot_read_and_is_cached() -> None:
    for bad in ("SELECT 'unterminated ?", 'SELECT "x', "SELECT ? /* open", "SELECT ?1, ?2"):
        with pytest.raises(ValueError, match=r"unterminated|numbered"):
            to_pyformat(bad)
    to_pyformat("SELECT ? AS cached")
    hits = to_pyformat.cache_info().hits
    to_pyformat("SELECT ? AS cached")
    assert to_pyformat.cache_info().hits == hits + 1


async def test_question_marks_and_percent_signs_inside_literals(db: Database) -> None:
    row = await db.fetchone("SELECT '?', ?, 'a%b', ? || '%', 'it''s ?'", ("x", "y"))
    assert row == ("?", "x", "a%b", "y%", "it's ?")
    await db.execute("CREATE TABLE words (w TEXT)")
    await db.executemany("INSERT INTO words VALUES (?)", [("a?b",), ("ab",), ("100%",)])
    assert await db.fetchval("SELECT count(*) FROM words WHERE w LIKE '%?%'") == 1
    assert await db.fetchval("SELECT count(*) FROM words WHERE w LIKE ?", ("%b",)) == 2
    assert await db.fetchval("SELECT w FROM words WHERE w LIKE '%\\%' ESCAPE '\\'") == "100%"
    # What PostgreSQL's translation refuses is refused on SQLite too (which would take "?1").
    with pytest.raises(ValueError, match="numbered"):
        await db.fetchval("SELECT ?1", (1,))


# -- upserts, transactions, errors ---------------------------------------------------------------


async def test_upsert_returning_counts_fifty_concurrent_tasks(db: Database) -> None:
    await db.execute("CREATE TABLE counters (key TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    upsert = ("INSERT INTO counters (key, n) VALUES (?, 1)"
              " ON CONFLICT (key) DO UPDATE SET n = counters.n + 1 RETURNING n")
    results = await asyncio.gather(*(db.fetchval(upsert, ("logins",)) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))
    assert await db.fetchval("SELECT n FROM counters WHERE key = ?", ("logins",)) == 50


async def test_conditional_upsert_reports_whether_it_wrote(db: Database) -> None:
    # The replay cache's statement: a row counts as absent once expired.
    await db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, expires_at TEXT NOT NULL)")
    remember = ("INSERT INTO seen (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE"
                " SET expires_at = excluded.expires_at WHERE seen.expires_at <= ?")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    assert await db.execute(remember, ("a1", t0 + timedelta(minutes=5), t0)) == 1
    assert await db.execute(remember, ("a1", t0 + timedelta(minutes=9), t0 + timedelta(minutes=1))) == 0
    assert await db.execute(remember, ("a1", t0 + timedelta(minutes=20), t0 + timedelta(minutes=6))) == 1
    assert await db.execute("UPDATE seen SET expires_at = ? WHERE id = ?", (t0, "nobody")) == 0
    assert await db.execute("DELETE FROM seen WHERE id = ? RETURNING id", ("a1",)) == 1


async def test_transactions_commit_or_roll_back(db: Database) -> None:
    await db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (?)", (1,))
        assert await tx.fetchval("SELECT count(*) FROM t") == 1
    with pytest.raises(Boom):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?)", (2,))
            raise Boom
    assert await db.fetchall("SELECT x FROM t") == [(1,)]
    with pytest.raises(StoreError, match="transaction is over"):
        await tx.execute("SELECT 1")

    # Cancelled inside: rolled back, and the database is free again.
    entered = asyncio.Event()

    async def slow() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?)", (3,))
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(slow())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.fetchall("SELECT x FROM t ORDER BY x") == [(1,)]


async def test_a_unique_violation_is_a_store_conflict(db: Database) -> None:
    await db.execute("CREATE TABLE users (email TEXT PRIMARY KEY, name TEXT NOT NULL, alias TEXT UNIQUE)")
    await db.execute("INSERT INTO users VALUES (?, ?, ?)", ("a@x.com", "A", "al"))
    with pytest.raises(StoreConflict) as conflict:
        await db.execute("INSERT INTO users VALUES (?, ?, ?)", ("a@x.com", "B", None))
    assert conflict.value.code == "store_error" and isinstance(conflict.value, StoreError)
    assert isinstance(conflict.value.__cause__, sqlite3.IntegrityError | psycopg.errors.UniqueViolation)
    with pytest.raises(StoreConflict):
        await db.execute("INSERT INTO users VALUES (?, ?, ?)", ("b@x.com", "B", "al"))
    with pytest.raises(StoreError) as not_null:
        await db.execute("INSERT INTO users VALUES (?, ?, ?)", ("c@x.com", None, None))
    assert not isinstance(not_null.value, StoreConflict)

    # Inside a transaction the first error spends it, on both engines (PostgreSQL's rule).
    with pytest.raises(StoreError, match="rolled back"):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO users VALUES (?, ?, ?)", ("d@x.com", "D", None))
            with pytest.raises(StoreConflict):
                await tx.execute("INSERT INTO users VALUES (?, ?, ?)", ("a@x.com", "again", None))
            with pytest.raises(StoreError, match="aborted by an earlier error"):
                await tx.fetchval("SELECT 1")
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = ?", ("d@x.com",)) == 0


async def test_driver_errors_become_store_errors(db: Database) -> None:
    driver = sqlite3.Error if db.dialect == "sqlite" else psycopg.Error
    for sql in ("SELEC 1", "SELECT * FROM no_such_table", "INSERT INTO no_such_table VALUES (?)"):
        with pytest.raises(StoreError) as info:
            await db.fetchall(sql, (1,) if "?" in sql else ())
        assert isinstance(info.value.__cause__, driver) and sql in info.value.detail
    with pytest.raises(StoreError):  # wrong number of parameters
        await db.fetchval("SELECT ?, ?", (1,))


async def test_executemany_and_returning_ids(db: Database) -> None:
    ident = ("INTEGER PRIMARY KEY AUTOINCREMENT" if db.dialect == "sqlite"
             else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
    await db.execute(f"CREATE TABLE events (id {ident}, kind TEXT NOT NULL)")
    assert await db.executemany("INSERT INTO events (kind) VALUES (?)", [("a",), ("b",), ("c",)]) == 3
    assert await db.fetchval("INSERT INTO events (kind) VALUES (?) RETURNING id", ("d",)) == 4
    assert await db.execute("UPDATE events SET kind = ? WHERE id > ?", ("z", 2)) == 2
    async with db.transaction() as tx:
        assert await tx.executemany("DELETE FROM events WHERE id = ?", [(1,), (2,), (99,)]) == 2
        assert await tx.fetchall("SELECT id, kind FROM events ORDER BY id") == [(3, "z"), (4, "z")]


async def test_ping(db: Database) -> None:
    assert await db.ping() is True
    await db.close()
    assert await db.ping() is False
    with pytest.raises(StoreError):
        await db.fetchval("SELECT 1")


# -- migrations ----------------------------------------------------------------------------------

MIGRATIONS = (
    Migration(1, "items", statements=(
        ByEngine(sqlite="CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
                        " data BLOB)",
                 postgres="CREATE TABLE items (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                          " name TEXT NOT NULL UNIQUE, data BYTEA)"),
        "CREATE TABLE runs (version INTEGER NOT NULL)",
        "INSERT INTO runs VALUES (1)",
    )),
    Migration(2, "index", statements=("CREATE INDEX items_by_name ON items(name)", "INSERT INTO runs VALUES (2)")),
    Migration(3, "a time column",
              statements=("ALTER TABLE items ADD COLUMN at TEXT", "INSERT INTO runs VALUES (3)"),
              postgres=('ALTER TABLE items ADD COLUMN at TEXT COLLATE "C"', "INSERT INTO runs VALUES (3)")),
)


async def runs(db: Database) -> list[tuple[int, int]]:
    return [tuple(r) for r in await db.fetchall("SELECT version, count(*) FROM runs GROUP BY version ORDER BY version")]


async def test_migrations_apply_once_in_order_and_are_idempotent(db: Database) -> None:
    assert await current_version(db) == 0
    first = await migrate(db, MIGRATIONS)
    assert (first.previous, first.current, first.applied) == (0, 3, (1, 2, 3))
    again = await migrate(db, list(reversed(MIGRATIONS)))
    assert (again.previous, again.current, again.applied) == (3, 3, ())
    assert await current_version(db) == 3
    assert await runs(db) == [(1, 1), (2, 1), (3, 1)]
    assert [r[0] for r in await db.fetchall("SELECT version FROM schema_version ORDER BY version")] == [1, 2, 3]
    assert await db.fetchval("INSERT INTO items (name, data, at) VALUES (?, ?, ?) RETURNING id",
                             ("x", b"\x00", datetime.now(UTC))) == 1
    if db.dialect == "sqlite":
        assert await db.fetchval("PRAGMA user_version") == 3

    fourth = Migration(4, "more", statements=("CREATE TABLE more (x INTEGER)", "INSERT INTO runs VALUES (4)"))
    assert (await migrate(db, (*MIGRATIONS, fourth))).applied == (4,)
    with pytest.raises(StoreError, match="newer than this program"):
        await migrate(db, MIGRATIONS)

    broken = Migration(5, "broken", statements=("CREATE TABLE half (x INTEGER)", "CREATE TABLE half (x INTEGER)"))
    with pytest.raises(StoreError):
        await migrate(db, (*MIGRATIONS, fourth, broken))
    assert await current_version(db) == 4
    with pytest.raises(StoreError):  # the failed migration's first table was rolled back with it
        await db.fetchval("SELECT count(*) FROM half")


def test_migration_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        Migration(0, "zero")
    with pytest.raises(TypeError, match="sequence of statements"):
        Migration(1, "one", statements="CREATE TABLE x (y INTEGER)")
    step = Migration(1, "one", statements=["SELECT 1", ByEngine(sqlite="s", postgres="p")])
    assert step.statements_for("sqlite") == ("SELECT 1", "s") and step.statements_for("postgres") == ("SELECT 1", "p")
    assert Migration(1, "x", statements=("a",), postgres=("b",)).statements_for("postgres") == ("b",)


async def test_a_migration_numbered_below_the_newest_applied_is_still_applied(db: Database) -> None:
    """Two pieces of work each added a migration (2 and 3); a database that got 3 first still gets 2."""
    first = await migrate(db, (MIGRATIONS[0], MIGRATIONS[2]))
    assert (first.current, first.applied) == (3, (1, 3))
    later = await migrate(db, MIGRATIONS)
    assert (later.previous, later.current, later.applied) == (3, 3, (2,))
    assert await runs(db) == [(1, 1), (2, 1), (3, 1)]
    if db.dialect == "sqlite":
        assert await db.fetchval("PRAGMA user_version") == 3  # the newest, not the last applied


async def test_postgres_concurrent_migrations_apply_each_step_exactly_once(pg_database: PgDatabase) -> None:
    slow = tuple(
        Migration(m.version, m.description, statements=(*m.statements_for("postgres"), "SELECT pg_sleep(0.05)"))
        for m in MIGRATIONS
    )
    databases = [await open_database(pg_database.url, max_size=2) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(d, slow) for d in databases))
        assert sorted(v for r in results for v in r.applied) == [1, 2, 3]
        assert {r.current for r in results} == {3}
        assert await runs(databases[0]) == [(1, 1), (2, 1), (3, 1)]
    finally:
        for d in databases:
            await d.close()


async def test_sqlite_migrations_from_two_processes_apply_once(tmp_path: Path) -> None:
    """Two connections (the other one in its own thread and event loop, like another process) race."""
    url = f"sqlite://{tmp_path}/m.db"
    many = (MIGRATIONS[0], *(Migration(v, f"step {v}", statements=(f"CREATE TABLE t{v} (x INTEGER)",
                                                                    f"INSERT INTO runs VALUES ({v})"))
                             for v in range(2, 41)))
    ready = threading.Barrier(2, timeout=10)

    def other_process() -> tuple[int, ...]:
        async def run() -> tuple[int, ...]:
            async with await open_database(url) as other:
                ready.wait()
                return (await migrate(other, many)).applied
        return asyncio.run(run())

    async with await open_database(url) as db:
        theirs = asyncio.create_task(asyncio.to_thread(other_process))
        await asyncio.to_thread(ready.wait)
        mine = await migrate(db, many)
        assert sorted(mine.applied + await theirs) == list(range(1, 41))
        assert await runs(db) == [(v, 1) for v in range(1, 41)]
        assert await current_version(db) == 40


async def test_sqlite_adopts_a_database_versioned_by_user_version(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path, isolation_level=None)
    for statement in (*MIGRATIONS[0].statements_for("sqlite"), *MIGRATIONS[1].statements_for("sqlite"),
                      "PRAGMA user_version = 2"):
        raw.execute(statement)
    raw.close()
    async with await open_database(f"sqlite://{path}") as db:
        assert await current_version(db) == 2
        result = await migrate(db, MIGRATIONS)
        assert (result.previous, result.applied) == (2, (3,))
        assert await runs(db) == [(1, 1), (2, 1), (3, 1)]
        descriptions = [r[0] for r in await db.fetchall("SELECT description FROM schema_version ORDER BY version")]
        assert descriptions == ["items (adopted from user_version 2)", "index (adopted from user_version 2)",
                                "a time column"]
        assert await db.fetchval("PRAGMA user_version") == 3

    raw = sqlite3.connect(tmp_path / "future.db", isolation_level=None)
    raw.execute("PRAGMA user_version = 9")
    raw.close()
    async with await open_database(f"sqlite://{tmp_path}/future.db") as db:
        with pytest.raises(StoreError, match="schema 9 is newer"):
            await migrate(db, MIGRATIONS)


# -- SQLite specifics ----------------------------------------------------------------------------


async def test_sqlite_file_settings(tmp_path: Path) -> None:
    async with await open_database(f"sqlite://{tmp_path}/s.db") as db:
        assert isinstance(db, SqliteDatabase)
        assert await db.fetchval("PRAGMA journal_mode") == "wal"
        assert await db.fetchval("PRAGMA synchronous") == 1  # NORMAL
        assert await db.fetchval("PRAGMA foreign_keys") == 1
        await db.execute("CREATE TABLE t (x INTEGER)")
        assert db.url == f"sqlite://{tmp_path}/s.db"
    assert stat.S_IMODE(os.stat(tmp_path / "s.db").st_mode) == 0o600
    async with await open_database("sqlite:///:memory:") as memory:
        assert await memory.fetchval("SELECT ? + 1", (41,)) == 42


async def test_sqlite_waits_for_another_process_write_lock_off_the_event_loop(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/busy.db"
    async with await open_database(url) as db, await open_database(url, busy_timeout=0.3) as impatient:
        await db.execute("CREATE TABLE t (x INTEGER)")
        other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)  # "another process"
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (0)")
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        try:
            assert await db.fetchval("SELECT count(*) FROM t") == 0  # WAL: reads are never blocked
            asyncio.get_running_loop().call_later(0.4, other.execute, "COMMIT")
            started = time.monotonic()
            assert await db.execute("INSERT INTO t VALUES (1)") == 1
            waited = time.monotonic() - started
            assert 0.3 <= waited < 3.0
            assert ticks >= 0.3 / 0.01 / 3, "the event loop was blocked while waiting for the lock"

            other.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"locked by another connection for more than 0\.3 s"):
                async with impatient.transaction():
                    pass
            assert time.monotonic() - started < 2.0
            other.execute("ROLLBACK")
            assert await impatient.fetchval("SELECT count(*) FROM t") == 2
        finally:
            beat.cancel()
            other.close()


async def test_sqlite_transaction_holds_the_connection(tmp_path: Path) -> None:
    async with await open_database(f"sqlite://{tmp_path}/tx.db") as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
        order: list[str] = []

        async def outsider() -> None:
            await db.execute("INSERT INTO t VALUES (2)")
            order.append("outsider")

        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (1)")
            task = asyncio.create_task(outsider())
            await asyncio.sleep(0.05)  # the outsider waits: it must not land inside this transaction
            assert order == []
            with pytest.raises(RuntimeError, match="inside a transaction"):
                await db.fetchval("SELECT 1")
            order.append("transaction")
        await task
        assert order == ["transaction", "outsider"]
        assert await db.fetchval("SELECT count(*) FROM t") == 2


async def test_a_batch_is_one_transaction_all_or_nothing(db: Database) -> None:
    await db.execute("CREATE TABLE b (k INTEGER PRIMARY KEY, v TEXT)")
    rows = await db.batch([("INSERT INTO b (k, v) VALUES (?, ?) RETURNING k", (1, "a")),
                           ("UPDATE b SET v = ? WHERE k = ?", ("b", 1)),  # sees the INSERT before it
                           ("SELECT v FROM b WHERE k = ?", (1,))])
    assert rows == [[(1,)], [], [("b",)]]
    with pytest.raises(StoreConflict):
        await db.batch([("INSERT INTO b (k, v) VALUES (?, ?)", (2, "x")), ("UPDATE b SET v = 'c'", ()),
                        ("INSERT INTO b (k, v) VALUES (?, ?)", (1, "duplicate"))])
    assert await db.fetchall("SELECT k, v FROM b") == [(1, "b")]  # the first two rolled back as well
    assert await db.batch([]) == []
    assert await db.fetchval("SELECT count(*) FROM b") == 1  # the database is usable after the failed batch


# -- PostgreSQL specifics ------------------------------------------------------------------------


async def test_postgres_down_fails_fast_then_recovers_by_itself(
        pg_database: PgDatabase, postgres_server: PostgresServer) -> None:
    db = await open_database(pg_database.url)
    try:
        await db.execute("CREATE TABLE t (x INTEGER)")
        await db.execute("INSERT INTO t VALUES (?)", (1,))
        assert await db.ping()

        await postgres_server.stop_async()
        for attempt in (lambda: db.fetchval("SELECT count(*) FROM t"),
                        lambda: db.execute("INSERT INTO t VALUES (2)")):
            started = time.monotonic()
            with pytest.raises(StoreError, match="database unavailable") as info:
                await attempt()
            assert time.monotonic() - started < 3.0
            assert isinstance(info.value.__cause__, psycopg.Error)
        assert "No such file or directory" in info.value.detail or "refused" in info.value.detail
        started = time.monotonic()
        with pytest.raises(StoreError):
            async with db.transaction():
                pass
        assert time.monotonic() - started < 3.0
        started = time.monotonic()
        assert await db.ping() is False
        assert time.monotonic() - started < 3.5

        await postgres_server.start_async()
        started = time.monotonic()
        assert await db.fetchval("SELECT count(*) FROM t") == 1  # the same Database, not reopened
        assert time.monotonic() - started < 3.0
        assert await db.ping()
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?)", (3,))
        assert await db.fetchval("SELECT sum(x) FROM t") == 4
    finally:
        await db.close()


async def test_postgres_a_connection_the_server_closed_is_not_handed_out(pg_database: PgDatabase) -> None:
    """The checkout's check costs no round trip, yet a connection closed while idle in the pool is never used."""
    async with await open_database(pg_database.url, min_size=1, max_size=1) as db:
        first = await db.fetchval("SELECT pg_backend_pid()")
        assert await db.fetchval("SELECT pg_backend_pid()") == first  # the same pooled connection
        async with await psycopg.AsyncConnection.connect(pg_database.conninfo, autocommit=True) as other:
            await other.execute("SELECT pg_terminate_backend(%s)", (first,))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        assert await db.fetchval("SELECT pg_backend_pid()") not in (None, first)  # no error: a new connection
        assert time.monotonic() - started < 2.5
        assert await db.batch([("SELECT 1", ())]) == [[(1,)]]


async def test_postgres_open_fails_fast_with_the_reason(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect") as info:
        await open_database(f"postgresql://postgres@/x?host={tmp_path}&port=5999", pool_timeout=1.0)
    assert time.monotonic() - started < 3.0
    assert "No such file or directory" in info.value.detail


async def test_postgres_url_options(pg_database: PgDatabase) -> None:
    url = pg_database.url + "&pool_min_size=2&pool_max_size=3&application_name=lb-test&command_timeout=5"
    async with await open_database(url) as db:
        assert isinstance(db, PostgresDatabase)
        assert (db.pool.min_size, db.pool.max_size, db.pool_timeout, db.command_timeout) == (2, 3, 2.0, 5.0)
        assert await db.fetchval("SELECT current_setting('application_name')") == "lb-test"
        assert "pool_" not in db.url
    async with await open_database(url, max_size=5, pool_timeout=1.5) as db:
        assert isinstance(db, PostgresDatabase)
        assert (db.pool.max_size, db.pool_timeout) == (5, 1.5)


async def test_postgres_command_timeout(pg_database: PgDatabase) -> None:
    async with await open_database(pg_database.url, command_timeout=0.3) as db:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"did not answer within 0\.3 s"):
            await db.fetchval("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 3.0
        assert await db.fetchval("SELECT 1") == 1


@pytest.mark.parametrize("url", [
    "mysql://x/y", "sqlite://host/x.db", "sqlite:///", "sqlite:///x.db?journal=off", "nothing",
    "postgresql://h/db?pool_max_size=many", "postgresql://h/db?pool_min_size=4&pool_max_size=2",
    "postgresql://h/db?pool_timeout=0", "postgresql://h/db?no_such_libpq_option=1",
])
async def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        await open_database(url)


def test_redact_url() -> None:
    assert redact_url("postgresql://lb:s3cret@db.example:5432/lb?sslmode=require") == (
        "postgresql://lb:***@db.example:5432/lb?sslmode=require")
    assert redact_url("postgresql://lb@/lb?host=/run/pg&password=s3cret") == (
        "postgresql://lb@/lb?host=/run/pg&password=***")


async def test_a_transaction_on_a_closed_sqlite_database_is_a_store_error(tmp_path: Path) -> None:
    db = await open_database(f"sqlite://{tmp_path}/closed.db")
    await db.close()
    with pytest.raises(StoreError):
        async with db.transaction() as tx:
            await tx.execute("SELECT 1")
