"""iSpot.tv conversions: the day's events -> spec checks -> CSV parts -> upload (or local outbox).

Read beside `ispot-tv-conversions-api.txt`: "CSV File Format" (quoting, header, size, names),
"Available Dimensions" (columns), "Upload Requirements" (previous day only, the cutoff),
"Matching Methodology" (IPv4), and the API sections (destinations/ispot_api.py).
"""


import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List

import dagster as dg

from ...core import clock
from ...delivery import DeliveryConfig, OutgoingFile, deliver_files, delivery_retry_policy
from ...destinations.ispot_api import ISpotApiDestination, ISpotApiResource, ISpotRejected
from ...destinations.resource import DestinationResource
from ...formats.compress import zip_file
from ...formats.lines import csv_header, csv_line_sql
from ...formats.parts import PartWriter, write_lines
from ...manifest import files_metadata, read_manifest, reset_folder, write_manifest
from ...partitions import daily, day_bounds
from ...resources import LedgerResource
from ...validation import check_result, validate_parquet
from ...validation.sql_checks import sql_literal
from ...warehouse.assets import source_key
from ...warehouse.resource import WarehouseResource, copy_to_parquet
from . import spec

VENDOR, DELIVERABLE = "ispot", "conversions"
DOC = "ispot-tv-conversions-api.txt"


class ISpotSettings(dg.ConfigurableResource):
    """What iSpot's Customer Success agreed with us (resource `ispot_settings`).

    Defaults come from environment variables so operators set them once:
    `ISPOT_SITE_IDS` (comma-separated allow-list), `ISPOT_ONBOARDING` (true while iSpot
    validates: files carry `passthru`), `ISPOT_SPLIT_BYTES`, `ISPOT_ZIP`.
    """

    site_ids: List[str] = ["TC-1234-1", "TC-1234-2"]
    onboarding: bool = False
    split_bytes: int = spec.DEFAULT_SPLIT_BYTES  # target per uploaded file; must stay below 200 MB
    min_bytes: int = spec.MIN_UPLOAD_BYTES  # below this a WARN check fires (the document's 8 MB minimum)
    zip: bool = False  # upload each part as a .zip (the document accepts zips; plain CSV is the default)
    zip_level: int = 6
    allow_reprocessing: bool = False  # upload data older than 12 days (paid reprocessing at iSpot)


def settings_from_env(environ: dict | None = None) -> ISpotSettings:
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    if environ.get("ISPOT_SITE_IDS"):
        kwargs["site_ids"] = [s.strip() for s in environ["ISPOT_SITE_IDS"].split(",") if s.strip()]
    if environ.get("ISPOT_ONBOARDING"):
        kwargs["onboarding"] = environ["ISPOT_ONBOARDING"].lower() in ("1", "true", "yes")
    if environ.get("ISPOT_SPLIT_BYTES"):
        kwargs["split_bytes"] = int(environ["ISPOT_SPLIT_BYTES"])
    if environ.get("ISPOT_ALLOW_REPROCESSING"):
        kwargs["allow_reprocessing"] = environ["ISPOT_ALLOW_REPROCESSING"].lower() in ("1", "true", "yes")
    if environ.get("ISPOT_ZIP"):
        kwargs["zip"] = environ["ISPOT_ZIP"].lower() in ("1", "true", "yes")
    return ISpotSettings(**kwargs)


def conversions_sql(partition_key: str, onboarding: bool) -> str:
    """The day's events in the spec's columns. IPv6 rows are left out here and counted separately."""
    start, end = day_bounds(partition_key)
    passthru = "'1' AS passthru, " if onboarding else ""
    return f"""
        SELECT client_ip AS ip,
               strftime(event_ts, '%Y-%m-%d %H:%M:%S') AS datetime,
               trim(site_id) AS siteid,
               lower(trim(platform)) AS app,
               lower(trim(event_type)) AS type,
               nullif(trim(custom_data), '') AS customdata,
               {passthru}user_agent AS useragent
        FROM ispot_conversion_events
        WHERE event_ts >= {sql_literal(start.isoformat(sep=' '))} AND event_ts < {sql_literal(end.isoformat(sep=' '))}
          AND NOT contains(client_ip, ':')"""
    # no ORDER BY: rows keep the warehouse's order, the same on every run over the same data (so
    # re-runs produce the same bytes); sorting 10 M rows would double the step's time


