"""Vendor package: lotame (not built yet; see the issue for this vendor)."""

import dagster as dg


def build_defs(env: str) -> dg.Definitions:
    return dg.Definitions()
