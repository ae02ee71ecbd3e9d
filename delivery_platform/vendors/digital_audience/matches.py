"""The nightly match export from dA ("Daily DA match export": delta files of DMP cookie ids
matched to our CRM record ids), taken in exactly once per file.

The sensor lists the drop location (a local folder by default, dA's SFTP or S3 through
`DELIVERY_DIGITAL_AUDIENCE_RETURNS_*`); each new or changed file becomes a dynamic partition of
`digital_audience/match_export` and one run. The run keeps the received bytes, validates them with
the `MatchExport` model and stores the rows as Parquet under `data/returns/da_matches/`; a
malformed file is copied to `data/quarantine/digital_audience/` and the run fails naming the file,
rule, column and sample rows. Nothing received is ever deleted.
"""

import datetime as dt
import json
import os
import random
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb

from ... import settings
from ...alerts.model import Alert
from ...alerts.sensors import AlertLog
from ...core import clock
from ...destinations.base import DestinationError
from ...destinations.local import LocalDestination
from ...destinations.resource import DestinationResource, destination_from_env
from ...receiving import csv_error, keep_received, quarantine
from ...validation import validate_parquet
from ...core.sql import sql_literal
from ...warehouse.resource import copy_to_parquet
from .spec import MatchExport

VENDOR = "digital_audience"
RETURNS = "digital_audience_returns"
TABLE = "da_matches"
match_files = dg.DynamicPartitionsDefinition(name="digital_audience_match_files")
NAME_OK = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def inbox_resource() -> DestinationResource:
    return destination_from_env(RETURNS)


def open_inbox(resource: DestinationResource):
    if resource.kind == "local" and not resource.store.root:
        return LocalDestination(RETURNS, settings.data_dir() / "inbox" / VENDOR)
    return resource.get()


def received_dir() -> Path:
    return settings.data_dir() / "received" / VENDOR


def quarantine_dir() -> Path:
    return settings.data_dir() / "quarantine" / VENDOR


def build_sensor(running: bool) -> dg.SensorDefinition:
    from ...alerts.sinks import AlertSinks

    def tick(context: dg.SensorEvaluationContext, digital_audience_returns: DestinationResource,
             alert_sinks: AlertSinks):
        return match_export_sensor(context, digital_audience_returns, alert_sinks)

    return dg.sensor(
        name="digital_audience_match_export_sensor", minimum_interval_seconds=300,
        asset_selection=dg.AssetSelection.assets(dg.AssetKey([VENDOR, "match_export"])),
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description="Watches dA's drop location for match-export files; one run per new or changed file; "
                    "alerts once a day when tonight's export has not arrived by "
                    "DA_MATCH_EXPORT_DEADLINE_HOUR.",
    )(tick)


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


def match_export_sensor(context: dg.SensorEvaluationContext, digital_audience_returns: DestinationResource,
                        alert_sinks=None):
    cursor: dict = json.loads(context.cursor) if context.cursor else {}
    seen = cursor["files"] if "files" in cursor else cursor  # older cursors were the files map alone
    last_arrival = cursor.get("last_arrival")
    with open_inbox(digital_audience_returns) as inbox:
        try:
            inbox.require_folder()
        except DestinationError as exc:
            # a wrong inbox folder must not look like "no export tonight": every tick fails, one alert
            if alert_sinks is not None and AlertLog().claim(f"da-inbox-missing:{inbox.uri('')}"):
                alert_sinks.send(Alert("check_failed", "digital_audience", "digitalAudience match export inbox "
                                       "does not exist", deliverable="match_export", detail=str(exc)))
            raise
        listing = inbox.list()
    requests, new_partitions, current = [], [], {}
    for f in listing:
        # a new version is a new size, time or (where the store reports it) checksum
        version = f"{f.size}:{f.mtime!r}" + (f":{f.md5}" if f.md5 else "")
        current[f.name] = version
        if seen.get(f.name) == version:
            continue
        if not f.name.endswith((".csv", ".csv.gz")):
            # not an export we know how to read: said once per version, never silently skipped
            context.log.warning(f"not taking in {f.name!r}: a match export is a .csv or .csv.gz file")
            continue
        key = partition_key_for(f.name)
        if key is None:
            # left at dA, never taken in: a human must look (it is logged on every new version)
            context.log.error(f"not taking in {f.name!r}: names must be relative paths of [A-Za-z0-9._-] "
                              "parts, without '.' or '..'")
            continue
        new_partitions.append(key)
        requests.append(dg.RunRequest(run_key=f"{f.name}:{version}", partition_key=key,
                                      tags={"vendor": VENDOR, "source_file": f.name}))
    now = clock.now()
    if requests:
        last_arrival = now.date().isoformat()
    if alert_sinks is not None and missing_export_alert(last_arrival, now, deadline_hour(), alert_sinks):
        context.log.error(f"no match export has arrived today by {deadline_hour():02d}:00 UTC: alert sent")
    # the cursor holds only files still present, so it stays as small as the folder
    return dg.SensorResult(run_requests=requests,
                           cursor=json.dumps({"files": current, "last_arrival": last_arrival},
                                             sort_keys=True),
                           dynamic_partitions_requests=[match_files.build_add_request(new_partitions)] if new_partitions else [])


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


@dg.asset(key=[VENDOR, "match_export"], group_name=VENDOR, partitions_def=match_files, kinds={"csv"},
          pool=VENDOR,
          description="One received match-export file (a dynamic partition per file): kept as received, validated, "
                      "stored as Parquet under data/returns/da_matches/ (view `returns_da_matches`).")
