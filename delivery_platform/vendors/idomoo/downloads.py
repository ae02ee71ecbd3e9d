"""What Idomoo sends back, as `idomoo-batch-mode.txt` says it: a feed of the returns pipeline
(returns/pipeline.py does the watching, keeping, quarantine and storing).

- Where: the SFTP account's Downloads folder ("General Process" 3; `IDOMOO_DOWNLOADS`), any
  sub-folder. Each PURL file is keyed by its full path under Downloads (`/` written `~`, issue
  22.2), so files of the same name in two sub-folders never share a partition or a stored table.
- What: `<Prefix><ORIGINAL_FILE_NAME><Suffix>.<ext>` (prefix `PURL_` by default), optionally zipped
  or PGP-encrypted ("Special Features" 1), the data file's columns plus `thumbnail_1` and
  `landingPage`; our error files (`ERROR_<original>`, "Error Handling") and flags are not PURL files.
- Complete (R9): with flags on (`IDOMOO_FLAGS=on`, the default), when its flag exists
  (`PURL_x.csv.flg` or `PURL_x.flg`, "Special Features" 2, DIGEST 5.3 #2) and is not older than the
  PURL file; with flags off, when its size and time are the same on two sensor ticks in a row. A
  PURL file (or a flag) that has not completed after `orphan_flag_minutes` raises one alert, and so
  does a data file whose PURL file has not come back in `purl_return_hours` (returns.py).
- Parsed: decrypted, unzipped (one member, no zip bomb), decoded with the agreed encoding (a BOM
  dropped, CRLF or LF), read with the agreed delimiter; the header must hold our columns and
  Idomoo's two. Idomoo's error file for the batch, beside it, is kept and stored too.
- Checks: links are https and keys unique; every uploaded row came back (or is in the error file).
"""

import csv
import io
import json
import os
import time
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import dagster as dg
import duckdb

from ...core.sql import sql_literal
from ...destinations.base import FileInfo
from ...destinations.resource import DestinationResource
from ...returns.pipeline import FeedCheck, Intake, Parsed, Rejected, ReturnFeed, evaluate, file_version, ready_files, \
    return_pipeline, run_data, source_file, unchanged_across_ticks
from ...returns.receiving import csv_error
from ...validation import check_result, validate_parquet
from ...validation.report import md_table, with_next_step
from ...warehouse.resource import copy_to_parquet
from . import spec
from .assets import STORYBOARDS, IdomooSettings, Storyboard
from .returns import overdue_returns, uploaded_keys

VENDOR, TABLE = "idomoo", "idomoo_purls"
MAX_UNZIPPED = 1 << 30  # a PURL zip may not expand past 1 GiB
MAX_RATIO = 200  # nor by more than 200x (a zip bomb)

def purl_key(name: str, downloads: str) -> str:
    """The partition key of a PURL file: its path under Downloads, `/` written `~`."""
    return name[len(downloads) + 1:].replace("/", "~")


def _is_purl(name: str, downloads: str, s: IdomooSettings | None) -> bool:
    base = name.rsplit("/", 1)[-1]
    prefix, errors = (s.purl_prefix, s.error_prefix) if s else (spec.PURL_PREFIX, "ERROR_")
    return (name.startswith(downloads + "/") and not base.startswith(".") and not base.endswith(".flg")
            and ".part" not in base and base.startswith(prefix) and not (errors and base.startswith(errors)))


def _recognise(downloads: str | None = None):
    def recognise(name: str, s: IdomooSettings | None) -> str | None:
        folder = downloads or s.downloads_folder
        return purl_key(name, folder) if _is_purl(name, folder, s) else None
    return recognise


def _flag_of(purl, by_name: dict):
    return by_name.get(purl.name + ".flg") or by_name.get(purl.name.rsplit(".", 1)[0] + ".flg")


def flag_complete(f: FileInfo, by_name: dict, _pending: dict, _s) -> tuple[bool, str]:
    """Complete when its flag exists and is not older than the PURL file; the flag's own version is
    part of the file's (a new flag on the same bytes is a new version)."""
    flag = _flag_of(f, by_name)
    complete = flag is not None and (flag.mtime or 0) >= (f.mtime or 0)
    return complete, f"|flag:{file_version(flag)}" if flag is not None else ""


