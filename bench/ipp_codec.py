"""Micro-benchmark of the IPP codec on a Get-Printer-Attributes-sized response.

Run from the repository root: .venv/bin/python -m bench.ipp_codec
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from printers.ipp import (
    Attribute,
    AttributeGroup,
    Collection,
    GroupTag,
    IntRange,
    IppMessage,
    Resolution,
    ValueTag,
    decode,
    decode_attributes,
    encode,
)


def media_col(x: int, y: int) -> Collection:
    size = Collection(
        members=(
            Attribute.of("x-dimension", ValueTag.INTEGER, x),
            Attribute.of("y-dimension", ValueTag.INTEGER, y),
        )
    )
    return Collection(
        members=(
            Attribute.of("media-size", ValueTag.COLLECTION, size),
            Attribute.of("media-source", ValueTag.KEYWORD, "main"),
            Attribute.of("media-type", ValueTag.KEYWORD, "stationery"),
            Attribute.of("media-top-margin", ValueTag.INTEGER, 423),
        )
    )


def printer_response() -> IppMessage:
    attrs = [
        Attribute.of("printer-name", ValueTag.NAME, "Print-to-Web"),
        Attribute.of("printer-current-time", ValueTag.DATE_TIME, datetime.now(UTC)),
        Attribute.of("copies-supported", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=999)),
        Attribute.of("printer-resolution-supported", ValueTag.RESOLUTION, Resolution(x=600, y=600, units=3)),
        Attribute.of("operations-supported", ValueTag.ENUM, *range(2, 60)),
        Attribute.of("media-col-database", ValueTag.COLLECTION, *(media_col(21000 + i, 29700) for i in range(60))),
    ]
    attrs += [Attribute.of(f"x-vendor-attribute-{i}", ValueTag.TEXT, "value " * 10) for i in range(150)]
    return IppMessage(
        version=(2, 0),
        code=0,
        request_id=1,
        groups=(
            AttributeGroup.of(
                GroupTag.OPERATION,
                Attribute.of("attributes-charset", ValueTag.CHARSET, "utf-8"),
                Attribute.of("attributes-natural-language", ValueTag.NATURAL_LANGUAGE, "en"),
            ),
            AttributeGroup(tag=GroupTag.PRINTER, attributes=tuple(attrs)),
        ),
    )


def per_call(fn: object, arg: object, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn(arg)  # type: ignore[operator]
    return (time.perf_counter() - start) / rounds


def main() -> None:
    msg = printer_response()
    raw = encode(msg)
    document = raw + b"\x00" * (8 << 20)
    rounds = 200
    print(f"response size: {len(raw)} octets")
    print(f"encode:            {per_call(encode, msg, rounds) * 1e3:.3f} ms")
    print(f"decode:            {per_call(decode, raw, rounds) * 1e3:.3f} ms")
    print(f"decode_attributes: {per_call(decode_attributes, document, rounds) * 1e3:.3f} ms (8 MiB document after)")


if __name__ == "__main__":
    main()
