"""Document formats the printer takes, recognised from their first bytes.

The platform receives the document as sent, so only formats it can use are
accepted; a declared format is checked against the bytes (a client that
labels a PostScript file as PDF gets client-error-document-format-error, not
a failed fax later).  A document sent with ``compression`` is sniffed after
decompression (the spool decompresses it first); :func:`compressed_format`
only explains a refusal when compressed bytes arrive without it.
"""

from __future__ import annotations

PDF = "application/pdf"
JPEG = "image/jpeg"
PWG_RASTER = "image/pwg-raster"
OCTET_STREAM = "application/octet-stream"

ACCEPTED_FORMATS = (PDF, JPEG, PWG_RASTER)
"""Formats that reach the platform (document-format-supported adds octet-stream)."""

SUPPORTED_FORMATS = (*ACCEPTED_FORMATS, OCTET_STREAM)

SNIFF_BYTES = 1024
"""PDF allows junk before the header within the first 1024 bytes (ISO 32000-1, 7.5.2 note)."""

PWG_SYNC_WORD = b"RaS2"
"""PWG 5102.4 section 4.3: a PWG raster stream starts with this sync word."""

EXTENSIONS = {PDF: ".pdf", JPEG: ".jpg", PWG_RASTER: ".pwg"}

GZIP_MAGIC = b"\x1f\x8b\x08"
"""RFC 1952 section 2.3.1: ID1 31, ID2 139, CM 8 (deflate)."""


def sniff(head: bytes) -> str | None:
    """The accepted format these leading bytes are, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(PWG_SYNC_WORD):
        return PWG_RASTER
    if b"%PDF-" in head[:SNIFF_BYTES]:
        return PDF
    return None


def compressed_format(head: bytes) -> str | None:
    """The ``compression`` keyword these leading bytes look like (only gzip has a signature), or None."""
    return "gzip" if head.startswith(GZIP_MAGIC) else None


def is_supported(declared: str) -> bool:
    return declared.lower() in SUPPORTED_FORMATS
