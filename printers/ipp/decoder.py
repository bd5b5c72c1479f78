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

Work is bounded by :class:`Limits`: bytes, attributes (collection members
included) and values (every value of a 1setOf, of a member, and each
collection value itself, however deeply nested).  Decoding a capped section
still runs Python per value, so :func:`decode_attributes_in_steps` pauses
every ``step_values`` values: the server resumes it from its event loop and
no single request holds the loop for more than one step.
"""

from __future__ import annotations

from collections.abc import Generator
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
    value_unchecked,
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
STEP_VALUES = 256
"""Values decoded between two pauses of :func:`decode_attributes_in_steps`."""

Steps = Generator[None, None, tuple[IppMessage, int]]
"""A decoding in progress: ``next()`` runs one step; StopIteration carries (message, offset)."""


class _Reader:
    """Bounds-checked cursor over the buffer, counting attributes and values against the limits."""

    __slots__ = ("attributes", "buf", "cap", "end", "limits", "pause_at", "pos", "step", "values")

    def __init__(self, buf: bytes | bytearray | memoryview, limits: Limits, step: int) -> None:
        self.buf = memoryview(buf).cast("B")
        self.limits = limits
        self.cap = limits.max_attributes_bytes
        self.end = min(self.cap, len(self.buf))
        """Reads stop here: past it is either the byte cap or the end of what has arrived."""
        self.pos = 0
        self.attributes = 0
        self.values = 0
        self.step = step
        self.pause_at = step

    def _short(self, n: int, what: str) -> None:
        start = self.pos
        if start + n > self.cap:
            raise IppTooLarge(f"attribute section larger than {self.cap} octets reading {what}", offset=start)
        raise IppIncomplete(f"message ends inside {what}", offset=start)

    def take(self, n: int, what: str) -> memoryview:
        start = self.pos
        stop = start + n
        if stop > self.end:
            self._short(n, what)
        self.pos = stop
        return self.buf[start:stop]

    def u8(self, what: str) -> int:
        pos = self.pos
        if pos >= self.end:
            self._short(1, what)
        self.pos = pos + 1
        return self.buf[pos]

    def u16(self, what: str) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            self._short(2, what)
        self.pos = pos + 2
        buf = self.buf
        return (buf[pos] << 8) | buf[pos + 1]

    def head(self, what: str) -> tuple[int, int]:
        """The tag and name-length that start every attribute and value (RFC 8010 section 3.1.4/3.1.5)."""
        pos = self.pos
        if pos + 3 > self.end:
            tag = self.u8(what)
            return tag, self.u16("name-length")
        self.pos = pos + 3
        buf = self.buf
        return buf[pos], (buf[pos + 1] << 8) | buf[pos + 2]

    def count_attribute(self, offset: int) -> None:
        self.attributes += 1
        if self.attributes > self.limits.max_attributes:
            raise IppTooLarge(f"more than {self.limits.max_attributes} attributes", offset=offset)

    def count_value(self, offset: int) -> bool:
        """Count one value; True when the decoder should pause before the next one."""
        self.values += 1
        if self.values > self.limits.max_values:
            raise IppTooLarge(f"more than {self.limits.max_values} values", offset=offset)
        if self.values >= self.pause_at:
            self.pause_at += self.step
            return True
        return False

    def name(self, length: int, offset: int) -> str:
        """The attribute name whose name-length :meth:`head` read."""
        if length > self.limits.max_name_length:
            raise IppValueTooLong(f"attribute name of {length} octets", offset=offset)
        return _ascii(self.take(length, "attribute name"), "attribute name", offset)

    def value_bytes(self, offset: int) -> memoryview:
        pos = self.pos
        if pos + 2 > self.end:
            self._short(2, "value-length")
        buf = self.buf
        length = (buf[pos] << 8) | buf[pos + 1]
        if length > self.limits.max_value_length:
            raise IppValueTooLong(f"value of {length} octets", offset=offset)
        start = pos + 2
        stop = start + length
        if stop > self.end:
            self.pos = start
            self._short(length, "value")
        self.pos = stop
        return buf[start:stop]


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
    # the tag sets are disjoint: the commonest syntaxes are tested first
    if tag in ASCII_TAGS:
        return _ascii(raw, "keyword/uri/charset/language/mime value", offset)
    if tag in UTF8_TAGS:
        return _utf8(raw, "text/name value", offset)
    if tag in INT_TAGS:
        return _int32(_fixed(raw, 4, "integer", offset))
    if tag in OUT_OF_BAND_TAGS:
        return None
    if tag == ValueTag.BOOLEAN:
        octet = _fixed(raw, 1, "boolean", offset)[0]
        if octet > 1:
            raise IppParseError("boolean is neither 0 nor 1", offset=offset)
        return octet == 1
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


def _value(tag: int, raw: memoryview, offset: int) -> Value:
    """A non-collection value; the commonest syntaxes without the general dispatch of :func:`_scalar`."""
    if tag in _ASCII_TAGS:
        try:
            return value_unchecked(_VALUE_TAGS[tag], str(raw, "ascii"))
        except UnicodeDecodeError as exc:
            raise IppParseError("keyword/uri/charset/language/mime value is not US-ASCII", offset=offset) from exc
    return value_unchecked(value_tag(tag), _scalar(tag, raw, offset))


_VALUE_TAGS = {int(t): t for t in ValueTag}
_BEG_COLLECTION = int(ValueTag.BEG_COLLECTION)
_ASCII_TAGS = frozenset(int(t) for t in ASCII_TAGS)


class _Decoder:
    """The message grammar (RFC 8010 section 3.1) as generators that pause between steps."""

    __slots__ = ("r",)

    def __init__(self, r: _Reader) -> None:
        self.r = r

    def collection(self, depth: int, start: int) -> Generator[None, None, Collection]:
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
            if offset < r.end and r.buf[offset] < DELIMITER_LIMIT:
                raise IppParseError("delimiter tag inside a collection", offset=offset)
            tag, name_length = r.head("collection member tag")
            if name_length != 0:
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
                if r.count_value(offset):
                    yield
                raw = r.value_bytes(offset)
                if tag == _BEG_COLLECTION:
                    nested = yield from self.collection(depth + 1, offset)
                    values.append(Value(tag=ValueTag.BEG_COLLECTION, value=nested))
                else:
                    values.append(_value(tag, raw, offset))

    def message(self) -> Generator[None, None, tuple[IppMessage, int]]:
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
        buf, end = r.buf, r.end
        while True:
            offset = r.pos
            if offset < end and buf[offset] < DELIMITER_LIMIT:
                tag, name_length = r.u8("tag"), -1
            else:
                tag, name_length = r.head("tag")
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
            if name_length:
                new_name = r.name(name_length, offset)
                if name is not None:
                    attributes.append(Attribute(name=name, values=tuple(values)))
                r.count_attribute(offset)
                name = new_name
                values = []
            elif name is None:
                raise IppParseError("additional value without an attribute", offset=offset)
            if r.count_value(offset):
                yield
            raw = r.value_bytes(offset)
            if tag == _BEG_COLLECTION:
                collection = yield from self.collection(1, offset)
                values.append(Value(tag=ValueTag.BEG_COLLECTION, value=collection))
            else:
                values.append(_value(tag, raw, offset))
        msg = IppMessage(version=version, code=code, request_id=request_id, groups=tuple(groups))
        return msg, r.pos


def _member(name: str, values: list[Value], offset: int) -> Attribute:
    if not values:
        raise IppParseError("collection member without a value", offset=offset)
    return Attribute(name=name, values=tuple(values))


def decode_attributes_in_steps(
    buf: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS, step_values: int = STEP_VALUES
) -> Steps:
    """:func:`decode_attributes` as a generator that pauses every ``step_values`` values.

    Drive it with ``next()`` until StopIteration, whose ``value`` is
    (message, offset); the errors are those of :func:`decode_attributes`.
    ``buf`` must not change while the generator is alive.
    """
    if step_values < 1:
        raise ValueError("step_values must be at least 1")
    return _Decoder(_Reader(buf, limits, step_values)).message()


def _finish(steps: Steps) -> tuple[IppMessage, int]:
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: tuple[IppMessage, int] = done.value
            return result


def decode_attributes(
    buf: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[IppMessage, int]:
    """Header and attributes from a prefix of a request; ``data`` is left empty.

    Returns the message and the offset where the document starts.  Raises
    :class:`IppIncomplete` while the end-of-attributes tag has not arrived yet,
    :class:`IppTooLarge` once the attribute section passes the byte, attribute
    or value cap.
    """
    return _finish(decode_attributes_in_steps(buf, limits=limits, step_values=max(1, limits.max_values)))


def decode(buf: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS) -> IppMessage:
    """A whole message; everything after end-of-attributes becomes ``data``."""
    msg, offset = decode_attributes(buf, limits=limits)
    data = bytes(memoryview(buf).cast("B")[offset:])
    if not data:
        return msg
    return IppMessage(version=msg.version, code=msg.code, request_id=msg.request_id, groups=msg.groups, data=data)
