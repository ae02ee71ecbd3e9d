"""Optimove: formats round-trip through each store, size splits, incremental windows, bad input."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.destinations import destination_from_env
from delivery_platform.vendors.optimove.assets import read_back_sql
from delivery_platform_tests.warehouses import table_warehouse

DAY = "2026-11-17"


def run(partition=DAY, settings=None):
    job = build_defs("local").resolve_job_def("optimove_daily_delivery")
    config = {"resources": {"optimove_settings": {"config": settings}}} if settings else None
    return job.execute_in_process(partition_key=partition, instance=dg.DagsterInstance.ephemeral(),
                                  raise_on_error=False, run_config=config)


def checks(result):
    return {(c.asset_key.path[-1], c.check_name): c for c in result.get_asset_check_evaluations()}


def source_rows(warehouse, table, partition=DAY):
    """Transactions changed in the day (incremental); every customer (full, R13)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    key = "transaction_id" if table == "transactions" else "customer_id"
    day = f"DATE '{partition}'"
    window = (f"WHERE last_updated >= {day} AND last_updated < {day} + INTERVAL 1 DAY"
              if table == "transactions" else "")
    rows = con.execute(f"SELECT {key} FROM optimove_{table} {window} ORDER BY 1").fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("fmt,store", [("csv", "s3_server"), ("json", "gcs_server"), ("parquet", "azurite_server"),
                                       ("csv", "sftp_server"), ("json", None), ("parquet", None)])
def test_each_format_round_trips_through_the_store(data_dir, small_warehouse, monkeypatch, request, tmp_path, fmt, store):
    if store:
        for key, value in request.getfixturevalue(store).env("optimove").items():
            monkeypatch.setenv(key, value)
    result = run(settings={"format": fmt})
    assert result.success
    with destination_from_env("optimove").process_config_and_initialize().get() as dest:
        for table, key_col in (("customers", "CustomerID"), ("transactions", "TransactionID")):
            names = [f.name for f in dest.list(f"{table}/")]
            ext = {"csv": ".csv.gz", "json": ".json.gz", "parquet": ".parquet"}[fmt]
            assert names == [f"{table}/{table}_20261117_001{ext}"]
            local = dest.download(names[0], tmp_path / fmt / names[0])
            con = duckdb.connect()
            from delivery_platform.vendors.optimove.assets import TABLES
            cols = list(next(t for t in TABLES if t.name == table).model.to_schema().columns)
            back = con.execute(f"SELECT {key_col} FROM ({read_back_sql([str(local)], fmt, cols)}) ORDER BY 1").fetchall()
            assert [r[0] for r in back] == source_rows(small_warehouse, table)
            if table == "transactions" and fmt != "parquet":
                amounts = con.execute(f"SELECT Amount FROM ({read_back_sql([str(local)], fmt, cols)})").fetchall()
                assert all("." in a[0] and not a[0].startswith(("$", "£", "€")) for a in amounts)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_parts_land_in_the_band_and_never_above_it(data_dir, fmt):
    """Issue 16 (Optimove 3): the 100-250 MB band, scaled down: parts of 1,500-4,000 bytes."""
    low, high = 1500, 4000
    result = run(partition="2026-11-18", settings={"format": fmt, "target_file_bytes": 2500, "gzip_level": 1,
                                                   "band_low_bytes": low, "band_high_bytes": high})
    assert result.success
    meta = result.asset_materializations_for_node("optimove__transactions_files")[0].metadata
    parts = sorted((data_dir / "outbox" / "optimove" / "transactions").iterdir())
    sizes = [p.stat().st_size for p in parts]
    assert meta["file_count"].value == len(parts) and (len(parts) >= 2 or fmt == "parquet")
    assert sum(sizes) > low and all(low <= s <= high for s in sizes), sizes
    assert [p.name for p in parts] == [f"transactions_20261118_{n:03d}{p.name[25:]}" for n, p in
                                      enumerate(parts, start=1)]  # consecutive numbers after merges
    assert meta["parts_outside_band"].value == 0
    if fmt == "csv":
        import gzip
        texts = [gzip.decompress(p.read_bytes()).decode() for p in parts]
        header = texts[0].split("\n")[0]
        assert all(t.split("\n")[0] == header and t.count("TransactionID") == 1 for t in texts)
    assert checks(result)[("transactions_files", "files_match_spec")].passed


