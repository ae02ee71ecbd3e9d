"""The vendor status page: one asset per vendor (`status/<vendor>`, group `status`) whose
metadata shows, for the last 14 days, each deliverable's state, what the vendor sent back, and
the alerts still open. It reads the ledger, the staging area, the received returns and the alert
log; it is refreshed by `vendor_status_schedule` (every 30 minutes) and from the UI.

States of a (deliverable, day):
- delivered: every file at the vendor by the deadline; late: after it;
- failed: a delivery began and did not finish, or its last attempt failed;
- held: the files were built but nothing was sent (a blocking check failed, or the run stopped);
- empty: the day had no rows, so there was nothing to send;
- missing: none of the above after the deadline; pending: before it.
"""

import datetime as dt
import json
from collections import Counter

import dagster as dg

from ..alerts.freshness import due_at
from ..alerts.sensors import AlertLog
from ..core import clock
from ..ledger import Ledger
from ..resources import LedgerResource
from ..warehouse.resource import WarehouseResource
from .. import receipts
from ..registry import Deliverable, Vendor

DAYS = 14
GROUP = "status"
# plain words (upper case where someone must act): emoji do not render in every browser's fonts
MARKS = {
    "delivered": "delivered",
    "late": "LATE",
    "failed": "FAILED",
    "held": "HELD",
    "empty": "empty",
    "missing": "MISSING",
    "pending": "pending",
}


def deadline(d: Deliverable, day: dt.date) -> dt.datetime:
    """The same deadline the missed-deadline alert uses (the deliverable's, in the registry)."""
    return due_at(d.deadline, day.isoformat())


def completed(d: Deliverable, key: str, ledger: Ledger) -> dt.datetime:
    """When the partition's file set was complete at the vendor: by the clock, as its receipt
    recorded it, else the ledger's last delivered time."""
    docs = receipts.load(ledger, d, key)
    if docs and docs[0].get("completed_at"):
        return dt.datetime.fromisoformat(docs[0]["completed_at"])
    finished = [a.finished_at for a in ledger.delivered(d.vendor, d.name, key) if a.finished_at]
    return (
        dt.datetime.fromisoformat(max(finished))
        if finished
        else dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    )


def day_state(
    d: Deliverable, day: dt.date, ledger: Ledger, warehouse: WarehouseResource, now: dt.datetime
) -> str:
    key = day.isoformat()
    state = ledger.partition_state(d.vendor, d.name, key)
    attempts = ledger.attempts(d.vendor, d.name, key)
    if state == "complete" and ledger.empty_reason(d.vendor, d.name, key) is not None:
        return "empty"  # recorded delivered-empty: nothing to send, nothing missed
    if state == "complete":
        return "late" if completed(d, key, ledger) > deadline(d, day) else "delivered"
    if state == "delivering" or (attempts and attempts[-1].status == "failed"):
        return "failed"
    manifest = warehouse.files_dir(d.vendor, d.name, key) / "files.json"
    if manifest.exists():
        files = json.loads(manifest.read_text()).get("files", [])
        return "empty" if not files else "held"
    if warehouse.is_staged(d.vendor, d.name, key):
        return "held"
    return "missing" if now >= deadline(d, day) else "pending"


def returns_cell(d: Deliverable, day: dt.date, ledger: Ledger, state: str) -> str:
    """What came back for a delivered day: the short `status` of the vendor's answer (its receipt)."""
    if d.answer is None or state not in ("delivered", "late"):
        return ""
    docs = receipts.load(ledger, d, day.isoformat())
    if not docs:
        return "no receipt"
    return docs[0]["vendor_answer"].get("status", "")


def open_alerts(vendor: str, ledger: Ledger, days: list[dt.date]) -> list[str]:
    """Checks and preflights still failing, and missed deadlines of the window not made good since."""
    log = AlertLog()
    failing = log.failing(f"{vendor}/%", f"preflight/{vendor}/%")
    sent = log.sent_keys(f"deadline:{vendor}:%")
    window = {d.isoformat() for d in days} | {(days[0] + dt.timedelta(days=1)).isoformat()}
    out = [("preflight failing: " if s.startswith("preflight/") else "check failing: ") + s for s in failing]
    for key in sent:
        _, _, deliverable, day = key.split(":")[:4]
        if day in window and ledger.partition_state(vendor, deliverable, day) != "complete":
            out.append(f"missed deadline: {deliverable} {day}")
    return out


def report(
    entry: Vendor, ledger: Ledger, warehouse: WarehouseResource, now: dt.datetime
) -> tuple[str, Counter, list]:
    vendor, mine = entry.name, list(entry.deliverables)
    last = now.date() - dt.timedelta(days=1)
    days = [last - dt.timedelta(days=i) for i in range(DAYS)]
    counts: Counter = Counter()
    with_returns = bool(entry.returns)  # a vendor that sends something back
    head = "| day | " + " | ".join(d.name for d in mine) + (" | returns |" if with_returns else " |")
    lines = [head, "|---|" + "---|" * (len(mine) + with_returns)]
    for day in days:
        cells, back = [], []
        for d in mine:
            state = day_state(d, day, ledger, warehouse, now)
            counts[state] += 1
            cells.append(MARKS[state])
            back.append(returns_cell(d, day, ledger, state))
        lines.append(
            f"| {day} | "
            + " | ".join(cells)
            + (f" | {'; '.join(b for b in back if b)} |" if with_returns else " |")
        )
    alerts = open_alerts(vendor, ledger, days)
    text = (
        f"**{vendor}**, the {DAYS} days to {last} (as of {now:%Y-%m-%d %H:%M} UTC)\n\n"
        + "\n".join(lines)
        + "\n\n**Open alerts**\n\n"
        + ("\n".join(f"- {a}" for a in alerts) if alerts else "none")
    )
    return text, counts, alerts


def build_asset(entry: Vendor) -> dg.AssetsDefinition:
    vendor = entry.name

    @dg.asset(
        key=[GROUP, vendor],
        group_name=GROUP,
        kinds={"python"},
        description=f"{vendor}: the last {DAYS} days per deliverable (delivered / late / failed / held / "
        "empty / missing), what came back, and open alerts. Open it first.",
    )
    def status(
        context: dg.AssetExecutionContext, ledger: LedgerResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        text, counts, alerts = report(entry, ledger.get(), warehouse, clock.now())
        return dg.MaterializeResult(
            metadata={
                "status": dg.MetadataValue.md(text),
                **{state: dg.MetadataValue.int(counts.get(state, 0)) for state in MARKS},
                "open_alerts": dg.MetadataValue.int(len(alerts)),
            }
        )

    return status


def build_defs(env: str, vendors) -> dg.Definitions:
    assets = [build_asset(v) for v in vendors]
    job = dg.define_asset_job(
        "vendor_status",
        selection=dg.AssetSelection.groups(GROUP),
        description="Refresh every vendor's status page.",
    )
    schedule = dg.ScheduleDefinition(
        name="vendor_status_schedule",
        job=job,
        cron_schedule="*/30 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if env == "production"
        else dg.DefaultScheduleStatus.STOPPED,
        description="Every 30 minutes: the vendor status pages.",
    )
    return dg.Definitions(assets=assets, jobs=[job], schedules=[schedule])
