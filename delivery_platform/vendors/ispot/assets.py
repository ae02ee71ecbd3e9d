"""iSpot.tv conversions: the day's events -> spec checks -> CSV parts -> upload (or local outbox).

Read beside `ispot-tv-conversions-api.txt`: "CSV File Format" (quoting, header, size, names),
"Available Dimensions" (columns), "Upload Requirements" (previous day only, the cutoff),
"Matching Methodology" (IPv4), and the API sections (uploader.py).
"""


import datetime as dt
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional

import dagster as dg
import numpy as np
import pyarrow as pa

from ...core import clock
from ...core.files import file_md5, write_atomic
from ...core.sql import quote_ident, sql_literal
from ...delivery import OutgoingFile, deliver_files
from ...destinations.base import AlreadyExists
from .uploader import ISpotApiResource, ISpotRejected, ISpotUploader
from ...formats.compress import zip_file
from ...formats.lines import csv_header, csv_line_bytes_sql, csv_line_sql
from ...formats.parts import (BalancedSplit, Part, PartWriter, line_lengths, misbroken_lines)
from ...ledger import FileContents
from ...manifest import read_manifest, reset_folder
from ...factory import Chain, Files, Step
from ...partitions import daily, day_bounds
from ...registry import Deliverable, Schedule
from ...validation.report import FILES_REMEDY as FILES_NEXT, with_next_step
from ...warehouse.resource import WarehouseResource
from . import spec, topups

VENDOR, DELIVERABLE = "ispot", "conversions"
DOC = "docs/ispot.md"  # what descriptions cite: in the repo, with the vendor document's sections


class ISpotSettings(dg.ConfigurableResource):
    """What iSpot's Customer Success agreed with us (resource `ispot_settings`).

    Defaults come from environment variables so operators set them once:
    `ISPOT_SITE_IDS` (comma-separated allow-list), `ISPOT_ONBOARDING` (true while iSpot
    validates: files carry `passthru`), `ISPOT_SPLIT_BYTES`, `ISPOT_ZIP`, `ISPOT_MIN_UPLOAD_BYTES`,
    `ISPOT_HEADER_PROFILE`, `ISPOT_OPTIONAL_COLUMNS`, `ISPOT_INCLUDE_IPV6`, `ISPOT_ALLOW_REPROCESSING`.
    """

    site_ids: List[str] = ["TC-1234-1", "TC-1234-2"]
    onboarding: bool = False
    split_bytes: int = spec.DEFAULT_SPLIT_BYTES  # most bytes per uploaded file; must stay below 200 MB
    min_bytes: int = spec.MIN_UPLOAD_BYTES  # iSpot refuses smaller files (400): they are held, not uploaded
    # hold files under min_bytes: by default only when uploading to the API (the local outbox, the
    # embedded default, still writes them and a WARN check says iSpot would refuse them)
    enforce_min_bytes: Optional[bool] = None
    zip: bool = False  # upload each part as a .zip (the document accepts zips; plain CSV is the default)
    zip_level: int = 6
    allow_reprocessing: bool = False  # upload data older than 12 days (paid reprocessing at iSpot)
    header_profile: str = "document"  # header names: see spec.HEADER_PROFILES (DIGEST R2)
    optional_columns: List[str] = []  # any of spec.OPTIONAL_COLUMNS iSpot agreed to receive
    include_ipv6: bool = False  # send IPv6 rows (R5: only for accounts whose partner resolves IPv6)
    load_settle_seconds: int = 0  # how far behind the clock the watermark stays (see topups.py)

    def file_columns(self) -> tuple[str, ...]:
        unknown = [c for c in self.optional_columns if c not in spec.OPTIONAL_COLUMNS]
        if unknown:
            raise dg.Failure(f"ISPOT_OPTIONAL_COLUMNS names {', '.join(unknown)}: iSpot's optional "
                             f"columns are {', '.join(spec.OPTIONAL_COLUMNS)}", allow_retries=False)
        unsourced = [c for c in self.optional_columns if c not in topups.SOURCES]
        if unsourced:
            raise dg.Failure(f"ISPOT_OPTIONAL_COLUMNS names {', '.join(unsourced)}, but the warehouse table "
                             "ispot_conversion_events has no column for it (warehouse/schema.py)",
                             allow_retries=False)
        return spec.logical_columns(self.onboarding, tuple(self.optional_columns))

    def file_headers(self) -> tuple[str, ...]:
        return spec.header_names(self.file_columns(), self.header_profile)


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def settings_from_env(environ: dict | None = None) -> ISpotSettings:
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    if environ.get("ISPOT_SITE_IDS"):
        kwargs["site_ids"] = [s.strip() for s in environ["ISPOT_SITE_IDS"].split(",") if s.strip()]
    if environ.get("ISPOT_OPTIONAL_COLUMNS"):
        names = environ["ISPOT_OPTIONAL_COLUMNS"].split(",")
        kwargs["optional_columns"] = [s.strip() for s in names if s.strip()]
    flags = (("ISPOT_ONBOARDING", "onboarding"), ("ISPOT_ALLOW_REPROCESSING", "allow_reprocessing"),
             ("ISPOT_ZIP", "zip"), ("ISPOT_INCLUDE_IPV6", "include_ipv6"))
    for name, field in flags:
        if environ.get(name):
            kwargs[field] = _flag(environ[name])
    for name, field in (("ISPOT_SPLIT_BYTES", "split_bytes"), ("ISPOT_MIN_UPLOAD_BYTES", "min_bytes")):
        if environ.get(name):
            kwargs[field] = int(environ[name])
    if environ.get("ISPOT_HEADER_PROFILE"):
        kwargs["header_profile"] = environ["ISPOT_HEADER_PROFILE"].strip()
    return ISpotSettings(**kwargs)


