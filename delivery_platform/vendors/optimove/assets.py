"""Optimove: each table's rows changed in the day (by `LastUpdated`) -> spec checks -> gzip CSV /
JSON lines or Parquet files, size-split -> S3, GCS, Azure Blob or SFTP.

Read beside `optimove-data-delivery.txt` and DIGEST section 3. One factory builds the same chain
for every table; a table is its SQL and its pandera model.
"""

import datetime as dt
import os
from dataclasses import dataclass
from typing import Dict, Optional

import dagster as dg
import pandera.pandas as pa

from ...core import clock
from ...core.sql import sql_literal
from ...delivery import OutgoingFile
from ...factory import Chain, Files, Step
from ...formats.lines import csv_header, csv_line_sql, json_line_sql
from ...formats.parquet import write_parquet_parts
from ...formats.parts import PartWriter, write_lines
from ...manifest import reset_folder
from ...partitions import daily, day_bounds
from ...registry import Deliverable, Schedule
from ...resources import LedgerResource
from ...validation.report import with_next_step
from . import sizing, spec, timing

VENDOR = "optimove"
LATE_NEXT = ("Next step: tell Optimove's contact the files arrived after the agreed time (their import ran "
             "without them); if it repeats, launch earlier or agree a later OPTIMOVE_DATA_READY_UTC.")
DOC = "docs/optimove.md"  # what descriptions cite: in the repo, with the vendor document's sections


class OptimoveSettings(dg.ConfigurableResource):
    """What was agreed in Optimove's ETL form (resource `optimove_settings`; env `OPTIMOVE_FORMAT`,
    `OPTIMOVE_DATA_READY_UTC`, `OPTIMOVE_TARGET_FILE_BYTES`, `OPTIMOVE_COMPRESSION`,
    `OPTIMOVE_TABLE_LOADS`)."""

    format: str = "csv"  # csv | json | parquet
    compression: str = "gzip"  # Optimove accepts gzip only; anything else is refused clearly
    gzip_level: int = 6
    target_file_bytes: int = spec.DEFAULT_TARGET_BYTES
    band_low_bytes: int = spec.BAND_LOW_BYTES  # the recommended part size band (100-250 MB)
    band_high_bytes: int = spec.BAND_HIGH_BYTES
    data_ready_utc: str = timing.DEFAULT  # the agreed daily readiness time: every file is there by then
    settle_minutes: int = 30  # a window is extracted only this long after it closed (late writes)
    table_loads: Dict[str, str] = {}  # table -> "full" | "incremental", overriding the table's default


def settings_from_env(environ: dict | None = None) -> OptimoveSettings:
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    for var, field, cast in (("OPTIMOVE_FORMAT", "format", str.lower), ("OPTIMOVE_DATA_READY_UTC", "data_ready_utc", str),
                             ("OPTIMOVE_TARGET_FILE_BYTES", "target_file_bytes", int),
                             ("OPTIMOVE_COMPRESSION", "compression", str.lower)):
        if environ.get(var):
            kwargs[field] = cast(environ[var])
    if environ.get("OPTIMOVE_TABLE_LOADS"):  # e.g. "customers=incremental,transactions=full"
        pairs = [p.split("=", 1) for p in environ["OPTIMOVE_TABLE_LOADS"].split(",") if p.strip()]
        kwargs["table_loads"] = {k.strip(): v.strip().lower() for k, v in pairs}
    return OptimoveSettings(**kwargs)


@dataclass(frozen=True)
class Table:
    name: str  # Optimove table name, also the folder and file prefix
    source: str  # warehouse table
    model: type[pa.DataFrameModel]
    select: str  # the columns in Optimove's names and formats
    load: str  # "full" (dimension tables) or "incremental" by LastUpdated (transactional and fact tables)
    event_column: Optional[str] = None  # the column with each row's event time (receipts)


def load_of(table: Table, settings: OptimoveSettings) -> str:
    """The table's load, as configured, else its default (R13)."""
    load = settings.table_loads.get(table.name, table.load)
    if load not in spec.LOADS:
        raise dg.Failure(f"optimove_settings.table_loads[{table.name!r}]={load!r}: expected one of "
                         f"{', '.join(spec.LOADS)}", allow_retries=False)
    return load


def _ts(col: str) -> str:
    return f"strftime({col}, '%Y-%m-%d %H:%M:%S')"


def _date(col: str) -> str:
    # sentinel dates become blank (DIGEST 3.1 "Date")
    return f"CASE WHEN {col} IN ({', '.join(f'DATE {sql_literal(d)}' for d in spec.SENTINEL_DATES)}) THEN NULL " \
           f"ELSE strftime({col}, '%Y-%m-%d') END"


