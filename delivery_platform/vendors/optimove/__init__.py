"""Optimove data delivery (issue 6): `build_defs(env)` gives the assets, checks, job and schedule."""

from __future__ import annotations

import dagster as dg

from .assets import ASSETS, CHECKS, settings_from_env

daily_delivery = dg.define_asset_job(
    "optimove_daily_delivery", selection=dg.AssetSelection.groups("optimove"),
    description="Yesterday's changed customers and transactions: extract by LastUpdated, check, write, publish.",
    tags={"vendor": "optimove"})


def build_defs(env: str) -> dg.Definitions:
    settings = settings_from_env()
    ready_hour = int(settings.data_ready_utc.split(":")[0])
    run_hour = (ready_hour - 3) % 24  # three hours before the agreed data-ready time
    schedule = dg.build_schedule_from_partitioned_job(
        daily_delivery, name="optimove_daily_schedule", hour_of_day=run_hour, minute_of_hour=0,
        description=f"Daily at {run_hour:02d}:00 UTC for the previous UTC day, three hours before the agreed "
                    f"data-ready time {settings.data_ready_utc} UTC (OPTIMOVE_DATA_READY_UTC).",
        default_status=dg.DefaultScheduleStatus.RUNNING if env == "production" else dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[daily_delivery], schedules=[schedule],
                          resources={"optimove_settings": settings})
