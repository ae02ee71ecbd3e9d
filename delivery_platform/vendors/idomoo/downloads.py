"""What Idomoo sends back: PURL files (and, optionally, their `.flg` flags) in the SFTP account's
Downloads folder ({DOC} "General Process" 3, "Special Features" 2), and a simulator that plays
Idomoo on the embedded default.

When is a PURL file complete (R9)? With flags on (`IDOMOO_FLAGS=on`, the default), when its flag
exists (`PURL_x.csv.flg` or `PURL_x.flg`, DIGEST 5.3 #2) and is not older than the PURL file; with
flags off, when its size and modification time are the same on two sensor ticks in a row. A PURL
file (or a flag) that has not completed after `orphan_flag_minutes` raises one alert.

The cursor is what was seen, not a time watermark (issue 22.1): per file still in the folder, the
version taken in (size and mtime, and its flag's) and the version waiting to complete. Anything new
is taken in whatever its timestamp (`sftp put -p`, a vendor clock behind ours, a late re-send).
Each PURL file is keyed by its full path under Downloads (`/` written `~`, issue 22.2), so files of
the same name in two sub-folders never share a partition or a stored table; each version is one
run (run key = path + version).
"""

import csv
import hashlib
import io
import json
import os
import shutil
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from ... import settings
from ...core import clock
from ...destinations.base import DestinationError, FileInfo
from ...destinations.resource import DestinationResource
from ...receiving import csv_error, keep_received, quarantine
from ...resources import LedgerResource
from ...validation import check_result, validate_parquet
from ...validation.report import md_table, with_next_step
from ...core.sql import sql_literal
from ...warehouse.resource import WarehouseResource, copy_to_parquet
from . import spec
from .assets import IdomooSettings
from .returns import overdue_returns

VENDOR, TABLE = "idomoo", "idomoo_purls"
purl_files = dg.DynamicPartitionsDefinition(name="idomoo_purl_files")
MAX_UNZIPPED = 1 << 30  # a PURL zip may not expand past 1 GiB
MAX_RATIO = 200  # nor by more than 200x (a zip bomb)


def _version(f) -> str:
    return f"{f.size}:{f.mtime!r}" + (f":{f.md5}" if f.md5 else "")


def purl_key(name: str, downloads: str) -> str:
    """The partition key of a PURL file: its path under Downloads, `/` written `~`."""
    return name[len(downloads) + 1:].replace("/", "~")


def _is_purl(name: str, downloads: str, s: IdomooSettings | None) -> bool:
    base = name.rsplit("/", 1)[-1]
    prefix, errors = (s.purl_prefix, s.error_prefix) if s else (spec.PURL_PREFIX, "ERROR_")
    return (name.startswith(downloads + "/") and not base.startswith(".") and not base.endswith(".flg")
            and ".part" not in base and base.startswith(prefix) and not (errors and base.startswith(errors)))


def _flag_of(purl, by_name: dict):
    return by_name.get(purl.name + ".flg") or by_name.get(purl.name.rsplit(".", 1)[0] + ".flg")


def _short(text: str, size: int) -> str:
    """A short stable digest: the cursor holds one per file, so 10,000 files stay near 300 kB."""
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def ready_purls(listing, downloads: str, cursor: dict, *, flags: bool = True, now: float | None = None,
                settings: IdomooSettings | None = None) -> tuple[list, dict]:
    """PURL files complete and not yet taken in at this version (pure: tested directly).

    Returns the ready files (each with `.version`) and the new cursor: `taken` (digest of the
    name -> digest of the version taken in) and `pending` (name -> [version, first seen]), both
    for files still in the folder only."""
    now = clock.now().timestamp() if now is None else now
    taken, pending = cursor.get("taken", {}), cursor.get("pending", {})
    by_name = {f.name: f for f in listing}
    ready, new_taken, new_pending = [], {}, {}
    for f in listing:
        if not _is_purl(f.name, downloads, settings):
            continue
        version = _version(f)
        if flags:
            flag = _flag_of(f, by_name)
            complete = flag is not None and (flag.mtime or 0) >= (f.mtime or 0)
            version += f"|flag:{_version(flag)}" if flag is not None else ""
        else:
            # complete when unchanged since the previous tick (a file still being written changes)
            complete = pending.get(f.name, [None])[0] == version
        name_id, version_id = _short(f.name, 6), _short(version, 5)
        if taken.get(name_id) == version_id:
            new_taken[name_id] = version_id
            continue
        if name_id in taken:
            new_taken[name_id] = taken[name_id]
        if complete:
            ready.append(Ready(f, version))
            new_taken[name_id] = version_id
        else:
            first_seen = pending.get(f.name, [None, now])[1]
            new_pending[f.name] = [version, first_seen]
    return ready, {"taken": new_taken, "pending": new_pending}


