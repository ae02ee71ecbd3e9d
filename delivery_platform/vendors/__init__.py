"""The vendor registry: `VENDORS`, the one list of vendors.

One package per vendor. A vendor package holds what its document says (spec.py: the pandera
models and constants; the SQL, file layout and vendor-specific rules) and exposes `VENDOR`, a
`registry.Vendor` naming its deliverables, schedules, deadlines, destination kinds, settings
resource, return feeds and `build_defs(env)`. Shared code never names a vendor; it reads this list.
"""

from __future__ import annotations

from ..registry import Deliverable, Vendor
from . import digital_audience, idomoo, ispot, lotame, optimove

VENDORS: tuple[Vendor, ...] = tuple(m.VENDOR for m in (lotame, ispot, optimove, digital_audience, idomoo))


NAMES: tuple[str, ...] = tuple(v.name for v in VENDORS)
# when each deliverable must have reached its vendor, (vendor, deliverable) -> a deadline (alerts/freshness.py)
DEADLINES: dict = {(d.vendor, d.name): d.deadline for v in VENDORS for d in v.deliverables}


def vendor(name: str) -> Vendor:
    """The vendor called `name` (its package name), or a clear error naming the known ones."""
    for v in VENDORS:
        if v.name == name:
            return v
    raise KeyError(f"no vendor {name!r}: expected one of {', '.join(v.name for v in VENDORS)}")


def deliverables() -> list[Deliverable]:
    return [d for v in VENDORS for d in v.deliverables]


def deliverable(vendor_name: str, name: str) -> Deliverable | None:
    return next((d for d in vendor(vendor_name).deliverables if d.name == name), None)
