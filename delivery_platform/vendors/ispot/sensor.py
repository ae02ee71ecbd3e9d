"""The top-up sensor (R3): requests a run for every day inside iSpot's 12-day window that has
events not yet sent, or a file whose upload never succeeded.

A day's first delivery is the daily schedule's; the sensor looks at yesterday only once the
schedule has attempted it, and at older days always (a day the schedule skipped is caught up).
Events under the minimum size are not requested (iSpot would refuse them): the tick says they
are held. Days older than the window need paid reprocessing: run them by hand with
`allow_reprocessing`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from ...core import clock
from .uploader import ISpotApiResource
from ...formats.lines import csv_header, csv_line_bytes_sql
from ...ledger import Ledger
from ...resources import LedgerResource
from ...warehouse.resource import WarehouseResource
from . import spec, topups
from .assets import ISpotSettings, enforces_minimum

VENDOR, DELIVERABLE = topups.VENDOR, topups.DELIVERABLE


@dataclass(frozen=True)
class TopUp:
    partition: str
    events: int
    bytes: int
    resend: int  # files recorded earlier whose upload never succeeded
    run_key: str


def _attempted(ledger: Ledger, key: str) -> bool:
    return bool(
        ledger.partition_state(VENDOR, DELIVERABLE, key)
        or ledger.attempts(VENDOR, DELIVERABLE, key)
        or ledger.empty_reason(VENDOR, DELIVERABLE, key)
    )


def find_topups(
    now: dt.datetime, warehouse: WarehouseResource, ledger: Ledger, settings: ISpotSettings, enforce: bool
) -> tuple[list[TopUp], list[str]]:
    """(days to run, notes on days held under the minimum)."""
    today = now.astimezone(dt.timezone.utc).date()
    days = {}
    for age in range(1, spec.REPROCESSING_DAYS + 1):
        key = (today - dt.timedelta(days=age)).isoformat()
        if age > 1 or _attempted(ledger, key):
            days[key] = topups.plan_batch(ledger, key)
    if not days:
        return [], []
    columns, headers = settings.file_columns(), settings.file_headers()
    header_bytes = len(csv_header(headers).encode("ascii"))
    up_to = topups.watermark(now, settings.load_settle_seconds)
    sql = topups.unsent_by_day_sql(
        {k: b.sent_through for k, b in days.items()},
        up_to,
        settings.include_ipv6,
        csv_line_bytes_sql(headers, quoting="all"),  # the bytes the lines will take, without building them
        columns,
        headers,
    )
    with warehouse.connect() as con:
        unsent = {day: (events, int(size or 0)) for day, events, size in con.execute(sql).fetchall()}
    found, held = [], []
    for key, batch in days.items():
        events, size = unsent.get(key, (0, 0))
        if not events and not batch.pending:
            continue
        if not batch.pending and enforce and header_bytes + size < settings.min_bytes:
            held.append(
                f"{key}: {events:,} unsent events ({header_bytes + size:,} bytes) held under the "
                f"{settings.min_bytes:,}-byte minimum"
            )
            continue
        found.append(
            TopUp(
                key,
                events,
                header_bytes + size,
                len(batch.pending),
                f"ispot-topup:{key}:{batch.sent_through}:{events}:{len(batch.pending)}",
            )
        )
    return found, held


def build_topup_sensor(job, env: str) -> dg.SensorDefinition:
    status = dg.DefaultSensorStatus.RUNNING if env == "production" else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name="ispot_topup_sensor",
        job=job,
        minimum_interval_seconds=3600,
        default_status=status,
        description="Requests a top-up run for every day inside iSpot's 12-day window with events not yet "
        "sent (late arrivals, a skipped or failed day) or a file whose upload never succeeded.",
    )
    def ispot_topup_sensor(
        context: dg.SensorEvaluationContext,
        warehouse: WarehouseResource,
        ledger: LedgerResource,
        ispot_settings: ISpotSettings,
        ispot_api: ISpotApiResource,
    ):
        found, held = find_topups(
            clock.now(), warehouse, ledger.get(), ispot_settings, enforces_minimum(ispot_settings, ispot_api)
        )
        for note in held:
            context.log.info(note)
        if not found:
            return dg.SkipReason(
                "no day inside the window has events to send" + (f"; held: {'; '.join(held)}" if held else "")
            )
        return [
            dg.RunRequest(
                run_key=t.run_key,
                partition_key=t.partition,
                tags={"ispot/top_up": f"{t.events} events, {t.resend} file(s) re-sent"},
            )
            for t in found
        ]

    return ispot_topup_sensor
