"""The console in headless Chromium (Debian's package, driven by Playwright; no browser download).

Signs in, runs a check, reads thirty real login attempts at a laptop's viewport
(1366x768): ten per screen, one line each with its specific reason, paging,
filters, the viewer's time zone, and a code's link into the troubleshooting
guide.  Screenshots go under tmp, to artifacts/ (gitignored) and to
/tmp/console-shots/ for a human to look at.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.idpsim.server import RunningSimulator
from tests.flows.test_console import TECH, ConsoleFactory, console_bridge, unlisted_org_tenant, varied_attempts
from tests.paths import REPO

__all__ = ["console_bridge"]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts"
SHOTS = Path("/tmp/console-shots")
VIEWPORT = {"width": 1366, "height": 768}  # the commonest laptop screen
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Whatever sticks out to the right of the viewport, or makes the page scroll sideways.
_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  if (document.documentElement.scrollWidth > width) out.push('page scrolls sideways: ' +
      document.documentElement.scrollWidth + ' > ' + width);
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > width + 0.5) out.push(el.tagName + '.' + el.className + ' right=' + r.right);
  }
  return out;
}"""


def _require_browser() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail("Debian's chromium is missing: .ci/run must install it (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed here (apt-get install chromium); CI installs it")


async def _rows(page: Any) -> list[dict[str, Any]]:
    """Each line of the attempts table: its box, its result and its reason as shown."""
    out = []
    for row in await page.locator("table.attempts tbody tr").all():
        box = await row.bounding_box()
        out.append({"box": box, "id": await row.get_attribute("id"),
                    "result": (await row.locator("td").nth(1).inner_text()).strip(),
                    "reason": (await row.locator("td.reason .why").inner_text()).strip(),
                    "time": await row.locator("time").inner_text(),
                    "utc": await row.locator("time").get_attribute("title")})
    return out


async def test_console_in_chromium(console_bridge: ConsoleFactory, sim: RunningSimulator, tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import async_playwright

    bridge = await console_bridge(extra_tenants=(unlisted_org_tenant(sim),))
    results = await varied_attempts(bridge)
    assert len(results) >= 25 and "idp_not_whitelisted" in results and "assertion_invalid" in results
    shots: list[Path] = []

    async def shot(page: Any, name: str, *, full_page: bool = False) -> None:
        path = tmp_path / name
        await page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport=VIEWPORT)
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(bridge.url + "/console/tenants")
            assert page.url.endswith("/console/login")  # a session is needed
            await page.fill("input[name=name]", TECH[0])
            await page.fill("input[name=password]", TECH[1])
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/tenants")
            assert "never run" in await page.inner_text("table")

            await page.locator("form[action='/console/tenants/example/check'] button").click()
            await page.wait_for_selector("table.steps")
            steps = await page.inner_text("table.steps")
            for name in ("whitelist 127.0.0.1", "tls 127.0.0.1", "usernamemixed endpoints", "signing certificates",
                         "clock skew"):
                assert name in steps
            assert "FAIL" not in steps
            await shot(page, "console-check.png", full_page=True)

            # The attempts, in the zone the technician picks (no script: a form, remembered in a cookie).
            await page.click("nav >> text=Login attempts")
            await page.wait_for_url("**/console/attempts")
            await page.select_option("select[name=tz]", "Europe/Berlin")
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url("**/console/attempts?*tz=Europe%2FBerlin*")
            await shot(page, "console-attempts.png")
            await shot(page, "console-attempts-full.png", full_page=True)
            assert await page.evaluate(_OVERFLOW) == []

            rows = await _rows(page)
            assert len(rows) == 10
            heights = [r["box"]["height"] for r in rows]
            assert max(heights) < 40, f"an attempt takes more than one line: {heights}"
            assert all(r["box"]["y"] + r["box"]["height"] <= VIEWPORT["height"] for r in rows), \
                "ten attempts must fit on the first screen"
            for row in rows:
                assert row["reason"], f"no reason on {row}"
                utc = datetime.strptime(row["utc"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
                assert row["time"] == utc.astimezone(ZoneInfo("Europe/Berlin")).strftime("%d %b %H:%M:%S")
            assert "1–10 of" in await page.inner_text(".titlebar")

            # Older pages: the whitelist refusals and the failed assertions, each with what is known of it.
            seen = list(rows)
            while await page.locator("a[rel=next]").count():
                await page.click("a[rel=next]")
                await page.wait_for_load_state()
                assert await page.evaluate(_OVERFLOW) == []
                more = await _rows(page)
                if len(seen) == 10:
                    await shot(page, "console-attempts-older.png")
                assert more and int(more[0]["id"][1:]) < int(seen[-1]["id"][1:])  # strictly older
                seen += more
            assert len(seen) == len(results) + 1  # + the technician's own sign-in
            by_result: dict[str, list[str]] = {}
            for row in seen:
                by_result.setdefault(row["result"], []).append(row["reason"])
            assert by_result["idp_not_whitelisted"] == [
                "127.0.0.1 not in idp_whitelist; add 127.0.0.1/32 to idp_whitelist"] * 2  # recorded at the time
            assert any("stale password" in r for r in by_result["invalid_credentials"])
            assert any("the IdP rejected the password" in r for r in by_result["invalid_credentials"])
            assert by_result["user_not_provisioned"] == ["no such account in tenant example"]
            assert by_result["unknown_domain"] == ["no tenant lists the domain unknown-company.test"]
            assert all(by_result["assertion_invalid"])  # the failed assertion check, recorded by the bridge

            # Failures only, the whitelist refusal opened: the panel message and the rendered advice.
            await page.select_option("select[name=result]", "failed")
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url("**/console/attempts?*result=failed*")
            failed = await _rows(page)
            assert len(failed) == 10 and all(r["result"] != "ok" for r in failed)
            refusal = page.locator("table.attempts tbody tr", has_text="idp_not_whitelisted").first
            await refusal.locator("summary").click()
            opened = await refusal.locator(".more").inner_text()
            assert "Sign-in is not set up correctly for your company." in opened
            assert "idp_whitelist" in opened and "`" not in opened  # Markdown rendered, not shown raw
            assert await refusal.locator(".more code").count() >= 1
            await shot(page, "console-attempts-failed.png")
            assert await page.evaluate(_OVERFLOW) == []

            # The code links to its section of the troubleshooting guide, at the top of the screen.
            await refusal.locator("a.badge").click()
            await page.wait_for_url("**/console/troubleshooting#idp_not_whitelisted")
            heading = page.locator("h3#idp_not_whitelisted")
            box = await heading.bounding_box()
            assert box is not None and 0 <= box["y"] < VIEWPORT["height"] / 2
            assert "Sign-in is not set up correctly" in await heading.inner_text()
            assert "`" not in await page.inner_text("article.guide")
            assert await page.evaluate(_OVERFLOW) == []
            await shot(page, "console-troubleshooting.png")

            # The zone is remembered for the next visit.
            await page.goto(bridge.url + "/console/attempts")
            assert await page.locator("select[name=tz]").input_value() == "Europe/Berlin"
        finally:
            await context.close()

    assert all(path.stat().st_size > 10_000 for path in shots)
    for target in (ARTIFACTS, SHOTS):
        target.mkdir(exist_ok=True)
        for path in shots:
            shutil.copyfile(path, target / path.name)
