"""Sample documents made at test time (Debian ships none of the ones the IPP suites print)."""

from __future__ import annotations

import struct


def minimal_pdf(pages: int = 1, *, width: int = 595, height: int = 842, text: str = "loginbridge test") -> bytes:
    """A small valid PDF (one text line per page) with a correct xref table."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    font_id = 3 + 2 * pages
    for i in range(pages):
        content_id = 4 + 2 * i
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Contents {content_id} 0 R"
                       f" /Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        stream = f"BT /F1 24 Tf 72 {height - 100} Td ({text} page {i + 1}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def minimal_jpeg(components: int = 1) -> bytes:
    """A valid baseline JPEG: one 8x8 mid-grey block (DC 0, EOB) per component.

    Huffman tables with a single one-bit code each (symbol 0), so every block
    is the two bits "00"; the scan is padded with ones (ITU T.81, F.1.2.3).
    """
    ids = range(1, components + 1)
    dqt = b"\x00" + bytes([1] * 64)
    sof = struct.pack(">BHHB", 8, 8, 8, components) + b"".join(bytes([i, 0x11, 0]) for i in ids)
    one_code = bytes([1] + [0] * 15) + b"\x00"
    dht = b"\x00" + one_code + b"\x10" + one_code
    sos = bytes([components]) + b"".join(bytes([i, 0x00]) for i in ids) + b"\x00\x3f\x00"
    bits = "00" * components
    bits += "1" * (-len(bits) % 8)
    scan = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")
    return (b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00") + _segment(0xDB, dqt)
            + _segment(0xC0, sof) + _segment(0xC4, dht) + _segment(0xDA, sos) + scan + b"\xff\xd9")
