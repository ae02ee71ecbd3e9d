"""`python -m delivery_platform.warehouse seed --days 30 --scale 1`: build the embedded warehouse."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time

from .. import settings
from ..core import clock
from .schema import TABLES
from .seed import SeedPlan, seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery_platform.warehouse")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed", help="generate deterministic synthetic source tables")
    s.add_argument("--days", type=int, default=30, help="days of data, ending at --end-date (default 30)")
    s.add_argument("--scale", type=float, default=1.0,
                   help="row multiplier; iSpot events are 20,000 x scale per day (500 gives 10 million)")
    s.add_argument("--end-date", type=dt.date.fromisoformat, default=None,
                   help="last day with data, YYYY-MM-DD (default: yesterday, UTC)")
    s.add_argument("--ispot-events-per-day", type=int, default=None,
                   help="iSpot events a day regardless of --scale "
                        "(the demo uses 60,000: over iSpot's 8 MB minimum)")
    s.add_argument("--lotame-users", type=int, default=None,
                   help="Lotame users regardless of --scale (the benchmark uses 10,000,000)")
    s.add_argument("--tables", default=None,
                   help="comma-separated tables to build (default: all), e.g. lotame_users,lotame_segment_memberships")
    s.add_argument("--seed", type=int, default=7, help="random seed (same seed, same tables)")
    s.add_argument("--path", default=None, help="warehouse file (default $DELIVERY_WAREHOUSE_PATH or data/warehouse.duckdb)")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--memory-limit", default="2GB")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    end = args.end_date or clock.yesterday()
    tables = tuple(t.strip() for t in args.tables.split(",")) if args.tables else None
    unknown = sorted(set(tables or ()) - {t.name for t in TABLES})
    if unknown:
        parser.error(f"--tables: no such table {', '.join(unknown)}")
    plan = SeedPlan(days=args.days, scale=args.scale, end_date=end, seed=args.seed,
                    ispot_events_per_day=args.ispot_events_per_day, lotame_users=args.lotame_users,
                    tables=tables)
    path = args.path or settings.warehouse_path()
    started = time.monotonic()
    counts = seed(path, plan, threads=args.threads, memory_limit=args.memory_limit)
    print(f"warehouse {path}: {plan.start_date} .. {plan.end_date}, scale {plan.scale:g}, "
          f"built in {time.monotonic() - started:.1f}s")
    for table, n in counts.items():
        print(f"  {table:<28} {n:>12,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
