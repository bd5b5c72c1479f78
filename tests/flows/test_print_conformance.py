"""The CUPS conformance suites (ipptool) against the bridge's printer, authenticated.

``ipp-1.1.test`` and ``ipp-2.0.test`` must pass with 0 failures; each
suite's summary counts are printed in the test output.  The suites are copied
next to the sample documents they print, which are made here.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from tests.flows.print_support import ALICE, IPPTOOL, PrintBridge, PrintBridgeFactory, make_print_bridge
from tests.printers.samples import minimal_jpeg, minimal_pdf

__all__ = ["make_print_bridge"]

SUITES = Path("/usr/share/cups/ipptool")
A4 = (595, 842)
LETTER = (612, 792)
pytestmark = pytest.mark.skipif(IPPTOOL is None or not SUITES.is_dir(),
                                reason="ipptool is not installed (Debian cups-ipp-utils; .ci/run installs it)")


def prepare(workdir: Path) -> Path:
    """The .test files beside the documents they reference."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("ipp-1.1.test", "ipp-2.0.test", "ipp-everywhere.test", "print-job.test"):
        shutil.copy(SUITES / name, workdir / name)
    (workdir / "document-a4.pdf").write_bytes(minimal_pdf(2, width=A4[0], height=A4[1], text="A4"))
    (workdir / "document-letter.pdf").write_bytes(minimal_pdf(2, width=LETTER[0], height=LETTER[1], text="Letter"))
    (workdir / "onepage-a4.pdf").write_bytes(minimal_pdf(1, width=A4[0], height=A4[1]))
    (workdir / "onepage-letter.pdf").write_bytes(minimal_pdf(1, width=LETTER[0], height=LETTER[1]))
    (workdir / "testfile.pdf").write_bytes(minimal_pdf(1))
    (workdir / "color.jpg").write_bytes(minimal_jpeg(3))
    (workdir / "gray.jpg").write_bytes(minimal_jpeg(1))
    for name in ("document-a4.ps", "document-letter.ps"):  # PostScript is refused; the suites skip it
        (workdir / name).write_bytes(b"%!PS-Adobe-3.0\nshowpage\n")
    return workdir


async def ipptool(workdir: Path, uri: str, suite: str, *extra: str, within: float = 240) -> tuple[int, str]:
    assert IPPTOOL is not None
    proc = await asyncio.create_subprocess_exec(
        IPPTOOL, "-t", "--stop-after-include-error", *extra, uri, suite,
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode("utf-8", "replace")


def summary(output: str) -> tuple[int, int, int, int]:
    """(total, passed, failed, skipped) from ipptool's summary line."""
    match = re.search(r"Summary: (\d+) tests?, (\d+) passed, (\d+) failed, (\d+) skipped", output)
    if match is None:
        # Older ipptool without the line: count the per-test verdicts.
        passed, failed, skipped = (len(re.findall(rf"\[{word}\]", output)) for word in ("PASS", "FAIL", "SKIP"))
        return passed + failed + skipped, passed, failed, skipped
    total, passed, failed, skipped = (int(g) for g in match.groups())
    return total, passed, failed, skipped


@pytest.mark.parametrize("suite", ["ipp-1.1.test", "ipp-2.0.test"])
async def test_ipptool_suite_passes(make_print_bridge: PrintBridgeFactory, tmp_path: Path, suite: str) -> None:
    bridge: PrintBridge = await make_print_bridge()
    workdir = prepare(tmp_path / "ipptool")
    code, output = await ipptool(workdir, bridge.uri_for(*ALICE), suite, "-v", "-f", "document-a4.pdf")
    total, passed, failed, skipped = summary(output)
    print(f"\n{suite}: {total} tests, {passed} passed, {failed} failed, {skipped} skipped")
    failures = [line for line in output.splitlines() if "[FAIL]" in line or "EXPECTED" in line or "GOT" in line]
    if failed:
        print(output[-2500:])
    assert code == 0 and failed == 0, "\n".join(failures) or output[-3000:]
    assert passed > 0


async def test_ipp_everywhere_suite_counts(make_print_bridge: PrintBridgeFactory, tmp_path: Path) -> None:
    """IPP Everywhere asks for PWG raster and more than a fax-bound printer offers: counts are reported."""
    bridge = await make_print_bridge()
    workdir = prepare(tmp_path / "ipptool")
    _, output = await ipptool(workdir, bridge.uri_for(*ALICE), "ipp-everywhere.test", "-f", "document-a4.pdf")
    total, passed, failed, skipped = summary(output)
    print(f"\nipp-everywhere.test: {total} tests, {passed} passed, {failed} failed, {skipped} skipped")
    print("\n".join(line for line in output.splitlines() if "[FAIL]" in line))
    assert total > 0 and passed > 0


async def test_print_job_test_costs_one_idp_call(make_print_bridge: PrintBridgeFactory, tmp_path: Path) -> None:
    """The README's acceptance line: print-job.test with credentials in the URI."""
    bridge = await make_print_bridge()
    workdir = prepare(tmp_path / "ipptool")
    code, output = await ipptool(workdir, bridge.uri_for(*ALICE), "print-job.test", "-v", "-f", "testfile.pdf")
    assert code == 0, output[-3000:]
    (manifest,) = await bridge.wait_delivered(1)
    assert manifest["user_email"] == ALICE[0]
    assert bridge.delivered_bytes(manifest) == (workdir / "testfile.pdf").read_bytes()
    assert bridge.trust_calls() == 1, bridge.sim.state.counters

    code, output = await ipptool(workdir, bridge.uri, "print-job.test", "-f", "testfile.pdf")
    assert code != 0 and "[FAIL]" in output  # no credentials: refused before the document
    await asyncio.sleep(0.2)
    assert len(bridge.manifests()) == 1
