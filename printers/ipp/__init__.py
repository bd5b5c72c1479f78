"""IPP/1.1 and 2.x binary encoding (RFC 8010) as typed values (RFC 8011)."""

from __future__ import annotations

from .codec import (
    DEFAULT_LIMITS,
    STEP_VALUES,
    Limits,
    Steps,
    decode,
    decode_attributes,
    decode_attributes_in_steps,
    encode,
)
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
    "STEP_VALUES",
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
    "Steps",
    "StringWithLanguage",
    "Value",
    "ValueTag",
    "decode",
    "decode_attributes",
    "decode_attributes_in_steps",
    "encode",
]
