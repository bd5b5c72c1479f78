"""Tag numbers of the IPP binary encoding (RFC 8010 section 3.5).

Delimiter tags (0x00-0x0F) open an attribute group or end the attribute
section; every other octet is a value tag.  Tags we do not know are still
carried through the codec as plain ``int`` so that extensions round-trip.
"""

from __future__ import annotations

from enum import IntEnum

END_OF_ATTRIBUTES = 0x03
"""Delimiter that ends the attribute section; the document data follows it."""

DELIMITER_LIMIT = 0x10
"""Tags below this value are delimiters (RFC 8010 section 3.5.1)."""


class GroupTag(IntEnum):
    """Begin-attribute-group tags (RFC 8010 section 3.5.1 and its registry)."""

    OPERATION = 0x01
    JOB = 0x02
    PRINTER = 0x04
    UNSUPPORTED = 0x05
    SUBSCRIPTION = 0x06
    EVENT_NOTIFICATION = 0x07
    RESOURCE = 0x08
    DOCUMENT = 0x09
    SYSTEM = 0x0A


class ValueTag(IntEnum):
    """Assigned value tags (RFC 8010 section 3.5.2, RFC 3380 for 0x15-0x17)."""

    # out-of-band: the value field is empty
    UNSUPPORTED = 0x10
    UNKNOWN = 0x12
    NO_VALUE = 0x13
    NOT_SETTABLE = 0x15
    DELETE_ATTRIBUTE = 0x16
    ADMIN_DEFINE = 0x17
    # integer types
    INTEGER = 0x21
    BOOLEAN = 0x22
    ENUM = 0x23
    # octetString types
    OCTET_STRING = 0x30
    DATE_TIME = 0x31
    RESOLUTION = 0x32
    RANGE_OF_INTEGER = 0x33
    BEG_COLLECTION = 0x34
    TEXT_WITH_LANGUAGE = 0x35
    NAME_WITH_LANGUAGE = 0x36
    END_COLLECTION = 0x37
    # character-string types
    TEXT = 0x41
    NAME = 0x42
    KEYWORD = 0x44
    URI = 0x45
    URI_SCHEME = 0x46
    CHARSET = 0x47
    NATURAL_LANGUAGE = 0x48
    MIME_MEDIA_TYPE = 0x49
    MEMBER_ATTR_NAME = 0x4A
    # the next four octets of the value hold the real (extended) tag
    EXTENSION = 0x7F

    # readable alias: a collection value is introduced by begCollection
    COLLECTION = 0x34


class ResolutionUnit(IntEnum):
    """Units octet of a resolution value (RFC 8011 section 5.1.16)."""

    DOTS_PER_INCH = 3
    DOTS_PER_CM = 4


OUT_OF_BAND_TAGS = frozenset(
    {
        ValueTag.UNSUPPORTED,
        ValueTag.UNKNOWN,
        ValueTag.NO_VALUE,
        ValueTag.NOT_SETTABLE,
        ValueTag.DELETE_ATTRIBUTE,
        ValueTag.ADMIN_DEFINE,
    }
)
INT_TAGS = frozenset({ValueTag.INTEGER, ValueTag.ENUM})
UTF8_TAGS = frozenset({ValueTag.TEXT, ValueTag.NAME})
ASCII_TAGS = frozenset(
    {
        ValueTag.KEYWORD,
        ValueTag.URI,
        ValueTag.URI_SCHEME,
        ValueTag.CHARSET,
        ValueTag.NATURAL_LANGUAGE,
        ValueTag.MIME_MEDIA_TYPE,
    }
)
WITH_LANGUAGE_TAGS = frozenset({ValueTag.TEXT_WITH_LANGUAGE, ValueTag.NAME_WITH_LANGUAGE})
STRUCTURAL_TAGS = frozenset({ValueTag.END_COLLECTION, ValueTag.MEMBER_ATTR_NAME})
"""Tags that only frame collections; they never appear as a :class:`Value`."""

_KNOWN_VALUE_TAGS = {int(t): t for t in ValueTag}
_KNOWN_GROUP_TAGS = {int(t): t for t in GroupTag}


def value_tag(tag: int) -> ValueTag | int:
    """The enum member for an assigned tag, else the plain number (kept for round trip)."""
    return _KNOWN_VALUE_TAGS.get(tag, tag)


def group_tag(tag: int) -> GroupTag | None:
    """The group for a delimiter octet, or None for end/reserved delimiters."""
    return _KNOWN_GROUP_TAGS.get(tag)
