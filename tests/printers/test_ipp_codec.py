"""IPP codec against hand-built RFC 8010 byte layouts, pyipp interop and hostile input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pyipp import parser as pyipp_parser
from pyipp import serializer as pyipp_serializer
from pyipp.enums import IppOperation, IppStatus

from bridge.errors import BridgeError, RequestError
from printers.ipp import (
    Attribute,
    AttributeGroup,
    Collection,
    GroupTag,
    IntRange,
    IppEncodeError,
    IppIncomplete,
    IppMessage,
    IppParseError,
    IppTooLarge,
    IppValueTooLong,
    Limits,
    PyValue,
    Resolution,
    ResolutionUnit,
    StringWithLanguage,
    Value,
    ValueTag,
    decode,
    decode_attributes,
    decode_attributes_in_steps,
    encode,
)

# --- helpers building the wire form straight from RFC 8010 section 3.1 ------------


def short(n: int) -> bytes:
    return n.to_bytes(2, "big")


def wire_value(tag: int, name: str, value: bytes) -> bytes:
    """value-tag, name-length, name, value-length, value (RFC 8010 section 3.1.4/3.1.5)."""
    raw_name = name.encode("ascii")
    return bytes([tag]) + short(len(raw_name)) + raw_name + short(len(value)) + value


def header(version: tuple[int, int] = (2, 0), code: int = 0x000B, request_id: int = 1) -> bytes:
    return bytes(version) + short(code) + request_id.to_bytes(4, "big", signed=True)


END = b"\x03"
OP = b"\x01"


def one_attribute_message(tag: int, value: PyValue) -> IppMessage:
    return IppMessage(
        version=(2, 0),
        code=0x000B,
        request_id=1,
        groups=(AttributeGroup.of(GroupTag.OPERATION, Attribute.of("a", tag, value)),),
    )


def one_attribute_wire(tag: int, value_field: bytes) -> bytes:
    return header() + OP + wire_value(tag, "a", value_field) + END


# --- every value tag: exact bytes both ways ---------------------------------------

TZ_MINUS_0530 = timezone(-timedelta(hours=5, minutes=30))

TAG_CASES: list[tuple[int, PyValue, bytes]] = [
    (ValueTag.INTEGER, 1, b"\x00\x00\x00\x01"),
    (ValueTag.INTEGER, -2, b"\xff\xff\xff\xfe"),
    (ValueTag.INTEGER, 2**31 - 1, b"\x7f\xff\xff\xff"),
    (ValueTag.ENUM, 3, b"\x00\x00\x00\x03"),
    (ValueTag.BOOLEAN, True, b"\x01"),
    (ValueTag.BOOLEAN, False, b"\x00"),
    (ValueTag.OCTET_STRING, b"\x00\xff\x80raw", b"\x00\xff\x80raw"),
    (ValueTag.OCTET_STRING, b"", b""),
    (
        ValueTag.DATE_TIME,
        datetime(2024, 2, 29, 23, 59, 58, 700_000, tzinfo=TZ_MINUS_0530),
        b"\x07\xe8\x02\x1d\x17\x3b\x3a\x07-\x05\x1e",
    ),
    (ValueTag.DATE_TIME, datetime(1999, 12, 31, 0, 0, 0, tzinfo=UTC), b"\x07\xcf\x0c\x1f\x00\x00\x00\x00+\x00\x00"),
    (
        ValueTag.RESOLUTION,
        Resolution(x=600, y=300, units=ResolutionUnit.DOTS_PER_INCH),
        b"\x00\x00\x02\x58\x00\x00\x01\x2c\x03",
    ),
    (ValueTag.RESOLUTION, Resolution(x=1, y=2, units=-1), b"\x00\x00\x00\x01\x00\x00\x00\x02\xff"),
    (ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=9999), b"\x00\x00\x00\x01\x00\x00\x27\x0f"),
    (ValueTag.RANGE_OF_INTEGER, IntRange(lower=-5, upper=-1), b"\xff\xff\xff\xfb\xff\xff\xff\xff"),
    (
        ValueTag.TEXT_WITH_LANGUAGE,
        StringWithLanguage(language="fr-ca", text="Été"),
        b"\x00\x05fr-ca\x00\x05\xc3\x89t\xc3\xa9",
    ),
    (ValueTag.NAME_WITH_LANGUAGE, StringWithLanguage(language="en", text="job"), b"\x00\x02en\x00\x03job"),
    (ValueTag.NAME_WITH_LANGUAGE, StringWithLanguage(language="", text=""), b"\x00\x00\x00\x00"),
    (ValueTag.TEXT, "Grüße ✓", "Grüße ✓".encode()),
    (ValueTag.NAME, "Jörg's job", "Jörg's job".encode()),
    (ValueTag.KEYWORD, "one-sided", b"one-sided"),
    (ValueTag.URI, "ipp://127.0.0.1:8631/ipp/print", b"ipp://127.0.0.1:8631/ipp/print"),
    (ValueTag.URI_SCHEME, "ipps", b"ipps"),
    (ValueTag.CHARSET, "utf-8", b"utf-8"),
    (ValueTag.NATURAL_LANGUAGE, "en-us", b"en-us"),
    (ValueTag.MIME_MEDIA_TYPE, "application/pdf", b"application/pdf"),
    (ValueTag.UNSUPPORTED, None, b""),
    (ValueTag.UNKNOWN, None, b""),
    (ValueTag.NO_VALUE, None, b""),
    (ValueTag.NOT_SETTABLE, None, b""),
    (ValueTag.DELETE_ATTRIBUTE, None, b""),
    (ValueTag.ADMIN_DEFINE, None, b""),
    (0x38, b"reserved-octets", b"reserved-octets"),  # unassigned octetString-range tag
    (0x4B, b"\xfe\xff", b"\xfe\xff"),  # unassigned character-string-range tag
    (0x11, b"x", b"x"),  # unassigned out-of-band tag: kept, not dropped
    (0x9C, b"", b""),
    (ValueTag.EXTENSION, b"\x00\x00\x12\x34payload", b"\x00\x00\x12\x34payload"),
]


@pytest.mark.parametrize(
    ("tag", "value", "field"), TAG_CASES, ids=[f"{c[0]:#04x}-{i}" for i, c in enumerate(TAG_CASES)]
)
def test_each_tag_encodes_and_decodes_exact_bytes(tag: int, value: PyValue, field: bytes) -> None:
    wire = one_attribute_wire(tag, field)
    msg = one_attribute_message(tag, value)
    assert encode(msg) == wire
    decoded = decode(wire)
    assert decoded == msg
    got = decoded.groups[0].attributes[0].values[0]
    assert got.tag == tag
    assert isinstance(got.tag, ValueTag) == (tag in ValueTag.__members__.values())
    assert got.value == value
    assert type(got.value) is type(value)


def test_decoded_datetime_keeps_offset_and_deciseconds() -> None:
    got = decode(one_attribute_wire(ValueTag.DATE_TIME, b"\x07\xe8\x02\x1d\x17\x3b\x3a\x07-\x05\x1e"))
    value = got.groups[0].attributes[0].first
    assert isinstance(value, datetime)
    assert value.utcoffset() == -timedelta(hours=5, minutes=30)
    assert (value.hour, value.microsecond) == (23, 700_000)


def test_known_tags_decode_to_enum_members_unknown_to_int() -> None:
    known = decode(one_attribute_wire(ValueTag.KEYWORD, b"k")).groups[0].attributes[0].tag
    unknown = decode(one_attribute_wire(0x4B, b"k")).groups[0].attributes[0].tag
    assert isinstance(known, ValueTag)
    assert not isinstance(unknown, ValueTag) and unknown == 0x4B


def test_datetime_encoding_truncates_microseconds_and_reads_leap_second() -> None:
    msg = one_attribute_message(ValueTag.DATE_TIME, datetime(2020, 1, 2, 3, 4, 5, 123_456, tzinfo=UTC))
    assert encode(msg) == one_attribute_wire(ValueTag.DATE_TIME, b"\x07\xe4\x01\x02\x03\x04\x05\x01+\x00\x00")
    leap = decode(one_attribute_wire(ValueTag.DATE_TIME, b"\x07\xe4\x0c\x1f\x17\x3b\x3c\x00+\x00\x00"))
    assert leap.groups[0].attributes[0].first == datetime(2020, 12, 31, 23, 59, 59, tzinfo=UTC)


# --- 1setOf, collections, groups ----------------------------------------------------


def test_one_set_of_uses_additional_values_with_empty_names() -> None:
    attr = Attribute(
        name="document-format-supported",
        values=(
            Value(tag=ValueTag.MIME_MEDIA_TYPE, value="application/pdf"),
            Value(tag=ValueTag.MIME_MEDIA_TYPE, value="image/jpeg"),
            Value(tag=ValueTag.NAME, value="mixed tags are allowed"),
        ),
    )
    msg = IppMessage(version=(1, 1), code=0, request_id=7, groups=(AttributeGroup.of(GroupTag.PRINTER, attr),))
    wire = (
        header((1, 1), 0, 7)
        + b"\x04"
        + wire_value(0x49, "document-format-supported", b"application/pdf")
        + wire_value(0x49, "", b"image/jpeg")
        + wire_value(0x42, "", b"mixed tags are allowed")
        + END
    )
    assert encode(msg) == wire
    assert decode(wire) == msg


def media_col_wire() -> bytes:
    """media-col = {media-size = {x-dimension, y-dimension}, media-source, media-type 1setOf}."""
    return (
        wire_value(0x34, "media-col", b"")
        + wire_value(0x4A, "", b"media-size")
        + wire_value(0x34, "", b"")
        + wire_value(0x4A, "", b"x-dimension")
        + wire_value(0x21, "", (21000).to_bytes(4, "big"))
        + wire_value(0x4A, "", b"y-dimension")
        + wire_value(0x21, "", (29700).to_bytes(4, "big"))
        + wire_value(0x37, "", b"")
        + wire_value(0x4A, "", b"media-source")
        + wire_value(0x44, "", b"main")
        + wire_value(0x4A, "", b"media-type")
        + wire_value(0x44, "", b"stationery")
        + wire_value(0x44, "", b"photographic")
        + wire_value(0x37, "", b"")
        + wire_value(0x34, "", b"")  # second value of the 1setOf media-col: empty collection
        + wire_value(0x37, "", b"")
    )


def media_col_attribute() -> Attribute:
    size = Collection(
        members=(
            Attribute.of("x-dimension", ValueTag.INTEGER, 21000),
            Attribute.of("y-dimension", ValueTag.INTEGER, 29700),
        )
    )
    col = Collection(
        members=(
            Attribute.of("media-size", ValueTag.COLLECTION, size),
            Attribute.of("media-source", ValueTag.KEYWORD, "main"),
            Attribute.of("media-type", ValueTag.KEYWORD, "stationery", "photographic"),
        )
    )
    return Attribute.of("media-col", ValueTag.COLLECTION, col, Collection())


def test_nested_collection_with_set_member_exact_bytes() -> None:
    msg = IppMessage(
        version=(2, 0), code=0, request_id=3, groups=(AttributeGroup.of(GroupTag.PRINTER, media_col_attribute()),)
    )
    wire = header((2, 0), 0, 3) + b"\x04" + media_col_wire() + END
    assert encode(msg) == wire
    decoded = decode(wire)
    assert decoded == msg
    col = decoded.find(GroupTag.PRINTER, "media-col")
    assert col is not None and isinstance(col.first, Collection)
    size = col.first.get("media-size")
    assert size is not None and isinstance(size.first, Collection)
    assert size.first.get("y-dimension") == Attribute.of("y-dimension", ValueTag.INTEGER, 29700)
    media_type = col.first.get("media-type")
    assert media_type is not None and media_type.plain_values == ("stationery", "photographic")
    assert col.values[1].value == Collection()


def test_repeated_and_empty_groups_are_kept_in_order() -> None:
    ok_op = AttributeGroup.of(
        GroupTag.OPERATION,
        Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8"),
        Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en"),
    )
    jobs = tuple(
        AttributeGroup.of(
            GroupTag.JOB,
            Attribute.of("job-id", ValueTag.INTEGER, n),
            Attribute.of("job-state", ValueTag.ENUM, 3),
        )
        for n in (1, 2, 3)
    )
    msg = IppMessage(
        version=(2, 0),
        code=0,
        request_id=9,
        groups=(ok_op, *jobs, AttributeGroup.of(GroupTag.UNSUPPORTED), AttributeGroup.of(GroupTag.DOCUMENT)),
    )
    wire = encode(msg)
    assert wire.count(b"\x02\x21\x00\x06job-id") == 3
    assert wire.endswith(b"\x05\x09\x03")
    decoded = decode(wire)
    assert decoded == msg
    assert [g.get("job-id").first for g in decoded.groups_of(GroupTag.JOB)] == [1, 2, 3]  # type: ignore[union-attr]
    assert decoded.groups_of(GroupTag.UNSUPPORTED)[0].attributes == ()


def test_helpers() -> None:
    msg = IppMessage(version=(1, 1), code=2, request_id=1, groups=(AttributeGroup.of(GroupTag.JOB),))
    assert msg.operation_attributes is None
    assert msg.find(GroupTag.JOB, "copies") is None
    attr = Attribute.of("printer-state-reasons", ValueTag.NO_VALUE)
    assert attr.values == (Value(tag=ValueTag.NO_VALUE, value=None),)
    assert attr.tag == ValueTag.NO_VALUE and attr.first is None
    with pytest.raises(IppEncodeError):
        Attribute.of("copies", ValueTag.INTEGER)


# --- a real request shape: Get-Printer-Attributes as ipptool sends it ---------------

IPPTOOL_GET_PRINTER_ATTRIBUTES = (
    b"\x02\x00"  # version-number 2.0
    b"\x00\x0b"  # operation-id Get-Printer-Attributes
    b"\x00\x00\x00\x01"  # request-id 1
    b"\x01"  # operation-attributes-tag
    b"\x47\x00\x12attributes-charset\x00\x05utf-8"
    b"\x48\x00\x1battributes-natural-language\x00\x02en"
    b"\x45\x00\x0bprinter-uri\x00\x1eipp://127.0.0.1:8631/ipp/print"
    b"\x42\x00\x14requesting-user-name\x00\x05alice"
    b"\x44\x00\x14requested-attributes\x00\x03all"
    b"\x44\x00\x00\x00\x12media-col-database"
    b"\x03"  # end-of-attributes-tag
)


def test_ipptool_get_printer_attributes_request() -> None:
    msg = decode(IPPTOOL_GET_PRINTER_ATTRIBUTES)
    assert (msg.version, msg.code, msg.request_id) == ((2, 0), IppOperation.GET_PRINTER_ATTRIBUTES, 1)
    ops = msg.operation_attributes
    assert ops is not None
    assert ops.names() == (
        "attributes-charset",
        "attributes-natural-language",
        "printer-uri",
        "requesting-user-name",
        "requested-attributes",
    )
    uri = msg.find(GroupTag.OPERATION, "printer-uri")
    assert uri is not None and uri.first == "ipp://127.0.0.1:8631/ipp/print" and uri.tag == ValueTag.URI
    requested = ops.get("requested-attributes")
    assert requested is not None and requested.plain_values == ("all", "media-col-database")
    assert msg.data == b""
    assert encode(msg) == IPPTOOL_GET_PRINTER_ATTRIBUTES


# --- streaming: header + attributes from a prefix ------------------------------------

PRINT_JOB = (
    header((1, 1), IppOperation.PRINT_JOB, 42)
    + OP
    + wire_value(0x47, "attributes-charset", b"utf-8")
    + wire_value(0x48, "attributes-natural-language", b"en")
    + wire_value(0x45, "printer-uri", b"ipp://localhost/ipp/print")
    + wire_value(0x49, "document-format", b"application/pdf")
    + END
)
DOCUMENT = b"%PDF-1.7\n\x03\x01\x00binary after the end tag\n"


def test_decode_attributes_reports_document_offset() -> None:
    msg, offset = decode_attributes(PRINT_JOB + DOCUMENT)
    assert offset == len(PRINT_JOB)
    assert msg.data == b""
    assert (PRINT_JOB + DOCUMENT)[offset:] == DOCUMENT
    full = decode(PRINT_JOB + DOCUMENT)
    assert full.data == DOCUMENT
    assert full.groups == msg.groups
    assert encode(full) == PRINT_JOB + DOCUMENT


def test_every_prefix_is_incomplete_until_the_end_tag() -> None:
    for cut in range(len(PRINT_JOB)):
        with pytest.raises(IppIncomplete) as info:
            decode_attributes(bytearray(PRINT_JOB[:cut]))
        assert info.value.status == IppStatus.ERROR_BAD_REQUEST
        assert isinstance(info.value, IppParseError)
    msg, offset = decode_attributes(memoryview(PRINT_JOB))
    assert offset == len(PRINT_JOB) and msg.request_id == 42


def test_streaming_prefix_past_byte_cap_is_too_large_not_incomplete() -> None:
    big = header() + OP + wire_value(0x41, "t", b"x" * 2000) * 10  # no end tag yet
    with pytest.raises(IppTooLarge) as info:
        decode_attributes(big, limits=Limits(max_attributes_bytes=4096))
    assert info.value.status == 0x0408
    with pytest.raises(IppIncomplete):
        decode_attributes(big[:3000], limits=Limits(max_attributes_bytes=4096))


# --- pyipp interoperability ------------------------------------------------------------


def test_pyipp_encoder_output_decodes() -> None:
    raw = pyipp_serializer.encode_dict(
        {
            "version": (2, 0),
            "operation": IppOperation.PRINT_JOB,
            "request-id": 77,
            "operation-attributes-tag": {
                "attributes-charset": "utf-8",
                "attributes-natural-language": "en-us",
                "printer-uri": "ipp://printer.example/ipp/print",
                "requesting-user-name": "bob",
                "job-name": "report",
                "document-format": "application/pdf",
                "requested-attributes": ["job-id", "job-state"],
            },
            "job-attributes-tag": {"copies": 2, "sides": "two-sided-long-edge", "ipp-attribute-fidelity": True},
            "data": b"%PDF-1.4 body",
        }
    )
    msg = decode(raw)
    assert (msg.version, msg.code, msg.request_id) == ((2, 0), IppOperation.PRINT_JOB, 77)
    assert [g.tag for g in msg.groups] == [GroupTag.OPERATION, GroupTag.JOB]
    assert msg.find(GroupTag.OPERATION, "printer-uri") == Attribute.of(
        "printer-uri", ValueTag.URI, "ipp://printer.example/ipp/print"
    )
    assert msg.find(GroupTag.OPERATION, "document-format") == Attribute.of(
        "document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"
    )
    assert msg.find(GroupTag.OPERATION, "requested-attributes") == Attribute.of(
        "requested-attributes", ValueTag.KEYWORD, "job-id", "job-state"
    )
    assert msg.find(GroupTag.JOB, "copies") == Attribute.of("copies", ValueTag.INTEGER, 2)
    assert msg.find(GroupTag.JOB, "ipp-attribute-fidelity") == Attribute.of(
        "ipp-attribute-fidelity", ValueTag.BOOLEAN, True
    )
    assert msg.data == b"%PDF-1.4 body"
    assert encode(msg) == raw


def test_our_encoder_output_parses_with_pyipp() -> None:
    when = datetime(2024, 3, 4, 5, 6, 7, 800_000, tzinfo=timezone(timedelta(hours=2)))
    msg = IppMessage(
        version=(2, 0),
        code=IppStatus.OK,
        request_id=5,
        groups=(
            AttributeGroup.of(
                GroupTag.OPERATION,
                Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8"),
                Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en"),
                Attribute.of("status-message", ValueTag.TEXT, "successful-ok"),
            ),
            AttributeGroup.of(
                GroupTag.PRINTER,
                Attribute.of("printer-name", ValueTag.NAME, "Print-to-Web"),
                Attribute.of("printer-state", ValueTag.ENUM, 3),
                Attribute.of("printer-is-accepting-jobs", ValueTag.BOOLEAN, True),
                Attribute.of("document-format-supported", ValueTag.MIME_MEDIA_TYPE, "application/pdf", "image/jpeg"),
                Attribute.of("copies-supported", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=99)),
                Attribute.of("printer-resolution-default", ValueTag.RESOLUTION, Resolution(x=600, y=600, units=3)),
                Attribute.of("printer-current-time", ValueTag.DATE_TIME, when),
                Attribute.of(
                    "printer-info", ValueTag.TEXT_WITH_LANGUAGE, StringWithLanguage(language="de", text="Büro")
                ),
                Attribute.of(
                    "media-col-default",
                    ValueTag.COLLECTION,
                    Collection(members=(Attribute.of("media-source", ValueTag.KEYWORD, "main"),)),
                ),
                Attribute.of("printer-up-time", ValueTag.INTEGER, 1234),
            ),
        ),
    )
    parsed = pyipp_parser.parse(encode(msg))
    assert parsed["status-code"] == 0 and parsed["request-id"] == 5
    assert parsed["operation-attributes"]["status-message"] == "successful-ok"
    printer = parsed["printers"][0]
    assert printer["printer-name"] == "Print-to-Web"
    assert printer["printer-state"] == 3
    assert printer["printer-is-accepting-jobs"] is True
    assert printer["document-format-supported"] == ["application/pdf", "image/jpeg"]
    assert printer["copies-supported"] == [1, 99]
    assert tuple(printer["printer-resolution-default"]) == (600, 600, 3)
    assert printer["printer-current-time"] == when
    assert printer["printer-info"] == "Büro"
    assert printer["media-col-default"] == {"media-source": "main"}
    assert printer["printer-up-time"] == 1234


# --- hostile and malformed input -------------------------------------------------------

MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("short header", b"\x02\x00\x00\x0b\x00"),
    ("no end tag", header() + OP),
    ("attribute before any group", header() + wire_value(0x44, "a", b"x") + END),
    ("additional value first", header() + OP + wire_value(0x44, "", b"x") + END),
    ("reserved delimiter 0x00", header() + b"\x00" + END),
    ("reserved delimiter 0x0f", header() + b"\x0f" + END),
    ("integer of 3 octets", one_attribute_wire(0x21, b"\x00\x00\x01")),
    ("enum of 5 octets", one_attribute_wire(0x23, b"\x00\x00\x00\x00\x01")),
    ("boolean 2", one_attribute_wire(0x22, b"\x02")),
    ("boolean empty", one_attribute_wire(0x22, b"")),
    ("text not utf-8", one_attribute_wire(0x41, b"\xff\xfe")),
    ("name overlong utf-8", one_attribute_wire(0x42, b"\xc0\xaf")),
    ("keyword not ascii", one_attribute_wire(0x44, "é".encode())),
    ("uri not ascii", one_attribute_wire(0x45, b"ipp://h\x80/")),
    ("attribute name not ascii", header() + OP + b"\x44\x00\x02\xc3\xa9\x00\x01x" + END),
    ("dateTime 10 octets", one_attribute_wire(0x31, b"\x07\xe8\x01\x01\x00\x00\x00\x00+\x00")),
    ("dateTime month 13", one_attribute_wire(0x31, b"\x07\xe8\x0d\x01\x00\x00\x00\x00+\x00\x00")),
    ("dateTime day 0", one_attribute_wire(0x31, b"\x07\xe8\x01\x00\x00\x00\x00\x00+\x00\x00")),
    ("dateTime year 0", one_attribute_wire(0x31, b"\x00\x00\x01\x01\x00\x00\x00\x00+\x00\x00")),
    ("dateTime bad direction", one_attribute_wire(0x31, b"\x07\xe8\x01\x01\x00\x00\x00\x00*\x00\x00")),
    ("dateTime tz 30 hours", one_attribute_wire(0x31, b"\x07\xe8\x01\x01\x00\x00\x00\x00+\x1e\x00")),
    ("dateTime decisecond 10", one_attribute_wire(0x31, b"\x07\xe8\x01\x01\x00\x00\x00\x0a+\x00\x00")),
    ("resolution 8 octets", one_attribute_wire(0x32, b"\x00" * 8)),
    ("range 9 octets", one_attribute_wire(0x33, b"\x00" * 9)),
    ("with-language 3 octets", one_attribute_wire(0x35, b"\x00\x00\x00")),
    ("language length past value", one_attribute_wire(0x35, b"\x00\x09en\x00\x00")),
    ("text length mismatch", one_attribute_wire(0x36, b"\x00\x02en\x00\x05abc")),
    ("extension without tag", one_attribute_wire(0x7F, b"\x00\x00")),
    ("extension tag high bit", one_attribute_wire(0x7F, b"\x80\x00\x00\x00")),
    ("memberAttrName at top level", one_attribute_wire(0x4A, b"m")),
    ("endCollection at top level", one_attribute_wire(0x37, b"")),
    ("value length past buffer", header() + OP + b"\x44\x00\x01a\x00\x10abc"),
    ("name length past buffer", header() + OP + b"\x44\x00\x30ab"),
    (
        "collection value before member name",
        header()
        + OP
        + wire_value(0x34, "c", b"")
        + wire_value(0x21, "", b"\x00\x00\x00\x01")
        + wire_value(0x37, "", b"")
        + END,
    ),
    (
        "collection member without value",
        header() + OP + wire_value(0x34, "c", b"") + wire_value(0x4A, "", b"m") + wire_value(0x37, "", b"") + END,
    ),
    (
        "empty member name",
        header()
        + OP
        + wire_value(0x34, "c", b"")
        + wire_value(0x4A, "", b"")
        + wire_value(0x44, "", b"k")
        + wire_value(0x37, "", b"")
        + END,
    ),
    (
        "named value inside collection",
        header()
        + OP
        + wire_value(0x34, "c", b"")
        + wire_value(0x4A, "", b"m")
        + wire_value(0x44, "x", b"k")
        + wire_value(0x37, "", b"")
        + END,
    ),
    (
        "group tag inside collection",
        header()
        + OP
        + wire_value(0x34, "c", b"")
        + wire_value(0x4A, "", b"m")
        + wire_value(0x44, "", b"k")
        + b"\x02"
        + END,
    ),
    ("unterminated collection", header() + OP + wire_value(0x34, "c", b"") + wire_value(0x4A, "", b"m") + END),
    ("garbage", b"\xff" * 64),
]


@pytest.mark.parametrize(("case", "raw"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_raises_bad_request(case: str, raw: bytes) -> None:
    with pytest.raises(IppParseError) as info:
        decode(raw)
    err = info.value
    assert err.status == IppStatus.ERROR_BAD_REQUEST
    assert isinstance(err, RequestError) and isinstance(err, BridgeError)
    assert f"at offset {err.offset}" in str(err)
    assert 0 <= err.offset <= len(raw)


def test_error_message_does_not_echo_values() -> None:
    raw = one_attribute_wire(0x41, b"hunter2-secret\xff")
    with pytest.raises(IppParseError) as info:
        decode(raw)
    assert "hunter2" not in str(info.value)
    assert info.value.offset == 9  # the value tag right after header and group tag


def nested(depth: int) -> bytes:
    body = wire_value(0x34, "c", b"")
    for _ in range(depth - 1):
        body += wire_value(0x4A, "", b"m") + wire_value(0x34, "", b"")
    body += wire_value(0x37, "", b"") * depth
    return header() + OP + body + END


def test_collection_depth_cap() -> None:
    assert decode(nested(16)).groups[0].attributes[0].name == "c"
    with pytest.raises(IppParseError) as info:
        decode(nested(17))
    assert info.value.status == IppStatus.ERROR_BAD_REQUEST
    assert decode(nested(17), limits=Limits(max_depth=17)).groups[0].attributes[0].name == "c"


def test_attribute_count_cap_counts_members() -> None:
    ten = header() + OP + b"".join(wire_value(0x21, f"a{i}", b"\x00\x00\x00\x01") for i in range(10)) + END
    assert len(decode(ten, limits=Limits(max_attributes=10)).groups[0].attributes) == 10
    with pytest.raises(IppTooLarge) as info:
        decode(ten, limits=Limits(max_attributes=9))
    assert info.value.status == 0x0408  # client-error-request-entity-too-large
    members = (
        header()
        + OP
        + wire_value(0x34, "c", b"")
        + b"".join(wire_value(0x4A, "", f"m{i}".encode()) + wire_value(0x44, "", b"k") for i in range(5))
        + wire_value(0x37, "", b"")
        + END
    )
    with pytest.raises(IppTooLarge):
        decode(members, limits=Limits(max_attributes=5))
    assert decode(members, limits=Limits(max_attributes=6)).groups[0].attributes[0].name == "c"


def one_set(name: str, count: int) -> bytes:
    """A 1setOf keyword: the first value carries the name, the others an empty one (RFC 8010 section 3.1.5)."""
    return wire_value(0x44, name, b"k") + wire_value(0x44, "", b"k") * (count - 1)


def member(name: str, *values: bytes) -> bytes:
    return wire_value(0x4A, "", name.encode()) + b"".join(values)


def test_value_cap_counts_every_value_of_a_1setof() -> None:
    five = header() + OP + one_set("a", 5) + END
    assert len(decode(five, limits=Limits(max_values=5)).groups[0].attributes[0].values) == 5
    with pytest.raises(IppTooLarge) as info:
        decode(five, limits=Limits(max_values=4))
    assert info.value.status == 0x0408 and "values" in info.value.detail
    # one attribute: the attribute cap alone would never have seen these values
    assert len(decode(five, limits=Limits(max_attributes=1, max_values=5)).groups[0].attributes) == 1


def test_value_cap_counts_collections_their_members_and_nested_collections() -> None:
    # c = { m0: k k, m1: k k, m2: { n: k } }: the collection, 4 member values, the inner collection, its value
    inner = wire_value(0x34, "", b"") + member("n", wire_value(0x44, "", b"k")) + wire_value(0x37, "", b"")
    col = (wire_value(0x34, "c", b"")
           + member("m0", wire_value(0x44, "", b"k"), wire_value(0x44, "", b"k"))
           + member("m1", wire_value(0x44, "", b"k"), wire_value(0x44, "", b"k"))
           + member("m2", inner)
           + wire_value(0x37, "", b""))
    raw = header() + OP + col + END
    assert decode(raw, limits=Limits(max_values=7)).groups[0].attributes[0].name == "c"
    with pytest.raises(IppTooLarge):
        decode(raw, limits=Limits(max_values=6))
    # two collections in a 1setOf: twice the values
    twice = header() + OP + col + col[:1] + b"\x00\x00" + col[4:] + END
    assert len(decode(twice, limits=Limits(max_values=14)).groups[0].attributes[0].values) == 2
    with pytest.raises(IppTooLarge):
        decode(twice, limits=Limits(max_values=13))


def test_millions_of_tiny_values_stop_at_the_cap_not_at_the_end() -> None:
    """Out-of-band values are five octets each: the value cap, not the byte cap, ends the work."""
    tiny = wire_value(0x13, "", b"")
    raw = header() + OP + wire_value(0x13, "x", b"") + tiny * 200_000  # 1 MB, no end tag yet
    with pytest.raises(IppTooLarge) as info:
        decode_attributes(raw, limits=Limits(max_attributes_bytes=2 << 20, max_values=1000))
    assert "1000 values" in info.value.detail
    assert info.value.offset < 10 + 5 * 1001  # refused where the 1001st value starts


def test_stepwise_decoding_pauses_every_step_and_decodes_the_same_message() -> None:
    raw = PRINT_JOB[:-1] + one_set("requested-attributes", 1000) + END
    steps = decode_attributes_in_steps(raw, step_values=100)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result = done.value
            break
        pauses += 1
    assert pauses == 10  # 1004 values (4 before the 1setOf): a pause before the 100th, 200th ... 1000th
    assert result == decode_attributes(raw)
    # errors come out of the steps unchanged
    steps = decode_attributes_in_steps(raw, limits=Limits(max_values=150), step_values=100)
    assert next(steps) is None
    with pytest.raises(IppTooLarge):
        next(steps)
    with pytest.raises(ValueError):
        decode_attributes_in_steps(raw, step_values=0)


def test_value_and_name_length_caps() -> None:
    long_text = one_attribute_wire(0x41, b"x" * 2000)
    assert decode(long_text).groups[0].attributes[0].first == "x" * 2000  # RFC's 1023 is not enforced
    with pytest.raises(IppValueTooLong) as info:
        decode(long_text, limits=Limits(max_value_length=1023))
    assert info.value.status == 0x0409  # client-error-request-value-too-long
    # a value-length with the sign bit set is never accepted (SIGNED-SHORT)
    with pytest.raises(IppValueTooLong):
        decode(header() + OP + b"\x44\x00\x01a\x80\x00" + b"x" * 0x8000 + END)
    with pytest.raises(IppValueTooLong):
        decode(header() + OP + wire_value(0x44, "n" * 1024, b"x") + END)


def test_attribute_section_byte_cap_ignores_document_size() -> None:
    msg, offset = decode_attributes(PRINT_JOB + b"\x00" * 5000, limits=Limits(max_attributes_bytes=len(PRINT_JOB)))
    assert offset == len(PRINT_JOB) and msg.request_id == 42
    assert len(decode(PRINT_JOB + b"\x00" * 5000, limits=Limits(max_attributes_bytes=len(PRINT_JOB))).data) == 5000
    with pytest.raises(IppTooLarge):
        decode(PRINT_JOB, limits=Limits(max_attributes_bytes=len(PRINT_JOB) - 1))


def test_nonempty_out_of_band_and_collection_framing_values_are_ignored() -> None:
    raw = (
        header()
        + OP
        + wire_value(0x13, "nv", b"ignored")
        + wire_value(0x34, "c", b"junk")
        + wire_value(0x4A, "", b"m")
        + wire_value(0x44, "", b"k")
        + wire_value(0x37, "", b"junk")
        + END
    )
    msg = decode(raw)
    assert msg.groups[0].attributes[0] == Attribute.of("nv", ValueTag.NO_VALUE)
    assert msg.groups[0].attributes[1].first == Collection(members=(Attribute.of("m", ValueTag.KEYWORD, "k"),))


# --- the encoder refuses what it cannot write exactly ------------------------------


def msg_with(attr: Attribute, *, version: tuple[int, int] = (2, 0), code: int = 0, request_id: int = 1) -> IppMessage:
    return IppMessage(
        version=version, code=code, request_id=request_id, groups=(AttributeGroup.of(GroupTag.OPERATION, attr),)
    )


BAD_VALUES: list[tuple[str, Attribute]] = [
    ("str for integer", Attribute.of("a", ValueTag.INTEGER, "1")),
    ("bool for integer", Attribute.of("a", ValueTag.INTEGER, True)),
    ("int for boolean", Attribute.of("a", ValueTag.BOOLEAN, 1)),
    ("integer too big", Attribute.of("a", ValueTag.INTEGER, 2**31)),
    ("enum too small", Attribute.of("a", ValueTag.ENUM, -(2**31) - 1)),
    ("bytes for text", Attribute.of("a", ValueTag.TEXT, b"x")),
    ("non-ascii keyword", Attribute.of("a", ValueTag.KEYWORD, "clé")),
    ("surrogate in text", Attribute.of("a", ValueTag.TEXT, "\ud800")),
    ("text too long", Attribute.of("a", ValueTag.TEXT, "x" * 0x8000)),
    ("naive datetime", Attribute.of("a", ValueTag.DATE_TIME, datetime(2024, 1, 1))),
    (
        "seconds offset",
        Attribute.of("a", ValueTag.DATE_TIME, datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=30)))),
    ),
    ("range bound too big", Attribute.of("a", ValueTag.RANGE_OF_INTEGER, IntRange(lower=0, upper=2**31))),
    ("units too big", Attribute.of("a", ValueTag.RESOLUTION, Resolution(x=1, y=1, units=128))),
    ("tuple for range", Attribute.of("a", ValueTag.RANGE_OF_INTEGER, (1, 2))),  # type: ignore[arg-type]
    ("non-ascii language", Attribute.of("a", ValueTag.TEXT_WITH_LANGUAGE, StringWithLanguage(language="é", text="x"))),
    ("dict for collection", Attribute.of("a", ValueTag.COLLECTION, {"m": 1})),  # type: ignore[arg-type]
    ("value for out-of-band", Attribute.of("a", ValueTag.NO_VALUE, "x")),
    ("str for unknown tag", Attribute.of("a", 0x38, "x")),
    ("short extension", Attribute.of("a", ValueTag.EXTENSION, b"\x00")),
    ("memberAttrName given", Attribute.of("a", ValueTag.MEMBER_ATTR_NAME, "m")),
    ("endCollection given", Attribute.of("a", ValueTag.END_COLLECTION, b"")),
    ("delimiter as value tag", Attribute.of("a", 0x03, b"")),
    ("tag above one octet", Attribute.of("a", 0x100, b"")),
    ("no values", Attribute(name="a", values=())),
    ("empty name", Attribute.of("", ValueTag.INTEGER, 1)),
    ("non-ascii name", Attribute.of("é", ValueTag.INTEGER, 1)),
    (
        "bad member inside collection",
        Attribute.of("a", ValueTag.COLLECTION, Collection(members=(Attribute.of("m", ValueTag.INTEGER, "x"),))),
    ),
]


@pytest.mark.parametrize(("case", "attr"), BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_encoder_refuses_unencodable_values(case: str, attr: Attribute) -> None:
    with pytest.raises(IppEncodeError):
        encode(msg_with(attr))


@pytest.mark.parametrize(
    ("version", "code", "request_id"),
    [((256, 0), 0, 1), ((1, -1), 0, 1), ((2, 0), 0x10000, 1), ((2, 0), -1, 1), ((2, 0), 0, 2**31)],
)
def test_encoder_refuses_bad_header(version: tuple[int, int], code: int, request_id: int) -> None:
    with pytest.raises(IppEncodeError) as info:
        encode(msg_with(Attribute.of("a", ValueTag.INTEGER, 1), version=version, code=code, request_id=request_id))
    assert isinstance(info.value, ValueError) and isinstance(info.value, BridgeError)


def test_header_fields_round_trip_extremes() -> None:
    for version, code, request_id in [((1, 0), 0x4001, 2**31 - 1), ((2, 2), 0xFFFF, -1), ((0, 0), 0, 0)]:
        msg = IppMessage(version=version, code=code, request_id=request_id)
        raw = encode(msg)
        assert raw == bytes(version) + code.to_bytes(2, "big") + request_id.to_bytes(4, "big", signed=True) + END
        assert decode(raw) == msg