def enforces_minimum(settings: ISpotSettings, api: ISpotApiResource) -> bool:
    return api.configured if settings.enforce_min_bytes is None else settings.enforce_min_bytes


def counts_sql(partition_key: str, batch: topups.Batch, up_to: str, include_ipv6: bool) -> str:
    start, end = (sql_literal(t.isoformat(sep=" ")) for t in day_bounds(partition_key))
    in_day = f"event_ts >= {start} AND event_ts < {end}"
    loaded = f"{in_day} AND loaded_at <= {sql_literal(up_to)}"
    batch_rows = f"{loaded} AND {topups.in_batch_sql(batch)}"
    loaded_today = f"loaded_at >= {start} AND loaded_at < {end}"
    sent = "" if include_ipv6 else " AND NOT contains(client_ip, ':')"
    return f"""
        SELECT count(*) FILTER (WHERE {batch_rows}{sent}) AS rows,
               count(*) FILTER (WHERE {in_day}) AS in_day,
               count(*) FILTER (WHERE {in_day} AND loaded_at > {sql_literal(up_to)}) AS not_loaded_yet,
               count(*) FILTER (WHERE {batch_rows} AND contains(client_ip, ':')) AS ipv6,
               count(*) FILTER (WHERE {batch_rows} AND loaded_at >= {end}) AS late,
               max({{'loaded_at': loaded_at, 'event_id': event_id}})
                   FILTER (WHERE {loaded} AND {topups.after_sql(batch.sent_through)}) AS new_through,
               count(*) FILTER (WHERE {loaded_today} AND event_ts < {start}) AS other_days
        FROM ispot_conversion_events WHERE ({in_day}) OR ({loaded_today})"""


# The key of each row, carried beside the file's columns (the spec check skips `__` columns): event_id
# travels as `__row`, so a failing row's sample names it as pandera's `index`.
LOADED_AT, EVENT_ID = "__loaded_at", "__row"
KEY = (LOADED_AT, EVENT_ID)


