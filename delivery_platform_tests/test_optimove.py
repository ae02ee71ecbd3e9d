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
    con = duckdb.connect(str(warehouse), read_only=True)
    key = "transaction_id" if table == "transactions" else "customer_id"
    rows = con.execute(f"SELECT {key} FROM optimove_{table} WHERE last_updated >= DATE '{partition}' "
                       f"AND last_updated < DATE '{partition}' + INTERVAL 1 DAY ORDER BY 1").fetchall()
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


def test_a_tiny_target_splits_gzip_parts_near_the_target(data_dir):
    result = run(partition="2026-11-18", settings={"format": "csv", "target_file_bytes": 2000, "gzip_level": 1})
    assert result.success
    meta = result.asset_materializations_for_node("optimove__transactions_files")[0].metadata
    assert meta["file_count"].value > 2
    parts = sorted((data_dir / "outbox" / "optimove" / "transactions").iterdir())
    import gzip
    header = None
    for part in parts:
        text = gzip.decompress(part.read_bytes()).decode()
        lines = text.split("\n")
        header = header or lines[0]
        assert lines[0] == header and text.endswith("\n")
        assert part.stat().st_size < 2000 * 1.5
    assert checks(result)[("transactions_files", "files_match_spec")].passed


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
        result = run(partition=day)
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