TABLES = (
    Table("customers", "optimove_customers", spec.Customers, f"""
        trim(customer_id) AS CustomerID, nullif(trim(email), '') AS Email, nullif(trim(first_name), '') AS FirstName,
        nullif(trim(last_name), '') AS LastName, nullif(upper(trim(country)), '') AS Country,
        {_date('registration_date')} AS RegistrationDate, {_date('birth_date')} AS BirthDate,
        CASE WHEN opt_in_email THEN 'true' WHEN NOT opt_in_email THEN 'false' END AS OptInEmail,
        {_ts('last_updated')} AS LastUpdated""", "full", "LastUpdated"),
    Table("transactions", "optimove_transactions", spec.Transactions, f"""
        trim(transaction_id) AS TransactionID, trim(customer_id) AS CustomerID,
        {_ts('transaction_ts')} AS TransactionDate, amount AS Amount, upper(trim(currency)) AS Currency,
        nullif(trim(product_id), '') AS ProductID, lower(trim(status)) AS Status,
        {_ts('last_updated')} AS LastUpdated""", "incremental", "TransactionDate"),
)


def window_sql(table: Table, partition_key: str) -> str:
    """Rows whose `last_updated` falls in the partition's half-open UTC day [start, end): a row
    changed exactly at midnight belongs to the new day only, so each change is sent once."""
    start, end = (sql_literal(t.isoformat(sep=" ")) for t in day_bounds(partition_key))
    key = table.model.to_schema().columns
    first = next(iter(key))
    return (f"SELECT {table.select} FROM {table.source} WHERE last_updated >= {start} AND last_updated < {end} "
            f"ORDER BY {first}")


def full_sql(table: Table) -> str:
    """Every row of the table as it stands when the day is extracted (a dimension table is sent whole)."""
    first = next(iter(table.model.to_schema().columns))
    return f"SELECT {table.select} FROM {table.source} ORDER BY {first}"


def ready_to_extract(partition_key: str, now: dt.datetime, settle_minutes: int) -> tuple[bool, str]:
    end = day_bounds(partition_key)[1].replace(tzinfo=dt.timezone.utc) + dt.timedelta(minutes=settle_minutes)
    if now < end:
        return False, f"the window of {partition_key} closes at {end:%Y-%m-%d %H:%M} UTC (incl. {settle_minutes} min settle)"
    return True, "window closed"


def file_name(table: str, partition_key: str, number: int, fmt: str) -> str:
    ext = {"csv": "csv.gz", "json": "json.gz", "parquet": "parquet"}[fmt]
    return f"{table}_{partition_key.replace('-', '')}_{number:03d}.{ext}"


def deliverable(table: Table) -> Deliverable:
    """The table as the registry, ledger and alerts know it."""
    return Deliverable(
        vendor=VENDOR, name=table.name, source=table.source, models=(table.model,), staged=table.name,
        deadline=timing.data_ready_time, schedule=schedule, event_column=table.event_column,
        probe_name=lambda token: f"_preflight/not-for-ingestion/{token}/probe.txt",
        probe_why="Optimove's ingestion reads at most two folder levels (docs/optimove.md); the probe sits three "
                  "folders deep, outside every table folder.")


def schedule() -> Schedule:
    """Three hours before the agreed data-ready time (read when the definitions are built)."""
    ready = timing.data_ready_time()
    run_at = timing.schedule_time(ready, OptimoveSettings().settle_minutes)
    return Schedule(run_at.hour, run_at.minute, description=(
        f"Daily at {run_at:%H:%M} UTC for the previous UTC day: three hours before the agreed data-ready time "
        f"{ready:%H:%M} UTC (OPTIMOVE_DATA_READY_UTC), never before the day has closed."))


def extract(table: Table):
    def sql(step: Step) -> str:
        s, key = step.settings, step.partition_key
        ready, why = ready_to_extract(key, clock.now(), s.settle_minutes)
        if not ready:
            raise step.fail(f"not ready: {why}")
        load = load_of(table, s)
        step.log.info(f"{table.name} {key}: {load}")
        return window_sql(table, key) if load == "incremental" else full_sql(table)
    return sql


def rows_metadata(table: Table):
    def metadata(step: Step, count: int) -> dict:
        load = load_of(table, step.settings)
        window = f"[{step.partition_key} 00:00:00, next day 00:00:00) UTC" if load == "incremental" else "every row"
        return {"load": dg.MetadataValue.text(load), "window": dg.MetadataValue.text(window)}
    return metadata


