"""The test infrastructure itself: a real PostgreSQL 15 and a real HAProxy 2.6, started here."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg
import pytest
from aiohttp import ClientSession, web
from psycopg_pool import AsyncConnectionPool

from tests.servers.haproxy import HAProxyFactory, HealthCheck
from tests.servers.postgres import PgDatabase, PostgresServer, run_postgres

# -- PostgreSQL ----------------------------------------------------------------------------


def pool(database: PgDatabase) -> AsyncConnectionPool:
    # check_connection on checkout: a pool outlives a database restart (its broken
    # connections are replaced instead of handed out), as the service's pool will have to.
    return AsyncConnectionPool(
        database.url, min_size=1, max_size=4, open=False, check=AsyncConnectionPool.check_connection
    )


async def test_postgres_15_answers_through_an_async_pool(pg_database: PgDatabase) -> None:
    async with pool(pg_database) as db:
        async with db.connection() as conn:
            row = await (await conn.execute(
                "SELECT current_setting('server_version_num')::int, current_database(), "
                "current_setting('fsync'), current_setting('full_page_writes')"
            )).fetchone()
        assert row is not None
        version, name, fsync, full_page_writes = row
        assert 150000 <= version < 160000
        assert name == pg_database.name
        assert (fsync, full_page_writes) == ("off", "off")

        async def one(n: int) -> int:
            async with db.connection() as conn:
                found = await (await conn.execute("SELECT %s::int * 2 FROM pg_sleep(0.05)", (n,))).fetchone()
                assert found is not None
                return int(found[0])

        assert await asyncio.gather(*(one(n) for n in range(8))) == [n * 2 for n in range(8)]


async def test_upsert_returning_counts_concurrent_writers(pg_database: PgDatabase) -> None:
    upsert = (
        "INSERT INTO counters (key, n) VALUES (%s, 1) "
        "ON CONFLICT (key) DO UPDATE SET n = counters.n + 1 "
        "RETURNING n, (xmax = 0) AS inserted"
    )
    async with pool(pg_database) as db:
        async with db.connection() as conn:
            await conn.execute("CREATE TABLE counters (key text PRIMARY KEY, n int NOT NULL)")
            first = await (await conn.execute(upsert, ("alice",))).fetchone()
            second = await (await conn.execute(upsert, ("alice",))).fetchone()
        assert first == (1, True)
        assert second == (2, False)

        async def bump() -> None:
            async with db.connection() as conn:
                await conn.execute(upsert, ("bob",))

        await asyncio.gather(*(bump() for _ in range(20)))
        async with db.connection() as conn:
            rows = await (await conn.execute("SELECT key, n FROM counters ORDER BY key")).fetchall()
        assert rows == [("alice", 2), ("bob", 20)]


async def test_stop_fails_connections_fast_and_start_keeps_the_data(
    postgres_server: PostgresServer, pg_database: PgDatabase
) -> None:
    async with pool(pg_database) as db:
        async with db.connection() as conn:
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('before the crash')")

        await postgres_server.stop_async()  # -m immediate: the database is simply gone
        assert not postgres_server.is_running()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            await psycopg.AsyncConnection.connect(pg_database.url)
        assert time.monotonic() - started < 1.0, "a connect to a stopped server must fail at once, not time out"

        await postgres_server.start_async()
        assert postgres_server.is_running()
        # The same pool carries on: its dead connections are checked and replaced.
        async with db.connection() as conn:
            rows = await (await conn.execute("SELECT v FROM kept")).fetchall()
        assert rows == [("before the crash",)]


def test_each_test_gets_a_fresh_database_that_is_dropped(postgres_server: PostgresServer, pg_database: PgDatabase) -> None:
    assert pg_database.name.startswith("t_")
    with psycopg.connect(pg_database.url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,)

    other = postgres_server.create_database()
    assert other.name != pg_database.name
    with psycopg.connect(other.url) as conn:  # a connection left open does not block the drop
        postgres_server.drop_database(other.name)
    with psycopg.connect(postgres_server.url) as admin:
        left = admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (other.name,)).fetchone()
    assert left == (0,)
    assert conn.closed


def test_tcp_listener_on_loopback_and_cleanup() -> None:
    with run_postgres(tcp=True) as server:
        with psycopg.connect(server.tcp_url) as conn:
            row = conn.execute("SELECT host(inet_server_addr()), inet_server_port()").fetchone()
        assert row == ("127.0.0.1", server.port)
        with psycopg.connect(server.url) as conn:  # the Unix socket too
            assert conn.execute("SELECT 1").fetchone() == (1,)
        pid = server.pid()
        assert pid is not None
    assert not server.is_running()
    assert not server.base_dir.exists()


# -- HAProxy -------------------------------------------------------------------------------


@dataclass
class TinyApp:
    """An instance stand-in: /readyz (200, or 503 once unready) and / answering its name."""

    name: str
    runner: web.AppRunner
    port: int = 0
    ready: bool = True

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_tiny_app(name: str) -> TinyApp:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    tiny = TinyApp(name=name, runner=runner)

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(text="ready") if tiny.ready else web.Response(status=503, text="draining")

    async def root(request: web.Request) -> web.Response:
        return web.Response(text=name)

    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", root)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    tiny.port = runner.addresses[0][1]
    return tiny


@pytest.fixture
async def tiny_apps() -> AsyncIterator[dict[str, TinyApp]]:
    apps = {name: await start_tiny_app(name) for name in ("a", "b", "c")}
    yield apps
    for app in apps.values():
        await app.stop()  # a second cleanup of an already stopped runner is harmless


async def answers(http: ClientSession, url: str, count: int) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(count):
        async with http.get(url + "/") as resp:
            assert resp.status == 200
            got[await resp.text()] += 1
    return got


async def test_haproxy_round_robins_and_takes_unready_instances_out(
    haproxy_factory: HAProxyFactory, tiny_apps: dict[str, TinyApp]
) -> None:
    started = time.monotonic()
    proxy = haproxy_factory({name: app.port for name, app in tiny_apps.items()}, check=HealthCheck(interval=0.1))
    assert time.monotonic() - started < 5
    assert await proxy.wait_until_up_async(3) == {"a", "b", "c"}

    async with ClientSession() as http:
        assert await answers(http, proxy.url, 30) == Counter(a=10, b=10, c=10)

        tiny_apps["b"].ready = False  # /readyz answers 503: HAProxy marks it DOWN
        await proxy.wait_for_status_async("b", "DOWN", within=5)
        assert proxy.stats()["b"].check_status == "L7STS"
        assert await answers(http, proxy.url, 20) == Counter(a=10, c=10)

        await tiny_apps["c"].stop()  # a dead instance: connection refused, DOWN too
        await proxy.wait_for_status_async("c", "DOWN", within=5)
        assert await answers(http, proxy.url, 5) == Counter(a=5)

        tiny_apps["b"].ready = True  # back in rotation
        assert await proxy.wait_until_up_async(2, within=5) == {"a", "b"}
        assert await answers(http, proxy.url, 10) == Counter(a=5, b=5)

        proxy.set_server_state("a", "maint")  # the admin socket takes a server out by hand
        assert await answers(http, proxy.url, 4) == Counter(b=4)

    proxy.stop()
    assert proxy.process.poll() is not None
