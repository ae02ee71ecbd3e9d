"""Resources shared by every vendor, chosen for an environment in one function.

`resources_for(env)` is called by `build_defs(env)`: tests build any environment without
re-importing modules. Environments: `local` (the embedded default: DuckDB file in `data/`,
local outbox) and `production` (same code; destinations and credentials from environment
variables, schedules and sensors running by default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg

from .destinations import destination_from_env
from .ledger import Ledger
from .warehouse.resource import WarehouseResource

ENVIRONMENTS = ("local", "production")


class LedgerResource(dg.ConfigurableResource):
    """The delivery ledger (SQLite, see ledger.py for why)."""

    path: Optional[str] = None

    def get(self) -> Ledger:
        return Ledger(Path(self.path) if self.path else None)


def current_env() -> str:
    env = os.environ.get("DELIVERY_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"DELIVERY_ENV={env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return env


def resources_for(env: str, vendors) -> dict:
    """The shared resources and each vendor's destination (`<vendor>_destination`) for `env`."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    resources: dict = {
        "warehouse": WarehouseResource(),
        "ledger": LedgerResource(),
    }
    for vendor in vendors:
        # the kinds the vendor's document allows: a run with another kind fails at once, naming them
        resources[vendor.destination_key] = destination_from_env(vendor.name, env=env,
                                                                 allowed=vendor.destination_kinds)
    return resources
