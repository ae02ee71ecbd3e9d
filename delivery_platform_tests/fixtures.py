"""Fixtures shared by every suite: an isolated data folder and a small seeded warehouse."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from delivery_platform.warehouse.seed import SeedPlan, seed

# A fixed calendar so file names, partitions and golden bytes never depend on today.
END_DATE = dt.date(2026, 11, 20)
SMALL_PLAN = SeedPlan(days=10, scale=0.05, end_date=END_DATE, seed=7)


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory) -> Path:
    """A small deterministic warehouse built once per session (read-only to tests)."""
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    seed(path, SMALL_PLAN, threads=2)
    return path


@pytest.fixture
def data_dir(tmp_path, monkeypatch, small_warehouse) -> Path:
    """Point every DELIVERY_* path at a fresh folder, with the small warehouse in it."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("DELIVERY_DATA_DIR", str(data))
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(small_warehouse))
    for name in ("DELIVERY_LEDGER_PATH", "DELIVERY_LEDGER_URL", "DELIVERY_STAGING_DIR", "DELIVERY_OUTBOX_DIR",
                 "DELIVERY_RETURNS_DIR"):
        monkeypatch.delenv(name, raising=False)
    for key in list(os.environ):
        if key.startswith("DELIVERY_") and key.endswith("_DESTINATION"):
            monkeypatch.delenv(key)
    return data


def require_or_fail(ok: bool, what: str) -> None:
    """In CI a missing test dependency is a failure, never a skip."""
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is missing under CI=true: `make test` should have installed it")
    pytest.skip(f"{what} is missing (run `make test-deps`)")


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory) -> Path:
    """The instance test_browser's `ui` serves (a fixture here, so every module importing `ui` finds it);
    a module needing another dagster.yaml defines its own `dagster_home`."""
    home = tmp_path_factory.mktemp("ui") / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def wait_for(predicate, timeout: float = 90.0, what: str = "condition"):
    """Poll `predicate` until it returns something true (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
