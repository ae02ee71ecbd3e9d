"""The vendor status page: each state of a (deliverable, day) from real runs and the ledger, what
came back from Idomoo, and the alerts still open."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from delivery_platform.alerts.sensors import AlertLog
from delivery_platform.demo import run_daily
from delivery_platform.vendors import deliverable, vendor
from delivery_platform.core import clock
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform.operations import status
from delivery_platform.resources import LedgerResource
from delivery_platform.warehouse.resource import WarehouseResource
from delivery_platform_tests.warehouses import event, events_warehouse


def _run(defs, vendor: str, partition: str):
    job = defs.resolve_job_def(f"{vendor}_daily_delivery")
    return job.execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def _cells(text: str) -> dict[str, list[str]]:
    return {
        line.split(" | ")[0].strip("| "): [c.strip() for c in line.strip("|").split(" | ")[1:]]
        for line in text.splitlines()
        if line.startswith("| 2026-")
    }


def test_the_lotame_page_shows_each_state_and_open_alerts(data_dir):
    defs = build_defs("local")
    # Lotame's days go out in partition order (each builds on what Lotame holds)
    with clock.pinned("2026-11-19T15:00:00Z"):  # after the deadline of the 17th
        assert _run(defs, "lotame", "2026-11-17").success
    with clock.pinned("2026-11-20T07:00:00Z"):  # before the 12:00 UTC deadline of the 19th
        assert _run(defs, "lotame", "2026-11-19").success
    ledger = Ledger()
    attempt = ledger.begin(
        "lotame",
        "segmentmembership",
        "2026-11-16",
        "20261116/segmentmembership.json.gz",
        bytes=10,
        md5="0" * 32,
        rows=1,
        run_id="r-failed",
    )
    ledger.finish(attempt, "failed", error="ConnectionError")
    ledger.mark_partition(
        "lotame", "segmentmembership", "2026-11-16", "delivering", files=3, run_id="r-failed"
    )
    held = WarehouseResource().staged_table("lotame", "segmentmembership", "2026-11-15")
    held.parent.mkdir(parents=True)
    held.write_bytes(b"PAR1")  # built and checked, never sent
    log = AlertLog()
    log.set_failing("lotame/segment_memberships:spec:2026-11-15", True, "r-held")
    log.set_failing("preflight/lotame/segmentmembership:preflight:2026-11-20", True, "r-pre")
    log.set_failing("preflight/lotame/segmentmembership:preflight:2026-11-19", False, "r-pre-fixed")
    log.claim("deadline:lotame:segmentmembership:2026-11-14")
    log.claim("deadline:lotame:segmentmembership:2026-11-17")  # made good since: not open

    result = dg.materialize(
        [status.build_asset(vendor("lotame"))],
        resources={"ledger": LedgerResource(), "warehouse": WarehouseResource()},
    )
    meta = result.asset_materializations_for_node("status__lotame")[0].metadata
    text = meta["status"].value
    cells = _cells(text)
    assert len(cells) == 14 and min(cells) == "2026-11-07" and max(cells) == "2026-11-20"
    assert cells["2026-11-19"] == ["delivered"] and cells["2026-11-17"] == ["LATE"]
    assert cells["2026-11-16"] == ["FAILED"] and cells["2026-11-15"] == ["HELD"]
    assert cells["2026-11-18"] == ["MISSING"]  # its deadline (the 19th, 12:00) has passed
    assert cells["2026-11-20"] == ["pending"]  # due at 12:00 today; the clock says 09:00
    assert (meta["delivered"].value, meta["late"].value, meta["failed"].value, meta["held"].value) == (
        1,
        1,
        1,
        1,
    )
    assert "check failing: lotame/segment_memberships:spec:2026-11-15" in text
    assert "preflight failing: preflight/lotame/segmentmembership:preflight:2026-11-20" in text
    assert "preflight:2026-11-19" not in text  # passed again since: not open
    assert "missed deadline: segmentmembership 2026-11-14" in text
    assert "2026-11-17" not in text.split("**Open alerts**")[1]
    assert meta["open_alerts"].value == 3


def test_an_empty_day_and_idomoo_returns(data_dir, tmp_path, monkeypatch):
    from delivery_platform import simulators

    defs, instance = build_defs("local"), dg.DagsterInstance.ephemeral()
    outcome = run_daily(defs, instance, "idomoo", "2026-11-19")
    assert outcome["success"]
    simulators.answer("idomoo", defs, instance, outcome, "2026-11-19")  # the PURL file back, taken in
    text, counts, _ = status.report(vendor("idomoo"), Ledger(), WarehouseResource(), clock.now())
    assert _cells(text)["2026-11-19"][0] == "LATE"  # delivered at the pinned 2026-11-21 09:00
    assert _cells(text)["2026-11-19"][-1].startswith("PURL back: 10 rows")  # after both storyboards' columns
    monkeypatch.setenv(
        "DELIVERY_WAREHOUSE_PATH",
        # an event of the 20th: the loads have passed the 19th, so it is genuinely empty (not held)
        str(events_warehouse(tmp_path / "w.duckdb", [event("2026-11-18 10:00:00"), event("2026-11-20 01:00:00")])),
    )
    assert _run(build_defs("local"), "ispot", "2026-11-19").success  # no conversions that day: no file
    text, counts, _ = status.report(vendor("ispot"), Ledger(), WarehouseResource(), clock.now())
    assert _cells(text)["2026-11-19"] == ["empty"] and counts["empty"] == 1
    assert status.deadline(deliverable("ispot", "conversions"), dt.date(2026, 11, 19)).hour == 14
