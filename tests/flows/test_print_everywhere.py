"""IPP Everywhere over real HTTP: PWG raster jobs, the attributes that announce them, the icons."""

from __future__ import annotations

import aiohttp
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from printers.errors import IPP_DOCUMENT_FORMAT_ERROR
from printers.ipp import Attribute, Collection, GroupTag, IntRange, ValueTag
from tests.flows.print_support import (
    ALICE,
    PrintBridgeFactory,
    ipp_post,
    ipp_request,
    job_value,
    make_print_bridge,
    minimal_pdf,
    pwg_raster,
)

__all__ = ["make_print_bridge"]

RASTER = pwg_raster(width_pt=595, height_pt=842, colour="black_1")


def print_job(data: bytes, fmt: str, *job: Attribute) -> bytes:
    return ipp_request(Op.PRINT_JOB, Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, fmt), job=job,
                       data=data)


async def test_pwg_raster_is_delivered_as_sent_and_checked_against_its_sync_word(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    bridge = await make_print_bridge()
    pages = Attribute.of("page-ranges", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=1))
    _, reply = await ipp_post(bridge, print_job(RASTER, "image/pwg-raster", pages), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK, reply
    _, reply = await ipp_post(bridge, print_job(RASTER, "application/octet-stream"), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK, reply
    _, reply = await ipp_post(bridge, job_request(int(job_value(reply, "job-id"))), auth=ALICE)  # type: ignore[call-overload]
    assert reply is not None and job_value(reply, "document-format-detected") == "image/pwg-raster"
    _, reply = await ipp_post(bridge, print_job(minimal_pdf(1), "image/pwg-raster"), auth=ALICE)
    assert reply is not None and reply.code == IPP_DOCUMENT_FORMAT_ERROR == 0x0411  # RFC 8011 Appendix B
    first, second = await bridge.wait_delivered(2)
    assert {first["document_format"], second["document_format"]} == {"image/pwg-raster"}
    assert bridge.delivered_bytes(first) == bridge.delivered_bytes(second) == RASTER
    assert [m.get("job_attributes", {}).get("page-ranges") for m in (first, second)].count([1, 1]) == 1


def job_request(job_id: int) -> bytes:
    return ipp_request(Op.GET_JOB_ATTRIBUTES, Attribute.of("job-id", ValueTag.INTEGER, job_id))


async def test_printer_announces_ipp_everywhere_and_serves_its_icons(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_PRINTER_ATTRIBUTES))  # no credentials needed
    assert reply is not None and reply.code == IppStatus.OK

    def values(name: str) -> tuple[object, ...]:
        attr = reply.find(GroupTag.PRINTER, name)
        assert attr is not None, name
        return attr.plain_values

    assert "ipp-everywhere" in values("ipp-features-supported")
    assert "image/pwg-raster" in values("document-format-supported")
    assert set(values("pwg-raster-document-type-supported")) == {"black_1", "sgray_8"}
    assert values("page-ranges-supported") == (True,)
    assert {"pages", "document-numbers"} <= set(values("overrides-supported"))
    assert len(values("printer-supply")) == len(values("printer-supply-description")) == 1
    icons = values("printer-icons")
    assert len(icons) == 3
    async with aiohttp.ClientSession() as http:
        for uri in icons:
            assert isinstance(uri, str) and uri.startswith(f"http://127.0.0.1:{bridge.port}/icons/")
            async with http.get(uri) as resp:
                assert resp.status == 200 and resp.content_type == "image/png"
                assert (await resp.read()).startswith(b"\x89PNG\r\n\x1a\n")
        async with http.get(f"http://127.0.0.1:{bridge.port}/icons/printer-64.png") as resp:
            assert resp.status == 404


async def test_page_overrides_on_documents_and_pages_are_honoured_and_reported(
    make_print_bridge: PrintBridgeFactory,
) -> None:
    """PWG 5100.6: an override for document 1, pages 1-2, kept with the job (no ignored-or-substituted)."""
    bridge = await make_print_bridge()
    override = Collection(members=(
        Attribute.of("document-numbers", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=1)),
        Attribute.of("pages", ValueTag.RANGE_OF_INTEGER, IntRange(lower=1, upper=2)),
        Attribute.of("orientation-requested", ValueTag.ENUM, 4),
    ))
    overrides = Attribute.of("overrides", ValueTag.BEG_COLLECTION, override)
    orientation = Attribute.of("orientation-requested", ValueTag.ENUM, 3)
    _, reply = await ipp_post(bridge, print_job(minimal_pdf(3), "application/pdf", orientation, overrides),
                              auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK, reply
    assert not reply.groups_of(GroupTag.UNSUPPORTED)
    job_id = int(job_value(reply, "job-id"))  # type: ignore[call-overload]

    wanted = Attribute.of("requested-attributes", ValueTag.KEYWORD, "job-template")
    _, reply = await ipp_post(bridge, ipp_request(Op.GET_JOB_ATTRIBUTES, Attribute.of("job-id", ValueTag.INTEGER,
                                                                                      job_id), wanted), auth=ALICE)
    assert reply is not None and reply.code == IppStatus.OK
    reported = reply.find(GroupTag.JOB, "overrides")
    assert reported is not None and reported.plain_values == (override,)
    assert reply.find(GroupTag.JOB, "orientation-requested") is not None

    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["job_attributes"]["overrides"] == {
        "document-numbers": [1, 1], "pages": [1, 2], "orientation-requested": 4}