def day_counts_sql(partition_key: str) -> str:
    start, end = (sql_literal(t.isoformat(sep=" ")) for t in day_bounds(partition_key))
    return f"""
        SELECT count(*) FILTER (WHERE event_ts >= {start} AND event_ts < {end}) AS in_day,
               count(*) FILTER (WHERE event_ts >= {start} AND event_ts < {end} AND contains(client_ip, ':')) AS ipv6,
               count(*) FILTER (WHERE event_ts >= {start} AND event_ts < {end} AND loaded_at >= {end}) AS late_arrivals,
               count(*) FILTER (WHERE loaded_at >= {start} AND loaded_at < {end} AND event_ts < {start}) AS loaded_today_other_days
        FROM ispot_conversion_events
        WHERE (event_ts >= {start} AND event_ts < {end}) OR (loaded_at >= {start} AND loaded_at < {end})"""


@dg.asset(
    key=[VENDOR, DELIVERABLE], group_name=VENDOR, partitions_def=daily, deps=[source_key("ispot_conversion_events")],
    kinds={"duckdb"},
    description=f"The day's web and app conversions in iSpot's columns ({DOC}: 'Available Dimensions', "
                "'Matching Methodology'). Only events of the partition's UTC day; IPv6 rows are filtered "
                "(iSpot matches households by IPv4) and counted in the metadata.",
)
def conversions(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                ispot_settings: ISpotSettings) -> dg.MaterializeResult:
    key = context.partition_key
    target = warehouse.staged_table(VENDOR, DELIVERABLE, key)
    with warehouse.connect() as con:
        in_day, ipv6, late, other_days = con.execute(day_counts_sql(key)).fetchone()
        rows = copy_to_parquet(con, conversions_sql(key, ispot_settings.onboarding), target)
    context.log.info(f"{key}: {rows:,} conversions staged; {ipv6:,} IPv6 rows filtered; {late:,} arrived late")
    return dg.MaterializeResult(metadata={
        "rows": dg.MetadataValue.int(rows),
        "events_in_day": dg.MetadataValue.int(in_day),
        "filtered_ipv6": dg.MetadataValue.int(ipv6),
        "late_arrivals_included": dg.MetadataValue.int(late),
        "loaded_today_for_earlier_days": dg.MetadataValue.int(other_days),
        "mode": dg.MetadataValue.text("onboarding (with passthru)" if ispot_settings.onboarding else "production"),
        "staged": dg.MetadataValue.path(str(target)),
    })


@dg.asset_check(asset=conversions, name="spec", blocking=True, partitions_def=daily,
                description="Every row meets the pandera model `Conversions` (vendors/ispot/spec.py) with the "
                            "partition day and the site-id allow-list; nothing is written or uploaded otherwise.")
def conversions_spec(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                     ispot_settings: ISpotSettings) -> dg.AssetCheckResult:
    key = context.partition_key
    schema = spec.conversions_schema(key, ispot_settings.site_ids, onboarding=ispot_settings.onboarding)
    report = validate_parquet(warehouse.staged_table(VENDOR, DELIVERABLE, key), schema, name=f"ispot conversions {key}")
    if not report.passed:
        context.log.error(report.error_text(f"ispot/conversions {key}"))
    return check_result(report)


def file_name(partition_key: str, number: int, ext: str = "csv") -> str:
    """`conversions_YYYYMMDD_NNN.csv`: unique per day, the same for a partition on every run."""
    return f"conversions_{partition_key.replace('-', '')}_{number:03d}.{ext}"


@dg.asset(
    key=[VENDOR, "conversion_files"], group_name=VENDOR, partitions_def=daily, deps=[conversions], kinds={"csv"},
    description=f"The CSV files iSpot receives ({DOC}: 'CSV File Format'): UTF-8 without BOM, header row "
                "unquoted, every data value double-quoted, \\n line endings, the header repeated in every part, "
                "split so that every uploaded file (plain or zipped) stays under 200 MB, named "
                "conversions_YYYYMMDD_NNN.csv.",
)
def conversion_files(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     ispot_settings: ISpotSettings) -> dg.MaterializeResult:
    key = context.partition_key
    if ispot_settings.split_bytes >= spec.MAX_UPLOAD_BYTES:
        raise dg.Failure(f"ispot_settings.split_bytes={ispot_settings.split_bytes:,} must stay below iSpot's "
                         f"{spec.MAX_UPLOAD_BYTES:,}-byte limit", allow_retries=False)
    columns = spec.columns_for(ispot_settings.onboarding)
    folder = reset_folder(warehouse.files_dir(VENDOR, DELIVERABLE, key))
    staged = warehouse.staged_table(VENDOR, DELIVERABLE, key)
    writer = PartWriter(folder, lambda n: file_name(key, n), header=csv_header(columns).encode("ascii"),
                        max_bytes=ispot_settings.split_bytes)
    with warehouse.connect(attach_warehouse=False) as con:
        sql = f"SELECT {csv_line_sql(columns, quoting='all')} AS line FROM read_parquet({sql_literal(str(staged))})"
        parts = write_lines(con, sql, writer)
    files = [OutgoingFile(p.path, p.name, rows=p.rows, md5=p.md5, bytes=p.bytes) for p in parts]
    if sum(p.rows for p in parts) == 0:  # an empty day: a header-only file would only earn a 400 "too small"
        for p in parts:
            p.path.unlink()
        files = []
        context.log.warning(f"{key}: no conversions in the day; no file is produced")
    if ispot_settings.zip:
        files = _zip_parts(files, ispot_settings.zip_level)
    write_manifest(folder, files, columns=list(columns), partition=key)
    context.log.info(f"{key}: {len(files)} file(s), {sum(f.bytes for f in files):,} bytes")
    return dg.MaterializeResult(metadata={**files_metadata(files), "folder": dg.MetadataValue.path(str(folder))})


