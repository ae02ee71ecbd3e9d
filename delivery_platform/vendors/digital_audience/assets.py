"""digitalAudience: CRM contacts -> normalised and hashed in SQL -> onboarding file, then daily
update files (new and changed records) against what was delivered -> dA's storage (SFTP/S3); opt-outs
counted and reported, sent only to a separately configured location (optouts.py); and the nightly
match export back, ingested once per file.

Read beside `digitalaudience-dmp-integration.txt` ("CRM Onboarding", "Ongoing CRM data update",
"Daily DA match export") and DIGEST section 4.
"""

import csv
import json
import os
import re
from pathlib import Path

import dagster as dg
import duckdb

from ...core.sql import sql_literal
from ...delivery import OutgoingFile, deliver_partition
from ...factory import Chain, Files, Step
from ...formats.lines import csv_header, csv_line_sql
from ...formats.parts import PartWriter, write_lines
from ...ledger import Ledger
from ...manifest import read_manifest, reset_folder, write_manifest
from ...partitions import daily, day_bounds
from ...registry import Deliverable, Schedule
from ...state_store import state_store
from ...validation import check_result, validate_parquet
from ...validation.report import FILES_REMEDY as FILES_NEXT, with_next_step
from ...validation.sql_checks import EMAIL_LIKE_RE, PHONE_LIKE_RE
from ...warehouse.resource import WarehouseResource, copy_to_parquet
from . import optouts, spec
from .normalise import email_sql, phone_sql, sha256_upper_sql
from .optouts import OPTOUT, optout_target

VENDOR, DELIVERABLE = "digital_audience", "crm"
DOC = "docs/digital_audience.md"  # what descriptions cite: in the repo, with the vendor document's sections


class DigitalAudienceSettings(dg.ConfigurableResource):
    """Resource `digital_audience_settings` (env `DA_CLIENT`)."""

    client: str = "acme"  # file name prefix agreed with dA (DIGEST 4.4: `<client>_crm_<YYYYMMDD>.csv`)
    gzip: bool = False  # 4.5 #5: uncompressed until dA confirms .gz on our channel


def settings_from_env(environ: dict | None = None) -> DigitalAudienceSettings:
    environ = os.environ if environ is None else environ
    kwargs: dict = {"client": environ["DA_CLIENT"]} if environ.get("DA_CLIENT") else {}
    if environ.get("DA_GZIP"):
        kwargs["gzip"] = environ["DA_GZIP"].lower() in ("1", "true", "yes")
    return DigitalAudienceSettings(**kwargs)


def state_key(partition_key: str) -> str:
    """The contact set delivered for a day, in the state store (state_store.py): the next update
    is computed against it, on whichever worker runs it."""
    return f"state/{VENDOR}/{partition_key}.parquet"


def last_delivered_state(ledger: Ledger, before: str) -> tuple[str, Path] | None:
    keys = sorted({d.partition_key for d in ledger.history(VENDOR, DELIVERABLE, status="delivered") if d.partition_key < before})
    store = state_store()
    for key in reversed(keys):
        if store.exists(state_key(key)):
            return key, store.get(state_key(key))
    return None


def eligible_sql(partition_key: str) -> str:
    """Contacts opted in (and not out) at the end of the day, identifiers normalised and hashed.
    Raw emails and phones stop here: only their hashes leave this query."""
    end = sql_literal(day_bounds(partition_key)[1].isoformat(sep=" "))
    email, phone = email_sql("email_raw"), phone_sql("phone_raw", "country")
    return f"""
        WITH c AS (
            SELECT contact_id, {email} AS email, {phone} AS phone,
                   nullif(upper(trim(postal_code)), '') AS postal_code, nullif(trim(house_number), '') AS house_number,
                   nullif(trim(house_number_ext), '') AS extension,
                   CASE WHEN regexp_full_match(lower(trim(aaid)), '[0-9a-f]{{8}}(-[0-9a-f]{{4}}){{3}}-[0-9a-f]{{12}}')
                        THEN lower(trim(aaid)) END AS aaid,
                   CASE WHEN regexp_full_match(upper(trim(idfa)), '[0-9A-F]{{8}}(-[0-9A-F]{{4}}){{3}}-[0-9A-F]{{12}}')
                        THEN upper(trim(idfa)) END AS idfa
            FROM crm_contacts
            WHERE opted_in_at < {end} AND (opted_out_at IS NULL OR opted_out_at >= {end}))
        SELECT {sha256_upper_sql('email')} AS email_sha256, {sha256_upper_sql('phone')} AS phone_sha256,
               postal_code AS "postal code", CASE WHEN postal_code IS NOT NULL THEN house_number END AS "house number",
               CASE WHEN postal_code IS NOT NULL THEN extension END AS extension, aaid, idfa, contact_id AS custom
        FROM c
        WHERE coalesce(email, phone, postal_code, aaid, idfa) IS NOT NULL
        ORDER BY contact_id"""


