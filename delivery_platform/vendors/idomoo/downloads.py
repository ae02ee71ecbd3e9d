"""What Idomoo sends back: PURL files (and their `.flg` flags) in the SFTP account's Downloads
folder ({DOC} "General Process" 3, "Special Features" 2), and a simulator that plays Idomoo on the
embedded default.

The sensor treats a PURL file as complete when its flag exists (`PURL_x.csv.flg` or `PURL_x.flg`,
DIGEST 5.3 #2). Its cursor is a watermark: the newest flag time handled plus the flags at that
time, so a tick over a folder of 10,000 old files only compares times. Each PURL becomes a dynamic
partition of `idomoo/purl_results` and one run (run key = name + size + mtime, at the store's precision).
"""

import csv
import io
import json
import os
import shutil
import time
import zipfile
import zlib
from pathlib import Path

import dagster as dg
import duckdb

from ... import settings
from ...destinations.resource import DestinationResource
from ...receiving import csv_error, keep_received, quarantine
from ...resources import LedgerResource
from ...validation import check_result, validate_parquet
from ...validation.sql_checks import sql_literal
from ...warehouse.resource import WarehouseResource, copy_to_parquet
from . import spec
from .assets import IdomooSettings

VENDOR, TABLE = "idomoo", "idomoo_purls"
purl_files = dg.DynamicPartitionsDefinition(name="idomoo_purl_files")
MAX_UNZIPPED = 1 << 30  # a PURL zip may not expand past 1 GiB
MAX_RATIO = 200  # nor by more than 200x (a zip bomb)


def ready_purls(listing, downloads: str, cursor: dict) -> tuple[list, dict]:
    """PURL files whose flag is newer than the watermark (pure: tested and benchmarked directly)."""
    mark, at_mark = cursor.get("watermark", 0.0), set(cursor.get("at_watermark", []))
    by_name = {f.name: f for f in listing}
    ready, newest, names_at_newest = [], mark, set(at_mark)
    for f in listing:
        if not f.name.endswith(".flg") or not f.name.startswith(downloads + "/"):
            continue
        t = f.mtime or 0.0
        if t < mark or (t == mark and f.name in at_mark):
            continue
        base = f.name[:-4]
        purl = by_name.get(base) or next((by_name[n] for n in by_name if n.rsplit(".", 1)[0] == base and n != f.name
                                          and not n.endswith(".flg")), None)
        if purl is None:
            continue  # a flag without its PURL yet: look again next tick (the watermark does not pass it)
        ready.append(purl)
        if t > newest:
            newest, names_at_newest = t, {f.name}
        elif t == newest:
            names_at_newest.add(f.name)
    # never move the watermark past a flag whose PURL is missing
    waiting = [f for f in listing if f.name.endswith(".flg") and (f.mtime or 0) > mark and f.name[:-4] not in by_name
               and not any(n.rsplit(".", 1)[0] == f.name[:-4] for n in by_name if not n.endswith(".flg"))]
    if waiting:
        newest = min([newest] + [(w.mtime or 0) - 1e-6 for w in waiting])
        names_at_newest = {n for n in names_at_newest}
    return ready, {"watermark": newest, "at_watermark": sorted(names_at_newest)}


def orphan_flags(listing, downloads: str, older_than_s: float, now: float) -> list:
    """Flags whose PURL file has not appeared after `older_than_s` seconds."""
    names = {f.name for f in listing}
    return [f for f in listing if f.name.endswith(".flg") and f.name.startswith(downloads + "/")
            and now - (f.mtime or now) > older_than_s and f.name[:-4] not in names
            and not any(n != f.name and n.rsplit(".", 1)[0] == f.name[:-4] for n in names)]


def downloads_sensor(context: dg.SensorEvaluationContext, idomoo_destination: DestinationResource,
                     idomoo_settings: IdomooSettings, alert_sinks=None):
    cursor = json.loads(context.cursor) if context.cursor else {}
    with idomoo_destination.get() as account:
        listing = account.list(idomoo_settings.downloads_folder + "/")
    ready, new_cursor = ready_purls(listing, idomoo_settings.downloads_folder, cursor)
    orphans = orphan_flags(listing, idomoo_settings.downloads_folder, idomoo_settings.orphan_flag_minutes * 60, time.time())
    if orphans and alert_sinks is not None:
        from ...alerts.model import Alert
        from ...alerts.sensors import AlertLog

        log = AlertLog()
        for flag in orphans:
            if log.claim(f"idomoo-orphan-flag:{flag.name}:{int(flag.mtime or 0)}"):
                alert_sinks.send(Alert("check_failed", VENDOR, f"Idomoo flag {flag.name} has no PURL file",
                                       deliverable="purl_results", check="flag_without_purl",
                                       detail=f"the flag is {idomoo_settings.orphan_flag_minutes}+ minutes old"))
    for flag in orphans:
        context.log.error(f"{flag.name}: a flag without its PURL file")
    requests, keys = [], []
    for purl in ready:
        key = purl.name.rsplit("/", 1)[-1]
        keys.append(key)
        requests.append(dg.RunRequest(run_key=f"{purl.name}:{purl.size}:{purl.mtime!r}", partition_key=key,
                                      tags={"vendor": VENDOR, "source_file": purl.name}))
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
                     description="Watches the Idomoo Downloads folder; one run per PURL file once its .flg is there; "
                                 "alerts on a flag whose PURL never comes.",
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
          description="One PURL file (a dynamic partition per file): kept as received, read with the agreed delimiter "
                      "and encoding, stored as Parquet under data/returns/idomoo_purls/ (view `returns_idomoo_purls`).")