def stage(step: Step) -> tuple[int, dict]:
    """The day's conversions not yet sent: every event of the UTC day loaded so far on the first run, later
    only events loaded since (top-ups), plus any file whose upload never succeeded.

    Staged as a selection (`rows.json`: the batch and the watermark), not as a copy: the spec check and
    the write pass read the rows where they lie. A sorted Parquet copy of a 10 M-row day cost more than
    the check and the write together (README "Benchmarks"); the check's fingerprint of the rows proves
    the write pass read the same ones."""
    key, settings, warehouse = step.partition_key, step.settings, step.warehouse
    columns, headers = settings.file_columns(), settings.file_headers()
    batch = topups.plan_batch(step.ledger, key)
    up_to = topups.watermark(clock.now(), settings.load_settle_seconds)
    with warehouse.connect() as con:
        rows, in_day, not_loaded, ipv6_rows, late, highest, other_days = con.execute(
            counts_sql(key, batch, up_to, settings.include_ipv6)).fetchall()[0]
    new_through = topups.key_text(highest["loaded_at"], highest["event_id"]) if highest else None
    plan = {**batch.to_json(), "watermark": up_to, "new_through": new_through, "columns": list(columns),
            "headers": list(headers), "include_ipv6": settings.include_ipv6}
    warehouse.staged_table(VENDOR, DELIVERABLE, key).unlink(missing_ok=True)  # a copy an older version staged
    target = write_atomic(warehouse.staged_plan(VENDOR, DELIVERABLE, key), json.dumps(plan))
    v6 = "included" if settings.include_ipv6 else "filtered"
    step.log.info(f"{key}: {rows:,} conversions selected ({len(batch.pending)} earlier file(s) to re-send, "
                  f"{batch.delivered_files} delivered before); IPv6 rows {v6}: {ipv6_rows:,}; "
                  f"{not_loaded:,} not loaded by {up_to}")
    return rows, {
        "events_in_day": dg.MetadataValue.int(in_day),
        "filtered_ipv6": dg.MetadataValue.int(0 if settings.include_ipv6 else ipv6_rows),
        "ipv6_included": dg.MetadataValue.int(ipv6_rows if settings.include_ipv6 else 0),
        "late_arrivals_included": dg.MetadataValue.int(late),
        "not_loaded_by_watermark": dg.MetadataValue.int(not_loaded),
        "watermark": dg.MetadataValue.text(up_to),
        "sent_through_key": dg.MetadataValue.text(batch.sent_through or "(nothing sent yet)"),
        "files_delivered_before": dg.MetadataValue.int(batch.delivered_files),
        "files_to_resend": dg.MetadataValue.int(len(batch.pending)),
        "loaded_today_for_earlier_days": dg.MetadataValue.int(other_days),
        "mode": dg.MetadataValue.text("onboarding (with passthru)" if settings.onboarding else "production"),
        "header": dg.MetadataValue.text(",".join(headers)),
        "selection": dg.MetadataValue.path(str(target)),
        "rows_sql": dg.MetadataValue.md(f"```sql\n{rows_sql(key, plan)}\n```"),
    }


def read_plan(step: Step) -> dict:
    path = step.warehouse.staged_plan(VENDOR, DELIVERABLE, step.partition_key)
    if not path.exists():
        raise step.fail(f"no rows are staged ({path} does not exist): materialize ispot/conversions first")
    return json.loads(path.read_text())


def rows_sql(partition_key: str, plan: dict) -> str:
    """The rows a plan selects, in the file's columns as the header profile names them, each with its key:
    what the spec check validates and the write pass sorts into lines."""
    columns, headers = tuple(plan["columns"]), tuple(plan["headers"])
    ipv6 = "" if plan["include_ipv6"] else " AND NOT contains(client_ip, ':')"
    return (f"SELECT {topups.file_select(columns, headers)}, loaded_at AS {LOADED_AT}, event_id AS {EVENT_ID} "
            f"FROM ({topups.day_events_sql(partition_key, plan['watermark'])}) "
            f"WHERE {topups.in_batch_sql(topups.Batch.from_json(plan))}{ipv6}")


def fingerprint_sql(headers) -> str:
    """A 64-bit hash of a row's file values and key; XORed over rows it names a set of rows, in any order."""
    return f"hash({', '.join(quote_ident(h) for h in headers)}, {LOADED_AT}, {EVENT_ID})"


def checked_rows(step: Step) -> str:
    return rows_sql(step.partition_key, read_plan(step))


def spec_measures(step: Step) -> dict[str, str]:
    """Taken in the spec check's pass: the fingerprint of the rows checked, and the count, bytes and longest
    line of the new ones (above everything recorded) that the balanced split needs; the receipt's event span
    under whatever name the header profile gives `datetime`."""
    plan = read_plan(step)
    headers = plan["headers"]
    size, fp = csv_line_bytes_sql(headers, quoting="all"), fingerprint_sql(headers)
    new = topups.after_sql(plan["sent_through"], *KEY)
    event = quote_ident(headers[plan["columns"].index("datetime")])
    return {"first_event": f"min({event})", "last_event": f"max({event})",
            "fingerprint": f"coalesce(bit_xor({fp}), 0)",
            "new_rows": f"count(*) FILTER (WHERE {new})",
            "new_bytes": f"coalesce(sum({size}) FILTER (WHERE {new}), 0)",
            "new_longest": f"coalesce(max({size}) FILTER (WHERE {new}), 0)",
            "new_fingerprint": f"coalesce(bit_xor({fp}) FILTER (WHERE {new}), 0)"}


def conversions_schema(step: Step):
    """The pandera model `Conversions` with the partition day, the site-id allow-list, the header profile and
    the optional columns."""
    s = step.settings
    return spec.conversions_schema(step.partition_key, s.site_ids, onboarding=s.onboarding, profile=s.header_profile,
                                   optional=tuple(s.optional_columns), include_ipv6=s.include_ipv6)


