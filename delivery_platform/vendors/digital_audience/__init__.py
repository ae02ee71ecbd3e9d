"""digitalAudience CRM onboarding and updates, and the match export back (issue 7)."""

from __future__ import annotations

import dagster as dg

from ...factory import build_deliverables, build_jobs
from ...registry import Vendor
from . import spec
from .assets import CHAIN, CRM, settings_from_env
from .matches import build_sensor, inbox_resource, match_export, matches_known_records, simulate_match_export
from .optouts import OPTOUT, optout_resource


def build_defs(env: str) -> dg.Definitions:
    assets, checks = build_deliverables([CHAIN])
    jobs, schedules = build_jobs(
        "digital_audience", [CHAIN], env, exclude=dg.AssetSelection.assets(match_export),
        description="The day's CRM update for dA (the first run sends the full onboarding file).")
    return dg.Definitions(assets=[*assets, match_export], asset_checks=[*checks, matches_known_records],
                          jobs=jobs, schedules=schedules, sensors=[build_sensor(env == "production")],
                          resources={"digital_audience_settings": settings_from_env(),
                                     "digital_audience_returns": inbox_resource(), OPTOUT: optout_resource()})


def demo(defs: dg.Definitions, instance: dg.DagsterInstance, partition: str, run_daily) -> dict:
    """The daily delivery, then a simulated match export taken in through the sensor."""
    from .matches import match_export_sensor as evaluate

    outcome = run_daily(defs, instance, "digital_audience", partition)
    extra = []
    path = simulate_match_export(partition)
    if outcome and outcome["success"] and path:
        context = dg.build_sensor_context(instance=instance, resources={"digital_audience_returns": inbox_resource()})
        result = evaluate(context, inbox_resource().process_config_and_initialize())
        fresh = [r for r in result.run_requests if not instance.has_dynamic_partition(match_files_name(), r.partition_key)]
        instance.add_dynamic_partitions(match_files_name(), [r.partition_key for r in fresh])
        for request in fresh:
            run = dg.materialize([match_export], partition_key=request.partition_key, instance=instance,
                                 resources={"digital_audience_returns": inbox_resource()}, tags=request.tags,
                                 raise_on_error=False)
            rows = run.asset_materializations_for_node("digital_audience__match_export")
            extra.append(f"match export {request.partition_key}: "
                         f"{rows[0].metadata['rows'].value if rows else 'FAILED'} matches ingested")
    return {**(outcome or {"success": False, "run_id": "-", "checks_passed": 0, "checks_failed": []}), "extra": extra}


def match_files_name() -> str:
    from .matches import match_files

    return match_files.name


VENDOR = Vendor(
    name="digital_audience", title="digitalAudience", document="docs/digital_audience.md", deliverables=(CRM,),
    destination_kinds=("local", "s3", "sftp"),  # the storage dA polls
    build_defs=build_defs, settings=settings_from_env, demo=demo, returns=("match_export",),
    extras={"staged_models": {"match_export": spec.MatchExport}})
