"""The operator's safety net, beside the vendor packages (which it does not change):

- preflight.py: probes an hour before each vendor's run (`<vendor>_preflight` jobs);
- receipts.py: one JSON receipt per delivered partition, written by `deliver_files`;
- drift.py: WARN checks on every `_delivery` asset against its last 14 deliveries;
- status.py: one status page asset per vendor.
"""

from __future__ import annotations

import dagster as dg

from . import drift, preflight, status
from .deliverables import BY_KEY, delivery_keys


def build_defs(base: dg.Definitions, env: str) -> dg.Definitions:
    """What the safety net adds to the vendors' definitions `base`. A `_delivery` asset missing from
    operations/deliverables.py gets no drift check (test_preflight.py fails on it), rather than
    stopping the whole code location from loading."""
    # each check takes its asset's own partitions (Idomoo's send dates end a day later than data days)
    partitions = {s.key: s.partitions_def for s in base.resolve_all_asset_specs()}
    checks = [drift.build_check(BY_KEY[k], partitions[k]) for k in delivery_keys(base) if k in BY_KEY]
    return dg.Definitions.merge(
        preflight.build_defs(base, env), status.build_defs(env), dg.Definitions(asset_checks=checks)
    )
