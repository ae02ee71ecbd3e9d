"""The code location loads, for every environment, the way `dagster dev` loads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.vendors import NAMES as VENDORS
from delivery_platform.warehouse.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("env", ["local", "production"])
def test_definitions_load_and_validate(env):
    defs = build_defs(env)
    dg.Definitions.validate_loadable(defs)
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert {dg.AssetKey(["warehouse", t.name]) for t in TABLES} <= keys


def test_warehouse_assets_carry_their_column_schema():
    defs = build_defs("local")
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for table in TABLES:
        spec = specs[dg.AssetKey(["warehouse", table.name])]
        assert spec.group_name == "warehouse"
        schema = spec.metadata["dagster/column_schema"]
        schema = getattr(schema, "schema", schema)  # TableSchema, or its metadata wrapper
        assert [c.name for c in schema.columns] == [c.name for c in table.columns]
        assert all(c.description for c in schema.columns)


def test_every_vendor_asset_and_check_is_in_its_vendor_pool():
    """The per-vendor run limit is a concurrency pool (deploy/dagster.yaml): a step outside it would let
    a launch from the asset graph or a backfill escape the limit. Status pages only read: no pool."""
    seen = set()
    for assets_def in build_defs("production").resolve_asset_graph().assets_defs:
        if not assets_def.is_executable:
            continue
        keys = set(assets_def.keys) | {c.asset_key for c in assets_def.check_keys}
        vendors = {next((p for p in k.path if p in VENDORS), None) for k in keys}
        assert len(vendors) == 1, keys
        vendor = vendors.pop()
        expected = None if {k.path[0] for k in keys} == {"status"} else vendor
        assert assets_def.op.pool == expected, (sorted(k.to_user_string() for k in keys), assets_def.op.pool)
        seen.add(assets_def.op.pool)
    assert seen == {*VENDORS, None}


def test_unknown_environment_is_refused_clearly():
    with pytest.raises(ValueError, match="unknown environment 'staging'"):
        build_defs("staging")


def test_workspace_yaml_loads_with_the_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    cli = Path(sys.executable).with_name("dagster")
    done = subprocess.run([str(cli), "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
