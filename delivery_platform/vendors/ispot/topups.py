"""Which of a day's events are still to be sent to iSpot, and the sensor that sends them (R3).

iSpot's "Upload Requirements": data for past days uploaded late goes into the batch run 12 days
after the data date; older data needs paid reprocessing. So a day is never finished while it is
inside that window: events that reach the warehouse after the day was delivered (`loaded_at`
later than the first run) go out as top-up files `conversions_YYYYMMDD_002.csv`, `_003`, ...

What a file carries is a range of the sort key `(loaded_at, event_id)` of the day's events,
`(after, through]`, recorded in the ledger (`file_contents`) before the file's first upload:
- nothing twice: the ranges of a day's files do not overlap (each new range starts after the
  highest key of every file recorded for the day) and a name, once recorded, is only ever sent
  again with exactly its recorded range (a retry after a lost answer);
- nothing lost: ranges are contiguous (each starts where the last recorded one ended), every
  event has one key, and a new range ends at the highest key loaded by the run's clock time
  (`loaded_at <= now`), so an event either is in a recorded range or has a key above all of
  them and is picked up by the next top-up. This holds as long as `loaded_at` is stamped when the
  row becomes visible (an event stamped earlier but committed later would fall behind the
  watermark: the loader must stamp at commit, or `load_settle_seconds` must cover the lag).
Keys are recorded as text, `YYYY-MM-DD HH:MM:SS.ffffff|<event_id, 20 digits>`, so text order is
key order; queries compare the typed columns (`after_sql`), so no text key is built per row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ...ledger import FileContents, Ledger
from ...partitions import day_bounds
from ...core.sql import sql_literal

VENDOR, DELIVERABLE = "ispot", "conversions"

KEY_COLUMNS = ("loaded_at", "event_id")


def key_text(loaded_at: dt.datetime, event_id: int) -> str:
    """The recorded form of a key (text order is key order)."""
    return f"{loaded_at:%Y-%m-%d %H:%M:%S.%f}|{event_id:020d}"


def after_sql(key: str | None, loaded_at: str = "loaded_at", event_id: str = "event_id") -> str:
    """Rows whose key `(loaded_at, event_id)` is above a recorded key; every row for no key."""
    if not key:
        return "TRUE"
    stamp, ident = key.split("|")
    at = f"TIMESTAMP {sql_literal(stamp)}"
    return f"({loaded_at} > {at} OR ({loaded_at} = {at} AND {event_id} > {int(ident)}))"


def range_sql(after: str | None, through: str, loaded_at: str = "loaded_at", event_id: str = "event_id") -> str:
    """Rows in the recorded range `(after, through]` of a file."""
    return f"({after_sql(after, loaded_at, event_id)} AND NOT {after_sql(through, loaded_at, event_id)})"


def sequence_of(file_name: str) -> int:
    """The NNN of conversions_YYYYMMDD_NNN.csv (or .zip)."""
    return int(file_name.rsplit("_", 1)[1].split(".")[0])


def watermark(now: dt.datetime, settle_seconds: int = 0) -> str:
    """The highest `loaded_at` a run may send: its clock time (minus the settle lag), naive UTC."""
    at = now.astimezone(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=settle_seconds)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True)
class Batch:
    """What one run of a partition sends: files recorded earlier whose upload never succeeded
    (re-sent with exactly their recorded range), then the events above everything recorded."""

    pending: tuple[FileContents, ...]
    sent_through: str | None  # the highest key of any file recorded for the day
    next_sequence: int
    delivered_files: int

    def to_json(self) -> dict:
        return {
            "pending": [p.__dict__ for p in self.pending],
            "sent_through": self.sent_through,
            "next_sequence": self.next_sequence,
            "delivered_files": self.delivered_files,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Batch":
        return cls(
            tuple(FileContents(**p) for p in data["pending"]),
            data["sent_through"],
            data["next_sequence"],
            data["delivered_files"],
        )


def plan_batch(ledger: Ledger, partition_key: str) -> Batch:
    recorded = ledger.contents(VENDOR, DELIVERABLE, partition_key)
    delivered = {d.file_name for d in ledger.delivered(VENDOR, DELIVERABLE, partition_key)}
    attempted = {d.file_name for d in ledger.attempts(VENDOR, DELIVERABLE, partition_key)}
    names = attempted | {r.file_name for r in recorded}
    pending = tuple(r for r in recorded if r.file_name not in delivered)
    through = max((r.through_key for r in recorded), default=None)
    return Batch(pending, through, max((sequence_of(n) for n in names), default=0) + 1, len(delivered))


def day_events_sql(partition_key: str, up_to: str) -> str:
    """The day's events loaded by `up_to`."""
    start, end = (sql_literal(t.isoformat(sep=" ")) for t in day_bounds(partition_key))
    return (
        f"SELECT * FROM ispot_conversion_events "
        f"WHERE event_ts >= {start} AND event_ts < {end} AND loaded_at <= {sql_literal(up_to)}"
    )


