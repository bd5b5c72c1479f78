"""Checks every IPP request goes through, in the order ippeveprinter applies them.

Pure: an :class:`IppMessage` in, a :class:`PrintRequest` out or an IPP error.
Order (RFC 8011 section 4.1): version; request-id; groups in order;
attributes-charset then attributes-natural-language first; a target
(printer-uri or job-uri) naming this printer, else client-error-not-found.
Authentication comes after these, in the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pyipp.enums import IppOperation

from printers.capabilities import OPERATIONS
from printers.errors import (
    IppAttributesNotSupported,
    IppCharsetNotSupported,
    IppNotFound,
    IppOperationError,
    IppOperationNotSupported,
    IppVersionNotSupported,
)
from printers.ipp import Attribute, AttributeGroup, GroupTag, IppMessage, ValueTag

SUPPORTED_MAJOR_VERSIONS = (1, 2)
CHARSETS = ("utf-8", "us-ascii")
PUBLIC_OPERATIONS = frozenset({IppOperation.GET_PRINTER_ATTRIBUTES})
"""Operations allowed without credentials: a driverless client (CUPS ``-m everywhere``)
reads the printer's description before it knows whom to ask for a password."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PrintRequest:
    """A request that passed the common checks."""

    version: tuple[int, int]
    request_id: int
    operation: IppOperation
    operation_attributes: AttributeGroup
    job_attributes: tuple[Attribute, ...]
    job_id: int | None
    """The job named by job-uri or printer-uri + job-id, when the request names one."""

    def get(self, name: str) -> Attribute | None:
        return self.operation_attributes.get(name)

    @property
    def needs_auth(self) -> bool:
        return self.operation not in PUBLIC_OPERATIONS


def _uri_path(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    try:
        parts = urlsplit(raw)
    except ValueError:
        return None
    if parts.scheme not in ("ipp", "ipps", "http", "https"):
        return None
    return parts.path.rstrip("/") or "/"


def _job_id_from_path(path: str, resource: str) -> int | None:
    prefix = resource + "/"
    if not path.startswith(prefix):
        return None
    tail = path[len(prefix):]
    if not tail.isdigit() or len(tail) > 9:
        return None
    return int(tail)


def _single(attr: Attribute, tag: ValueTag) -> object:
    if len(attr.values) != 1 or attr.values[0].tag != tag:
        raise IppOperationError(f"{attr.name} must be one {tag.name} value")
    return attr.first


def check_request(msg: IppMessage, *, resource: str) -> PrintRequest:
    """The common request checks; ``resource`` is the printer's path (e.g. /ipp/print)."""
    if msg.version[0] not in SUPPORTED_MAJOR_VERSIONS:
        raise IppVersionNotSupported(f"IPP version {msg.version[0]}.{msg.version[1]}")
    if msg.request_id <= 0:
        raise IppOperationError("request-id must be greater than zero")
    previous = 0
    for group in msg.groups:
        if group.tag < previous:
            raise IppOperationError("attribute groups out of order")
        previous = group.tag
    if not msg.groups or msg.groups[0].tag != GroupTag.OPERATION:
        raise IppOperationError("the request has no operation attributes")
    if len(msg.groups_of(GroupTag.OPERATION)) != 1:
        raise IppOperationError("more than one operation attributes group")
    op_group = msg.groups[0]
    names = op_group.names()
    if len(names) < 2 or names[0] != "attributes-charset" or names[1] != "attributes-natural-language":
        raise IppOperationError("attributes-charset and attributes-natural-language must come first")
    charset = _single(op_group.attributes[0], ValueTag.CHARSET)
    _single(op_group.attributes[1], ValueTag.NATURAL_LANGUAGE)
    if not isinstance(charset, str) or charset.lower() not in CHARSETS:
        unsupported = (op_group.attributes[0],)
        raise IppCharsetNotSupported("attributes-charset not supported", unsupported=unsupported)
    if len(set(names)) != len(names):
        raise IppOperationError("an operation attribute is repeated")

    job_id: int | None = None
    printer_uri, job_uri = op_group.get("printer-uri"), op_group.get("job-uri")
    if printer_uri is not None:
        path = _uri_path(_single(printer_uri, ValueTag.URI))
        if path != resource:
            raise IppNotFound("printer-uri does not name this printer")
        if (job_id_attr := op_group.get("job-id")) is not None:
            value = _single(job_id_attr, ValueTag.INTEGER)
            if not isinstance(value, int) or value < 1:
                raise IppAttributesNotSupported("job-id must be positive", unsupported=(job_id_attr,))
            job_id = value
    elif job_uri is not None:
        path = _uri_path(_single(job_uri, ValueTag.URI))
        job_id = None if path is None else _job_id_from_path(path, resource)
        if job_id is None:
            raise IppNotFound("job-uri does not name a job of this printer")
    else:
        raise IppOperationError("printer-uri or job-uri is required")

    try:
        operation = IppOperation(msg.code)
    except ValueError:
        operation = IppOperation.CUPS_INVALID
    if operation not in OPERATIONS:
        raise IppOperationNotSupported(f"operation 0x{msg.code:04x} is not supported")

    job_attrs: list[Attribute] = []
    for group in msg.groups_of(GroupTag.JOB):
        job_attrs.extend(group.attributes)
    return PrintRequest(
        version=msg.version,
        request_id=msg.request_id,
        operation=operation,
        operation_attributes=op_group,
        job_attributes=tuple(job_attrs),
        job_id=job_id,
    )


# --------------------------------------------------------------------------
# requested-attributes (RFC 8011 section 4.2.5.1, group names from PWG 5100.12)


def requested_names(req: PrintRequest, default: tuple[str, ...] = ("all",)) -> frozenset[str]:
    attr = req.get("requested-attributes")
    if attr is None:
        return frozenset(default)
    names = []
    for value in attr.values:
        if value.tag != ValueTag.KEYWORD or not isinstance(value.value, str):
            raise IppAttributesNotSupported("requested-attributes takes keywords", unsupported=(attr,))
        names.append(value.value)
    return frozenset(names)


def select(
    attributes: tuple[Attribute, ...], wanted: frozenset[str], groups: dict[str, frozenset[str]]
) -> tuple[Attribute, ...]:
    """The attributes whose name, or whose group name, was requested."""
    if "all" in wanted:
        return attributes
    expanded = set(wanted)
    for group_name, members in groups.items():
        if group_name in wanted:
            expanded |= members
    return tuple(a for a in attributes if a.name in expanded)
