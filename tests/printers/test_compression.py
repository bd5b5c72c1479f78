"""The streaming decompressor (printers/compression.py) and the spool that uses it, on real files."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import PayloadTooLarge
from printers import compression
from printers.compression import (
    DEFLATE,
    GZIP,
    MAX_MEMBERS,
    NONE,
    OUTPUT_STEP,
    Inflater,
    compression_of,
    decompressed,
    mark_name,
)
from printers.errors import DocumentTooLarge, IppCompressionError, IppDocumentFormatError
from printers.spool import JOB_PREFIX, Spool
from tests.printers.samples import minimal_jpeg, minimal_pdf

MiB = 1024 * 1024


def packed(data: bytes, how: str, *, level: int = 6, wbits: int | None = None) -> bytes:
    """``data`` as a gzip (RFC 1952), raw deflate (RFC 1951) or zlib (RFC 1950, wbits=15) stream."""
    if wbits is None:
        wbits = 31 if how == GZIP else -15
    obj = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return obj.compress(data) + obj.flush()


def split(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    out, at = [], 0
    for size in sizes:
        if at >= len(data):
            break
        out.append(data[at:at + size])
        at += size
    if at < len(data):
        out.append(data[at:])
    return out


def run(inflater: Inflater, chunks: Iterable[bytes]) -> bytes:
    out = bytearray()
    for chunk in chunks:
        for piece in inflater.feed(chunk):
            assert len(piece) <= inflater.step
            out += piece
    inflater.finish()
    return bytes(out)


def zeros_gzip(total: int, *, prefix: bytes = b"", how: str = GZIP, block: int = MiB) -> bytes:
    """``prefix`` and ``total`` zero bytes as a gzip (or raw deflate) stream, made a block at a time.

    One block of zeros is compressed once with a full flush (byte-aligned, no reference to
    earlier data, RFC 1951 section 3.2.3) and repeated; ``total`` bytes are never in memory.
    """
    obj = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = obj.compress(prefix) + obj.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(block)
    body = obj.compress(zeros) + obj.flush(zlib.Z_FULL_FLUSH)
    tail = obj.flush()
    count = total // block
    if how == DEFLATE:
        return head + body * count + tail
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    size = (len(prefix) + count * block) % 2**32
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # RFC 1952 section 2.3: no flags, OS unknown
    return gzip_header + head + body * count + tail + crc.to_bytes(4, "little") + size.to_bytes(4, "little")


def test_the_bomb_helper_makes_valid_streams() -> None:
    for how in (GZIP, DEFLATE):
        wire = zeros_gzip(3 * 4096, prefix=b"%PDF-1.4\n", how=how, block=4096)
        assert run(Inflater(how, max_output=MiB), [wire]) == b"%PDF-1.4\n" + bytes(3 * 4096)
    assert gzip.decompress(zeros_gzip(5 * 4096, block=4096)) == bytes(5 * 4096)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# -- the pure decompressor --------------------------------------------------------------------------

@pytest.mark.parametrize("how", [GZIP, DEFLATE])
def test_round_trip_in_any_chunking(how: str) -> None:
    doc = minimal_pdf(3) + os.urandom(5000) + bytes(300_000)
    wire = packed(doc, how)
    for sizes in ([len(wire)], [1] * 50 + [len(wire)], [7, 1, 3000, 2]):
        assert run(Inflater(how, max_output=10 * MiB), split(wire, sizes)) == doc


@settings(max_examples=60, deadline=None)
@given(doc=st.binary(max_size=20_000), how=st.sampled_from([GZIP, DEFLATE]),
       cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12), level=st.integers(0, 9))
def test_any_document_any_chunking(doc: bytes, how: str, cuts: list[int], level: int) -> None:
    wire = packed(doc, how, level=level)
    assert run(Inflater(how, max_output=MiB, step=4096), split(wire, cuts)) == doc


def test_deflate_also_takes_a_zlib_wrapped_stream() -> None:
    """RFC 8011 'deflate' is RFC 1951; a zlib (RFC 1950) header is recognised and accepted too."""
    doc = minimal_pdf(2)
    assert run(Inflater(DEFLATE, max_output=MiB), [packed(doc, DEFLATE, wbits=15)]) == doc
    assert run(Inflater(DEFLATE, max_output=MiB), split(packed(doc, DEFLATE, wbits=15), [1, 1, 5])) == doc


def test_cups_window_of_2k_is_read() -> None:
    """CUPS writes deflate with an 11-bit window (deflateInit2 -11) and gzip with 27."""
    doc = minimal_pdf(4) * 20
    assert run(Inflater(DEFLATE, max_output=MiB), [packed(doc, DEFLATE, wbits=-11)]) == doc
    assert run(Inflater(GZIP, max_output=MiB), [packed(doc, GZIP, wbits=27)]) == doc


def test_gzip_members_are_concatenated_up_to_a_limit() -> None:
    parts = [b"first part ", b"second part ", b"third"]
    wire = b"".join(gzip.compress(p) for p in parts)
    assert run(Inflater(GZIP, max_output=MiB), split(wire, [5, 30, 2])) == b"".join(parts)
    many = gzip.compress(b"") * (MAX_MEMBERS + 1)
    with pytest.raises(IppCompressionError, match="members"):
        run(Inflater(GZIP, max_output=MiB), [many])


@pytest.mark.parametrize("how", [GZIP, DEFLATE])
def test_corrupt_truncated_or_trailing_data_is_a_compression_error(how: str) -> None:
    wire = packed(minimal_pdf(2), how)
    broken = bytearray(wire)
    broken[len(broken) // 2] ^= 0xFF
    broken[len(broken) // 2 + 1] ^= 0x5A
    bad_ones = [wire[: len(wire) // 2], b"this is not compressed at all, not even a bit"]
    if how == GZIP:  # RFC 1952 has a CRC-32; raw deflate (RFC 1951) has no check, a flipped bit may decode
        bad_ones.append(bytes(broken))
    for bad in bad_ones:
        with pytest.raises(IppCompressionError):
            run(Inflater(how, max_output=MiB), [bad])
    if how == DEFLATE:
        with pytest.raises(IppCompressionError, match="follow the end"):
            run(Inflater(how, max_output=MiB), [wire + b"junk"])
    else:
        with pytest.raises(IppCompressionError):
            run(Inflater(how, max_output=MiB), [wire + b"junk"])
    assert IppCompressionError.ipp_status == 0x0410  # client-error-compression-error (RFC 8011 13.1.4.17)


def test_one_byte_of_deflate_is_truncated_and_nothing_at_all_is_for_the_spool_to_judge() -> None:
    with pytest.raises(IppCompressionError, match="truncated"):
        run(Inflater(DEFLATE, max_output=MiB), [b"\x78"])
    assert run(Inflater(GZIP, max_output=MiB), []) == b""


def test_a_bomb_stops_on_the_ratio_long_before_the_cap() -> None:
    wire = zeros_gzip(1024 * MiB)
    assert len(wire) < 2 * MiB
    inflater = Inflater(GZIP, max_output=1024 * MiB)
    with pytest.raises(DocumentTooLarge, match="expands"):
        run(inflater, split(wire, [64 * 1024] * 40))
    assert inflater.produced <= compression.RATIO_GRACE + 2 * OUTPUT_STEP
    assert isinstance(DocumentTooLarge("x"), PayloadTooLarge)  # client-error-request-entity-too-large


def test_the_cap_applies_to_the_decompressed_bytes() -> None:
    doc = os.urandom(300_000)  # incompressible: the ratio never trips
    with pytest.raises(DocumentTooLarge, match="cap"):
        run(Inflater(GZIP, max_output=200_000), [packed(doc, GZIP)])
    assert run(Inflater(GZIP, max_output=300_000), [packed(doc, GZIP)]) == doc


def test_one_small_chunk_never_becomes_one_large_buffer() -> None:
    wire = zeros_gzip(64 * MiB)
    inflater = Inflater(GZIP, max_output=1024 * MiB, max_ratio=10**9)  # no ratio: only the step bounds pieces
    sizes = [len(piece) for piece in inflater.feed(wire)]
    inflater.finish()
    assert sum(sizes) == 64 * MiB and max(sizes) <= OUTPUT_STEP


def test_unknown_compression_has_no_inflater() -> None:
    with pytest.raises(ValueError):
        Inflater("compress", max_output=1)


async def test_the_async_stream_passes_none_through_and_inflates_the_others() -> None:
    doc = minimal_jpeg(3)
    got = [c async for c in decompressed(stream([doc[:5], doc[5:]]), NONE, max_output=10)]
    assert got == [doc[:5], doc[5:]]  # none: not even the cap (the spool counts)
    got = [c async for c in decompressed(stream(split(packed(doc, GZIP), [3, 3])), GZIP, max_output=MiB)]
    assert b"".join(got) == doc


def test_spool_names_carry_the_compression() -> None:
    stem = f"{JOB_PREFIX}host-a.example~123~{'ab' * 12}"
    for how in (NONE, GZIP, DEFLATE):
        name = mark_name(stem, how) + ".pdf"
        assert "~" not in name.rsplit("~", 1)[1] and name.count("~") == 2
        assert compression_of(name) == how
    assert compression_of(None) == compression_of("job-0123abcd.pdf") == compression_of("job-h~1~ab.bin") == NONE


# -- the spool -------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", [GZIP, DEFLATE])
async def test_spool_stores_the_decompressed_document_and_sniffs_it(tmp_path: Path, how: str) -> None:
    spool = Spool(tmp_path, 10 * MiB)
    jpeg = minimal_jpeg(1)
    got = await spool.receive(stream(split(packed(jpeg, how), [2, 2, 2])), declared="application/octet-stream",
                              compression=how)
    assert got.detected_format == "image/jpeg" and got.size == len(jpeg) and got.compression == how
    assert spool.path(got.file_name).read_bytes() == jpeg
    assert compression_of(got.file_name) == how and got.file_name.endswith(".jpg")


async def test_spool_refusals_leave_no_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 32 * MiB)
    with pytest.raises(DocumentTooLarge):
        await spool.receive(stream(split(zeros_gzip(1024 * MiB, prefix=b"%PDF-1.7\n"), [256 * 1024] * 8)),
                            declared="application/pdf", compression=GZIP)
    with pytest.raises(IppCompressionError):
        await spool.receive(stream([packed(minimal_pdf(), GZIP)[:-9]]), declared="application/pdf",
                            compression=GZIP)
    with pytest.raises(IppDocumentFormatError, match="send compression gzip"):  # gzip bytes, no compression
        await spool.receive(stream([packed(minimal_pdf(), GZIP)]), declared="application/pdf")
    assert files(tmp_path) == []
