"""Idomoo batch mode: the day's recipients -> storyboard columns -> data file (delimiter,
encoding, zip, PGP) -> the SFTP account's Uploads folder; PURL files back from Downloads.

Read beside `idomoo-batch-mode.txt` ("General Process", "Special Features", "End to End Testing")
and DIGEST section 5.
"""

import datetime as dt
import os
from pathlib import Path
from typing import List, Optional

import dagster as dg
import duckdb

from ...core import clock
from ...delivery import DeliveryConfig, OutgoingFile, deliver_partition, delivery_retry_policy
from ...core.files import file_md5
from ...destinations.resource import DestinationResource
from ...formats.compress import zip_file
from ...formats.delimited import EncodingProblem, write_delimited
from ...formats.pgp import PGPError, encrypt_file, is_pgp_message
from ...ledger import Ledger
from ...manifest import files_metadata, read_manifest, write_manifest
from ...partitions import FIRST_DAY
from ...resources import LedgerResource
from ...validation import check_result, validate_parquet
from ...validation.report import FILES_REMEDY as FILES_NEXT, with_next_step
from ...core.sql import sql_literal
from ...warehouse.assets import source_key
from ...warehouse.resource import WarehouseResource, copy_to_parquet
from . import spec
from .returns import record_upload

VENDOR, DELIVERABLE = "idomoo", "data_file"
# A partition is a send date, and its batch goes up ON that date (not the day after, as for data
# days): end_offset=1 makes today's partition exist, so the daily schedule requests today.
daily = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)
DOC = "docs/idomoo.md"  # what descriptions cite: in the repo, with the vendor document's sections


class IdomooSettings(dg.ConfigurableResource):
    """The project agreed with Idomoo (resource `idomoo_settings`; env `IDOMOO_CLIENT`, `IDOMOO_PROJECT`,
    `IDOMOO_ENCODING`, `IDOMOO_DELIMITER`, `IDOMOO_PGP_PUBLIC_KEY_FILE`, `IDOMOO_PGP_PRIVATE_KEY_FILE`,
    `IDOMOO_PGP_PASSPHRASE`, `IDOMOO_UPLOADS`, `IDOMOO_DOWNLOADS`, `IDOMOO_FLAGS`,
    `IDOMOO_INCOMPLETE_MINUTES`, `IDOMOO_PURL_RETURN_HOURS`)."""

    client: str = "acme"
    project: str = "welcome"
    headers: List[str] = ["RecipientID", "FirstName", "LastName", "Email", "Language", "OfferCode", "City", "Points"]
    source_columns: List[str] = ["recipient_id", "first_name", "last_name", "email", "language", "offer_code", "city",
                                 "points_balance"]
    key_header: str = "RecipientID"
    email_headers: List[str] = ["Email"]
    url_headers: List[str] = []
    optional_headers: List[str] = []
    extension: str = "csv"
    delimiter: str = ","
    encoding: str = "utf-8"
    zip: bool = False
    pgp_public_key_file: Optional[str] = None
    pgp_private_key_file: Optional[str] = None  # ours: signs the data file (R10), decrypts PURL files
    pgp_passphrase: Optional[str] = None  # secret: IDOMOO_PGP_PASSPHRASE
    error_prefix: str = "ERROR_"  # Idomoo's optional error file: <prefix><original file name> (5.3 #6: confirm)
    orphan_flag_minutes: int = 30  # a PURL or flag not complete for this long raises an alert
    flags: bool = True  # R9: .flg files on, or off (complete = unchanged across two sensor ticks)
    purl_return_hours: float = 24.0  # a PURL not back this long after its upload raises an alert
    uploads_folder: str = "Uploads"  # 5.3 #3: the documents disagree on the case; check at setup
    downloads_folder: str = "Downloads"
    purl_prefix: str = spec.PURL_PREFIX
    purl_suffix: str = spec.PURL_SUFFIX
    e2e_test: bool = False  # send exactly 20 rows, as Idomoo requires before launch
    min_rows: int = 1
    max_rows: int = 1_000_000