def _zip_parts(files: list[OutgoingFile], level: int) -> list[OutgoingFile]:
    """One zip per part, compressed on every core (zlib releases the GIL)."""
    from ...destinations.base import file_md5

    def one(f: OutgoingFile) -> OutgoingFile:
        target = Path(f.path).with_suffix(".zip")
        zip_file(Path(f.path), target, arcname=f.name, level=level)
        Path(f.path).unlink()
        return OutgoingFile(target, target.name, rows=f.rows, md5=file_md5(target), bytes=target.stat().st_size)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, files))


def _read_back(con, path: Path, columns: tuple[str, ...]) -> dict:
    """Re-read one CSV part: its exact first line, BOM, and every data line's quoting, in SQL."""
    header = csv_header(columns).encode("ascii")
    with open(path, "rb") as handle:
        first = handle.readline()
    field = '"([^"]|"")*"'
    line_re = f"^{field}(,{field}){{{len(columns) - 1}}}$"
    counted = con.execute(
        f"SELECT count(*), count_if(NOT regexp_full_match(line, {sql_literal(line_re)})), "
        f"min(CASE WHEN NOT regexp_full_match(line, {sql_literal(line_re)}) THEN line END) "
        f"FROM read_csv({sql_literal(str(path))}, columns = {{'line': 'VARCHAR'}}, header = true, delim = chr(1), "
        f"quote = '', escape = '', auto_detect = false, new_line = '\\n')").fetchone()
    return {"header_ok": first == header, "bom": first.startswith(b"\xef\xbb\xbf"), "first_line": first[:120],
            "rows": counted[0], "badly_quoted": counted[1], "sample_bad": (counted[2] or "")[:200]}


@dg.asset_check(asset=conversion_files, name="files_match_spec", blocking=True, partitions_def=daily,
                description="Re-reads every file: exact unquoted ASCII header and no BOM, every data value quoted, "
                            "size under 200 MB, rows adding up to the checked rows (MD5s are verified on read-back at delivery).")
def conversion_files_match_spec(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                                ispot_settings: ISpotSettings) -> dg.AssetCheckResult:
    import zipfile

    key = context.partition_key
    folder = warehouse.files_dir(VENDOR, DELIVERABLE, key)
    files, info = read_manifest(folder)
    columns = tuple(info["columns"])
    problems: list[str] = []
    rows = 0
    with warehouse.connect(attach_warehouse=False) as con:
        staged_rows = con.execute(f"SELECT count(*) FROM read_parquet("
                                  f"{sql_literal(str(warehouse.staged_table(VENDOR, DELIVERABLE, key)))})").fetchone()[0]
        for f in files:
            size = f.path.stat().st_size
            if size >= spec.MAX_UPLOAD_BYTES:
                problems.append(f"{f.name}: {size:,} bytes, not under iSpot's 200 MB limit")
            csv_path = f.path
            if f.name.endswith(".zip"):
                with zipfile.ZipFile(f.path) as zf:
                    member = zf.namelist()[0]
                    csv_path = folder / f".readback-{Path(member).name}"
                    with zf.open(member) as src, open(csv_path, "wb") as dst:
                        dst.write(src.read())
            seen = _read_back(con, csv_path, columns)
            if csv_path != f.path:
                csv_path.unlink()
            if seen["bom"]:
                problems.append(f"{f.name}: starts with a UTF-8 BOM (it would break the case-sensitive 'ip' header)")
            if not seen["header_ok"]:
                problems.append(f"{f.name}: header is {seen['first_line']!r}, expected {','.join(columns)!r}")
            if seen["badly_quoted"]:
                problems.append(f"{f.name}: {seen['badly_quoted']:,} data lines are not {len(columns)} double-quoted "
                                f"values, e.g. {seen['sample_bad']!r}")
            if seen["rows"] != f.rows:
                problems.append(f"{f.name}: {seen['rows']:,} data lines, manifest says {f.rows:,}")
            rows += seen["rows"]
    if rows != staged_rows:
        problems.append(f"the files hold {rows:,} rows, the checked data {staged_rows:,}")
    return dg.AssetCheckResult(
        passed=not problems, description="; ".join(problems) or f"{len(files)} file(s) match the CSV spec",
        metadata={"files_checked": len(files), "rows_read_back": rows, "problems": dg.MetadataValue.md(
            "\n".join(f"- {p}" for p in problems) or "none")})