def _complete(f: FileInfo, by_name: dict, pending: dict, s: IdomooSettings) -> tuple[bool, str]:
    return (flag_complete if s.flags else unchanged_across_ticks)(f, by_name, pending, s)


def ready_purls(listing, downloads: str, cursor: dict, *, flags: bool = True, now: float | None = None,
                settings: IdomooSettings | None = None) -> tuple[list, dict]:
    """PURL files complete and not yet taken in at this version (the feed's rule, tested directly)."""
    from ...core import clock

    feed = replace(IDOMOO_PURLS, recognise=_recognise(downloads),
                   complete=flag_complete if flags else unchanged_across_ticks)
    return ready_files(feed, listing, cursor, now=clock.now().timestamp() if now is None else now,
                       settings=settings)


def orphan_flags(listing, downloads: str, older_than_s: float, now: float) -> list:
    """Flags whose PURL file has not appeared after `older_than_s` seconds (the server's mtimes
    against the wall clock: both are real time)."""
    names = {f.name for f in listing}
    return [f for f in listing if f.name.endswith(".flg") and f.name.startswith(downloads + "/")
            and now - (f.mtime or now) > older_than_s and f.name[:-4] not in names
            and not any(n != f.name and n.rsplit(".", 1)[0] == f.name[:-4] for n in names)]


def incomplete_purls(cursor: dict, older_than_s: float, now: float) -> list[tuple[str, float]]:
    """PURL files waiting to complete (no flag, or still changing) for longer than `older_than_s`."""
    return [(name, first) for name, (_, first) in cursor.get("pending", {}).items()
            if now - first > older_than_s]


def _alert(alert_sinks, key: str, title: str, detail: str, check: str) -> bool:
    from ...alerts.model import Alert
    from ...alerts.sensors import AlertLog

    if alert_sinks is None or not AlertLog().claim(key):
        return False
    alert_sinks.send(Alert("check_failed", VENDOR, title, deliverable="purl_results", check=check,
                           detail=detail))
    return True


def _missing_folder(exc, _source, folder: str, resources: dict) -> None:
    # a wrong or wrongly-cased IDOMOO_DOWNLOADS: the tick fails every time, one alert says why
    _alert(resources.get("alert_sinks"), f"idomoo-downloads-missing:{folder}",
           f"Idomoo Downloads folder {folder!r} does not exist", str(exc), "downloads_folder")


def _on_tick(context, listing, cursor: dict, _ready, resources: dict, now: float) -> None:
    """Alerts: a flag without its PURL file, a PURL file that never completes, a PURL file overdue."""
    s, sinks = resources["idomoo_settings"], resources.get("alert_sinks")
    limit = s.orphan_flag_minutes * 60
    for flag in orphan_flags(listing, s.downloads_folder, limit, time.time()):
        context.log.error(f"{flag.name}: a flag without its PURL file")
        _alert(sinks, f"idomoo-orphan-flag:{flag.name}:{int(flag.mtime or 0)}",
               f"Idomoo flag {flag.name} has no PURL file", f"the flag is {s.orphan_flag_minutes}+ minutes old",
               "flag_without_purl")
    for name, first in incomplete_purls(cursor, limit, now):
        why = "its flag has not come" if s.flags else "its size or time still changes"
        context.log.error(f"{name}: not complete after {s.orphan_flag_minutes}+ minutes ({why})")
        _alert(sinks, f"idomoo-incomplete:{name}:{int(first)}", f"Idomoo PURL file {name} never completed",
               f"{why} after {s.orphan_flag_minutes}+ minutes; it is not taken in", "purl_incomplete")
    for missing in overdue_returns(listing, s, now):
        expected = spec.purl_name(missing.rsplit("/", 1)[-1], s.purl_prefix, s.purl_suffix)
        context.log.error(f"{missing}: no PURL file {expected} after {s.purl_return_hours} h")
        _alert(sinks, f"idomoo-purl-overdue:{missing}", f"Idomoo PURL file for {missing} has not arrived",
               f"uploaded more than {s.purl_return_hours} h ago; no {expected} (nor an error file) in "
               f"{s.downloads_folder}", "purl_overdue")


