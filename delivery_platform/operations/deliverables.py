"""What the safety net needs to know about each deliverable, in one table.

The vendor packages stay untouched: this names, per deliverable, its delivery asset, the warehouse
table whose day it sends, how "the day's data" is counted and how fresh the table is, which column
of the staged rows holds the event time (for receipts), the spec module that is its executable
document, and where a preflight write probe may go without the vendor picking it up.
A test checks that every `_delivery` asset of the definitions has an entry here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

import dagster as dg

from ..core import clock


@dataclass(frozen=True)
class Deliverable:
    vendor: str
    name: str  # the deliverable as the ledger names it
    source: str  # the warehouse table whose day is delivered
    day_rows: str  # SQL predicate on `source` for the day's rows ({start}, {end}, {day} are literals)
    fresh_column: str | None  # the newest value says how far the table is loaded (None: not measurable)
    event_column: str | None  # staged column with each row's event time (None: the rows have none)
    spec_module: str  # the pandera models of the vendor's document
    probe_name: Callable[[str], str] | None  # name for the write probe (given a unique token), None: skipped
    probe_why: str  # why that name is never picked up, or why the probe is skipped

    @property
    def delivery_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.vendor, f"{self.name}_delivery"])

    @property
    def label(self) -> str:
        return f"{self.vendor}/{self.name}"


def probe_token() -> str:
    """Unique per probe: the clock's time (readable in a listing) and a random part."""
    return f"{clock.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


_IN_DAY = "{col} >= {start} AND {col} < {end}"

DELIVERABLES: tuple[Deliverable, ...] = (
    Deliverable(
        vendor="lotame",
        name="segmentmembership",
        source="lotame_segment_memberships",
        day_rows="valid_from <= {day} AND (valid_to IS NULL OR {day} < valid_to)",
        fresh_column="last_seen_at",
        event_column=None,
        spec_module="delivery_platform.vendors.lotame.spec",
        probe_name=lambda token: f"_preflight-{token}.probe",
        probe_why="Lotame imports only a YYYYMMDD/ folder once its YYYYMMDD.done marker exists (docs/lotame.md, "
        "'Done marker'); the probe lies outside any date folder and no marker ever names it.",
    ),
    Deliverable(
        vendor="ispot",
        name="conversions",
        source="ispot_conversion_events",
        day_rows=_IN_DAY.replace("{col}", "event_ts"),
        fresh_column="loaded_at",
        event_column="datetime",
        spec_module="delivery_platform.vendors.ispot.spec",
        probe_name=None,
        probe_why="skipped: every upload to iSpot's API is a conversions file (no name is ignored, nothing "
        "can be deleted), so the token probe checks the credentials instead.",
    ),
    *(
        Deliverable(
            vendor="optimove",
            name=table,
            source=f"optimove_{table}",
            day_rows=_IN_DAY.replace("{col}", "last_updated"),
            fresh_column="last_updated",
            event_column=event,
            spec_module="delivery_platform.vendors.optimove.spec",
            probe_name=lambda token: f"_preflight/not-for-ingestion/{token}/probe.txt",
            probe_why="Optimove's ingestion reads at most two folder levels (docs/optimove.md); the probe "
            "sits three folders deep, outside every table folder.",
        )
        for table, event in (("customers", "LastUpdated"), ("transactions", "TransactionDate"))
    ),
    Deliverable(
        vendor="digital_audience",
        name="crm",
        source="crm_contacts",
        day_rows="opted_in_at < {end} AND (opted_out_at IS NULL OR opted_out_at >= {end})",
        fresh_column="opted_in_at",
        event_column=None,
        spec_module="delivery_platform.vendors.digital_audience.spec",
        probe_name=None,
        probe_why="skipped: dA's document names no file its Onboarding API ignores in the storage it "
        "polls; a probe could be read as a CRM file. The credentials probe's read stands in.",
    ),
    Deliverable(
        vendor="idomoo",
        name="data_file",
        source="idomoo_recipients",
        day_rows="send_date = {day}",
        fresh_column=None,
        event_column=None,
        spec_module="delivery_platform.vendors.idomoo.spec",
        probe_name=None,
        probe_why="skipped: Idomoo processes every file in Uploads and its document names no name it "
        "ignores; the login, the host key and the Uploads folder are checked instead.",
    ),
)

BY_KEY = {d.delivery_key: d for d in DELIVERABLES}


def for_vendor(vendor: str) -> list[Deliverable]:
    return [d for d in DELIVERABLES if d.vendor == vendor]


def delivery_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    """The `<vendor>/<deliverable>_delivery` assets of the definitions (daily partitioned)."""
    return sorted(
        (
            s.key
            for s in defs.resolve_all_asset_specs()
            if len(s.key.path) == 2 and s.key.path[1].endswith("_delivery")
        ),
        key=lambda k: k.to_user_string(),
    )
