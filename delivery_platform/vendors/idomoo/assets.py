"""Idomoo batch mode: the day's recipients -> storyboard columns -> data file (delimiter,
encoding, zip, PGP) -> the SFTP account's Uploads folder; PURL files back from Downloads.

Read beside `idomoo-batch-mode.txt` ("General Process", "Special Features", "End to End Testing")
and DIGEST section 5.
"""

import csv
import datetime as dt
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import dagster as dg
import duckdb

from ... import receipts
from ...core import clock
from ...core.files import file_md5
from ...core.sql import sql_literal
from ...delivery import OutgoingFile
from ...factory import Chain, Files, Step
from ...formats.compress import zip_file
from ...formats.delimited import DELIMITERS, ENCODINGS, EncodingProblem, write_delimited
from ...formats.pgp import PGPError, encrypt_file, is_pgp_message
from ...manifest import read_manifest
from ...partitions import FIRST_DAY
from ...registry import Deliverable, Schedule
from ...state_store import state_store
from ...validation.report import with_next_step
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


def settings_from_env(environ: dict | None = None, **overrides) -> IdomooSettings:
    """The project's settings from the environment; `overrides` are a storyboard's own (its columns)."""
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    for var, name in (("IDOMOO_CLIENT", "client"), ("IDOMOO_PROJECT", "project"), ("IDOMOO_ENCODING", "encoding"),
                       ("IDOMOO_DELIMITER", "delimiter"), ("IDOMOO_EXTENSION", "extension"),
                       ("IDOMOO_PGP_PUBLIC_KEY_FILE", "pgp_public_key_file"), ("IDOMOO_UPLOADS", "uploads_folder"),
                       ("IDOMOO_PGP_PRIVATE_KEY_FILE", "pgp_private_key_file"),
                       ("IDOMOO_DOWNLOADS", "downloads_folder")):
        if environ.get(var):
            kwargs[name] = environ[var]
    if environ.get("IDOMOO_FLAGS"):
        kwargs["flags"] = environ["IDOMOO_FLAGS"].strip().lower() in ("1", "true", "yes", "on")
    for var, name, kind in (("IDOMOO_PURL_RETURN_HOURS", "purl_return_hours", float),
                             ("IDOMOO_INCOMPLETE_MINUTES", "orphan_flag_minutes", int)):
        if environ.get(var):
            kwargs[name] = kind(environ[var])
    if environ.get("IDOMOO_PGP_PASSPHRASE"):
        kwargs["pgp_passphrase"] = dg.EnvVar("IDOMOO_PGP_PASSPHRASE")
    return IdomooSettings(**{**kwargs, **overrides})


def recipients_sql(partition_key: str, settings: IdomooSettings) -> str:
    if len(settings.headers) != len(settings.source_columns):
        raise dg.Failure("idomoo_settings.headers and source_columns must have the same length", allow_retries=False)
    cols = ", ".join(f'CAST({src} AS VARCHAR) AS "{header}"' for header, src in zip(settings.headers, settings.source_columns))
    limit = f" LIMIT {spec.E2E_ROWS}" if settings.e2e_test else ""
    return f"SELECT {cols} FROM idomoo_recipients WHERE send_date = {sql_literal(partition_key)}::DATE ORDER BY recipient_id{limit}"


@dataclass(frozen=True)
class Storyboard:
    """One Idomoo storyboard (a project): its data file's columns and when its batch goes up.

    The first is the one every setting of `idomoo_settings` describes; another is configuration only:
    its name, its columns (headers and the warehouse columns they come from), its project and hour."""

    name: str  # the deliverable: `data_file` for the first, `<storyboard>_data_file` for others
    schedule: Schedule
    settings_key: str = "idomoo_settings"
    overrides: dict = field(default_factory=dict)  # IdomooSettings fields of this storyboard
    rows_asset: str = "recipients"

    def settings(self) -> IdomooSettings:
        return settings_from_env(**self.overrides)


def recipients_of(step: Step) -> str:
    s = step.settings
    if step.partition_key and len(s.headers) != len(s.source_columns):
        raise step.fail("idomoo_settings.headers and source_columns must have the same length")
    return recipients_sql(step.partition_key, s)


def storyboard_schema(step: Step):
    s = step.settings
    return spec.data_file_schema(s.headers, key=s.key_header, email_columns=s.email_headers, url_columns=s.url_headers,
                                 optional=s.optional_headers)