def purl_results(context: dg.AssetExecutionContext, idomoo_destination: DestinationResource,
                 idomoo_settings: IdomooSettings) -> dg.MaterializeResult:
    from ...formats.delimited import DELIMITERS, ENCODINGS

    key, s = context.partition_key, idomoo_settings
    remote = context.run.tags.get("source_file") or f"{s.downloads_folder}/{key}"
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
    errors = _ingest_error_file(idomoo_destination, s, key)
    return dg.MaterializeResult(metadata={"rows": dg.MetadataValue.int(count), "source_file": remote,
                                          "stored": dg.MetadataValue.path(str(target)),
                                          "error_rows": dg.MetadataValue.int(errors)})


def _error_name(purl_key: str, s: IdomooSettings) -> str | None:
    original = spec.original_name(purl_key, s.purl_prefix, s.purl_suffix)
    return f"{s.error_prefix}{original}" if original else None


def _ingest_error_file(idomoo_destination: DestinationResource, s: IdomooSettings, purl_key: str) -> int:
    """Idomoo's optional error file for the batch ("Error Handling"): kept, stored as Parquet
    (data/returns/idomoo_errors/) and counted; its rows are surfaced by `every_row_came_back`."""
    from ...formats.delimited import DELIMITERS, ENCODINGS

    name = _error_name(purl_key, s)
    if not name:
        return 0
    with idomoo_destination.get() as account:
        if not account.exists(f"{s.downloads_folder}/{name}"):
            return 0
        kept = keep_received(account, f"{s.downloads_folder}/{name}", received_dir(), name)
    text = kept.read_bytes().decode(ENCODINGS[s.encoding.lower()]).removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[s.delimiter]))
    if not rows or s.key_header not in rows[0]:
        raise _quarantine(kept, name, f"the error file has no {s.key_header!r} column")
    header, body = rows[0], [r for r in rows[1:] if r]
    target = settings.returns_dir() / "idomoo_errors" / f"{name}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("CREATE TABLE errors (" + ", ".join(f'"{h}" VARCHAR' for h in header) + ")")
    if body:
        con.executemany("INSERT INTO errors VALUES (" + ", ".join("?" for _ in header) + ")",
                        [r + [""] * (len(header) - len(r)) for r in body])
    copy_to_parquet(con, "SELECT * FROM errors", target)
    con.close()
    return len(body)


def _stored(key: str) -> Path:
    return settings.returns_dir() / TABLE / f"{key}.parquet"


@dg.asset_check(asset=purl_results, name="links_are_https",
                description="Every PURL row has https `thumbnail_1` and `landingPage` links and a unique recipient key.")
def purl_links_are_https(context: dg.AssetCheckExecutionContext, idomoo_settings: IdomooSettings) -> dg.AssetCheckResult:
    report = validate_parquet(_stored(context.partition_key),
                              spec.purl_schema(idomoo_settings.headers, idomoo_settings.key_header), redact=False,
                              name=f"PURL {context.partition_key}")
    return check_result(report)


@dg.asset_check(asset=purl_results, name="every_row_came_back",
                description="Every row of the uploaded data file came back in the PURL file, and nothing else.")
def purl_every_row_came_back(context: dg.AssetCheckExecutionContext, ledger: LedgerResource, warehouse: WarehouseResource,
                             idomoo_settings: IdomooSettings) -> dg.AssetCheckResult:
    s = idomoo_settings
    key = context.partition_key
    original = spec.original_name(key, s.purl_prefix, s.purl_suffix)
    sent = [d for d in ledger.get().find_name(VENDOR, f"{s.uploads_folder}/{original}") if d.status == "delivered"]
    if not original or not sent:
        return dg.AssetCheckResult(passed=False, description=f"{key}: no uploaded data file named {original!r} in the ledger")
    uploaded = warehouse.staged_table(VENDOR, "data_file", sent[0].partition_key)
    k = s.key_header
    con = duckdb.connect()
    missing, extra = (con.execute(
        f"SELECT count(*), list(\"{k}\")[1:5] FROM (SELECT \"{k}\" FROM read_parquet({sql_literal(str(a))}) "
        f"EXCEPT SELECT \"{k}\" FROM read_parquet({sql_literal(str(b))}))").fetchone()
        for a, b in ((uploaded, _stored(key)), (_stored(key), uploaded)))
    error_file = settings.returns_dir() / "idomoo_errors" / f"{_error_name(key, s)}.parquet"
    failed_at_idomoo, samples = 0, []
    if error_file.exists():
        failed_at_idomoo, samples = con.execute(
            f"SELECT count(*), list(to_json(e))[1:5] FROM read_parquet({sql_literal(str(error_file))}) e").fetchone()
    passed = missing[0] == 0 and extra[0] == 0 and failed_at_idomoo == 0
    detail = (f"all {sent[0].rows} uploaded rows came back" if passed else
              f"{missing[0]} uploaded rows missing (e.g. {missing[1]}), {extra[0]} unexpected rows (e.g. {extra[1]}), "
              f"{failed_at_idomoo} rows in Idomoo's error file")
    return dg.AssetCheckResult(passed=passed, description=detail,
                               metadata={"missing": missing[0], "extra": extra[0], "failed_at_idomoo": failed_at_idomoo,
                                         "error_rows": dg.MetadataValue.json([str(x) for x in samples or []])})


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
