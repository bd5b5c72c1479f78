"""Compressed documents (RFC 8011 section 5.4.32 ``compression``), decompressed as they stream in.

A client that sends ``compression`` ``gzip`` or ``deflate`` on Print-Job or Send-Document
sends the attribute section as is and only the document data compressed (CUPS's ipptool and
ipp backend do it in-band, without an HTTP ``Content-Encoding`` header).  The keywords
(RFC 8011 section 5.4.32):

- ``deflate``: the DEFLATE format of RFC 1951, no wrapper.  CUPS writes raw deflate
  (``deflateInit2`` with a negative window).  A stream that starts with a valid RFC 1950
  (zlib) header is taken as zlib-wrapped: some senders use HTTP's meaning of "deflate"
  (RFC 9110 section 8.4.1.2), and zlib's encoder never starts a raw stream that way.
- ``gzip``: the format of RFC 1952, one or more members.

:class:`Inflater` is pure: compressed bytes in, decompressed pieces out, never more than
:data:`OUTPUT_STEP` bytes from one call into zlib (``max_length``), so one small chunk can
never become a large buffer.  It refuses, with client-error-request-entity-too-large
(RFC 8011 section 13.1.4.9), a document that grows past the printer's per-job cap or past
:data:`MAX_RATIO` times the compressed bytes it came from once :data:`RATIO_GRACE` bytes are
out (a decompression bomb: DEFLATE reaches about 1000:1), and, with
client-error-compression-error (RFC 8011 section 13.1.4.17), a stream that is corrupt,
truncated, followed by other bytes, or made of more than :data:`MAX_MEMBERS` gzip members
(empty members produce no output, so only their count bounds the work they cause).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

from printers.errors import DocumentTooLarge, IppCompressionError

NONE = "none"
DEFLATE = "deflate"
GZIP = "gzip"
SUPPORTED = (NONE, DEFLATE, GZIP)
"""compression-supported; ``compress`` (RFC 1977 LZW) is not."""

OUTPUT_STEP = 256 * 1024
"""Largest piece one zlib call may produce (``max_length``)."""
INPUT_STEP = 64 * 1024
"""Compressed bytes handed to zlib at a time: what is left over is copied on every step, so keep it small."""
RATIO_GRACE = 4 * 1024 * 1024
"""Decompressed bytes before the ratio is checked (a small, very regular document may exceed it)."""
MAX_RATIO = 200
"""Decompressed / compressed bytes past which a document counts as a bomb.  Print formats compress
far less (PDF and JPEG are compressed already; PWG raster is run-length encoded)."""
MAX_MEMBERS = 64
"""gzip members in one document (RFC 1952 section 2.2 allows a series; files made by ``cat a.gz b.gz``)."""
YIELD_EVERY = 4 * 1024 * 1024
"""Decompressed bytes between two turns given to the event loop."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS


def _zlib_header(head: bytes) -> bool:
    """``head`` starts an RFC 1950 stream: CM 8 (deflate), CINFO <= 7, no preset dictionary, FCHECK right."""
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and not flg & 0x20 and (cmf << 8 | flg) % 31 == 0


