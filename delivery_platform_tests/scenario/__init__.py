"""Day-by-day scenarios: run the real daily jobs over a simulated calendar and follow what a
vendor ends up holding.

The pieces:
- `calendar(...)`: the simulated days; each day's run happens at a pinned clock time
  (delivery_platform.core.clock), so every date rule sees the simulated day, never today.
- `Scenario`: the code location built once for a data folder, one Dagster instance for the
  whole calendar, `run(job, partition, at=...)` through `execute_in_process`, and
  `new_deliveries(vendor)`: the files the ledger says reached the vendor since the last call,
  in delivery order (the order the vendor receives them), read from the local outbox.
- replicas (`delivery_platform_tests/replicas/`): a small model per vendor, written from the
  vendor's document, that applies those files; each scenario test compares the replica with the
  warehouse's truth after every day.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb

from delivery_platform import settings
from delivery_platform.core import clock
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Delivery, Ledger


@dataclass(frozen=True)
class Day:
    index: int
    date: dt.date
    runs_at: dt.datetime  # when the daily run for this day's partition happens (the next morning)

    @property
    def partition(self) -> str:
        return self.date.isoformat()


def calendar(first: dt.date, days: int, at: dt.time = dt.time(9)) -> list[Day]:
    """`days` consecutive data days from `first`; each is delivered the next day at `at` UTC."""
    out = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        out.append(Day(i, day, dt.datetime.combine(day + dt.timedelta(days=1), at, tzinfo=dt.timezone.utc)))
    return out


@dataclass(frozen=True)
class Received:
    """One file as the vendor received it, in delivery order."""

    delivery: Delivery
    path: Path

    @property
    def name(self) -> str:
        return self.delivery.file_name

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


class Scenario:
    """One code location and one instance for a whole simulated calendar (local environment)."""

    def __init__(self, warehouse_path: Path, instance: dg.DagsterInstance | None = None, env: str = "local"):
        self.warehouse_path = Path(warehouse_path)
        self.defs = build_defs(env)
        self.instance = instance or dg.DagsterInstance.ephemeral()
        self._seen: dict[str, int] = {}

    def run(self, job_name: str, partition: str, *, at: dt.datetime, run_config: dict | None = None,
            tags: dict | None = None) -> dg.ExecuteInProcessResult:
        """Run a job for one partition with the clock pinned at `at` (failures are returned, not raised)."""
        job = self.defs.resolve_job_def(job_name)
        with clock.pinned(at):
            return job.execute_in_process(partition_key=partition, instance=self.instance, raise_on_error=False,
                                          run_config=run_config, tags=tags)

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writable connection to the scenario's warehouse, for the day's changes (closed after)."""
        con = duckdb.connect(str(self.warehouse_path))
        try:
            yield con
        finally:
            con.close()

    def ledger(self) -> Ledger:
        return Ledger()

    def new_deliveries(self, vendor: str, deliverable: str | None = None) -> list[Received]:
        """Files delivered since the previous call, in the order the vendor received them."""
        tag = f"{vendor}/{deliverable or '*'}"
        after = self._seen.get(tag, 0)
        rows = [d for d in self.ledger().history(vendor, deliverable, status="delivered") if d.id > after]
        if rows:
            self._seen[tag] = rows[-1].id
        return [Received(d, settings.outbox_dir() / vendor / d.file_name) for d in rows]
