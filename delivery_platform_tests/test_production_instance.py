"""The production instance (deploy/dagster.yaml): a real PostgreSQL on 127.0.0.1, a partition run
against it, and the run read back."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform_tests.fixtures import require_or_fail
from delivery_platform_tests.servers import _free_port, _wait_port

ROOT = Path(__file__).resolve().parents[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="module")
def postgres():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = None
    require_or_fail(bool(initdb and pg_ctl and user), "PostgreSQL (initdb, pg_ctl and the postgres user)")
    base = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    os.chown(base, user.pw_uid, user.pw_gid)
    data, port = base / "data", _free_port()

    def as_postgres(*args):
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True,
                              timeout=120)

    as_postgres(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    as_postgres(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-o",
                f"-h 127.0.0.1 -p {port} -k {base}", "-w", "start")
    try:
        _wait_port(port)
        psql = _pg_bin("psql") or "psql"
        subprocess.run(["runuser", "-u", "postgres", "--", psql, "-h", "127.0.0.1", "-p", str(port), "-c",
                        "CREATE DATABASE dagster"], check=True, capture_output=True, timeout=60)
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USERNAME": "postgres",
               "DAGSTER_PG_PASSWORD": "unused-with-trust-auth", "DAGSTER_PG_DB": "dagster"}
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


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
    finally:
        instance.dispose()
