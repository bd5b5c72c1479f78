"""The spool: documents stream to disk in chunks and are fsynced before a job is accepted.

A document is written to ``.part-<random>`` in the spool directory, counted
against the per-job cap as it arrives, checked against its declared format
from its first bytes, then fsynced, renamed to ``job-<random><ext>`` and the
directory fsynced.  Only after that does the job row commit.  At start-up,
``.part`` files (a transfer cut short) and files no unfinished job refers to
(a crash between rename and commit, or between a job's final commit and the
removal of its document) are removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from printers.errors import DocumentTooLarge, IppDocumentFormatError, IppDocumentFormatNotSupported, IppOperationError
from printers.formats import EXTENSIONS, OCTET_STREAM, SNIFF_BYTES, sniff

log = logging.getLogger(__name__)

PART_PREFIX = ".part-"
SYNC_EVERY = 8 * 1024 * 1024
"""While a document arrives, flush it to disk every this many bytes in a worker thread, so
the fsync before successful-ok only waits for the tail (disk writeback overlaps the network)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SpooledDocument:
    file_name: str
    """Name inside the spool directory."""
    size: int
    detected_format: str


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: Path, max_job_bytes: int) -> None:
        self.directory = directory
        self.max_job_bytes = max_job_bytes

    def prepare(self, referenced: set[str]) -> None:
        """Create the directory; remove partial transfers and files no unfinished job needs."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for entry in self.directory.iterdir():
            if entry.name.startswith(PART_PREFIX):
                log.info("spool: removing %s left by an interrupted transfer", entry.name)
                entry.unlink(missing_ok=True)
            elif entry.name.startswith("job-") and entry.name not in referenced:
                log.info("spool: removing %s, which no unfinished job needs", entry.name)
                entry.unlink(missing_ok=True)

    def path(self, file_name: str) -> Path:
        return self.directory / file_name

    def remove(self, file_name: str | None) -> None:
        if file_name:
            (self.directory / file_name).unlink(missing_ok=True)

    async def receive(
        self, chunks: AsyncIterator[bytes], *, declared: str
    ) -> SpooledDocument:
        """Stream ``chunks`` to a new spool file; raise the IPP error if it is refused.

        ``declared`` is the (lower-case) document-format the client sent;
        application/octet-stream means "find out from the bytes".
        """
        part = self.directory / f"{PART_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        size = 0
        head = bytearray()
        detected: str | None = None
        closed = done = False
        syncing: asyncio.Future[None] | None = None
        synced_at = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_job_bytes:
                    raise DocumentTooLarge(f"document over the {self.max_job_bytes}-byte cap")
                if detected is None:
                    head += chunk
                    if len(head) < SNIFF_BYTES:
                        continue
                    detected = _detect(bytes(head), declared)
                    _write_all(fd, head)
                    head.clear()
                else:
                    _write_all(fd, chunk)
                if size - synced_at >= SYNC_EVERY and (syncing is None or syncing.done()):
                    synced_at = size
                    syncing = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, fd))
            if detected is None:
                if not head:
                    raise IppOperationError("the request carries no document data")
                detected = _detect(bytes(head), declared)
                _write_all(fd, head)
            final = self.directory / f"job-{secrets.token_hex(12)}{EXTENSIONS.get(detected, '.bin')}"
            if syncing is not None:
                await syncing
            await asyncio.to_thread(os.fsync, fd)
            closed = True
            os.close(fd)
            os.replace(part, final)
            await asyncio.to_thread(_fsync_dir, self.directory)
            done = True
            return SpooledDocument(file_name=final.name, size=size, detected_format=detected)
        finally:
            if syncing is not None and not syncing.done():
                await asyncio.wait([syncing])  # the thread still uses fd: never close it under it
            if not closed:
                os.close(fd)
            if not done:
                part.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _detect(head: bytes, declared: str) -> str:
    found = sniff(head)
    if declared == OCTET_STREAM:
        if found is None:
            raise IppDocumentFormatNotSupported("the document is neither PDF, JPEG nor PWG raster")
        return found
    if found != declared:
        raise IppDocumentFormatError(f"the document is not {declared}")
    return found
