"""iSpot.tv TV conversions (issue 3): the day's conversions, uploaded; late events follow as top-ups."""

from __future__ import annotations

import dagster as dg

from .uploader import ispot_api_from_env
from ...factory import build_deliverables, build_jobs
from ...registry import Vendor
from .assets import CHAIN, CONVERSIONS, settings_from_env
from .sensor import build_topup_sensor


def build_defs(env: str) -> dg.Definitions:
    assets, checks = build_deliverables([CHAIN])
    jobs, schedules = build_jobs("ispot", [CHAIN], env,
                                 description="Yesterday's conversions: shape, check, write, upload.")
    return dg.Definitions(
        assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules,
        sensors=[build_topup_sensor(jobs[0], env)],
        resources={"ispot_api": ispot_api_from_env(), "ispot_settings": settings_from_env()})


VENDOR = Vendor(
    name="ispot", title="iSpot.tv", document="docs/ispot.md", deliverables=(CONVERSIONS,),
    destination_kinds=("local",),  # files go to iSpot's upload API (`ispot_api`); the outbox stands in locally
    build_defs=build_defs, settings=settings_from_env,
    extras={
        # `api` when iSpot's API credentials are configured; otherwise files go to the destination
        "destination_kind": lambda resources: "api" if getattr(resources.get("ispot_api"), "client_id", None)
        else None,
        "preflight_probes": ("ispot_token",),
        "preflight_inputs": lambda: {"token_api": ispot_api_from_env()}})