def file_name(partition_key: str, number: int, ext: str = "csv") -> str:
    """`conversions_YYYYMMDD_NNN.csv`: unique per day, the same for a partition on every run."""
    return f"conversions_{partition_key.replace('-', '')}_{number:03d}.{ext}"


def hold_message(partition_key: str, rows: int, size: int, min_bytes: int, *, held: bool) -> str:
    """What iSpot would answer to a file under the minimum, and what the operator can do."""
    last = dt.date.fromisoformat(partition_key) + dt.timedelta(days=spec.REPROCESSING_DAYS)
    what = ("Nothing of it is uploaded: the rows stay eligible and go out in a later top-up of this day"
            if held else "Written anyway because the target is not iSpot's API")
    return (f"{partition_key}: {rows:,} rows make {size:,} bytes, under iSpot's minimum of "
            f"{min_bytes:,} bytes. iSpot would answer 400 'The file is too small. The minimum file size "
            f"allowed is 8 MB.' and drop it. {what}. What you can do: wait for late events to bring the day "
            f"over the minimum (the top-up sensor sends it while the day is inside iSpot's 12-day window, "
            f"until {last}), or agree a lower minimum with iSpot Customer Success, set "
            f"ISPOT_MIN_UPLOAD_BYTES and re-run the partition.")


READ_ROWS = 65_536  # lines per Arrow batch read (~14 MB); up to two wait for each writing thread