def counts_sql(partition_key: str) -> str:
    end = sql_literal(day_bounds(partition_key)[1].isoformat(sep=" "))
    return f"""
        SELECT count(*) FILTER (WHERE email_raw IS NOT NULL AND {email_sql('email_raw')} IS NULL) AS bad_email,
               count(*) FILTER (WHERE phone_raw IS NOT NULL AND {phone_sql('phone_raw', 'country')} IS NULL) AS bad_phone
        FROM crm_contacts WHERE opted_in_at < {end} AND (opted_out_at IS NULL OR opted_out_at >= {end})"""


def _stage(warehouse: WarehouseResource, key: str) -> dict[str, Path]:
    folder = warehouse.stage_dir(VENDOR, DELIVERABLE, key)
    return {"records": folder / "rows.parquet", "optouts": folder / "optouts.parquet", "state": folder / "state.parquet",
            "plan": folder / "plan.json"}


def stage(step: Step) -> tuple[int, dict]:
    """The first delivery is the full onboarding file; after that the day's update against what was delivered."""
    key, warehouse = step.partition_key, step.warehouse
    staged = _stage(warehouse, key)
    previous = last_delivered_state(step.ledger, key)
    with warehouse.connect() as con:
        bad_email, bad_phone = con.execute(counts_sql(key)).fetchone()
        eligible = copy_to_parquet(con, eligible_sql(key), staged["state"])
        state = sql_literal(str(staged["state"]))
        if previous is None:
            mode, changed = "onboarding", 0
            rows = copy_to_parquet(con, f"SELECT * FROM read_parquet({state})", staged["records"])
            opted_out = copy_to_parquet(con, f"SELECT * FROM read_parquet({state}) WHERE false",
                                        staged["optouts"])
        else:
            mode, prev = "update", sql_literal(str(previous[1]))
            # new contacts, and contacts whose email, phone, address or ad ids changed (R6): the
            # same `custom` id with the new hashes; EXCEPT compares NULLs as equal
            rows = copy_to_parquet(con, f"SELECT * FROM (SELECT * FROM read_parquet({state}) EXCEPT "
                                        f"SELECT * FROM read_parquet({prev})) ORDER BY custom",
                                   staged["records"])
            sent = sql_literal(str(staged["records"]))
            changed = con.execute(f"SELECT count(*) FROM read_parquet({sent}) WHERE custom IN "
                                  f"(SELECT custom FROM read_parquet({prev}))").fetchall()[0][0]
            gone = f"NOT EXISTS (SELECT 1 FROM read_parquet({state}) c WHERE p.custom = c.custom)"
            opted_out = copy_to_parquet(con, f"SELECT * FROM read_parquet({prev}) p WHERE {gone} "
                                             "ORDER BY custom", staged["optouts"])
    staged["plan"].write_text(json.dumps({"mode": mode, "previous": previous[0] if previous else None,
                                          "opt_outs": opted_out, "changed": changed}))
    step.log.info(f"{key}: {mode}: {rows:,} records ({changed:,} changed), {opted_out:,} opt-outs")
    return rows, {
        "mode": dg.MetadataValue.text(mode),
        "opt_outs": dg.MetadataValue.int(opted_out),
        "changed_records": dg.MetadataValue.int(changed),
        "eligible_contacts": dg.MetadataValue.int(eligible), "unusable_emails": dg.MetadataValue.int(bad_email),
        "unusable_phones": dg.MetadataValue.int(bad_phone),
        "previous_delivery": dg.MetadataValue.text(previous[0] if previous else "none")}


