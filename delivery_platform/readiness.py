"""Is a partition's day ready to deliver? Two questions, asked before anything is written:

1. Has the day ended? A data day is complete only after its UTC midnight; a send date (Idomoo)
   may go out on the day itself, never before. Any launch path (schedule, UI, CLI, backfill)
   that names a later day is refused.
2. Has the warehouse loaded it? A day with no rows is only *empty* once the table's loads have
   passed the day's end (warehouse/schema.py LOAD_MARKS). Before that the day is *held*: an
   empty file sent now would tell the vendor "nothing happened" and the real day would then be
   refused as already delivered.

`build_readiness_checks` adds a blocking `warehouse_has_the_day` check to every asset that reads
a warehouse table with a load mark (each vendor's first step), so the answer shows in the UI,
downstream files and deliveries are skipped when it fails, and the failed-check alert fires.
"""


import datetime as dt

import dagster as dg

from .core import clock
from .partitions import day_bounds
from .core.sql import sql_literal
from .warehouse.assets import source_key
from .warehouse.resource import WarehouseResource
from .warehouse.schema import LOAD_MARKS, LoadMark

CHECK_NAME = "warehouse_has_the_day"


def day_not_over(partition_key: str, now: dt.datetime, *, open_day: bool = False) -> str | None:
    """Why the partition cannot be sent yet (None when it can)."""
    day = dt.date.fromisoformat(partition_key)
    today = now.astimezone(dt.timezone.utc).date()
    if day > today or (day == today and not open_day):
        ends = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
        what = "is in the future" if day > today else f"has not ended (it ends {ends:%Y-%m-%d %H:%M} UTC)"
        return f"{partition_key} {what}, now {now:%Y-%m-%d %H:%M} UTC: only complete days are delivered"
    return None


def table_status(con, table: str, mark: LoadMark, partition_key: str) -> dict:
    start, end = (sql_literal(t.isoformat(sep=" ")) for t in day_bounds(partition_key))
    rows, through = con.execute(
        f"SELECT count(*) FILTER (WHERE {mark.day_rows.format(start=start, end=end)}), "
        f"{mark.loaded_through} FROM {table}").fetchone()
    return {"table": table, "rows": int(rows), "loaded_through": through,
            "loaded": rows > 0 or (through is not None and through >= day_bounds(partition_key)[1])}


def readiness(con, tables: list[str], partition_key: str, now: dt.datetime) -> tuple[bool, str, dict]:
    """(ready, explanation, metadata) for a partition reading these warehouse tables."""
    marks = {t: LOAD_MARKS[t] for t in tables if t in LOAD_MARKS}
    not_over = day_not_over(partition_key, now, open_day=any(m.open_day for m in marks.values()))
    if not_over:
        return False, f"held: {not_over}. Run it again once the day is over (the schedule does).", {}
    statuses = [table_status(con, t, m, partition_key) for t, m in marks.items()]
    metadata = {f"{s['table']}_rows": dg.MetadataValue.int(s["rows"]) for s in statuses}
    missing = [s for s in statuses if not s["loaded"]]
    if missing:
        facts = "; ".join(f"{s['table']} has no rows for the day and its loads reach only "
                          f"{s['loaded_through'] or 'nothing (empty table)'}" for s in missing)
        return False, (f"held: the warehouse has not loaded {partition_key} yet ({facts}). Nothing is written or "
                       "sent. Re-run the partition once the load has landed; if the day is genuinely empty, the "
                       "load will show it (rows of later days or a later load time)."), metadata
    empty = all(s["rows"] == 0 for s in statuses)
    return True, (f"{partition_key} is complete and loaded" + (" (a genuinely empty day: the loads have passed it)"
                                                               if empty else "")), metadata


def _check_for(key: dg.AssetKey, partitions_def, tables: list[str]) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=key, name=CHECK_NAME, blocking=True, partitions_def=partitions_def,
                    pool=key.path[0],  # the vendor's pool, like the asset it guards
                    description="The partition's day has ended (a send date: has come) and the warehouse has loaded "
                                f"it ({', '.join(tables)}): a day with no rows is held, not sent as empty, until the "
                                "loads have passed its end (delivery_platform/readiness.py).")
    def warehouse_has_the_day(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            ok, why, metadata = readiness(con, tables, context.partition_key, clock.now())
        if not ok:
            context.log.error(why)
        return dg.AssetCheckResult(passed=ok, description=why, metadata=metadata)

    return warehouse_has_the_day


def build_readiness_checks(assets: list) -> list[dg.AssetChecksDefinition]:
    """One blocking readiness check per asset that reads a warehouse table with a load mark."""
    sources = {source_key(table): table for table in LOAD_MARKS}
    checks = []
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition) or asset.partitions_def is None:
            continue
        for key in asset.keys:
            tables = sorted(sources[dep] for dep in asset.asset_deps.get(key, ()) if dep in sources)
            if tables:
                checks.append(_check_for(key, asset.partitions_def, tables))
    return checks