def write_files(step: Step, staged: Path) -> Files:
    """The CSV parts: the fewest balanced parts under the size limit; new rows under the minimum held when it is
    enforced; files recorded earlier whose upload never succeeded rewritten with their recorded range and name.
    The rows are read from the warehouse in key order and must be the ones the spec check passed (`Seen`)."""
    key, settings, warehouse = step.partition_key, step.settings, step.warehouse
    if settings.split_bytes >= spec.MAX_UPLOAD_BYTES:
        raise dg.Failure(f"ispot_settings.split_bytes={settings.split_bytes:,} must stay below iSpot's "
                         f"{spec.MAX_UPLOAD_BYTES:,}-byte limit", allow_retries=False)
    info, checked = read_plan(step), step.checked  # passed: the factory builds files only from checked rows
    measured = checked["measures"]
    headers = tuple(info["headers"])
    header = csv_header(headers).encode("ascii")
    enforce = enforces_minimum(settings, step.context.resources.ispot_api)
    folder = reset_folder(step.files_dir)
    batch = topups.Batch.from_json(info)
    source = f"({rows_sql(key, info)})"
    line, fp, in_order = csv_line_sql(headers, quoting="all"), fingerprint_sql(headers), ", ".join(KEY)
    files, contents = [], []
    earlier, new_rows = Seen(), Seen()  # what the write pass read, against what the check saw

    written: dict[str, dict] = {}  # what the write pass saw of each part's lines (the files check reads it)

    def part(name: str) -> CheckedPart:
        csv_name = name[: -len(".zip")] + ".csv" if name.endswith(".zip") else name  # zipped below
        return CheckedPart(folder, csv_name, header)

    def close(writer: CheckedPart, after: str | None, through: str) -> None:
        done = writer.finish()
        written[done.name] = writer.seen()
        files.append(OutgoingFile.of_part(done, done.name))
        contents.append({"after_key": after, "through_key": through, "rows": done.rows})

    def sorted_lines(where: str):  # the line is rendered before the sort: cheaper than sorting the values
        return con.sql(f"SELECT {line}, {in_order}, {fp} FROM {source} WHERE {where} "
                       f"ORDER BY {in_order}").to_arrow_reader(READ_ROWS)

    held = None
    # DuckDB's sort holds about 300 MB beyond its limit, and the batches queued for the writer and the hasher
    # are this step's own: the session takes 60% of the limit. 10 M rows, three interleaved pairs: peak 814 ->
    # 721-739 MB for 17.2 -> 17.4 s (median); 30 M rows: 773 MB. A day's peak stays near a small day's.
    with warehouse.connect(memory_share=0.6) as con:
        # files recorded earlier whose upload never succeeded: exactly their recorded range, their name
        for p in batch.pending:
            writer = part(p.file_name)
            for rows in sorted_lines(topups.range_sql(p.after_key, p.through_key, *KEY)):
                writer.write(rows.column(0))
                earlier.add(rows.column(3))
            close(writer, p.after_key, p.through_key)
        new = topups.after_sql(batch.sent_through, *KEY)
        lines, new_bytes, longest = measured["new_rows"], measured["new_bytes"], measured["new_longest"]
        if lines and enforce and len(header) + new_bytes < settings.min_bytes:
            held = {"rows": lines, "bytes": len(header) + new_bytes}
            step.log.warning(hold_message(key, lines, held["bytes"], settings.min_bytes, held=True))
            new_rows = None  # not read: nothing of them is written
        elif lines:
            # one pass in key order, cutting where the balanced split says (no per-line array kept)
            split = BalancedSplit(lines, new_bytes, longest, header_bytes=len(header), max_bytes=settings.split_bytes)
            step.log.info(f"{key}: {lines:,} new rows, {len(header) + new_bytes:,} bytes: {split.parts} file(s)")
            number, after, last = 0, batch.sent_through, None
            writer = part(file_name(key, batch.next_sequence))
            for rows in sorted_lines(new):
                text, loaded_at, event_id = rows.column(0), rows.column(1), rows.column(2)
                new_rows.add(rows.column(3))
                start = 0
                for cut in split.cuts(line_lengths(text)):
                    writer.write(text.slice(start, cut - start))
                    through = topups.key_text(loaded_at[cut - 1].as_py(), event_id[cut - 1].as_py()) if cut else last
                    close(writer, after, through)
                    number, after, start = number + 1, through, cut
                    writer = part(file_name(key, batch.next_sequence + number))
                writer.write(text.slice(start))
                if len(text):
                    last = topups.key_text(loaded_at[-1].as_py(), event_id[-1].as_py())
            close(writer, after, info["new_through"])  # up to the highest key loaded (filtered rows too)
    changed = [what for what, seen, rows, fingerprint in (
        ("files re-sent", earlier, checked["rows"] - measured["new_rows"],
         measured["fingerprint"] ^ measured["new_fingerprint"]),
        ("new rows", new_rows, measured["new_rows"], measured["new_fingerprint"]))
        if seen is not None and (seen.rows, seen.fingerprint) != (rows, fingerprint)]
    if changed:
        reset_folder(step.files_dir)  # nothing of what was read goes any further
        read = earlier.rows + (new_rows.rows if new_rows else measured["new_rows"])
        read = "as many with other values" if read == checked["rows"] else f"{read:,}"
        raise step.fail(
            f"the warehouse rows changed between the spec check and the write pass ({' and '.join(changed)}: "
            f"the check saw {checked['rows']:,} rows, the write pass read {read}). Nothing was written. Rows loaded at or before the watermark {info['watermark']} "
            "were added, changed or removed after the check: re-run the partition, so the check runs on the rows as "
            "they are now. If it recurs, the loader stamps loaded_at before its commit: set ispot_settings."
            "load_settle_seconds to cover the lag (vendors/ispot/topups.py)")
    if settings.zip:
        files = _zip_parts(files, settings.zip_level)
    for f, c in zip(files, contents):
        c["file_name"] = f.name
    if not files and not held:
        step.log.info(f"{key}: nothing to send ({batch.delivered_files} file(s) delivered before)")
    step.log.info(f"{key}: {len(files)} file(s), {sum(f.bytes for f in files):,} bytes")
    manifest = {"columns": list(headers), "contents": contents, "written": written, "held": held,
                "enforce_min_bytes": enforce, "min_bytes": settings.min_bytes, "delivered_before": batch.delivered_files,
                "recorded_before": bool(batch.sent_through)}
    return Files(files, manifest=manifest, metadata={
        "folder": dg.MetadataValue.path(str(folder)),
        "held_rows": dg.MetadataValue.int(held["rows"] if held else 0),
        "files_resent": dg.MetadataValue.int(len(batch.pending)),
        "smallest_to_largest": dg.MetadataValue.float(
            round(min(f.bytes for f in files) / max(f.bytes for f in files), 4) if files else 1.0)})


ZIP_MEMBER_TIME = 946684800  # 2000-01-01T00:00:00Z


def _zip_parts(files: list[OutgoingFile], level: int) -> list[OutgoingFile]:
    """One zip per part, compressed on every core (zlib releases the GIL)."""
    def one(f: OutgoingFile) -> OutgoingFile:
        target = Path(f.path).with_suffix(".zip")
        # a fixed member time: a re-sent file has the same bytes, so the ledger can tell it is ours (R4)
        os.utime(f.path, (ZIP_MEMBER_TIME, ZIP_MEMBER_TIME))
        zip_file(Path(f.path), target, arcname=f.name, level=level)
        Path(f.path).unlink()
        return OutgoingFile(target, target.name, rows=f.rows, md5=file_md5(target), bytes=target.stat().st_size)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, files))


