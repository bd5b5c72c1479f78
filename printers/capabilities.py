"""What the printer says about itself: RFC 8011 / PWG 5100.12 printer attributes.

Pure.  The same tables answer Get-Printer-Attributes and check the
job-template attributes of Print-Job, Validate-Job and Create-Job, so the
printer never claims a value it then refuses (or the reverse).  The printer is
virtual (documents go to the platform, e.g. as faxes): it is monochrome, has
one tray, and passes the job-template choices through to the platform.
It takes what IPP Everywhere clients send (PDF, JPEG and PWG raster, PWG
5100.14), but renders nothing: documents reach the platform as sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from pyipp.enums import IppOperation

from printers.compression import SUPPORTED as COMPRESSIONS
from printers.formats import OCTET_STREAM, SUPPORTED_FORMATS
from printers.icons import icon_uris
from printers.ipp import Attribute, Collection, IntRange, PyValue, Resolution, ResolutionUnit, Value, ValueTag

OPERATIONS = (
    IppOperation.PRINT_JOB,
    IppOperation.VALIDATE_JOB,
    IppOperation.CREATE_JOB,
    IppOperation.SEND_DOCUMENT,
    IppOperation.CANCEL_JOB,
    IppOperation.GET_JOB_ATTRIBUTES,
    IppOperation.GET_JOBS,
    IppOperation.GET_PRINTER_ATTRIBUTES,
    IppOperation.CANCEL_MY_JOBS,
    IppOperation.CLOSE_JOB,
    IppOperation.IDENTIFY_PRINTER,
)
IPP_VERSIONS = ("1.0", "1.1", "2.0")
WHICH_JOBS = ("completed", "not-completed", "all")
MULTIPLE_OPERATION_TIME_OUT = 300

# Media: PWG 5101.1 self-describing names and their sizes in hundredths of mm.
MEDIA_SIZES = {"iso_a4_210x297mm": (21000, 29700), "na_letter_8.5x11in": (21590, 27940)}
MEDIA_DEFAULT = "iso_a4_210x297mm"
MEDIA_SOURCE = "auto"
MEDIA_TYPE = "stationery"
RESOLUTION = Resolution(x=300, y=300, units=ResolutionUnit.DOTS_PER_INCH)
RESOLUTIONS = (RESOLUTION, Resolution(x=600, y=600, units=ResolutionUnit.DOTS_PER_INCH))
"""What a document may be rendered at: the printer only forwards it, so both common raster resolutions."""
PWG_RASTER_TYPES = ("black_1", "sgray_8")
"""PWG 5102.4 colour spaces for a monochrome printer."""
# RFC 3805 prtMarkerSuppliesLevel -2: unknown.  A virtual printer has no consumables to report.
SUPPLY = b"index=1;class=supplyThatIsConsumed;type=other;unit=percent;maxcapacity=100;level=-2;colorantname=none;"
SUPPLY_DESCRIPTION = "Virtual printer: no supplies"


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterStatus:
    """The live part of the printer description."""

    uri: str
    more_info: str
    uuid: str
    name: str
    location: str
    info: str
    up_time: int
    started_at: datetime
    state: int
    state_changed_at: datetime
    queued_jobs: int
    max_job_bytes: int
    auth_required: bool
    uris: tuple[tuple[str, str], ...] = ()
    """printer-uri-supported with the uri-security-supported of each (``tls`` or ``none``), in that order;
    empty: ``uri`` alone, without TLS."""


def _media_col(name: str) -> Collection:
    x, y = MEDIA_SIZES[name]
    size = Collection(members=(Attribute.of("x-dimension", ValueTag.INTEGER, x),
                               Attribute.of("y-dimension", ValueTag.INTEGER, y)))
    return Collection(members=(
        Attribute.of("media-size", ValueTag.BEG_COLLECTION, size),
        Attribute.of("media-size-name", ValueTag.KEYWORD, name),
        Attribute.of("media-bottom-margin", ValueTag.INTEGER, 0),
        Attribute.of("media-left-margin", ValueTag.INTEGER, 0),
        Attribute.of("media-right-margin", ValueTag.INTEGER, 0),
        Attribute.of("media-top-margin", ValueTag.INTEGER, 0),
        Attribute.of("media-source", ValueTag.KEYWORD, MEDIA_SOURCE),
        Attribute.of("media-type", ValueTag.KEYWORD, MEDIA_TYPE),
    ))


def _uris(status: PrinterStatus) -> tuple[tuple[str, str], ...]:
    return status.uris or ((status.uri, "none"),)


def _kw(name: str, *values: str) -> Attribute:
    return Attribute.of(name, ValueTag.KEYWORD, *values)


def _int(name: str, *values: int) -> Attribute:
    return Attribute.of(name, ValueTag.INTEGER, *values)


def _enum(name: str, *values: int) -> Attribute:
    return Attribute.of(name, ValueTag.ENUM, *values)


# job-template attribute -> (its *-default, its *-supported); the checker below uses the same values.
_KEYWORD_CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "media": (MEDIA_DEFAULT, tuple(MEDIA_SIZES)),
    "sides": ("one-sided", ("one-sided",)),
    "output-bin": ("face-down", ("face-down",)),
    "print-color-mode": ("monochrome", ("auto", "monochrome")),
    "print-content-optimize": ("auto", ("auto",)),
    "print-rendering-intent": ("auto", ("auto",)),
    "print-scaling": ("auto", ("auto", "fit", "fill", "none")),
    "multiple-document-handling": ("separate-documents-collated-copies",
                                   ("separate-documents-collated-copies", "separate-documents-uncollated-copies")),
    "job-sheets": ("none", ("none",)),
}
_ENUM_CHOICES: dict[str, tuple[int, tuple[int, ...]]] = {
    "finishings": (3, (3,)),
    "orientation-requested": (3, (3, 4, 5, 6)),
    "print-quality": (4, (3, 4, 5)),
}
_RANGES: dict[str, tuple[int, IntRange]] = {
    "copies": (1, IntRange(lower=1, upper=999)),
    "job-priority": (50, IntRange(lower=1, upper=100)),
}
_INT_CHOICES: dict[str, tuple[int, tuple[int, ...]]] = {"number-up": (1, (1,))}
OVERRIDE_SELECTORS = ("document-numbers", "pages")
"""PWG 5100.6: the members saying which documents and pages an override is for, 1setOf rangeOfInteger.
"pages" is required; "document-numbers" is accepted (and stored) although a job holds one document here,
as 5100.6 asks of single-document printers; "document-copies" is not supported."""
DOCUMENT_NUMBER_SYNONYM = "document-number"
"""Not a 5100.6 member: CUPS 2.4's ipp-everywhere.test looks for it in overrides-supported (the PWG
self-cert suite had the same slip, istopwg/ippeveselfcert issue 15).  It is listed last and read as
"document-numbers", so the printer never advertises a member it would refuse."""
OVERRIDE_MEMBERS = (*OVERRIDE_SELECTORS, "media", "media-col", "orientation-requested", "print-color-mode",
                    "print-quality", "sides", DOCUMENT_NUMBER_SYNONYM)
"""PWG 5100.6 overrides: the selectors and the job-template attributes a page range may change
(the values of ``overrides-supported``)."""
_MULTI_VALUED = frozenset({"finishings", "page-ranges", "overrides"})
MEDIA_COL_MEMBERS = ("media-bottom-margin", "media-left-margin", "media-right-margin", "media-size",
                     "media-size-name", "media-source", "media-top-margin", "media-type")
JOB_TEMPLATE = (*_KEYWORD_CHOICES, *_ENUM_CHOICES, *_RANGES, *_INT_CHOICES, "media-col", "printer-resolution",
                "page-ranges", "overrides")


def _job_template_attributes() -> list[Attribute]:
    attrs: list[Attribute] = []
    for name, (default, choices) in _KEYWORD_CHOICES.items():
        attrs += [_kw(f"{name}-default", default), _kw(f"{name}-supported", *choices)]
    for name, (d, values) in _ENUM_CHOICES.items():
        attrs += [_enum(f"{name}-default", d), _enum(f"{name}-supported", *values)]
    for name, (d, span) in _RANGES.items():
        if name == "job-priority":
            attrs += [_int(f"{name}-default", d), _int(f"{name}-supported", span.upper)]
        else:
            attrs += [_int(f"{name}-default", d), Attribute.of(f"{name}-supported", ValueTag.RANGE_OF_INTEGER, span)]
    for name, (d, values) in _INT_CHOICES.items():
        attrs += [_int(f"{name}-default", d), _int(f"{name}-supported", *values)]
    cols = [_media_col(name) for name in MEDIA_SIZES]
    sizes = [c.get("media-size") for c in cols]
    attrs += [
        Attribute.of("media-col-default", ValueTag.BEG_COLLECTION, _media_col(MEDIA_DEFAULT)),
        Attribute.of("media-col-ready", ValueTag.BEG_COLLECTION, *cols),
        Attribute.of("media-col-database", ValueTag.BEG_COLLECTION, *cols),
        _kw("media-col-supported", *MEDIA_COL_MEMBERS),
        _kw("media-ready", *MEDIA_SIZES),
        Attribute.of("media-size-supported", ValueTag.BEG_COLLECTION, *(s.first for s in sizes if s is not None)),
        _kw("media-source-supported", MEDIA_SOURCE),
        _kw("media-type-supported", MEDIA_TYPE),
        _int("media-bottom-margin-supported", 0),
        _int("media-left-margin-supported", 0),
        _int("media-right-margin-supported", 0),
        _int("media-top-margin-supported", 0),
        Attribute.of("printer-resolution-default", ValueTag.RESOLUTION, RESOLUTION),
        Attribute.of("printer-resolution-supported", ValueTag.RESOLUTION, *RESOLUTIONS),
        Attribute.of("page-ranges-supported", ValueTag.BOOLEAN, True),
        _kw("overrides-supported", *OVERRIDE_MEMBERS),
    ]
    return attrs


_STATIC_TEMPLATE = tuple(_job_template_attributes())
JOB_TEMPLATE_PRINTER_ATTRIBUTES = frozenset(a.name for a in _STATIC_TEMPLATE)


def printer_attributes(status: PrinterStatus) -> tuple[Attribute, ...]:
    """Every printer attribute; Get-Printer-Attributes filters them with requested-attributes."""
    now = datetime.now(UTC)
    attrs = [
        Attribute.of("charset-configured", ValueTag.CHARSET, "utf-8"),
        Attribute.of("charset-supported", ValueTag.CHARSET, "us-ascii", "utf-8"),
        _kw("compression-supported", *COMPRESSIONS),  # RFC 8011 section 5.4.32
        Attribute.of("document-format-default", ValueTag.MIME_MEDIA_TYPE, OCTET_STREAM),
        Attribute.of("document-format-supported", ValueTag.MIME_MEDIA_TYPE, *SUPPORTED_FORMATS),
        Attribute.of("generated-natural-language-supported", ValueTag.NATURAL_LANGUAGE, "en"),
        Attribute.of("natural-language-configured", ValueTag.NATURAL_LANGUAGE, "en"),
        _kw("identify-actions-default", "display"),
        _kw("identify-actions-supported", "display"),
        _kw("ipp-features-supported", "ipp-everywhere"),
        _kw("ipp-versions-supported", *IPP_VERSIONS),
        _kw("job-creation-attributes-supported", *JOB_TEMPLATE, "ipp-attribute-fidelity", "job-name"),
        Attribute.of("job-ids-supported", ValueTag.BOOLEAN, True),
        Attribute.of("job-k-octets-supported", ValueTag.RANGE_OF_INTEGER,
                     IntRange(lower=0, upper=max(1, status.max_job_bytes // 1024))),
        Attribute.of("multiple-document-jobs-supported", ValueTag.BOOLEAN, False),
        _int("multiple-operation-time-out", MULTIPLE_OPERATION_TIME_OUT),
        _kw("multiple-operation-time-out-action", "abort-job"),
        _enum("operations-supported", *(int(op) for op in OPERATIONS)),
        Attribute.of("color-supported", ValueTag.BOOLEAN, False),
        _int("pages-per-minute", 60),
        _kw("pdl-override-supported", "not-attempted"),
        Attribute.of("preferred-attributes-supported", ValueTag.BOOLEAN, False),
        Attribute.of("printer-config-change-date-time", ValueTag.DATE_TIME, status.started_at),
        _int("printer-config-change-time", int(status.started_at.timestamp())),
        Attribute.of("printer-current-time", ValueTag.DATE_TIME, now),
        Attribute.of("printer-device-id", ValueTag.TEXT, "MFG:loginbridge;MDL:Print-to-Web;CMD:PDF,JPEG,PWGRaster;"),
        Attribute.of("printer-geo-location", ValueTag.UNKNOWN),
        _kw("printer-get-attributes-supported", "document-format"),
        Attribute.of("printer-icons", ValueTag.URI, *icon_uris(status.more_info)),
        Attribute.of("printer-info", ValueTag.TEXT, status.info[:127]),
        Attribute.of("printer-is-accepting-jobs", ValueTag.BOOLEAN, True),
        Attribute.of("printer-location", ValueTag.TEXT, status.location[:127]),
        Attribute.of("printer-make-and-model", ValueTag.TEXT, "loginbridge Print-to-Web"),
        Attribute.of("printer-more-info", ValueTag.URI, status.more_info),
        Attribute.of("printer-name", ValueTag.NAME, status.name[:127]),
        Attribute.of("printer-organization", ValueTag.TEXT, ""),
        Attribute.of("printer-organizational-unit", ValueTag.TEXT, ""),
        _enum("printer-state", status.state),
        Attribute.of("printer-state-change-date-time", ValueTag.DATE_TIME, status.state_changed_at),
        _int("printer-state-change-time", int(status.state_changed_at.timestamp())),
        Attribute.of("printer-state-message", ValueTag.TEXT, "Ready to accept jobs."),
        _kw("printer-state-reasons", "none"),
        Attribute.of("printer-supply", ValueTag.OCTET_STRING, SUPPLY),
        Attribute.of("printer-supply-description", ValueTag.TEXT, SUPPLY_DESCRIPTION),
        Attribute.of("printer-supply-info-uri", ValueTag.URI, status.more_info),
        _int("printer-up-time", status.up_time),
        Attribute.of("printer-uri-supported", ValueTag.URI, *(uri for uri, _ in _uris(status))),
        Attribute.of("printer-uuid", ValueTag.URI, f"urn:uuid:{status.uuid}"),
        Attribute.of("pwg-raster-document-resolution-supported", ValueTag.RESOLUTION, *RESOLUTIONS),
        _kw("pwg-raster-document-sheet-back", "normal"),
        _kw("pwg-raster-document-type-supported", *PWG_RASTER_TYPES),
        _int("queued-job-count", status.queued_jobs),
        # RFC 8011 section 5.4.1-3: three parallel 1setOf, one value per printer-uri-supported value.
        _kw("uri-authentication-supported", *("basic" if status.auth_required else "none" for _ in _uris(status))),
        _kw("uri-security-supported", *(security for _, security in _uris(status))),
        _kw("which-jobs-supported", *WHICH_JOBS),
        *_STATIC_TEMPLATE,
    ]
    return tuple(attrs)


# --------------------------------------------------------------------------
# Checking the job-template attributes a client sends.


def _value_ok(name: str, value: Value) -> bool:
    v: PyValue = value.value
    if name in _KEYWORD_CHOICES:
        return value.tag in (ValueTag.KEYWORD, ValueTag.NAME) and v in _KEYWORD_CHOICES[name][1]
    if name in _ENUM_CHOICES:
        return value.tag == ValueTag.ENUM and v in _ENUM_CHOICES[name][1]
    if name in _RANGES:
        span = _RANGES[name][1]
        return value.tag == ValueTag.INTEGER and isinstance(v, int) and span.lower <= v <= span.upper
    if name in _INT_CHOICES:
        return value.tag == ValueTag.INTEGER and v in _INT_CHOICES[name][1]
    if name == "printer-resolution":
        return value.tag == ValueTag.RESOLUTION and v in RESOLUTIONS
    if name == "media-col":
        return value.tag == ValueTag.BEG_COLLECTION and isinstance(v, Collection) and _media_col_ok(v)
    if name == "page-ranges":
        return value.tag == ValueTag.RANGE_OF_INTEGER and isinstance(v, IntRange) and 1 <= v.lower <= v.upper
    if name == "overrides":
        return value.tag == ValueTag.BEG_COLLECTION and isinstance(v, Collection) and _override_ok(v)
    return False


def _ranges_ok(attr: Attribute) -> bool:
    """1-based ranges in ascending order that do not overlap (RFC 8011 section 5.2.7)."""
    if not all(_value_ok("page-ranges", value) for value in attr.values):
        return False
    spans = [v.value for v in attr.values if isinstance(v.value, IntRange)]
    return all(a.upper < b.lower for a, b in pairwise(spans))


def _override_ok(col: Collection) -> bool:
    """One PWG 5100.6 override: the pages (and documents) it applies to, and what it changes."""
    names = ["document-numbers" if m.name == DOCUMENT_NUMBER_SYNONYM else m.name for m in col.members]
    if "pages" not in names or len(names) != len(set(names)):
        return False
    for member in col.members:
        if member.name in OVERRIDE_SELECTORS or member.name == DOCUMENT_NUMBER_SYNONYM:
            if not _ranges_ok(member):
                return False
        elif member.name not in OVERRIDE_MEMBERS or len(member.values) != 1 \
                or not _value_ok(member.name, member.values[0]):
            return False
    return True


def _media_col_ok(col: Collection) -> bool:
    for member in col.members:
        if member.name not in MEDIA_COL_MEMBERS:
            return False
        if member.name == "media-size":
            size = member.first
            if not isinstance(size, Collection):
                return False
            x, y = size.get("x-dimension"), size.get("y-dimension")
            dims = (x.first if x else None, y.first if y else None)
            # PWG 5100.7: sizes within 1 mm (100 hundredths) match.
            if not any(isinstance(dims[0], int) and isinstance(dims[1], int)
                       and abs(dims[0] - w) <= 100 and abs(dims[1] - h) <= 100 for w, h in MEDIA_SIZES.values()):
                return False
        elif member.name == "media-source" and member.first != MEDIA_SOURCE:
            return False
        elif member.name == "media-type" and member.first != MEDIA_TYPE:
            return False
    return True


_SINGLE_VALUED = frozenset(JOB_TEMPLATE) - _MULTI_VALUED


def check_job_template(attributes: tuple[Attribute, ...]) -> tuple[tuple[Attribute, ...], tuple[Attribute, ...]]:
    """(attributes kept, attributes unsupported) for a request's job-attributes group.

    An unknown attribute comes back with the out-of-band value 'unsupported'
    and a known one with the values refused (RFC 8011 section 4.1.7).
    """
    kept: list[Attribute] = []
    unsupported: list[Attribute] = []
    seen: set[str] = set()
    for attr in attributes:
        if attr.name not in JOB_TEMPLATE or attr.name in seen:
            unsupported.append(Attribute.of(attr.name, ValueTag.UNSUPPORTED))
            continue
        seen.add(attr.name)
        bad = tuple(v for v in attr.values if not _value_ok(attr.name, v))
        if attr.name == "page-ranges" and not bad and not _ranges_ok(attr):
            bad = attr.values
        if bad or (attr.name in _SINGLE_VALUED and len(attr.values) != 1):
            unsupported.append(Attribute(name=attr.name, values=bad or attr.values))
        else:
            kept.append(attr)
    return tuple(kept), tuple(unsupported)
