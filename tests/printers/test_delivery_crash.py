"""A printer process killed at the end of a delivery, then started again: the delivered job stays delivered.

The first printer is a real process (``tests/printers/crash_printer.py``) that
takes a real IPP Print-Job and delivers it over HTTPS to a platform on
loopback, and is SIGKILLed at a chosen point.  The second is the printer
application started again on the same state directory, in this process, as
the bridge starts it: spool clean-up, recovery, the delivery worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from bridge.config import BridgeConfig, DeliveryConfig, load_config
from bridge.state.store import Store
from printers.delivery import DeliveryManifest, DeliveryWorker, HttpsSink, OutboxSink
from printers.errors import DeliveryFailed
from printers.ipp import Attribute, AttributeGroup, GroupTag, IppMessage, ValueTag, decode, encode
from printers.jobs import JobState, Owner
from printers.jobstore import JobStore
from printers.server import make_printer_app
from printers.spool import Spool
from tests.paths import REPO
from tests.printers.samples import minimal_pdf
from tests.printers.test_print_spool_delivery import tls_files

PDF = minimal_pdf(3)


@dataclass
class Platform:
    """The receiving end: every POST with its Idempotency-Key; a key seen before is a recognised repeat."""

    url: str
    ca_file: Path
    posts: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        return len(self.posts) - len({key for key, _ in self.posts})


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    server_ctx, ca_file = tls_files(tmp_path)
    received: list[tuple[str, bytes]] = []

    async def accept(request: web.Request) -> web.Response:
        form = await request.post()
        document = form["document"]
        assert isinstance(document, web.FileField)
        received.append((request.headers["Idempotency-Key"], document.file.read()))
        return web.Response(status=200)

    app = web.Application(client_max_size=10**7)
    app.router.add_post("/print-jobs", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    port = runner.addresses[0][1]
    try:
        yield Platform(url=f"https://127.0.0.1:{port}/print-jobs", ca_file=ca_file, posts=received)
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(root: Path, *, port: int, delivery: dict[str, object]) -> Path:
    conf = root / "conf"
    (conf / "tenants").mkdir(parents=True)
    main = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "state_dir": str(root / "state"),
        "secrets": {"hmac_key": {"file": str(root / "state" / "hmac.key"), "generate": True}},
        "logging": {"level": "INFO"},
        "printer": {"enabled": True, "host": "127.0.0.1", "port": port, "max_job_mb": 8,
                    "delivery": {"max_attempts": 3, "backoff_seconds": 0.05, **delivery}},
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
    return conf / "bridge.yaml"


async def ipp(port: int, operation: int, *attributes: Attribute, data: bytes = b"") -> IppMessage:
    op = (Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8"),
          Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en"),
          Attribute.of("printer-uri", ValueTag.URI, f"ipp://127.0.0.1:{port}/ipp/print"), *attributes)
    body = encode(IppMessage(version=(2, 0), code=operation, request_id=1,
                             groups=(AttributeGroup(tag=GroupTag.OPERATION, attributes=op),), data=data))
    async with aiohttp.ClientSession() as http, http.post(
        f"http://127.0.0.1:{port}/ipp/print", data=body, headers={"Content-Type": "application/ipp"}
    ) as resp:
        assert resp.status == 200
        return decode(await resp.read())


def printer_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_port(port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
    for _ in range(300):
        if proc.returncode is not None:
            raise AssertionError(f"the printer exited with {proc.returncode}:\n{printer_log(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"the printer did not listen on {port}:\n{printer_log(log)}")


async def print_and_crash(config_path: Path, port: int, point: str, log: Path) -> int:
    """Start the crashing printer, print one PDF, wait for its death at ``point``; the job id."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.printers.crash_printer", str(config_path), point,
            cwd=REPO, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL)
    try:
        await wait_port(port, proc, log)
        reply = await ipp(port, Op.PRINT_JOB, Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE,
                                                          "application/pdf"), data=PDF)
        assert reply.code == IppStatus.OK, reply
        job_id = reply.find(GroupTag.JOB, "job-id")
        assert job_id is not None and isinstance(job_id.first, int)
        returncode = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert returncode == -signal.SIGKILL, f"the printer was not killed at {point}:\n{printer_log(log)}"
    return job_id.first


