"""Hands complete jobs to the platform: a local outbox (demo) or an HTTPS endpoint.

One worker per instance, all on the same shared jobs (``printers/jobstore.py``): any
instance delivers any acknowledged job.  A job goes pending -> processing (claimed with
a lease) -> completed, or back to pending with exponential backoff after a failed
attempt, and aborted after ``max_attempts`` failures.  Every attempt carries the job's
idempotency key, so a delivery interrupted by a crash and repeated by another instance
(its lease ran out) or after a restart is recognised by the receiver.  The spool file is
removed once the job is finished either way (documents are personal data: no retention).

Order at the end of a job: the final state is committed first, the spool file
removed second.  A crash between the two leaves a finished job and a file
that nothing needs; the spool sweep removes it (the spool keeps only the files
of unfinished jobs).  The reverse order would turn a delivered job into
'aborted' after a restart (its document gone, its row still 'processing').
A job whose document is missing although it is unfinished is checked with the
sink (the outbox knows its idempotency keys) and otherwise aborted at once,
naming the missing file: retrying cannot bring it back.  A job claimed after an
earlier claim ended without a verdict is also checked with the sink first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import aiohttp

from bridge.config import DeliveryConfig
from bridge.errors import BridgeError
from bridge.tasks import stop_task
from printers.capabilities import MULTIPLE_OPERATION_TIME_OUT
from printers.errors import DeliveryFailed, JobChanged
from printers.formats import EXTENSIONS
from printers.ipp import Attribute, Collection, IntRange, PyValue, Resolution, StringWithLanguage
from printers.jobs import Job, JobState
from printers.jobstore import JobStore
from printers.spool import Spool

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10)
JsonScalar = str | int | bool | None | list[object] | dict[str, object]


def _json_value(value: PyValue) -> JsonScalar:
    if isinstance(value, Collection):
        return {m.name: _json_values(m) for m in value.members}
    if isinstance(value, IntRange):
        return [value.lower, value.upper]
    if isinstance(value, Resolution):
        return f"{value.x}x{value.y}{'dpi' if value.units == 3 else 'dpcm'}"
    if isinstance(value, StringWithLanguage):
        return value.text
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _json_values(attr: Attribute) -> JsonScalar:
    values = [_json_value(v.value) for v in attr.values]
    return values[0] if len(values) == 1 else list(values)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryManifest:
    """What the platform learns about a job besides its document."""

    idempotency_key: str
    job_id: int
    tenant_id: str
    user_email: str
    job_name: str
    document_name: str | None
    document_format: str
    size: int
    created_at: str
    attributes: tuple[Attribute, ...]

    @classmethod
    def of(cls, job: Job) -> DeliveryManifest:
        return cls(
            idempotency_key=job.idempotency_key, job_id=job.job_id, tenant_id=job.owner.tenant_id,
            user_email=job.owner.email, job_name=job.name, document_name=job.document_name,
            document_format=job.document_format_detected or "application/octet-stream", size=job.document_bytes,
            created_at=job.created_at.isoformat(), attributes=job.template,
        )

    def to_json(self) -> str:
        return json.dumps({
            "idempotency_key": self.idempotency_key, "job_id": self.job_id, "tenant": self.tenant_id,
            "user_email": self.user_email, "job_name": self.job_name, "document_name": self.document_name,
            "document_format": self.document_format, "size": self.size, "created_at": self.created_at,
            "job_attributes": {a.name: _json_values(a) for a in self.attributes},
        }, indent=2, sort_keys=True)


class Sink(Protocol):
    async def deliver(self, manifest: DeliveryManifest, document: Path) -> None: ...

    async def delivered(self, manifest: DeliveryManifest) -> bool:
        """Whether this sink is known to hold the job already (False when it cannot tell)."""
        ...

    async def close(self) -> None: ...


def _write_durably(target: Path, writer: str | Path) -> None:
    """Write text (str) or copy a file (Path) to ``target`` via a temporary name, fsynced."""
    tmp = target.with_name(f".{target.name}.tmp")
    if isinstance(writer, Path):
        shutil.copyfile(writer, tmp)
    else:
        tmp.write_text(writer, encoding="utf-8")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)


class OutboxSink:
    """Demo delivery: ``<key><ext>`` (the document) and ``<key>.json`` (the manifest) in a directory.

    The manifest is written last: its presence means the document is complete.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def deliver(self, manifest: DeliveryManifest, document: Path) -> None:
        def work() -> None:
            self.directory.mkdir(parents=True, exist_ok=True)
            ext = EXTENSIONS.get(manifest.document_format, ".bin")
            _write_durably(self.directory / f"{manifest.idempotency_key}{ext}", document)
            _write_durably(self.directory / f"{manifest.idempotency_key}.json", manifest.to_json())
            dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

        try:
            await asyncio.to_thread(work)
        except OSError as exc:
            # exc.filename is the path that failed: the spool document or a file of the outbox
            raise DeliveryFailed(f"outbox {self.directory}: {exc.strerror}: {exc.filename}") from exc

    async def delivered(self, manifest: DeliveryManifest) -> bool:
        """The manifest is written last: its presence means the whole job is in the outbox."""
        path = self.directory / f"{manifest.idempotency_key}.json"
        return await asyncio.to_thread(path.is_file)

    async def close(self) -> None:
        return None


