"""A deliverable is configuration: a new Optimove table and a second Idomoo storyboard are described
in data (SQL, a pandera model, columns, a schedule) and the deliverable factory builds everything
else (assets, blocking checks, the job, the schedule, the retry policy, the delivery); they run end to
end to the destination with no shared code written for them."""

from __future__ import annotations

import csv
import gzip
import io

import dagster as dg
import duckdb
import pandera.pandas as pa

from delivery_platform import settings
from delivery_platform.core import clock
from delivery_platform.definitions import build_defs
from delivery_platform.destinations import destination_from_env
from delivery_platform.factory import build_deliverables, build_jobs
from delivery_platform.ledger import Ledger
from delivery_platform.resources import LedgerResource
from delivery_platform.vendors.optimove import assets as optimove
from delivery_platform.warehouse.resource import WarehouseResource

DAY = "2026-11-20"


class Products(pa.DataFrameModel):
    """A product catalogue, sent whole every day (a dimension table)."""

    ProductID: str = pa.Field(unique=True, str_matches=r"^\S+$", no_formula_prefix=())
    Name: str = pa.Field(no_formula_prefix=())
    Price: float = pa.Field(ge=0)
    LastUpdated: str = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")

    class Config:
        strict = True
        ordered = True


# the whole addition: the table's name, its warehouse table, its model, its columns, its load
PRODUCTS = optimove.Table(
    "products", "optimove_products", Products,
    "trim(product_id) AS ProductID, trim(name) AS Name, price AS Price, "
    "strftime(last_updated, '%Y-%m-%d %H:%M:%S') AS LastUpdated", "full", "LastUpdated")


def _products_warehouse(path, rows):
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE optimove_products (product_id VARCHAR, name VARCHAR, price DECIMAL(10, 2), "
                "last_updated TIMESTAMP)")
    con.executemany("INSERT INTO optimove_products VALUES (?, ?, ?, ?)", rows)
    con.close()
    return path


def _defs(chains):
    assets, checks = build_deliverables(chains)
    jobs, schedules = build_jobs("optimove", chains, "local")
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules, resources={
        "warehouse": WarehouseResource(), "ledger": LedgerResource(),
        "optimove_destination": destination_from_env("optimove"), "optimove_settings": optimove.OptimoveSettings()})


def test_a_third_optimove_table_from_configuration_alone(data_dir, tmp_path, monkeypatch):
    rows = [("P-1", "Tea", 3.5, "2026-11-02 08:00:00"), ("P-2", "Coffee", 4.25, "2026-11-20 17:30:00")]
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(_products_warehouse(tmp_path / "w.duckdb", rows)))
    defs = _defs([optimove.chain(PRODUCTS)])
    job = defs.resolve_job_def("optimove_daily_delivery")
    assert {s.name for s in defs.schedules} == {"optimove_daily_schedule"}
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert keys == {"optimove/products", "optimove/products_files", "optimove/products_delivery"}

    with clock.pinned("2026-11-21T06:00:00Z"):  # after the day closed, before the 08:00 data-ready time
        result = job.execute_in_process(partition_key=DAY, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"spec": True, "files_match_spec": True, "before_data_ready_time": True}
    [delivered] = Ledger().delivered("optimove", "products", DAY)
    sent = settings.outbox_dir() / "optimove" / delivered.file_name
    assert delivered.file_name == "products/products_20261120_001.csv.gz"
    body = list(csv.reader(io.StringIO(gzip.decompress(sent.read_bytes()).decode())))
    assert body == [["ProductID", "Name", "Price", "LastUpdated"], ["P-1", "Tea", "3.50", "2026-11-02 08:00:00"],
                    ["P-2", "Coffee", "4.25", "2026-11-20 17:30:00"]]


def test_the_new_table_is_held_by_its_own_spec(data_dir, tmp_path, monkeypatch):
    bad = [("P-1", "=HYPERLINK(1)", 3.5, "2026-11-02 08:00:00")]  # a formula would run in the client's sheet
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(_products_warehouse(tmp_path / "w.duckdb", bad)))
    job = _defs([optimove.chain(PRODUCTS)]).resolve_job_def("optimove_daily_delivery")
    result = job.execute_in_process(partition_key=DAY, instance=dg.DagsterInstance.ephemeral(),
                                    raise_on_error=False)
    [spec] = [c for c in result.get_asset_check_evaluations() if c.check_name == "spec"]
    assert not spec.passed and "no_formula_prefix" in spec.description and "Name" in spec.description
    assert Ledger().delivered("optimove", "products", DAY) == []  # blocking: nothing reached the vendor


def test_a_second_idomoo_storyboard_has_its_own_columns_job_and_schedule(data_dir):
    defs = build_defs("local")
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["idomoo_renewal_daily_schedule"].hour_of_day == 7  # its own hour
    assert schedules["idomoo_daily_schedule"].hour_of_day == 5
    job = defs.resolve_job_def("idomoo_renewal_daily_delivery")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert keys == {"idomoo/renewal_recipients", "idomoo/renewal_data_file", "idomoo/renewal_data_file_delivery"}
    main = {k.to_user_string() for k in defs.resolve_job_def("idomoo_daily_delivery").asset_layer.selected_asset_keys}
    assert not keys & main  # each storyboard's job runs only its own chain

    result = job.execute_in_process(partition_key="2026-11-19", instance=dg.DagsterInstance.ephemeral())
    assert result.success
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert failed == ["freshness_check"] or failed == []  # uploaded two days after its send date: late
    [delivered] = Ledger().delivered("idomoo", "renewal_data_file", "2026-11-19")
    assert delivered.file_name.startswith("Uploads/acme_renewal_20261121_")  # its project, the upload time
    sent = settings.outbox_dir() / "idomoo" / delivered.file_name
    header = sent.read_text().splitlines()[0]
    assert header == "RecipientID,FirstName,Email,Points"  # its own columns
    assert delivered.rows == len(sent.read_text().splitlines()) - 1 > 0
