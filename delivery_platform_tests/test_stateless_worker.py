"""Issue 21: with DELIVERY_STATE_URL set, no run keeps what a later run needs on the worker's disk.

A day is delivered for Lotame, digitalAudience and Idomoo with state in S3 (the moto server), the
worker's data folder is wiped, and the next day's Lotame delta, the dA update and the Idomoo and dA
returns reconciliation are still right. The ledger and the alert log are in PostgreSQL
(DELIVERY_LEDGER_URL): nothing a later run needs is on the worker's disk.
"""

from __future__ import annotations

import shutil

import dagster as dg
import duckdb

from delivery_platform import simulators
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform import receipts
from delivery_platform.simulators.digital_audience import simulate_match_export
from delivery_platform.simulators.idomoo import simulate
from delivery_platform.state_store import state_store
from delivery_platform.vendors import deliverable
from delivery_platform.vendors.digital_audience.matches import inbox_resource, match_export, \
    match_export_sensor, match_files, matches_known_records
from delivery_platform.vendors.idomoo.assets import settings_from_env as idomoo_settings
from delivery_platform.vendors.idomoo.downloads import downloads_sensor, purl_every_row_came_back, purl_files, \
    purl_links_are_https, purl_results

LOTAME = ("2026-11-12", "2026-11-14")
DA = ("2026-11-14", "2026-11-15")
IDOMOO = "2026-11-15"


def daily(vendor: str, partition: str, instance, config: dict | None = None) -> dg.ExecuteInProcessResult:
    job = build_defs("local").resolve_job_def(f"{vendor}_daily_delivery")
    result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False,
                                    run_config=config)
    assert result.success, f"{vendor} {partition}"
    return result


def meta(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def checks(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def wipe(folder) -> None:
    """The worker is replaced: nothing of its data folder is left."""
    shutil.rmtree(folder)
    folder.mkdir()


def test_a_wiped_worker_still_computes_the_next_day_from_object_storage(data_dir, tmp_path, monkeypatch,
                                                                        s3_server, postgres_server):
    env = s3_server.env("state")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DELIVERY_STATE_URL", f"s3://{env['DELIVERY_STATE_S3_BUCKET']}/platform")
    monkeypatch.setenv("DELIVERY_LEDGER_URL", postgres_server.new_database("stateless"))  # not the worker's
    monkeypatch.setenv("DELIVERY_OUTBOX_DIR", str(tmp_path / "vendors"))  # the vendors' side, not the worker's
    instance = dg.DagsterInstance.ephemeral()  # the instance database outlives the worker
    lotame = {"resources": {"lotame_settings": {"config": {"mode": "delta"}}}}

    first = daily("lotame", LOTAME[0], instance, lotame)
    assert meta(first, "lotame__segment_memberships")["mode"] == "comprehensive"
    onboarding = daily("digital_audience", DA[0], instance)
    assert meta(onboarding, "digital_audience__crm_records")["mode"] == "onboarding"
    daily("idomoo", IDOMOO, instance)

    wipe(data_dir)

    # Idomoo: the send date launched again on the fresh worker rebuilds the same file under the name
    # already uploaded, so nothing new goes up (the manifest that kept the name was in staging)
    daily("idomoo", IDOMOO, instance)
    assert len(list((tmp_path / "vendors" / "idomoo" / "Uploads").glob("acme_welcome_*"))) == 1

    # Lotame: a delta against the file set delivered before the wipe, replayed from S3 and proven
    second = daily("lotame", LOTAME[1], instance, lotame)
    memberships = meta(second, "lotame__segment_memberships")
    assert (memberships["mode"], memberships["previous_delivery"]) == ("delta", LOTAME[0])
    assert checks(second)["consistent_with_deliveries"].passed
    # dA: an update against the contact set delivered before the wipe, not a second onboarding
    update = daily("digital_audience", DA[1], instance)
    records = meta(update, "digital_audience__crm_records")
    assert records["mode"] == "update"
    assert records["rows"] < meta(onboarding, "digital_audience__crm_records")["rows"]

    wipe(data_dir)

    # Idomoo answers the upload made before the wipes: every uploaded row is reconciled
    s = idomoo_settings()
    assert simulate(tmp_path / "vendors" / "idomoo", s)
    defs = build_defs("local")
    tick = downloads_sensor(dg.build_sensor_context(instance=instance), defs.resources["idomoo_destination"], s)
    [request] = tick.run_requests
    instance.add_dynamic_partitions(purl_files.name, [request.partition_key])
    purls = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back],
                           partition_key=request.partition_key, instance=instance, tags=request.tags,
                           resources={"idomoo_destination": defs.resources["idomoo_destination"],
                                      "idomoo_settings": s, "ledger": defs.resources["ledger"],
                                      "warehouse": defs.resources["warehouse"]})
    came_back = checks(purls)["every_row_came_back"]
    assert came_back.passed and came_back.metadata["missing"].value == 0, came_back.description

    # dA's match export names contacts delivered before the wipe: all known, the match rate counted
    assert simulate_match_export(DA[1]) is not None
    tick = match_export_sensor(dg.build_sensor_context(instance=instance), inbox_resource())
    [request] = tick.run_requests
    instance.add_dynamic_partitions(match_files.name, [request.partition_key])
    matches = dg.materialize([match_export, matches_known_records], partition_key=request.partition_key,
                             instance=instance, tags=request.tags,
                             resources={"digital_audience_returns": inbox_resource()})
    assert checks(matches)["matches_known_records"].passed
    assert meta(matches, "digital_audience__match_export")["match_rate"] > 0

    wipe(data_dir)

    # what came back is kept in S3, and later readers (receipts) find it from there
    keys = [o["Key"] for page in s3_server.client().get_paginator("list_objects_v2").paginate(
        Bucket=env["DELIVERY_STATE_S3_BUCKET"]) for o in page.get("Contents", [])]
    for prefix in ("platform/state/lotame/", "platform/state/digital_audience/", "platform/state/idomoo/uploads/",
                   "platform/received/idomoo/", "platform/received/digital_audience/",
                   "platform/returns/idomoo_purls/", "platform/returns/da_matches/", "platform/receipts/idomoo/",
                   "platform/profiles/lotame/"):
        assert any(k.startswith(prefix) for k in keys), prefix
    shutil.rmtree(receipts.receipts_dir(Ledger()), ignore_errors=True)  # worker-side copies are not read
    [idomoo_receipt] = receipts.load(Ledger(), deliverable("idomoo", "data_file"), IDOMOO)
    assert idomoo_receipt["vendor_answer"]["purl_received"] is True
    [da_receipt] = receipts.load(Ledger(), deliverable("digital_audience", "crm"), DA[1])
    assert da_receipt["vendor_answer"]["matched_records"] > 0
    table = state_store().get(f"returns/idomoo_purls/{purls.dagster_run.tags['dagster/partition']}.parquet")
    stored = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [str(table)]).fetchone()[0]
    assert stored == meta(purls, "idomoo__purl_results")["rows"]
    assert not (data_dir / "state").exists() and not (data_dir / "returns").exists()
    assert simulators.answer("lotame", defs, instance, None, LOTAME[1]) == []  # Lotame sends nothing back
