"""The one Definitions object of the code location.

`build_defs(env)` assembles the warehouse source assets, every vendor's assets, checks, jobs,
schedules and sensors, and the resources for that environment. `defs` is what `dagster dev`
loads, for the environment named by `DELIVERY_ENV` (default `local`).
"""

from __future__ import annotations

import dagster as dg

from . import operations
from .alerts import alert_sinks_from_env, build_alert_sensors
from .resources import current_env, resources_for
from .vendors import digital_audience, idomoo, ispot, lotame, optimove
from .warehouse.assets import SOURCE_SPECS

VENDOR_MODULES = (lotame, ispot, optimove, digital_audience, idomoo)


def build_defs(env: str = "local") -> dg.Definitions:
    vendor_defs = [module.build_defs(env) for module in VENDOR_MODULES]
    base = dg.Definitions(assets=SOURCE_SPECS, sensors=build_alert_sensors(env),
                          resources={**resources_for(env), "alert_sinks": alert_sinks_from_env()})
    merged = dg.Definitions.merge(base, *vendor_defs)
    return dg.Definitions.merge(merged, operations.build_defs(merged, env))  # preflight, drift, status


defs = build_defs(current_env())
