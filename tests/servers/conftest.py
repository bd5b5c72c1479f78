"""The real-server fixtures, for the tests in this folder.

Another folder uses them the same way: import the fixtures into its conftest. A
session-scoped fixture imported into two conftests is two fixtures (two servers per run);
when several folders need the one PostgreSQL, import it once, into tests/conftest.py.
"""

from tests.servers.haproxy import haproxy_factory
from tests.servers.postgres import pg_database, postgres_server
from tests.servers.slapd import slapd_server

__all__ = ["haproxy_factory", "pg_database", "postgres_server", "slapd_server"]