def settings_from_env(environ: dict | None = None) -> IdomooSettings:
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    for var, field in (("IDOMOO_CLIENT", "client"), ("IDOMOO_PROJECT", "project"), ("IDOMOO_ENCODING", "encoding"),
                       ("IDOMOO_DELIMITER", "delimiter"), ("IDOMOO_EXTENSION", "extension"),
                       ("IDOMOO_PGP_PUBLIC_KEY_FILE", "pgp_public_key_file"), ("IDOMOO_UPLOADS", "uploads_folder"),
                       ("IDOMOO_PGP_PRIVATE_KEY_FILE", "pgp_private_key_file"),
                       ("IDOMOO_DOWNLOADS", "downloads_folder")):
        if environ.get(var):
            kwargs[field] = environ[var]
    if environ.get("IDOMOO_FLAGS"):
        kwargs["flags"] = environ["IDOMOO_FLAGS"].strip().lower() in ("1", "true", "yes", "on")
    for var, field, kind in (("IDOMOO_PURL_RETURN_HOURS", "purl_return_hours", float),
                             ("IDOMOO_INCOMPLETE_MINUTES", "orphan_flag_minutes", int)):
        if environ.get(var):
            kwargs[field] = kind(environ[var])
    if environ.get("IDOMOO_PGP_PASSPHRASE"):
        kwargs["pgp_passphrase"] = dg.EnvVar("IDOMOO_PGP_PASSPHRASE")
    return IdomooSettings(**kwargs)


def recipients_sql(partition_key: str, settings: IdomooSettings) -> str:
    if len(settings.headers) != len(settings.source_columns):
        raise dg.Failure("idomoo_settings.headers and source_columns must have the same length", allow_retries=False)
    cols = ", ".join(f'CAST({src} AS VARCHAR) AS "{header}"' for header, src in zip(settings.headers, settings.source_columns))
    limit = f" LIMIT {spec.E2E_ROWS}" if settings.e2e_test else ""
    return f"SELECT {cols} FROM idomoo_recipients WHERE send_date = {sql_literal(partition_key)}::DATE ORDER BY recipient_id{limit}"


@dg.asset(key=[VENDOR, "recipients"], group_name=VENDOR, partitions_def=daily, deps=[source_key("idomoo_recipients")],
          pool=VENDOR,
          kinds={"duckdb"},
          description=f"The day's video recipients in the storyboard's columns ({DOC}; the vendor's 'General Process' 2; the header "
                      "list is configuration, matched exactly). In end-to-end test mode exactly 20 rows.")
def recipients(context: dg.AssetExecutionContext, warehouse: WarehouseResource, idomoo_settings: IdomooSettings) -> dg.MaterializeResult:
    key = context.partition_key
    with warehouse.connect() as con:
        rows = copy_to_parquet(con, recipients_sql(key, idomoo_settings), warehouse.staged_table(VENDOR, DELIVERABLE, key))
    return dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(rows),
                                          "rows": dg.MetadataValue.int(rows),
                                          "e2e_test": dg.MetadataValue.bool(idomoo_settings.e2e_test)})


@dg.asset_check(asset=recipients, name="spec", blocking=True, partitions_def=daily,
                pool=VENDOR,
                description="Every storyboard parameter present and non-empty, emails and URLs well formed, no duplicate "
                            "recipient keys, the exact header list, and a row count within the configured limits "
                            "(exactly 20 in end-to-end test mode).")
def recipients_spec(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                    idomoo_settings: IdomooSettings) -> dg.AssetCheckResult:
    key, s = context.partition_key, idomoo_settings
    schema = spec.data_file_schema(s.headers, key=s.key_header, email_columns=s.email_headers, url_columns=s.url_headers,
                                   optional=s.optional_headers)
    report = validate_parquet(warehouse.staged_table(VENDOR, DELIVERABLE, key), schema, redact=True,
                              name=f"idomoo recipients {key}")
    limits = (spec.E2E_ROWS, spec.E2E_ROWS) if s.e2e_test else (s.min_rows, s.max_rows)
    count_ok = limits[0] <= report.rows <= limits[1]
    if not report.passed:
        context.log.error(report.error_text(f"idomoo/recipients {key}"))
    result = check_result(report, extra={"row_limits": dg.MetadataValue.text(f"{limits[0]}..{limits[1]}")})
    if count_ok:
        return result
    return dg.AssetCheckResult(passed=False, metadata=result.metadata,
                               description=with_next_step(
                                   f"{report.rows} rows, outside the allowed {limits[0]}..{limits[1]}"
                                   + ("" if report.passed else f"; {report.summary()}"),
                                   "Nothing was uploaded. Next step: check the day's recipients in the warehouse; "
                                   "if the count is right, change idomoo_settings.min_rows/max_rows (agreed with "
                                   "Idomoo for the storyboard), then launch the partition again."))


