"""The printer's pure parts: request checks, job-template checks, format sniffing."""

from __future__ import annotations

import pytest
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from printers.capabilities import MEDIA_DEFAULT, check_job_template
from printers.errors import IppOperationError
from printers.formats import JPEG, PDF, sniff
from printers.ipp import Attribute, AttributeGroup, Collection, GroupTag, IppMessage, ValueTag
from printers.request_checks import check_request
from tests.printers.samples import minimal_jpeg, minimal_pdf

CHARSET = Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8")
LANG = Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en")
URI = Attribute.of("printer-uri", ValueTag.URI, "ipp://printer.example:631/ipp/print")


def message(*attrs: Attribute, op: int = Op.GET_PRINTER_ATTRIBUTES, version: tuple[int, int] = (2, 0),
            request_id: int = 1, extra: tuple[AttributeGroup, ...] = ()) -> IppMessage:
    groups = (AttributeGroup(tag=GroupTag.OPERATION, attributes=attrs), *extra)
    return IppMessage(version=version, code=op, request_id=request_id, groups=groups)


def status_of(msg: IppMessage) -> int:
    with pytest.raises(IppOperationError) as caught:
        check_request(msg, resource="/ipp/print")
    return caught.value.ipp_status


def test_a_good_request_passes() -> None:
    req = check_request(message(CHARSET, LANG, URI), resource="/ipp/print")
    assert req.operation == Op.GET_PRINTER_ATTRIBUTES and not req.needs_auth
    job = check_request(message(CHARSET, LANG, Attribute.of("job-uri", ValueTag.URI, "ipp://h/ipp/print/42"),
                                op=Op.CANCEL_JOB), resource="/ipp/print")
    assert job.job_id == 42 and job.needs_auth


@pytest.mark.parametrize(("msg", "status"), [
    (message(CHARSET, LANG, URI, version=(0, 0)), IppStatus.ERROR_VERSION_NOT_SUPPORTED),
    (message(CHARSET, LANG, URI, request_id=0), IppStatus.ERROR_BAD_REQUEST),
    (message(), IppStatus.ERROR_BAD_REQUEST),
    (message(CHARSET, URI), IppStatus.ERROR_BAD_REQUEST),
    (message(LANG, CHARSET, URI), IppStatus.ERROR_BAD_REQUEST),
    (message(CHARSET, LANG), IppStatus.ERROR_BAD_REQUEST),
    (message(Attribute.of("attributes-charset", ValueTag.CHARSET, "iso-8859-1"), LANG, URI),
     IppStatus.ERROR_CHARSET),
    (message(CHARSET, LANG, Attribute.of("printer-uri", ValueTag.URI, "ipp://h/printers/other")),
     IppStatus.ERROR_NOT_FOUND),
    (message(CHARSET, LANG, Attribute.of("job-uri", ValueTag.URI, "ipp://h/ipp/print/x")), IppStatus.ERROR_NOT_FOUND),
    (message(CHARSET, LANG, URI, op=Op.PAUSE_PRINTER), IppStatus.ERROR_OPERATION_NOT_SUPPORTED),
    (message(CHARSET, LANG, URI, extra=(AttributeGroup(tag=GroupTag.JOB), AttributeGroup(tag=GroupTag.OPERATION))),
     IppStatus.ERROR_BAD_REQUEST),
])
def test_checks_in_order(msg: IppMessage, status: int) -> None:
    assert status_of(msg) == status


def test_version_is_checked_before_request_id() -> None:
    assert status_of(message(CHARSET, LANG, URI, version=(9, 9), request_id=0)) == IppStatus.ERROR_VERSION_NOT_SUPPORTED


def test_job_template_keeps_supported_and_reports_the_rest() -> None:
    size = Collection(members=(Attribute.of("x-dimension", ValueTag.INTEGER, 21000),
                               Attribute.of("y-dimension", ValueTag.INTEGER, 29700)))
    media_col = Attribute.of("media-col", ValueTag.BEG_COLLECTION,
                             Collection(members=(Attribute.of("media-size", ValueTag.BEG_COLLECTION, size),)))
    good = (Attribute.of("copies", ValueTag.INTEGER, 2), Attribute.of("media", ValueTag.KEYWORD, MEDIA_DEFAULT),
            Attribute.of("print-quality", ValueTag.ENUM, 5), media_col)
    bad = (Attribute.of("copies", ValueTag.INTEGER, 0), Attribute.of("x-vendor", ValueTag.KEYWORD, "y"),
           Attribute.of("sides", ValueTag.KEYWORD, "two-sided-long-edge"))
    kept, unsupported = check_job_template(good + bad)
    assert kept == good
    assert [a.name for a in unsupported] == ["copies", "x-vendor", "sides"]
    assert unsupported[1].tag == ValueTag.UNSUPPORTED


def test_sniffing() -> None:
    assert sniff(minimal_pdf(1)) == PDF
    assert sniff(b"\r\n" + minimal_pdf(1)) == PDF  # junk before the header is allowed
    assert sniff(minimal_jpeg(3)) == JPEG
    assert sniff(b"%!PS-Adobe-3.0") is None
    assert sniff(b"") is None
