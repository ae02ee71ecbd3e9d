"""Idomoo over 20 simulated send dates, with flags on and off: every uploaded row comes back
exactly once, through PURL files caught half-written, PURL files re-sent days later, error files,
a daemon killed mid-tick and a daemon restarted without its cursor."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import dagster as dg
import duckdb
import pytest

from delivery_platform.core import clock
from delivery_platform.vendors.idomoo import (
    downloads_sensor,
    purl_every_row_came_back,
    purl_files,
    purl_links_are_https,
    purl_results,
)
from delivery_platform.vendors.idomoo.assets import settings_from_env
from delivery_platform_tests.replicas.idomoo import IdomooReplica
from delivery_platform_tests.scenario import Scenario
from delivery_platform_tests.warehouses import table_warehouse

FIRST, DAYS, PER_DAY = dt.date(2026, 10, 1), 20, 3
JOB = "idomoo_daily_delivery"


def recipients() -> list[dict]:
    return [
        {
            "recipient_id": f"R{d:02d}{i}",
            "send_date": FIRST + dt.timedelta(days=d),
            "first_name": "Zoë",
            "last_name": "Bakker",
            "email": f"r{d}.{i}@example.com",
            "language": "nl",
            "offer_code": "WELCOME5",
            "city": "Utrecht",
            "points_balance": 100 + i,
        }
        for d in range(DAYS)
        for i in range(PER_DAY)
    ]


def keys_in(folder) -> Counter:
    """Recipient keys across every stored PURL (or error) table: the newest version of each file."""
    if not folder.exists() or not list(folder.glob("*.parquet")):
        return Counter()
    rows = duckdb.connect().execute(f"SELECT RecipientID FROM read_parquet('{folder}/*.parquet')").fetchall()
    return Counter(r[0] for r in rows)


@pytest.mark.parametrize("flags", [True, False], ids=["flags-on", "flags-off"])
def test_every_uploaded_row_comes_back_exactly_once(data_dir, tmp_path, monkeypatch, flags):
    warehouse = table_warehouse(tmp_path / "idomoo.duckdb", {"idomoo_recipients": recipients()})
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(warehouse))
    scenario = Scenario(warehouse)
    settings = settings_from_env().model_copy(update={"flags": flags})
    resources = {
        "idomoo_destination": scenario.defs.resources["idomoo_destination"],
        "idomoo_settings": settings,
        "ledger": scenario.defs.resources["ledger"],
        "warehouse": scenario.defs.resources["warehouse"],
    }
    replica = IdomooReplica(data_dir / "outbox" / "idomoo", flags=flags)
    state = {"cursor": None, "previous": None, "launched": set(), "runs": []}

    def tick(at: dt.datetime) -> list:
        """One sensor evaluation, then the runs Dagster would launch (a run key runs once, forever)."""
        with clock.pinned(at):
            result = downloads_sensor(
                dg.build_sensor_context(instance=scenario.instance, cursor=state["cursor"]),
                resources["idomoo_destination"],
                settings,
            )
        state["previous"], state["cursor"] = state["cursor"], result.cursor
        fresh = [r for r in result.run_requests if r.run_key not in state["launched"]]
        for request in fresh:
            state["launched"].add(request.run_key)
            scenario.instance.add_dynamic_partitions(purl_files.name, [request.partition_key])
            run = dg.materialize(
                [purl_results, purl_links_are_https, purl_every_row_came_back],
                resources=resources,
                partition_key=request.partition_key,
                instance=scenario.instance,
                tags=request.tags,
                raise_on_error=False,
            )
            assert run.success, request.partition_key
            state["runs"].append(run)
        return fresh

    purls, expected, events = [], Counter(), Counter()
    for d in range(DAYS):
        day = FIRST + dt.timedelta(days=d)
        morning = dt.datetime.combine(day, dt.time(5), tzinfo=dt.timezone.utc)
        assert scenario.run(JOB, day.isoformat(), at=morning).success, day
        [upload] = scenario.new_deliveries("idomoo")
        assert upload.name == f"Uploads/acme_welcome_{day:%Y%m%d}_050000_01.csv"  # on its send date
        fail = (f"R{d:02d}0",) if d % 5 == 3 else ()
        halves = d % 4 == 1
        purls.append(replica.render(upload, fail_keys=fail, halves=halves))
        later = morning + dt.timedelta(hours=1)
        if halves:
            assert tick(later) == []  # a PURL file still being written is never taken in
            replica.finish()
            events["half-written"] += 1
        for minutes in (2, 4):
            tick(later + dt.timedelta(minutes=minutes))
        if (
            d % 6 == 5
        ):  # an older PURL file again, with an old time: taken in again, its rows still counted once
            replica.resend(purls[d - 3])
            assert sum(len(tick(later + dt.timedelta(minutes=m))) for m in (6, 8)) == 1
            events["resent"] += 1
        if d % 7 == 3:  # the daemon dies mid-tick: the cursor of the tick before is evaluated again
            state["cursor"] = state["previous"]
            assert tick(later + dt.timedelta(minutes=10)) == []
            events["killed mid-tick"] += 1
        if d % 7 == 6:  # restarted with no cursor at all: everything is seen afresh, nothing runs twice
            state["cursor"] = None
            assert (
                tick(later + dt.timedelta(minutes=12)) == [] and tick(later + dt.timedelta(minutes=14)) == []
            )
            events["restart without cursor"] += 1
        events["error files"] += bool(fail)
        expected.update(f"R{d:02d}{i}" for i in range(PER_DAY))
        # Idomoo rendered (or reported failed) each uploaded row once ...
        assert replica.videos + replica.failed == expected, day
        # ... and we hold each of them exactly once: in a PURL table or an error table, nowhere twice
        returns = data_dir / "returns"
        ours = keys_in(returns / "idomoo_purls") + keys_in(returns / "idomoo_errors")
        assert ours == expected, (
            f"after {day}: {dict(ours - expected)} extra, {dict(expected - ours)} missing"
        )
    # the check fails exactly for the PURL files whose batch had an error file (re-sent ones included)
    with_errors = {f"Downloads/{purls[d].name}" for d in range(DAYS) if d % 5 == 3}
    for run in state["runs"]:
        [check] = [c for c in run.get_asset_check_evaluations() if c.check_name == "every_row_came_back"]
        errors = run.dagster_run.tags["source_file"] in with_errors
        assert check.passed is not errors and ("1 rows in Idomoo's error file" in check.description) is errors
    assert len(state["runs"]) == DAYS + events["resent"] and events["error files"] >= 4
    assert events["half-written"] >= 4 and events["resent"] >= 3 and events["killed mid-tick"] >= 2
    assert events["restart without cursor"] >= 2
