"""IPP message encoder (RFC 8010 section 3): IppMessage in, bytes out.

The input is our own, so anything that cannot be put on the wire exactly
(wrong python type for the tag, integer out of range, string too long, naive
datetime) raises IppEncodeError instead of being coerced.  The one accepted
loss: dateTime carries deciseconds, so finer microseconds are truncated.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta

from .errors import IppEncodeError
from .limits import MAX_SHORT
from .model import (
    Attribute,
    AttributeGroup,
    Collection,
    IntRange,
    IppMessage,
    PyValue,
    Resolution,
    StringWithLanguage,
    Value,
)
from .tags import (
    ASCII_TAGS,
    DELIMITER_LIMIT,
    END_OF_ATTRIBUTES,
    INT_TAGS,
    OUT_OF_BAND_TAGS,
    STRUCTURAL_TAGS,
    UTF8_TAGS,
    WITH_LANGUAGE_TAGS,
    GroupTag,
    ValueTag,
)

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_SHORT = struct.Struct(">H")
_END_COLLECTION = bytes((ValueTag.END_COLLECTION, 0, 0, 0, 0))


def _int32(value: int, what: str) -> bytes:
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise IppEncodeError(f"{what} {value} does not fit a SIGNED-INTEGER")
    return value.to_bytes(4, "big", signed=True)


def _text(value: str, codec: str, what: str) -> bytes:
    try:
        return value.encode(codec)
    except UnicodeEncodeError as exc:
        raise IppEncodeError(f"{what} cannot be encoded as {codec}") from exc


def _expect(value: PyValue, kind: type | tuple[type, ...], tag: int) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IppEncodeError(f"value of type {type(value).__name__} does not suit tag 0x{tag:02x}")


def _date_time(value: datetime) -> bytes:
    offset = value.utcoffset()
    if offset is None:
        raise IppEncodeError("dateTime needs a timezone-aware datetime")
    if offset % timedelta(minutes=1):
        raise IppEncodeError("dateTime time zone offset is not whole minutes")
    sign = 0x2B if offset >= timedelta(0) else 0x2D
    minutes = abs(offset) // timedelta(minutes=1)
    return value.year.to_bytes(2, "big") + bytes(
        (
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond // 100_000,
            sign,
            minutes // 60,
            minutes % 60,
        )
    )


def _scalar(tag: int, value: PyValue) -> bytes:
    """Value field for every tag but begCollection."""
    if tag in OUT_OF_BAND_TAGS:
        if value is not None:
            raise IppEncodeError(f"out-of-band tag 0x{tag:02x} carries no value")
        return b""
    if tag in INT_TAGS:
        _expect(value, int, tag)
        assert isinstance(value, int)
        return _int32(value, "integer")
    if tag == ValueTag.BOOLEAN:
        _expect(value, bool, tag)
        return b"\x01" if value else b"\x00"
    if tag in UTF8_TAGS or tag in ASCII_TAGS:
        _expect(value, str, tag)
        assert isinstance(value, str)
        return _text(value, "utf-8" if tag in UTF8_TAGS else "ascii", "string value")
    if tag in WITH_LANGUAGE_TAGS:
        _expect(value, StringWithLanguage, tag)
        assert isinstance(value, StringWithLanguage)
        language = _text(value.language, "ascii", "language")
        text = _text(value.text, "utf-8", "text")
        return _SHORT.pack(len(language)) + language + _SHORT.pack(len(text)) + text
    if tag == ValueTag.DATE_TIME:
        _expect(value, datetime, tag)
        assert isinstance(value, datetime)
        return _date_time(value)
    if tag == ValueTag.RANGE_OF_INTEGER:
        _expect(value, IntRange, tag)
        assert isinstance(value, IntRange)
        return _int32(value.lower, "range lower") + _int32(value.upper, "range upper")
    if tag == ValueTag.RESOLUTION:
        _expect(value, Resolution, tag)
        assert isinstance(value, Resolution)
        if not -128 <= value.units <= 127:
            raise IppEncodeError(f"resolution units {value.units} do not fit a SIGNED-BYTE")
        return _int32(value.x, "resolution x") + _int32(value.y, "resolution y") + _int32(value.units, "units")[3:]
    # octetString, extension and unassigned tags carry their octets as given
    _expect(value, bytes, tag)
    assert isinstance(value, bytes)
    if tag == ValueTag.EXTENSION and (len(value) < 4 or value[0] & 0x80):
        raise IppEncodeError("extension value must start with a 4-octet tag below 0x80000000")
    return value


class _Encoder:
    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def field(self, raw: bytes, what: str) -> None:
        if len(raw) > MAX_SHORT:
            raise IppEncodeError(f"{what} of {len(raw)} octets exceeds {MAX_SHORT}")
        self.out += _SHORT.pack(len(raw))
        self.out += raw

    def value(self, name: bytes, item: Value) -> None:
        tag = item.tag
        if not isinstance(tag, int) or isinstance(tag, bool) or not DELIMITER_LIMIT <= tag <= 0xFF:
            raise IppEncodeError(f"value tag {tag!r} is not a value tag")
        if tag in STRUCTURAL_TAGS:
            raise IppEncodeError("endCollection/memberAttrName are written by the encoder, not given")
        self.out.append(tag)
        self.field(name, "attribute name")
        if tag == ValueTag.BEG_COLLECTION:
            _expect(item.value, Collection, tag)
            assert isinstance(item.value, Collection)
            self.out += b"\x00\x00"
            for member in item.value.members:
                self.member(member)
            self.out += _END_COLLECTION
        else:
            self.field(_scalar(tag, item.value), "value")

    def member(self, member: Attribute) -> None:
        """memberAttrName, then the member's values with empty names (RFC 8010 section 3.1.7)."""
        self.out += bytes((ValueTag.MEMBER_ATTR_NAME, 0, 0))
        self.field(_name(member), "member name")
        for item in _values(member):
            self.value(b"", item)

    def attribute(self, attribute: Attribute) -> None:
        name = _name(attribute)
        for index, item in enumerate(_values(attribute)):
            self.value(name if index == 0 else b"", item)


def _name(attribute: Attribute) -> bytes:
    if not isinstance(attribute.name, str) or not attribute.name:
        raise IppEncodeError("attribute name must be a non-empty string")
    return _text(attribute.name, "ascii", "attribute name")


def _values(attribute: Attribute) -> tuple[Value, ...]:
    if not attribute.values:
        raise IppEncodeError(f"attribute {attribute.name!r} has no value")
    return attribute.values


def _group(enc: _Encoder, group: AttributeGroup) -> None:
    if not isinstance(group.tag, GroupTag):
        raise IppEncodeError(f"group tag {group.tag!r} is not a GroupTag")
    enc.out.append(group.tag)
    for attribute in group.attributes:
        enc.attribute(attribute)


def encode(msg: IppMessage) -> bytes:
    """Wire form of ``msg``: header, groups in order, end-of-attributes, data."""
    major, minor = msg.version
    if not (0 <= major <= 0xFF and 0 <= minor <= 0xFF):
        raise IppEncodeError(f"version {msg.version!r} does not fit two octets")
    if not 0 <= msg.code <= 0xFFFF:
        raise IppEncodeError(f"operation-id/status-code {msg.code} does not fit two octets")
    enc = _Encoder()
    enc.out += bytes((major, minor)) + _SHORT.pack(msg.code) + _int32(msg.request_id, "request-id")
    for group in msg.groups:
        _group(enc, group)
    enc.out.append(END_OF_ATTRIBUTES)
    enc.out += msg.data
    return bytes(enc.out)
