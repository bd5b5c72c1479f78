"""`loginbridge print-test` through the Print-to-Web printer (pyipp as the print queue)."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

from bridge import cli
from bridge.idpsim.server import RunningSimulator
from bridge.toolkit.printtest import PrintTestInput, one_page_pdf, parse_printer_url, run_print_test
from bridge.toolkit.report import Status
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.print_support import ALICE, PrintBridgeFactory, make_print_bridge
from tests.flows.test_print_tls import Pki, pki, tls_bridge

__all__ = ["make_print_bridge", "pki"]


def test_generated_pdf_is_well_formed() -> None:
    pdf = one_page_pdf("a (test) page")
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.rstrip().endswith(b"%%EOF")
    xref_at = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[xref_at:].startswith(b"xref\n0 6\n")
    entries = pdf[xref_at:].split(b"\n")[3:8]
    for number, entry in enumerate(entries, start=1):
        offset = int(entry[:10])
        assert pdf[offset:].startswith(b"%d 0 obj" % number)
    assert b"(a \\(test\\) page) Tj" in pdf


def test_printer_url_must_be_ipp() -> None:
    assert parse_printer_url("ipp://127.0.0.1:8631/ipp/print").port == 8631
    assert parse_printer_url("ipps://printer.example.com/ipp/print").tls
    for bad in ("http://127.0.0.1/ipp/print", "ipp://alice%40example.com:pw@127.0.0.1/ipp/print"):
        try:
            parse_printer_url(bad)
        except Exception as exc:
            assert type(exc).__name__ == "RequestError"
        else:
            raise AssertionError(bad)


async def test_print_test_page_as_alice(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    report = await run_print_test(PrintTestInput(url=bridge.uri, email=ALICE[0], password=ALICE[1], wait_seconds=15))
    assert report.ok and all(s.status is Status.PASS for s in report.steps), \
        [(s.name, s.status.value, s.summary) for s in report.steps]
    assert [s.name for s in report.steps] == ["get-printer-attributes", "print-job", "job state"]
    assert "accepting jobs" in report.steps[0].summary and "application/pdf" in report.steps[0].summary
    assert "completed" in report.steps[2].summary and f"owner {ALICE[0]}" in report.steps[2].summary
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0] and manifest["job_name"] == "loginbridge print-test"
    assert bridge.delivered_bytes(manifest) == one_page_pdf()


async def test_wrong_password_is_what_the_queue_sees(make_print_bridge: PrintBridgeFactory) -> None:
    bridge = await make_print_bridge()
    KNOWN_SECRETS.add("alice-old-password")
    report = await run_print_test(PrintTestInput(url=bridge.uri, email=ALICE[0], password="alice-old-password",
                                                 wait_seconds=5))
    assert not report.ok
    assert report.steps[0].status is Status.PASS
    job = report.steps[1]
    assert job.name == "print-job" and job.code == "invalid_credentials" and "401" in job.summary
    assert bridge.manifests() == []


async def test_cli_prints_a_file(make_print_bridge: PrintBridgeFactory, tmp_path: Path) -> None:
    bridge = await make_print_bridge()
    document = tmp_path / "report.pdf"
    document.write_bytes(one_page_pdf("from a file"))

    def run() -> tuple[int, str]:
        out = io.StringIO()
        old_in, old_out = sys.stdin, sys.stdout
        sys.stdin, sys.stdout = io.StringIO(ALICE[1] + "\n"), out
        try:
            return cli.main(["print-test", "--url", bridge.uri, "--email", ALICE[0], "--password-stdin",
                             str(document), "--wait", "15"]), out.getvalue()
        finally:
            sys.stdin, sys.stdout = old_in, old_out

    code, text = await asyncio.to_thread(run)
    assert code == 0, text
    assert "PASS  print-job" in text and "'report.pdf'" in text and ALICE[1] not in text
    (manifest,) = await bridge.wait_delivered(1)
    assert bridge.delivered_bytes(manifest) == document.read_bytes()


async def test_cli_prints_over_ipps_verifying_the_printer_against_a_ca(make_print_bridge: PrintBridgeFactory,
                                                                      pki: Pki, sim: RunningSimulator) -> None:
    """--ca-file: the printer's certificate is checked (the demo's CA, a private one); a wrong CA fails the test."""
    bridge = await tls_bridge(make_print_bridge, pki)
    url = f"ipps://127.0.0.1:{bridge.port}/ipp/print"
    wrong_ca = sim.ca_file  # a real CA, not the one that signed the printer's certificate

    def run(ca: Path) -> tuple[int, str]:
        out = io.StringIO()
        old_in, old_out = sys.stdin, sys.stdout
        sys.stdin, sys.stdout = io.StringIO(ALICE[1] + "\n"), out
        try:
            return cli.main(["print-test", "--url", url, "--ca-file", str(ca), "--email", ALICE[0],
                             "--password-stdin", "--wait", "15"]), out.getvalue()
        finally:
            sys.stdin, sys.stdout = old_in, old_out

    code, text = await asyncio.to_thread(run, pki.ca_file)
    assert code == 0 and "PASS  print-job" in text, text
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]
    code, text = await asyncio.to_thread(run, wrong_ca)
    assert code != 0 and "certificate" in text.lower(), text
    assert len(bridge.manifests()) == 1
