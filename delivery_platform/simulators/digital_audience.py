"""Plays digitalAudience on the embedded default (demo and tests only; production never imports
it): writes tonight's match export ("Daily DA match export") into the local inbox from the contact
set last delivered."""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import dagster as dg
import duckdb

from .. import settings
from ..core.sql import sql_literal
from ..state_store import state_store

VENDOR = "digital_audience"


def simulate_match_export(partition_key: str, client: str = "acme", share: float = 0.3) -> Path | None:
    """Play dA on the embedded default: write tonight's match export into the inbox from the
    contacts last delivered (demo only)."""
    store = state_store()
    states = [k for k in store.list(f"state/{VENDOR}/") if k.endswith(".parquet")]
    if not states:
        return None
    con = duckdb.connect()
    latest = store.get(states[-1])
    ids = [r[0] for r in con.execute(f"SELECT custom FROM read_parquet({sql_literal(str(latest))})").fetchall()]
    rng = random.Random(partition_key)
    chosen = sorted(rng.sample(ids, max(1, int(len(ids) * share)))) if ids else []
    inbox = settings.data_dir() / "inbox" / VENDOR
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / f"{client}_matches_{partition_key.replace('-', '')}.csv"
    day = dt.date.fromisoformat(partition_key) + dt.timedelta(days=1)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="") as handle:
        handle.write("cookie_id,crm_id,matched_at\r\n")
        for crm_id in chosen:
            handle.write(f"dmp-{rng.getrandbits(48):012x},{crm_id},{day} 02:00:00\r\n")
    os.replace(partial, path)
    return path


def round_trip(defs: dg.Definitions, instance: dg.DagsterInstance, outcome: dict, partition: str) -> list[str]:
    """After the day's delivery: a simulated match export taken in through the sensor."""
    from ..vendors.digital_audience.matches import inbox_resource, match_export, match_export_sensor, match_files

    extra = []
    path = simulate_match_export(partition)
    if not (outcome and outcome["success"] and path):
        return extra
    context = dg.build_sensor_context(instance=instance)
    result = match_export_sensor(context, inbox_resource().process_config_and_initialize())
    fresh = [r for r in result.run_requests if not instance.has_dynamic_partition(match_files.name, r.partition_key)]
    instance.add_dynamic_partitions(match_files.name, [r.partition_key for r in fresh])
    for request in fresh:
        run = dg.materialize([match_export], partition_key=request.partition_key, instance=instance,
                             resources={"digital_audience_returns": inbox_resource()}, tags=request.tags,
                             raise_on_error=False)
        rows = run.asset_materializations_for_node("digital_audience__match_export")
        extra.append(f"match export {request.partition_key}: "
                     f"{rows[0].metadata['rows'].value if rows else 'FAILED'} matches ingested")
    return extra
