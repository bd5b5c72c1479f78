"""The IPP codec's entry points: ``encode``, ``decode``, ``decode_attributes`` (and its stepwise form).

Pure functions, no I/O.  Decoding untrusted bytes raises only IppParseError
(subclasses: IppIncomplete, IppTooLarge, IppValueTooLong); encoding our own
messages raises IppEncodeError for values that cannot be put on the wire.
"""

from __future__ import annotations

from .decoder import STEP_VALUES, Steps, decode, decode_attributes, decode_attributes_in_steps
from .encoder import encode
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "STEP_VALUES", "Limits", "Steps", "decode", "decode_attributes",
           "decode_attributes_in_steps", "encode"]
