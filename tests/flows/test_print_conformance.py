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

from tests.flows.print_support import ALICE, IPPTOOL, PrintBridge, PrintBridgeFactory, make_print_bridge, pwg_raster
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


RASTER_FILE = re.compile(r"FILE (pwg-raster-samples-(\d+)dpi/[a-z0-9-]+/(.+)-([a-z]+-\d+)-\d+dpi\.pwg)")
PAGE_SIZES = {"onepage-a4": A4, "document-a4": A4, "onepage-letter": LETTER, "document-letter": LETTER,
              "color.jpg-4x6": (288, 432), "gray.jpg-4x6": (288, 432)}


def write_pwg_raster_samples(workdir: Path) -> list[Path]:
    """Every raster sample ipp-everywhere.test names (ipptool 2.4 stops at the first it cannot read).

    Returns the ones it prints to this printer: 300 dpi, black_1 or sgray_8,
    uncompressed; the others are skipped by the suite's own conditions.
    """
    printed = []
    for rel, dpi, stem, colour in sorted(set(RASTER_FILE.findall((workdir / "ipp-everywhere.test").read_text()))):
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        width, height = PAGE_SIZES[stem]
        path.write_bytes(pwg_raster(width_pt=width, height_pt=height, dpi=int(dpi), colour=colour.replace("-", "_")))
        if dpi == "300" and colour in ("black-1", "sgray-8"):
            printed.append(path)
    return printed


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


async def test_ipp_everywhere_suite_passes(make_print_bridge: PrintBridgeFactory, tmp_path: Path) -> None:
    """PWG 5100.14: ipp-everywhere.test (which includes ipp-2.0.test) with 0 failures, counts printed.

    Its PWG raster print tests print sample files that Debian does not ship,
    so ipptool skips them; the raster documents made here print through
    Print-Job and reach the outbox byte for byte.
    """
    bridge = await make_print_bridge()
    workdir = prepare(tmp_path / "ipptool")
    rasters = write_pwg_raster_samples(workdir)
    code, output = await ipptool(workdir, bridge.uri_for(*ALICE), "ipp-everywhere.test", "-v", "-f", "document-a4.pdf")
    total, passed, failed, skipped = summary(output)
    print(f"\nipp-everywhere.test: {total} tests, {passed} passed, {failed} failed, {skipped} skipped")
    # The summary counts the file's own tests; the included ipp-2.0.test reports its verdicts line by line.
    verdicts = {word: len(re.findall(rf"\[{word}\]", output)) for word in ("PASS", "FAIL", "SKIP")}
    print(f"with ipp-2.0.test included: {sum(verdicts.values())} tests, {verdicts['PASS']} passed, "
          f"{verdicts['FAIL']} failed, {verdicts['SKIP']} skipped")
    failures = [line for line in output.splitlines() if "[FAIL]" in line or "EXPECTED" in line or "GOT" in line]
    assert code == 0 and failed == 0 and verdicts["FAIL"] == 0, "\n".join(failures) or output[-3000:]
    raster_tests = len(re.findall(r"Print \S+ @ 300dpi, (?:black-1|sgray-8) +\[PASS\]", output))
    print(f"PWG raster documents printed: {raster_tests}")
    assert raster_tests == len(rasters) > 0

    deadline = asyncio.get_running_loop().time() + 30
    while len(pwg := [m for m in bridge.manifests() if m["document_format"] == "image/pwg-raster"]) < len(rasters):
        assert asyncio.get_running_loop().time() < deadline, f"{len(pwg)} of {len(rasters)} raster jobs delivered"
        await asyncio.sleep(0.05)
    assert all(m["user_email"] == ALICE[0] for m in pwg)
    assert sorted(bridge.delivered_bytes(m) for m in pwg) == sorted(p.read_bytes() for p in rasters)


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