def write_files(table: Table):
    def write(step: Step, staged_path) -> Files:
        s, key, fmt = step.settings, step.partition_key, step.settings.format
        if s.compression != "gzip":
            raise step.fail(f"optimove_settings.compression={s.compression!r}: Optimove accepts gzip only "
                            "(ZIP is not supported, DIGEST 3.1)")
        if fmt not in spec.FORMATS:
            raise step.fail(f"optimove_settings.format={fmt!r}: expected one of {', '.join(spec.FORMATS)}")
        low, high = s.band_low_bytes, s.band_high_bytes
        if not 0 < low <= s.target_file_bytes <= high < spec.MAX_FILE_BYTES:
            raise step.fail(f"optimove_settings: band_low_bytes ({low:,}) <= target_file_bytes "
                            f"({s.target_file_bytes:,}) <= band_high_bytes ({high:,}) < 1 GB is required (the "
                            "document's 1 GB limit and its recommended 100-250 MB)")
        folder = reset_folder(step.files_dir)
        staged = sql_literal(str(staged_path))
        columns = list(table.model.to_schema().columns)
        with step.warehouse.connect(attach_warehouse=False) as con:
            name_for = lambda n: file_name(table.name, key, n, fmt)  # noqa: E731
            if fmt == "parquet":
                # a first part of about half the target, judged by the staged file's bytes per row
                total = con.execute(f"SELECT count(*) FROM read_parquet({staged})").fetchone()[0]
                per_row = staged_path.stat().st_size / max(total, 1)
                parts = write_parquet_parts(con, f"SELECT * FROM read_parquet({staged})", folder, name_for,
                                            target_bytes=s.target_file_bytes,
                                            first_rows=int(s.target_file_bytes / 2 / per_row) or 1)
            else:
                # JSON values as strings, as in the document's example ({"Id":"30515240","SubscriptionId":null})
                as_text = "struct_pack(" + ", ".join(f'"{c}" := CAST("{c}" AS VARCHAR)' for c in columns) + ")"
                line = csv_line_sql(columns) if fmt == "csv" else json_line_sql(expression=as_text)
                writer = PartWriter(folder, name_for, header=csv_header(columns).encode() if fmt == "csv" else b"",
                                    max_bytes=s.target_file_bytes, gzip_level=s.gzip_level)
                parts = write_lines(con, f"SELECT {line} AS line FROM read_parquet({staged})", writer)
            parts = sizing.renumber(sizing.balance(parts, low=low, high=high, fmt=fmt, con=con,
                                                   gzip_level=s.gzip_level), name_for)
        outgoing = [OutgoingFile.of_part(p, f"{table.name}/{p.name}", gzip_level=None if fmt == "parquet" else s.gzip_level)
                    for p in parts]
        load = load_of(table, s)
        off = sizing.outside_band(parts, low, high)
        if off:
            step.log.warning(f"{table.name} {key}: parts outside the recommended {low:,}-{high:,} bytes: {off}")
        return Files(outgoing, manifest={"format": fmt, "columns": columns, "load": load},
                     metadata={"format": dg.MetadataValue.text(fmt), "load": dg.MetadataValue.text(load),
                               "parts_outside_band": dg.MetadataValue.int(len(off))})
    return write


def check_files(step: Step, outgoing: list, info: dict) -> list[str]:
    """Every file read back with DuckDB: the same rows and values as the checked data, each under 1 GB."""
    problems = [f"{f.name}: {f.bytes:,} bytes, over 1 GB" for f in outgoing if (f.bytes or 0) >= spec.MAX_FILE_BYTES]
    staged = sql_literal(str(step.staged))
    with step.warehouse.connect(attach_warehouse=False) as con:
        back = read_back_sql([str(f.path) for f in outgoing], info["format"], info["columns"])
        cast = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in info["columns"])
        diff = con.execute(f"SELECT count(*) FROM ((SELECT {cast} FROM read_parquet({staged}) EXCEPT ALL "
                           f"SELECT {cast} FROM ({back})) UNION ALL (SELECT {cast} FROM ({back}) EXCEPT ALL "
                           f"SELECT {cast} FROM read_parquet({staged})))").fetchone()[0]
        rows = con.execute(f"SELECT count(*) FROM ({back})").fetchone()[0]
    if diff:
        problems.append(f"{diff:,} rows differ between the files and the checked data")
    step.log.info(f"{len(outgoing)} file(s), {rows:,} rows read back")
    return problems


