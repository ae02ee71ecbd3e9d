"""The embedded warehouse: deterministic, shaped as schema.py says, messy where real data is."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from delivery_platform.warehouse.schema import TABLES
from delivery_platform.warehouse.seed import SeedPlan, seed, table_checksums

from .fixtures import SMALL_PLAN


def test_seed_is_deterministic(tmp_path, small_warehouse):
    again = tmp_path / "again.duckdb"
    seed(again, SMALL_PLAN, threads=1)  # other thread count, same tables
    assert table_checksums(again) == table_checksums(small_warehouse)
    other = tmp_path / "other.duckdb"
    seed(other, SeedPlan(days=SMALL_PLAN.days, scale=SMALL_PLAN.scale, end_date=SMALL_PLAN.end_date, seed=8))
    assert table_checksums(other) != table_checksums(small_warehouse)


def test_tables_match_the_schema_specs(small_warehouse):
    con = duckdb.connect(str(small_warehouse), read_only=True)
    for table in TABLES:
        described = con.execute(f"DESCRIBE {table.name}").fetchall()
        assert [(r[0], r[1]) for r in described] == [(c.name, c.type) for c in table.columns], table.name
        assert con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0] > 0, table.name


def test_source_data_carries_real_world_mess(small_warehouse):
    con = duckdb.connect(str(small_warehouse), read_only=True)
    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    assert q("SELECT count(*) FROM ispot_conversion_events WHERE client_ip LIKE '%:%'") > 0  # IPv6
    assert q("SELECT count(*) FROM ispot_conversion_events WHERE loaded_at::DATE > event_ts::DATE") > 0  # late
    assert q("SELECT count(*) FROM ispot_conversion_events WHERE platform <> lower(trim(platform))") > 0
    assert q("SELECT count(*) FROM crm_contacts WHERE email_raw <> lower(trim(email_raw))") > 0
    assert q("SELECT count(*) FROM crm_contacts WHERE phone_raw LIKE '+%' AND phone_raw LIKE '% %'") > 0
    assert q("SELECT count(*) FROM crm_contacts WHERE phone_raw LIKE '0%' AND phone_raw NOT LIKE '00%'") > 0
    assert q("SELECT count(*) FROM idomoo_recipients WHERE regexp_matches(first_name, '[^\\x00-\\x7F]')") > 0
    assert q("SELECT count(*) FROM optimove_customers WHERE birth_date = DATE '1900-01-01'") > 0
    assert q("SELECT count(*) FROM lotame_users WHERE idtype <> upper(idtype)") > 0


def test_seed_command_line(tmp_path):
    path = tmp_path / "cli.duckdb"
    out = subprocess.run(
        [sys.executable, "-m", "delivery_platform.warehouse", "seed", "--days", "2", "--scale", "0.01",
         "--end-date", "2026-11-20", "--path", str(path)],
        capture_output=True, text=True, check=True,
    )
    assert "ispot_conversion_events" in out.stdout and path.exists()
    con = duckdb.connect(str(path), read_only=True)
    days = con.execute("SELECT count(DISTINCT event_ts::DATE) FROM ispot_conversion_events").fetchone()[0]
    assert days == 2
    assert con.execute("SELECT count(*) FROM ispot_conversion_events").fetchone()[0] == 2 * 200


def test_scale_knob_reaches_ten_million_events_a_day():
    # The generator is pure SQL over range(): the row count is exact and nothing is held in Python.
    plan = SeedPlan(days=1, scale=500, end_date=SMALL_PLAN.end_date)
    from delivery_platform.warehouse.seed import ISPOT_EVENTS_PER_DAY

    assert plan.n(ISPOT_EVENTS_PER_DAY) == 10_000_000


def test_the_duckdb_memory_limit_is_configurable(monkeypatch, data_dir):
    from delivery_platform.warehouse.resource import WarehouseResource

    monkeypatch.setenv("DELIVERY_DUCKDB_MEMORY_LIMIT", "300MB")
    with WarehouseResource().connect(attach_warehouse=False) as con:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.replace(" ", "") in ("286.1MiB", "300.0MB", "286.0MiB"), limit
    # a step with large buffers of its own (iSpot's write pass) takes a share of it
    with WarehouseResource().connect(attach_warehouse=False, memory_share=0.75) as con:
        share = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert share.replace(" ", "") == "214.0MiB", share  # 3/4 of 286.1 MiB, whole MiB
    monkeypatch.setenv("DELIVERY_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="DELIVERY_DUCKDB_MEMORY_LIMIT='lots'"):
        with WarehouseResource().connect(attach_warehouse=False):
            pass


def test_staged_rows_are_written_with_a_fast_codec(tmp_path):
    # the staged rows are scratch read several times a run: the cheaper codec (copy_to_parquet says why)
    from delivery_platform.warehouse.resource import copy_to_parquet

    con = duckdb.connect()
    target = tmp_path / "rows.parquet"
    assert copy_to_parquet(con, "SELECT range AS n, range::VARCHAR AS s FROM range(1000)", target) == 1000
    codecs = {c for (c,) in con.execute(f"SELECT DISTINCT compression FROM parquet_metadata('{target}')").fetchall()}
    assert codecs == {"SNAPPY"}, codecs
