"""Lotame Spherical inbound batch (issue 5): `build_defs(env)` gives the assets, checks, job and schedule."""

from __future__ import annotations

import dagster as dg

from .assets import ASSETS, CHECKS, settings_from_env

SCHEDULE_HOUR_UTC = 6  # Lotame polls daily; the day's folder is ready early in the UTC morning

daily_delivery = dg.define_asset_job(
    "lotame_daily_delivery", selection=dg.AssetSelection.groups("lotame"),
    description="The day's segment-membership bundle: shape, check, write, publish with .done last.",
    tags={"vendor": "lotame"})


def build_defs(env: str) -> dg.Definitions:
    schedule = dg.build_schedule_from_partitioned_job(
        daily_delivery, name="lotame_daily_schedule", hour_of_day=SCHEDULE_HOUR_UTC, minute_of_hour=0,
        description=f"Daily at {SCHEDULE_HOUR_UTC:02d}:00 UTC for the previous UTC day's folder (Lotame polls daily).",
        default_status=dg.DefaultScheduleStatus.RUNNING if env == "production" else dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[daily_delivery], schedules=[schedule],
                          resources={"lotame_settings": settings_from_env()})