def judge_row_count(step: Step, report, result: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """The configured row limits (exactly 20 rows in end-to-end test mode)."""
    s = step.settings
    limits = (spec.E2E_ROWS, spec.E2E_ROWS) if s.e2e_test else (s.min_rows, s.max_rows)
    metadata = {**result.metadata, "row_limits": dg.MetadataValue.text(f"{limits[0]}..{limits[1]}")}
    if limits[0] <= report.rows <= limits[1]:
        return dg.AssetCheckResult(passed=result.passed, metadata=metadata, description=result.description,
                                   severity=result.severity)
    return dg.AssetCheckResult(passed=False, metadata=metadata,
                               description=with_next_step(
                                   f"{report.rows} rows, outside the allowed {limits[0]}..{limits[1]}"
                                   + ("" if report.passed else f"; {report.summary()}"),
                                   "Nothing was uploaded. Next step: check the day's recipients in the warehouse; "
                                   "if the count is right, change idomoo_settings.min_rows/max_rows (agreed with "
                                   "Idomoo for the storyboard), then launch the partition again."))


def _delivered_plain_name(step: Step, content: str) -> str | None:
    """The name already uploaded for this partition when the same plain bytes went up: on a worker
    without the previous manifest (staging is run-local) a re-run then rebuilds the same file under
    the same name and sends nothing new. Zipped or encrypted files differ byte for byte each build."""
    s = step.settings
    if s.zip or s.pgp_public_key_file:
        return None
    sent = [d for d in step.ledger.history(VENDOR, step.chain.name, status="delivered")
            if d.partition_key == step.partition_key]
    return sent[-1].file_name.rsplit("/", 1)[-1] if sent and sent[-1].md5 == content else None


def write_data_file(step: Step, staged: Path) -> Files:
    key, s, deliverable = step.partition_key, step.settings, step.chain.name
    if s.extension not in spec.EXTENSIONS:
        raise step.fail(f"idomoo_settings.extension={s.extension!r}: expected one of {', '.join(spec.EXTENSIONS)}")
    send_date, today = dt.date.fromisoformat(key), clock.today()
    if today < send_date:  # Idomoo renders at once: an early batch would reach people early
        raise step.fail(f"a batch is uploaded on its send date; today is {today}")
    if today > send_date:
        step.log.warning(f"idomoo {key}: uploading {(today - send_date).days} day(s) after the send date; the name "
                         "carries today's time")
    folder = step.files_dir
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
    kept = _built_before(step, content)  # the same content as the file built before: keep it and its name
    if kept is not None:
        plain.unlink()
        step.log.info(f"{key}: content unchanged, keeping {kept[0][0].name}")
        return Files(kept[0], metadata={"reused": True}, reused=True)
    for old in folder.iterdir():
        if old != plain and old.is_file():
            old.unlink()
    sequence = 1 + len({d.file_name for d in step.ledger.history(VENDOR, deliverable) if d.partition_key == key})
    name = _delivered_plain_name(step, content) or _unused_name(step, s, sequence)
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
        step.log.info(f"encrypted to key {fingerprint}" + (" and signed with ours" if ours else ""))
        path.unlink()
        path, name = encrypted, encrypted.name
    outgoing = [OutgoingFile(path, f"{s.uploads_folder}/{name}", rows=count, md5=file_md5(path),
                             bytes=path.stat().st_size)]
    return Files(outgoing, manifest={"content_md5": content, "headers": s.headers,
                                     "encrypted": bool(s.pgp_public_key_file), "zipped": s.zip},
                 metadata={"encoding": s.encoding, "delimiter": s.delimiter})


def _built_before(step: Step, content_md5: str) -> tuple[list[OutgoingFile], dict] | None:
    """The files already built for this partition from the same plain content, else None."""
    try:
        previous, info = read_manifest(step.files_dir)
    except FileNotFoundError:
        return None
    if info.get("content_md5") == content_md5 and all(f.path.exists() for f in previous):
        return previous, info
    return None


def _unused_name(step: Step, s: IdomooSettings, sequence: int) -> str:
    """A name no upload to Idomoo ever had ("The client shouldn't upload 2 files with the exact same name"):
    send dates built in the same second (a backfill) take the next NN instead of repeating a name. The name is
    reserved in the ledger as it is chosen, so runs of two days building at once never both take it."""
    used = {d.file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0] for d in step.ledger.history(VENDOR)}
    now = clock.now()
    while True:
        name = spec.data_file_name(s.client, s.project, now, sequence, s.extension)
        stem = name.rsplit(".", 1)[0]
        if stem not in used and step.ledger.reserve_name(VENDOR, step.partition_key, stem):
            return name
        sequence += 1


def check_data_file(step: Step, outgoing: list, info: dict) -> list[str]:
    """Re-reads the file: the exact header line, no BOM, the configured encoding, one line per recipient; a zip
    holds one safe member; an encrypted file is an OpenPGP message."""
    s, f = step.settings, outgoing[0]
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
    return problems


def never_a_name_twice(step: Step, outgoing: list) -> None:
    """'The client shouldn't upload 2 files with the exact same name' (General Process)."""
    for f in outgoing:
        elsewhere = [d for d in step.ledger.find_name(VENDOR, f.name)
                     if d.partition_key != step.partition_key and d.status == "delivered"]
        if elsewhere:
            raise dg.Failure(f"idomoo: {f.name} was already uploaded for {elsewhere[0].partition_key}; Idomoo must "
                             "never receive the same name twice", allow_retries=False)