class Inflater:
    """One compressed document: :meth:`feed` it the bytes as they come, then call :meth:`finish`."""

    def __init__(self, compression: str, *, max_output: int, max_ratio: int = MAX_RATIO,
                 grace: int = RATIO_GRACE, step: int = OUTPUT_STEP) -> None:
        if compression not in (DEFLATE, GZIP):
            raise ValueError(f"no decompressor for {compression!r}")
        self.compression = compression
        self.max_output = max_output
        self.max_ratio = max_ratio
        self.grace = grace
        self.step = step
        self.consumed = 0
        """Compressed bytes zlib has used so far."""
        self.produced = 0
        """Decompressed bytes returned so far."""
        self.members = 0
        self._head = b""  # deflate: the first bytes, until there are two to tell raw from zlib
        self._obj: zlib._Decompress | None = None

    def _start(self, wbits: int) -> zlib._Decompress:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise IppCompressionError(f"the {self.compression} document has more than {MAX_MEMBERS} members")
        self._obj = zlib.decompressobj(wbits)
        return self._obj

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed pieces ``data`` yields (each at most :attr:`step` bytes; some may be empty)."""
        if self.compression == DEFLATE and self._obj is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._start(_ZLIB_WBITS if _zlib_header(data) else _RAW_WBITS)
        view = memoryview(data)
        for at in range(0, len(view), INPUT_STEP):
            yield from self._inflate(bytes(view[at:at + INPUT_STEP]))

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        while data:
            obj = self._obj
            if obj is None or obj.eof:
                if obj is not None and self.compression == DEFLATE:
                    raise IppCompressionError(f"{len(data)} bytes follow the end of the {self.compression} stream")
                obj = self._start(_GZIP_WBITS)
            try:
                piece = obj.decompress(data, self.step)
                rest = obj.unused_data if obj.eof else obj.unconsumed_tail
                while not obj.eof and len(piece) == self.step and not rest:
                    # The output filled up exactly: zlib may hold more for this input.
                    self._count(len(data), piece)
                    yield piece
                    data = b""
                    piece = obj.decompress(b"", self.step)
                    rest = obj.unused_data if obj.eof else obj.unconsumed_tail
            except zlib.error as exc:
                raise IppCompressionError(f"the {self.compression} document data is corrupt ({exc})") from None
            self._count(len(data) - len(rest), piece)
            yield piece
            data = rest

    def _count(self, used: int, piece: bytes) -> None:
        self.consumed += used
        self.produced += len(piece)
        if self.produced > self.max_output:
            raise DocumentTooLarge(f"the decompressed document is over the {self.max_output}-byte cap")
        if self.produced > self.grace and self.produced > self.max_ratio * max(self.consumed, 1):
            raise DocumentTooLarge(
                f"the {self.compression} document expands more than {self.max_ratio}:1 (a decompression bomb)")

    def finish(self) -> None:
        """The input ended: refuse a stream cut short (nothing at all is for the caller to judge)."""
        if self._head:
            raise IppCompressionError(f"the {self.compression} document data is truncated")
        if self._obj is not None and not self._obj.eof:
            raise IppCompressionError(f"the {self.compression} document data is truncated")


async def decompressed(
    chunks: AsyncIterator[bytes], compression: str, *, max_output: int
) -> AsyncGenerator[bytes, None]:
    """``chunks`` decompressed as they arrive; ``none`` passes them through."""
    if compression == NONE:
        async for chunk in chunks:
            yield chunk
        return
    inflater = Inflater(compression, max_output=max_output)
    turn_at = YIELD_EVERY
    async for chunk in chunks:
        for piece in inflater.feed(chunk):
            if piece:
                yield piece
            if inflater.produced >= turn_at:
                turn_at = inflater.produced + YIELD_EVERY
                await asyncio.sleep(0)  # a highly compressed chunk: let other requests run
    inflater.finish()


def mark_name(stem: str, compression: str) -> str:
    """A spool file's name (before its extension) that records the compression the client sent.

    The job store has no column for it, so it travels with the job in ``document_file``:
    ``<stem>-gzip.pdf``.  The stem is the spool's ``job-<host>~<pid>~<hex>``; the mark
    adds no ``~`` (the spool's sweep splits on it) and no ``.`` (the extension follows).
    """
    return stem if compression == NONE else f"{stem}-{compression}"


def compression_of(file_name: str | None) -> str:
    """The compression :func:`mark_name` recorded in a spool file's name; ``none`` without a mark."""
    if not file_name:
        return NONE
    stem = file_name.rsplit("~", 1)[-1].split(".", 1)[0]
    mark = stem.rsplit("-", 1)[-1] if "-" in stem else NONE
    return mark if mark in (DEFLATE, GZIP) else NONE