def in_batch_sql(batch: Batch) -> str:
    """The rows of the pending files and every row above the recorded ones."""
    ranges = [range_sql(p.after_key, p.through_key) for p in batch.pending]
    return "(" + " OR ".join([after_sql(batch.sent_through)] + ranges) + ")"


# The warehouse expression of each file column (by the document's name). `sku` has no source in
# the warehouse (warehouse/schema.py), so configuring it is refused.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # "24 h UTC timestamp" as the document's example shows it
SOURCES = {
    "ip": "client_ip",
    # cut to the second and cast: DuckDB's text of a TIMESTAMP of whole seconds is exactly DATETIME_FORMAT's
    # for years 1-9999 (a test compares the two over that range) and costs a tenth of strftime
    # (10 M rows: 0.04 s against 0.45 s)
    "datetime": "CAST(date_trunc('second', event_ts) AS VARCHAR)",
    "siteid": "trim(site_id)",
    "app": "lower(trim(platform))",
    "type": "lower(trim(event_type))",
    "customdata": "nullif(trim(custom_data), '')",
    "passthru": "'1'",
    "useragent": "user_agent",
    "orderid": "order_id",
    "amount": "CAST(amount AS VARCHAR)",
    "customertype": "nullif(regexp_extract(custom_data, 'customer_([^,]+)', 1), '')",
    "channel": "nullif(regexp_extract(custom_data, 'channel_([^,]+)', 1), '')",
}


def file_select(columns: tuple[str, ...], headers: tuple[str, ...]) -> str:
    """The SELECT list of the file's columns, named as the header profile names them."""
    return ", ".join(f'{SOURCES[c]} AS "{h}"' for c, h in zip(columns, headers))


def unsent_by_day_sql(
    days: dict[str, str | None],
    up_to: str,
    include_ipv6: bool,
    line_bytes_sql: str,
    columns: tuple[str, ...],
    headers: tuple[str, ...],
) -> str:
    """Per data day: sendable events above every recorded file, and the bytes their lines take."""
    conditions = []
    for key, through in days.items():
        start, end = (sql_literal(t.isoformat(sep=" ")) for t in day_bounds(key))
        above = "" if through is None else f" AND {after_sql(through)}"
        conditions.append(f"(event_ts >= {start} AND event_ts < {end}{above})")
    ipv6 = "" if include_ipv6 else " AND NOT contains(client_ip, ':')"
    return (
        f"SELECT day, count(*) AS events, sum({line_bytes_sql}) AS bytes FROM ("
        f"SELECT strftime(event_ts, '%Y-%m-%d') AS day, {file_select(columns, headers)} "
        f"FROM ispot_conversion_events WHERE loaded_at <= {sql_literal(up_to)}{ipv6} "
        f"AND ({' OR '.join(conditions) or 'FALSE'})) GROUP BY day ORDER BY day"
    )