@dataclass(frozen=True)
class Ready:
    file: FileInfo
    version: str

    @property
    def name(self) -> str:
        return self.file.name


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


def downloads_sensor(context: dg.SensorEvaluationContext, idomoo_destination: DestinationResource,
                     idomoo_settings: IdomooSettings, alert_sinks=None):
    s = idomoo_settings
    cursor = json.loads(context.cursor) if context.cursor else {}
    with idomoo_destination.get() as account:
        try:
            account.require_folder(s.downloads_folder)
        except DestinationError as exc:
            # a wrong or wrongly-cased IDOMOO_DOWNLOADS must not look like an empty folder forever:
            # the tick fails every time, and one alert says why
            _alert(alert_sinks, f"idomoo-downloads-missing:{s.downloads_folder}",
                   f"Idomoo Downloads folder {s.downloads_folder!r} does not exist", str(exc), "downloads_folder")
            raise
        listing = account.list(s.downloads_folder + "/")
    now = clock.now().timestamp()
    ready, new_cursor = ready_purls(listing, s.downloads_folder, cursor, flags=s.flags, now=now, settings=s)
    limit = s.orphan_flag_minutes * 60
    for flag in orphan_flags(listing, s.downloads_folder, limit, time.time()):
        context.log.error(f"{flag.name}: a flag without its PURL file")
        _alert(alert_sinks, f"idomoo-orphan-flag:{flag.name}:{int(flag.mtime or 0)}",
               f"Idomoo flag {flag.name} has no PURL file",
               f"the flag is {s.orphan_flag_minutes}+ minutes old",
               "flag_without_purl")
    for name, first in incomplete_purls(new_cursor, limit, now):
        why = "its flag has not come" if s.flags else "its size or time still changes"
        context.log.error(f"{name}: not complete after {s.orphan_flag_minutes}+ minutes ({why})")
        _alert(alert_sinks, f"idomoo-incomplete:{name}:{int(first)}",
               f"Idomoo PURL file {name} never completed",
               f"{why} after {s.orphan_flag_minutes}+ minutes; it is not taken in", "purl_incomplete")
    for missing in overdue_returns(listing, s, now):
        expected = spec.purl_name(missing.rsplit("/", 1)[-1], s.purl_prefix, s.purl_suffix)
        context.log.error(f"{missing}: no PURL file {expected} after {s.purl_return_hours} h")
        _alert(alert_sinks, f"idomoo-purl-overdue:{missing}",
               f"Idomoo PURL file for {missing} has not arrived",
               f"uploaded more than {s.purl_return_hours} h ago; no {expected} (nor an error file) in "
               f"{s.downloads_folder}", "purl_overdue")
    requests, keys = [], []
    for item in ready:
        key = purl_key(item.name, s.downloads_folder)
        keys.append(key)
        requests.append(dg.RunRequest(run_key=f"{item.name}:{item.version}", partition_key=key,
                                      tags={"vendor": VENDOR, "source_file": item.name,
                                            "source_version": item.version[:200]}))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor),
                           dynamic_partitions_requests=[purl_files.build_add_request(keys)] if keys else [])


def build_sensor(running: bool) -> dg.SensorDefinition:
    from ...alerts.sinks import AlertSinks

    def tick(context: dg.SensorEvaluationContext, idomoo_destination: DestinationResource,
             idomoo_settings: IdomooSettings, alert_sinks: AlertSinks):
        return downloads_sensor(context, idomoo_destination, idomoo_settings, alert_sinks)

    # IDOMOO_SENSOR_INTERVAL_SECONDS: how often the Downloads folder is listed (default 2 minutes)
    interval = int(os.environ.get("IDOMOO_SENSOR_INTERVAL_SECONDS", "120"))
    return dg.sensor(name="idomoo_downloads_sensor", minimum_interval_seconds=interval,
                     asset_selection=dg.AssetSelection.assets(dg.AssetKey([VENDOR, "purl_results"])),
                     default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
                     description="Watches the Idomoo Downloads folder; one run per new version of a PURL "
                                 "file once complete (its .flg, or unchanged across two ticks with "
                                 "IDOMOO_FLAGS=off); alerts on a PURL or flag that never completes and on a PURL "
                                 "overdue after its upload.",
                     )(tick)


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


