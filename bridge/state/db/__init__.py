"""The async database layer under the store: one SQL text, on SQLite or PostgreSQL.

``db = await open_database(url)`` with ``sqlite:///abs/path.db`` (``sqlite:///:memory:``
for tests) or any libpq URL ``postgresql://user@host/dbname?...``; then::

    n = await db.execute("UPDATE devices SET enabled = ? WHERE device_id = ?", (False, device_id))
    row = await db.fetchone("SELECT name FROM devices WHERE device_id = ?", (device_id,))
    async with db.transaction() as tx:       # SQLite: BEGIN IMMEDIATE; commit, or rollback on error
        await tx.execute(...)
    await migrate(db, MIGRATIONS)            # see bridge.state.db.migrations

The SQL rules (what the store may write so that both engines run it):

- Placeholders are ``?`` (positional). On PostgreSQL each statement text is translated
  once (``?`` -> ``%s``, ``%`` -> ``%%``; quoted strings, identifiers and comments are
  left alone) and cached. The translation checks the text on SQLite too, so what it
  refuses (``?1``, an unterminated quote: ValueError) fails in SQLite tests as well.
  One statement per call.
- ``INSERT ... ON CONFLICT (...) DO UPDATE SET ... = excluded.... RETURNING ...`` works on
  both (SQLite >= 3.35; the bundled one is 3.40.1). ``execute()`` returns the rows
  written (for a statement that gives rows, such as ``RETURNING``: how many it gave).
- SQLite-only SQL to avoid: ``rowid``, ``LIMIT -1`` (no limit), ``INSERT OR IGNORE/REPLACE``
  (use ``ON CONFLICT``), a subquery in FROM without an alias (PostgreSQL 15 needs one).
  PostgreSQL-only: ``::`` casts (use ``CAST``), ``ILIKE``, jsonb's ``?`` operators.

The value rules (the same on both engines):

- text: ``TEXT``; integers: ``INTEGER`` (``BIGINT`` where they may pass 2**31 on
  PostgreSQL); reals: ``REAL`` / ``DOUBLE PRECISION``.
- bytes: ``BLOB`` on SQLite, ``BYTEA`` on PostgreSQL; ``bytes`` both ways.
- booleans: ``INTEGER`` 0/1. A ``bool`` parameter is sent as 0/1; read them back with
  ``bool(value)`` (a boolean *expression* in a SELECT comes back as ``bool`` on PostgreSQL
  and 0/1 on SQLite - ``bool()`` is right for both).
- timestamps: ``TEXT``, ISO-8601 in UTC with microseconds, always 32 characters
  (``2024-05-01T12:00:00.000000+00:00``, :func:`encode_time` / :func:`decode_time`); an
  aware ``datetime`` parameter is encoded this way, a naive one is refused. Fixed width
  makes text order the time order, so ``ORDER BY at`` and ``expires_at <= ?`` work on
  both; on PostgreSQL declare them ``TEXT COLLATE "C"`` so the comparison is bytewise
  (and cheaper) whatever the database's collation.
- auto-increment ids: ``INTEGER PRIMARY KEY AUTOINCREMENT`` on SQLite, ``BIGINT GENERATED
  ALWAYS AS IDENTITY PRIMARY KEY`` on PostgreSQL (a per-engine migration step); get the new
  id with ``RETURNING id`` (``fetchval``), there is no ``lastrowid``.
- aggregates: ``count(*)`` is an int on both; ``sum()`` of a BIGINT column is a Decimal on
  PostgreSQL: cast it (``CAST(sum(n) AS BIGINT)``) or convert with ``int()``.

Errors: every driver error (sqlite3, psycopg, the pool's timeouts, a refused connection)
comes out as :class:`~bridge.errors.StoreError` with the driver's exception as ``__cause__``;
a duplicate primary or unique key as its subclass :class:`~bridge.errors.StoreConflict`.
A transaction is spent after its first error on both engines (PostgreSQL's rule): later
calls on it raise StoreError and it rolls back. With PostgreSQL down, calls fail within
``pool_timeout`` (2 s); the same Database works again once the server is back.

Engines: :mod:`bridge.state.db._sqlite` (one connection, statements inline on the loop,
with the measurements that chose it) and :mod:`bridge.state.db._postgres` (psycopg 3 and an
async pool; autocommit, explicit transactions, :meth:`Database.batch` pipelines, idle
connections checked without a round trip).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg

from bridge.errors import ConfigError
from bridge.state.db._common import (
    DEFAULT_COMMAND_TIMEOUT,
    Connection,
    Database,
    Dialect,
    Params,
    Row,
    Value,
    adapt_params,
    decode_time,
    encode_time,
    to_pyformat,
)
from bridge.state.db._postgres import (
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_RECONNECT_TIMEOUT,
    PostgresDatabase,
)
from bridge.state.db._sqlite import DEFAULT_BUSY_TIMEOUT, SqliteDatabase
from bridge.state.db.migrations import ByEngine, Migration, MigrationResult, current_version, migrate

__all__ = [
    "ByEngine",
    "Connection",
    "Database",
    "Dialect",
    "Migration",
    "MigrationResult",
    "Params",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "Value",
    "adapt_params",
    "current_version",
    "decode_time",
    "encode_time",
    "migrate",
    "open_database",
    "redact_url",
    "to_pyformat",
]

URL_KEY = "store.url"
# Query parameters of a postgresql:// URL that are ours (the rest go to libpq).
_PG_OPTIONS = ("pool_min_size", "pool_max_size", "pool_timeout", "command_timeout")
_SQLITE_OPTIONS = ("busy_timeout",)


def redact_url(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = "&".join(
        f"{key}=***" if key == "password" else f"{key}={value}"
        for key, value in (pair.split("=", 1) if "=" in pair else (pair, "") for pair in parts.query.split("&") if pair)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _split_options(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in pairs if key in names}
    rest = urlencode([(key, value) for key, value in pairs if key not in names], safe="/:,", quote_via=quote)
    return urlunsplit(parts._replace(query=rest)), ours


def _number(options: dict[str, str], name: str, given: float | None, default: float, *,
            minimum: float, integer: bool = False) -> float:
    if given is not None:
        value = float(given)
    elif name in options:
        try:
            value = int(options[name]) if integer else float(options[name])
        except ValueError:
            raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'}, "
                              f"not {options[name]!r}", key=URL_KEY) from None
    else:
        value = default
    if value < minimum or value != value:  # NaN
        raise ConfigError(f"{name} must be at least {minimum:g}, not {value:g}", key=URL_KEY)
    return value


async def open_database(url: str, *, min_size: int | None = None, max_size: int | None = None,
                        pool_timeout: float | None = None, command_timeout: float | None = None,
                        busy_timeout: float | None = None) -> Database:
    """Open the store's database named by ``url`` (``store.url``).

    PostgreSQL: ``pool_min_size`` / ``pool_max_size`` (1 / 10), ``pool_timeout`` (2 s: how
    long a call waits for a connection before StoreError) and ``command_timeout`` (10 s) may
    be given as URL query parameters or as keyword arguments (which win); every other query
    parameter is libpq's. SQLite: ``busy_timeout`` (5 s). ConfigError for a URL that names no
    supported database; StoreError when the database cannot be reached or opened.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        plain, options = _split_options(url, _SQLITE_OPTIONS)
        parts = urlsplit(plain)
        if parts.netloc or parts.query or not parts.path or parts.path == "/":
            raise ConfigError(f"a SQLite URL is sqlite:///absolute/path.db or sqlite:///:memory:, not {url!r}",
                              key=URL_KEY)
        path = unquote(parts.path)
        path = ":memory:" if path == "/:memory:" else path
        busy = _number(options, "busy_timeout", busy_timeout, DEFAULT_BUSY_TIMEOUT, minimum=0)
        return SqliteDatabase.open(path, busy_timeout=busy)
    if scheme in ("postgresql", "postgres"):
        conninfo, options = _split_options(url, _PG_OPTIONS)
        shown = redact_url(conninfo)
        try:
            psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise ConfigError(f"not a valid PostgreSQL URL ({shown}): {exc}", key=URL_KEY) from exc
        low = int(_number(options, "pool_min_size", min_size, DEFAULT_MIN_SIZE, minimum=0, integer=True))
        high = int(_number(options, "pool_max_size", max_size, DEFAULT_MAX_SIZE, minimum=max(low, 1), integer=True))
        return await PostgresDatabase.open(
            conninfo, url=shown, min_size=low, max_size=high,
            pool_timeout=_number(options, "pool_timeout", pool_timeout, DEFAULT_POOL_TIMEOUT, minimum=0.1),
            command_timeout=_number(options, "command_timeout", command_timeout, DEFAULT_COMMAND_TIMEOUT,
                                    minimum=0.1),
            reconnect_timeout=DEFAULT_RECONNECT_TIMEOUT,
        )
    raise ConfigError(f"store.url must start with sqlite:/// or postgresql://, not {redact_url(url)!r}", key=URL_KEY)
