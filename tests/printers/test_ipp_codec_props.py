"""Property tests: round trip of arbitrary messages; hostile bytes only ever raise IppParseError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from printers.ipp import (
    Attribute,
    AttributeGroup,
    Collection,
    GroupTag,
    IntRange,
    IppMessage,
    IppParseError,
    Limits,
    Resolution,
    StringWithLanguage,
    Value,
    ValueTag,
    decode,
    decode_attributes,
    encode,
)
from printers.ipp.tags import OUT_OF_BAND_TAGS

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
ascii_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=40)
names = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
unicode_text = st.text(max_size=40)  # hypothesis excludes surrogates by default

zones = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
) | st.just(UTC)
date_times = st.builds(
    lambda dt, ds, tz: dt.replace(microsecond=ds * 100_000, tzinfo=tz),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.integers(min_value=0, max_value=9),
    zones,
)

# tags the codec has no meaning for: kept as raw bytes
unassigned_tags = st.sampled_from(
    [0x11, 0x14, 0x18, 0x1F, 0x20, 0x24, 0x2F, 0x38, 0x3F, 0x40, 0x43, 0x4B, 0x5F, 0x60, 0x7E, 0x80, 0xFF]
)

scalar_values: st.SearchStrategy[Value] = st.one_of(
    st.builds(Value, tag=st.sampled_from([ValueTag.INTEGER, ValueTag.ENUM]), value=int32),
    st.builds(Value, tag=st.just(ValueTag.BOOLEAN), value=st.booleans()),
    st.builds(Value, tag=st.just(ValueTag.OCTET_STRING), value=st.binary(max_size=40)),
    st.builds(Value, tag=st.just(ValueTag.DATE_TIME), value=date_times),
    st.builds(
        Value,
        tag=st.just(ValueTag.RESOLUTION),
        value=st.builds(Resolution, x=int32, y=int32, units=st.integers(min_value=-128, max_value=127)),
    ),
    st.builds(Value, tag=st.just(ValueTag.RANGE_OF_INTEGER), value=st.builds(IntRange, lower=int32, upper=int32)),
    st.builds(
        Value,
        tag=st.sampled_from([ValueTag.TEXT_WITH_LANGUAGE, ValueTag.NAME_WITH_LANGUAGE]),
        value=st.builds(StringWithLanguage, language=ascii_text, text=unicode_text),
    ),
    st.builds(Value, tag=st.sampled_from([ValueTag.TEXT, ValueTag.NAME]), value=unicode_text),
    st.builds(
        Value,
        tag=st.sampled_from(
            [
                ValueTag.KEYWORD,
                ValueTag.URI,
                ValueTag.URI_SCHEME,
                ValueTag.CHARSET,
                ValueTag.NATURAL_LANGUAGE,
                ValueTag.MIME_MEDIA_TYPE,
            ]
        ),
        value=ascii_text,
    ),
    st.builds(Value, tag=st.sampled_from(sorted(OUT_OF_BAND_TAGS)), value=st.none()),
    st.builds(Value, tag=unassigned_tags, value=st.binary(max_size=20)),
    st.builds(
        Value,
        tag=st.just(ValueTag.EXTENSION),
        value=st.builds(
            lambda ext, rest: ext.to_bytes(4, "big") + rest,
            st.integers(min_value=0, max_value=2**31 - 1),
            st.binary(max_size=12),
        ),
    ),
)


def attributes_of(values: st.SearchStrategy[Value], max_size: int) -> st.SearchStrategy[tuple[Attribute, ...]]:
    attribute = st.builds(Attribute, name=names, values=st.lists(values, min_size=1, max_size=3).map(tuple))
    return st.lists(attribute, max_size=max_size).map(tuple)


values: st.SearchStrategy[Value] = st.recursive(
    scalar_values,
    lambda inner: st.builds(
        Value,
        tag=st.just(ValueTag.COLLECTION),
        value=st.builds(Collection, members=attributes_of(inner, 3)),
    ),
    max_leaves=10,
)

groups = st.builds(AttributeGroup, tag=st.sampled_from(list(GroupTag)), attributes=attributes_of(values, 4))

messages = st.builds(
    IppMessage,
    version=st.tuples(st.integers(0, 255), st.integers(0, 255)),
    code=st.integers(0, 0xFFFF),
    request_id=int32,
    groups=st.lists(groups, max_size=4).map(tuple),
    data=st.binary(max_size=30),
)


@PROPS
@given(messages)
def test_decode_inverts_encode(msg: IppMessage) -> None:
    raw = encode(msg)
    assert decode(raw) == msg
    head, offset = decode_attributes(raw)
    assert raw[offset:] == msg.data
    assert head.groups == msg.groups
    assert encode(decode(raw)) == raw


@PROPS
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_parse_error(raw: bytes) -> None:
    try:
        msg = decode(raw)
    except IppParseError as exc:
        assert exc.status in (0x0400, 0x0408, 0x0409)
    else:
        assert isinstance(msg, IppMessage)


@PROPS
@given(st.binary(max_size=200))
def test_random_attribute_bytes_after_valid_header(body: bytes) -> None:
    # start inside an operation group so random bytes reach the value parsers
    try:
        decode(b"\x02\x00\x00\x0b\x00\x00\x00\x01\x01" + body, limits=Limits(max_depth=4, max_attributes=50))
    except IppParseError:
        pass


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    raw = bytearray(encode(draw(messages)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(min_value=0, max_value=max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and raw:
            del raw[pos : pos + draw(st.integers(1, 4))]
        else:
            del raw[pos:]
    return bytes(raw)


@PROPS
@given(mutated_encodings())
def test_mutated_encodings_decode_or_raise_parse_error(raw: bytes) -> None:
    try:
        msg = decode(raw)
    except IppParseError as exc:
        assert exc.status in (0x0400, 0x0408, 0x0409)
    else:
        # whatever decodes must encode again (tags and values are all representable)
        assert decode(encode(msg)) == msg
