"""Optimove's one timing setting: the agreed daily data-ready time (`OPTIMOVE_DATA_READY_UTC`).

The schedule, the `before_data_ready_time` check and the missed-deadline alert all read it here
(DIGEST 3.2 "Readiness": every file is present by then; Optimove's ETL starts then).
"""

from __future__ import annotations

import datetime as dt
import os
import re

ENV = "OPTIMOVE_DATA_READY_UTC"
DEFAULT = "08:00"
LEAD = dt.timedelta(hours=3)  # the run starts this long before the data-ready time


def parse(text: str) -> dt.time:
    """`HH:MM` (or `H:MM`), UTC."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"{ENV}={text!r} is not a UTC time of day such as 08:00")
    return dt.time(int(match[1]), int(match[2]))


def data_ready_time(environ: dict | None = None) -> dt.time:
    """The configured data-ready time of day, UTC."""
    environ = os.environ if environ is None else environ
    return parse(environ.get(ENV) or DEFAULT)


def ready_at(partition_key: str, ready: dt.time) -> dt.datetime:
    """When a partition's files must be at Optimove: the ready time on the day after it."""
    day = dt.date.fromisoformat(partition_key) + dt.timedelta(days=1)
    return dt.datetime.combine(day, ready, tzinfo=dt.timezone.utc)


def schedule_time(ready: dt.time, settle_minutes: int) -> dt.time:
    """The time of day the daily run starts, for the day that ended before it.

    Three hours before the ready time, counted on the day after the partition; a day cannot be
    extracted before it ends (plus `settle_minutes` for late writes), so a ready time earlier than
    03:00 + settle runs right after the settle instead of wrapping to the evening before (which
    would request the day before and be 21 hours late for 02:00)."""
    minutes = ready.hour * 60 + ready.minute - int(LEAD.total_seconds() // 60)
    minutes = max(minutes, settle_minutes)
    return dt.time(minutes // 60, minutes % 60)
