"""Optimove end state (issue 16, R13): the real daily job over 30 simulated days with late refunds,
customer changes, new and erased customers; after every day the replica of Optimove
(replicas/optimove.py, from the document) equals the warehouse."""

from __future__ import annotations

import datetime as dt
import random

from delivery_platform_tests.replicas.optimove import OptimoveReplica
from delivery_platform_tests.scenario import Scenario, calendar
from delivery_platform_tests.scenario import optimove_world as world

FIRST, DAYS = dt.date(2026, 10, 1), 30
KEYS = {"customers": "CustomerID", "transactions": "TransactionID"}


def held(replica: OptimoveReplica) -> dict[str, dict]:
    cols = {"customers": "Email", "transactions": "Status"}
    return {
        t: {k: (r[cols[t]], r["LastUpdated"]) for k, r in rows.items()} for t, rows in replica.tables.items()
    }


def test_optimove_holds_the_warehouse_after_every_day(tmp_path, data_dir, monkeypatch):
    path = world.create(tmp_path / "optimove-world.duckdb", FIRST)
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    scenario = Scenario(path)
    replica = OptimoveReplica(KEYS, {"customers": "full", "transactions": "incremental"})
    rng = random.Random(16)
    refunds_seen = erased = 0
    for day in calendar(FIRST, DAYS, at=dt.time(4)):  # before the 08:00 data-ready time
        with scenario.warehouse() as con:
            world.change_day(con, day.date, day.index, rng)
        result = scenario.run("optimove_daily_delivery", day.partition, at=day.runs_at)
        assert result.success, day.partition
        checks = {(c.asset_key.path[-1], c.check_name): c for c in result.get_asset_check_evaluations()}
        assert checks[("customers_delivery", "before_data_ready_time")].passed
        received = scenario.new_deliveries("optimove")
        assert received, day.partition
        for file in received:
            replica.apply(file)
        with scenario.warehouse() as con:
            truth = world.truth(con)
        assert held(replica) == truth, day.partition
        rows = {n: result.asset_materializations_for_node(f"optimove__{n}")[0].metadata for n in KEYS}
        assert rows["customers"]["load"].value == "full" and rows["customers"]["rows"].value == len(
            truth["customers"]
        )
        assert rows["transactions"]["load"].value == "incremental"
        assert (
            rows["transactions"]["rows"].value < len(truth["transactions"]) or day.index < 2
        )  # only the changes
        refunds_seen += sum(1 for r in replica.tables["transactions"].values() if r["Status"] == "refunded")
        erased = erased or (day.index % 7 == 6)
    assert refunds_seen > 0 and erased


def test_a_table_configured_incremental_upserts_and_keeps_erased_rows(tmp_path, data_dir, monkeypatch):
    """The per-table override: customers incremental. Optimove then keeps a customer the CRM
    erased (nothing in an incremental file says it is gone): the replica shows why full is the default."""
    path = world.create(tmp_path / "optimove-world.duckdb", FIRST)
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    monkeypatch.setenv("OPTIMOVE_TABLE_LOADS", "customers=incremental")
    scenario = Scenario(path)
    replica = OptimoveReplica(KEYS, {"customers": "incremental", "transactions": "incremental"})
    rng = random.Random(16)
    for day in calendar(FIRST - dt.timedelta(days=3), 10, at=dt.time(4)):
        with scenario.warehouse() as con:
            world.change_day(con, day.date, day.index, rng)
        result = scenario.run("optimove_daily_delivery", day.partition, at=day.runs_at)
        assert result.success
        meta = result.asset_materializations_for_node("optimove__customers")[0].metadata
        assert meta["load"].value == "incremental" and (
            day.index == 0 or meta["rows"].value == 3
        )  # 2 changed + 1 new
        for file in scenario.new_deliveries("optimove"):
            replica.apply(file)
    with scenario.warehouse() as con:
        truth = world.truth(con)
    customers = held(replica)["customers"]
    assert set(customers) > set(truth["customers"])  # the erased one is still held
    assert {k: v for k, v in customers.items() if k in truth["customers"]} == truth["customers"]