def after_delivery(step: Step, outgoing: list, outcome) -> dict:
    ready_at = timing.ready_at(step.partition_key, timing.parse(step.settings.data_ready_utc))
    late = clock.now() > ready_at
    if late:
        step.log.warning(f"{step.chain.deliverable.label} {step.partition_key}: delivered after the data-ready time "
                         f"{ready_at:%Y-%m-%d %H:%M} UTC")
    return {"after_data_ready_time": dg.MetadataValue.bool(late)}


def before_data_ready_check(table: Table):
    def build(delivery: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=delivery, name="before_data_ready_time", blocking=False, partitions_def=daily,
                        pool=VENDOR,
                        description="Warns when the partition's files reached the destination after the agreed "
                                    "data-ready time (OPTIMOVE_DATA_READY_UTC on the day after the partition).")
        def before_data_ready(context: dg.AssetCheckExecutionContext, ledger: LedgerResource,
                              optimove_settings: OptimoveSettings) -> dg.AssetCheckResult:
            key = context.partition_key
            ready_at = timing.ready_at(key, timing.parse(optimove_settings.data_ready_utc))
            delivered = ledger.get().delivered(VENDOR, table.name, key)
            finished = [dt.datetime.fromisoformat(d.finished_at) for d in delivered if d.finished_at]
            last = max(finished) if finished else None
            if any(d.run_id == context.run.run_id for d in delivered):
                last = clock.now()  # sent by this run's delivery step moments ago: on the clock, as date rules
            on_time = last is not None and last <= ready_at
            return dg.AssetCheckResult(
                passed=on_time, severity=dg.AssetCheckSeverity.WARN,
                description=(f"delivered {last:%Y-%m-%d %H:%M} UTC, before the data-ready time "
                             f"{ready_at:%Y-%m-%d %H:%M} UTC" if on_time else with_next_step(
                                 f"delivered {last:%Y-%m-%d %H:%M} UTC, after the data-ready time "
                                 f"{ready_at:%Y-%m-%d %H:%M} UTC", LATE_NEXT) if last else
                             with_next_step("not delivered", "Next step: launch the partition (docs/operating.md), "
                                                             "then tell Optimove the files are late.")),
                metadata={"minutes_before_ready": dg.MetadataValue.float(
                    round((ready_at - last).total_seconds() / 60, 1) if last else 0.0)})
        return before_data_ready
    return build


def chain(table: Table) -> Chain:
    """The whole chain of one Optimove table: configuration, no new machinery."""
    return Chain(
        deliverable=deliverable(table), extract=extract(table), write=write_files(table), check_files=check_files,
        after_delivery=after_delivery, delivery_checks=(before_data_ready_check(table),),
        rows_metadata=rows_metadata(table),
        descriptions={
            "rows": f"{table.name}: {table.load} by default ({DOC}; the vendor's only transactional and fact tables "
                    "are extracted incrementally, R13): incremental = rows whose LastUpdated falls in the partition's "
                    "UTC day; full = every row. In Optimove's formats (docs/optimove.md: dates, datetimes, decimals, "
                    "blanks). `optimove_settings.table_loads` overrides the load.",
            "spec": f"The pandera model `{table.model.__name__}` (vendors/optimove/spec.py).",
            "files": f"{table.name} as `{table.name}/{table.name}_YYYYMMDD_NNN.<csv.gz|json.gz|parquet>`: gzip only "
                     "(ZIP is not supported), parts in the recommended 100-250 MB band (cut near 150 MB, a small last "
                     "part merged into the one before), never above 1 GB.",
            "files_check": "Reads every file back with DuckDB: the same rows and values as the checked data, each "
                           "file under 1 GB, gzip or Parquet as configured.",
            "delivery": "Publishes the files to `optimove_destination` (S3, GCS, Azure Blob or SFTP; local outbox by "
                        "default) before the agreed data-ready time; the ledger makes re-runs send nothing twice."})


def read_back_sql(paths: list[str], fmt: str, columns: list[str]) -> str:
    listed = "[" + ", ".join(sql_literal(p) for p in paths) + "]"
    if not paths:
        return "SELECT " + ", ".join(f"NULL::VARCHAR AS \"{c}\"" for c in columns) + " WHERE false"
    if fmt == "parquet":
        return f"SELECT * FROM read_parquet({listed})"
    types = "{" + ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in columns) + "}"
    if fmt == "csv":
        return (f"SELECT * FROM read_csv({listed}, header = true, columns = {types}, compression = 'gzip', "
                "quote = '\"', escape = '\"', auto_detect = false)")
    return f"SELECT * FROM read_json({listed}, format = 'newline_delimited', compression = 'gzip', columns = {types})"


CHAINS = [chain(t) for t in TABLES]