def safe_member(zf: zipfile.ZipFile, name: str) -> str:
    """The single member of a PURL zip, refusing escaping names and zip bombs."""
    members = [i for i in zf.infolist() if not i.is_dir()]
    if len(members) != 1:
        raise ValueError(f"{name}: a PURL zip must hold exactly one file, holds {len(members)}")
    info = members[0]
    if info.filename.startswith("/") or ".." in info.filename.split("/") or "\\" in info.filename:
        raise ValueError(f"{name}: member {info.filename!r} tries to escape the folder")
    if info.file_size > MAX_UNZIPPED or info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ValueError(f"{name}: member {info.filename!r} expands to {info.file_size:,} bytes "
                         f"({info.file_size / max(info.compress_size, 1):.0f}x): refusing a possible zip bomb")
    return info.filename



def storyboard_of(remote: str, s: IdomooSettings) -> tuple[Storyboard, IdomooSettings]:
    """The storyboard whose data file a PURL file answers, and its settings: the PURL file carries the
    data file's name (`<client>_<project>_…`), so its columns are that project's. The first storyboard
    (`s`, the resource) when no other matches."""
    original = spec.original_name(remote.rsplit("/", 1)[-1], s.purl_prefix, s.purl_suffix) or ""
    for board in STORYBOARDS[1:]:
        settings = board.settings()
        if original.startswith(f"{settings.client}_{settings.project}_"):
            return board, settings
    return STORYBOARDS[0], s


def parse_purl(intake: Intake) -> Parsed:
    """Decrypt, unzip, decode and read one PURL file to `intake.staged`; then its error file."""
    from ...formats.delimited import DELIMITERS, ENCODINGS

    key, kept = intake.key, intake.kept
    s = storyboard_of(intake.remote, intake.settings)[1]
    data = kept.read_bytes()
    if key.endswith((".gpg", ".pgp")):
        if not s.pgp_private_key_file:
            raise Rejected("an encrypted PURL file needs our private key (IDOMOO_PGP_PRIVATE_KEY_FILE)")
        from ...formats.pgp import PGPError, decrypt_bytes

        try:
            data = decrypt_bytes(data, Path(s.pgp_private_key_file).read_text(), s.pgp_passphrase)
        except (PGPError, OSError) as exc:
            raise Rejected(str(exc)) from None
    if key.endswith(".zip"):
        try:
            with zipfile.ZipFile(kept) as zf:
                data = zf.read(safe_member(zf, key))
        except (zipfile.BadZipFile, ValueError) as exc:
            raise Rejected(str(exc)) from None
        except (zlib.error, EOFError) as exc:  # the index reads, the compressed bytes do not
            raise Rejected(f"the zip is damaged: its member does not decompress ({exc})") from None
    if not data.strip():
        raise Rejected("the file is empty")
    try:
        text = data.decode(ENCODINGS[s.encoding.lower()])
    except UnicodeDecodeError as exc:
        raise Rejected(f"not valid {s.encoding}: {exc}") from None
    # documented sanitisations, not errors: a BOM is dropped; CRLF, LF or a mix of both read alike
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    sep = DELIMITERS[s.delimiter]
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r"), newline=""), delimiter=sep))
    expected = list(s.headers) + list(spec.PURL_COLUMNS)
    missing = [h for h in expected if h not in header]
    if missing:
        raise Rejected(f"header {header[:12]} lacks {missing} (wrong delimiter or columns?)")
    # DuckDB reads the body (fast at a million rows); strict mode refuses ragged or truncated rows
    utf8 = intake.staged.with_name(f"{key}.utf8.csv")
    utf8.parent.mkdir(parents=True, exist_ok=True)
    utf8.write_text(text, encoding="utf-8")
    columns = "{" + ", ".join(f"{sql_literal(h)}: 'VARCHAR'" for h in header) + "}"
    con = duckdb.connect()
    try:
        count = copy_to_parquet(con, f"SELECT * FROM read_csv({sql_literal(str(utf8))}, header = true, "
                                     f"delim = {sql_literal(sep)}, quote = '\"', escape = '\"', columns = {columns}, "
                                     "auto_detect = false, strict_mode = true, null_padding = false)", intake.staged)
    except duckdb.Error as exc:
        raise Rejected("cannot be read as the agreed CSV (truncated, ragged or oversized rows): "
                       + csv_error(exc)) from None
    finally:
        con.close()
        utf8.unlink(missing_ok=True)
    errors = _ingest_error_file(intake)
    return Parsed(count, {"error_rows": dg.MetadataValue.int(errors)})