def received_dir() -> Path:
    return settings.data_dir() / "received" / VENDOR


def quarantine_dir() -> Path:
    return settings.data_dir() / "quarantine" / VENDOR


def _quarantine(kept: Path, key: str, why: str) -> dg.Failure:
    quarantine(kept, quarantine_dir(), key)
    return dg.Failure(f"Idomoo PURL file {key}: {why}. Kept at {quarantine_dir() / key}; nothing was deleted.",
                      allow_retries=False)


@dg.asset(key=[VENDOR, "purl_results"], group_name=VENDOR, partitions_def=purl_files, kinds={"csv"},
          pool=VENDOR,
          description="One PURL file (a dynamic partition per file): kept as received, read with the agreed delimiter "
                      "and encoding, stored as Parquet under data/returns/idomoo_purls/ (view `returns_idomoo_purls`).")
def purl_results(context: dg.AssetExecutionContext, idomoo_destination: DestinationResource,
                 idomoo_settings: IdomooSettings) -> dg.MaterializeResult:
    from ...formats.delimited import DELIMITERS, ENCODINGS

    key, s = context.partition_key, idomoo_settings
    remote = source_file(context, s)
    with idomoo_destination.get() as account:
        kept = keep_received(account, remote, received_dir(), key)  # our copy first: nothing received is lost
    data = kept.read_bytes()
    if key.endswith((".gpg", ".pgp")):
        if not s.pgp_private_key_file:
            raise _quarantine(kept, key, "an encrypted PURL file needs our private key (IDOMOO_PGP_PRIVATE_KEY_FILE)")
        from ...formats.pgp import PGPError, decrypt_bytes

        try:
            data = decrypt_bytes(data, Path(s.pgp_private_key_file).read_text(), s.pgp_passphrase)
        except (PGPError, OSError) as exc:
            raise _quarantine(kept, key, str(exc)) from None
    if key.endswith(".zip"):
        try:
            with zipfile.ZipFile(kept) as zf:
                data = zf.read(safe_member(zf, key))
        except (zipfile.BadZipFile, ValueError) as exc:
            raise _quarantine(kept, key, str(exc)) from None
        except (zlib.error, EOFError) as exc:  # the index reads, the compressed bytes do not
            raise _quarantine(kept, key, f"the zip is damaged: its member does not decompress ({exc})") from None
    if not data.strip():
        raise _quarantine(kept, key, "the file is empty")
    try:
        text = data.decode(ENCODINGS[s.encoding.lower()])
    except UnicodeDecodeError as exc:
        raise _quarantine(kept, key, f"not valid {s.encoding}: {exc}") from None
    # documented sanitisations, not errors: a BOM is dropped; CRLF, LF or a mix of both read alike
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    sep = DELIMITERS[s.delimiter]
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r"), newline=""), delimiter=sep))
    expected = list(s.headers) + list(spec.PURL_COLUMNS)
    missing = [h for h in expected if h not in header]
    if missing:
        raise _quarantine(kept, key, f"header {header[:12]} lacks {missing} (wrong delimiter or columns?)")
    # DuckDB reads the body (fast at a million rows); strict mode refuses ragged or truncated rows
    utf8 = settings.staging_dir() / VENDOR / "purl_results" / f"{key}.utf8.csv"
    utf8.parent.mkdir(parents=True, exist_ok=True)
    utf8.write_text(text, encoding="utf-8")
    staged = utf8.with_name(f"{key}.parquet")
    columns = "{" + ", ".join(f"{sql_literal(h)}: 'VARCHAR'" for h in header) + "}"
    con = duckdb.connect()
    try:
        count = copy_to_parquet(con, f"SELECT * FROM read_csv({sql_literal(str(utf8))}, header = true, "
                                     f"delim = {sql_literal(sep)}, quote = '\"', escape = '\"', columns = {columns}, "
                                     "auto_detect = false, strict_mode = true, null_padding = false)", staged)
    except duckdb.Error as exc:
        raise _quarantine(kept, key, "cannot be read as the agreed CSV (truncated, ragged or oversized rows): "
                                     + csv_error(exc)) from None
    finally:
        con.close()
        utf8.unlink(missing_ok=True)
    target = settings.returns_dir() / TABLE / f"{key}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(staged, partial)
    os.replace(partial, target)
    # this run's own rows: its checks read these, never a later version's (issue 22.2)
    run_copy = _run_data(context.run_id)
    run_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(staged, run_copy)
    errors = _ingest_error_file(idomoo_destination, s, key, remote, context.run_id)
    return dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(count),
                                          "rows": dg.MetadataValue.int(count), "source_file": remote,
                                          "stored": dg.MetadataValue.path(str(target)),
                                          "error_rows": dg.MetadataValue.int(errors)})


