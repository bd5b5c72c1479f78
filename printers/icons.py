"""The printer's icons (printer-icons, PWG 5100.13 section 6.6.5), drawn at start-up.

Pure: a tiny RGBA PNG encoder (zlib + struct) and a flat printer glyph, so no
image file is committed and nothing needs an imaging library.  IPP Everywhere
clients show these icons beside the queue; PWG 5100.13 asks for 48, 128 and
512 pixel squares, listed smallest first.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

ICON_SIZES = (48, 128, 512)
ICON_PATH = "/icons/printer-{size}.png"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CLEAR = (0, 0, 0, 0)
_BODY = (52, 73, 94, 255)
_PAPER = (250, 250, 250, 255)
_SLOT = (23, 32, 42, 255)
_LIGHT = (46, 204, 113, 255)

Pixel = tuple[int, int, int, int]


def _chunk(kind: bytes, data: bytes) -> bytes:
    # PNG section 5.3: length, type, data, CRC over type and data.
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rows: Callable[[int], bytes]) -> bytes:
    """An 8-bit RGBA PNG whose row ``y`` is ``rows(y)`` (4 bytes a pixel); filter type 0 (None) throughout."""
    raw = bytearray()
    for y in range(height):
        row = rows(y)
        if len(row) != 4 * width:
            raise ValueError(f"row {y} has {len(row)} bytes, not {4 * width}")
        raw.append(0)
        raw += row
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # bit depth 8, colour type 6 (RGBA)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
            + _chunk(b"IEND", b""))


# A printer seen from the front, as rectangles (left, top, right, bottom in fractions of the side), drawn in
# order so that later ones cover earlier ones: a sheet going in and coming out, the body, the slot, a light.
_SHAPES: tuple[tuple[tuple[float, float, float, float], Pixel], ...] = (
    ((0.26, 0.12, 0.74, 0.36), _PAPER),
    ((0.26, 0.68, 0.74, 0.90), _PAPER),
    ((0.10, 0.36, 0.90, 0.80), _BODY),
    ((0.22, 0.62, 0.78, 0.68), _SLOT),
    ((0.72, 0.44, 0.80, 0.50), _LIGHT),
)


def _glyph(size: int) -> Callable[[int], bytes]:
    def row(y: int) -> bytes:
        line = bytearray(bytes(_CLEAR) * size)
        for (left, top, right, bottom), colour in _SHAPES:
            if top * size <= y < bottom * size:
                x0, x1 = round(left * size), round(right * size)
                line[4 * x0:4 * x1] = bytes(colour) * (x1 - x0)
        return bytes(line)

    return row


def make_icons() -> dict[int, bytes]:
    """size -> PNG bytes for each of ICON_SIZES."""
    return {size: encode_png(size, size, _glyph(size)) for size in ICON_SIZES}


def icon_uris(base: str) -> tuple[str, ...]:
    """The printer-icons values under ``base`` (e.g. ``http://host:631``), smallest first."""
    return tuple(base.rstrip("/") + ICON_PATH.format(size=size) for size in ICON_SIZES)