class HttpsSink:
    """Platform delivery: multipart POST (manifest JSON + document) with an Idempotency-Key header."""

    def __init__(self, url: str, ca_file: Path | None) -> None:
        self.url = url
        self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, manifest: DeliveryManifest, document: Path) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
        form = aiohttp.FormData()
        form.add_field("tenant", manifest.tenant_id)
        form.add_field("user_email", manifest.user_email)
        form.add_field("job", manifest.to_json(), content_type="application/json")
        try:
            handle = document.open("rb")
        except OSError as exc:
            raise DeliveryFailed(f"cannot read the spool file {document}: {exc.strerror}") from exc
        try:
            with handle:
                form.add_field("document", handle, filename=document.name, content_type=manifest.document_format)
                async with self._session.post(self.url, data=form, ssl=self._ssl,
                                              headers={"Idempotency-Key": manifest.idempotency_key}) as resp:
                    if resp.status >= 300:
                        raise DeliveryFailed(f"platform answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryFailed(f"platform unreachable: {type(exc).__name__}") from exc

    async def delivered(self, manifest: DeliveryManifest) -> bool:
        """The platform recognises a repeated Idempotency-Key, but cannot be asked without the document."""
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_sink(config: DeliveryConfig) -> Sink:
    if config.url is not None:
        return HttpsSink(config.url, config.ca_file)
    assert config.outbox_dir is not None
    return OutboxSink(config.outbox_dir)


class DeliveryWorker:
    """Claims due jobs from the shared store, one at a time, and hands them to the sink.

    Woken at once when this instance queues a job (``wake``); otherwise it looks every
    ``poll_seconds`` for jobs other instances queued and could not deliver (they died) and for
    leases that ran out.  While a delivery runs, its lease is renewed every third of its length.
    Every ``HOUSEKEEPING_SECONDS`` it releases leases of dead processes of this host, aborts
    multi-document jobs left open past the IPP time-out, sweeps the spool and runs ``chores``
    (the verification cache's prune).
    """

    def __init__(self, *, jobs: JobStore, spool: Spool, sink: Sink, config: DeliveryConfig,
                 wake: asyncio.Event, chores: Sequence[Callable[[datetime], Awaitable[object]]] = ()) -> None:
        self.jobs = jobs
        self.spool = spool
        self.sink = sink
        self.config = config
        self.wake = wake
        self.chores = tuple(chores)
        self.lease = timedelta(seconds=config.lease_seconds)

    async def start_up(self) -> None:
        """Before the first delivery: this host's dead processes' leases and spool files go at once."""
        now = datetime.now(UTC)
        await self.jobs.release_dead_local_leases(now)
        await self.spool.sweep(await self.jobs.referenced_files())

    async def run(self) -> None:
        housekeeping_at = 0.0
        while True:
            self.wake.clear()  # before the scan: a job queued during it sets the event again
            try:
                if time.monotonic() >= housekeeping_at:
                    await self.housekeeping()
                    housekeeping_at = time.monotonic() + HOUSEKEEPING_SECONDS
                await self.run_once()
                timeout = await self._sleep_seconds()
            except BridgeError as exc:
                log.warning("delivery worker: %s", exc.detail or exc.code)
                timeout = 5.0
            except Exception:
                log.exception("delivery worker: unexpected error")
                timeout = 5.0
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the event being set, and the worker
            # would then never stop (seen as a hung shutdown).
            try:
                async with asyncio.timeout(timeout):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def housekeeping(self) -> None:
        now = datetime.now(UTC)
        await self.jobs.release_dead_local_leases(now)
        for job in await self.jobs.stale_incoming(now - timedelta(seconds=MULTIPLE_OPERATION_TIME_OUT)):
            try:
                await self.jobs.update(job, state=JobState.ABORTED, incoming=False, reasons=("aborted-by-system",),
                                       message="No Close-Job or last document in time.", completed_at=now)
            except JobChanged:
                continue  # a document or Close-Job arrived meanwhile
            self.spool.remove(job.document_file)
        await self.spool.sweep(await self.jobs.referenced_files())
        for chore in self.chores:
            await chore(now)

    async def _sleep_seconds(self) -> float:
        now = datetime.now(UTC)
        wake_at = [when for when in (await self.jobs.next_due_at(), await self.jobs.next_lease_end()) if when]
        seconds = min([self.config.poll_seconds, *((w - now).total_seconds() for w in wake_at)])
        return max(0.05, seconds)

    async def run_once(self) -> None:
        while claimed := await self.jobs.claim(now=datetime.now(UTC), lease=self.lease, limit=1):
            for job in claimed:
                await self.deliver(job)

    async def _keep_lease(self, job: Job) -> None:
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                held = await self.jobs.renew([job.job_id], until=datetime.now(UTC) + self.lease)
            except BridgeError as exc:
                log.warning("print job %s: lease not renewed: %s", job.job_id, exc.detail or exc.code)
                continue
            if not held:
                log.warning("print job %s: lease lost to another instance (the idempotency key covers a repeat)",
                            job.job_id)
                return

    async def deliver(self, job: Job) -> Job:
        """Deliver a job this instance claimed (:meth:`JobStore.claim`)."""
        assert job.document_file is not None
        manifest = DeliveryManifest.of(job)
        if job.claims > job.attempts + 1 and await self._recognised(manifest):
            log.info("print job %s: already delivered before an interruption (idempotency key %s)", job.job_id,
                     job.idempotency_key)
            return await self._finish(job, state=JobState.COMPLETED, reasons=("job-completed-successfully",),
                                      message="Delivered.")
        document = self.spool.path(job.document_file)
        if not await asyncio.to_thread(document.is_file):
            return await self._document_missing(job, manifest, document)
        keeper = asyncio.create_task(self._keep_lease(job), name=f"lease-{job.job_id}")
        try:
            await self.sink.deliver(manifest, document)
        except DeliveryFailed as exc:
            return await self._failed(job, exc)
        finally:
            await stop_task(keeper)
        log.info("print job %s delivered for %s", job.job_id, job.owner.email)
        return await self._finish(job, state=JobState.COMPLETED, reasons=("job-completed-successfully",),
                                  message="Delivered.")

    async def _recognised(self, manifest: DeliveryManifest) -> bool:
        try:
            return await self.sink.delivered(manifest)
        except OSError:
            return False

    async def _finish(self, job: Job, **changes: object) -> Job:
        """The verdict, committed first; then the spool file goes (see the module docstring)."""
        try:
            done = await self.jobs.update(job, completed_at=datetime.now(UTC), **changes)
        except JobChanged:
            log.warning("print job %s: another instance took it over meanwhile; it records the outcome",
                        job.job_id)
            return job
        self.spool.remove(done.document_file)
        return done

    async def _document_missing(self, job: Job, manifest: DeliveryManifest, document: Path) -> Job:
        """An unfinished job without its spool file: delivered before a crash, or lost."""
        if await self._recognised(manifest):
            log.info("print job %s: already delivered (idempotency key %s); recorded as completed", job.job_id,
                     job.idempotency_key)
            return await self._finish(job, state=JobState.COMPLETED, reasons=("job-completed-successfully",),
                                      message="Delivered.")
        log.warning("print job %s aborted: its spool file %s is missing", job.job_id, document)
        return await self._finish(job, state=JobState.ABORTED, reasons=("aborted-by-system",),
                                  message="The document was lost before delivery.")

    async def _failed(self, job: Job, exc: DeliveryFailed) -> Job:
        attempts = job.attempts + 1
        now = datetime.now(UTC)
        if attempts >= self.config.max_attempts:
            log.warning("print job %s aborted after %s failed deliveries: %s", job.job_id, attempts, exc.detail)
            return await self._finish(job, attempts=attempts, state=JobState.ABORTED, reasons=("aborted-by-system",),
                                      message=f"Delivery failed {attempts} times.")
        delay = self.config.backoff_seconds * 2 ** (attempts - 1)
        log.info("print job %s delivery attempt %s failed (%s); retry in %.1f s", job.job_id, attempts,
                 exc.detail, delay)
        try:
            return await self.jobs.update(job, attempts=attempts, state=JobState.PENDING, reasons=("job-queued",),
                                          message=f"Delivery failed; retrying in {delay:.0f} s.",
                                          next_attempt_at=now + timedelta(seconds=delay))
        except JobChanged:
            log.warning("print job %s: another instance took it over meanwhile", job.job_id)
            return job
