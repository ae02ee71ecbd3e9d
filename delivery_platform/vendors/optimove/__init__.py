"""Optimove data delivery (issue 6): one chain per table, all in `optimove_daily_delivery`."""

from __future__ import annotations

import dagster as dg

from ...factory import build_deliverables, build_jobs
from ...registry import Vendor
from .assets import CHAINS, settings_from_env


def build_defs(env: str) -> dg.Definitions:
    assets, checks = build_deliverables(CHAINS)
    jobs, schedules = build_jobs(
        "optimove", CHAINS, env,
        description="Yesterday's customers (full) and changed transactions (by LastUpdated): extract, check, write, "
                    "publish.")
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules,
                          resources={"optimove_settings": settings_from_env()})


VENDOR = Vendor(
    name="optimove", title="Optimove", document="docs/optimove.md",
    deliverables=tuple(c.deliverable for c in CHAINS),
    destination_kinds=("local", "s3", "gcs", "azure", "sftp"),
    build_defs=build_defs, settings=settings_from_env)
