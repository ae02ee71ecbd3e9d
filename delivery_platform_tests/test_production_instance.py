"""The production instance (deploy/dagster.yaml): a real PostgreSQL on 127.0.0.1, a partition run
against it, and the run read back."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postgres(postgres_server):
    """The instance's database on the suite's throwaway PostgreSQL (servers.py), as DAGSTER_PG_* variables."""
    url = postgres_server.new_database("dagster")
    yield {"DAGSTER_PG_HOST": postgres_server.host, "DAGSTER_PG_PORT": str(postgres_server.port),
           "DAGSTER_PG_USERNAME": postgres_server.user, "DAGSTER_PG_PASSWORD": postgres_server.password,
           "DAGSTER_PG_DB": url.rsplit("/", 1)[1],
           # the ledger and alert log in the instance's database, in their own schema (core/db.py)
           "DELIVERY_LEDGER_URL": url}


def test_a_partition_runs_against_the_postgres_instance_and_is_read_back(postgres, data_dir, tmp_path, monkeypatch):
    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        # the per-vendor limit: a pool per vendor, held for the whole run (docs/operating.md)
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.pool_granularity.value == "run"
        assert concurrency.pool_config.default_pool_limit == 2
        assert concurrency.run_queue_config.max_concurrent_runs == 8
        tag_limits = concurrency.run_queue_config.tag_concurrency_limits
        assert [limit["key"] for limit in tag_limits] == ["warehouse_write"]
        job = build_defs("production").resolve_job_def("ispot_daily_delivery")
        result = job.execute_in_process(partition_key="2026-11-19", instance=instance)
        assert result.success
        again = dg.DagsterInstance.from_config(str(home))  # a second process's view of the same storage
        run = again.get_run_by_id(result.run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == "2026-11-19"
        assert set(run.run_op_concurrency.all_pools) == {"ispot"}  # what the queue counts against the limit
        materialized = again.get_latest_materialization_event(dg.AssetKey(["ispot", "conversions_delivery"]))
        assert materialized is not None and materialized.run_id == result.run_id
        again.dispose()
        ledger = Ledger()
        assert ledger.store.kind == "postgresql"
        assert [d.status for d in ledger.history("ispot", "conversions")] == ["delivered"]
    finally:
        instance.dispose()
