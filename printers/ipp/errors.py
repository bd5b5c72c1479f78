"""Errors of the IPP codec, rooted in the project's exception tree.

Decoding untrusted bytes raises :class:`IppParseError` (or a subclass) and
nothing else.  ``status`` is the IPP status-code the printer should answer
with (RFC 8011 section 4.1.6 / appendix B).  Messages name the problem and the
byte offset, never an attribute value (values may hold user data).

Encoding our own values raises :class:`IppEncodeError`: a programming error,
so it is also a ``ValueError`` and maps to an internal server error.
"""

from __future__ import annotations

from typing import ClassVar

from pyipp.enums import IppStatus

from bridge.errors import BridgeError, RequestError


class IppParseError(RequestError):
    """The request is not a well-formed IPP message (client-error-bad-request)."""

    code: ClassVar[str] = "ipp_bad_request"
    ipp_status: ClassVar[int] = IppStatus.ERROR_BAD_REQUEST

    def __init__(self, what: str, *, offset: int) -> None:
        super().__init__(f"{what} at offset {offset}")
        self.what = what
        self.offset = offset

    @property
    def status(self) -> int:
        """IPP status-code to answer with."""
        return self.ipp_status


class IppIncomplete(IppParseError):
    """The buffer ends before the end-of-attributes tag.

    A subclass of :class:`IppParseError` so that a complete body that is cut
    short is simply a bad request; the streaming reader catches this first,
    reads more bytes and decodes again.
    """

    code: ClassVar[str] = "ipp_incomplete"


class IppTooLarge(IppParseError):
    """Attribute section or attribute count over the configured cap."""

    code: ClassVar[str] = "ipp_request_too_large"
    http_status: ClassVar[int] = 413
    # RFC 8011 appendix B.1.4.9: client-error-request-entity-too-large is 0x0408.
    ipp_status: ClassVar[int] = IppStatus.ERROR_REQUEST_ENTITY


class IppValueTooLong(IppParseError):
    """A single name or value longer than the configured cap."""

    code: ClassVar[str] = "ipp_value_too_long"
    # RFC 8011 appendix B.1.4.10: client-error-request-value-too-long is 0x0409.
    ipp_status: ClassVar[int] = IppStatus.ERROR_REQUEST_VALUE


class IppEncodeError(BridgeError, ValueError):
    """A value of ours cannot be put on the wire (wrong type, out of range)."""

    code: ClassVar[str] = "ipp_encode_error"