def test_a_small_last_part_is_merged_into_the_one_before(tmp_path):
    import gzip

    from delivery_platform.formats.parts import PartWriter
    from delivery_platform.vendors.optimove import sizing

    rng = __import__("random").Random(3)
    lines = [f"{i},{rng.getrandbits(64):x}\n" for i in range(1500)]
    writer = PartWriter(tmp_path, lambda n: f"t_{n:03d}.csv.gz", header=b"id,v\n", max_bytes=9000,
                        gzip_level=6)
    writer.write_array(__import__("pyarrow").array(lines))
    parts = writer.finish()
    assert parts[-1].bytes < 6000 and len(parts) >= 2  # the writer alone leaves a small last part
    balanced = sizing.balance(parts, low=6000, high=40000, fmt="csv", con=duckdb.connect())
    assert len(balanced) == len(parts) - 1 and all(6000 <= p.bytes <= 40000 for p in balanced)
    text = b"".join(gzip.decompress(p.path.read_bytes()).split(b"\n", 1)[1] for p in balanced).decode()
    assert text == "".join(lines) and sum(p.rows for p in balanced) == len(lines)
    assert balanced[-1].md5 == __import__("hashlib").md5(balanced[-1].path.read_bytes()).hexdigest()


def optimove_warehouse(path, customers=(), transactions=()):
    return table_warehouse(path, {"optimove_customers": list(customers), "optimove_transactions": list(transactions)})


def customer(cid, updated, **kw):
    return {"customer_id": cid, "email": f"{cid}@example.com", "first_name": "A", "last_name": "B", "country": "gb",
            "registration_date": "2025-01-02", "birth_date": "1980-05-06", "opt_in_email": True,
            "last_updated": updated, **kw}


def txn(tid, updated, **kw):
    return {"transaction_id": tid, "customer_id": "C1", "transaction_ts": "2026-11-16 10:00:00", "amount": 12.5,
            "currency": "GBP", "product_id": "P1", "status": "completed", "last_updated": updated, **kw}


@pytest.fixture
def tiny(tmp_path, data_dir, monkeypatch):
    def make(customers=(), transactions=()):
        # no transactions at all would be a day the warehouse has not loaded (held): a later one
        # shows the loads have passed the test days
        transactions = transactions or [txn("T-LATER", "2026-11-20 23:00:00")]
        path = optimove_warehouse(tmp_path / "optimove.duckdb", customers, transactions)
        monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    return make


def test_incremental_windows_take_each_change_exactly_once(tiny, data_dir):
    tiny(customers=[customer("C1", "2026-11-17 00:00:00"), customer("C2", "2026-11-17 23:59:59"),
                    customer("C3", "2026-11-18 00:00:00"), customer("C4", "2026-11-16 23:59:59"),
                    customer("C5", "2026-11-18 12:00:00")],
         transactions=[txn("T1", "2026-11-17 08:00:00"), txn("T2", "2026-11-18 00:00:00")])
    seen = {}
    for day in ("2026-11-16", "2026-11-17", "2026-11-18"):
        result = run(partition=day, settings={"table_loads": {"customers": "incremental"}})
        assert result.success, day
        late = checks(result)[("customers_delivery", "before_data_ready_time")]
        assert late.passed is False and "after the data-ready time" in late.description  # days ago: late, a warning
        path = next((data_dir / "outbox/optimove/customers").glob(f"customers_{day.replace('-', '')}_*"))
        con = duckdb.connect()
        cols = ["CustomerID", "Email", "FirstName", "LastName", "Country", "RegistrationDate", "BirthDate",
                "OptInEmail", "LastUpdated"]
        seen[day] = [r[0] for r in con.execute(f"SELECT CustomerID FROM ({read_back_sql([str(path)], 'csv', cols)}) "
                                               "ORDER BY 1").fetchall()]
    assert seen == {"2026-11-16": ["C4"], "2026-11-17": ["C1", "C2"], "2026-11-18": ["C3", "C5"]}


def test_sentinel_birth_dates_become_blank(tiny, data_dir):
    tiny(customers=[customer("C1", "2026-11-17 10:00:00", birth_date="1900-01-01")])
    assert run().success
    import gzip
    text = gzip.decompress(next((data_dir / "outbox/optimove/customers").iterdir()).read_bytes()).decode()
    assert "1900-01-01" not in text and text.splitlines()[1].split(",")[6] == ""


@pytest.mark.parametrize("rows,table,rule", [
    ({"customers": [customer("C1", "2026-11-17 10:00:00"), customer("C1", "2026-11-17 11:00:00")]}, "customers",
     "field_uniqueness"),
    ({"transactions": [txn("T1", "2026-11-17 10:00:00", amount=-5)]}, "transactions", "greater_than_or_equal_to"),
    ({"transactions": [txn("T1", "2026-11-17 10:00:00", currency="£")]}, "transactions", "str_matches"),
    ({"customers": [customer("C1", "2026-11-17 10:00:00", first_name="=cmd|' /C calc'!A0")]}, "customers",
     "no_formula_prefix"),
])
def test_bad_rows_fail_clearly_and_nothing_is_delivered(tiny, data_dir, rows, table, rule, request):
    if rule == "no_formula_prefix":
        request.node.add_marker(pytest.mark.fault("warehouse-rows", "formula injection (=cmd|...) in Optimove customers.FirstName",
                                                  "the blocking spec check fails naming the column; nothing delivered"))
    tiny(**rows)
    result = run()
    assert not result.success
    check = checks(result)[(table, "spec")]
    assert not check.passed and rule in check.metadata["failed_rules"].value
    assert not (data_dir / "outbox" / "optimove" / table).exists()


