"""Spool, job store and delivery worker on real files, real SQLite and real HTTPS on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
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
from printers.delivery import DeliveryWorker, HttpsSink, OutboxSink
from printers.errors import IppDocumentFormatError
from printers.ipp import Attribute, ValueTag
from printers.jobs import Job, JobState, Owner
from printers.jobstore import JobStore
from printers.spool import Spool
from tests.printers.samples import minimal_pdf

ALICE = Owner(tenant_id="example", email="alice@example.com")
PDF = minimal_pdf(2)


async def chunks(data: bytes, size: int = 700) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_spool_streams_fsyncs_and_names_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1024 * 1024)
    spool.prepare(set())
    doc = await spool.receive(chunks(PDF), declared="application/octet-stream")
    assert doc.detected_format == "application/pdf" and doc.size == len(PDF)
    assert spool.path(doc.file_name).read_bytes() == PDF
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [doc.file_name]


@pytest.mark.parametrize(("data", "declared", "error"), [
    (PDF + b"x" * 5000, "application/pdf", PayloadTooLarge),
    (b"%!PS-Adobe-3.0\n" * 200, "application/pdf", IppDocumentFormatError),
])
async def test_refused_documents_leave_no_file(tmp_path: Path, data: bytes, declared: str,
                                               error: type[Exception]) -> None:
    spool = Spool(tmp_path / "spool", 4096)
    spool.prepare(set())
    with pytest.raises(error):
        await spool.receive(chunks(data), declared=declared)
    assert list((tmp_path / "spool").iterdir()) == []


def test_prepare_removes_partial_and_orphan_files(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    for name in (".part-abc", "job-orphan.pdf", "job-kept.pdf"):
        (directory / name).write_bytes(b"x")
    Spool(directory, 10).prepare({"job-kept.pdf"})
    assert [p.name for p in directory.iterdir()] == ["job-kept.pdf"]


def make_job(store: JobStore, spool: Spool) -> Job:
    (spool.directory / "job-1.pdf").write_bytes(PDF)
    return store.create(owner=ALICE, name="report", template=(Attribute.of("copies", ValueTag.INTEGER, 2),),
                        state=JobState.PENDING, reasons=("job-queued",), incoming=False,
                        document_format="application/pdf", document_format_detected="application/pdf",
                        document_name="report.pdf", document_file="job-1.pdf", document_bytes=len(PDF))


def test_jobs_persist_across_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10**6)
    spool.prepare(set())
    store = JobStore.open(tmp_path)
    job = make_job(store, spool)
    store.update(job, state=JobState.PROCESSING)
    store.close()
    store = JobStore.open(tmp_path)
    again = store.get(job.job_id)
    assert again is not None and again.state == JobState.PROCESSING and again.template == job.template
    assert store.for_user("alice@example.com", which="not-completed", limit=None) == [again]
    assert store.for_user("bob@example.org", which="all", limit=None) == []
    assert [j.job_id for j in store.interrupted()] == [job.job_id]
    store.close()


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


async def test_https_delivery_retries_with_backoff_then_completes(tmp_path: Path) -> None:
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
    spool = Spool(tmp_path / "spool", 10**6)
    spool.prepare(set())
    store = JobStore.open(tmp_path)
    sink = HttpsSink(url, ca_file)
    worker = DeliveryWorker(jobs=store, spool=spool, sink=sink, config=config, wake=asyncio.Event())
    try:
        job = make_job(store, spool)
        first = await worker.deliver(job)
        assert (first.state, first.attempts, first.reasons) == (JobState.PENDING, 1, ("job-queued",))
        second = await worker.deliver(first)
        assert second.attempts == 2
        assert second.next_attempt_at - first.next_attempt_at >= timedelta(seconds=0.01)  # doubled backoff
        done = await worker.deliver(second)
        assert done.state == JobState.COMPLETED and done.reasons == ("job-completed-successfully",)
        assert not spool.path("job-1.pdf").exists()
        assert {r["key"] for r in received} == {job.idempotency_key}  # one key for every attempt
        last = received[-1]
        assert (last["tenant"], last["user"], last["document"]) == ("example", ALICE.email, PDF)
        assert last["job"]["job_attributes"] == {"copies": 2}  # type: ignore[index]
    finally:
        await sink.close()
        store.close()
        await runner.cleanup()


async def test_worker_aborts_after_max_attempts_and_recovers_interrupted_jobs(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("not a directory")
    spool = Spool(tmp_path / "spool", 10**6)
    spool.prepare(set())
    store = JobStore.open(tmp_path)
    config = DeliveryConfig(url=None, outbox_dir=blocker, max_attempts=2, backoff_seconds=0.01)
    worker = DeliveryWorker(jobs=store, spool=spool, sink=OutboxSink(blocker), config=config, wake=asyncio.Event())
    job = store.update(make_job(store, spool), state=JobState.PROCESSING)
    assert worker.recover() == 1
    job = store.get(job.job_id)  # type: ignore[assignment]
    assert job is not None and job.state == JobState.PENDING
    job = await worker.deliver(job)
    job = await worker.deliver(job)
    assert job.state == JobState.ABORTED and job.reasons == ("aborted-by-system",)
    assert not spool.path("job-1.pdf").exists()
    store.close()


async def test_worker_stops_when_woken_at_the_moment_it_is_cancelled(tmp_path: Path) -> None:
    """A job queued just as the printer shuts down must not keep the worker alive.

    With asyncio.wait_for on Python 3.11 a cancellation that races with the wake
    event is lost and the worker loops on, hanging the shutdown.
    """
    config = DeliveryConfig(url=None, outbox_dir=tmp_path / "outbox", max_attempts=5, backoff_seconds=0.01)
    spool = Spool(tmp_path / "spool", 10**6)
    spool.prepare(set())
    store = JobStore.open(tmp_path)
    try:
        for _ in range(50):
            wake = asyncio.Event()
            worker = DeliveryWorker(jobs=store, spool=spool, sink=OutboxSink(config.outbox_dir), config=config,
                                    wake=wake)
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0)  # the worker is now waiting on the event
            await asyncio.sleep(0)
            wake.set()
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2)
            assert done, "the delivery worker did not stop after cancel"
    finally:
        store.close()
