"""The drift guard: the robust band itself, and a WARN on a real delivery run whose day is half the
usual size (history from the ledger), with the series in the check's metadata; schema drift in
the warehouse source."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import dagster as dg
import duckdb

from delivery_platform.alerts import AlertSinks, process_run
from delivery_platform.alerts.sensors import AlertLog
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform.operations import drift
from delivery_platform.vendors import deliverable
from delivery_platform.warehouse.resource import WarehouseResource
from delivery_platform_tests.http_doubles import Recorder

ISPOT = deliverable("ispot", "conversions")


def test_the_band_flags_a_halved_day_and_not_an_ordinary_one():
    history = {
        f"2026-11-{d:02d}": {"rows": r, "bytes": r * 100}
        for d, r in zip(
            range(1, 15), [1000, 1020, 980, 1010, 995, 1005, 990, 1030, 970, 1000, 1015, 985, 1008, 992]
        )
    }
    assert drift.judge({"rows": 996, "bytes": 99_600}, history, k=3, min_history=5) == []
    findings = drift.judge({"rows": 500, "bytes": 50_000}, history, k=3, min_history=5)
    assert len(findings) == 2 and findings[0].startswith("rows 500 outside")
    assert (
        drift.judge({"rows": 500, "bytes": 50_000}, dict(list(history.items())[:4]), k=3, min_history=5) == []
    )
    wide = drift.judge({"rows": 500, "bytes": 50_000}, history, k=1000, min_history=5)
    assert wide == []  # k is the knob


def test_a_jump_in_a_columns_null_share_is_flagged():
    def prof(null_share):
        return {"columns": {"customdata": {"null_share": null_share, "distinct_share": 0.5}}}

    history = {
        f"2026-11-{d:02d}": {"rows": 100, "bytes": 1000, "profile": prof(0.30 + d / 1000)}
        for d in range(1, 15)
    }
    assert drift.judge({"rows": 100, "bytes": 1000, "profile": prof(0.31)}, history, 3, 5) == []
    findings = drift.judge({"rows": 100, "bytes": 1000, "profile": prof(0.95)}, history, 3, 5)
    assert findings == ["customdata: null share 95% (median 31% of the last 14)"]


def test_a_halved_day_warns_on_a_real_delivery_run(data_dir, monkeypatch):
    monkeypatch.setenv("ISPOT_SITE_IDS", "TC-1234-1,TC-1234-2")
    ledger = Ledger()
    # 14 earlier deliveries of about twice the day's size, as the ledger records them
    with duckdb.connect(str(WarehouseResource().warehouse_file), read_only=True) as con:
        day_rows = con.execute(
            "SELECT count(*) FROM ispot_conversion_events WHERE event_ts >= '2026-11-19' AND "
            "event_ts < '2026-11-20' AND NOT contains(client_ip, ':') "
            # what the run sends: events loaded by the (pinned) clock; later ones are a top-up
            "AND loaded_at <= '2026-11-21 09:00:00'"
        ).fetchone()[0]
    for back in range(1, 15):
        key = (dt.date(2026, 11, 19) - dt.timedelta(days=back)).isoformat()
        rows = 2 * day_rows + (back % 3) * 3
        attempt = ledger.begin(
            "ispot",
            "conversions",
            key,
            f"conversions_{key}_001.csv",
            bytes=rows * 120,
            md5="0" * 32,
            rows=rows,
            remote_uri=f"file:///x/{key}",
            run_id="history",
        )
        ledger.finish(attempt, "delivered")
        ledger.mark_partition("ispot", "conversions", key, "complete", files=1)
    job = build_defs("local").resolve_job_def("ispot_daily_delivery")
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(partition_key="2026-11-19", instance=instance, raise_on_error=False)
    assert result.success
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "drift"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert f"rows {day_rows:,} outside" in check.description
    assert check.metadata["rows"].value == day_rows and check.metadata["history_partitions"].value == 14
    assert check.metadata["rows_band_low"].value > day_rows
    series = check.metadata["series"].value
    assert "**2026-11-19**" in series and series.count("\n| 2026-11-") == 14
    # the alert sensor sends it like any failed check: once, naming the check and the partition
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url + "/hook")
        sent = [a for a in process_run(instance, result.run_id, sinks, AlertLog()) if a.check == "drift"]
        assert process_run(instance, result.run_id, sinks, AlertLog()) == []
    assert len(sent) == 1 and sent[0].partition == "2026-11-19" and sent[0].title.startswith("[WARN]")
    assert any(json.loads(body)["check"] == "drift" for _, _, body in hook.requests)
    profile = drift.stored_profile(ledger, ISPOT, "2026-11-19")
    assert profile["rows"] == day_rows and "customdata" in profile["columns"]


def test_schema_drift_in_the_warehouse_source(data_dir, tmp_path, monkeypatch, small_warehouse):
    changed = tmp_path / "changed.duckdb"
    shutil.copyfile(small_warehouse, changed)
    with duckdb.connect(str(changed)) as con:
        con.execute("ALTER TABLE ispot_conversion_events ADD COLUMN campaign VARCHAR")
        con.execute("ALTER TABLE ispot_conversion_events DROP COLUMN order_id")
        con.execute("ALTER TABLE ispot_conversion_events ALTER amount TYPE DOUBLE")
    assert drift.schema_drift(WarehouseResource(), "ispot_conversion_events") == []
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(changed))
    assert drift.schema_drift(WarehouseResource(), "ispot_conversion_events") == [
        "column campaign added (VARCHAR)",
        "column order_id dropped",
        "column amount retyped DECIMAL(12,2) -> DOUBLE",
    ]


def test_one_earlier_delivery_is_reported_not_judged(data_dir):
    ledger = Ledger()
    for key, rows in (("2026-11-18", 183), ("2026-11-19", 91)):
        attempt = ledger.begin(
            "ispot",
            "conversions",
            key,
            f"c_{key}.csv",
            bytes=rows * 100,
            md5="0" * 32,
            rows=rows,
            remote_uri=f"file:///x/{key}",
            run_id="r",
        )
        ledger.finish(attempt, "delivered")
    result = drift.evaluate(ISPOT, "2026-11-19", WarehouseResource(), ledger)
    assert result.passed and "only 1 earlier deliveries" in result.description
    assert result.metadata["rows_median"].value == 183.0  # an odd count's median is an int: stored as float