def test_a_zip_request_is_refused(tiny, data_dir):
    tiny(customers=[customer("C1", "2026-11-17 10:00:00")])
    result = run(settings={"compression": "zip"})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "gzip only" in str(failure.event_specific_data.error.message)
    assert not (data_dir / "outbox").exists()


def test_the_spec_model_refuses_a_T_in_datetimes_and_sentinels():
    import pandas as pd

    from delivery_platform.validation import validate_frame_with_pandera
    from delivery_platform.vendors.optimove.spec import Customers

    frame = pd.DataFrame([{"CustomerID": "C1", "Email": None, "FirstName": None, "LastName": None, "Country": "GB",
                           "RegistrationDate": "1900-01-01", "BirthDate": None, "OptInEmail": "true",
                           "LastUpdated": "2026-11-17T10:00:00Z"}])
    failed = {(f.column, f.check.split("(")[0]) for f in validate_frame_with_pandera(frame, Customers).failures}
    assert ("LastUpdated", "str_matches") in failed and ("RegistrationDate", "notin") in failed


@pytest.mark.parametrize("ready,runs_at", [("08:00", "05:00"), ("8:00", "05:00"), ("03:45", "00:45"),
                                           ("02:00", "00:30"), ("00:15", "00:30"), ("23:30", "20:30")])
def test_one_ready_time_drives_the_schedule_without_wrapping_late(monkeypatch, ready, runs_at):
    """Three hours before the ready time, on the morning after the day; never the evening before
    (02:00 used to give 23:00, which requests the day before: 21 hours late)."""
    import datetime as dt

    monkeypatch.setenv("OPTIMOVE_DATA_READY_UTC", ready)
    schedule = build_defs("local").resolve_schedule_def("optimove_daily_schedule")
    hour, minute = (int(x) for x in runs_at.split(":"))
    assert schedule.cron_schedule == f"{minute} {hour} * * *"
    tick = dt.datetime(2026, 11, 21, hour, minute, tzinfo=dt.timezone.utc)
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-20"]  # the day that ended before the tick
    ready_at = dt.datetime.combine(dt.date(2026, 11, 21), dt.time(*(int(x) for x in ready.split(":"))),
                                   tzinfo=dt.timezone.utc)
    assert dt.timedelta(0) < ready_at - tick <= dt.timedelta(hours=3) or ready == "00:15"


def test_the_check_and_the_deadline_alert_read_the_same_ready_time(tiny, data_dir, monkeypatch, tmp_path):
    import datetime as dt

    from delivery_platform.alerts import AlertSinks, deadline_alerts
    from delivery_platform.alerts.sensors import AlertLog
    from delivery_platform.vendors import DEADLINES
    from delivery_platform.core import clock
    from delivery_platform.ledger import Ledger

    monkeypatch.setenv("OPTIMOVE_DATA_READY_UTC", "02:00")
    tiny(customers=[customer("C1", "2026-11-19 10:00:00")])
    log = AlertLog(tmp_path / "alerts.sqlite")
    before = dt.datetime(2026, 11, 20, 1, 59, tzinfo=dt.timezone.utc)
    after = dt.datetime(2026, 11, 20, 2, 1, tzinfo=dt.timezone.utc)
    optimove = [a for a in deadline_alerts(DEADLINES, Ledger(), log, AlertSinks(), before)
                if a.vendor == "optimove"]
    assert not [a for a in optimove if a.partition == "2026-11-19"]
    missed = [a for a in deadline_alerts(DEADLINES, Ledger(), log, AlertSinks(), after)
              if a.vendor == "optimove" and a.partition == "2026-11-19"]
    assert {a.deliverable for a in missed} == {"customers", "transactions"} and "02:00 UTC" in missed[0].title
    with clock.pinned("2026-11-20T01:00:00Z"):
        on_time = run(partition="2026-11-19")
    assert checks(on_time)[("customers_delivery", "before_data_ready_time")].passed
    monkeypatch.setenv("DELIVERY_DATA_DIR", str(tmp_path / "again"))
    with clock.pinned("2026-11-20T02:30:00Z"):
        late = run(partition="2026-11-19")
    check = checks(late)[("customers_delivery", "before_data_ready_time")]
    assert not check.passed and "2026-11-20 02:00 UTC" in check.description
