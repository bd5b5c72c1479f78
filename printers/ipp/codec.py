"""The IPP codec's entry points: ``encode``, ``decode``, ``decode_attributes``.

Pure functions, no I/O.  Decoding untrusted bytes raises only IppParseError
(subclasses: IppIncomplete, IppTooLarge, IppValueTooLong); encoding our own
messages raises IppEncodeError for values that cannot be put on the wire.
"""

from __future__ import annotations

from .decoder import decode, decode_attributes
from .encoder import encode
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "Limits", "decode", "decode_attributes", "encode"]
