"""The Dagster UI in a real headless Chromium: the asset graph with every vendor group, a partition
launched from the UI that succeeds, and a failed asset check with its sample rows."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from delivery_platform.vendors import NAMES as VENDORS
from delivery_platform_tests.fixtures import require_or_fail
from delivery_platform_tests.servers import _free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def ui(dagster_home, small_warehouse):
    require_or_fail(Path(CHROMIUM).exists(), "Debian's chromium")
    home, base = dagster_home, dagster_home.parent
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DELIVERY_DATA_DIR": str(base / "data"),
           "DELIVERY_WAREHOUSE_PATH": str(small_warehouse),
           "ISPOT_SITE_IDS": "TC-1234-1"}  # the demo data also has TC-1234-2: iSpot's spec check will fail
    for key in [k for k in env if k.startswith("DELIVERY_") and k.endswith("_DESTINATION")]:
        env.pop(key)
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                               cwd=ROOT, env=env, stdout=open(base / "dagster.log", "w"), stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/server_info", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("dagster dev did not answer within 90 s:\n" + (base / "dagster.log").read_text()[-3000:])
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1600, "height": 1000})
        tab.set_default_timeout(30_000)
        yield tab
        browser.close()


def skip_welcome(page, wait_s=8.0):
    """The UI shows a "Join the Dagster community" dialog on a first visit: skip it if it comes."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        skip = page.get_by_role("button", name="Skip")
        if skip.count() and skip.first.is_visible():
            skip.first.click()
            return
        time.sleep(0.25)


def launch_partition(page, ui, group, partition):
    page.goto(f"{ui}/locations/delivery_platform/asset-groups/{group}")
    skip_welcome(page, wait_s=2)
    page.get_by_role("button", name="Materialize all…").click()
    dialog = page.get_by_role("dialog")
    box = dialog.get_by_placeholder("No matching partitions")
    box.click()
    box.fill(partition)
    box.press("Enter")
    dialog.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_text("Launched run")
    toast.wait_for()
    short_id = toast.inner_text().split()[-1]
    page.goto(f"{ui}/runs")
    page.get_by_text(short_id).first.click()
    page.wait_for_url("**/runs/**")
    return page.url


def wait_for_status(page, words, timeout_s=300):
    """The run page updates itself; read it every 2 s (reloading, then letting it load, once a minute)."""
    deadline = time.monotonic() + timeout_s
    last_reload = time.monotonic()
    while time.monotonic() < deadline:
        body = page.inner_text("body")
        for word in words:
            if re.search(rf"\b{word}\b", body):
                return word
        time.sleep(2)
        if time.monotonic() - last_reload > 60:
            page.reload()
            page.wait_for_load_state("networkidle")
            time.sleep(3)
            last_reload = time.monotonic()
    page.screenshot(path=str(ARTIFACTS / "timeout.png"))
    raise AssertionError(f"none of {words} on {page.url} after {timeout_s} s: {page.inner_text('body')[:800]}")


def test_asset_graph_shows_every_vendor_group(page, ui):
    page.goto(f"{ui}/asset-groups")
    skip_welcome(page)
    page.goto(f"{ui}/locations/delivery_platform/asset-groups/warehouse")
    page.get_by_text("ispot_conversion_events").first.wait_for()
    page.goto(f"{ui}/assets")
    for vendor in VENDORS:
        page.goto(f"{ui}/locations/delivery_platform/asset-groups/{vendor}")
        page.get_by_role("button", name="Materialize all…").wait_for()
        page.screenshot(path=str(ARTIFACTS / f"group-{vendor}.png"))
    page.goto(f"{ui}/locations/delivery_platform/asset-groups/lotame")
    page.get_by_text("segmentmembership_files").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))


def test_a_partition_launched_from_the_ui_succeeds(page, ui):
    launch_partition(page, ui, "lotame", "2026-11-19")
    assert wait_for_status(page, ["Success", "Failure"]) == "Success"
    page.screenshot(path=str(ARTIFACTS / "run-success.png"))


def test_a_failed_asset_check_shows_its_sample_rows(page, ui):
    launch_partition(page, ui, "ispot", "2026-11-19")
    assert wait_for_status(page, ["Failure", "Success"]) == "Failure"
    page.goto(f"{ui}/assets/ispot/conversions?view=checks")
    page.get_by_text("Failed").first.wait_for()
    page.get_by_text("Show Markdown").first.click()
    page.get_by_text("TC-1234-2").first.wait_for()
    time.sleep(1)  # let the dialog finish opening before the screenshot
    page.screenshot(path=str(ARTIFACTS / "failed-check.png"))
    assert "isin" in page.inner_text("body")