class Seen:
    """The rows the write pass read: their count and the XOR of their fingerprints (`fingerprint_sql`)."""

    def __init__(self):
        self.rows, self.fingerprint = 0, 0

    def add(self, hashes: pa.Array) -> None:
        self.rows += len(hashes)
        if len(hashes):
            self.fingerprint ^= int(np.bitwise_xor.reduce(hashes.to_numpy()))


class CheckedPart:
    """One CSV part being written, with the check that used to re-read the finished files folded into
    the write pass: every line written is counted, and each must hold exactly one line end, at its end
    (a value with a line break would make iSpot's reader see two records). The quoting is the line
    SQL's own (`csv_line_sql(quoting="all")`), which a property test shows matches
    `all_quoted_line_pattern` for any value without a line break."""

    def __init__(self, folder: Path, name: str, header: bytes):
        self.writer = PartWriter(folder, lambda n: name, header=header, single_part=True)
        self.lines, self.misbroken, self.sample = 0, 0, None

    def write(self, lines: pa.Array) -> None:
        self.writer.write_array(lines)
        bad, sample = misbroken_lines(lines)
        self.lines += len(lines)
        self.misbroken += bad
        self.sample = self.sample or sample

    def finish(self) -> Part:
        return self.writer.finish()[0]

    def seen(self) -> dict:
        return {"lines": self.lines, "misbroken": self.misbroken, "sample": (self.sample or "")[:200]}


def file_problems(files: list, info: dict, staged_rows: int) -> tuple[list[str], int]:
    """What is wrong with the files on disk and as the write pass saw them; and the rows they hold."""
    import zipfile

    columns = tuple(info["columns"])
    header = csv_header(columns).encode("ascii")
    written = info.get("written") or {}
    problems: list[str] = []
    rows = 0
    for f in files:
        size = f.path.stat().st_size
        if size != f.bytes:
            problems.append(f"{f.name}: {size:,} bytes on disk, {f.bytes:,} written: changed since it was written")
        if size >= spec.MAX_UPLOAD_BYTES:
            problems.append(f"{f.name}: {size:,} bytes, not under iSpot's 200 MB limit")
        if f.name.endswith(".zip"):
            with zipfile.ZipFile(f.path) as zf:
                member = zf.namelist()[0]
                damaged = zf.testzip()  # every member's CRC against the bytes that were zipped
                with zf.open(member) as handle:
                    first = handle.readline()
            if damaged:
                problems.append(f"{f.name}: {damaged} does not match its CRC")
        else:
            member = f.name
            with open(f.path, "rb") as handle:
                first = handle.readline()
        if first.startswith(b"\xef\xbb\xbf"):
            problems.append(f"{f.name}: starts with a UTF-8 BOM (it would break the case-sensitive 'ip' header)")
        elif first != header:
            problems.append(f"{f.name}: header is {first[:120]!r}, expected {','.join(columns)!r}")
        seen = written.get(member)
        if seen is None:
            problems.append(f"{f.name}: no record of its lines from the write pass (written by an older version?): "
                            "re-materialize the files")
            continue
        if seen["misbroken"]:
            problems.append(f"{f.name}: {seen['misbroken']:,} data lines do not hold exactly one line end, at their "
                            f"end (a value with a line break), e.g. {seen['sample']!r}")
        if seen["lines"] != f.rows:
            problems.append(f"{f.name}: {seen['lines']:,} data lines written, manifest says {f.rows:,}")
        rows += seen["lines"]
    held = (info.get("held") or {}).get("rows", 0)
    if rows != staged_rows - held:
        problems.append(f"the files hold {rows:,} rows, the checked data {staged_rows:,}"
                        + (f" of which {held:,} are held" if held else ""))
    return problems, rows


def check_files(step: Step, files: list, info: dict) -> dg.AssetCheckResult:
    """Every file as the write pass saw it and as it lies on disk: exact unquoted ASCII header and no BOM, every
    data line one record of double-quoted values, the size written and under 200 MB, rows adding up to the checked
    rows (MD5s are verified on read-back at delivery)."""
    checked = step.checked
    if checked is None:
        raise step.fail("no record of the spec check of the rows these files were written from: re-materialize "
                        "ispot/conversions with its checks, then the files")
    problems, rows = file_problems(files, info, checked["rows"])
    return dg.AssetCheckResult(
        passed=not problems, description=with_next_step("; ".join(problems), FILES_NEXT) if problems
        else f"{len(files)} file(s) match the CSV spec",
        metadata={"files_checked": len(files), "rows_checked_in_write_pass": rows, "problems": dg.MetadataValue.md(
            "\n".join(f"- {p}" for p in problems) or "none")})


