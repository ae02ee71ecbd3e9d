"""digitalAudience CRM onboarding and updates, and the match export back (issue 7)."""

from __future__ import annotations

import dagster as dg

from ...factory import build_deliverables, build_jobs
from ...registry import Vendor
from ...returns.pipeline import build_return_defs
from . import spec
from .assets import CHAIN, CRM, settings_from_env
from .matches import DA_MATCH_EXPORT, inbox_resource, match_export, matches_known_records
from .optouts import OPTOUT, optout_resource

__all__ = ["match_export", "matches_known_records"]


def build_defs(env: str) -> dg.Definitions:
    assets, checks = build_deliverables([CHAIN])
    jobs, schedules = build_jobs(
        "digital_audience", [CHAIN], env, exclude=dg.AssetSelection.assets(match_export),
        description="The day's CRM update for dA (the first run sends the full onboarding file).")
    return dg.Definitions.merge(
        dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules,
                       resources={"digital_audience_settings": settings_from_env(),
                                  "digital_audience_returns": inbox_resource(), OPTOUT: optout_resource()}),
        build_return_defs(DA_MATCH_EXPORT, env == "production"))  # the match export back: sensor, ingest, checks


VENDOR = Vendor(
    name="digital_audience", title="digitalAudience", document="docs/digital_audience.md", deliverables=(CRM,),
    destination_kinds=("local", "s3", "sftp"),  # the storage dA polls
    build_defs=build_defs, settings=settings_from_env, returns=(DA_MATCH_EXPORT,),
    extras={"staged_models": {"match_export": spec.MatchExport}})
