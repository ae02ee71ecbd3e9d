"""The operator's safety net, beside the vendor packages (which it does not change), for the vendors
of the registry it is handed (`delivery_platform.vendors.VENDORS`, passed in by definitions.py):

- preflight.py: probes an hour before each vendor's run (`<vendor>_preflight` jobs);
- drift.py: WARN checks on every `_delivery` asset against its last 14 deliveries;
- status.py: one status page asset per vendor.
"""

from __future__ import annotations

import dagster as dg

from . import drift, preflight, status


def build_defs(base: dg.Definitions, env: str, vendors) -> dg.Definitions:
    """What the safety net adds to the vendors' definitions `base`: a drift check on every
    deliverable's delivery asset, preflight jobs and status pages."""
    # each check takes its asset's own partitions (Idomoo's send dates end a day later than data days)
    partitions = {s.key: s.partitions_def for s in base.resolve_all_asset_specs()}
    checks = [drift.build_check(d, partitions[d.delivery_key]) for v in vendors for d in v.deliverables]
    return dg.Definitions.merge(
        preflight.build_defs(base, env, vendors), status.build_defs(env, vendors),
        dg.Definitions(asset_checks=checks))


def delivery_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    """The `<vendor>/<deliverable>_delivery` assets of the definitions (daily partitioned)."""
    return sorted((s.key for s in defs.resolve_all_asset_specs()
                   if len(s.key.path) == 2 and s.key.path[1].endswith("_delivery")),
                  key=lambda k: k.to_user_string())