def source_file(context, s: IdomooSettings) -> str:
    """The PURL file's path on the account: the sensor's tag, else the partition key's path."""
    tags = context.run.tags if context.run else {}
    return tags.get("source_file") or f"{s.downloads_folder}/{context.partition_key.replace('~', '/')}"


def _run_data(run_id: str, kind: str = "purls") -> Path:
    return settings.staging_dir() / VENDOR / "purl_results" / "runs" / f"{run_id}.{kind}.parquet"


def _error_name(purl_name: str, s: IdomooSettings) -> str | None:
    original = spec.original_name(purl_name.rsplit("/", 1)[-1], s.purl_prefix, s.purl_suffix)
    return f"{s.error_prefix}{original}" if original else None


def _ingest_error_file(idomoo_destination: DestinationResource, s: IdomooSettings, purl_key: str, remote: str,
                       run_id: str) -> int:
    """Idomoo's optional error file for the batch ("Error Handling"): kept, stored as Parquet
    (data/returns/idomoo_errors/) and counted; its rows are surfaced by `every_row_came_back`."""
    from ...formats.delimited import DELIMITERS, ENCODINGS

    name = _error_name(remote, s)
    if not name:
        return 0
    folder = remote.rsplit("/", 1)[0]  # beside its PURL file, in the same sub-folder
    error_key = purl_key.rsplit("~", 1)[0] + "~" + name if "~" in purl_key else name
    with idomoo_destination.get() as account:
        if not account.exists(f"{folder}/{name}"):
            return 0
        kept = keep_received(account, f"{folder}/{name}", received_dir(), error_key)
    text = kept.read_bytes().decode(ENCODINGS[s.encoding.lower()]).removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[s.delimiter]))
    if not rows or s.key_header not in rows[0]:
        raise _quarantine(kept, name, f"the error file has no {s.key_header!r} column")
    header, body = rows[0], [r for r in rows[1:] if r]
    target = _run_data(run_id, "errors")
    target.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("CREATE TABLE errors (" + ", ".join(f'"{h}" VARCHAR' for h in header) + ")")
    if body:
        con.executemany("INSERT INTO errors VALUES (" + ", ".join("?" for _ in header) + ")",
                        [r + [""] * (len(header) - len(r)) for r in body])
    copy_to_parquet(con, "SELECT * FROM errors", target)
    con.close()
    stored = settings.returns_dir() / "idomoo_errors" / f"{error_key}.parquet"
    stored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, stored)
    return len(body)


def _stored(key: str) -> Path:
    return settings.returns_dir() / TABLE / f"{key}.parquet"


def _checked(context) -> Path:
    """The rows this run took in (never another run's version); the stored table otherwise."""
    own = _run_data(context.run.run_id)
    return own if own.exists() else _stored(context.partition_key)


@dg.asset_check(asset=purl_results, name="links_are_https",
                pool=VENDOR,
                description="Every PURL row has https `thumbnail_1` and `landingPage` links and a unique recipient key.")
def purl_links_are_https(context: dg.AssetCheckExecutionContext, idomoo_settings: IdomooSettings) -> dg.AssetCheckResult:
    report = validate_parquet(_checked(context),
                              spec.purl_schema(idomoo_settings.headers, idomoo_settings.key_header), redact=False,
                              name=f"PURL {context.partition_key}")
    return check_result(report, next_step=(
        "Next step: the PURL file is kept as received; send Idomoo the file name and the rows shown and ask for a "
        "corrected file (docs/idomoo.md); a new version under the same name is taken in by the sensor."))


