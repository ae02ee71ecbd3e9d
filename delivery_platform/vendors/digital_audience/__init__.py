"""digitalAudience CRM onboarding and updates, and the match export back (issue 7)."""

from __future__ import annotations

import dagster as dg

from .assets import ASSETS, CHECKS, settings_from_env
from .matches import build_sensor, inbox_resource, match_export, matches_known_records, simulate_match_export
from .optouts import OPTOUT, optout_resource

SCHEDULE_HOUR_UTC = 3  # dA polls the storage daily; the day's update is there well before business hours

daily_delivery = dg.define_asset_job(
    "digital_audience_daily_delivery",
    selection=dg.AssetSelection.groups("digital_audience") - dg.AssetSelection.assets(match_export),
    description="The day's CRM update for dA (the first run sends the full onboarding file).",
    tags={"vendor": "digital_audience"})


def build_defs(env: str) -> dg.Definitions:
    running = env == "production"
    schedule = dg.build_schedule_from_partitioned_job(
        daily_delivery, name="digital_audience_daily_schedule", hour_of_day=SCHEDULE_HOUR_UTC, minute_of_hour=0,
        description=f"Daily at {SCHEDULE_HOUR_UTC:02d}:00 UTC for the previous UTC day's opt-ins and opt-outs.",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED)
    sensor = build_sensor(running)
    return dg.Definitions(assets=[*ASSETS, match_export], asset_checks=[*CHECKS, matches_known_records],
                          jobs=[daily_delivery], schedules=[schedule], sensors=[sensor],
                          resources={"digital_audience_settings": settings_from_env(),
                                     "digital_audience_returns": inbox_resource(), OPTOUT: optout_resource()})


def demo(defs: dg.Definitions, instance: dg.DagsterInstance, partition: str) -> dict:
    """The daily delivery, then a simulated match export taken in through the sensor."""
    from ...demo import run_daily
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
