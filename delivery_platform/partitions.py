"""Partitions shared by the deliverables: one per UTC day, from the first day there is data for.

The first partition is configuration, decided once when the definitions load:

1. `DELIVERY_FIRST_DAY` (an ISO date) when set: production sets it to the first day the
   platform is responsible for, tests to the start of their simulated calendars;
2. else the embedded warehouse's earliest data day (`_seed_info.start_date`, which `seed`
   writes, else the earliest event, transaction or send day), read from the DuckDB file
   read-only, so the UI offers only days the data can fill;
3. else `DEFAULT_FIRST_DAY`, when the file is missing, locked by a writer (a `seed` under
   way) or unreadable. Loading never fails for want of a warehouse.

The partitions are a superset in every fallback (the default is earlier than any seeded day),
so a run process that falls back while the webserver read the file still knows every key.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg

from . import settings
from .warehouse.schema import DAY_COLUMNS

ENV = "DELIVERY_FIRST_DAY"
DEFAULT_FIRST_DAY = "2026-01-01"



def warehouse_first_day(path: Path) -> str | None:
    """The warehouse's earliest data day, or None when the file is missing or cannot be read now."""
    if not Path(path).is_file():
        return None
    try:
        import duckdb

        con = duckdb.connect(str(path), read_only=True)
    except Exception:  # locked by a writer, not a DuckDB file, ...: the default will do
        return None
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "_seed_info" in tables:
            row = con.execute("SELECT min(start_date) FROM _seed_info").fetchone()
        else:
            parts = [
                f"SELECT min({col})::DATE AS d FROM {table}" for table, col in DAY_COLUMNS.items() if table in tables
            ]
            row = (
                con.execute(f"SELECT min(d) FROM ({' UNION ALL '.join(parts)})").fetchone() if parts else None
            )
        return row[0].isoformat() if row and row[0] is not None else None
    except Exception:
        return None
    finally:
        con.close()


def first_day(environ: dict | None = None, warehouse: Path | None = None) -> tuple[str, str]:
    """(first partition day, where it came from)."""
    environ = os.environ if environ is None else environ
    configured = (environ.get(ENV) or "").strip()
    if configured:
        try:
            return dt.date.fromisoformat(configured).isoformat(), ENV
        except ValueError:
            raise ValueError(f"{ENV}={configured!r} is not a date such as 2026-10-01") from None
    path = Path(warehouse) if warehouse else settings.warehouse_path()
    found = warehouse_first_day(path)
    if found:
        return found, f"warehouse {path}"
    return DEFAULT_FIRST_DAY, f"default (no readable warehouse at {path})"


FIRST_DAY, FIRST_DAY_SOURCE = first_day()

# Keyed by the data day (iSpot, Optimove) or the delivery day (Lotame's folder), always UTC.
daily = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=0)


def day_bounds(partition_key: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a partition's UTC day as naive UTC datetimes (the warehouse stores UTC)."""
    day = dt.date.fromisoformat(partition_key)
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)