def minimum_size_check(files_asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=files_asset, name="minimum_size", blocking=True, partitions_def=daily, pool=VENDOR,
                    description="iSpot refuses files under the minimum (400 'too small'; docs/ispot.md, 'Size "
                                "policy'): when uploading to the API, a day or top-up under ISPOT_MIN_UPLOAD_BYTES "
                                "(default 8 MB) is held and this check fails before the upload, saying what to do; "
                                "the rows stay eligible for a later top-up. To the local outbox the files are "
                                "written and the check only warns.")
    def conversion_files_minimum_size(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                                      ispot_settings: ISpotSettings) -> dg.AssetCheckResult:
        key = context.partition_key
        files, info = read_manifest(warehouse.files_dir(VENDOR, DELIVERABLE, key))
        minimum = info.get("min_bytes", ispot_settings.min_bytes)
        enforced = info.get("enforce_min_bytes", False)
        held = info.get("held")
        small = [f for f in files if (f.bytes or 0) < minimum]
        metadata = {"smallest_file_bytes": min((f.bytes or 0 for f in files), default=0), "min_bytes": minimum,
                    "held_rows": held["rows"] if held else 0, "enforced": enforced}
        if small and enforced:  # a file that slipped through (e.g. smaller once zipped): never upload it
            return dg.AssetCheckResult(passed=False, metadata=metadata, description="; ".join(
                f"{f.name}: " + hold_message(key, f.rows or 0, f.bytes or 0, minimum, held=True) for f in small))
        if held:
            # blocking when nothing else would be uploaded; a warning when earlier files are re-sent anyway
            severity = dg.AssetCheckSeverity.WARN if files else dg.AssetCheckSeverity.ERROR
            return dg.AssetCheckResult(passed=False, severity=severity, metadata=metadata,
                                       description=hold_message(key, held["rows"], held["bytes"], minimum,
                                                                held=True))
        if small:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                                       description="; ".join(f"{f.name}: " + hold_message(
                                           key, f.rows or 0, f.bytes or 0, minimum, held=False) for f in small))
        text = f"every file is at least {minimum:,} bytes" if files else "no file"
        return dg.AssetCheckResult(passed=True, metadata=metadata, description=text)
    return conversion_files_minimum_size


def deliver(step: Step, files: list, info: dict, redeliver: bool) -> tuple:
    """Uploads through iSpot's API when ISPOT_CLIENT_ID is set, otherwise to `ispot_destination`, adding to what
    the day already holds (top-ups); refuses data older than 12 days (paid reprocessing) unless allowed."""
    key, context = step.partition_key, step.context
    ispot_api, ispot_destination, ispot_settings = context.resources.ispot_api, step.destination, step.settings
    window, why = spec.processing_window(key, clock.now())
    if window == "paid_reprocessing" and not ispot_settings.allow_reprocessing and files:
        raise dg.Failure(f"ispot {key}: {why}. Set ispot_settings.allow_reprocessing to upload anyway.",
                         allow_retries=False)
    if window == "not_ready":
        raise dg.Failure(f"ispot {key}: {why}; iSpot wants complete days only", allow_retries=False)
    (context.log.info if window == "standard" else context.log.warning)(f"ispot {key}: {why}")
    book = step.ledger
    if not files:
        target = "iSpot API" if ispot_api.configured else ispot_destination.describe()
        return _nothing_to_send(context, book, key, info, target, f"{window}: {why}")
    # which rows each file carries, recorded before its first upload (topups.py: why nothing repeats)
    for entry in info["contents"]:
        book.record_contents(VENDOR, DELIVERABLE, FileContents(key, entry["file_name"], entry["after_key"],
                                                               entry["through_key"], entry["rows"]))
    destination = ISpotUploader(ispot_api.client()) if ispot_api.configured else ispot_destination.get()
    try:
        outcome = deliver_files(vendor=VENDOR, deliverable=DELIVERABLE, partition_key=key, files=files,
                                destination=destination, ledger=book, run_id=context.run_id,
                                redeliver=redeliver, logger=context.log, append=True, described=CONVERSIONS)
    except ISpotRejected as exc:  # a 400 cannot succeed on retry
        raise dg.Failure(str(exc), allow_retries=False) from None
    except AlreadyExists as exc:  # a 409 for a name no attempt of ours sent: someone else uses our names
        raise dg.Failure(f"{exc}. No delivery of ours used this name: check who else uploads "
                         "conversions_YYYYMMDD_NNN files to this iSpot account before re-running.",
                         allow_retries=False) from None
    finally:
        destination.close()
    book.clear_empty(VENDOR, DELIVERABLE, key)  # a day recorded empty that got late events
    return outcome, {
        "target": dg.MetadataValue.text("iSpot API" if ispot_api.configured else ispot_destination.describe()),
        "processing_window": dg.MetadataValue.text(f"{window}: {why}"),
        "top_up": dg.MetadataValue.bool(bool(info.get("recorded_before"))),
    }


