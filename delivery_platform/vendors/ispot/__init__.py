"""iSpot.tv TV conversions (issue 3): `build_defs(env)` gives the assets, checks, job and schedule."""

from __future__ import annotations

import dagster as dg

from ...destinations.ispot_api import ispot_api_from_env
from . import spec
from .assets import ASSETS, CHECKS, settings_from_env
from .sensor import build_topup_sensor

daily_delivery = dg.define_asset_job(
    "ispot_daily_delivery", selection=dg.AssetSelection.groups("ispot"),
    description="Yesterday's conversions: shape, check, write, upload.", tags={"vendor": "ispot"})


def build_defs(env: str) -> dg.Definitions:
    schedule = dg.build_schedule_from_partitioned_job(
        daily_delivery, name="ispot_daily_schedule", hour_of_day=spec.SCHEDULE_HOUR_UTC, minute_of_hour=0,
        description=f"Daily at {spec.SCHEDULE_HOUR_UTC:02d}:00 UTC (04:00 PST / 05:00 PDT) for the previous UTC day, "
                    "two hours before iSpot's 14:00 UTC cutoff (7:00 AM PDT / 6:00 AM PST).",
        default_status=dg.DefaultScheduleStatus.RUNNING if env == "production" else dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[daily_delivery], schedules=[schedule],
        sensors=[build_topup_sensor(daily_delivery, env)],
        resources={"ispot_api": ispot_api_from_env(), "ispot_settings": settings_from_env()})
