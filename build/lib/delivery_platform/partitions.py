"""Partitions shared by the deliverables: one per UTC day."""

from __future__ import annotations

import datetime as dt

import dagster as dg

FIRST_DAY = "2026-01-01"

# Keyed by the data day (iSpot, Optimove) or the delivery day (Lotame's folder), always UTC.
daily = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=0)


def day_bounds(partition_key: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a partition's UTC day as naive UTC datetimes (the warehouse stores UTC)."""
    day = dt.date.fromisoformat(partition_key)
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)
