"""IPP message decoder (RFC 8010 section 3): untrusted bytes in, IppMessage out.

Any malformed input raises IppParseError (or a subclass); no other exception
escapes.  Decisions where RFC 8010 leaves room:

* out-of-band values and begCollection/endCollection should have an empty
  value; a non-empty one is ignored (RFC 8010 section 3.8 asks receivers to
  ignore it) rather than refused;
* a seconds field of 60 (leap second, RFC 2579) is read as 59;
* reserved delimiter tags (0x00, 0x0B-0x0F) are refused; unassigned value tags
  are kept as raw bytes;
* repeated attribute names in a group are kept as received (the server may
  refuse them); empty groups are kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .errors import IppIncomplete, IppParseError, IppTooLarge, IppValueTooLong
from .limits import DEFAULT_LIMITS, Limits
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
    UTF8_TAGS,
    WITH_LANGUAGE_TAGS,
    GroupTag,
    ValueTag,
    group_tag,
    value_tag,
)

_HEADER_SIZE = 8


class _Reader:
    """Bounds-checked cursor over the buffer; all reads go through :meth:`take`."""

    __slots__ = ("attributes", "buf", "cap", "limits", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, limits: Limits) -> None:
        self.buf = memoryview(buf).cast("B")
        self.limits = limits
        self.cap = limits.max_attributes_bytes
        self.pos = 0
        self.attributes = 0

    def take(self, n: int, what: str) -> memoryview:
        start = self.pos
        stop = start + n
        if stop > self.cap:
            raise IppTooLarge(f"attribute section larger than {self.cap} octets reading {what}", offset=start)
        if stop > len(self.buf):
            raise IppIncomplete(f"message ends inside {what}", offset=start)
        self.pos = stop
        return self.buf[start:stop]

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def count_attribute(self, offset: int) -> None:
        self.attributes += 1
        if self.attributes > self.limits.max_attributes:
            raise IppTooLarge(f"more than {self.limits.max_attributes} attributes", offset=offset)

    def name(self, offset: int) -> str:
        length = self.u16("name-length")
        if length > self.limits.max_name_length:
            raise IppValueTooLong(f"attribute name of {length} octets", offset=offset)
        return _ascii(self.take(length, "attribute name"), "attribute name", offset)

    def value_bytes(self, offset: int) -> memoryview:
        length = self.u16("value-length")
        if length > self.limits.max_value_length:
            raise IppValueTooLong(f"value of {length} octets", offset=offset)
        return self.take(length, "value")


def _ascii(raw: memoryview, what: str, offset: int) -> str:
    try:
        return str(raw, "ascii")
    except UnicodeDecodeError as exc:
        raise IppParseError(f"{what} is not US-ASCII", offset=offset) from exc


def _utf8(raw: memoryview, what: str, offset: int) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise IppParseError(f"{what} is not UTF-8", offset=offset) from exc


def _int32(raw: memoryview) -> int:
    return int.from_bytes(raw, "big", signed=True)


def _fixed(raw: memoryview, size: int, what: str, offset: int) -> memoryview:
    if len(raw) != size:
        raise IppParseError(f"{what} value of {len(raw)} octets, expected {size}", offset=offset)
    return raw


def _date_time(raw: memoryview, offset: int) -> datetime:
    """RFC 2579 DateAndTime, 11 octets: y y m d h min s ds dir tzh tzm."""
    raw = _fixed(raw, 11, "dateTime", offset)
    year = int.from_bytes(raw[0:2], "big")
    month, day, hour, minute, second, decisecond, direction, tz_hours, tz_minutes = raw[2:11]
    if direction not in (0x2B, 0x2D) or tz_minutes > 59 or decisecond > 9:
        raise IppParseError("dateTime has an invalid time zone or deciseconds", offset=offset)
    sign = 1 if direction == 0x2B else -1
    try:
        zone = timezone(sign * timedelta(hours=tz_hours, minutes=tz_minutes))
        return datetime(year, month, day, hour, minute, min(second, 59), decisecond * 100_000, tzinfo=zone)
    except (ValueError, OverflowError) as exc:
        raise IppParseError("dateTime is not a valid date", offset=offset) from exc


def _with_language(raw: memoryview, offset: int) -> StringWithLanguage:
    """Value field = language-length, language, text-length, text (RFC 8010 section 3.9)."""
    if len(raw) < 4:
        raise IppParseError("language-tagged string shorter than 4 octets", offset=offset)
    lang_len = int.from_bytes(raw[0:2], "big")
    text_start = 2 + lang_len + 2
    if text_start > len(raw):
        raise IppParseError("language-length runs past the value", offset=offset)
    text_len = int.from_bytes(raw[2 + lang_len : text_start], "big")
    if text_start + text_len != len(raw):
        raise IppParseError("text-length does not match the value length", offset=offset)
    return StringWithLanguage(
        language=_ascii(raw[2 : 2 + lang_len], "language", offset),
        text=_utf8(raw[text_start:], "text", offset),
    )


def _scalar(tag: int, raw: memoryview, offset: int) -> PyValue:
    """Python value for every non-collection value tag."""
    if tag in OUT_OF_BAND_TAGS:
        return None
    if tag in INT_TAGS:
        return _int32(_fixed(raw, 4, "integer", offset))
    if tag == ValueTag.BOOLEAN:
        octet = _fixed(raw, 1, "boolean", offset)[0]
        if octet > 1:
            raise IppParseError("boolean is neither 0 nor 1", offset=offset)
        return octet == 1
    if tag in UTF8_TAGS:
        return _utf8(raw, "text/name value", offset)
    if tag in ASCII_TAGS:
        return _ascii(raw, "keyword/uri/charset/language/mime value", offset)
    if tag in WITH_LANGUAGE_TAGS:
        return _with_language(raw, offset)
    if tag == ValueTag.DATE_TIME:
        return _date_time(raw, offset)
    if tag == ValueTag.RANGE_OF_INTEGER:
        raw = _fixed(raw, 8, "rangeOfInteger", offset)
        return IntRange(lower=_int32(raw[0:4]), upper=_int32(raw[4:8]))
    if tag == ValueTag.RESOLUTION:
        raw = _fixed(raw, 9, "resolution", offset)
        return Resolution(x=_int32(raw[0:4]), y=_int32(raw[4:8]), units=_int32(raw[8:9]))
    if tag == ValueTag.EXTENSION:
        # RFC 8010 section 3.5.2: the first four octets are the extended tag, high bit clear.
        if len(raw) < 4 or raw[0] & 0x80:
            raise IppParseError("extension value without a valid 4-octet tag", offset=offset)
        return bytes(raw)
    if tag in (ValueTag.END_COLLECTION, ValueTag.MEMBER_ATTR_NAME):
        raise IppParseError("collection framing tag outside a collection", offset=offset)
    # octetString and unassigned tags: keep the octets
    return bytes(raw)


class _Decoder:
    __slots__ = ("r",)

    def __init__(self, r: _Reader) -> None:
        self.r = r

    def value(self, tag: int, offset: int, depth: int) -> Value:
        raw = self.r.value_bytes(offset)
        if tag == ValueTag.BEG_COLLECTION:
            return Value(tag=ValueTag.BEG_COLLECTION, value=self.collection(depth + 1, offset))
        return Value(tag=value_tag(tag), value=_scalar(tag, raw, offset))

    def collection(self, depth: int, start: int) -> Collection:
        """Members after a begCollection up to its endCollection (RFC 8010 section 3.1.6)."""
        r = self.r
        if depth > r.limits.max_depth:
            raise IppParseError(f"collections nested deeper than {r.limits.max_depth}", offset=start)
        members: list[Attribute] = []
        name: str | None = None
        values: list[Value] = []
        name_offset = start
        while True:
            offset = r.pos
            tag = r.u8("collection member tag")
            if tag < DELIMITER_LIMIT:
                raise IppParseError("delimiter tag inside a collection", offset=offset)
            if r.u16("name-length") != 0:
                raise IppParseError("collection member value with a name", offset=offset)
            if tag == ValueTag.MEMBER_ATTR_NAME:
                if name is not None:
                    members.append(_member(name, values, name_offset))
                r.count_attribute(offset)
                name = _ascii(r.value_bytes(offset), "member name", offset)
                if not name:
                    raise IppParseError("empty member name", offset=offset)
                values = []
                name_offset = offset
            elif tag == ValueTag.END_COLLECTION:
                r.value_bytes(offset)
                if name is not None:
                    members.append(_member(name, values, name_offset))
                return Collection(members=tuple(members))
            elif name is None:
                raise IppParseError("collection value before any memberAttrName", offset=offset)
            else:
                values.append(self.value(tag, offset, depth))

    def message(self) -> tuple[IppMessage, int]:
        r = self.r
        header = r.take(_HEADER_SIZE, "message header")
        version = (header[0], header[1])
        code = int.from_bytes(header[2:4], "big")
        request_id = _int32(header[4:8])

        groups: list[AttributeGroup] = []
        group: GroupTag | None = None
        attributes: list[Attribute] = []
        name: str | None = None
        values: list[Value] = []
        while True:
            offset = r.pos
            tag = r.u8("tag")
            if tag < DELIMITER_LIMIT:
                if name is not None:
                    attributes.append(Attribute(name=name, values=tuple(values)))
                    name = None
                if group is not None:
                    groups.append(AttributeGroup(tag=group, attributes=tuple(attributes)))
                    attributes = []
                if tag == END_OF_ATTRIBUTES:
                    break
                group = group_tag(tag)
                if group is None:
                    raise IppParseError(f"reserved delimiter tag 0x{tag:02x}", offset=offset)
                continue
            if group is None:
                raise IppParseError("attribute before any group tag", offset=offset)
            new_name = r.name(offset)
            if new_name:
                if name is not None:
                    attributes.append(Attribute(name=name, values=tuple(values)))
                r.count_attribute(offset)
                name = new_name
                values = []
            elif name is None:
                raise IppParseError("additional value without an attribute", offset=offset)
            values.append(self.value(tag, offset, 0))
        msg = IppMessage(version=version, code=code, request_id=request_id, groups=tuple(groups))
        return msg, r.pos


def _member(name: str, values: list[Value], offset: int) -> Attribute:
    if not values:
        raise IppParseError("collection member without a value", offset=offset)
    return Attribute(name=name, values=tuple(values))


def decode_attributes(
    buf: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[IppMessage, int]:
    """Header and attributes from a prefix of a request; ``data`` is left empty.

    Returns the message and the offset where the document starts.  Raises
    :class:`IppIncomplete` while the end-of-attributes tag has not arrived yet,
    :class:`IppTooLarge` once the attribute section passes the byte cap.
    """
    return _Decoder(_Reader(buf, limits)).message()


def decode(buf: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS) -> IppMessage:
    """A whole message; everything after end-of-attributes becomes ``data``."""
    msg, offset = decode_attributes(buf, limits=limits)
    data = bytes(memoryview(buf).cast("B")[offset:])
    if not data:
        return msg
    return IppMessage(version=msg.version, code=msg.code, request_id=msg.request_id, groups=msg.groups, data=data)
