"""The first partition is configuration, else the warehouse's first data day, else a default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from delivery_platform import partitions
from delivery_platform_tests.fixtures import SMALL_PLAN

ROOT = Path(__file__).resolve().parents[1]


def test_the_variable_wins(small_warehouse):
    assert partitions.first_day({"DELIVERY_FIRST_DAY": "2026-10-03"}, small_warehouse) == (
        "2026-10-03",
        "DELIVERY_FIRST_DAY",
    )


def test_a_bad_variable_is_refused_clearly(small_warehouse):
    with pytest.raises(ValueError, match="DELIVERY_FIRST_DAY='10/03/2026' is not a date"):
        partitions.first_day({"DELIVERY_FIRST_DAY": "10/03/2026"}, small_warehouse)


def test_the_seeded_warehouse_gives_its_first_day(small_warehouse):
    day, source = partitions.first_day({}, small_warehouse)
    assert day == SMALL_PLAN.start_date.isoformat() and source.startswith("warehouse ")


def test_without_seed_info_the_earliest_event_day_is_used(tmp_path):
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE ispot_conversion_events AS SELECT TIMESTAMP '2026-10-07 23:59:00' AS event_ts"
        )
        con.execute("CREATE TABLE idomoo_recipients AS SELECT DATE '2026-10-09' AS send_date")
    assert partitions.first_day({}, path)[0] == "2026-10-07"


def test_a_missing_or_broken_warehouse_falls_back_to_the_default(tmp_path):
    assert partitions.first_day({}, tmp_path / "none.duckdb")[0] == partitions.DEFAULT_FIRST_DAY
    broken = tmp_path / "broken.duckdb"
    broken.write_text("not a database")
    assert partitions.first_day({}, broken)[0] == partitions.DEFAULT_FIRST_DAY


def test_the_loaded_definitions_start_where_the_warehouse_starts(small_warehouse, tmp_path):
    """In a fresh process without the variable (as `dagster dev` loads it), every daily asset's first
    partition is the warehouse's first day; Idomoo's send dates too."""
    env = {k: v for k, v in os.environ.items() if k != "DELIVERY_FIRST_DAY"}
    env.update(DELIVERY_WAREHOUSE_PATH=str(small_warehouse), DELIVERY_DATA_DIR=str(tmp_path))
    code = (
        "from delivery_platform.definitions import defs\n"
        "firsts = {s.partitions_def.get_first_partition_key() for s in defs.resolve_all_asset_specs()\n"
        "          if s.partitions_def is not None and hasattr(s.partitions_def, 'start')}\n"
        "print(sorted(firsts))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str([SMALL_PLAN.start_date.isoformat()])