def _error_name(purl_name: str, s: IdomooSettings) -> str | None:
    original = spec.original_name(purl_name.rsplit("/", 1)[-1], s.purl_prefix, s.purl_suffix)
    return f"{s.error_prefix}{original}" if original else None


def _ingest_error_file(intake: Intake) -> int:
    """Idomoo's optional error file for the batch ("Error Handling"): kept, stored as Parquet
    (returns/idomoo_errors/) and counted; its rows are surfaced by `every_row_came_back`."""
    from ...formats.delimited import DELIMITERS, ENCODINGS

    remote, purl_key_ = intake.remote, intake.key
    s = storyboard_of(remote, intake.settings)[1]
    name = _error_name(remote, s)
    if not name:
        return 0
    folder = remote.rsplit("/", 1)[0]  # beside its PURL file, in the same sub-folder
    error_key = purl_key_.rsplit("~", 1)[0] + "~" + name if "~" in purl_key_ else name
    if not intake.source_exists(f"{folder}/{name}"):
        return 0
    kept = intake.receive(f"{folder}/{name}", error_key)
    text = kept.read_bytes().decode(ENCODINGS[s.encoding.lower()]).removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[s.delimiter]))
    if not rows or s.key_header not in rows[0]:
        raise Rejected(f"the error file has no {s.key_header!r} column", key=name, path=kept)
    header, body = rows[0], [r for r in rows[1:] if r]
    target = intake.run_path("errors")
    target.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("CREATE TABLE errors (" + ", ".join(f'"{h}" VARCHAR' for h in header) + ")")
    if body:
        con.executemany("INSERT INTO errors VALUES (" + ", ".join("?" for _ in header) + ")",
                        [r + [""] * (len(header) - len(r)) for r in body])
    copy_to_parquet(con, "SELECT * FROM errors", target)
    con.close()
    intake.store_table("idomoo_errors", error_key, target)
    return len(body)


def links_are_https(context, rows: Path, resources: dict) -> dg.AssetCheckResult:
    s = storyboard_of(source_file(IDOMOO_PURLS, context, resources["idomoo_settings"]), resources["idomoo_settings"])[1]
    report = validate_parquet(rows, spec.purl_schema(s.headers, s.key_header), redact=False,
                              name=f"PURL {context.partition_key}")
    return check_result(report, next_step=(
        "Next step: the PURL file is kept as received; send Idomoo the file name and the rows shown and ask for a "
        "corrected file (docs/idomoo.md); a new version under the same name is taken in by the sensor."))


def every_row_came_back(context, rows: Path, resources: dict) -> dg.AssetCheckResult:
    """The keys of the uploaded data file (kept in the state store when it went up, returns.py)
    against the PURL file's, plus the rows of Idomoo's error file."""
    ledger = resources["ledger"]
    board, s = storyboard_of(source_file(IDOMOO_PURLS, context, resources["idomoo_settings"]), resources["idomoo_settings"])
    key = context.partition_key
    original = spec.original_name(source_file(IDOMOO_PURLS, context, s).rsplit("/", 1)[-1], s.purl_prefix,
                                  s.purl_suffix)
    sent = [d for d in ledger.get().find_name(VENDOR, f"{s.uploads_folder}/{original}") if d.status == "delivered"]
    uploaded = uploaded_keys(f"{s.uploads_folder}/{original}") if original and sent else None
    if uploaded is None and sent:  # uploaded before the keys were kept: the run-local staged rows, if still there
        staged = resources["warehouse"].staged_table(VENDOR, board.name, sent[0].partition_key)
        uploaded = staged if staged.exists() else None
    if uploaded is None:
        return dg.AssetCheckResult(passed=False, description=with_next_step(
            f"{key}: no uploaded data file named {original!r} in the ledger (or its keys are not kept)",
            "Next step: ask Idomoo which upload this PURL file answers (its name should be our data file's "
            "name with their prefix); if it is not ours, nothing needs doing"))
    k = s.key_header
    con = duckdb.connect()
    missing, extra = (con.execute(
        f"SELECT count(*), list(\"{k}\")[1:5] FROM (SELECT \"{k}\" FROM read_parquet({sql_literal(str(a))}) "
        f"EXCEPT SELECT \"{k}\" FROM read_parquet({sql_literal(str(b))}))").fetchone()
        for a, b in ((uploaded, rows), (rows, uploaded)))
    error_file = _run_errors(context.run.run_id)
    failed_at_idomoo, samples = 0, []
    if error_file.exists():
        failed_at_idomoo, samples = con.execute(
            f"SELECT count(*), list(to_json(e))[1:5] FROM read_parquet({sql_literal(str(error_file))}) e").fetchone()
    con.close()
    passed = missing[0] == 0 and extra[0] == 0 and failed_at_idomoo == 0
    detail = (f"all {sent[0].rows} uploaded rows came back" if passed else
              f"{missing[0]} uploaded rows missing (e.g. {missing[1]}), {extra[0]} unexpected rows (e.g. {extra[1]}), "
              f"{failed_at_idomoo} rows in Idomoo's error file")
    if not passed:
        detail = with_next_step(detail, "Next step: rows in Idomoo's error file need their data fixed and a new "
                                        "upload (a new name: launch the partition again); missing rows may still "
                                        "come in a later PURL file, else ask Idomoo for them with the keys shown")
    error_rows = [json.loads(x) if isinstance(x, str) else x for x in samples or []]
    return dg.AssetCheckResult(passed=passed, description=detail,
                               metadata={"missing": missing[0], "extra": extra[0], "failed_at_idomoo": failed_at_idomoo,
                                         "error_rows": dg.MetadataValue.json([str(x) for x in samples or []]),
                                         **({"error_rows_table": dg.MetadataValue.md(md_table(error_rows))}
                                            if error_rows else {})})


