"""digitalAudience CRM onboarding and updates, and the match export back (issue 7)."""

from __future__ import annotations

import dagster as dg

from ...returns.pipeline import build_return_defs
from .assets import ASSETS, CHECKS, settings_from_env
from .matches import DA_MATCH_EXPORT, inbox_resource, match_export, matches_known_records
from .optouts import OPTOUT, optout_resource

__all__ = ["match_export", "matches_known_records"]

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
    return dg.Definitions.merge(
        dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[daily_delivery], schedules=[schedule],
                       resources={"digital_audience_settings": settings_from_env(),
                                  "digital_audience_returns": inbox_resource(), OPTOUT: optout_resource()}),
        build_return_defs(DA_MATCH_EXPORT, running))  # the match export back: sensor, ingest, checks