@pytest.fixture
async def restart() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(config: BridgeConfig) -> int:
        runner = web.AppRunner(make_printer_app(config, auth_required=False), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def final_job(port: int, job_id: int) -> IppMessage:
    for _ in range(200):
        reply = await ipp(port, Op.GET_JOB_ATTRIBUTES, Attribute.of("job-id", ValueTag.INTEGER, job_id))
        state = reply.find(GroupTag.JOB, "job-state")
        assert state is not None
        if JobState(state.first).terminal:  # type: ignore[arg-type]
            return reply
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish after the restart")


@pytest.mark.parametrize(("point", "repeats"), [
    ("delivered-not-recorded", 1),  # delivered again after the restart, under the same Idempotency-Key
    ("completed-committed", 0),
    ("spool-file-removed", 0),  # the old order's crash window: removed first, the job then aborted
])
async def test_a_crash_at_the_end_of_a_delivery_never_aborts_the_job(
    tmp_path: Path, platform: Platform, restart: object, point: str, repeats: int
) -> None:
    port = free_port()
    config_path = write_config(tmp_path, port=port, delivery={"url": platform.url, "ca_file": str(platform.ca_file)})
    job_id = await print_and_crash(config_path, port, point, tmp_path / "printer.log")
    assert len(platform.posts) == 1  # the crash came after the platform had the job

    config = load_config(config_path, require_files=False)
    reply = await final_job(await restart(config), job_id)  # type: ignore[operator]
    state = reply.find(GroupTag.JOB, "job-state")
    reasons = reply.find(GroupTag.JOB, "job-state-reasons")
    assert state is not None and state.first == JobState.COMPLETED
    assert reasons is not None and reasons.plain_values == ("job-completed-successfully",)
    await asyncio.sleep(0.2)  # a wrong redelivery would show up here
    assert platform.repeats == repeats
    assert {key for key, _ in platform.posts} == {platform.posts[0][0]} and {doc for _, doc in platform.posts} == {PDF}
    assert config.printer is not None and list(config.printer.spool_dir.iterdir()) == []


async def test_a_job_whose_document_went_with_a_crash_is_recognised_in_the_outbox(
    tmp_path: Path, restart: object, caplog: pytest.LogCaptureFixture
) -> None:
    """As a crash under the previous order left it: the outbox has the job, the spool file is gone, the row is
    'processing'.  The outbox knows the idempotency key: the job is completed, not aborted or sent twice."""
    port = free_port()
    outbox = tmp_path / "outbox"
    config_path = write_config(tmp_path, port=port, delivery={"outbox_dir": str(outbox)})
    job_id = await print_and_crash(config_path, port, "outbox-written", tmp_path / "printer.log")
    config = load_config(config_path, require_files=False)
    assert config.printer is not None
    (document,) = config.printer.spool_dir.iterdir()
    document.unlink()  # what the previous release did before it recorded the job
    manifests = list(outbox.glob("*.json"))
    assert len(manifests) == 1
    written = manifests[0].stat().st_mtime_ns

    caplog.set_level(logging.INFO, logger="printers")
    reply = await final_job(await restart(config), job_id)  # type: ignore[operator]
    state = reply.find(GroupTag.JOB, "job-state")
    assert state is not None and state.first == JobState.COMPLETED
    assert manifests[0].stat().st_mtime_ns == written  # recognised, not written again
    assert json.loads(manifests[0].read_text())["job_id"] == job_id
    assert any("already delivered" in r.getMessage() for r in caplog.records)


async def test_an_unfinished_job_whose_document_is_lost_is_aborted_at_once_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool", 10**6)
    spool.prepare()
    outbox = tmp_path / "outbox"
    config = DeliveryConfig(url=None, outbox_dir=outbox, max_attempts=5, backoff_seconds=0.01)
    async with await Store.open(tmp_path) as store:
        jobs = JobStore(store.database)
        worker = DeliveryWorker(jobs=jobs, spool=spool, sink=OutboxSink(outbox), config=config, wake=asyncio.Event())
        job = await jobs.create(owner=Owner(tenant_id="example", email="alice@example.com"), name="report",
                                template=(), state=JobState.PENDING, reasons=("job-queued",), incoming=False,
                                document_format="application/pdf", document_format_detected="application/pdf",
                                document_file="job-gone.pdf", document_bytes=len(PDF))
        caplog.set_level(logging.INFO, logger="printers")
        (claimed,) = await jobs.claim(now=job.created_at, lease=timedelta(seconds=30))
        done = await worker.deliver(claimed)
        assert done.state == JobState.ABORTED and done.attempts == 0  # no retries for a file that cannot return
        assert done.message == "The document was lost before delivery."
        assert any(str(spool.path("job-gone.pdf")) in r.getMessage() for r in caplog.records)
        assert not outbox.exists()


def manifest(key: str) -> DeliveryManifest:
    return DeliveryManifest(idempotency_key=key, job_id=1, tenant_id="example", user_email="alice@example.com",
                            job_name="report", document_name=None, document_format="application/pdf", size=3,
                            created_at=datetime.now(UTC).isoformat(), attributes=())


async def test_sink_errors_name_the_file_that_is_really_missing(tmp_path: Path) -> None:
    missing = tmp_path / "spool" / "job-missing.pdf"
    with pytest.raises(DeliveryFailed) as outbox_error:
        await OutboxSink(tmp_path / "outbox").deliver(manifest("k1"), missing)
    assert str(missing) in outbox_error.value.detail
    _, ca_file = tls_files(tmp_path)
    sink = HttpsSink("https://127.0.0.1:9/never", ca_file)
    try:
        with pytest.raises(DeliveryFailed) as https_error:
            await sink.deliver(manifest("k2"), missing)
    finally:
        await sink.close()
    assert str(missing) in https_error.value.detail and "unreachable" not in https_error.value.detail