def _nothing_to_send(context, book, key: str, info: dict, target: str, window: str) -> tuple:
    """No file this run: a day with no events is delivered-empty; a delivered day has nothing new."""
    if not info.get("recorded_before") and not book.delivered(VENDOR, DELIVERABLE, key):
        book.record_empty(VENDOR, DELIVERABLE, key, reason="nothing to send: no conversions in the day",
                          run_id=context.run_id)
        action = "delivered-empty: nothing to send, no conversions in the day (rows 0)"
    else:
        book.mark_partition(VENDOR, DELIVERABLE, key, "complete", files=info.get("delivered_before", 0),
                            run_id=context.run_id)
        action = "nothing new to send: every event of the day loaded so far was delivered"
    context.log.info(f"ispot {key}: {action}")
    return None, {"delivery_action": action, "file_count": 0, "bytes": 0, "rows": 0, "dagster/row_count": 0,
                  "target": target, "processing_window": window}


def api_answer(partition_key: str, destination: str, files: list[dict]) -> dict:
    """iSpot's answer to an upload: 201 for every file (any other answer fails the upload)."""
    if destination == "ispot-api":
        return {"kind": "ispot_api", "status": 201,
                "meaning": "201 Uploaded for every file (the upload fails on any other answer)"}
    return {"kind": "none", "meaning": f"published to a {destination} destination, not the iSpot API"}


CONVERSIONS = Deliverable(
    vendor=VENDOR, name=DELIVERABLE, source="ispot_conversion_events", models=(spec.Conversions,),
    staged="conversions", deadline=spec.CUTOFF_UTC, event_column="datetime", answer=api_answer,
    schedule=Schedule(spec.SCHEDULE_HOUR_UTC, description=(
        f"Daily at {spec.SCHEDULE_HOUR_UTC:02d}:00 UTC (04:00 PST / 05:00 PDT) for the previous UTC day, two hours "
        "before iSpot's 14:00 UTC cutoff (7:00 AM PDT / 6:00 AM PST).")),
    probe_why="skipped: every upload to iSpot's API is a conversions file (no name is ignored, nothing can be "
              "deleted), so the token probe checks the credentials instead.")


CHAIN = Chain(
    deliverable=CONVERSIONS, rows_asset="conversions", files_asset="conversion_files", stage=stage,
    schema=conversions_schema, rows_relation=checked_rows, spec_measures=spec_measures, write=write_files,
    check_files=check_files,
    files_checks=(minimum_size_check,), deliver=deliver, extra_resources=frozenset({"ispot_api"}),
    files_kinds=frozenset({"csv"}), delivery_kinds=frozenset({"api"}),
    descriptions={
        "rows": f"The day's web and app conversions not yet sent, in iSpot's columns ({DOC}; the vendor's 'Available "
                "Dimensions', 'Matching Methodology'): on the first run every event of the UTC day loaded so far; "
                "later runs only events loaded since (top-ups), plus any file whose upload never succeeded. IPv6 "
                "rows are filtered unless ISPOT_INCLUDE_IPV6 (counted either way).",
        "spec": "Every row meets the pandera model `Conversions` (vendors/ispot/spec.py) with the partition day, the "
                "site-id allow-list, the header profile and the optional columns; nothing is written or uploaded "
                "otherwise.",
        "files": f"The CSV files iSpot receives ({DOC}; the vendor's 'CSV File Format'): UTF-8 without BOM, header "
                 "row unquoted, every data value double-quoted, \\n line endings, the header repeated in every part, "
                 "split into the fewest balanced parts under the size limit, named conversions_YYYYMMDD_NNN.csv "
                 "(top-ups continue the numbering). New rows under the minimum size are held when it is enforced.",
        "files_check": "Every file as the write pass saw it and as it lies on disk: exact unquoted ASCII header and "
                       "no BOM, every data line one record of double-quoted values (checked as it was written), the "
                       "size written and under 200 MB, rows adding up to the checked rows (MD5s are verified on "
                       "read-back at delivery).",
        "delivery": f"Uploads the files through iSpot's API ({DOC}; the vendor's 'Making an API call', status table) "
                    "when ISPOT_CLIENT_ID is set, otherwise publishes them to the `ispot_destination` (the local "
                    "outbox by default). The ledger makes re-runs send nothing twice. Refuses data older than 12 "
                    "days (paid reprocessing) unless allowed."})