def _delivered_name(ledger: Ledger, key: str) -> list:
    return [d for d in ledger.history(VENDOR, DELIVERABLE, status="delivered") if d.partition_key == key]


@dg.asset(key=[VENDOR, "data_file"], group_name=VENDOR, partitions_def=daily, deps=[recipients], kinds={"csv"},
          pool=VENDOR,
          description="The data file: `<client>_<project>_YYYYMMdd_HHMMss_NN.<ext>`, the UTC time it is "
                      "built and "
                      "uploaded, on the send date (5.3 #1; a batch is never built before its send date), the "
                      "configured "
                      "delimiter and encoding (UTF-8 without BOM or Windows-1252, a character it cannot hold is an error "
                      "naming row and column), optionally zipped and PGP-encrypted to Idomoo's public key. A partition "
                      "whose content was already built keeps its name, so a re-run sends nothing new.")
def data_file(context: dg.AssetExecutionContext, warehouse: WarehouseResource, ledger: LedgerResource,
              idomoo_settings: IdomooSettings) -> dg.MaterializeResult:
    key, s = context.partition_key, idomoo_settings
    if s.extension not in spec.EXTENSIONS:
        raise dg.Failure(f"idomoo_settings.extension={s.extension!r}: expected one of {', '.join(spec.EXTENSIONS)}",
                         allow_retries=False)
    send_date, today = dt.date.fromisoformat(key), clock.today()
    if today < send_date:  # Idomoo renders at once: an early batch would reach people early
        raise dg.Failure(f"idomoo {key}: a batch is uploaded on its send date; today is {today}",
                         allow_retries=False)
    if today > send_date:
        late = (today - send_date).days
        context.log.warning(f"idomoo {key}: uploading {late} day(s) after the send date; the name carries "
                            "today's time")
    folder = warehouse.files_dir(VENDOR, DELIVERABLE, key)
    staged = warehouse.staged_table(VENDOR, DELIVERABLE, key)
    con = duckdb.connect()
    rows = con.execute(f"SELECT * FROM read_parquet({sql_literal(str(staged))})").fetchall()
    con.close()
    plain = folder / f".plain.{s.extension}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        count = write_delimited(plain, s.headers, rows, delimiter=s.delimiter, encoding=s.encoding,
                                file_label=f"idomoo data file for {key}")
    except (EncodingProblem, ValueError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    content = file_md5(plain)
    try:  # the same content as the file already built for this partition: keep it (and its name)
        previous, info = read_manifest(folder)
        if info.get("content_md5") == content and all(f.path.exists() for f in previous):
            plain.unlink()
            context.log.info(f"{key}: content unchanged, keeping {previous[0].name}")
            return dg.MaterializeResult(metadata={**files_metadata(previous), "reused": True})
    except FileNotFoundError:
        pass
    for old in folder.iterdir():
        if old != plain and old.is_file():
            old.unlink()
    sequence = 1 + len({d.file_name for d in ledger.get().history(VENDOR, DELIVERABLE) if d.partition_key == key})
    name = spec.data_file_name(s.client, s.project, clock.now(), sequence, s.extension)
    path = folder / name
    os.replace(plain, path)
    if s.zip:
        zipped = path.with_name(name.rsplit(".", 1)[0] + ".zip")
        zip_file(path, zipped, arcname=name)
        path.unlink()
        path, name = zipped, zipped.name
    if s.pgp_public_key_file:
        encrypted = path.with_name(name.rsplit(".", 1)[0] + ".gpg")  # "data_file.gpg" (Special Features 1)
        # R10: encrypted to Idomoo's key and, with our key configured, signed with it (both readings
        # of "encrypt his data file, using his private key")
        ours = s.pgp_private_key_file
        try:
            fingerprint = encrypt_file(path, encrypted, Path(s.pgp_public_key_file).read_text(),
                                       signing_key=Path(ours).read_text() if ours else None,
                                       passphrase=s.pgp_passphrase)
        except (PGPError, OSError) as exc:
            variables = "IDOMOO_PGP_PUBLIC_KEY_FILE" + (", IDOMOO_PGP_PRIVATE_KEY_FILE, IDOMOO_PGP_PASSPHRASE"
                                                        if ours else "")
            raise dg.Failure(f"idomoo {key}: {exc} ({variables})", allow_retries=False) from None
        context.log.info(f"encrypted to key {fingerprint}" + (" and signed with ours" if ours else ""))
        path.unlink()
        path, name = encrypted, encrypted.name
    outgoing = [OutgoingFile(path, f"{s.uploads_folder}/{name}", rows=count, md5=file_md5(path), bytes=path.stat().st_size)]
    write_manifest(folder, outgoing, content_md5=content, partition=key, headers=s.headers, encrypted=bool(s.pgp_public_key_file),
                   zipped=s.zip)
    return dg.MaterializeResult(metadata={**files_metadata(outgoing), "encoding": s.encoding, "delimiter": s.delimiter})


@dg.asset_check(asset=data_file, name="file_matches_spec", blocking=True, partitions_def=daily,
                pool=VENDOR,
                description="Re-reads the file: the exact header line, no BOM, the configured encoding, one line per "
                            "recipient; a zip holds one safe member; an encrypted file is an OpenPGP message.")
def data_file_matches_spec(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                           idomoo_settings: IdomooSettings) -> dg.AssetCheckResult:
    import csv
    import io
    import zipfile

    from ...formats.delimited import DELIMITERS, ENCODINGS

    s = idomoo_settings
    outgoing, info = read_manifest(warehouse.files_dir(VENDOR, DELIVERABLE, context.partition_key))
    f = outgoing[0]
    problems = []
    if info.get("encrypted"):
        if not is_pgp_message(f.path):
            problems.append(f"{f.name} is not an OpenPGP message")
        data = None
    elif info.get("zipped"):
        with zipfile.ZipFile(f.path) as zf:
            names = zf.namelist()
            if len(names) != 1 or "/" in names[0] or names[0].startswith("."):
                problems.append(f"{f.name} must hold exactly one plainly named member, holds {names}")
            data = zf.read(names[0])
    else:
        data = f.path.read_bytes()
    if data is not None:
        if data.startswith(b"\xef\xbb\xbf"):
            problems.append(f"{f.name} starts with a BOM")
        try:
            text = data.decode(ENCODINGS[s.encoding.lower()])
        except UnicodeDecodeError as exc:
            text = ""
            problems.append(f"{f.name} is not valid {s.encoding}: {exc}")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[s.delimiter]))
        if rows and rows[0] != list(info["headers"]):
            problems.append(f"{f.name}: header {rows[0]} differs from the storyboard {info['headers']}")
        if len(rows) - 1 != f.rows:
            problems.append(f"{f.name}: {len(rows) - 1} rows, {f.rows} expected")
        if any(h != h.strip() for h in (rows[0] if rows else [])):
            problems.append(f"{f.name}: a header has stray spaces")
    return dg.AssetCheckResult(passed=not problems, description=with_next_step("; ".join(problems), FILES_NEXT)
                               if problems else f"{f.name} matches the spec",
                               metadata={"file": f.name})