def match_export(context: dg.AssetExecutionContext, digital_audience_returns: DestinationResource) -> dg.MaterializeResult:
    key = context.partition_key
    name = next((t for t in [context.run.tags.get("source_file")] if t), key)
    with open_inbox(digital_audience_returns) as inbox:
        kept = keep_received(inbox, name, received_dir(), key)  # our copy first: nothing received is lost
    staged = settings.staging_dir() / VENDOR / "match_export" / f"{key}.parquet"
    con = duckdb.connect()
    try:
        if kept.stat().st_size == 0:
            raise ValueError("the file is empty")
        header = export_header(kept)
        check_header(header)
        rows = copy_to_parquet(con, read_export_sql(kept, header), staged)
    except (duckdb.Error, ValueError) as exc:
        quarantine(kept, quarantine_dir(), key)
        first = csv_error(exc) if isinstance(exc, duckdb.Error) else str(exc)
        raise dg.Failure(f"digitalAudience match export {name}: cannot be read as a CSV with cookie_id, "
                         "crm_id (and matched_at) columns named in its header: "
                         f"{first}. Kept at {quarantine_dir() / key}.", allow_retries=False) from None
    finally:
        con.close()
    report = validate_parquet(staged, MatchExport, name=f"dA match export {name}")
    if not report.passed:
        quarantine(kept, quarantine_dir(), key)
        raise dg.Failure(report.error_text(f"digitalAudience match export {name} (kept at {quarantine_dir() / key})"),
                         metadata={"failures": dg.MetadataValue.md(report.summary())}, allow_retries=False)
    target = settings.returns_dir() / TABLE / f"{key}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(staged, partial)
    os.replace(partial, target)
    context.log.info(f"{name}: {rows:,} matches stored at {target}")
    return dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(rows),
                                          "rows": dg.MetadataValue.int(rows), "source_file": name,
                                          "stored": dg.MetadataValue.path(str(target)), **match_rate(target)})


def match_rate(stored: Path) -> dict:
    """Matched CRM records as a share of the records last delivered: a series the UI plots."""
    states = sorted((settings.data_dir() / "state" / VENDOR).glob("*.parquet"))
    if not states:
        return {}
    con = duckdb.connect()
    matched, delivered = con.execute(
        f"SELECT (SELECT count(DISTINCT crm_id) FROM read_parquet({sql_literal(str(stored))}) WHERE crm_id IN "
        f"(SELECT custom FROM read_parquet({sql_literal(str(states[-1]))}))), "
        f"(SELECT count(*) FROM read_parquet({sql_literal(str(states[-1]))}))").fetchone()
    con.close()
    return {"matched_records": dg.MetadataValue.int(matched), "delivered_records": dg.MetadataValue.int(delivered),
            "match_rate": dg.MetadataValue.float(round(matched / delivered, 4) if delivered else 0.0)}


@dg.asset_check(asset=match_export, name="matches_known_records", blocking=False,
                pool=VENDOR,
                description="Warns when matched CRM ids are not among the records we delivered to dA.")
def matches_known_records(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    key = context.partition_key if context.has_partition_key else None
    stored = settings.returns_dir() / TABLE / f"{key}.parquet"
    states = sorted((settings.data_dir() / "state" / VENDOR).glob("*.parquet"))
    if not states or not stored.exists():
        return dg.AssetCheckResult(passed=True, description="nothing delivered yet to compare with")
    con = duckdb.connect()
    unknown, total = con.execute(
        f"SELECT count(*) FILTER (WHERE crm_id NOT IN (SELECT custom FROM read_parquet({sql_literal(str(states[-1]))}))), "
        f"count(*) FROM read_parquet({sql_literal(str(stored))})").fetchone()
    return dg.AssetCheckResult(passed=unknown == 0, severity=dg.AssetCheckSeverity.WARN,
                               description=f"{unknown:,} of {total:,} matches name CRM ids we never delivered"
                               + ("" if not unknown else ". Next step: ask dA (through the agreed channel) whether the "
                                  "export is for our client and from our latest CRM file; nothing received is deleted"),
                               metadata={"unknown_crm_ids": unknown, "matches": total})


def simulate_match_export(partition_key: str, client: str = "acme", share: float = 0.3) -> Path | None:
    """Play dA on the embedded default: write tonight's match export into the inbox from the
    contacts last delivered (demo only)."""
    states = sorted((settings.data_dir() / "state" / VENDOR).glob("*.parquet"))
    if not states:
        return None
    con = duckdb.connect()
    ids = [r[0] for r in con.execute(f"SELECT custom FROM read_parquet({sql_literal(str(states[-1]))})").fetchall()]
    rng = random.Random(partition_key)
    chosen = sorted(rng.sample(ids, max(1, int(len(ids) * share)))) if ids else []
    inbox = settings.data_dir() / "inbox" / VENDOR
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / f"{client}_matches_{partition_key.replace('-', '')}.csv"
    day = dt.date.fromisoformat(partition_key) + dt.timedelta(days=1)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="") as handle:
        handle.write("cookie_id,crm_id,matched_at\r\n")
        for crm_id in chosen:
            handle.write(f"dmp-{rng.getrandbits(48):012x},{crm_id},{day} 02:00:00\r\n")
    os.replace(partial, path)
    return path
