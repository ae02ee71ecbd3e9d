"""iSpot.tv TV Conversions, as the document `ispot-tv-conversions-api.txt` states it.

Section names below are the document's; decisions on its contradictions are in
`shared/vendor-specs/DIGEST.md` section 2.3 and repeated where they apply.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandera.pandas as pa

from ...validation import sql_checks  # noqa: F401  (registers is_ipv4, not_blank, is_ascii)

# "CSV File Format": the example header row. ASCII on purpose: the document's column table
# spells `app` with Cyrillic letters (DIGEST 2.3 #5); headers are case-sensitive.
COLUMNS = ("ip", "datetime", "siteid", "app", "type", "customdata", "passthru", "useragent")
# "Steps Required" 8: once iSpot has verified the schema, daily files drop `passthru`.
PRODUCTION_COLUMNS = tuple(c for c in COLUMNS if c != "passthru")

# "Other available Dimensions" (custom reporting only): sent when configured, after `useragent`.
OPTIONAL_COLUMNS = ("orderid", "amount", "sku", "customertype", "channel")

# Header names are configuration (DIGEST R2): `document` is the column table and example header;
# `error_table` uses the names the status table's 400 message lists as mandatory.
HEADER_PROFILES = {
    "document": {},
    "error_table": {"ip": "LATEST_IPADDRESS", "siteid": "SITE_ID", "datetime": "TIME_STAMP"},
}

# "CSV File Format": files over 200 MB are not processed; split below it, measured on the bytes
# actually uploaded (DIGEST 2.3 #3, #4). Status table: a file under 8 MB is refused with a 400
# (DIGEST R1): it is never uploaded; the day is held instead (see assets.py, docs/ispot.md).
MAX_UPLOAD_BYTES = 200 * 1000 * 1000
DEFAULT_SPLIT_BYTES = 190 * 1000 * 1000
MIN_UPLOAD_BYTES = 8 * 1000 * 1000

# "Available Dimensions": `app` values; `type` is a fixed lower-case vocabulary (DIGEST 2.3 #8).
APP_VALUES = ("app", "web")
SITEID_PATTERN = r"^TC-\d+-\d+$"
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"

# "Upload Requirements": post before 7:00 AM PDT / 6:00 AM PST, i.e. 14:00 UTC all year.
CUTOFF_UTC = dt.time(14, 0)
SCHEDULE_TIMEZONE = "America/Los_Angeles"
# The partitions are UTC days, so the schedule runs in UTC: 12:00 UTC is 04:00 PST / 05:00 PDT.
SCHEDULE_HOUR_UTC = 12
LATE_BATCH_DAYS = 12  # late data is batched 12 days after the data date
REPROCESSING_DAYS = 12  # data older than this needs paid incremental reprocessing


class Conversions(pa.DataFrameModel):
    """One row per conversion event, the columns of the document's example header, in order."""

    ip: str = pa.Field(is_ipv4=(), description="client IPv4 address; IPv6 rows are filtered and counted "
                                               "(Matching Methodology)")
    datetime: str = pa.Field(str_matches=DATETIME_PATTERN,
                             description="24 h UTC timestamp YYYY-MM-DD hh:mm:ss, inside the partition day "
                                         "(Upload Requirements: previous day only)")
    siteid: str = pa.Field(str_matches=SITEID_PATTERN, description="TC-<account>-<site> from Customer Success, "
                                                                   "in the configured allow-list")
    app: str = pa.Field(isin=list(APP_VALUES), description="device type of the event: app or web")
    type: str = pa.Field(not_blank=(), is_ascii=(), no_formula_prefix=(),
                         description="event or user action, lower case (e.g. purchase)")
    customdata: str = pa.Field(nullable=True, no_formula_prefix=(), description="optional comma-joined tokens refining `type`")
    passthru: str = pa.Field(isin=["1"], description="static 1 while iSpot validates the onboarding files; "
                                                     "dropped in daily production files")
    useragent: str = pa.Field(not_blank=(), no_formula_prefix=(), description="raw client user agent")
    # optional columns, present only when configured (ISPOT_OPTIONAL_COLUMNS)
    orderid: str = pa.Field(nullable=True, no_formula_prefix=(), description="optional: order reference")
    amount: str = pa.Field(nullable=True, str_matches=r"^-?\d+\.\d{2}$",
                           description="optional: order amount, two decimals")
    sku: str = pa.Field(nullable=True, no_formula_prefix=(), description="optional: product sku")
    customertype: str = pa.Field(nullable=True, str_matches=r"^[a-z0-9_-]+$",
                                 description="optional: customer type (the customdata token customer_<type>)")
    channel: str = pa.Field(nullable=True, str_matches=r"^[a-z0-9_-]+$",
                            description="optional: marketing channel (the customdata token channel_<name>)")

    class Config:
        strict = True
        ordered = True


# IPv4 or IPv6 (R5: IPv6 rows are sent only when switched on, for accounts whose partner resolves them)
IP_ANY_PATTERN = (r"^(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                  r"|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$")


def logical_columns(onboarding: bool, optional: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The file's columns by their document names, in file order."""
    base = COLUMNS if onboarding else PRODUCTION_COLUMNS
    return base + tuple(c for c in OPTIONAL_COLUMNS if c in optional)


def header_names(columns: tuple[str, ...], profile: str = "document") -> tuple[str, ...]:
    if profile not in HEADER_PROFILES:
        raise ValueError(f"ISPOT_HEADER_PROFILE={profile!r}: expected one of {', '.join(HEADER_PROFILES)}")
    names = HEADER_PROFILES[profile]
    return tuple(names.get(c, c) for c in columns)


def conversions_schema(partition_key: str, site_ids: list[str], *, onboarding: bool,
                       profile: str = "document", optional: tuple[str, ...] = (), include_ipv6: bool = False) -> pa.DataFrameSchema:
    """The model with the rules that depend on the run: the partition day, the allow-list, the
    header profile, the optional columns and the IPv6 switch.

    `datetime` strings compare in time order because their format is fixed, so "inside the day"
    is a range check on the text (evaluated in SQL like every other rule).
    """
    day = dt.date.fromisoformat(partition_key)
    schema = Conversions.to_schema()
    datetime_col = schema.columns["datetime"]
    siteid_col = schema.columns["siteid"]
    updates = {
        "datetime": {"checks": list(datetime_col.checks) + [
            pa.Check.in_range(f"{day} 00:00:00", f"{day} 23:59:59")]},
        "siteid": {"checks": list(siteid_col.checks) + [pa.Check.isin(sorted(site_ids))]},
    }
    if include_ipv6:
        updates["ip"] = {"checks": [pa.Check.str_matches(IP_ANY_PATTERN)]}
    schema = schema.update_columns(updates)
    columns = logical_columns(onboarding, optional)
    schema = schema.remove_columns([c for c in schema.columns if c not in columns])
    return schema.rename_columns(dict(zip(columns, header_names(columns, profile))))


def columns_for(onboarding: bool) -> tuple[str, ...]:
    return COLUMNS if onboarding else PRODUCTION_COLUMNS


def processing_window(partition_key: str, now: dt.datetime) -> tuple[str, str]:
    """Which of iSpot's processing paths an upload made `now` takes ("Upload Requirements").

    Returns (kind, explanation): `standard` (previous day, before the cutoff), `late_batch`
    (after the cutoff or within the past 2 days: processed 12 days after the data date), or
    `paid_reprocessing` (older than 12 days: costs money, needs Customer Success first).
    """
    day = dt.date.fromisoformat(partition_key)
    now = now.astimezone(dt.timezone.utc)
    age = (now.date() - day).days
    if age > REPROCESSING_DAYS:
        return "paid_reprocessing", (f"data of {day} is {age} days old: iSpot reprocesses data older than "
                                     f"{REPROCESSING_DAYS} days incrementally at a daily cost; align with Customer "
                                     "Success before uploading")
    if age == 1 and now.time() < CUTOFF_UTC:
        return "standard", f"previous day's data posted before the {CUTOFF_UTC:%H:%M} UTC cutoff"
    if age < 1:
        return "not_ready", f"{day} is not over yet (now {now:%Y-%m-%d %H:%M} UTC)"
    batch = day + dt.timedelta(days=LATE_BATCH_DAYS)
    return "late_batch", (f"posted after the standard window (cutoff {CUTOFF_UTC:%H:%M} UTC on {day + dt.timedelta(days=1)}): "
                          f"iSpot includes it in the batch run 12 days after the data date ({batch})")


def cutoff_in_pacific(day: dt.date) -> str:
    """The cutoff for a data day in Pacific time, for descriptions (7:00 PDT or 6:00 PST)."""
    at = dt.datetime.combine(day + dt.timedelta(days=1), CUTOFF_UTC, tzinfo=dt.timezone.utc)
    return at.astimezone(ZoneInfo(SCHEDULE_TIMEZONE)).strftime("%H:%M %Z")
