"""Idomoo batch mode (issue 4): data files to Uploads, PURL files and flags back from Downloads."""

from __future__ import annotations

import dagster as dg

from ...returns.pipeline import build_return_defs
from .assets import ASSETS, CHECKS, settings_from_env
from .downloads import IDOMOO_PURLS, downloads_sensor, purl_every_row_came_back, purl_files, purl_links_are_https, \
    purl_results

__all__ = ["downloads_sensor", "purl_every_row_came_back", "purl_files", "purl_links_are_https", "purl_results"]

SCHEDULE_HOUR_UTC = 5

daily_delivery = dg.define_asset_job(
    "idomoo_daily_delivery", selection=dg.AssetSelection.groups("idomoo") - dg.AssetSelection.assets(purl_results),
    description="The day's data file for the Idomoo project, uploaded to the SFTP Uploads folder.",
    tags={"vendor": "idomoo"})


def build_defs(env: str) -> dg.Definitions:
    running = env == "production"
    schedule = dg.build_schedule_from_partitioned_job(
        daily_delivery, name="idomoo_daily_schedule", hour_of_day=SCHEDULE_HOUR_UTC, minute_of_hour=0,
        description=f"Daily at {SCHEDULE_HOUR_UTC:02d}:00 UTC: the batch of recipients whose send date is "
                    "TODAY "
                    "(uploaded on its send date; the partitions end a day later for that).",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions.merge(
        dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[daily_delivery], schedules=[schedule],
                       resources={"idomoo_settings": settings_from_env()}),
        build_return_defs(IDOMOO_PURLS, running))  # the PURL files back: sensor, ingest, checks