@dg.asset_check(asset=conversion_files, name="minimum_size", blocking=False, partitions_def=daily,
                description="Warns when a file is under the 8 MB minimum in the document's error table (the data is "
                            "still sent: holding a day back would break 'previous day only'; DIGEST 2.3 #2).")
def conversion_files_minimum_size(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                                  ispot_settings: ISpotSettings) -> dg.AssetCheckResult:
    files, _ = read_manifest(warehouse.files_dir(VENDOR, DELIVERABLE, context.partition_key))
    small = [f for f in files if (f.bytes or 0) < ispot_settings.min_bytes]
    return dg.AssetCheckResult(
        passed=not small, severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(small)} file(s) under {ispot_settings.min_bytes:,} bytes: " +
                     ", ".join(f"{f.name} ({f.bytes:,} bytes)" for f in small)) if small else "every file is at least "
                    f"{ispot_settings.min_bytes:,} bytes",
        metadata={"smallest_file_bytes": min((f.bytes or 0 for f in files), default=0)})


@dg.asset(
    key=[VENDOR, "conversions_delivery"], group_name=VENDOR, partitions_def=daily, deps=[conversion_files],
    kinds={"api"},
    retry_policy=delivery_retry_policy(),
    description=f"Uploads the files through iSpot's API ({DOC}: 'Making an API call', status table) when "
                "ISPOT_CLIENT_ID is set, otherwise publishes them to the `ispot_destination` (the local outbox by "
                "default). The ledger makes re-runs send nothing twice. Refuses data older than 12 days (paid "
                "reprocessing) unless allowed.",
)
def conversions_delivery(context: dg.AssetExecutionContext, config: DeliveryConfig, warehouse: WarehouseResource,
                         ledger: LedgerResource, ispot_api: ISpotApiResource, ispot_destination: DestinationResource,
                         ispot_settings: ISpotSettings) -> dg.MaterializeResult:
    key = context.partition_key
    files, _ = read_manifest(warehouse.files_dir(VENDOR, DELIVERABLE, key))
    window, why = spec.processing_window(key, clock.now())
    if window == "paid_reprocessing" and not ispot_settings.allow_reprocessing:
        raise dg.Failure(f"ispot {key}: {why}. Set ispot_settings.allow_reprocessing to upload anyway.",
                         allow_retries=False)
    if window == "not_ready":
        raise dg.Failure(f"ispot {key}: {why}; iSpot wants complete days only", allow_retries=False)
    (context.log.info if window == "standard" else context.log.warning)(f"ispot {key}: {why}")
    if not files:
        return dg.MaterializeResult(metadata={"delivery_action": "nothing to deliver: no conversions in the day",
                                              "file_count": 0, "bytes": 0, "rows": 0})
    destination = ISpotApiDestination(ispot_api.client()) if ispot_api.configured else ispot_destination.get()
    try:
        outcome = deliver_files(vendor=VENDOR, deliverable=DELIVERABLE, partition_key=key, files=files,
                                destination=destination, ledger=ledger.get(), run_id=context.run_id,
                                redeliver=config.redeliver, logger=context.log)
    except ISpotRejected as exc:  # a 400 cannot succeed on retry
        raise dg.Failure(str(exc), allow_retries=False) from None
    finally:
        destination.close()
    return dg.MaterializeResult(metadata={
        **outcome.metadata(),
        "target": dg.MetadataValue.text("iSpot API" if ispot_api.configured else ispot_destination.describe()),
        "processing_window": dg.MetadataValue.text(f"{window}: {why}"),
    })


ASSETS = [conversions, conversion_files, conversions_delivery]
CHECKS = [conversions_spec, conversion_files_match_spec, conversion_files_minimum_size]
