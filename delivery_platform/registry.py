"""What a vendor is, as data: the types of the vendor registry (`delivery_platform.vendors.VENDORS`).

A `Vendor` names its deliverables, the destination kinds its document allows, its settings
resource, its return feeds and its Dagster definitions. Shared code never names a vendor: it is
handed these objects (definitions.py, resources.py, the alert deadlines, the README spec tables,
the demo and the operations jobs all read the registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import dagster as dg



@dataclass(frozen=True)
class Schedule:
    """When a deliverable's daily job runs (for the partition that ended before it)."""

    hour: int
    minute: int = 0
    timezone: str = "UTC"
    description: str = ""

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d} {self.timezone}"


# A deadline: an hour (UTC) of the day after the partition, a `dt.time`, a function giving one
# (read at each evaluation), or `(days after the partition, hour)`; alerts/freshness.py reads it.
Deadline = Any


@dataclass(frozen=True)
class Deliverable:
    """One file set a vendor receives every day, as the ledger, the checks and the alerts know it."""

    vendor: str
    name: str  # the deliverable as the ledger names it; its delivery asset is `<vendor>/<name>_delivery`
    source: str  # the warehouse table whose day is delivered (readiness.py knows how to count its day)
    models: tuple = ()  # the pandera models (classes in vendors/<vendor>/spec.py) of the staged rows
    staged: Optional[str] = None  # the asset holding the staged rows (for its column schema in the UI)
    deadline: Deadline = 12
    schedule: Any = None  # a Schedule, or a function giving one when the definitions are built
    job: Optional[str] = None  # the daily job it belongs to (default `<vendor>_daily_delivery`)
    event_column: Optional[str] = None  # staged column with each row's event time (receipts)
    probe_name: Optional[Callable[[str], str]] = None  # preflight write probe's name, None: skipped
    probe_why: str = ""  # why that name is never picked up, or why the probe is skipped
    # the vendor's answer to a delivered partition, for its receipt: (partition, destination kind, files) -> dict
    answer: Optional[Callable[[str, str, list], dict]] = None

    @property
    def delivery_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.vendor, f"{self.name}_delivery"])

    @property
    def label(self) -> str:
        return f"{self.vendor}/{self.name}"

    @property
    def spec_module(self) -> str:
        """The module of the pandera models: the vendor document's executable form."""
        return self.models[0].__module__ if self.models else f"delivery_platform.vendors.{self.vendor}.spec"

    @property
    def job_name(self) -> str:
        return self.job or f"{self.vendor}_daily_delivery"


@dataclass(frozen=True)
class Vendor:
    """A vendor as one unit."""

    name: str  # package name under vendors/, resource prefix, concurrency pool, asset key prefix
    title: str  # as the vendor writes it
    document: str  # docs/<vendor>.md: the rules with the vendor document's sections
    deliverables: tuple[Deliverable, ...]
    destination_kinds: tuple[str, ...]  # the stores the vendor's document allows
    build_defs: Callable[[str], dg.Definitions]  # env -> assets, checks, jobs, schedules, sensors, resources
    settings: Optional[Callable[[], dg.ConfigurableResource]] = None  # resource `<name>_settings`
    returns: tuple = ()  # the feeds the vendor sends back (returns pipeline)
    extras: dict = field(default_factory=dict)  # vendor hooks the operations jobs use (receipts, probes)

    @property
    def settings_key(self) -> str:
        return f"{self.name}_settings"

    @property
    def destination_key(self) -> str:
        return f"{self.name}_destination"


def daily_schedule(job: dg.UnresolvedAssetJobDefinition, name: str, when: Schedule, env: str) -> dg.ScheduleDefinition:
    """The partitioned job's daily schedule, running by default in production only."""
    return dg.build_schedule_from_partitioned_job(
        job, name=name, hour_of_day=when.hour, minute_of_hour=when.minute,
        description=when.description or f"Daily at {when} for the previous day.",
        default_status=dg.DefaultScheduleStatus.RUNNING if env == "production" else dg.DefaultScheduleStatus.STOPPED)

