"""Lotame Spherical inbound batch (issue 5): the day's segment-membership bundle, one chain."""

from __future__ import annotations

import dagster as dg

from ...factory import build_deliverables, build_jobs
from ...registry import Vendor
from .assets import CHAIN, SEGMENTMEMBERSHIP, settings_from_env


def build_defs(env: str) -> dg.Definitions:
    assets, checks = build_deliverables([CHAIN])
    jobs, schedules = build_jobs(
        "lotame", [CHAIN], env,
        description="The day's segment-membership bundle: shape, check, write, publish with .done last.")
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules,
                          resources={"lotame_settings": settings_from_env()})


VENDOR = Vendor(
    name="lotame", title="Lotame Spherical", document="docs/lotame.md", deliverables=(SEGMENTMEMBERSHIP,),
    destination_kinds=("local", "s3", "gcs", "sftp"),  # "Inbound Batch": S3, GCS or sFTP
    build_defs=build_defs, settings=settings_from_env)