def judge_optouts(step: Step, report, result: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """The opt-out rows pass the same model as the records (they may be sent to their own location)."""
    optouts_report = validate_parquet(_stage(step.warehouse, step.partition_key)["optouts"], spec.CrmRecords,
                                      redact=True, name=f"dA optouts {step.partition_key}")
    if optouts_report.passed or not report.passed:
        return result
    step.log.error(optouts_report.error_text(f"digital_audience/crm_records {step.partition_key}"))
    return check_result(optouts_report)


def opt_outs_check(rows: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=rows, name="opt_outs", blocking=False, partitions_def=daily, pool=VENDOR,
                    description="WARN when contacts opted out since the last delivery: how many, and where they "
                                "went. Opt-outs never reach the onboarding location (R6); they are sent only to a "
                                "separately configured location (DELIVERY_DIGITAL_AUDIENCE_OPTOUT_*).")
    def crm_records_opt_outs(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                             digital_audience_settings: DigitalAudienceSettings) -> dg.AssetCheckResult:
        key = context.partition_key
        plan = json.loads(_stage(warehouse, key)["plan"].read_text())
        count, target = plan.get("opt_outs", 0), optout_target()
        name = optout_file_name(digital_audience_settings, key) if target and count else None
        return dg.AssetCheckResult(passed=count == 0, severity=dg.AssetCheckSeverity.WARN,
                                   description=optouts.report(count, plan.get("previous"), target, name),
                                   metadata={"opt_outs": count,
                                             "opt_out_location_configured": target is not None})
    return crm_records_opt_outs


def optout_file_name(s: DigitalAudienceSettings, key: str) -> str:
    return f"{s.client}_crm_optout_{key.replace('-', '')}.{'csv.gz' if s.gzip else 'csv'}"


def file_names(client: str, key: str, mode: str, gzip: bool = False) -> dict[str, str]:
    day, ext = key.replace("-", ""), "csv.gz" if gzip else "csv"
    if mode == "onboarding":
        return {"records": f"{client}_crm_{day}.{ext}"}
    # opt-outs never go here (R6): see optouts.py
    return {"records": f"{client}_crm_update_{day}.{ext}"}


def write_files(step: Step, staged_rows: Path) -> Files:
    """`<client>_crm_YYYYMMDD.csv` (onboarding) or `<client>_crm_update_YYYYMMDD.csv`; and, only with an opt-out
    location configured, `<client>_crm_optout_YYYYMMDD.csv` apart from them: UTF-8, comma, header row, CRLF."""
    key, warehouse, s = step.partition_key, step.warehouse, step.settings
    staged = _stage(warehouse, key)
    mode = json.loads(staged["plan"].read_text())["mode"]
    folder = reset_folder(step.files_dir)
    outgoing = []
    with warehouse.connect(attach_warehouse=False) as con:
        for part, name in file_names(s.client, key, mode, s.gzip).items():
            writer = PartWriter(folder, lambda n, name=name: name, single_part=True,
                                gzip_level=6 if s.gzip else None,
                                header=csv_header(spec.COLUMNS, line_end=spec.LINE_END).encode())
            sql = (f"SELECT {csv_line_sql(spec.COLUMNS, line_end=spec.LINE_END)} AS line "
                   f"FROM read_parquet({sql_literal(str(staged[part]))})")
            [written] = write_lines(con, sql, writer)
            outgoing.append(OutgoingFile.of_part(written, name, gzip_level=6 if s.gzip else None))
    optout_files = _write_optouts(warehouse, s, key)
    return Files(outgoing, manifest={"mode": mode},
                 metadata={"mode": dg.MetadataValue.text(mode),
                           "opt_out_files": dg.MetadataValue.json([f.name for f in optout_files])})


def _write_optouts(warehouse: WarehouseResource, s: DigitalAudienceSettings, key: str) -> list[OutgoingFile]:
    """The opt-out file, in its own folder and manifest, only when a location and format are
    configured and there are opt-outs; otherwise the folder is left empty."""
    folder = reset_folder(warehouse.files_dir(VENDOR, optouts.DELIVERABLE, key))
    target, staged = optout_target(), _stage(warehouse, key)["optouts"]
    outgoing = []
    with warehouse.connect(attach_warehouse=False) as con:
        count = con.execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(staged))})").fetchall()[0][0]
        if target and count:
            name = optout_file_name(s, key)
            header = csv_header(target.columns, line_end=spec.LINE_END).encode()
            writer = PartWriter(folder, lambda n, name=name: name, single_part=True,
                                gzip_level=6 if s.gzip else None, header=header)
            sql = (f"SELECT {csv_line_sql(target.columns, line_end=spec.LINE_END)} AS line "
                   f"FROM read_parquet({sql_literal(str(staged))})")
            [written] = write_lines(con, sql, writer)
            outgoing.append(OutgoingFile.of_part(written, name, gzip_level=6 if s.gzip else None))
    write_manifest(folder, outgoing, partition=key)
    return outgoing


