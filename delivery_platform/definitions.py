"""The one Definitions object of the code location.

`build_defs(env)` assembles the warehouse source assets, every registered vendor's assets, checks,
jobs, schedules and sensors (`delivery_platform.vendors.VENDORS`), and the resources for that
environment. `defs` is what `dagster dev` loads, for the environment named by `DELIVERY_ENV`
(default `local`).
"""

from __future__ import annotations

import warnings

import dagster as dg

from . import operations
from .alerts import alert_sinks_from_env, build_alert_sensors
from .alerts.freshness import build_freshness_checks
from .presentation import present
from .readiness import build_readiness_checks
from .resources import current_env, resources_for
from .vendors import DEADLINES, VENDORS
from .warehouse.assets import SOURCE_SPECS


def build_defs(env: str = "local") -> dg.Definitions:
    with warnings.catch_warnings():
        # partitioned asset checks are a preview in Dagster 1.13 (shared/DAGSTER-NOTES.md), used knowingly:
        # silenced where the definitions are built, not for every program that imports the package
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return _build(env)


def _build(env: str) -> dg.Definitions:
    resources = {**resources_for(env, VENDORS), "alert_sinks": alert_sinks_from_env()}
    # kinds from the configured destinations, code versions, column schemas (presentation.py)
    vendor_defs = [_presented(vendor, vendor.build_defs(env), resources) for vendor in VENDORS]
    # Every job runs its steps in the run's own process: a daily delivery's steps share one
    # machine and one staging folder anyway, and a process per step cost 5-12 s of start-up each
    # (a 2-3 s iSpot run took 40-55 s when launched). Runs still run in parallel (the run queue),
    # the UI still shows each step, and resources are set up once, before the first step, so a
    # misconfigured destination fails the run before anything is staged. README "Executor".
    vendor_assets = [a for d in vendor_defs for a in d.assets or []]
    readiness = build_readiness_checks(vendor_assets)
    freshness = build_freshness_checks(vendor_assets, DEADLINES)  # one per delivery asset
    base = dg.Definitions(assets=SOURCE_SPECS, asset_checks=[*readiness, *freshness],
                          sensors=build_alert_sensors(env, DEADLINES), executor=dg.in_process_executor,
                          resources=resources)
    merged = dg.Definitions.merge(base, *vendor_defs)
    return dg.Definitions.merge(merged, operations.build_defs(merged, env, VENDORS))  # preflight, drift, status


def _presented(vendor, defs: dg.Definitions, resources: dict) -> dg.Definitions:
    all_resources = {**resources, **(defs.resources or {})}
    return dg.Definitions(assets=present(vendor, list(defs.assets or []), all_resources),
                          asset_checks=defs.asset_checks, jobs=defs.jobs, schedules=defs.schedules,
                          sensors=defs.sensors, resources=defs.resources)


defs = build_defs(current_env())
