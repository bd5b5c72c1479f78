"""The spool: documents stream to disk in chunks and are fsynced before a job is accepted.

A document is written to ``.part-<host>~<pid>~<random>`` in the spool directory, counted
against the per-job cap as it arrives, checked against its declared format from its first
bytes, then fsynced, renamed to ``job-<host>~<pid>~<random><ext>`` and the directory fsynced.
Only after that does the job row commit.  A compressed document (``compression`` gzip or
deflate) is decompressed on the way in (:mod:`printers.compression`): the cap, the format
check and the file are all about the decompressed bytes, and the name records the
compression the client used (``job-<host>~<pid>~<random>-gzip<ext>``).

The directory may be shared by every instance (the same path on shared storage; see
docs/deployment.md), so cleaning it must never touch another live instance's upload or a file
whose job row is about to commit.  :meth:`Spool.sweep` (at start-up and every few minutes)
removes a ``.part`` file (a transfer cut short) or a ``job-`` file that no unfinished job
refers to (a crash between rename and commit, or between a job's final commit and the removal
of its document) only when the process that wrote it is known dead - it ran on this host and
its pid is gone - or when the file has not changed for :data:`ABANDONED_AFTER` (a writer on
another host: an upload writes continuously, and a listener drops a connection idle for a
minute).  Names without the writer's tag (made before the spool was shared) count as this
host's dead processes'.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from printers.compression import NONE, decompressed, mark_name
from printers.errors import DocumentTooLarge, IppDocumentFormatError, IppDocumentFormatNotSupported, IppOperationError
from printers.formats import EXTENSIONS, OCTET_STREAM, SNIFF_BYTES, compressed_format, sniff

log = logging.getLogger(__name__)

PART_PREFIX = ".part-"
JOB_PREFIX = "job-"
ABANDONED_AFTER = 15 * 60.0
"""Seconds after its last change that a file of a writer on another host counts as abandoned."""
SYNC_EVERY = 8 * 1024 * 1024
"""While a document arrives, flush it to disk every this many bytes in a worker thread, so
the fsync before successful-ok only waits for the tail (disk writeback overlaps the network)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SpooledDocument:
    file_name: str
    """Name inside the spool directory."""
    size: int
    """Bytes of the document as stored (decompressed)."""
    detected_format: str
    compression: str = NONE
    """What the client sent (also recorded in ``file_name``)."""


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
        self._host = socket.gethostname().replace("~", "-")

    def prepare(self) -> None:
        """Create the directory (owner only)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _tag(self) -> str:
        return f"{self._host}~{os.getpid()}~"

    def _writer_gone(self, name: str, prefix: str) -> bool:
        """The file's writer ran on this host and is no longer running (untagged names: yes)."""
        parts = name[len(prefix):].split("~")
        if len(parts) != 3:
            return True
        host, pid = parts[0], parts[1]
        if host != self._host or not pid.isdigit():
            return False
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _sweep(self, referenced: set[str], now: float) -> list[str]:
        removed = []
        for entry in self.directory.iterdir():
            name = entry.name
            if name.startswith(PART_PREFIX):
                prefix = PART_PREFIX
            elif name.startswith(JOB_PREFIX) and name not in referenced:
                prefix = JOB_PREFIX
            else:
                continue
            try:
                idle = now - entry.stat().st_mtime
            except FileNotFoundError:
                continue
            if self._writer_gone(name, prefix) or idle > ABANDONED_AFTER:
                entry.unlink(missing_ok=True)
                removed.append(name)
        return removed

    async def sweep(self, referenced: set[str]) -> int:
        """Remove partial transfers and documents no unfinished job needs, of writers known to be gone.

        ``referenced`` is read from the store *before* the directory is listed: a job committed
        after that read was spooled by a live process, whose files are never removed here.
        """
        removed = await asyncio.to_thread(self._sweep, referenced, time.time())
        for name in removed:
            log.info("spool: removed %s, which no unfinished job needs", name)
        return len(removed)

    def path(self, file_name: str) -> Path:
        return self.directory / file_name

    def remove(self, file_name: str | None) -> None:
        if file_name:
            (self.directory / file_name).unlink(missing_ok=True)

    async def receive(
        self, chunks: AsyncIterator[bytes], *, declared: str, compression: str = NONE
    ) -> SpooledDocument:
        """Stream ``chunks`` to a new spool file; raise the IPP error if it is refused.

        ``declared`` is the (lower-case) document-format the client sent;
        application/octet-stream means "find out from the bytes".  ``compression`` is the
        checked ``compression`` keyword: the file gets the decompressed document.
        """
        document = decompressed(chunks, compression, max_output=self.max_job_bytes)
        try:
            return await self._receive(document, declared=declared, compression=compression)
        finally:
            await document.aclose()  # refused midway: the decompressor's generator ends here, not in the GC

    async def _receive(self, chunks: AsyncIterator[bytes], *, declared: str, compression: str) -> SpooledDocument:
        part = self.directory / f"{PART_PREFIX}{self._tag()}{secrets.token_hex(8)}"
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
                    detected = _detect(bytes(head), declared, compression)
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
                detected = _detect(bytes(head), declared, compression)
                _write_all(fd, head)
            ext = EXTENSIONS.get(detected, ".bin")
            stem = mark_name(f"{JOB_PREFIX}{self._tag()}{secrets.token_hex(12)}", compression)
            final = self.directory / f"{stem}{ext}"
            if syncing is not None:
                await syncing
            await asyncio.to_thread(os.fsync, fd)
            closed = True
            os.close(fd)
            os.replace(part, final)
            await asyncio.to_thread(_fsync_dir, self.directory)
            done = True
            return SpooledDocument(file_name=final.name, size=size, detected_format=detected,
                                   compression=compression)
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


def _detect(head: bytes, declared: str, compression: str) -> str:
    """The format of the (decompressed) document's first bytes, checked against the declared one."""
    found = sniff(head)
    if found is None and compression == NONE and (packed := compressed_format(head)) is not None:
        hint = f" (it is {packed}-compressed: send compression {packed})"
    else:
        hint = ""
    if declared == OCTET_STREAM:
        if found is None:
            raise IppDocumentFormatNotSupported(f"the document is neither PDF, JPEG nor PWG raster{hint}")
        return found
    if found != declared:
        raise IppDocumentFormatError(f"the document is not {declared}{hint}")
    return found
