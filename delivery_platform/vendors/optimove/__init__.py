"""Optimove data delivery (issue 6): `build_defs(env)` gives the assets, checks, job and schedule."""

from __future__ import annotations

import dagster as dg

from . import timing
from .assets import ASSETS, CHECKS, settings_from_env

daily_delivery = dg.define_asset_job(
    "optimove_daily_delivery", selection=dg.AssetSelection.groups("optimove"),
    description="Yesterday's customers (full) and changed transactions (by LastUpdated): extract, check, "
                "write, publish.",
    tags={"vendor": "optimove"})


def build_defs(env: str) -> dg.Definitions:
    settings = settings_from_env()
    ready = timing.parse(settings.data_ready_utc)
    run_at = timing.schedule_time(ready, settings.settle_minutes)
    schedule = dg.build_schedule_from_partitioned_job(
        daily_delivery, name="optimove_daily_schedule", hour_of_day=run_at.hour, minute_of_hour=run_at.minute,
        description=f"Daily at {run_at:%H:%M} UTC for the previous UTC day: three hours before the agreed "
                    f"data-ready time {ready:%H:%M} UTC (OPTIMOVE_DATA_READY_UTC), never before the day has "
                    "closed.",
        default_status=dg.DefaultScheduleStatus.RUNNING if env == "production" else dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[daily_delivery], schedules=[schedule],
                          resources={"optimove_settings": settings})
