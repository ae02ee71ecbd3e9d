"""The one clock every date rule reads.

iSpot's 12-day window and cutoff, Optimove's readiness time, Lotame's 30-day refresh, Idomoo's
batch names, deadlines and "has this day ended yet" all ask `now()` here, never the wall clock.

`DELIVERY_NOW` pins it (ISO 8601, e.g. `2026-11-21T12:00:00Z`; a date alone means its
midnight UTC). It is an environment variable, not a module global, so that every process of a
run reads the same time: step subprocesses, `dagster job execute`, the daemon and the webserver
inherit it. Unset, `now()` is the wall clock in UTC.

What is *not* a date rule stays on the wall clock: audit timestamps in the ledger, claim
leases between live processes, and ages of files on a server (compared with the server's own
modification times).
"""

from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from typing import Iterator

ENV = "DELIVERY_NOW"


def parse(text: str) -> dt.datetime:
    """An ISO 8601 time (or date) as an aware UTC datetime; naive values are taken as UTC."""
    value = text.strip()
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{ENV}={text!r} is not an ISO 8601 time such as 2026-11-21T12:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def now() -> dt.datetime:
    """The current time in UTC (aware), or the pinned one."""
    pinned = os.environ.get(ENV)
    if pinned:
        return parse(pinned)
    return dt.datetime.now(dt.timezone.utc)


def today() -> dt.date:
    """Today's UTC date by the clock."""
    return now().date()


def yesterday() -> dt.date:
    """The last complete UTC day: the partition a daily delivery run sends."""
    return today() - dt.timedelta(days=1)


def is_pinned() -> bool:
    return bool(os.environ.get(ENV))


@contextmanager
def pinned(when: dt.datetime | dt.date | str) -> Iterator[dt.datetime]:
    """Pin the clock for the duration of a block (tests, simulated calendars)."""
    if isinstance(when, str):
        value = parse(when)
    elif isinstance(when, dt.datetime):
        value = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    else:
        value = dt.datetime.combine(when, dt.time(), tzinfo=dt.timezone.utc)
    before = os.environ.get(ENV)
    os.environ[ENV] = value.astimezone(dt.timezone.utc).isoformat()
    try:
        yield value
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
