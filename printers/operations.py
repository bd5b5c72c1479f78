"""The IPP operations of the Print-to-Web printer (RFC 8011 section 4, PWG 5100.11/5100.13).

Each operation takes a checked :class:`PrintRequest`, the authenticated
owner and, for Print-Job and Send-Document, the document as an async stream
of chunks; it returns an :class:`IppReply` or raises an IPP error.  No HTTP
here: the server module does transport and authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyipp.enums import IppOperation, IppStatus

from bridge.config import PrinterConfig
from printers.capabilities import (
    JOB_TEMPLATE,
    JOB_TEMPLATE_PRINTER_ATTRIBUTES,
    WHICH_JOBS,
    PrinterStatus,
    check_job_template,
    printer_attributes,
)
from printers.compression import NONE
from printers.compression import SUPPORTED as COMPRESSIONS
from printers.errors import (
    IppAttributesNotSupported,
    IppCompressionNotSupported,
    IppDocumentFormatNotSupported,
    IppNotAuthorized,
    IppNotFound,
    IppNotPossible,
    IppOperationError,
    JobChanged,
    PrintAuthRequired,
)
from printers.formats import OCTET_STREAM, is_supported
from printers.ipp import Attribute, AttributeGroup, GroupTag, ValueTag
from printers.jobs import DEFAULT_JOB_ATTRIBUTES, JOB_DESCRIPTION, Job, JobState, Owner, job_attributes
from printers.jobstore import JobStore
from printers.request_checks import PrintRequest, requested_names, select
from printers.spool import Spool

log = logging.getLogger(__name__)

PRINTER_STATE_IDLE = 3
PRINTER_STATE_PROCESSING = 4
_PRINTER_GROUPS = {
    "job-template": JOB_TEMPLATE_PRINTER_ATTRIBUTES,
    "media-col-database": frozenset({"media-col-database"}),
}
_JOB_GROUPS = {"job-template": frozenset(JOB_TEMPLATE), "job-description": frozenset(JOB_DESCRIPTION)}
_JOB_STATUS_ATTRIBUTES = frozenset(
    {"job-id", "job-uri", "job-state", "job-state-reasons", "job-state-message", "number-of-intervening-jobs"}
)


@dataclass(frozen=True, kw_only=True, slots=True)
class IppReply:
    status: int = IppStatus.OK
    message: str = ""
    groups: tuple[AttributeGroup, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """How the client reached the printer: the base of printer-uri and job-uri."""

    printer_uri: str
    more_info: str
    printer_uris: tuple[tuple[str, str], ...] = ()
    """printer-uri-supported for this client: (URI, uri-security-supported) pairs; empty: printer_uri alone."""


Document = AsyncIterator[bytes]


def _names(req: PrintRequest, default: tuple[str, ...]) -> frozenset[str]:
    return requested_names(req, default)


def _text_of(attr: Attribute | None, *tags: ValueTag) -> str | None:
    if attr is None:
        return None
    if len(attr.values) != 1 or attr.tag not in tags or not isinstance(attr.first, str):
        raise IppAttributesNotSupported(f"{attr.name} has the wrong syntax", unsupported=(attr,))
    return attr.first


def _bool_of(attr: Attribute | None, default: bool) -> bool:
    if attr is None:
        return default
    if len(attr.values) != 1 or attr.tag != ValueTag.BOOLEAN or not isinstance(attr.first, bool):
        raise IppOperationError(f"{attr.name} must be one boolean")
    return attr.first


async def _is_empty(document: Document) -> tuple[bool, Document]:
    """Whether a stream has no bytes, and the stream to use afterwards (first chunk put back)."""
    async for chunk in document:
        if chunk:
            async def rest(first: bytes = chunk) -> AsyncIterator[bytes]:
                yield first
                async for more in document:
                    yield more
            return False, rest()
    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator
    return True, nothing()


class Printer:
    """The printer's state and operations; one per listener."""

    def __init__(self, *, config: PrinterConfig, jobs: JobStore, spool: Spool, uuid: str,
                 auth_required: bool = True) -> None:
        self.config = config
        self.jobs = jobs
        self.spool = spool
        self.uuid = uuid
        self.auth_required = auth_required
        self.started_at = datetime.now(UTC).replace(microsecond=0)
        self._state = PRINTER_STATE_IDLE
        self._state_changed_at = self.started_at
        self.job_ready = asyncio.Event()
        self._ops: dict[IppOperation, Callable[[PrintRequest, Owner | None, Endpoint, Document],
                                               Awaitable[IppReply]]] = {
            IppOperation.PRINT_JOB: self.print_job,
            IppOperation.VALIDATE_JOB: self.validate_job,
            IppOperation.CREATE_JOB: self.create_job,
            IppOperation.SEND_DOCUMENT: self.send_document,
            IppOperation.CLOSE_JOB: self.close_job,
            IppOperation.CANCEL_JOB: self.cancel_job,
            IppOperation.CANCEL_MY_JOBS: self.cancel_my_jobs,
            IppOperation.GET_JOB_ATTRIBUTES: self.get_job_attributes,
            IppOperation.GET_JOBS: self.get_jobs,
            IppOperation.GET_PRINTER_ATTRIBUTES: self.get_printer_attributes,
            IppOperation.IDENTIFY_PRINTER: self.identify_printer,
        }

    async def handle(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint, document: Document) -> IppReply:
        if owner is None and req.needs_auth:
            raise PrintAuthRequired(f"{req.operation.name} needs credentials")
        return await self._ops[req.operation](req, owner, endpoint, document)

    # -- printer state ----------------------------------------------------

    @staticmethod
    def up_time() -> int:
        """Seconds since the epoch, as CUPS does: monotone across restarts, so job times stay comparable."""
        return int(time.time())

    async def status(self, endpoint: Endpoint) -> PrinterStatus:
        active = await self.jobs.active_count()
        state = PRINTER_STATE_PROCESSING if active else PRINTER_STATE_IDLE
        if state != self._state:
            self._state = state
            self._state_changed_at = datetime.now(UTC).replace(microsecond=0)
        return PrinterStatus(
            uri=endpoint.printer_uri, more_info=endpoint.more_info, uuid=self.uuid, name=self.config.name,
            location=self.config.location, info=self.config.info, up_time=self.up_time(),
            started_at=self.started_at, state=self._state, state_changed_at=self._state_changed_at,
            queued_jobs=active, max_job_bytes=self.config.max_job_bytes,
            auth_required=self.auth_required, uris=endpoint.printer_uris,
        )

    # -- helpers ----------------------------------------------------------

    async def _own_job(self, req: PrintRequest, owner: Owner | None) -> Job:
        if req.job_id is None:
            raise IppOperationError("job-id or job-uri is required")
        job = await self.jobs.get(req.job_id)
        if job is None:
            raise IppNotFound(f"job {req.job_id} does not exist")
        if owner is None or job.owner.tenant_id != owner.tenant_id or job.owner.email.lower() != owner.email.lower():
            raise IppNotAuthorized(f"job {req.job_id} belongs to another user")
        return job

    async def _job_group(self, job: Job, endpoint: Endpoint, wanted: frozenset[str]) -> AttributeGroup:
        intervening = 0 if job.state.terminal else await self.jobs.intervening(job)
        attrs = job_attributes(job, printer_uri=endpoint.printer_uri, up_time=self.up_time(),
                               intervening=intervening)
        return AttributeGroup(tag=GroupTag.JOB, attributes=select(attrs, wanted, _JOB_GROUPS))

    @staticmethod
    def _compression(req: PrintRequest) -> str:
        """The request's ``compression`` (RFC 8011 section 5.4.32 values: compression-supported), default none."""
        attr = req.get("compression")
        value = _text_of(attr, ValueTag.KEYWORD)
        if value is None:
            return NONE
        if value not in COMPRESSIONS:
            assert attr is not None
            raise IppCompressionNotSupported(f"compression {value} is not supported", unsupported=(attr,))
        return value

    def _creation(self, req: PrintRequest) -> tuple[str, str, tuple[Attribute, ...], tuple[Attribute, ...]]:
        """Checks shared by Print-Job, Validate-Job and Create-Job: (format, compression, template kept, unsupported).

        Create-Job carries no document, so its ``compression`` (if any) only has to be one the
        printer takes; the one that counts comes with Send-Document.
        """
        compression = self._compression(req)
        fmt_attr = req.get("document-format")
        declared = (_text_of(fmt_attr, ValueTag.MIME_MEDIA_TYPE) or OCTET_STREAM).lower()
        if not is_supported(declared):
            assert fmt_attr is not None
            raise IppDocumentFormatNotSupported(f"document-format {declared} is not supported",
                                                unsupported=(fmt_attr,))
        for name in ("job-name", "document-name"):
            _text_of(req.get(name), ValueTag.NAME, ValueTag.NAME_WITH_LANGUAGE)
        kept, unsupported = check_job_template(req.job_attributes)
        if unsupported and _bool_of(req.get("ipp-attribute-fidelity"), False):
            raise IppAttributesNotSupported("job attributes not supported", unsupported=unsupported)
        return declared, compression, kept, unsupported

    async def _accepted(self, job: Job, endpoint: Endpoint, unsupported: tuple[Attribute, ...]) -> IppReply:
        groups = [await self._job_group(job, endpoint, _JOB_STATUS_ATTRIBUTES)]
        status = IppStatus.OK
        if unsupported:
            groups.insert(0, AttributeGroup(tag=GroupTag.UNSUPPORTED, attributes=unsupported))
            status = IppStatus.OK_IGNORED_OR_SUBSTITUTED
        return IppReply(status=status, groups=tuple(groups))

    @staticmethod
    def _job_name(req: PrintRequest) -> str:
        for name in ("job-name", "document-name"):
            attr = req.get(name)
            if attr is not None and isinstance(attr.first, str) and attr.first:
                return attr.first[:255]
        return "Untitled"

    async def _queued(self, job: Job) -> Job:
        job = await self.jobs.update(job, incoming=False, reasons=("job-queued",), message="Waiting for delivery.")
        self.job_ready.set()
        return job

    # -- operations -------------------------------------------------------

    async def print_job(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                        document: Document) -> IppReply:
        assert owner is not None
        declared, compression, kept, unsupported = self._creation(req)
        spooled = await self.spool.receive(document, declared=declared, compression=compression)
        try:
            job = await self.jobs.create(
                owner=owner, name=self._job_name(req), template=kept, state=JobState.PENDING,
                reasons=("job-queued",), incoming=False, document_format=declared,
                document_format_detected=spooled.detected_format,
                document_name=_text_of(req.get("document-name"), ValueTag.NAME, ValueTag.NAME_WITH_LANGUAGE),
                document_file=spooled.file_name, document_bytes=spooled.size,
            )
        except BaseException:
            self.spool.remove(spooled.file_name)
            raise
        log.info("print job %s accepted for %s (%s bytes, %s, compression %s)", job.job_id, owner.email,
                 spooled.size, spooled.detected_format, compression)
        self.job_ready.set()
        return await self._accepted(job, endpoint, unsupported)

    async def validate_job(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                           document: Document) -> IppReply:
        _, _, _, unsupported = self._creation(req)
        if unsupported:
            return IppReply(status=IppStatus.OK_IGNORED_OR_SUBSTITUTED,
                            groups=(AttributeGroup(tag=GroupTag.UNSUPPORTED, attributes=unsupported),))
        return IppReply()

    async def create_job(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                         document: Document) -> IppReply:
        assert owner is not None
        _, _, kept, unsupported = self._creation(req)
        job = await self.jobs.create(owner=owner, name=self._job_name(req), template=kept, state=JobState.PENDING,
                               reasons=("job-incoming",), incoming=True)
        log.info("print job %s created for %s", job.job_id, owner.email)
        return await self._accepted(job, endpoint, unsupported)

    async def send_document(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                            document: Document) -> IppReply:
        job = await self._own_job(req, owner)
        last_attr = req.get("last-document")
        if last_attr is None:
            raise IppOperationError("last-document is required")
        last = _bool_of(last_attr, True)
        if job.state.terminal or not job.incoming:
            raise IppNotPossible(f"job {job.job_id} is not waiting for documents")
        fmt_attr = req.get("document-format")
        declared = (_text_of(fmt_attr, ValueTag.MIME_MEDIA_TYPE) or OCTET_STREAM).lower()
        if not is_supported(declared):
            assert fmt_attr is not None
            raise IppDocumentFormatNotSupported(f"document-format {declared} is not supported",
                                                unsupported=(fmt_attr,))
        compression = self._compression(req)
        empty, document = await _is_empty(document)
        if not empty:
            if job.document_file is not None:
                raise IppNotPossible("this printer takes one document per job")
            spooled = await self.spool.receive(document, declared=declared, compression=compression)
            try:
                job = await self.jobs.update(
                    job, document_format=declared, document_format_detected=spooled.detected_format,
                    document_name=_text_of(req.get("document-name"), ValueTag.NAME, ValueTag.NAME_WITH_LANGUAGE),
                    document_file=spooled.file_name, document_bytes=spooled.size,
                )
            except BaseException:
                self.spool.remove(spooled.file_name)
                raise
            log.info("print job %s received its document (%s bytes, compression %s)", job.job_id, spooled.size,
                     compression)
        if last:
            job = await self._close(job)
        return await self._accepted(job, endpoint, ())

    async def _close(self, job: Job) -> Job:
        if job.document_file is None:
            return await self.jobs.update(job, incoming=False, state=JobState.ABORTED, reasons=("aborted-by-system",),
                                    message="The job was closed without a document.",
                                    completed_at=datetime.now(UTC))
        return await self._queued(job)

    async def close_job(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                        document: Document) -> IppReply:
        job = await self._own_job(req, owner)
        if job.state.terminal:
            raise IppNotPossible(f"job {job.job_id} is already finished")
        if job.incoming:
            job = await self._close(job)
        return await self._accepted(job, endpoint, ())

    async def _cancel(self, job: Job) -> Job:
        if job.state.terminal:
            raise IppNotPossible(f"job {job.job_id} is already finished")
        if job.state == JobState.PROCESSING:
            raise IppNotPossible(f"job {job.job_id} is being delivered")
        log.info("print job %s canceled by its owner", job.job_id)
        job = await self.jobs.update(job, state=JobState.CANCELED, incoming=False, reasons=("job-canceled-by-user",),
                               message="Canceled by the user.", completed_at=datetime.now(UTC))
        self.spool.remove(job.document_file)  # after the commit, as the delivery worker does
        return job

    async def cancel_job(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                         document: Document) -> IppReply:
        await self._cancel(await self._own_job(req, owner))
        return IppReply()

    async def cancel_my_jobs(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                             document: Document) -> IppReply:
        assert owner is not None
        ids_attr = req.get("job-ids")
        wanted = None if ids_attr is None else {v.value for v in ids_attr.values}
        for job in await self.jobs.for_user(owner, which="not-completed", limit=None):
            if (wanted is None or job.job_id in wanted) and job.state != JobState.PROCESSING:
                with contextlib.suppress(JobChanged):  # claimed by a delivery meanwhile: no longer cancelable
                    await self._cancel(job)
        return IppReply()

    async def get_job_attributes(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                                 document: Document) -> IppReply:
        job = await self._own_job(req, owner)
        return IppReply(groups=(await self._job_group(job, endpoint, _names(req, ("all",))),))

    async def get_jobs(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                       document: Document) -> IppReply:
        assert owner is not None
        which_attr = req.get("which-jobs")
        which = _text_of(which_attr, ValueTag.KEYWORD) or "not-completed"
        if which not in WHICH_JOBS:
            assert which_attr is not None
            raise IppAttributesNotSupported(f"which-jobs {which} is not supported", unsupported=(which_attr,))
        limit_attr = req.get("limit")
        limit = None
        if limit_attr is not None:
            if limit_attr.tag != ValueTag.INTEGER or not isinstance(limit_attr.first, int) or limit_attr.first < 1:
                raise IppAttributesNotSupported("limit must be a positive integer", unsupported=(limit_attr,))
            limit = limit_attr.first
        _bool_of(req.get("my-jobs"), False)  # every user only ever sees their own jobs
        wanted = _names(req, DEFAULT_JOB_ATTRIBUTES)
        jobs = await self.jobs.for_user(owner, which=which, limit=limit)
        return IppReply(groups=tuple([await self._job_group(job, endpoint, wanted) for job in jobs]))

    async def get_printer_attributes(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                                     document: Document) -> IppReply:
        wanted = _names(req, ("all",))
        everything = printer_attributes(await self.status(endpoint))
        groups = dict(_PRINTER_GROUPS)
        groups["printer-description"] = frozenset(a.name for a in everything) - JOB_TEMPLATE_PRINTER_ATTRIBUTES
        return IppReply(groups=(AttributeGroup(tag=GroupTag.PRINTER, attributes=select(everything, wanted, groups)),))

    async def identify_printer(self, req: PrintRequest, owner: Owner | None, endpoint: Endpoint,
                               document: Document) -> IppReply:
        log.info("Identify-Printer requested by %s", owner.email if owner else "-")
        return IppReply()