@dg.asset(key=[VENDOR, "data_file_delivery"], group_name=VENDOR, partitions_def=daily, deps=[data_file], kinds={"sftp"},
          pool=VENDOR,
          retry_policy=delivery_retry_policy(),
          description="Uploads the data file to the SFTP account's Uploads folder (temporary name, then rename), never "
                      "reusing a name ever uploaded ('The client shouldn't upload 2 files with the exact same name').")
def data_file_delivery(context: dg.AssetExecutionContext, config: DeliveryConfig, warehouse: WarehouseResource,
                       ledger: LedgerResource, idomoo_destination: DestinationResource,
                       idomoo_settings: IdomooSettings) -> dg.MaterializeResult:
    key = context.partition_key
    outgoing, _ = read_manifest(warehouse.files_dir(VENDOR, DELIVERABLE, key))
    book = ledger.get()
    for f in outgoing:
        elsewhere = [d for d in book.find_name(VENDOR, f.name) if d.partition_key != key and d.status == "delivered"]
        if elsewhere:
            raise dg.Failure(f"idomoo: {f.name} was already uploaded for {elsewhere[0].partition_key}; Idomoo must never "
                             "receive the same name twice", allow_retries=False)
    outcome = deliver_partition(context, vendor=VENDOR, deliverable=DELIVERABLE, files=outgoing,
                                destination=idomoo_destination, ledger=book, redeliver=config.redeliver)
    for f in outgoing:  # the PURL return deadline counts from here, and its keys must come back (returns.py)
        record_upload(f.name, clock.now().timestamp(), warehouse.staged_table(VENDOR, DELIVERABLE, key),
                      idomoo_settings.key_header)
    return dg.MaterializeResult(metadata={**outcome.metadata(), "target": idomoo_destination.describe()})


ASSETS = [recipients, data_file, data_file_delivery]
CHECKS = [recipients_spec, data_file_matches_spec]