HEX64 = re.compile(r"^[0-9A-F]{64}$")
UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def raw_pii_in_file(path: Path) -> list[str]:
    """Fields that look like a raw email or phone number (hashes and ad ids excepted)."""
    import gzip as gz

    found = []
    opener = (lambda: gz.open(path, "rt", newline="", encoding="utf-8")) if path.name.endswith(".gz") else \
        (lambda: open(path, newline="", encoding="utf-8"))
    with opener() as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            for value in row:
                if HEX64.match(value) or UUID.match(value):
                    continue
                if re.search(EMAIL_LIKE_RE, value) or re.fullmatch(PHONE_LIKE_RE, value):
                    found.append(f"line {line_no}")
                    break
    return found


def check_files(step: Step, outgoing: list, info: dict) -> dg.AssetCheckResult:
    """Re-reads each file: exact header, CRLF line ends, rows as staged, and no value that looks like a raw email
    or phone number (dA gets hashes only)."""
    key, warehouse = step.partition_key, step.warehouse
    problems = []
    records_header = csv_header(spec.COLUMNS, line_end=spec.LINE_END).encode()
    # the opt-out file too, with the header of its configured columns
    optout_files, _ = read_manifest(warehouse.files_dir(VENDOR, optouts.DELIVERABLE, key))
    target = optout_target() if optout_files else None
    headers = {f.name: csv_header(target.columns, line_end=spec.LINE_END).encode() for f in optout_files}
    for f in [*outgoing, *optout_files]:
        header = headers.get(f.name, records_header)
        data = f.path.read_bytes()
        if f.name.endswith(".gz"):
            import gzip as gz

            data = gz.decompress(data)
        if not data.startswith(header):
            problems.append(f"{f.name}: header is not {header!r}")
        if data.count(b"\n") != data.count(b"\r\n"):
            problems.append(f"{f.name}: not every line ends with CRLF")
        lines = data.count(b"\r\n") - 1
        if lines != f.rows:
            problems.append(f"{f.name}: {lines} data lines, {f.rows} staged")
        leaks = raw_pii_in_file(f.path)
        if leaks:
            problems.append(f"{f.name}: raw email or phone on {len(leaks)} lines ({', '.join(leaks[:5])})")
    checked = len(outgoing) + len(optout_files)
    return dg.AssetCheckResult(passed=not problems,
                               description=with_next_step("; ".join(problems), FILES_NEXT) if problems else
                               f"{checked} file(s) as specified", metadata={"files_checked": checked})


def deliver(step: Step, outgoing: list, info: dict, redeliver: bool) -> tuple:
    """Opt-outs first, to their own location (a contact who left and came back is not removed after); then the
    records to the storage dA polls; then the delivered contact set is kept for the next update."""
    key, book = step.partition_key, step.ledger
    optout_files, _ = read_manifest(step.warehouse.files_dir(VENDOR, optouts.DELIVERABLE, key))
    if optout_files:
        deliver_partition(step.context, deliverable=CRM, name=optouts.DELIVERABLE, files=optout_files,
                          destination=step.context.resources.digital_audience_optout, ledger=book,
                          redeliver=redeliver)
    outcome = deliver_partition(step.context, deliverable=CRM, files=outgoing, destination=step.destination,
                                ledger=book, redeliver=redeliver)
    keep_state(step.warehouse, key)
    return outcome, {"mode": dg.MetadataValue.text(info["mode"])}


