"""Days that must not go out: a day that has not ended (or not begun, for a send date), and a day
the warehouse has not loaded yet. Every launch path meets the same check and the same guard."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from delivery_platform.core import clock
from delivery_platform.definitions import build_defs
from delivery_platform.delivery import OutgoingFile, deliver_files
from delivery_platform.destinations.local import LocalDestination
from delivery_platform.ledger import Ledger
from delivery_platform.readiness import day_not_over
from delivery_platform_tests.warehouses import event, events_warehouse, table_warehouse

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 11, 21, 9, tzinfo=dt.timezone.utc)  # the suite's pinned clock


def run(job: str, partition: str):
    return build_defs("local").resolve_job_def(job).execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def readiness(result) -> dg.AssetCheckEvaluation:
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == "warehouse_has_the_day")


def test_the_day_rule():
    assert day_not_over("2026-11-20", NOW) is None
    assert "has not ended" in day_not_over("2026-11-21", NOW)
    assert "in the future" in day_not_over("2026-11-22", NOW)
    assert day_not_over("2026-11-21", NOW, open_day=True) is None  # a send date goes out on the day
    assert "in the future" in day_not_over("2026-11-22", NOW, open_day=True)


@pytest.mark.fault("lotame", "a future day launched by hand (dagster job execute --tags dagster/partition=...)",
                   "held by the blocking readiness check: no bundle, no .done, nothing in the ledger")
def test_a_future_day_launched_from_the_cli_is_refused(data_dir):
    env = {**os.environ, "DAGSTER_HOME": str(data_dir / "home")}
    (data_dir / "home").mkdir()
    (data_dir / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "delivery_platform.definitions",
                           "-j", "lotame_daily_delivery", "--tags", '{"dagster/partition": "2026-11-25"}'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "2026-11-25 is in the future" in done.stdout + done.stderr
    assert not (data_dir / "outbox" / "lotame").exists()
    assert Ledger().history("lotame") == []


@pytest.mark.parametrize("job, partition", [("ispot_daily_delivery", "2026-11-21"),
                                            ("optimove_daily_delivery", "2026-11-21"),
                                            ("digital_audience_daily_delivery", "2026-11-23")])
def test_a_day_that_has_not_ended_is_held_for_every_vendor(data_dir, job, partition):
    result = run(job, partition)
    assert not result.success
    # Optimove's own readiness rule (its data-ready time) may refuse first; else the check holds it
    evaluated = [c for c in result.get_asset_check_evaluations() if c.check_name == "warehouse_has_the_day"]
    assert all(c.passed is False and c.description.startswith("held:") for c in evaluated)
    assert evaluated or job == "optimove_daily_delivery"
    vendor = job.removesuffix("_daily_delivery")
    assert not (data_dir / "outbox" / vendor).exists()
    assert Ledger().history(vendor) == []


@pytest.mark.fault("ispot", "the warehouse has not loaded the day (no rows, no later load)",
                   "held with a blocking check that says so; nothing written or sent")
def test_an_unloaded_day_is_held_not_sent_as_empty(tmp_path, data_dir, monkeypatch):
    # the loads stop at 2026-11-18: the 19th has no rows and nothing was loaded after it ended
    path = events_warehouse(tmp_path / "w.duckdb", [event("2026-11-18 10:00:00")])
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    result = run("ispot_daily_delivery", "2026-11-19")
    check = readiness(result)
    assert not result.success and check.passed is False
    assert "has not loaded 2026-11-19" in check.description and "ispot_conversion_events" in check.description
    assert not (data_dir / "staging" / "ispot" / "conversions" / "2026-11-19" / "files").exists()
    assert Ledger().history("ispot") == []


def test_a_genuinely_empty_day_is_not_held(tmp_path, data_dir, monkeypatch):
    path = events_warehouse(tmp_path / "w.duckdb", [event("2026-11-18 10:00:00"), event("2026-11-20 03:00:00")])
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    result = run("ispot_daily_delivery", "2026-11-19")
    check = readiness(result)
    assert result.success and check.passed and "genuinely empty" in check.description


@pytest.mark.fault("optimove", "an empty warehouse day (no transactions loaded)",
                   "transactions held: no header-only file is sent")
def test_an_unloaded_optimove_day_sends_no_header_only_files(tmp_path, data_dir, monkeypatch):
    row = {"customer_id": "C1", "email": "a@example.com", "first_name": "A", "last_name": "B", "country": "NL",
           "registration_date": "2025-01-02", "birth_date": "1980-05-06", "opt_in_email": True,
           "last_updated": "2026-11-17 10:00:00"}
    path = table_warehouse(tmp_path / "w.duckdb", {"optimove_customers": [row], "optimove_transactions": []})
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    result = run("optimove_daily_delivery", "2026-11-19")
    assert not result.success
    check = next(c for c in result.get_asset_check_evaluations()
                 if c.check_name == "warehouse_has_the_day" and c.asset_key.path[-1] == "transactions")
    assert check.passed is False and "optimove_transactions has no rows" in check.description
    assert not (data_dir / "outbox" / "optimove" / "transactions").exists()
    assert Ledger().history("optimove", "transactions") == []


def test_the_delivery_step_refuses_a_future_day_whatever_launched_it(tmp_path):
    src = tmp_path / "f.csv"
    src.write_bytes(b"x")
    with clock.pinned("2026-11-21T09:00:00Z"):
        with pytest.raises(dg.Failure, match="a day in the future"):
            deliver_files(vendor="acme", deliverable="d", partition_key="2026-11-22",
                          files=[OutgoingFile(src, "f.csv")], destination=LocalDestination("acme", tmp_path / "o"),
                          ledger=Ledger(tmp_path / "l.sqlite"), run_id="r")
    assert not (tmp_path / "o").exists()
