"""Launches from the UI honour the per-vendor limit: a partition launched from the asset graph and a 3-day
backfill from the "Materialize" dialog run the untagged `__ASSET_JOB`, yet each run is in its vendor's
concurrency pool, and with the limit at 1 the four runs of one vendor run one after the other; each is
forked from the daemon's warm process (the run launcher production names). The instance takes
deploy/dagster.yaml's `concurrency` section with the pool limit lowered to 1, and its `run_launcher`. Screenshots go
to test-artifacts/browser/ (docs/asset-graph.png, vendor-limit.png and queue-criteria.png come from here)."""

from __future__ import annotations

import re
import time

import dagster as dg
import pytest
import yaml

from delivery_platform.alerts.sensors import run_vendor
from delivery_platform.runs.launcher import PARENT_TAG

# the module's dagster dev and browser (fixtures `ui`, `page`) and its helpers, shared, not copied
from delivery_platform_tests.test_browser import (  # noqa: F401
    ARTIFACTS,
    ROOT,
    launch_partition,
    page,
    skip_welcome,
    ui,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
VENDOR = "optimove"  # its days are independent (Lotame's must go in order), and a run succeeds in seconds
SINGLE, RANGE = "2026-11-18", ("2026-11-15", "2026-11-17")


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory):
    """Overrides the default (fixtures.py): production's limits (deploy/dagster.yaml), one run per vendor."""
    production = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    concurrency = production["concurrency"]
    assert concurrency["pools"]["default_limit"] == 2  # what this test lowers
    concurrency["pools"]["default_limit"] = 1
    config = {"telemetry": {"enabled": False}, "concurrency": concurrency,
              "run_launcher": production["run_launcher"],  # the warm run launcher production names
              # the coordinator production names, polling every second instead of 5 (a faster test)
              "run_coordinator": {**production["run_coordinator"], "config": {"dequeue_interval_seconds": 1}}}
    home = tmp_path_factory.mktemp("ui-limit") / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def first_parent(runs: list[dg.DagsterRun]) -> str:
    """The warm process the first run was forked from (all of one daemon's runs share it)."""
    parent = runs[0].tags.get(PARENT_TAG)
    assert parent, f"the first run was not forked from a warm process: {runs[0].tags}"
    return parent


def _finished_runs(instance: dg.DagsterInstance, count: int, timeout_s: float = 300) -> list[dg.RunRecord]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = instance.get_run_records()
        if len(records) >= count and all(r.dagster_run.is_finished for r in records):
            return sorted(records, key=lambda r: r.start_time)
        time.sleep(2)
    states = [(r.dagster_run.tags.get("dagster/partition"), r.dagster_run.status.value)
              for r in instance.get_run_records()]
    raise AssertionError(f"{count} finished runs expected within {timeout_s} s: {states}")


def test_asset_graph_and_backfill_launches_carry_the_vendor_and_respect_its_limit(
        page, ui, dagster_home):  # noqa: F811
    page.goto(f"{ui}/asset-groups")
    skip_welcome(page)  # the first visit's community dialog

    # 1. one partition from the asset graph: the group's "Materialize all…", one partition
    launch_partition(page, ui, VENDOR, SINGLE)

    # 2. at once, a 3-day backfill from the same dialog, while the first run holds the vendor's slot
    page.goto(f"{ui}/locations/delivery_platform/asset-groups/{VENDOR}")
    page.get_by_role("button", name="Materialize all…").click()
    dialog = page.get_by_role("dialog")
    box = dialog.get_by_placeholder("No matching partitions")
    box.click()
    box.fill(f"[{RANGE[0]}...{RANGE[1]}]")
    box.press("Enter")
    dialog.get_by_text("3 partitions").wait_for()
    dialog.get_by_role("button", name="Launch backfill").click()
    page.get_by_text("Created backfill").wait_for()

    # the backfill's runs wait in the queue behind the running one
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the list refreshes itself only every 15 s: load it again
        page.goto(f"{ui}/runs")
        page.get_by_text("Show runs within backfills").wait_for()
        time.sleep(1.5)
        queued = re.search(r"Queued \((\d+)\)", page.inner_text("body"))
        if queued and int(queued.group(1)) >= 2:
            break
    else:
        page.screenshot(path=str(ARTIFACTS / "vendor-limit-timeout.png"))
        raise AssertionError("the runs page never showed two queued runs: " + page.inner_text("body")[:600])
    if not page.get_by_role("checkbox", name="Show runs within backfills").is_checked():
        page.get_by_text("Show runs within backfills").click()  # the input itself is hidden
    time.sleep(1)
    page.get_by_text("Loading runs").wait_for(state="hidden")
    page.screenshot(path=str(ARTIFACTS / "vendor-limit.png"))
    # the UI says why a run waits: its vendor's pool
    page.get_by_text("View queue criteria").first.click()
    criteria = page.get_by_role("dialog")
    criteria.get_by_text(VENDOR).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "queue-criteria.png"))
    criteria_text = criteria.inner_text()
    page.keyboard.press("Escape")

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    records = _finished_runs(instance, 4)
    runs = [r.dagster_run for r in records]
    partitions = sorted(r.tags["dagster/partition"] for r in runs)
    assert partitions == ["2026-11-15", "2026-11-16", "2026-11-17", SINGLE]
    assert sum("dagster/backfill" in r.tags for r in runs) == 3
    for run in runs:
        # the UI's launches: the hidden asset job, no vendor tag; the pool carries the vendor
        assert run.job_name == "__ASSET_JOB" and "vendor" not in run.tags
        assert run.run_op_concurrency is not None and set(run.run_op_concurrency.all_pools) == {VENDOR}
        assert run_vendor(run) == VENDOR  # what an alert for it would name
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
        # launched by the daemon through the deployed launcher: forked from its warm process, not started cold
        assert run.tags.get(PARENT_TAG) == first_parent(runs), run.tags
    assert "pool" in criteria_text.lower(), criteria_text
    # one after the other: each run started after the one before it ended ...
    for before, after in zip(records, records[1:]):
        assert after.start_time >= before.end_time, (before.dagster_run.tags, after.dagster_run.tags)
    # ... although it was queued while that one ran (so the limit, not luck, kept them apart)
    held = [after for before, after in zip(records, records[1:])
            if after.create_timestamp.timestamp() < before.end_time]
    assert len(held) >= 2, [(r.create_timestamp.timestamp(), r.start_time, r.end_time) for r in records]

    # the docs' picture of a vendor group, from this run of the UI
    page.goto(f"{ui}/locations/delivery_platform/asset-groups/lotame")
    page.get_by_text("segmentmembership_files").first.wait_for()
    time.sleep(1)  # let the graph settle before the screenshot
    page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))
