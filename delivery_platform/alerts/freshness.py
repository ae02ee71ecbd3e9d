"""Each delivery's deadline as a Dagster asset check, `freshness_check`, on its
`<vendor>/<deliverable>_delivery` asset.

One spec: each deliverable's `deadline` in the vendor registry (`delivery_platform.vendors.DEADLINES`,
(vendor, deliverable) ->) an hour (UTC) of the day after
the partition, a `dt.time`, a function giving one (Optimove's data-ready time, read at each
evaluation), or `(days after the partition, hour)` (Idomoo: 0, its send date). `evaluate` answers
"is this partition where the vendor needs it, or is it overdue?" from the ledger (what reached the
vendor, not what Dagster materialized: a bundle killed half-way is not delivered) and the delivery
clock (core/clock.py, `DELIVERY_NOW`), so the answer is the same under a pinned clock.

The check runs in each delivery run (after the delivery asset), and the missed-deadline sensor
evaluates it for the last two due partitions of each deliverable, records the result as the
check's evaluation (so a delivery that never ran shows as an overdue check in the UI) and alerts
from it. Dagster's own time-partition freshness checks and FreshnessPolicy read Dagster's wall
clock and its materializations, so they would disagree with the pinned clock and with the ledger.
"""

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg

from ..core import clock
from ..ledger import Ledger
from ..resources import LedgerResource

CHECK_NAME = "freshness_check"


def _time_of(value) -> dt.time:
    value = value() if callable(value) else value
    return value if isinstance(value, dt.time) else dt.time(value)


def split(when) -> tuple[int, object]:
    """(days after the partition, time or hour or function) of a DEADLINES entry."""
    return when if isinstance(when, tuple) else (1, when)


def due_at(when, partition_key: str) -> dt.datetime:
    """When the partition must have reached the vendor (aware UTC)."""
    days_after, at = split(when)
    day = dt.date.fromisoformat(partition_key) + dt.timedelta(days=days_after)
    return dt.datetime.combine(day, _time_of(at), tzinfo=dt.timezone.utc)


def describe(when) -> str:
    days_after, at = split(when)
    day = {0: "on the partition's own day (a send date)", 1: "the day after the partition"}.get(
        days_after, f"{days_after} days after the partition"
    )
    source = " (OPTIMOVE_DATA_READY_UTC, read at each evaluation)" if callable(at) else ""
    return f"{_time_of(at):%H:%M} UTC {day}{source}"


def recent_partitions(when, now: dt.datetime) -> list[str]:
    """The partitions the missed-deadline sensor looks at: the last two that can be due by now
    (a data day from the day before yesterday, a send date from yesterday), latest first."""
    days_after, _ = split(when)
    return [(now - dt.timedelta(days=back)).date().isoformat() for back in (days_after, days_after + 1)]


@dataclass(frozen=True)
class Freshness:
    vendor: str
    deliverable: str
    partition: str
    due: dt.datetime
    state: str  # delivered | not_due | overdue | incomplete (begun, some files missing, overdue)
    metadata: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.state in ("delivered", "not_due")

    @property
    def description(self) -> str:
        what, by = f"{self.vendor}/{self.deliverable} {self.partition}", f"{self.due:%Y-%m-%d %H:%M} UTC"
        return {
            "delivered": f"{what} is delivered (due {by}).",
            "not_due": f"{what} is not delivered yet; it is due {by}.",
            "overdue": f"{what} was not delivered by {by}: the schedule did not run or "
            "the run did not finish. Launch the partition (docs/operating.md).",
            "incomplete": f"{what} was not delivered by {by}: delivery began but did not "
            "finish, some files are missing at the vendor. Re-run the partition: the ledger sends "
            "only what is missing.",
        }[self.state]


def evaluate(
    vendor: str, deliverable: str, when, partition_key: str, now: dt.datetime, ledger: Ledger
) -> Freshness:
    due = due_at(when, partition_key)
    state = ledger.partition_state(vendor, deliverable, partition_key)
    # a bundle with some files sent (a run killed or failed part-way) is not delivered
    delivered = state == "complete" or (
        state is None and bool(ledger.delivered(vendor, deliverable, partition_key))
    )
    if delivered:
        result = "delivered"
    elif now < due:
        result = "not_due"
    else:
        result = "incomplete" if state == "delivering" else "overdue"
    metadata = {
        "deadline": dg.MetadataValue.timestamp(due),
        "evaluated_at": dg.MetadataValue.timestamp(now),
        "ledger_state": dg.MetadataValue.text(state or "never attempted"),
    }
    if result in ("overdue", "incomplete"):
        metadata["overdue_minutes"] = dg.MetadataValue.int(int((now - due).total_seconds() // 60))
    return Freshness(vendor, deliverable, partition_key, due, result, metadata)


def delivery_key(vendor: str, deliverable: str) -> dg.AssetKey:
    return dg.AssetKey([vendor, f"{deliverable}_delivery"])


def to_evaluation(result: Freshness) -> dg.AssetCheckEvaluation:
    """The result as the check's evaluation, for `instance.report_runless_asset_event`."""
    return dg.AssetCheckEvaluation(
        asset_key=delivery_key(result.vendor, result.deliverable),
        check_name=CHECK_NAME,
        passed=result.passed,
        description=result.description,
        metadata=result.metadata,
        severity=dg.AssetCheckSeverity.ERROR,
        partition=result.partition,
    )


def _check_for(vendor: str, deliverable: str, when, partitions_def) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=delivery_key(vendor, deliverable),
        name=CHECK_NAME,
        blocking=False,
        partitions_def=partitions_def,
        pool=vendor,  # in the vendor's concurrency pool, like every step of its runs
        metadata={"deadline": describe(when)},
        description=f"Freshness: the partition must have reached the vendor by {describe(when)} "
        "(the deliverable's deadline in its vendor's registry entry). Evaluated after each delivery "
        "and by the `alerts_on_missed_deadlines` sensor, which records an overdue partition "
        "here and alerts once.",
    )
    def freshness_check(
        context: dg.AssetCheckExecutionContext, ledger: LedgerResource
    ) -> dg.AssetCheckResult:
        result = evaluate(vendor, deliverable, when, context.partition_key, clock.now(), ledger.get())
        return dg.AssetCheckResult(
            passed=result.passed, description=result.description, metadata=result.metadata
        )

    return freshness_check


def build_freshness_checks(assets: list, deadlines: dict) -> list[dg.AssetChecksDefinition]:
    """One `freshness_check` per delivery asset named in `deadlines`; every one must exist."""
    partitions = {
        key: a.partitions_def for a in assets if isinstance(a, dg.AssetsDefinition) for key in a.keys
    }
    checks = []
    for (vendor, deliverable), when in deadlines.items():
        key = delivery_key(vendor, deliverable)
        if key not in partitions:
            raise ValueError(
                f"the deadlines name {vendor}/{deliverable}, but there is no asset {key.to_user_string()}"
            )
        checks.append(_check_for(vendor, deliverable, when, partitions[key]))
    return checks