@dg.asset_check(asset=purl_results, name="every_row_came_back",
                pool=VENDOR,
                description="Every row of the uploaded data file came back in the PURL file, and nothing else.")
def purl_every_row_came_back(context: dg.AssetCheckExecutionContext, ledger: LedgerResource, warehouse: WarehouseResource,
                             idomoo_settings: IdomooSettings) -> dg.AssetCheckResult:
    s = idomoo_settings
    key, rows = context.partition_key, _checked(context)
    original = spec.original_name(source_file(context, s).rsplit("/", 1)[-1], s.purl_prefix, s.purl_suffix)
    sent = [d for d in ledger.get().find_name(VENDOR, f"{s.uploads_folder}/{original}") if d.status == "delivered"]
    if not original or not sent:
        return dg.AssetCheckResult(passed=False, description=with_next_step(
            f"{key}: no uploaded data file named {original!r} in the ledger",
            "Next step: ask Idomoo which upload this PURL file answers (its name should be our data file's "
            "name with their prefix); if it is not ours, nothing needs doing"))
    uploaded = warehouse.staged_table(VENDOR, "data_file", sent[0].partition_key)
    k = s.key_header
    con = duckdb.connect()
    missing, extra = (con.execute(
        f"SELECT count(*), list(\"{k}\")[1:5] FROM (SELECT \"{k}\" FROM read_parquet({sql_literal(str(a))}) "
        f"EXCEPT SELECT \"{k}\" FROM read_parquet({sql_literal(str(b))}))").fetchone()
        for a, b in ((uploaded, rows), (rows, uploaded)))
    error_file = _run_data(context.run.run_id, "errors")
    failed_at_idomoo, samples = 0, []
    if error_file.exists():
        failed_at_idomoo, samples = con.execute(
            f"SELECT count(*), list(to_json(e))[1:5] FROM read_parquet({sql_literal(str(error_file))}) e").fetchone()
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


def simulate(account_root: Path, s: IdomooSettings, fail_keys: tuple[str, ...] = ()) -> list[str]:
    """Play Idomoo on a local account folder: answer each upload with a PURL file (rows whose key is
    in `fail_keys` go to an error file instead), then its flag."""
    from ...formats.delimited import DELIMITERS, ENCODINGS

    uploads, downloads = account_root / s.uploads_folder, account_root / s.downloads_folder
    downloads.mkdir(parents=True, exist_ok=True)
    made = []
    for upload in sorted(uploads.glob("*")) if uploads.exists() else []:
        if upload.name.startswith(".") or upload.suffix in (".gpg", ".pgp"):
            continue
        purl = downloads / spec.purl_name(upload.name, s.purl_prefix, s.purl_suffix)
        if purl.exists():
            continue
        raw = upload.read_bytes()
        if upload.suffix == ".zip":
            with zipfile.ZipFile(upload) as zf:
                raw = zf.read(zf.namelist()[0])
        sep = DELIMITERS[s.delimiter]
        rows = list(csv.reader(io.StringIO(raw.decode(ENCODINGS[s.encoding.lower()]), newline=""), delimiter=sep))
        out = io.StringIO()
        writer = csv.writer(out, delimiter=sep, lineterminator="\n")
        writer.writerow(rows[0] + list(spec.PURL_COLUMNS))
        key_at = rows[0].index(s.key_header)
        failed = [row for row in rows[1:] if row[key_at] in fail_keys]
        for row in rows[1:]:
            if row[key_at] not in fail_keys:
                writer.writerow(row + [f"https://cdn.idomoo.example/thumb/{row[key_at]}.jpg",
                                       f"https://video.idomoo.example/lp/{row[key_at]}"])
        if failed:
            errors = io.StringIO()
            err = csv.writer(errors, delimiter=sep, lineterminator="\n")
            err.writerow([s.key_header, "error"])
            err.writerows([[row[key_at], "render failed: missing asset for parameter"] for row in failed])
            (downloads / f"{s.error_prefix}{upload.name}").write_bytes(errors.getvalue().encode(ENCODINGS[s.encoding.lower()]))
        partial = purl.with_name("." + purl.name + ".part")
        partial.write_bytes(out.getvalue().encode(ENCODINGS[s.encoding.lower()]))
        os.replace(partial, purl)
        purl.with_name(purl.name + ".flg").write_bytes(b"")
        made.append(purl.name)
    return made
