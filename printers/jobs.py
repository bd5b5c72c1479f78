"""Print jobs as values: state, who owns them, what was asked (RFC 8011 section 5.3).

Pure: no I/O.  The job store persists :class:`Job`; the operations render it
with :func:`job_attributes` for Print-Job, Get-Job-Attributes and Get-Jobs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from printers.compression import compression_of
from printers.ipp import Attribute, AttributeGroup, GroupTag, IppMessage, Value, ValueTag, decode, encode


class JobState(enum.IntEnum):
    """job-state values (RFC 8011 section 5.3.7)."""

    PENDING = 3
    PENDING_HELD = 4
    PROCESSING = 5
    PROCESSING_STOPPED = 6
    CANCELED = 7
    ABORTED = 8
    COMPLETED = 9

    @property
    def terminal(self) -> bool:
        return self >= JobState.CANCELED


@dataclass(frozen=True, kw_only=True, slots=True)
class Owner:
    """The authenticated user a job belongs to (never requesting-user-name)."""

    tenant_id: str
    email: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    job_id: int
    uuid: str
    owner: Owner
    name: str
    state: JobState
    reasons: tuple[str, ...]
    message: str
    document_format: str | None
    document_format_detected: str | None
    document_name: str | None
    document_file: str | None
    document_bytes: int
    incoming: bool
    template: tuple[Attribute, ...]
    created_at: datetime
    processing_at: datetime | None
    completed_at: datetime | None
    attempts: int
    next_attempt_at: datetime
    idempotency_key: str
    version: int = 0
    """Bumped by every write: the store writes back only the version it read (printers/jobstore.py)."""
    claims: int = 0
    """Delivery claims so far; more than ``attempts + 1`` means an earlier claim ended without a verdict."""

    @property
    def compression(self) -> str:
        """The ``compression`` the document came with (the spool file holds it decompressed).

        Kept in the spool file's name (printers/compression.py), since the store has no column for it.
        """
        return compression_of(self.document_file)


def encode_template(attributes: tuple[Attribute, ...]) -> bytes:
    """Job-template attributes as IPP bytes: the store keeps their value tags exactly."""
    group = AttributeGroup(tag=GroupTag.JOB, attributes=attributes)
    return encode(IppMessage(version=(2, 0), code=0, request_id=1, groups=(group,)))


def decode_template(raw: bytes) -> tuple[Attribute, ...]:
    groups = decode(raw).groups
    return groups[0].attributes if groups else ()


def _epoch(when: datetime | None) -> Value:
    if when is None:
        return Value(tag=ValueTag.NO_VALUE)
    return Value(tag=ValueTag.INTEGER, value=int(when.timestamp()))


def _date(when: datetime | None) -> Value:
    if when is None:
        return Value(tag=ValueTag.NO_VALUE)
    return Value(tag=ValueTag.DATE_TIME, value=when.astimezone(UTC))


DEFAULT_JOB_ATTRIBUTES = ("job-id", "job-uri")
"""Get-Jobs without requested-attributes returns only these (RFC 8011 section 4.2.6.1)."""

JOB_DESCRIPTION = (
    "job-id", "job-uri", "job-uuid", "job-printer-uri", "job-name", "job-originating-user-name",
    "job-state", "job-state-reasons", "job-state-message", "number-of-documents", "job-k-octets",
    "time-at-creation", "time-at-processing", "time-at-completed", "job-printer-up-time",
    "date-time-at-creation", "date-time-at-processing", "date-time-at-completed",
    "document-format-supplied", "document-format-detected", "document-name-supplied",
    "number-of-intervening-jobs", "compression-supplied",
)


def job_attributes(job: Job, *, printer_uri: str, up_time: int, intervening: int) -> tuple[Attribute, ...]:
    """Every attribute of a job; callers filter with requested-attributes."""
    attrs = [
        Attribute.of("job-id", ValueTag.INTEGER, job.job_id),
        Attribute.of("job-uri", ValueTag.URI, f"{printer_uri}/{job.job_id}"),
        Attribute.of("job-uuid", ValueTag.URI, f"urn:uuid:{job.uuid}"),
        Attribute.of("job-printer-uri", ValueTag.URI, printer_uri),
        Attribute.of("job-name", ValueTag.NAME, job.name),
        Attribute.of("job-originating-user-name", ValueTag.NAME, job.owner.email),
        Attribute.of("job-state", ValueTag.ENUM, int(job.state)),
        Attribute.of("job-state-reasons", ValueTag.KEYWORD, *(job.reasons or ("none",))),
        Attribute.of("number-of-documents", ValueTag.INTEGER, 0 if job.document_file is None else 1),
        Attribute.of("job-k-octets", ValueTag.INTEGER, (job.document_bytes + 1023) // 1024),
        Attribute(name="time-at-creation", values=(_epoch(job.created_at),)),
        Attribute(name="time-at-processing", values=(_epoch(job.processing_at),)),
        Attribute(name="time-at-completed", values=(_epoch(job.completed_at),)),
        Attribute.of("job-printer-up-time", ValueTag.INTEGER, up_time),
        Attribute(name="date-time-at-creation", values=(_date(job.created_at),)),
        Attribute(name="date-time-at-processing", values=(_date(job.processing_at),)),
        Attribute(name="date-time-at-completed", values=(_date(job.completed_at),)),
        Attribute.of("compression-supplied", ValueTag.KEYWORD, job.compression),  # PWG 5100.7 (Job Extensions)
    ]
    if job.message:
        attrs.append(Attribute.of("job-state-message", ValueTag.TEXT, job.message))
    if job.document_format is not None:
        attrs.append(Attribute.of("document-format-supplied", ValueTag.MIME_MEDIA_TYPE, job.document_format))
    if job.document_format_detected is not None:
        attrs.append(Attribute.of("document-format-detected", ValueTag.MIME_MEDIA_TYPE, job.document_format_detected))
    if job.document_name:
        attrs.append(Attribute.of("document-name-supplied", ValueTag.NAME, job.document_name))
    if not job.state.terminal:
        attrs.append(Attribute.of("number-of-intervening-jobs", ValueTag.INTEGER, intervening))
    attrs.extend(job.template)
    return tuple(attrs)
