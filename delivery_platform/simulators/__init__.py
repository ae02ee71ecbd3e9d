"""Vendors played on the embedded default: what the demo and the tests use to answer our
deliveries (Idomoo's PURL files, dA's match export). Production definitions never import this
package (`delivery_platform_tests/test_returns_pipeline.py` checks it)."""

from __future__ import annotations

import dagster as dg


def answer(vendor: str, defs: dg.Definitions, instance: dg.DagsterInstance, outcome: dict | None,
           partition: str) -> list[str]:
    """Play `vendor`'s side after its daily run (`outcome` of `demo.run_daily`): Idomoo answers
    with PURL files, dA with a match export, each taken in through its sensor. Returns lines for
    the demo's table; vendors that send nothing back answer nothing."""
    if vendor == "idomoo":
        from .idomoo import round_trip

        return round_trip(defs, instance, outcome) if outcome else []
    if vendor == "digital_audience":
        from .digital_audience import round_trip

        return round_trip(defs, instance, outcome, partition)
    return []
