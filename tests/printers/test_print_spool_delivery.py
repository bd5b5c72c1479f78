"""Spool, job store and delivery worker on real files, real SQLite and PostgreSQL, real HTTPS on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bridge.config import DeliveryConfig
from bridge.errors import PayloadTooLarge
from bridge.state.store import Store
from printers.delivery import DeliveryWorker, HttpsSink, OutboxSink
from printers.errors import IppDocumentFormatError, JobChanged
from printers.identity import UUID_FILENAME, load_printer_uuid
from printers.ipp import Attribute, ValueTag
from printers.jobs import Job, JobState, Owner, encode_template
from printers.jobstore import LEGACY_DB, JobStore
from printers.spool import ABANDONED_AFTER, Spool
from tests.printers.samples import minimal_pdf
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["pg_database", "postgres_server", "store_url"]  # the real-server fixtures, used by name below

ALICE = Owner(tenant_id="example", email="alice@example.com")
PDF = minimal_pdf(2)
LEASE = timedelta(seconds=30)
HOST = socket.gethostname()


async def chunks(data: bytes, size: int = 700) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.fixture
def url(store_url: str) -> str:
    return store_url


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    async with await Store.open(url) as opened:
        yield opened


@pytest.fixture
def jobs(store: Store) -> JobStore:
    return JobStore(store.database)


def dead_pid() -> int:
    """The pid of a process that has just exited (and was reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


async def test_spool_streams_fsyncs_and_names_the_file_after_its_writer(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1024 * 1024)
    spool.prepare()
    doc = await spool.receive(chunks(PDF), declared="application/octet-stream")
    assert doc.detected_format == "application/pdf" and doc.size == len(PDF)
    assert spool.path(doc.file_name).read_bytes() == PDF
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [doc.file_name]
    assert doc.file_name.startswith(f"job-{HOST}~{os.getpid()}~") and doc.file_name.endswith(".pdf")


@pytest.mark.parametrize(("data", "declared", "error"), [
    (PDF + b"x" * 5000, "application/pdf", PayloadTooLarge),
    (b"%!PS-Adobe-3.0\n" * 200, "application/pdf", IppDocumentFormatError),
])
async def test_refused_documents_leave_no_file(tmp_path: Path, data: bytes, declared: str,
                                               error: type[Exception]) -> None:
    spool = Spool(tmp_path / "spool", 4096)
    spool.prepare()
    with pytest.raises(error):
        await spool.receive(chunks(data), declared=declared)
    assert list((tmp_path / "spool").iterdir()) == []


async def test_the_sweep_never_touches_a_live_writers_files(tmp_path: Path) -> None:
    """A shared spool: only files of writers known dead (this host, pid gone), untagged or abandoned go."""
    directory = tmp_path / "spool"
    directory.mkdir()
    gone, me = dead_pid(), os.getpid()
    names = {
        f".part-{HOST}~{gone}~aa": False,  # a dead process's cut-short upload
        f"job-{HOST}~{gone}~bb.pdf": False,  # a dead process's file no job needs
        f"job-{HOST}~{gone}~cc.pdf": True,  # ... that a job still needs
        f".part-{HOST}~{me}~dd": True,  # this process's upload in progress
        f"job-{HOST}~{me}~ee.pdf": True,  # this process's file, its row about to commit
        ".part-ff": False, "job-gg.pdf": False,  # made before the spool was shared (one process)
        ".part-otherhost~12~hh": True,  # another host's upload in progress
        "job-otherhost~12~ii.pdf": True,  # another host's file, row about to commit
        "job-otherhost~12~jj.pdf": False,  # another host's file left for longer than ABANDONED_AFTER
        "notes.txt": True,  # not the spool's
    }
    for name in names:
        (directory / name).write_bytes(b"x")
    old = time.time() - ABANDONED_AFTER - 5
    os.utime(directory / "job-otherhost~12~jj.pdf", (old, old))
    removed = await Spool(directory, 10).sweep({f"job-{HOST}~{gone}~cc.pdf"})
    assert sorted(p.name for p in directory.iterdir()) == sorted(n for n, kept in names.items() if kept)
    assert removed == sum(not kept for kept in names.values())


async def make_job(jobs: JobStore, spool: Spool, owner: Owner = ALICE, name: str = "job-1.pdf") -> Job:
    (spool.directory / name).write_bytes(PDF)
    return await jobs.create(owner=owner, name="report", template=(Attribute.of("copies", ValueTag.INTEGER, 2),),
                             state=JobState.PENDING, reasons=("job-queued",), incoming=False,
                             document_format="application/pdf", document_format_detected="application/pdf",
                             document_name="report.pdf", document_file=name, document_bytes=len(PDF))


def spool_in(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", 10**6)
    spool.prepare()
    return spool


async def test_jobs_persist_and_belong_to_their_tenant_and_user(url: str, tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    async with await Store.open(url) as store:
        job = await make_job(JobStore(store.database), spool)
    async with await Store.open(url) as store:
        jobs = JobStore(store.database)
        again = await jobs.get(job.job_id)
        assert again == job and again.template == (Attribute.of("copies", ValueTag.INTEGER, 2),)
        assert await jobs.for_user(Owner(tenant_id="example", email="ALICE@example.com"), which="not-completed",
                                   limit=None) == [job]
        assert await jobs.for_user(Owner(tenant_id="other", email=ALICE.email), which="all", limit=None) == []
        assert await jobs.get(2**40) is None and await jobs.get(-1) is None


async def test_a_write_on_a_stale_copy_is_refused(jobs: JobStore, tmp_path: Path) -> None:
    job = await make_job(jobs, spool_in(tmp_path))
    canceled = await jobs.update(job, state=JobState.CANCELED, message="Canceled by the user.")
    assert canceled.version == job.version + 1
    with pytest.raises(JobChanged):
        await jobs.update(job, name="renamed")  # the copy read before the cancel
    assert (await jobs.get(job.job_id)) == canceled


async def test_a_claim_is_one_instances_until_its_lease_runs_out(store: Store, tmp_path: Path) -> None:
    first, second = JobStore(store.database), JobStore(store.database)
    job = await make_job(first, spool_in(tmp_path))
    now = datetime.now(UTC)
    (claimed,) = await first.claim(now=now, lease=LEASE)
    assert (claimed.job_id, claimed.state, claimed.claims) == (job.job_id, JobState.PROCESSING, 1)
    assert await second.claim(now=now + LEASE / 2, lease=LEASE) == []
    assert await first.renew([job.job_id], until=now + 2 * LEASE) == 1
    assert await second.claim(now=now + LEASE * 1.5, lease=LEASE) == []  # renewed: still the first's
    assert await second.renew([job.job_id], until=now + 3 * LEASE) == 0  # not the second's to renew
    (taken,) = await second.claim(now=now + LEASE * 2, lease=LEASE)  # the first stopped renewing: taken over
    assert taken.claims == 2 and taken.claims > taken.attempts + 1  # an earlier claim ended without a verdict
    with pytest.raises(JobChanged):  # the first instance's late verdict is refused
        await first.update(claimed, state=JobState.COMPLETED)
    done = await second.update(taken, state=JobState.COMPLETED, completed_at=now)
    assert done.state == JobState.COMPLETED and await first.claim(now=now + LEASE * 9, lease=LEASE) == []


async def test_instances_claiming_together_never_share_a_job(store: Store, tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    made = [await make_job(JobStore(store.database), spool, name=f"job-{n}.pdf") for n in range(24)]
    instances = [JobStore(store.database) for _ in range(4)]
    now = datetime.now(UTC)

    async def drain(jobs: JobStore) -> list[int]:
        got: list[int] = []
        while claimed := await jobs.claim(now=now, lease=LEASE):
            got += [job.job_id for job in claimed]
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(drain(jobs) for jobs in instances))
    everything = [job_id for got in results for job_id in got]
    assert sorted(everything) == sorted(job.job_id for job in made)  # each exactly once
    assert len(set(everything)) == len(everything)


async def test_leases_of_a_dead_local_process_are_released_and_a_live_ones_are_not(
        store: Store, tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    dead = JobStore(store.database, instance=f"{HOST}/{dead_pid()}/deadbeef")
    live = JobStore(store.database, instance=f"{HOST}/{os.getppid()}/cafecafe")
    remote = JobStore(store.database, instance="elsewhere/1/abcdabcd")
    for owner_jobs, name in ((dead, "job-a.pdf"), (live, "job-b.pdf"), (remote, "job-c.pdf")):
        job = await make_job(owner_jobs, spool, name=name)
        (_,) = await owner_jobs.claim(now=job.created_at, lease=LEASE)
    now = datetime.now(UTC)
    restarted = JobStore(store.database)
    assert await restarted.release_dead_local_leases(now) == 1
    (taken,) = await restarted.claim(now=now, lease=LEASE)
    assert taken.document_file == "job-a.pdf"
    assert await restarted.claim(now=now, lease=LEASE) == []


async def test_the_printer_uuid_is_one_for_every_instance_and_keeps_the_old_file(
        store: Store, tmp_path: Path) -> None:
    old = "0f6b2d9e-0d3c-4a53-9f0b-1b2f4b8a7c11"
    (tmp_path / UUID_FILENAME).write_text(old + "\n")
    first = await asyncio.gather(*(load_printer_uuid(store.database, tmp_path) for _ in range(3)))
    assert first == [old] * 3
    (tmp_path / UUID_FILENAME).unlink()
    assert await load_printer_uuid(store.database, tmp_path / "elsewhere") == old


async def test_unfinished_jobs_of_the_old_printer_file_are_imported_once(jobs: JobStore, tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_DB
    conn = sqlite3.connect(legacy)
    conn.execute("CREATE TABLE jobs (job_id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT, tenant_id TEXT,"
                 " user_email TEXT, name TEXT, state INTEGER, reasons TEXT, message TEXT, document_format TEXT,"
                 " document_format_detected TEXT, document_name TEXT, document_file TEXT, document_bytes INTEGER,"
                 " incoming INTEGER, template BLOB, created_at REAL, processing_at REAL, completed_at REAL,"
                 " attempts INTEGER, next_attempt_at REAL, idempotency_key TEXT)")
    template = encode_template((Attribute.of("copies", ValueTag.INTEGER, 3),))
    created = time.time() - 60
    for uid, state in (("u-pending", 3), ("u-processing", 5), ("u-done", 9)):
        conn.execute("INSERT INTO jobs (uuid, tenant_id, user_email, name, state, reasons, message, document_format,"
                     " document_format_detected, document_name, document_file, document_bytes, incoming, template,"
                     " created_at, attempts, next_attempt_at, idempotency_key) VALUES"
                     " (?, 'example', 'alice@example.com', 'report', ?, 'job-queued', '', 'application/pdf',"
                     " 'application/pdf', NULL, ?, 10, 0, ?, ?, 0, 0, ?)",
                     (uid, state, f"job-{uid}.pdf", template, created, f"key-{uid}"))
    conn.commit()
    conn.close()
    assert await jobs.import_legacy(tmp_path) == 2
    assert not legacy.exists() and (tmp_path / (LEGACY_DB + ".imported")).exists()
    assert await jobs.import_legacy(tmp_path) == 0
    imported = await jobs.for_user(ALICE, which="all", limit=None)
    assert [(j.uuid, j.idempotency_key, j.state) for j in imported] == [
        ("u-pending", "key-u-pending", JobState.PENDING), ("u-processing", "key-u-processing", JobState.PENDING)]
    assert imported[0].template == (Attribute.of("copies", ValueTag.INTEGER, 3),)
    assert abs(imported[0].created_at.timestamp() - created) < 0.01


def tls_files(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


async def claim_one(jobs: JobStore, now: datetime) -> Job:
    (job,) = await jobs.claim(now=now, lease=LEASE)
    return job


async def test_https_delivery_retries_with_backoff_then_completes(jobs: JobStore, tmp_path: Path) -> None:
    received: list[dict[str, object]] = []
    answers = [503, 500, 200]

    async def platform(request: web.Request) -> web.Response:
        form = await request.post()
        document, manifest = form["document"], form["job"]
        assert isinstance(document, web.FileField) and isinstance(manifest, bytes | bytearray)
        received.append({"key": request.headers["Idempotency-Key"], "tenant": form["tenant"],
                         "user": form["user_email"], "job": json.loads(manifest),
                         "document": document.file.read()})
        return web.Response(status=answers[len(received) - 1])

    server_ctx, ca_file = tls_files(tmp_path)
    app = web.Application(client_max_size=10**7)
    app.router.add_post("/print-jobs", platform)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    url = f"https://127.0.0.1:{port}/print-jobs"
    config = DeliveryConfig(url=url, outbox_dir=None, max_attempts=5, backoff_seconds=0.01, ca_file=ca_file)
    spool = spool_in(tmp_path)
    sink = HttpsSink(url, ca_file)
    worker = DeliveryWorker(jobs=jobs, spool=spool, sink=sink, config=config, wake=asyncio.Event())
    try:
        job = await make_job(jobs, spool)
        assert await jobs.claim(now=job.created_at - timedelta(seconds=1), lease=LEASE) == []  # not due yet
        first = await worker.deliver(await claim_one(jobs, job.created_at))
        assert (first.state, first.attempts, first.reasons) == (JobState.PENDING, 1, ("job-queued",))
        assert await jobs.claim(now=first.next_attempt_at - timedelta(microseconds=1), lease=LEASE) == []  # backoff
        second = await worker.deliver(await claim_one(jobs, first.next_attempt_at))
        assert second.attempts == 2 and second.claims == 2
        assert second.next_attempt_at - first.next_attempt_at >= timedelta(seconds=0.01)  # doubled backoff
        done = await worker.deliver(await claim_one(jobs, second.next_attempt_at))
        assert done.state == JobState.COMPLETED and done.reasons == ("job-completed-successfully",)
        assert not spool.path("job-1.pdf").exists()
        assert {r["key"] for r in received} == {job.idempotency_key}  # one key for every attempt
        last = received[-1]
        assert (last["tenant"], last["user"], last["document"]) == ("example", ALICE.email, PDF)
        assert last["job"]["job_attributes"] == {"copies": 2}  # type: ignore[index]
    finally:
        await sink.close()
        await runner.cleanup()


async def test_worker_aborts_after_max_attempts(jobs: JobStore, tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("not a directory")
    spool = spool_in(tmp_path)
    config = DeliveryConfig(url=None, outbox_dir=blocker, max_attempts=2, backoff_seconds=0.01)
    worker = DeliveryWorker(jobs=jobs, spool=spool, sink=OutboxSink(blocker), config=config, wake=asyncio.Event())
    job = await make_job(jobs, spool)
    job = await worker.deliver(await claim_one(jobs, job.created_at))
    job = await worker.deliver(await claim_one(jobs, job.next_attempt_at))
    assert job.state == JobState.ABORTED and job.reasons == ("aborted-by-system",) and job.attempts == 2
    assert not spool.path("job-1.pdf").exists()
    assert await jobs.claim(now=job.next_attempt_at + LEASE * 9, lease=LEASE) == []


async def test_a_worker_delivers_what_another_instance_queued_and_could_not(jobs: JobStore, store: Store,
                                                                            tmp_path: Path) -> None:
    """Instance A acknowledged a job and died before delivering it; instance B's idle poll finds it."""
    outbox = tmp_path / "outbox"
    spool = spool_in(tmp_path)
    job = await make_job(jobs, spool)
    config = DeliveryConfig(url=None, outbox_dir=outbox, max_attempts=2, backoff_seconds=0.01, poll_seconds=0.1)
    other = JobStore(store.database)
    worker = DeliveryWorker(jobs=other, spool=spool, sink=OutboxSink(outbox), config=config, wake=asyncio.Event())
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            done = await jobs.get(job.job_id)
            if done is not None and done.state == JobState.COMPLETED:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the other instance never delivered the job")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (outbox / f"{job.idempotency_key}.pdf").read_bytes() == PDF


async def test_worker_stops_when_woken_at_the_moment_it_is_cancelled(jobs: JobStore, tmp_path: Path) -> None:
    """A job queued just as the printer shuts down must not keep the worker alive.

    With asyncio.wait_for on Python 3.11 a cancellation that races with the wake
    event is lost and the worker loops on, hanging the shutdown.
    """
    config = DeliveryConfig(url=None, outbox_dir=tmp_path / "outbox", max_attempts=5, backoff_seconds=0.01)
    spool = spool_in(tmp_path)
    assert config.outbox_dir is not None
    for _ in range(50):
        wake = asyncio.Event()
        worker = DeliveryWorker(jobs=jobs, spool=spool, sink=OutboxSink(config.outbox_dir), config=config, wake=wake)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0)  # the worker is now waiting on the event
        await asyncio.sleep(0)
        wake.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the delivery worker did not stop after cancel"
