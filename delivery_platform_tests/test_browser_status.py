"""The operator's view in a real headless Chromium: a partition delivered from the UI shows its
receipt on the delivery asset, and the vendor status page, materialized from the UI, shows that day
as delivered and a day delivered after its deadline as late. Screenshots go to test-artifacts/browser/ (the ones in docs/ were taken from here)."""

from __future__ import annotations

import re
import time

import pytest

# the module's dagster dev and browser (fixtures `ui`, `page`) and its helpers, shared, not copied
from delivery_platform_tests.test_browser import (  # noqa: F401
    ARTIFACTS,
    launch_partition,
    page,
    skip_welcome,
    ui,
    wait_for_status,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DAY = "2026-11-20"  # yesterday by the suite's clock: delivered before its 12:00 UTC deadline
LATE_DAY = "2026-11-19"


def _show_markdown(page, label: str, expect: str) -> None:  # noqa: F811
    """Open the markdown metadata entry `label` and wait for `expect` in it."""
    rows = page.locator("tr").filter(has=page.get_by_text(label, exact=True))
    try:
        rows.filter(has=page.get_by_text("Show Markdown")).first.get_by_text("Show Markdown").first.click()
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"no-markdown-{label}.png"))
        raise
    page.get_by_role("dialog").get_by_text(expect).first.wait_for()
    time.sleep(1)  # let the dialog finish opening before the screenshot


def test_a_delivery_shows_its_receipt_and_the_status_page_shows_the_day(page, ui):  # noqa: F811
    page.goto(f"{ui}/asset-groups")
    skip_welcome(page)  # the first visit's community dialog
    # Lotame's days go out in partition order: the day before first, delivered now, after its
    # deadline (12:00 UTC on the 20th by the pinned clock), then yesterday, before its deadline
    launch_partition(page, ui, "lotame", LATE_DAY)
    assert wait_for_status(page, ["Success", "Failure"]) == "Success"
    launch_partition(page, ui, "lotame", DAY)
    assert wait_for_status(page, ["Success", "Failure"]) == "Success"

    page.goto(f"{ui}/assets/lotame/segmentmembership_delivery?partition={DAY}")
    skip_welcome(page, wait_s=2)
    page.get_by_text("receipt_path").first.wait_for()
    _show_markdown(page, "receipt", "segmentmembership.json.gz")
    receipt = page.get_by_role("dialog").inner_text()
    assert "20261120/20261120.done" in receipt and "spec" in receipt and "code version" in receipt
    page.screenshot(path=str(ARTIFACTS / "receipt.png"))
    page.get_by_role("dialog").get_by_role("button", name="Close").click()

    page.goto(f"{ui}/assets/status/lotame")
    skip_welcome(page, wait_s=1)
    page.get_by_text("Materialize", exact=True).first.click()
    toast = page.get_by_text("Launched run")
    toast.wait_for()
    short_id = toast.inner_text().split()[-1]
    page.goto(f"{ui}/runs")
    page.get_by_text(short_id).first.click()
    assert wait_for_status(page, ["Success", "Failure"]) == "Success"
    page.goto(f"{ui}/assets/status/lotame")
    page.get_by_text("open_alerts").first.wait_for()
    # the `status` metadata row holds the days (another row labelled status may render first: wait for this one)
    row = page.locator("tr").filter(has=page.get_by_text("status", exact=True)).filter(has_text=DAY).first
    row.wait_for()
    text = row.inner_text()  # the page shows this markdown inline
    assert re.search(rf"{DAY}\s+delivered\b", text), text[:500]
    assert re.search(rf"{LATE_DAY}\s+LATE\b", text), text[:500]
    assert "Open alerts" in text and text.count("2026-11-") >= 14
    row.scroll_into_view_if_needed()
    row.screenshot(path=str(ARTIFACTS / "vendor-status.png"))
