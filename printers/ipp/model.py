"""Typed IPP values, attributes, groups and messages (RFC 8011 section 5.1).

These are what the codec produces and consumes; the server works on them and
never sees the wire format.  Every value keeps its value tag, so a keyword and
a name with the same text stay distinct and unknown tags round-trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from .errors import IppEncodeError
from .tags import OUT_OF_BAND_TAGS, GroupTag, ValueTag


@dataclass(frozen=True, kw_only=True, slots=True)
class IntRange:
    """rangeOfInteger: inclusive bounds."""

    lower: int
    upper: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Resolution:
    """resolution: cross-feed, feed, units (see :class:`ResolutionUnit`)."""

    x: int
    y: int
    units: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StringWithLanguage:
    """textWithLanguage / nameWithLanguage."""

    language: str
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Collection:
    """collection: member attributes in wire order (a member may hold a 1setOf)."""

    members: tuple[Attribute, ...] = ()

    def get(self, name: str) -> Attribute | None:
        """First member called ``name``."""
        for member in self.members:
            if member.name == name:
                return member
        return None


PyValue: TypeAlias = (
    bool | int | str | bytes | IntRange | Resolution | datetime | StringWithLanguage | Collection | None
)
"""Python side of a value.

integer/enum -> int; boolean -> bool; rangeOfInteger -> IntRange;
resolution -> Resolution; dateTime -> aware datetime (decisecond precision);
text/name with language -> StringWithLanguage; other strings -> str;
octetString, extension (0x7F, with its 4-octet tag) and unassigned tags ->
bytes; collection -> Collection; out-of-band tags -> None.
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Value:
    """One value with its value tag (``int`` only for tags without an enum member)."""

    tag: ValueTag | int
    value: PyValue = None


_new = object.__new__
_set = object.__setattr__


def value_unchecked(tag: ValueTag | int, value: PyValue) -> Value:
    """``Value(tag=tag, value=value)`` for the decoder's loop: the same two stores the frozen
    dataclass's ``__init__`` makes, without its keyword handling (less than half the time)."""
    item: Value = _new(Value)
    _set(item, "tag", tag)
    _set(item, "value", value)
    return item


@dataclass(frozen=True, kw_only=True, slots=True)
class Attribute:
    """An attribute: a name and one or more values (more than one is a 1setOf)."""

    name: str
    values: tuple[Value, ...]

    @classmethod
    def of(cls, name: str, tag: ValueTag | int, *values: PyValue) -> Attribute:
        """Attribute whose values all share ``tag``; out-of-band tags need no value."""
        if not values:
            if tag not in OUT_OF_BAND_TAGS:
                raise IppEncodeError(f"attribute {name!r} needs at least one value")
            values = (None,)
        return cls(name=name, values=tuple(Value(tag=tag, value=v) for v in values))

    @property
    def tag(self) -> ValueTag | int:
        """Tag of the first value (the usual case: all values share it)."""
        return self.values[0].tag

    @property
    def first(self) -> PyValue:
        """Python value of the first value."""
        return self.values[0].value

    @property
    def plain_values(self) -> tuple[PyValue, ...]:
        """Python values without their tags."""
        return tuple(v.value for v in self.values)


@dataclass(frozen=True, kw_only=True, slots=True)
class AttributeGroup:
    """One attribute group; a message may hold several groups of the same kind."""

    tag: GroupTag
    attributes: tuple[Attribute, ...] = ()

    @classmethod
    def of(cls, tag: GroupTag, *attributes: Attribute) -> AttributeGroup:
        return cls(tag=tag, attributes=attributes)

    def get(self, name: str) -> Attribute | None:
        """First attribute called ``name`` (duplicates are kept as received)."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        return None

    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)


@dataclass(frozen=True, kw_only=True, slots=True)
class IppMessage:
    """A request (``code`` = operation-id) or response (``code`` = status-code).

    ``data`` is everything after the end-of-attributes tag (the document).
    """

    version: tuple[int, int]
    code: int
    request_id: int
    groups: tuple[AttributeGroup, ...] = ()
    data: bytes = b""

    def groups_of(self, tag: GroupTag) -> tuple[AttributeGroup, ...]:
        """All groups of one kind, in wire order (e.g. one per job in Get-Jobs)."""
        return tuple(g for g in self.groups if g.tag == tag)

    @property
    def operation_attributes(self) -> AttributeGroup | None:
        """The first operation-attributes group, None when the request has none."""
        for group in self.groups:
            if group.tag == GroupTag.OPERATION:
                return group
        return None

    def find(self, group: GroupTag, name: str) -> Attribute | None:
        """First attribute ``name`` in any group of kind ``group``."""
        for g in self.groups:
            if g.tag == group and (found := g.get(name)) is not None:
                return found
        return None
