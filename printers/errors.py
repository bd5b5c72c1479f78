"""IPP operation errors: each one is an IPP status-code the printer answers with.

They are BridgeError subclasses (via RequestError) so the project has one
exception tree; ``ipp_status`` is what goes into the IPP response.  The
HTTP status stays 200 for every IPP-level error (RFC 8010 section 4.2: IPP
errors travel inside a successful HTTP response); only authentication is an
HTTP 401, raised as :class:`PrintAuthRequired`.
"""

from __future__ import annotations

from typing import ClassVar

from pyipp.enums import IppStatus

from bridge.errors import BridgeError, PayloadTooLarge, RequestError
from printers.ipp import Attribute


class IppOperationError(RequestError):
    """A request the printer refuses with an IPP status (client-error-bad-request by default)."""

    code: ClassVar[str] = "ipp_bad_request"
    ipp_status: ClassVar[int] = IppStatus.ERROR_BAD_REQUEST

    def __init__(self, detail: str, *, unsupported: tuple[Attribute, ...] = ()) -> None:
        super().__init__(detail)
        self.unsupported = unsupported


class IppNotAuthorized(IppOperationError):
    """Authenticated, but the job belongs to someone else (RFC 8011 section 4.1.6.2)."""

    code = "ipp_not_authorized"
    ipp_status = IppStatus.ERROR_NOT_AUTHORIZED


class IppNotPossible(IppOperationError):
    code = "ipp_not_possible"
    ipp_status = IppStatus.ERROR_NOT_POSSIBLE


class JobChanged(IppNotPossible):
    """The job changed between reading and writing it (another request, or another instance claimed it)."""

    code = "ipp_job_changed"


class IppNotFound(IppOperationError):
    code = "ipp_not_found"
    ipp_status = IppStatus.ERROR_NOT_FOUND


class IppAttributesNotSupported(IppOperationError):
    code = "ipp_attributes_not_supported"
    ipp_status = IppStatus.ERROR_ATTRIBUTES_OR_VALUES


class IppCharsetNotSupported(IppOperationError):
    code = "ipp_charset_not_supported"
    ipp_status = IppStatus.ERROR_CHARSET


# pyipp's IppStatus has no client-error-compression-not-supported, so from 0x040F on its names
# are one off: its ERROR_COMPRESSION_ERROR is 0x040F, its ERROR_DOCUMENT_FORMAT_ERROR 0x0410.
# The values here are RFC 8011's (section 13.1.4.16 and 13.1.4.17; Appendix B), as libcups names them.
IPP_COMPRESSION_NOT_SUPPORTED = 0x040F
"""client-error-compression-not-supported."""
IPP_COMPRESSION_ERROR = 0x0410
"""client-error-compression-error."""
IPP_DOCUMENT_FORMAT_ERROR = 0x0411
"""client-error-document-format-error (pyipp's ERROR_DOCUMENT_FORMAT_ERROR is 0x0410: wrong)."""


class IppCompressionNotSupported(IppOperationError):
    """A ``compression`` value the printer does not take (RFC 8011 section 13.1.4.16)."""

    code = "ipp_compression_not_supported"
    ipp_status = IPP_COMPRESSION_NOT_SUPPORTED


class IppCompressionError(IppOperationError):
    """The document data cannot be decompressed: corrupt or truncated (RFC 8011 section 13.1.4.17)."""

    code = "ipp_compression_error"
    ipp_status = IPP_COMPRESSION_ERROR


class IppDocumentFormatNotSupported(IppOperationError):
    code = "ipp_document_format_not_supported"
    ipp_status = IppStatus.ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED


class IppDocumentFormatError(IppOperationError):
    """The bytes are not the format the client declared (RFC 8011 section 4.1.6.2)."""

    code = "ipp_document_format_error"
    ipp_status = IPP_DOCUMENT_FORMAT_ERROR


class IppOperationNotSupported(IppOperationError):
    code = "ipp_operation_not_supported"
    ipp_status = IppStatus.ERROR_OPERATION_NOT_SUPPORTED


class IppVersionNotSupported(IppOperationError):
    code = "ipp_version_not_supported"
    ipp_status = IppStatus.ERROR_VERSION_NOT_SUPPORTED


class DocumentTooLarge(PayloadTooLarge):
    """The document passed the per-job cap (client-error-request-entity-too-large)."""

    code = "ipp_document_too_large"


class PrintAuthRequired(BridgeError):
    """No usable credentials: HTTP 401 with a Basic challenge, so the queue asks again."""

    code = "print_auth_required"
    http_status = 401
    ipp_status = IppStatus.ERROR_NOT_AUTHENTICATED
    panel_message = "Sign in with your email address and password to print."


class PrinterLinkUnknown(BridgeError):
    """A personal printer URL whose token is unknown, expired or revoked (bridge/state/printlinks.py).

    An IPP answer, not a 401: there is no password to ask for, and a Basic prompt
    would only confuse the user; the message says how to get a new address.
    """

    code = "printer_link_unknown"
    http_status = 404
    ipp_status = IppStatus.ERROR_NOT_FOUND
    panel_message = ("This personal printer address is not valid any more (expired or revoked): "
                     "get a new one at /print/setup.")


class PrinterLinkGuesses(BridgeError):
    """Too many unknown personal printer URLs from one address: HTTP 429, nothing looked up."""

    code = "printer_link_throttled"
    http_status = 429
    ipp_status = IppStatus.ERROR_BUSY
    panel_message = "Too many invalid printer addresses from this computer. Wait a few minutes."

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PrinterBusy(BridgeError):
    """Too many requests without credentials right now: HTTP 503 with Retry-After, before the body is read.

    Clients treat it as server-error-busy (RFC 8011 section 4.1.6.3): they back off and send again.
    """

    code = "printer_busy"
    http_status = 503
    ipp_status = IppStatus.ERROR_BUSY
    panel_message = "The printer is busy. Try again in a moment."

    def __init__(self, detail: str, *, retry_after: int = 1, hold: float = 0.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.hold = hold
        """Seconds to wait before answering (a sender looping on refusals gets them no faster)."""


class DeliveryFailed(BridgeError):
    """One delivery attempt failed; the worker retries with backoff."""

    code = "delivery_failed"