def _interval() -> int:
    # IDOMOO_SENSOR_INTERVAL_SECONDS: how often the Downloads folder is listed (default 2 minutes)
    return int(os.environ.get("IDOMOO_SENSOR_INTERVAL_SECONDS", "120"))


IDOMOO_PURLS = ReturnFeed(
    vendor=VENDOR, asset="purl_results", table=TABLE, partitions="idomoo_purl_files",
    sensor="idomoo_downloads_sensor", title="Idomoo PURL file", source="idomoo_destination",
    settings="idomoo_settings",
    folder=lambda s: s.downloads_folder,
    recognise=_recognise(),
    complete=_complete,
    remote_of=lambda key, s: f"{s.downloads_folder}/{key.replace('~', '/')}",
    parse=parse_purl,
    checks=(
        FeedCheck("links_are_https", "Every PURL row has https `thumbnail_1` and `landingPage` links and a unique "
                                     "recipient key.", links_are_https),
        FeedCheck("every_row_came_back", "Every row of the uploaded data file came back in the PURL file, and "
                                         "nothing else.", every_row_came_back, resources=("ledger", "warehouse")),
    ),
    on_tick=_on_tick,
    on_missing_folder=_missing_folder,
    interval=_interval,
    sensor_description="Watches the Idomoo Downloads folder; one run per new version of a PURL file once complete "
                       "(its .flg, or unchanged across two ticks with IDOMOO_FLAGS=off); alerts on a PURL or flag "
                       "that never completes and on a PURL overdue after its upload.",
    asset_description="One PURL file (a dynamic partition per file): kept as received, read with the agreed "
                      "delimiter and encoding, stored as Parquet under data/returns/idomoo_purls/ (view "
                      "`returns_idomoo_purls`).",
)


def _run_errors(run_id: str) -> Path:
    return run_data(IDOMOO_PURLS, run_id, "errors")


def downloads_sensor(context: dg.SensorEvaluationContext, idomoo_destination: DestinationResource,
                     idomoo_settings: IdomooSettings, alert_sinks=None) -> dg.SensorResult:
    """One tick of `idomoo_downloads_sensor` (tests and the demo call it directly)."""
    return evaluate(IDOMOO_PURLS, context, {"idomoo_destination": idomoo_destination,
                                            "idomoo_settings": idomoo_settings, "alert_sinks": alert_sinks})


PIPELINE = return_pipeline(IDOMOO_PURLS)
purl_files = PIPELINE.partitions
purl_results = PIPELINE.asset
purl_links_are_https = PIPELINE.checks["links_are_https"]
purl_every_row_came_back = PIPELINE.checks["every_row_came_back"]