def keep_state(warehouse: WarehouseResource, key: str) -> None:
    """The contact set now at dA: the next update is computed against it."""
    state_store().put(state_key(key), _stage(warehouse, key)["state"])


def matches_answer(partition_key: str, destination: str, files: list[dict]) -> dict:
    """dA's answer to a delivered day: how many of its records its match exports have matched (for the receipt)."""
    store = state_store()
    stored = [store.get(k) for k in store.list("returns/da_matches/") if k.endswith(".parquet")]
    state = store.get(state_key(partition_key)) if store.exists(state_key(partition_key)) else None
    if state is None or not stored:
        return {"kind": "da_matches", "matched_records": 0, "match_files": len(stored), "status": "0 matched",
                "meaning": "no match export received yet" if not stored else "delivered record set not kept"}
    con = duckdb.connect()
    try:
        listed = "[" + ", ".join(sql_literal(str(p)) for p in stored) + "]"
        matched, delivered = con.execute(
            f"SELECT (SELECT count(DISTINCT crm_id) FROM read_parquet({listed}, union_by_name = true) "
            f"WHERE crm_id IN (SELECT custom FROM read_parquet({sql_literal(str(state))}))), "
            f"(SELECT count(*) FROM read_parquet({sql_literal(str(state))}))").fetchone()
    finally:
        con.close()
    return {"kind": "da_matches", "matched_records": matched, "delivered_records": delivered,
            "match_files": len(stored), "status": f"{matched:,} matched",
            "meaning": f"{matched:,} of {delivered:,} delivered records matched so far"}


SCHEDULE_HOUR_UTC = 3  # dA polls the storage daily; the day's update is there well before business hours
CRM = Deliverable(
    vendor=VENDOR, name=DELIVERABLE, source="crm_contacts", models=(spec.CrmRecords,), staged="crm_records",
    deadline=12, answer=matches_answer,
    schedule=Schedule(SCHEDULE_HOUR_UTC, description=f"Daily at {SCHEDULE_HOUR_UTC:02d}:00 UTC for the previous UTC "
                                                     "day's opt-ins and opt-outs."),
    probe_why="skipped: dA's document names no file its Onboarding API ignores in the storage it polls; a probe "
              "could be read as a CRM file. The credentials probe's read stands in.")

CHAIN = Chain(
    deliverable=CRM, rows_asset="crm_records", files_asset="crm_files", stage=stage, judge_rows=judge_optouts,
    rows_checks=(opt_outs_check,), write=write_files, check_files=check_files, deliver=deliver, redact=True,
    files_kinds=frozenset({"csv"}), delivery_kinds=frozenset({"sftp", "s3"}),
    extra_resources=frozenset({OPTOUT}),
    descriptions={
        "rows": f"CRM records for dA ({DOC}; the vendor's 'CRM Onboarding', 'Ongoing CRM data update'). The first "
                "delivery is the full onboarding file; after that the day's update: contacts opted in since the last "
                "DELIVERED file, and contacts whose identifiers changed (same `custom`). Opt-outs are counted, never "
                "sent with them (R6). Emails and phones are normalised and SHA-256 hashed in SQL; raw values never "
                "reach a file.",
        "spec": "The pandera model `CrmRecords`: upper-case SHA-256 hashes, UUID ad ids, a unique CRM id, at least one "
                "identifier, postal code with any address part, and no email or phone in a raw column. Sample values "
                "are redacted (PII).",
        "files": "`<client>_crm_YYYYMMDD.csv` (onboarding) or `<client>_crm_update_YYYYMMDD.csv`; and, only with an "
                 "opt-out location configured, `<client>_crm_optout_YYYYMMDD.csv` apart from them: UTF-8, comma, "
                 "header row, CRLF, uncompressed (docs/digital_audience.md).",
        "files_check": "Re-reads each file: exact header, CRLF line ends, rows as staged, and no value that looks "
                       "like a raw email or phone number (dA gets hashes only).",
        "delivery": "Publishes the files to `digital_audience_destination` (the storage dA polls: SFTP or S3; local "
                    "outbox by default); after success the delivered contact set is kept for the next update."})
