"""The returns pipeline: a new feed is a description, and gets the watching, versioning, quarantine,
atomic Parquet and checks that Idomoo's and dA's feeds have."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import dagster as dg
import duckdb

from delivery_platform.core.sql import sql_literal
from delivery_platform.destinations.config import LocalDestinationConfig
from delivery_platform.destinations.resource import DestinationResource
from delivery_platform.returns.pipeline import FeedCheck, Parsed, Refused, Rejected, ReturnFeed, build_return_defs, \
    evaluate
from delivery_platform.warehouse.resource import copy_to_parquet


def _recognise(name: str, _settings) -> str | Refused | None:
    if name.endswith(".tmp"):
        return None  # still being written by the vendor: not ours to look at
    if not name.endswith(".csv"):
        return Refused(f"not taking in {name!r}: bounces are .csv files")
    return name.replace("/", "~")


def _parse(intake) -> Parsed:
    header = intake.kept.read_text().split("\n", 1)[0].strip().split(",")
    if header != ["email_sha256", "bounced_at"]:
        raise Rejected(f"header {header} is not email_sha256,bounced_at")
    con = duckdb.connect()
    rows = copy_to_parquet(con, f"SELECT * FROM read_csv({sql_literal(str(intake.kept))}, header = true, "
                                "all_varchar = true)", intake.staged)
    return Parsed(rows)


def _hashes_only(context, rows, _resources) -> dg.AssetCheckResult:
    bad = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(rows))}) "
                                   "WHERE NOT regexp_full_match(email_sha256, '[0-9a-f]{64}')").fetchone()[0]
    return dg.AssetCheckResult(passed=bad == 0, description=f"{bad} rows without a SHA-256",
                               metadata={"bad": bad})


# the whole feed: where, what, how to read it, what to check
BOUNCES = ReturnFeed(
    vendor="acme", asset="bounces", table="acme_bounces", partitions="acme_bounce_files",
    sensor="acme_bounces_sensor", title="ACME bounce file", source="acme_returns",
    recognise=_recognise, parse=_parse, alerts=False,
    checks=(FeedCheck("hashes_only", "Every row names a SHA-256, never an address.", _hashes_only, blocking=True),),
)


def _tick(defs: dg.Definitions, instance, cursor=None):
    # the built sensor's tick, with its resources as the daemon gives them (evaluate_tick cannot add
    # dynamic partitions outside a daemon: the Dagster notes)
    result = evaluate(BOUNCES, dg.build_sensor_context(instance=instance, cursor=cursor), dict(defs.resources))
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _ingest(defs, instance, resources, request):
    return dg.materialize([*defs.assets, *defs.asset_checks], partition_key=request.partition_key,
                          instance=instance, tags=request.tags, resources=resources, raise_on_error=False)


def test_a_new_feed_is_only_a_description(data_dir, tmp_path):
    drop = tmp_path / "acme-drop"
    drop.mkdir()
    good = "email_sha256,bounced_at\n" + "a" * 64 + ",2026-11-20\n"
    (drop / "b1.csv").write_text(good)
    (drop / "notes.txt").write_text("hello")
    (drop / "b2.csv.tmp").write_text("half")
    resources = {"acme_returns": DestinationResource(vendor="acme_returns", store=LocalDestinationConfig(root=str(drop)))}
    defs = build_return_defs(BOUNCES, resources=resources)
    [sensor] = defs.sensors
    assert sensor.name == "acme_bounces_sensor" and sensor.required_resource_keys == {"acme_returns"}
    assert {k.name for k in defs.resolve_asset_graph().asset_check_keys} == {"hashes_only"}
    instance = dg.DagsterInstance.ephemeral()

    first = _tick(defs, instance)
    assert [r.partition_key for r in first.run_requests] == ["b1.csv"]
    run = _ingest(defs, instance, resources, first.run_requests[0])
    assert run.success and all(c.passed for c in run.get_asset_check_evaluations())
    stored = data_dir / "returns" / "acme_bounces" / "b1.csv.parquet"
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{stored}')").fetchone()[0] == 1
    assert (data_dir / "received" / "acme" / "b1.csv").read_text() == good
    assert _tick(defs, instance, first.cursor).run_requests == []  # taken in once

    # the same name re-sent with other bytes: a new version, a new run; the earlier bytes kept aside
    fixed = good + "b" * 64 + ",2026-11-21\n"
    (drop / "b1.csv").write_text(fixed)
    again = _tick(defs, instance, first.cursor)
    assert [r.partition_key for r in again.run_requests] == ["b1.csv"]
    assert again.run_requests[0].run_key != first.run_requests[0].run_key
    assert _ingest(defs, instance, resources, again.run_requests[0]).success
    aside = data_dir / "received" / "acme" / f"b1.csv~{hashlib.md5(good.encode()).hexdigest()[:12]}"
    assert aside.read_text() == good and (data_dir / "received" / "acme" / "b1.csv").read_text() == fixed
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{stored}')").fetchone()[0] == 2

    # a malformed file: quarantined, the run fails naming file and rule, nothing stored, nothing dropped
    (drop / "b3.csv").write_text("email,when\nx@example.com,2026-11-20\n")
    third = _tick(defs, instance, again.cursor)
    run = _ingest(defs, instance, resources, third.run_requests[0])
    assert not run.success
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "ACME bounce file b3.csv" in message and "is not email_sha256,bounced_at" in message, message
    assert (data_dir / "quarantine" / "acme" / "b3.csv").exists() and (drop / "b3.csv").exists()
    assert not (data_dir / "returns" / "acme_bounces" / "b3.csv.parquet").exists()

    # a row the feed's check refuses fails the blocking check on that run's own rows
    (drop / "b4.csv").write_text("email_sha256,bounced_at\nx@example.com,2026-11-20\n")
    fourth = _tick(defs, instance, third.cursor)
    run = _ingest(defs, instance, resources, fourth.run_requests[0])
    [check] = run.get_asset_check_evaluations()
    assert not check.passed and check.metadata["bad"].value == 1
    assert json.loads(fourth.cursor)["taken"]  # the cursor is what was seen, per file


def test_production_definitions_never_import_the_simulators():
    code = ("import sys, delivery_platform.definitions; "
            "print(sorted(m for m in sys.modules if m.startswith(('delivery_platform.simulators', "
            "'delivery_platform.demo'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout
