"""The nightly match export back from dA, as `digitalaudience-dmp-integration.txt` "Daily DA match
export" says it: a feed of the returns pipeline (returns/pipeline.py does the watching, keeping,
quarantine and storing).

- Where: the drop location (a local folder by default, `data/inbox/digital_audience/`; dA's SFTP or
  S3 through `DELIVERY_DIGITAL_AUDIENCE_RETURNS_*`). "DA will upload ... every night": one export a
  night, alerted once when none has come by `DA_MATCH_EXPORT_DEADLINE_HOUR` (UTC).
- What: "the matched DMP cookie id – CRM record id", delta files: a `.csv` or `.csv.gz` whose header
  names `cookie_id`, `crm_id` and optionally `matched_at` (R8: found by name, any order, extra
  columns ignored). Other names are refused once per version; names must be relative paths of
  `[A-Za-z0-9._-]` parts (a name with '..' or odd characters is never taken in).
- Complete: when listed (dA publishes whole files); each new size, time or checksum is a new
  version and one run.
- Parsed: read as UTF-8 CSV, strict (ragged or truncated rows refused), validated with the
  `MatchExport` model (spec.py); stored under `data/returns/da_matches/` (view `returns_da_matches`)
  with the match rate against the contact set last delivered.
- Check: matches name CRM ids we delivered (a warning otherwise).
"""

import datetime as dt
import json
import os
import re
from pathlib import Path

import dagster as dg
import duckdb

from ... import settings
from ...alerts.model import Alert
from ...alerts.sensors import AlertLog
from ...core import clock
from ...core.sql import sql_literal
from ...destinations.local import LocalDestination
from ...destinations.resource import DestinationResource, destination_from_env
from ...returns.pipeline import FeedCheck, Intake, Parsed, Refused, Rejected, ReturnFeed, _short, evaluate, \
    return_pipeline
from ...returns.receiving import csv_error
from ...state_store import state_store
from ...validation import validate_parquet
from ...warehouse.resource import copy_to_parquet
from .spec import MatchExport

VENDOR = "digital_audience"
RETURNS = "digital_audience_returns"
TABLE = "da_matches"
NAME_OK = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def inbox_resource() -> DestinationResource:
    return destination_from_env(RETURNS)


def open_inbox(resource: DestinationResource):
    if resource.kind == "local" and not resource.store.root:
        return LocalDestination(RETURNS, settings.data_dir() / "inbox" / VENDOR)
    return resource.get()


def deadline_hour(environ: dict | None = None) -> int:
    """`DA_MATCH_EXPORT_DEADLINE_HOUR` (UTC, default 8): by then tonight's export must be there."""
    environ = os.environ if environ is None else environ
    return int(environ.get("DA_MATCH_EXPORT_DEADLINE_HOUR", "8"))


def missing_export_alert(last_arrival: str | None, now: dt.datetime, hour: int, sinks, ledger=None) -> bool:
    """One alert per day when no new export arrived since midnight UTC and the hour has passed.
    Only once we have delivered records to dA (before that nothing can match). True if sent."""
    from ...ledger import Ledger

    today = now.date().isoformat()
    if now.hour < hour or (last_arrival or "") >= today:
        return False
    delivered = [d for d in (ledger or Ledger()).history(VENDOR, "crm", status="delivered")
                 if d.partition_key < today]
    if not delivered or not AlertLog().claim(f"da-match-export-missing:{today}"):
        return False
    sinks.send(Alert("deadline_missed", VENDOR,
                     f"digitalAudience match export for the night before {today} has not "
                     f"arrived by {hour:02d}:00 UTC", deliverable="match_export", partition=today,
                     detail=f"last new export seen on {last_arrival or 'never'}; dA promises one every "
                            "night"))
    return True


def partition_key_for(name: str) -> str | None:
    """The file's partition key: its path with '/' written '~' (a character names may not hold, so
    two names never share a key); None for a name we refuse (odd characters, '..', absolute)."""
    parts = name.split("/")
    if any(p in ("", ".", "..") or not NAME_OK.match(p) for p in parts):
        return None
    return "~".join(parts)


def recognise(name: str, _settings=None) -> str | Refused:
    if not name.endswith((".csv", ".csv.gz")):
        return Refused(f"not taking in {name!r}: a match export is a .csv or .csv.gz file")
    key = partition_key_for(name)
    if key is None:  # left at dA, never taken in: a human must look (logged on every new version)
        return Refused(f"not taking in {name!r}: names must be relative paths of [A-Za-z0-9._-] parts, "
                       "without '.' or '..'", level="error")
    return key


def _missing_inbox(exc, inbox, _folder, resources: dict) -> None:
    sinks = resources.get("alert_sinks")
    if sinks is not None and AlertLog().claim(f"da-inbox-missing:{inbox.uri('')}"):
        sinks.send(Alert("check_failed", VENDOR, "digitalAudience match export inbox does not exist",
                         deliverable="match_export", detail=str(exc)))


def _on_tick(context, _listing, cursor: dict, ready, resources: dict, now: float) -> None:
    when = clock.now()
    if ready:
        cursor["last_arrival"] = when.date().isoformat()
    sinks = resources.get("alert_sinks")
    if sinks is not None and missing_export_alert(cursor.get("last_arrival"), when, deadline_hour(), sinks):
        context.log.error(f"no match export has arrived today by {deadline_hour():02d}:00 UTC: alert sent")


REQUIRED = ("cookie_id", "crm_id")  # matched_at may be absent (NULL)
COLUMNS = ("cookie_id", "crm_id", "matched_at")


def export_header(path: Path) -> list[str]:
    """The header row's names, as the file spells them (R8: columns are found by name)."""
    import csv
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            first = handle.readline(1 << 16)
        text = first.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"the header row cannot be read as UTF-8 CSV ({exc})") from None
    return next(csv.reader([text]), [])


def check_header(header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValueError(f"the header {header[:8]} lacks the required column(s) {missing} (needed: "
                         f"{', '.join(REQUIRED)}; optional: matched_at)")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ValueError(f"the header names {twice} more than once")


def read_export_sql(path: Path, header: list[str]) -> str:
    """Every column as text, then ours picked by name: a file with its columns in another order is
    read right (R8); extra columns are ignored."""
    compression = "gzip" if path.name.endswith(".gz") else "none"
    columns = "{" + ", ".join(f"{sql_literal(h)}: 'VARCHAR'" for h in header) + "}"
    picked = ", ".join(f'"{c}"' if c in header else f'NULL::VARCHAR AS "{c}"' for c in COLUMNS)
    return (f"SELECT {picked} FROM read_csv({sql_literal(str(path))}, header = true, delim = ',', "
            f"quote = '\"', columns = {columns}, compression = '{compression}', auto_detect = false, "
            "strict_mode = true, null_padding = false)")


def parse_export(intake: Intake) -> Parsed:
    name, kept = intake.remote, intake.kept
    con = duckdb.connect()
    try:
        if kept.stat().st_size == 0:
            raise ValueError("the file is empty")
        header = export_header(kept)
        check_header(header)
        rows = copy_to_parquet(con, read_export_sql(kept, header), intake.staged)
    except (duckdb.Error, ValueError) as exc:
        first = csv_error(exc) if isinstance(exc, duckdb.Error) else str(exc)
        raise Rejected("cannot be read as a CSV with cookie_id, crm_id (and matched_at) columns named in its "
                       f"header: {first}") from None
    finally:
        con.close()
    report = validate_parquet(intake.staged, MatchExport, name=f"dA match export {name}")
    if not report.passed:
        raise Rejected(report.error_text(f"digitalAudience match export {name}"), whole=True,
                       metadata={"failures": dg.MetadataValue.md(report.summary())})
    return Parsed(rows, match_rate(intake.staged))


def latest_delivered_state() -> Path | None:
    """A local copy of the contact set last delivered to dA (state_store.py), None before any."""
    store = state_store()
    states = [k for k in store.list(f"state/{VENDOR}/") if k.endswith(".parquet")]
    return store.get(states[-1]) if states else None


def match_rate(stored: Path) -> dict:
    """Matched CRM records as a share of the records last delivered: a series the UI plots."""
    state = latest_delivered_state()
    if state is None:
        return {}
    con = duckdb.connect()
    matched, delivered = con.execute(
        f"SELECT (SELECT count(DISTINCT crm_id) FROM read_parquet({sql_literal(str(stored))}) WHERE crm_id IN "
        f"(SELECT custom FROM read_parquet({sql_literal(str(state))}))), "
        f"(SELECT count(*) FROM read_parquet({sql_literal(str(state))}))").fetchone()
    con.close()
    return {"matched_records": dg.MetadataValue.int(matched), "delivered_records": dg.MetadataValue.int(delivered),
            "match_rate": dg.MetadataValue.float(round(matched / delivered, 4) if delivered else 0.0)}


def known_records(context, rows: Path, _resources: dict) -> dg.AssetCheckResult:
    state = latest_delivered_state()
    if state is None or not rows.exists():
        return dg.AssetCheckResult(passed=True, description="nothing delivered yet to compare with")
    con = duckdb.connect()
    unknown, total = con.execute(
        f"SELECT count(*) FILTER (WHERE crm_id NOT IN (SELECT custom FROM read_parquet({sql_literal(str(state))}))), "
        f"count(*) FROM read_parquet({sql_literal(str(rows))})").fetchone()
    con.close()
    return dg.AssetCheckResult(passed=unknown == 0, severity=dg.AssetCheckSeverity.WARN,
                               description=f"{unknown:,} of {total:,} matches name CRM ids we never delivered"
                               + ("" if not unknown else ". Next step: ask dA (through the agreed channel) whether the "
                                  "export is for our client and from our latest CRM file; nothing received is deleted"),
                               metadata={"unknown_crm_ids": unknown, "matches": total})


def read_cursor(text: str | None) -> dict:
    """Cursors written before the returns pipeline (a map of file -> version, or {"files": …,
    "last_arrival": …}) read as the pipeline's: the same versions count as taken."""
    cursor = json.loads(text) if text else {}
    if not cursor or "taken" in cursor:
        return cursor
    files = cursor["files"] if "files" in cursor else cursor
    return {"taken": {_short(name, 6): _short(version, 5) for name, version in files.items()},
            "pending": {}, "last_arrival": cursor.get("last_arrival")}


DA_MATCH_EXPORT = ReturnFeed(
    vendor=VENDOR, asset="match_export", table=TABLE, partitions="digital_audience_match_files",
    sensor="digital_audience_match_export_sensor", title="digitalAudience match export", source=RETURNS,
    recognise=recognise,
    parse=parse_export,
    open_source=open_inbox,
    checks=(FeedCheck("matches_known_records", "Warns when matched CRM ids are not among the records we "
                                               "delivered to dA.", known_records),),
    on_tick=_on_tick,
    on_missing_folder=_missing_inbox,
    read_cursor=read_cursor,
    interval=lambda: 300,
    sensor_description="Watches dA's drop location for match-export files; one run per new or changed file; alerts "
                       "once a day when tonight's export has not arrived by DA_MATCH_EXPORT_DEADLINE_HOUR.",
    asset_description="One received match-export file (a dynamic partition per file): kept as received, validated, "
                      "stored as Parquet under data/returns/da_matches/ (view `returns_da_matches`).",
)


def match_export_sensor(context: dg.SensorEvaluationContext, digital_audience_returns: DestinationResource,
                        alert_sinks=None) -> dg.SensorResult:
    """One tick of `digital_audience_match_export_sensor` (tests and the demo call it directly)."""
    return evaluate(DA_MATCH_EXPORT, context, {RETURNS: digital_audience_returns, "alert_sinks": alert_sinks})


PIPELINE = return_pipeline(DA_MATCH_EXPORT)
match_files = PIPELINE.partitions
match_export = PIPELINE.asset
matches_known_records = PIPELINE.checks["matches_known_records"]
