"""The throwaway PostgreSQL as pytest fixtures; the server itself is :mod:`bridge.localservers.postgres`.

Fixtures (import them into a conftest, as ``tests/servers/conftest.py`` does):

- ``postgres_server`` (session): one server for the whole run;
- ``pg_database`` (function): a fresh ``t_<uuid>`` database on it, dropped afterwards;
- ``store_url`` (function, two params): an empty store's URL, a SQLite file or a ``pg_database``,
  so one test runs on both engines.

The starter's names are re-exported here, so ``from tests.servers.postgres import run_postgres``
keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.localservers.postgres import (
    BINDIR_ENV,
    OS_USER,
    PG_MAJOR,
    PG_ROOT,
    SUPERUSER,
    TEST_SETTINGS,
    TMPDIR_ENV,
    PgDatabase,
    PostgresError,
    PostgresServer,
    find_bindir,
    free_port,
    run_postgres,
)

__all__ = [
    "BINDIR_ENV", "OS_USER", "PG_MAJOR", "PG_ROOT", "SUPERUSER", "TEST_SETTINGS", "TMPDIR_ENV", "PgDatabase",
    "PostgresError", "PostgresServer", "find_bindir", "free_port", "pg_database", "postgres_server", "run_postgres",
    "store_url",
]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL 15 for the session, on its Unix socket."""
    with run_postgres() as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[PgDatabase]:
    """A fresh, empty database for one test (``t_<uuid>``), dropped afterwards.

    If the test stopped the server and did not start it again, teardown starts it, so
    the next test finds it running.
    """
    database = postgres_server.create_database()
    try:
        yield database
    finally:
        postgres_server.start()
        postgres_server.drop_database(database.name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store: a SQLite file in tmp_path, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/loginbridge.db"
    database: PgDatabase = request.getfixturevalue("pg_database")
    return database.url
