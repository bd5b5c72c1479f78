"""IPP Everywhere additions, pure: PWG raster recognition, page-ranges and overrides, the icons' PNG bytes."""

from __future__ import annotations

import struct
import zlib

from printers.capabilities import OVERRIDE_MEMBERS, check_job_template
from printers.formats import PWG_RASTER, sniff
from printers.icons import ICON_SIZES, encode_png, icon_uris, make_icons
from printers.ipp import Attribute, Collection, IntRange, ValueTag
from tests.flows.print_support import pwg_raster
from tests.printers.samples import minimal_pdf


def ranges(*spans: tuple[int, int]) -> Attribute:
    return Attribute.of("page-ranges", ValueTag.RANGE_OF_INTEGER, *(IntRange(lower=a, upper=b) for a, b in spans))


def test_pwg_raster_is_recognised_by_its_sync_word() -> None:
    assert sniff(pwg_raster(width_pt=595, height_pt=842, colour="sgray_8")) == PWG_RASTER
    assert sniff(b"RaS3" + bytes(1796)) is None  # CUPS raster v3, not PWG
    assert sniff(b"2SaR" + bytes(1796)) is None  # little-endian CUPS raster
    assert sniff(b"RaS2" + minimal_pdf(1)[:100]) == PWG_RASTER  # the leading sync word decides


def test_page_ranges_must_ascend_without_overlap() -> None:
    good = ranges((1, 2), (4, 4), (7, 9))
    kept, unsupported = check_job_template((good,))
    assert kept == (good,) and unsupported == ()
    for bad in (ranges((3, 4), (1, 2)), ranges((1, 5), (5, 6)), ranges((0, 2)), ranges((4, 2))):
        kept, unsupported = check_job_template((bad,))
        assert kept == () and [a.name for a in unsupported] == ["page-ranges"], bad
    kept, unsupported = check_job_template((Attribute.of("page-ranges", ValueTag.INTEGER, 1),))
    assert kept == () and unsupported[0].name == "page-ranges"


def _override(*members: Attribute) -> Attribute:
    return Attribute.of("overrides", ValueTag.BEG_COLLECTION, Collection(members=members))


def test_overrides_need_pages_and_take_only_supported_members() -> None:
    pages = Attribute.of("pages", ValueTag.RANGE_OF_INTEGER, IntRange(lower=2, upper=3))
    good = _override(pages, Attribute.of("orientation-requested", ValueTag.ENUM, 4),
                     Attribute.of("document-numbers", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=1)))
    kept, unsupported = check_job_template((good,))
    assert kept == (good,) and unsupported == ()
    assert {"pages", "document-numbers"} <= set(OVERRIDE_MEMBERS)
    refused = (
        _override(Attribute.of("orientation-requested", ValueTag.ENUM, 4)),  # no pages
        _override(pages, Attribute.of("copies", ValueTag.INTEGER, 2)),  # not an override member
        _override(pages, Attribute.of("sides", ValueTag.KEYWORD, "two-sided-long-edge")),  # unsupported value
        _override(pages, pages),  # a member twice
        Attribute.of("overrides", ValueTag.KEYWORD, "pages"),
    )
    for bad in refused:
        kept, unsupported = check_job_template((bad,))
        assert kept == () and [a.name for a in unsupported] == ["overrides"], bad


def test_overrides_select_documents_with_the_pwg_5100_6_keyword() -> None:
    """"document-numbers" (PWG 5100.6, IANA) is advertised first and honoured; CUPS 2.4's test-suite spelling
    "document-number" is advertised last and read as the same selector; "document-copies" is not supported."""
    assert OVERRIDE_MEMBERS[0] == "document-numbers" and OVERRIDE_MEMBERS[-1] == "document-number"
    pages = Attribute.of("pages", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=2), IntRange(lower=5, upper=5))
    docs = Attribute.of("document-numbers", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=1))
    legacy = Attribute.of("document-number", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=1))
    two = Attribute(name="overrides", values=(
        _override(docs, pages, Attribute.of("sides", ValueTag.KEYWORD, "one-sided")).values[0],
        _override(Attribute.of("pages", ValueTag.RANGE_OF_INTEGER, IntRange(lower=3, upper=4)),
                  Attribute.of("print-quality", ValueTag.ENUM, 5)).values[0],
    ))
    for good in (_override(legacy, pages, Attribute.of("media", ValueTag.KEYWORD, "na_letter_8.5x11in")), two):
        kept, unsupported = check_job_template((good,))
        assert kept == (good,) and unsupported == (), good
    for bad in (
        _override(docs, legacy, pages),  # the same selector twice
        _override(pages, Attribute.of("document-copies", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=1))),
        _override(pages, Attribute.of("document-numbers", ValueTag.RANGE_OF_INTEGER, IntRange(lower=0, upper=1))),
        _override(pages, Attribute.of("document-numbers", ValueTag.INTEGER, 1)),
    ):
        kept, unsupported = check_job_template((bad,))
        assert kept == () and [a.name for a in unsupported] == ["overrides"], bad


def _read_png(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, raw scanlines) after checking the signature, every chunk's CRC and the chunk order."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds, idat, header = 8, [], b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF
        kinds.append(kind)
        header = data if kind == b"IHDR" else header
        idat += data if kind == b"IDAT" else b""
        pos += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert (depth, colour_type) == (8, 6)
    return width, height, zlib.decompress(idat)


def test_icons_are_valid_rgba_pngs_of_the_pwg_sizes() -> None:
    icons = make_icons()
    assert tuple(icons) == ICON_SIZES == (48, 128, 512)
    for size, png in icons.items():
        width, height, raw = _read_png(png)
        assert (width, height) == (size, size)
        assert len(raw) == size * (1 + 4 * size)
        rows = [raw[y * (1 + 4 * size):(y + 1) * (1 + 4 * size)] for y in range(size)]
        assert all(row[0] == 0 for row in rows)
        middle = rows[size // 2]
        assert middle[1 + 4 * (size // 2) + 3] == 255 and middle[1 + 3] == 0  # opaque body, clear margin


def test_encode_png_round_trips_pixels() -> None:
    png = encode_png(2, 1, lambda y: bytes([255, 0, 0, 255, 0, 0, 255, 128]))
    assert _read_png(png) == (2, 1, b"\x00" + bytes([255, 0, 0, 255, 0, 0, 255, 128]))


def test_icon_uris_hang_off_the_printer_base() -> None:
    assert icon_uris("http://printer.example:8631/") == tuple(
        f"http://printer.example:8631/icons/printer-{size}.png" for size in (48, 128, 512))
