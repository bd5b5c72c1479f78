"""Compressed documents (IPP ``compression``) over real HTTP on loopback, with real IPP bytes.

The document is decompressed while it streams into the spool; the platform gets the
decompressed document.  A decompression bomb is refused after a few MB, whatever the
per-job cap, without a large file or a memory jump.  CUPS's ipptool, when installed,
sends the same jobs the way every CUPS client does (attributes plain, document
compressed in-band, no Content-Encoding header).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import shutil
import time
import zlib
from pathlib import Path

import aiohttp
import pytest
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from printers import spool as spool_module
from printers.errors import IPP_COMPRESSION_ERROR, IPP_COMPRESSION_NOT_SUPPORTED
from printers.ipp import Attribute, GroupTag, ValueTag
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.print_support import (
    ALICE,
    IPPTOOL,
    PrintBridge,
    PrintBridgeFactory,
    ipp_post,
    ipp_request,
    job_value,
    make_print_bridge,
    minimal_pdf,
)
from tests.printers.samples import minimal_jpeg
from tests.printers.test_compression import packed, zeros_gzip

__all__ = ["make_print_bridge"]

PDF = minimal_pdf(3)
MiB = 1024 * 1024


def compression(value: str) -> Attribute:
    return Attribute.of("compression", ValueTag.KEYWORD, value)


def print_job(data: bytes, how: str, fmt: str = "application/pdf") -> bytes:
    return ipp_request(Op.PRINT_JOB, Attribute.of("job-name", ValueTag.NAME, f"{how} job"),
                       Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, fmt), compression(how), data=data)


async def job_attributes(bridge: PrintBridge, job_id: int) -> dict[str, object]:
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_JOB_ATTRIBUTES, Attribute.of("job-id", ValueTag.INTEGER,
                                                                                      job_id)), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    return {name: job_value(reply, name) for name in ("compression-supplied", "document-format-supplied",
                                                      "document-format-detected", "job-k-octets")}


def dir_bytes(path: Path) -> int:
    total = 0
    if path.is_dir():
        for entry in path.iterdir():
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                pass
    return total


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_printer_announces_gzip_and_deflate(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_PRINTER_ATTRIBUTES))
    assert reply is not None
    attr = reply.find(GroupTag.PRINTER, "compression-supported")
    assert attr is not None and attr.tag == ValueTag.KEYWORD
    assert sorted(v.value for v in attr.values) == ["deflate", "gzip", "none"]  # type: ignore[type-var]


@pytest.mark.parametrize("how", ["gzip", "deflate"])
async def test_compressed_pdf_is_delivered_byte_identical(make_print_bridge: PrintBridgeFactory, how: str) -> None:
    bridge = await make_print_bridge()
    _, reply = await ipp_post(bridge, print_job(packed(PDF, how), how), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK, reply
    job_id = int(job_value(reply, "job-id"))  # type: ignore[call-overload]
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["document_format"] == "application/pdf"
    assert bridge.delivered_bytes(manifest) == PDF
    assert await job_attributes(bridge, job_id) == {
        "compression-supplied": how, "document-format-supplied": "application/pdf",
        "document-format-detected": "application/pdf", "job-k-octets": (len(PDF) + 1023) // 1024}


async def test_uncompressed_jobs_still_say_none(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    for how in ("none", None):
        extra = () if how is None else (compression(how),)
        _, reply = await ipp_post(bridge, ipp_request(Op.PRINT_JOB, *extra, data=PDF), auth=ALICE)
        assert reply is not None and reply.code == IppStatus.OK
        attrs = await job_attributes(bridge, int(job_value(reply, "job-id")))  # type: ignore[call-overload]
        assert attrs["compression-supplied"] == "none"


async def test_gzipped_jpeg_sent_as_octet_stream_is_detected_as_jpeg(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    jpeg = minimal_jpeg(3)
    _, reply = await ipp_post(bridge, print_job(gzip.compress(jpeg), "gzip", "application/octet-stream"), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK, reply
    attrs = await job_attributes(bridge, int(job_value(reply, "job-id")))  # type: ignore[call-overload]
    assert attrs["document-format-detected"] == "image/jpeg"
    assert attrs["document-format-supplied"] == "application/octet-stream"
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["document_format"] == "image/jpeg" and bridge.delivered_bytes(manifest) == jpeg


async def test_create_job_then_send_document_compressed(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    _, reply = await ipp_post(bridge, ipp_request(Op.CREATE_JOB, compression("gzip")), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK  # a value it takes: fine, the document says
    job_id = int(job_value(reply, "job-id"))  # type: ignore[call-overload]
    send = ipp_request(Op.SEND_DOCUMENT, Attribute.of("job-id", ValueTag.INTEGER, job_id),
                       Attribute.of("last-document", ValueTag.BOOLEAN, True),
                       Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"),
                       compression("deflate"), data=packed(PDF, "deflate"))
    _, reply = await ipp_post(bridge, send, auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK, reply
    (manifest,) = await bridge.wait_delivered(1)
    assert bridge.delivered_bytes(manifest) == PDF
    assert (await job_attributes(bridge, job_id))["compression-supplied"] == "deflate"


async def test_unknown_compression_is_not_supported_on_every_operation(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    for value in ("compress", "zstd", "GZIP"):
        for op in (Op.PRINT_JOB, Op.VALIDATE_JOB, Op.CREATE_JOB):
            _, reply = await ipp_post(bridge, ipp_request(op, compression(value), data=gzip.compress(PDF)), auth=ALICE)
            assert reply is not None and reply.code == IPP_COMPRESSION_NOT_SUPPORTED == 0x040F, (op, value)
            bad = reply.find(GroupTag.UNSUPPORTED, "compression")
            assert bad is not None and bad.first == value
    _, reply = await ipp_post(bridge, ipp_request(Op.CREATE_JOB), auth=ALICE)
    assert reply is not None
    send = ipp_request(Op.SEND_DOCUMENT, Attribute.of("job-id", ValueTag.INTEGER, int(job_value(reply, "job-id"))),  # type: ignore[call-overload]
                       Attribute.of("last-document", ValueTag.BOOLEAN, True), compression("compress"), data=PDF)
    _, reply = await ipp_post(bridge, send, auth=ALICE)
    assert reply is not None and reply.code == IPP_COMPRESSION_NOT_SUPPORTED
    assert reply.find(GroupTag.UNSUPPORTED, "compression") is not None
    _, reply = await ipp_post(bridge, ipp_request(Op.VALIDATE_JOB, compression("deflate")), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK


async def test_corrupt_or_truncated_streams_are_compression_errors(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    wire = bytearray(gzip.compress(PDF))
    wire[len(wire) // 2] ^= 0xFF  # the CRC-32 (or the Huffman codes) catch it
    for bad, how in ((bytes(wire), "gzip"), (gzip.compress(PDF)[:-12], "gzip"), (b"%PDF-1.4 not packed", "gzip"),
                     (packed(PDF, "deflate")[:40], "deflate")):
        _, reply = await ipp_post(bridge, print_job(bad, how), auth=ALICE)
        assert reply is not None and reply.code == IPP_COMPRESSION_ERROR == 0x0410, (bad[:20], reply)
    spool = bridge.config.printer.spool_dir  # type: ignore[union-attr]
    assert list(spool.iterdir()) == []
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_JOBS, Attribute.of("which-jobs", ValueTag.KEYWORD, "all")),
                              auth=ALICE)
    assert reply is not None and not reply.groups_of(GroupTag.JOB)


async def test_a_gzip_bomb_is_refused_quickly_without_a_large_file_or_memory(
    make_print_bridge: PrintBridgeFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bridge = await make_print_bridge(printer={"max_job_mb": 2048})  # the cap alone would let 1 GB through
    bomb = zeros_gzip(1024 * MiB, prefix=b"%PDF-1.7\n")  # 1 GiB of zeros behind a PDF header
    assert len(bomb) < 4 * MiB
    body = print_job(bomb, "gzip")
    spool = bridge.config.printer.spool_dir  # type: ignore[union-attr]
    peak = {"spool": 0, "outbox": 0, "rss": 0, "written": 0}
    write_all = spool_module._write_all

    def counting(fd: int, data: bytes | bytearray) -> None:  # every byte that goes into a spool file
        peak["written"] += len(data)
        write_all(fd, data)

    monkeypatch.setattr(spool_module, "_write_all", counting)
    before = rss()

    async def watch() -> None:
        while True:
            peak["spool"] = max(peak["spool"], dir_bytes(spool))
            peak["outbox"] = max(peak["outbox"], dir_bytes(bridge.outbox))
            peak["rss"] = max(peak["rss"], rss() - before)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    try:
        status, reply = await ipp_post(bridge, body, auth=ALICE)
    finally:
        watcher.cancel()
    elapsed = time.monotonic() - started
    print(f"bomb of {len(bomb)} bytes refused in {elapsed:.3f} s; {peak['written']} B written to the spool;"
          f" peaks: spool dir {peak['spool']} B, outbox {peak['outbox']} B, RSS +{peak['rss'] // 1024} KiB")
    assert status == 200 and reply is not None and reply.code == IppStatus.ERROR_REQUEST_ENTITY, reply  # 0x0408
    assert elapsed < 5, elapsed
    assert peak["written"] < 16 * MiB and peak["spool"] < 16 * MiB and peak["outbox"] == 0, peak
    assert peak["rss"] < 48 * MiB, peak
    assert list(spool.iterdir()) == [] and bridge.manifests() == []
    _, reply = await ipp_post(bridge, ipp_request(Op.PRINT_JOB, data=PDF), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK  # the printer is fine afterwards


async def test_the_per_job_cap_counts_decompressed_bytes(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge(printer={"max_job_mb": 1})
    doc = PDF + os.urandom(MiB)  # incompressible: the ratio never trips, the cap does
    _, reply = await ipp_post(bridge, print_job(gzip.compress(doc), "gzip"), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.ERROR_REQUEST_ENTITY
    assert list(bridge.config.printer.spool_dir.iterdir()) == []  # type: ignore[union-attr]


async def test_http_content_encoding_is_refused(make_print_bridge: PrintBridgeFactory) -> None:
    """aiohttp would inflate a Content-Encoding body itself, capped only by the per-job size: 415 instead."""
    bridge = await make_print_bridge()
    KNOWN_SECRETS.add(ALICE[1])
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    for coding in ("gzip", "deflate", "br"):
        body = zlib.compress(ipp_request(Op.PRINT_JOB, data=PDF)) if coding != "gzip" else gzip.compress(
            ipp_request(Op.PRINT_JOB, data=PDF))
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{bridge.port}/ipp/print", data=body,
            headers={"Content-Type": "application/ipp", "Content-Encoding": coding, "Authorization": f"Basic {token}"},
        ) as resp:
            if coding == "br" and resp.status == 400:
                continue  # without Brotli installed aiohttp itself refuses the coding before the handler
            assert resp.status == 415 and resp.headers["Accept-Encoding"] == "identity", coding
    await asyncio.sleep(0.1)
    assert bridge.manifests() == []


async def test_content_encoding_is_refused_before_100_continue(make_print_bridge: PrintBridgeFactory) -> None:
    """With Expect: 100-continue the 415 comes instead of 100 Continue: the client never sends the body."""
    bridge = await make_print_bridge()
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    try:
        writer.write(f"POST /ipp/print HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\nContent-Type: application/ipp\r\n"
                     f"Content-Encoding: gzip\r\nAuthorization: Basic {token}\r\nExpect: 100-continue\r\n"
                     "Content-Length: 100000\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 415"), status_line
    assert bridge.trust_calls() == 0  # refused before the credentials were checked


SUITES = Path("/usr/share/cups/ipptool")


@pytest.mark.skipif(IPPTOOL is None or not (SUITES / "print-job-gzip.test").is_file(),
                    reason="ipptool is not installed (Debian cups-ipp-utils)")
@pytest.mark.parametrize("how", ["gzip", "deflate"])
async def test_ipptool_prints_compressed(make_print_bridge: PrintBridgeFactory, tmp_path: Path, how: str) -> None:
    """ipptool's COMPRESSION: the document compressed in-band after the attributes, as CUPS sends it."""
    suite = SUITES / f"print-job-{how}.test"
    bridge = await make_print_bridge()
    work = tmp_path / "ipptool"
    work.mkdir()
    shutil.copy(suite, work / suite.name)
    (work / "doc.pdf").write_bytes(PDF)
    assert IPPTOOL is not None
    proc = await asyncio.create_subprocess_exec(
        IPPTOOL, "-t", "-C", "-d", "filename=doc.pdf", "-d", "filetype=application/pdf",
        bridge.uri_for(*ALICE), suite.name, cwd=work, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode("utf-8", "replace")
    (manifest,) = await bridge.wait_delivered(1)
    assert bridge.delivered_bytes(manifest) == PDF