def start_return_clock(step: Step, outgoing: list, outcome) -> dict:
    staged = step.staged  # the rows uploaded: their keys are kept for the PURL file's check
    for f in outgoing:  # the PURL return deadline counts from here, and its keys must come back (returns.py)
        record_upload(f.name, clock.now().timestamp(), staged, step.settings.key_header)
    return {}


def purl_answer(partition_key: str, destination: str, files: list[dict]) -> dict:
    """Idomoo's answer to a data file: its PURL file, once received and stored (for the receipt)."""
    s, store = settings_from_env(), state_store()
    purls = []
    for f in files:
        purl = spec.purl_name(f["name"].rsplit("/", 1)[-1], s.purl_prefix, s.purl_suffix)
        stored = f"returns/idomoo_purls/{purl}.parquet"  # the state store's key (state_store.py)
        received = store.exists(stored)
        purls.append({"purl_file": purl, "received": received,
                      "rows": receipts.parquet_rows(store.get(stored)) if received else None})
    received = bool(purls) and all(p["received"] for p in purls)
    got = [p for p in purls if p["received"]]
    return {"kind": "idomoo_purl", "purl_received": received, "purl_files": purls,
            "meaning": "PURL file received and stored" if received else "PURL file not received yet",
            "status": "PURL back: " + ", ".join(f"{p['rows']:,} rows" for p in got) if received
            else "PURL not received"}


def chain(board: Storyboard) -> Chain:
    first = board.name == DELIVERABLE
    prefix = "" if first else board.name.removesuffix("_data_file") + "_"
    return Chain(
        deliverable=Deliverable(
            vendor=VENDOR, name=board.name, source="idomoo_recipients", models=(spec.StoryboardRecipients,),
            # the model's columns are the first storyboard's; another's are its own configuration
            staged=board.rows_asset if first else None, deadline=(0, 12), schedule=board.schedule,
            job=None if first else f"idomoo_{prefix}daily_delivery", answer=purl_answer,
            probe_why="skipped: Idomoo processes every file in Uploads and its document names no name it ignores; "
                      "the login, the host key and the Uploads folder are checked instead."),
        rows_asset=f"{prefix}{board.rows_asset}", files_asset=board.name, files_check="file_matches_spec",
        settings_key=board.settings_key, extract=recipients_of, schema=storyboard_schema, judge_rows=judge_row_count,
        write=write_data_file, check_files=check_data_file, before_delivery=never_a_name_twice,
        after_delivery=start_return_clock, partitions_def=daily, redact=True, files_kinds=frozenset({"csv"}),
        rows_metadata=lambda step, count: {"e2e_test": dg.MetadataValue.bool(step.settings.e2e_test)},
        descriptions={
            "rows": f"The day's video recipients in the storyboard's columns ({DOC}; the vendor's 'General Process' 2; "
                    "the header list is configuration, matched exactly). In end-to-end test mode exactly 20 rows.",
            "spec": "Every storyboard parameter present and non-empty, emails and URLs well formed, no duplicate "
                    "recipient keys, the exact header list, and a row count within the configured limits (exactly 20 "
                    "in end-to-end test mode).",
            "files": "The data file: `<client>_<project>_YYYYMMdd_HHMMss_NN.<ext>`, the UTC time it is built and "
                     "uploaded, on the send date (5.3 #1; a batch is never built before its send date), the configured "
                     "delimiter and encoding (UTF-8 without BOM or Windows-1252, a character it cannot hold is an "
                     "error naming row and column), optionally zipped and PGP-encrypted to Idomoo's public key. A "
                     "partition whose content was already built keeps its name, so a re-run sends nothing new.",
            "files_check": "Re-reads the file: the exact header line, no BOM, the configured encoding, one line per "
                           "recipient; a zip holds one safe member; an encrypted file is an OpenPGP message.",
            "delivery": "Uploads the data file to the SFTP account's Uploads folder (temporary name, then rename), "
                        "never reusing a name ever uploaded ('The client shouldn't upload 2 files with the exact same "
                        "name')."})


STORYBOARDS = (
    Storyboard(DELIVERABLE, Schedule(5, description=(
        "Daily at 05:00 UTC: the batch of recipients whose send date is TODAY (uploaded on its send date; the "
        "partitions end a day later for that)."))),
    # A second storyboard is configuration only: its own columns, project and hour.
    Storyboard("renewal_data_file", Schedule(7, description=(
        "Daily at 07:00 UTC: the renewal storyboard's batch of recipients whose send date is TODAY.")),
        settings_key="idomoo_renewal_settings",
        overrides={"project": "renewal", "headers": ["RecipientID", "FirstName", "Email", "Points"],
                   "source_columns": ["recipient_id", "first_name", "email", "points_balance"]}),
)
CHAINS = [chain(board) for board in STORYBOARDS]
