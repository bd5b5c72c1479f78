"""What both engines share: the value rules, the ``?`` translation, the connection interface, the Database base."""

from __future__ import annotations

import asyncio
import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self

from bridge.errors import StoreError

Dialect = Literal["sqlite", "postgres"]
# What a statement parameter may be (see the value rules in the package docstring).
Value = str | int | float | bytes | bytearray | memoryview | bool | datetime | None
Params = Sequence[Value]
# A result row: the driver's own tuple (str, int, float, bytes, None; a bool for a boolean expression on PostgreSQL).
Row = tuple[Any, ...]
# A stored value as the driver takes it: the Value after the rules (no bool, no datetime).
DbValue = str | int | float | bytes | bytearray | memoryview | None

DEFAULT_COMMAND_TIMEOUT = 10.0  # seconds one statement (with its connection checkout) may take on PostgreSQL


def encode_time(when: datetime) -> str:
    """The stored form of a timestamp: UTC, ISO-8601, always microseconds (32 characters, sorts as text).

    ``2024-05-01T12:00:00.000000+00:00``. Naive datetimes are refused (ValueError): a
    timestamp without a zone cannot be compared with the others.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware: {when!r}")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def decode_time(text: str) -> datetime:
    """The datetime (aware, UTC) of a stored timestamp."""
    return datetime.fromisoformat(text)


# Parameter types the value rules pass on as they are (exact types: bool is an int subclass, and is not one).
_PLAIN_TYPES = frozenset({str, int, float, bytes, type(None)})


def adapt_params(params: Params) -> tuple[DbValue, ...]:
    """Apply the value rules: bool -> 0/1, aware datetime -> :func:`encode_time` text; the rest as given."""
    if type(params) is tuple:
        # The common case, without a copy: a tuple of plain values (str, int, float, bytes, None).
        for value in params:
            if type(value) not in _PLAIN_TYPES:
                break
        else:
            return params
    elif isinstance(params, str | bytes | bytearray | memoryview):
        raise TypeError("statement parameters are a sequence of values, not one str or bytes value")
    out: list[DbValue] = []
    for value in params:
        if isinstance(value, bool):
            out.append(int(value))
        elif isinstance(value, datetime):
            out.append(encode_time(value))
        else:
            out.append(value)
    return tuple(out)


# What must be copied verbatim: quoted strings and identifiers, comments, dollar quoting. psycopg
# itself reads every "%" of a query with parameters as a placeholder, even inside literals, so
# those are doubled everywhere; "?" becomes "%s" only outside them.
_SQL_TOKENS = re.compile(
    r"""
      (?P<verbatim>
          (?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'     # E'...' (backslash escapes)
        | '(?:[^']|'')*'                          # '...'
        | "(?:[^"]|"")*"                          # "identifier"
        | --[^\n]*                                # -- comment
        | /\*.*?\*/                               # /* comment */
        | (?<![\w$])\$(?P<tag>(?:[A-Za-z_][A-Za-z0-9_]*)?)\$.*?\$(?P=tag)\$   # $tag$ ... $tag$, $$ ... $$
      )
    | (?P<qmark>\?(?P<number>[0-9]+)?)
    | (?P<percent>%)
    | (?P<open>['"]|/\*)                          # a quote or comment that never ends
    """,
    re.VERBOSE | re.DOTALL,
)


@functools.lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """``?`` -> ``%s`` and ``%`` -> ``%%`` outside literals, identifiers and comments (cached per text).

    ``?NNN`` (numbered) placeholders and unterminated quotes are refused (ValueError). The
    PostgreSQL jsonb operators ``?``, ``?|``, ``?&`` cannot be written in this SQL (use
    ``jsonb_exists()`` and friends).
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("verbatim") is not None:
            return match.group("verbatim").replace("%", "%%")
        if match.group("qmark") is not None:
            if match.group("number") is not None:
                raise ValueError(f"numbered placeholders ({match.group('qmark')}) are not supported: use ?")
            return "%s"
        if match.group("percent") is not None:
            return "%%"
        raise ValueError(f"unterminated {match.group('open')!r} at offset {match.start()} in: {sql[:120]}")

    return _SQL_TOKENS.sub(replace, sql)


class Connection(Protocol):
    """What :meth:`Database.transaction` yields (and what a Database itself offers): ``?`` placeholders."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it inserted, updated or deleted (DML only)."""
        ...

    async def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        """Run one statement once per parameter tuple; the total row count."""
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first result row, or None."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Every result row."""
        ...

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        ...


class _Ops(ABC):
    """The five statement methods, on top of three engine primitives (which map errors to StoreError)."""

    @abstractmethod
    async def _execute(self, sql: str, params: tuple[DbValue, ...]) -> int: ...

    @abstractmethod
    async def _executemany(self, sql: str, seq: list[tuple[DbValue, ...]]) -> int: ...

    @abstractmethod
    async def _fetch(self, sql: str, params: tuple[DbValue, ...], *, one: bool) -> list[Row]: ...

    # to_pyformat() runs on both engines (a cached no-op after the first time): SQL that PostgreSQL
    # could not take fails in the SQLite tests too.

    async def execute(self, sql: str, params: Params = ()) -> int:
        to_pyformat(sql)
        return await self._execute(sql, adapt_params(params))

    async def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        to_pyformat(sql)
        return await self._executemany(sql, [adapt_params(p) for p in seq_of_params])

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        to_pyformat(sql)
        rows = await self._fetch(sql, adapt_params(params), one=True)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        to_pyformat(sql)
        return await self._fetch(sql, adapt_params(params), one=False)

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        to_pyformat(sql)
        rows = await self._fetch(sql, adapt_params(params), one=True)
        return rows[0][0] if rows else None


class TransactionBase(_Ops):
    """A transaction's connection: after any error it is spent, on both engines.

    PostgreSQL aborts a transaction at its first failing statement; SQLite would carry on.
    To keep one behaviour, every later call raises StoreError and the transaction rolls
    back even when the body caught the error (leaving it then raises StoreError too).
    """

    def __init__(self) -> None:
        self.failed: BaseException | None = None
        self.closed = False

    def _usable(self) -> None:
        if self.closed:
            raise StoreError("the transaction is over: use the Database, or open a new transaction")
        if self.failed is not None:
            raise StoreError(f"the transaction was aborted by an earlier error: {self.failed}")

    @abstractmethod
    async def _tx_execute(self, sql: str, params: tuple[DbValue, ...]) -> int: ...

    @abstractmethod
    async def _tx_executemany(self, sql: str, seq: list[tuple[DbValue, ...]]) -> int: ...

    @abstractmethod
    async def _tx_fetch(self, sql: str, params: tuple[DbValue, ...], *, one: bool) -> list[Row]: ...

    async def _execute(self, sql: str, params: tuple[DbValue, ...]) -> int:
        self._usable()
        try:
            return await self._tx_execute(sql, params)
        except BaseException as exc:
            self.failed = exc
            raise

    async def _executemany(self, sql: str, seq: list[tuple[DbValue, ...]]) -> int:
        self._usable()
        try:
            return await self._tx_executemany(sql, seq)
        except BaseException as exc:
            self.failed = exc
            raise

    async def _fetch(self, sql: str, params: tuple[DbValue, ...], *, one: bool) -> list[Row]:
        self._usable()
        try:
            return await self._tx_fetch(sql, params, one=one)
        except BaseException as exc:
            self.failed = exc
            raise


class Database(_Ops):
    """One store database: SQLite (one connection) or PostgreSQL (a pool); ``?`` placeholders on both.

    Single statements run in autocommit. :meth:`transaction` gives a connection whose
    statements commit together when the block ends normally and roll back when it raises.
    Every driver error comes out as :class:`~bridge.errors.StoreError` (a unique key
    already taken as :class:`~bridge.errors.StoreConflict`), with the driver's error as
    ``__cause__``.
    """

    dialect: ClassVar[Dialect]

    @property
    @abstractmethod
    def url(self) -> str:
        """The database URL without a password (for logs and messages)."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """``async with db.transaction() as tx:`` - commits on success, rolls back on any exception."""

    async def batch(self, statements: Sequence[tuple[str, Params]]) -> list[list[Row]]:
        """Run ``statements`` (``(sql, params)`` pairs) in order as one transaction: all of them or none.

        Returns each statement's rows (``[]`` for one that gives none). For a fixed sequence whose
        later statements do not depend on what the earlier ones returned: PostgreSQL sends them in
        one pipeline, one round trip, one implicit transaction (each statement sees what the earlier
        ones did and committed, as in ``transaction()``); SQLite runs them in ``transaction()``.
        Any error rolls all of them back and comes out as StoreError, as for a transaction.
        """
        prepared: list[tuple[str, tuple[DbValue, ...]]] = []
        for sql, params in statements:
            to_pyformat(sql)
            prepared.append((sql, adapt_params(params)))
        if not prepared:
            return []
        return await self._batch(prepared)

    async def _batch(self, statements: list[tuple[str, tuple[DbValue, ...]]]) -> list[list[Row]]:
        """The engine's :meth:`batch`; by default one :meth:`transaction`."""
        async with self.transaction() as tx:
            return [await tx.fetchall(sql, params) for sql, params in statements]

    @abstractmethod
    async def ping(self) -> bool:
        """Readiness: True when the database answers a query within a short time (False, never an error)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection or pool; later calls raise StoreError."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


async def wait_uncancellable(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done even if cancelled meanwhile (the work it stands for cannot be stopped)."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except BaseException:
            return  # its outcome is the caller's business: only "done" matters here
