"""Issue 22 item 10: the Lotame job spills to disk instead of holding the day in memory.

A 100 000-user day under a 64 MB DuckDB limit, about 670 bytes a user (a 2 M-user day under the
default 512 MB has 270, a 10 M-user day 54; DuckDB's gzip JSON reader, in the file check, needs
32 MB on its own): before the work was cut into userid ranges, the
records query (ordered list aggregates, a full join, set operations over the whole day) ran out
of memory here. It must deliver, in both modes, the same bytes as the same days under the
default limit (one range).
"""

from __future__ import annotations

import hashlib

import dagster as dg
import pytest

from delivery_platform.warehouse.seed import SeedPlan, seed
from delivery_platform_tests.fixtures import END_DATE

USERS, TINY = 100_000, "64MB"
DAYS = ("2026-11-19", "2026-11-20")


@pytest.fixture(scope="module")
def lotame_only(tmp_path_factory):
    path = tmp_path_factory.mktemp("lotame-memory") / "lotame.duckdb"
    seed(path, SeedPlan(days=3, scale=1, end_date=END_DATE, lotame_users=USERS,
                        tables=("lotame_users", "lotame_segment_memberships")), threads=2)
    return path


def deliver_days(data, mode: str) -> tuple[dict, list[dict]]:
    """Run the job for DAYS; the outbox's files (name -> MD5) and each day's staged metadata."""
    from delivery_platform.definitions import build_defs

    job = build_defs("local").resolve_job_def("lotame_daily_delivery")
    instance, staged = dg.DagsterInstance.ephemeral(), []
    for day in DAYS:
        config = {"resources": {"lotame_settings": {"config": {"mode": mode}}}}
        result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False,
                                        run_config=config)
        errors = [str(e.event_specific_data.error.message)[:300]
                  for e in result.all_events if e.is_step_failure]
        assert result.success, (day, errors)
        assert all(c.passed for c in result.get_asset_check_evaluations()), day
        meta = result.asset_materializations_for_node("lotame__segment_memberships")[0].metadata
        staged.append({k: v.value for k, v in meta.items()})
    outbox = data / "outbox" / "lotame"
    return {str(p.relative_to(outbox)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(outbox.rglob("*")) if p.is_file()}, staged


@pytest.mark.parametrize("mode", ["comprehensive", "delta"])
def test_a_day_far_bigger_than_the_duckdb_memory_limit_spills_and_sends_the_same_bytes(
        data_dir, tmp_path, monkeypatch, lotame_only, mode):
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(lotame_only))
    monkeypatch.setenv("DELIVERY_DUCKDB_MEMORY_LIMIT", TINY)
    tiny_files, tiny_staged = deliver_days(data_dir, mode)
    assert [s["mode"] for s in tiny_staged] == ["comprehensive", mode]
    assert tiny_staged[0]["rows"] > 80_000 and tiny_staged[1]["userid_ranges"] > 1

    reference = tmp_path / "reference"  # the same days with the default limit: one range
    reference.mkdir()
    monkeypatch.setenv("DELIVERY_DATA_DIR", str(reference))
    monkeypatch.delenv("DELIVERY_DUCKDB_MEMORY_LIMIT")
    files, staged = deliver_days(reference, mode)
    assert [s["userid_ranges"] for s in staged] == [1, 1]
    assert tiny_files == files and len(files) == 6
    assert [{k: v for k, v in s.items() if k != "userid_ranges"} for s in tiny_staged] == \
        [{k: v for k, v in s.items() if k != "userid_ranges"} for s in staged]
