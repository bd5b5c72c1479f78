"""Print-to-Web across a cluster: three ``serve`` instances, one PostgreSQL, one spool directory, HAProxy.

Thirty print jobs go through the load balancer while one instance is killed with SIGKILL half-way.
Every job that got successful-ok must reach the platform exactly once (one idempotency key per job,
the document byte for byte), whichever instance accepted it and whichever delivered it: jobs the
dead instance had queued are delivered by the others, and the one it was delivering is taken over
when its lease runs out.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from bridge.config import load_config
from bridge.demo import seed
from bridge.idpsim.server import RunningSimulator
from bridge.state.store import Store
from printers.ipp import Attribute, GroupTag, ValueTag, decode
from tests.flows.conftest import DEMO_SEED, KNOWN_SECRETS, tenant_yaml
from tests.flows.print_support import ipp_request
from tests.flows.test_cluster import _wait_ready, free_port, stop_instances
from tests.paths import REPO
from tests.printers.samples import minimal_pdf
from tests.printers.test_print_spool_delivery import tls_files
from tests.servers.haproxy import HAProxy, HealthCheck, haproxy_factory
from tests.servers.postgres import PgDatabase, pg_database, postgres_server

__all__ = ["haproxy_factory", "pg_database", "postgres_server"]  # the real-server fixtures, used by name

ALICE = ("alice@example.com", "alice-demo-pass")
INSTANCES = 3
JOBS = 30
LEASE_SECONDS = 4
PLATFORM_DELAY = 0.25  # each delivery takes this long: the instance killed is mid-delivery


@dataclass
class Platform:
    """The receiving end: every POST (Idempotency-Key, manifest, document), answered after a delay."""

    url: str
    ca_file: Path
    posts: list[tuple[str, dict[str, Any], bytes]] = field(default_factory=list)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    server_ctx, ca_file = tls_files(tmp_path)
    posts: list[tuple[str, dict[str, Any], bytes]] = []

    async def accept(request: web.Request) -> web.Response:
        form = await request.post()
        document, manifest = form["document"], form["job"]
        assert isinstance(document, web.FileField) and isinstance(manifest, bytes | bytearray)
        body = document.file.read()
        await asyncio.sleep(PLATFORM_DELAY)
        posts.append((request.headers["Idempotency-Key"], json.loads(manifest), body))
        return web.Response(status=200)

    app = web.Application(client_max_size=10**7)
    app.router.add_post("/print-jobs", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    try:
        yield Platform(url=f"https://127.0.0.1:{runner.addresses[0][1]}/print-jobs", ca_file=ca_file, posts=posts)
    finally:
        await runner.cleanup()


@dataclass
class PrintCluster:
    lb: HAProxy
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    db: PgDatabase
    spool: Path


@pytest.fixture
async def print_cluster(tmp_path: Path, sim: RunningSimulator, pg_database: PgDatabase, platform: Platform,
                        haproxy_factory: Any) -> AsyncIterator[PrintCluster]:
    conf = tmp_path / "conf"
    (conf / "tenants").mkdir(parents=True)
    state, spool = tmp_path / "state", tmp_path / "shared-spool"
    main = {
        "listen": {"host": "127.0.0.1", "port": 8080},
        "state_dir": str(state),
        "secrets": {"hmac_key": {"file": str(state / "hmac.key"), "generate": True}},
        "idp_client": {"connect_timeout_seconds": 2, "timeout_seconds": 10},
        "store": {"url": pg_database.url},
        "printer": {"enabled": True, "host": "127.0.0.1", "port": 8631, "max_job_mb": 8, "spool_dir": str(spool),
                    "delivery": {"url": platform.url, "ca_file": str(platform.ca_file), "max_attempts": 5,
                                 "backoff_seconds": 0.2, "lease_seconds": LEASE_SECONDS, "poll_seconds": 0.3}},
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
    (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant_yaml(sim)))
    config = load_config(conf / "bridge.yaml")
    async with await Store.open(config.store_url) as store:
        await seed(config, store, DEMO_SEED)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOGINBRIDGE_STORE_URL", None)
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    printer_ports: dict[str, int] = {}
    api_ports: list[int] = []
    try:
        for index in range(INSTANCES):
            port, printer_port = free_port(), free_port()
            logs.append(tmp_path / f"instance-{index}.log")
            with logs[-1].open("wb") as out:
                procs.append(subprocess.Popen(  # noqa: ASYNC220 (the instances run beside this loop)
                    [sys.executable, "-m", "bridge", "serve", "--config", str(conf / "bridge.yaml"),
                     "--port", str(port), "--printer-port", str(printer_port)],
                    cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
            if index == 0:  # the first alone: it makes the keys the others read; then the others together
                await _wait_ready(f"http://127.0.0.1:{port}", procs[-1])
            api_ports.append(port)
            printer_ports[f"p{index}"] = printer_port
        await asyncio.gather(*(_wait_ready(f"http://127.0.0.1:{port}", proc)
                               for port, proc in zip(api_ports, procs, strict=True)))
        lb = haproxy_factory(printer_ports, check=HealthCheck(path="/"))
        await lb.wait_until_up_async(INSTANCES, within=20)
        yield PrintCluster(lb=lb, procs=procs, logs=logs, db=pg_database, spool=spool)
    finally:
        await stop_instances(procs)


async def print_one(http: aiohttp.ClientSession, lb: HAProxy, document: bytes) -> int | None:
    """Print-Job through the load balancer; the job-id on successful-ok, None on any failure."""
    body = ipp_request(Op.PRINT_JOB, Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"),
                       data=document, printer_uri=f"ipp://127.0.0.1:{lb.port}/ipp/print")
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    try:
        async with http.post(f"{lb.url}/ipp/print", data=body, headers={
                "Content-Type": "application/ipp", "Authorization": f"Basic {token}"}) as resp:
            raw = await resp.read()
            if resp.status != 200 or resp.content_type != "application/ipp":
                return None
    except (aiohttp.ClientError, TimeoutError):
        return None
    reply = decode(raw)
    if reply.code != IppStatus.OK:
        return None
    job_id = reply.find(GroupTag.JOB, "job-id")
    assert job_id is not None and isinstance(job_id.first, int)
    return job_id.first


async def test_jobs_acknowledged_before_an_instance_is_killed_are_delivered_exactly_once(
    print_cluster: PrintCluster, platform: Platform
) -> None:
    KNOWN_SECRETS.add(ALICE[1])
    documents = [minimal_pdf(1, text=f"cluster job {n:02d}") for n in range(JOBS)]
    acknowledged: dict[int, bytes] = {}  # job-id -> the document sent
    killed = asyncio.Event()
    lock = asyncio.Semaphore(3)

    async def send(n: int) -> None:
        async with lock:
            for _ in range(5):  # what a print queue does: try again after a failure
                job_id = await print_one(http, print_cluster.lb, documents[n])
                if job_id is not None:
                    acknowledged[job_id] = documents[n]
                    break
                await asyncio.sleep(0.3)
            if len(acknowledged) >= JOBS // 3 and not killed.is_set():
                killed.set()
                print_cluster.procs[0].send_signal(signal.SIGKILL)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(send(n) for n in range(JOBS)))
    assert killed.is_set() and print_cluster.procs[0].wait(5) == -signal.SIGKILL
    assert len(acknowledged) >= JOBS - 2, f"only {len(acknowledged)} of {JOBS} jobs were acknowledged"

    def delivered() -> dict[int, set[str]]:
        keys: dict[int, set[str]] = {}
        for key, manifest, _ in platform.posts:
            keys.setdefault(int(manifest["job_id"]), set()).add(key)
        return keys

    deadline = asyncio.get_running_loop().time() + LEASE_SECONDS * 3 + 30
    while not set(acknowledged) <= set(delivered()):
        missing = sorted(set(acknowledged) - set(delivered()))
        assert asyncio.get_running_loop().time() < deadline, f"jobs never delivered: {missing}"
        await asyncio.sleep(0.2)
    await asyncio.sleep(LEASE_SECONDS + 1)  # a wrong second delivery would show up here

    keys = delivered()
    for job_id, document in acknowledged.items():
        assert len(keys[job_id]) == 1, f"job {job_id} delivered under several keys: {keys[job_id]}"
        bodies = {body for _, manifest, body in platform.posts if manifest["job_id"] == job_id}
        assert bodies == {document}, f"job {job_id}: the platform did not get the bytes that were printed"
    posted_keys = [key for key, _, _ in platform.posts]
    repeats = len(posted_keys) - len(set(posted_keys))
    # A repeat (same key, same bytes) is possible only for the one delivery the killed instance had in flight.
    assert repeats <= 1, f"{repeats} deliveries repeated"
    async with await Store.open(print_cluster.db.url) as store:
        states = await store.database.fetchall("SELECT state, count(*) FROM print_jobs GROUP BY state")
        taken_over = await store.database.fetchval("SELECT count(*) FROM print_jobs WHERE claims > attempts + 1")
    print(f"{len(acknowledged)} jobs acknowledged, {len(platform.posts)} deliveries ({repeats} repeated),"
          f" {taken_over} taken over from the killed instance")
    assert {int(state) for state, _ in states} == {9}, states  # every job completed, none left behind
    survivors = print_cluster.procs[1:]
    assert all(p.poll() is None for p in survivors)
    leftovers = [p.name for p in print_cluster.spool.iterdir()
                 if p.name.startswith("job-") and f"~{print_cluster.procs[0].pid}~" not in p.name]
    assert leftovers == [], leftovers  # the survivors removed every document they delivered


async def print_status(http: aiohttp.ClientSession, lb: HAProxy, document: bytes) -> tuple[int, int | None]:
    """Print-Job through the load balancer: (HTTP status, IPP status or None)."""
    body = ipp_request(Op.PRINT_JOB, Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"),
                       data=document, printer_uri=f"ipp://127.0.0.1:{lb.port}/ipp/print")
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    async with http.post(f"{lb.url}/ipp/print", data=body, headers={
            "Content-Type": "application/ipp", "Authorization": f"Basic {token}"}) as resp:
        raw = await resp.read()
        return resp.status, decode(raw).code if resp.content_type == "application/ipp" else None


async def test_printing_while_postgres_is_down_is_refused_then_resumes(
    print_cluster: PrintCluster, platform: Platform
) -> None:
    KNOWN_SECRETS.add(ALICE[1])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        assert await print_status(http, print_cluster.lb, minimal_pdf(1, text="before")) == (200, IppStatus.OK)
        await print_cluster.db.server.stop_async()
        try:
            for n in range(3):
                started = asyncio.get_running_loop().time()
                status = await print_status(http, print_cluster.lb, minimal_pdf(1, text=f"during {n}"))
                # server-error-service-unavailable: the queue keeps the job and tries again later
                assert status == (200, 0x0502), status
                assert asyncio.get_running_loop().time() - started < 8
        finally:
            await print_cluster.db.server.start_async()
        deadline = asyncio.get_running_loop().time() + 30
        while (status := await print_status(http, print_cluster.lb, minimal_pdf(1, text="after")))[1] != IppStatus.OK:
            assert asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(0.5)
    deadline = asyncio.get_running_loop().time() + 30
    while {body for _, _, body in platform.posts} != {minimal_pdf(1, text="before"), minimal_pdf(1, text="after")}:
        assert asyncio.get_running_loop().time() < deadline, [m["job_id"] for _, m, _ in platform.posts]
        await asyncio.sleep(0.2)
    assert all(proc.poll() is None for proc in print_cluster.procs)
    assert [p.name for p in print_cluster.spool.iterdir() if p.name.startswith("job-")] == []
