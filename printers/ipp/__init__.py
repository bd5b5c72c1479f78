"""IPP/1.1 and 2.x binary encoding (RFC 8010) as typed values (RFC 8011)."""

from __future__ import annotations

from .codec import DEFAULT_LIMITS, Limits, decode, decode_attributes, encode
from .errors import IppEncodeError, IppIncomplete, IppParseError, IppTooLarge, IppValueTooLong
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
from .tags import GroupTag, ResolutionUnit, ValueTag

__all__ = [
    "DEFAULT_LIMITS",
    "Attribute",
    "AttributeGroup",
    "Collection",
    "GroupTag",
    "IntRange",
    "IppEncodeError",
    "IppIncomplete",
    "IppMessage",
    "IppParseError",
    "IppTooLarge",
    "IppValueTooLong",
    "Limits",
    "PyValue",
    "Resolution",
    "ResolutionUnit",
    "StringWithLanguage",
    "Value",
    "ValueTag",
    "decode",
    "decode_attributes",
    "encode",
]
