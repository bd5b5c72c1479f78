"""Caps the decoder enforces on untrusted requests.

The RFC 8011 per-syntax maxima (text 1023 octets, name and keyword 255, ...)
are NOT enforced: real clients exceed them (long document names, URIs with
queries) and refusing costs a failed print for no safety gain.  What is
enforced are the format's own bounds and resource caps.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SHORT = 0x7FFF
"""name-length and value-length are SIGNED-SHORT (RFC 8010 section 3.1.4)."""

MAX_ATTRIBUTES = 10_000
MAX_VALUES = 10_000
MAX_VALUE_LENGTH = MAX_SHORT
MAX_NAME_LENGTH = 1_023
MAX_DEPTH = 16
MAX_ATTRIBUTES_BYTES = 1 << 20


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Decoder caps. Bytes cover header + attributes.

    ``max_attributes`` counts attributes and collection members;
    ``max_values`` counts every value: each value of a 1setOf, of a collection
    member, and each collection value itself, at any depth.
    """

    max_attributes: int = MAX_ATTRIBUTES
    max_values: int = MAX_VALUES
    max_value_length: int = MAX_VALUE_LENGTH
    max_name_length: int = MAX_NAME_LENGTH
    max_depth: int = MAX_DEPTH
    max_attributes_bytes: int = MAX_ATTRIBUTES_BYTES


DEFAULT_LIMITS = Limits()
