"""Lotame Spherical: the day's segment memberships -> spec + consistency checks ->
`YYYYMMDD/segmentmembership.json.gz`, `.md5`, `YYYYMMDD.done` -> S3, GCS or SFTP.

Read beside `lotame-spherical-inbound-batch.txt` and DIGEST section 1 (file format pages).
"""

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import List

import dagster as dg

from ... import chain
from ...core.files import file_md5
from ...core.sql import sql_literal
from ...delivery import OutgoingFile, deliver_partition
from ...factory import Chain, Files, Step
from ...formats.parts import PartWriter, write_lines
from ...manifest import reset_folder
from ...partitions import daily
from ...registry import Deliverable, Schedule
from ...resources import LedgerResource
from ...validation.report import FILES_REMEDY as FILES_NEXT, with_next_step
from ...validation.sql_checks import IPV4_RE
from ...warehouse import buckets
from ...warehouse.resource import WarehouseResource, copy_to_parquet
from . import spec, state

VENDOR, DELIVERABLE = "lotame", "segmentmembership"
DOC = "docs/lotame.md"  # what descriptions cite: in the repo, with the vendor document's sections
SEGMENT_TYPE = "STRUCT(name VARCHAR, \"timestamp\" BIGINT)[]"
IPS_TYPE = "STRUCT(ip VARCHAR, timestamps VARCHAR[])[]"


class LotameSettings(dg.ConfigurableResource):
    """What the Lotame TAM agreed (resource `lotame_settings`; env `LOTAME_MODE`, `LOTAME_ID_TYPES`)."""

    mode: str = "comprehensive"  # or "delta" (Overview: "Comprehensive or Delta")
    full_refresh_days: int = spec.FULL_REFRESH_DAYS
    id_types: List[str] = list(spec.DEFAULT_ID_TYPES)
    segments_as_strings: bool = False  # DIGEST 1.6 #1: objects by default, strings if the TAM asks
    include_ips: bool = True
    include_country: bool = True
    gzip_level: int = 6
    split_bytes: int = spec.MAX_GZIP_BYTES  # gzipped bytes per data file before it is split (1.2)
    chain_wait_seconds: float = 3 * 3600  # how long a day waits for an earlier day's run to deliver


def settings_from_env(environ: dict | None = None) -> LotameSettings:
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    if environ.get("LOTAME_MODE"):
        kwargs["mode"] = environ["LOTAME_MODE"].lower()
    if environ.get("LOTAME_ID_TYPES"):
        kwargs["id_types"] = [t.strip().upper() for t in environ["LOTAME_ID_TYPES"].split(",") if t.strip()]
    if environ.get("LOTAME_FULL_REFRESH_DAYS"):
        kwargs["full_refresh_days"] = int(environ["LOTAME_FULL_REFRESH_DAYS"])
    return LotameSettings(**kwargs)


def _users_sql() -> str:
    return """SELECT userid, upper(trim(idtype)) AS idtype, consent, nullif(trim(tcfconsent), '') AS tcfconsent,
                     nullif(upper(trim(country)), '') AS country, last_ip, last_ip_seen_at FROM lotame_users"""


def _eligible_sql(id_types: list[str]) -> str:
    """Users Lotame may receive: a supported ID type and consent (or a TCF string)."""
    types = ", ".join(sql_literal(t) for t in id_types)
    return (f"SELECT * FROM ({_users_sql()}) WHERE idtype IN ({types}) "
            "AND (consent IS TRUE OR tcfconsent IS NOT NULL)")


def full_state_sql(partition_key: str, id_types: list[str]) -> str:
    """Every live (user, segment) on the day for users Lotame may receive: the truth Lotame must hold."""
    day = sql_literal(partition_key)
    return f"""
        SELECT m.userid, u.idtype, m.segment, epoch(m.last_seen_at)::BIGINT AS "timestamp"
        FROM lotame_segment_memberships m JOIN ({_eligible_sql(id_types)}) u USING (userid)
        WHERE m.valid_from <= {day}::DATE AND (m.valid_to IS NULL OR {day}::DATE < m.valid_to)
        ORDER BY m.userid, m.segment"""


def exclusions_sql(partition_key: str, id_types: list[str]) -> str:
    day = sql_literal(partition_key)
    types = ", ".join(sql_literal(t) for t in id_types)
    return f"""
        WITH live AS (SELECT DISTINCT userid FROM lotame_segment_memberships
                      WHERE valid_from <= {day}::DATE AND (valid_to IS NULL OR {day}::DATE < valid_to))
        SELECT count(*) FILTER (WHERE u.idtype NOT IN ({types})) AS unsupported_idtype,
               count(*) FILTER (WHERE u.idtype IN ({types}) AND u.consent IS NOT TRUE AND u.tcfconsent IS NULL) AS no_consent,
               count(*) FILTER (WHERE u.idtype IN ({types}) AND (u.consent IS TRUE OR u.tcfconsent IS NOT NULL)
                                AND u.last_ip IS NOT NULL AND NOT regexp_full_match(u.last_ip, {sql_literal(IPV4_RE)})) AS ipv6_dropped
        FROM live JOIN ({_users_sql()}) u USING (userid)"""


def _user_columns(settings: LotameSettings) -> str:
    ips = (f"CASE WHEN regexp_full_match(u.last_ip, {sql_literal(IPV4_RE)}) THEN "
           f"[{{'ip': u.last_ip, 'timestamps': [epoch(u.last_ip_seen_at)::BIGINT::VARCHAR]}}] END::{IPS_TYPE}"
           if settings.include_ips else f"NULL::{IPS_TYPE}")
    country = "u.country" if settings.include_country else "NULL::VARCHAR"
    return (f"{ips} AS ips, {country} AS country, CASE WHEN u.consent IS TRUE THEN TRUE END AS consent, "
            "CASE WHEN u.consent IS NOT TRUE THEN u.tcfconsent END AS tcfconsent")


def _segments_of(table: str) -> str:
    item = "{'name': segment, 'timestamp': \"timestamp\"}"
    return (f"SELECT userid, list({item} ORDER BY segment)::{SEGMENT_TYPE} AS segments "
            f"FROM {table} GROUP BY userid")


def comprehensive_records_sql(state_path: Path, held_sql: str, settings: LotameSettings, *,
                              users_sql: str | None = None, where: str = "TRUE") -> str:
    """Every live user with all its segments, and every ID Lotame holds that left all its
    segments (`segments: []`, R11). Segments Lotame holds that are gone are also named in `remove`,
    so the file means the same whether Lotame replaces the ID's segments (the document's
    comprehensive reading) or adds and removes (its delta reading): see docs/lotame.md "Clearing".
    `where` keeps one bucket of userids; `users_sql` gives the eligible users (default: the warehouse's)."""
    return f"""
        WITH s AS (SELECT * FROM read_parquet({sql_literal(str(state_path))}) WHERE {where}),
        held AS (SELECT * FROM ({held_sql}) WHERE {where}),
        agg AS ({_segments_of('s')}),
        gone AS (SELECT h.userid, list(h.segment ORDER BY h.segment) AS remove FROM held h
                 ANTI JOIN s ON h.userid = s.userid AND h.segment = s.segment GROUP BY h.userid)
        SELECT userid, u.idtype, coalesce(a.segments, []::{SEGMENT_TYPE}) AS segments, g.remove,
               {_user_columns(settings)}
        FROM agg a FULL JOIN gone g USING (userid)
        JOIN ({_users(users_sql, settings, where)}) u USING (userid)
        ORDER BY userid"""


def delta_records_sql(state_path: Path, held_sql: str, settings: LotameSettings, *,
                      users_sql: str | None = None, where: str = "TRUE") -> str:
    """Adds in `segments`, removals in `remove` (DIGEST 1.6 #2), against what Lotame holds (R12)."""
    return f"""
        WITH cur AS (SELECT * FROM read_parquet({sql_literal(str(state_path))}) WHERE {where}),
        held AS (SELECT * FROM ({held_sql}) WHERE {where}),
        adds AS (SELECT c.* FROM cur c ANTI JOIN held p ON c.userid = p.userid AND c.segment = p.segment),
        rems AS (SELECT p.* FROM held p ANTI JOIN cur c ON c.userid = p.userid AND c.segment = p.segment),
        a AS ({_segments_of('adds')}),
        r AS (SELECT userid, list(segment ORDER BY segment) AS remove FROM rems GROUP BY userid)
        SELECT userid, u.idtype, coalesce(a.segments, []::{SEGMENT_TYPE}) AS segments, r.remove,
               {_user_columns(settings)}
        FROM a FULL JOIN r USING (userid) JOIN ({_users(users_sql, settings, where)}) u USING (userid)
        ORDER BY userid"""


def _users(users_sql: str | None, settings: LotameSettings, where: str) -> str:
    return f"SELECT * FROM ({users_sql or _eligible_sql(settings.id_types)}) WHERE {where}"


def _paths(warehouse: WarehouseResource, key: str) -> dict[str, Path]:
    folder = warehouse.stage_dir(VENDOR, DELIVERABLE, key)
    return {"records": folder / "rows.parquet", "state": folder / "state.parquet",
            "plan": folder / "plan.json", "held": folder / "held.parquet", "users": folder / "users.parquet"}


def _history(ledger) -> list[state.Delivered]:
    try:
        return state.delivered_history(ledger)
    except state.StateUnknown as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None


def refuse_old_day(history: list[state.Delivered], key: str) -> None:
    """R12: a file for a day older than one Lotame already received would roll its state back."""
    later = [h.partition for h in history if h.partition > key]
    if later:
        raise dg.Failure(
            f"lotame/segmentmembership {key}: refused: Lotame already received the file for {later[-1]}, "
            f"a later day, whose file already carries every change up to it; a file for {key} now would "
            f"roll Lotame back to {key}'s memberships (a stale delta, or a stale comprehensive file). "
            f"Nothing to send: deliver the next day instead.", allow_retries=False)


MAX_REBUILDS = 5


# DuckDB memory allowed per user of a range: a range holds memory_limit / this many users, about
# 125 000 at the default 512 MB. Measured on small limits: 1 KB ran out of memory at 30 MB; 4 KB
# works at 64 MB but not at 48 MB, where DuckDB's own fixed needs per query dominate
BYTES_PER_USER = 4096
JSON_THREAD_BYTES = 64 << 20
MEMBERSHIPS_PER_USER = 3  # about what the warehouse holds a day (the seed: 3.2)


def _build(warehouse: WarehouseResource, key: str, base: state.Delivered | None, mode: str,
           settings: LotameSettings, paths: dict[str, Path]) -> tuple:
    """The day's truth, the records to send against `base` (what Lotame holds), and what Lotame
    will hold after them. The truth and the eligible users are sorted by userid once (DuckDB's sort
    spills); the records and the new holdings are then built one userid range at a time, since
    their ordered lists, full join and set operations hold their input in memory."""
    held_sql = (f"SELECT userid, segment FROM read_parquet({sql_literal(str(base.held))})" if base
                else state.EMPTY_HELD)
    records_sql = comprehensive_records_sql if mode == "comprehensive" else delta_records_sql
    removals = listed = cleared = 0
    with warehouse.connect() as con:
        excluded = con.execute(exclusions_sql(key, settings.id_types)).fetchone()
        state_rows = copy_to_parquet(con, full_state_sql(key, settings.id_types), paths["state"])
        copy_to_parquet(con, f"{_eligible_sql(settings.id_types)} ORDER BY userid", paths["users"])
        users_sql = f"SELECT * FROM read_parquet({sql_literal(str(paths['users']))})"
        ranges = buckets.key_ranges(con, paths["users"], "userid",
                                    buckets.keys_per_bucket(con, BYTES_PER_USER))
        with buckets.parquet_appender(paths["records"]) as records, \
                buckets.parquet_appender(paths["held"]) as held:
            for bounds in ranges:
                where = buckets.in_range("userid", bounds)
                old = f"SELECT * FROM ({held_sql}) WHERE {where}"
                bucket_sql = records_sql(paths["state"], held_sql, settings, users_sql=users_sql, where=where)
                con.execute(f"CREATE OR REPLACE TEMP TABLE bucket_records AS {bucket_sql}")
                con.execute("CREATE OR REPLACE TEMP TABLE bucket_held AS "
                            f"{state.apply_sql(old, 'bucket_records', mode)} ORDER BY userid, segment")
                records.append(con, "SELECT * FROM bucket_records")
                held.append(con, "SELECT * FROM bucket_held")
                bucket_removals, bucket_listed = con.execute(
                    "SELECT coalesce(sum(len(remove)), 0), coalesce(sum(len(segments)), 0) "
                    "FROM bucket_records").fetchone()
                # IDs Lotame held that hold nothing after this file: the users who left every segment (R11)
                bucket_cleared = con.execute(
                    f"SELECT count(DISTINCT userid) FROM ({old}) WHERE userid NOT IN "
                    "(SELECT userid FROM bucket_held)").fetchone()[0]
                removals, listed = removals + bucket_removals, listed + bucket_listed
                cleared += bucket_cleared
        con.execute("DROP TABLE IF EXISTS bucket_records; DROP TABLE IF EXISTS bucket_held")
    paths["users"].unlink(missing_ok=True)
    return excluded, state_rows, records.rows, removals, listed, cleared, len(ranges)


def stage(step: Step) -> tuple[int, dict]:
    """One record per user ID with its segments for the day, computed against what Lotame holds."""
    key, lotame_settings, warehouse = step.partition_key, step.settings, step.warehouse
    if lotame_settings.mode not in ("comprehensive", "delta"):
        raise dg.Failure(f"lotame_settings.mode must be 'comprehensive' or 'delta', not {lotame_settings.mode!r}",
                         allow_retries=False)
    book, paths = step.ledger, _paths(warehouse, key)
    refuse_old_day(_history(book), key)
    for _ in range(MAX_REBUILDS):
        chain.wait_for_earlier(step.context, book, VENDOR, DELIVERABLE, lambda: _last(_history(book)),
                               timeout_s=lotame_settings.chain_wait_seconds)
        history = [h for h in _history(book) if h.partition != key]  # a re-run builds on what came before
        refuse_old_day(history, key)
        base = history[-1] if history else None
        mode, reason = state.plan_mode(history, key, lotame_settings.mode, lotame_settings.full_refresh_days)
        stats = _build(warehouse, key, base, mode, lotame_settings, paths)
        # an earlier day may have entered the chain, or reached Lotame, while this one was built
        now = [h for h in _history(book) if h.partition != key]
        same_base = (now[-1].position if now else None) == (base.position if base else None)
        if same_base and not book.chain_waiting(VENDOR, DELIVERABLE, key, _last(now)):
            break
        step.log.info(f"{key}: an earlier day entered the chain while this file was built; building it again")
    else:
        raise dg.Failure(f"lotame/segmentmembership {key}: earlier days kept entering the chain; "
                         f"re-run {key}", allow_retries=False)
    excluded, state_rows, rows, removals, listed, cleared, ranges = stats
    paths["plan"].write_text(json.dumps({"mode": mode, "reason": reason,
                                         "base": base.partition if base else None,
                                         "base_position": base.position if base else None}))
    step.log.info(f"{key}: {mode} file ({reason}): {rows:,} records")
    return rows, {
        "mode": dg.MetadataValue.text(mode), "mode_reason": dg.MetadataValue.text(reason),
        "live_memberships": dg.MetadataValue.int(state_rows),
        "segments_added_or_listed": dg.MetadataValue.int(int(listed)),
        "segments_removed": dg.MetadataValue.int(int(removals)),
        "ids_cleared": dg.MetadataValue.int(int(cleared)),
        "excluded_unsupported_idtype": dg.MetadataValue.int(excluded[0]),
        "excluded_no_consent": dg.MetadataValue.int(excluded[1]),
        "ipv6_dropped_from_ips": dg.MetadataValue.int(excluded[2]),
        "previous_delivery": dg.MetadataValue.text(base.partition if base else "none"),
        "userid_ranges": dg.MetadataValue.int(ranges),  # built one range at a time (memory)
    }


def _last(history: list[state.Delivered]) -> str | None:
    return history[-1].partition if history else None


def _plan(warehouse: WarehouseResource, key: str) -> dict:
    return json.loads(_paths(warehouse, key)["plan"].read_text())


def membership_schema(step: Step):
    """The pandera model `SegmentMembership` (vendors/lotame/spec.py) for the day's mode."""
    comprehensive = _plan(step.warehouse, step.partition_key)["mode"] == "comprehensive"
    return spec.membership_schema(comprehensive=comprehensive, id_types=step.settings.id_types)


def consistency_check(rows: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=rows, name="consistent_with_deliveries", blocking=True, partitions_def=daily,
                    pool=VENDOR,
                    description="Replays every file set the ledger says Lotame received, in the order it "
                                "received them, then today's file, under the document's semantics (comprehensive "
                                "replaces an ID's segments, delta adds and removes), and proves the result "
                                "equals the warehouse's live memberships for the day.")
    def memberships_consistent(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                               ledger: LedgerResource) -> dg.AssetCheckResult:
        key = context.partition_key
        paths, plan = _paths(warehouse, key), _plan(warehouse, key)
        history = [h for h in _history(ledger.get()) if h.partition != key]
        files = [(h.mode, h.records) for h in history] + [(plan["mode"], paths["records"])]
        with warehouse.connect(attach_warehouse=False) as con:
            # ranges of the day's memberships (sorted by userid), a bucket's worth of users each
            ranges = buckets.key_ranges(con, paths["state"], "userid",
                                        buckets.keys_per_bucket(con, BYTES_PER_USER) * MEMBERSHIPS_PER_USER)
            found = state.replay_and_compare(con, files, paths["state"], ranges)
        return consistency_result(found, len(files), history[0].partition if history else key)
    return memberships_consistent


def consistency_result(found: dict, files: int, first: str) -> dg.AssetCheckResult:
    passed = found["missing"] == 0 and found["extra"] == 0
    return dg.AssetCheckResult(
        passed=passed,
        description=(f"replaying {files} file set(s) gives the day's {found['held']:,} memberships"
                     if passed else
                     f"replaying {files} file set(s) in delivery order misses {found['missing']:,} of the "
                     f"day's memberships (e.g. {found['missing_samples']}) and leaves {found['extra']:,} "
                     f"that are gone at Lotame (e.g. {found['extra_samples']}). Nothing was delivered. Next "
                     f"step: an earlier day's delivery differs from what the ledger recorded; find it (the "
                     f"ledger's history, docs/lotame.md), re-run or drop that day, then re-run this one"),
        metadata={"files_replayed": files, "replayed_from": first, "missing": found["missing"],
                  "extra": found["extra"]})


def segments_json_sql(as_strings: bool) -> str:
    if as_strings:
        return "to_json(list_transform(segments, lambda s: s.name))::VARCHAR"
    # objects, leaving out `timestamp` where unknown rather than writing null
    return ("'[' || array_to_string(list_transform(segments, lambda s: '{\"name\":' || to_json(s.name)::VARCHAR || "
            "coalesce(',\"timestamp\":' || s.\"timestamp\"::VARCHAR, '') || '}'), ',') || ']'")


def record_line_sql(as_strings: bool) -> str:
    """One JSON object per line, optional keys left out when empty (DIGEST 1.2: no line breaks inside)."""
    optional = "".join(f" || coalesce(',\"{k}\":' || to_json({k})::VARCHAR, '')"
                       for k in ("remove", "ips", "country", "consent", "tcfconsent"))
    return ("'{\"userid\":' || to_json(userid)::VARCHAR || ',\"idtype\":' || to_json(idtype)::VARCHAR || "
            f"',\"segments\":' || {segments_json_sql(as_strings)}{optional} || '}}' || chr(10)")


def write_files(step: Step, staged: Path) -> Files:
    """The three files of the day (docs/lotame.md): `YYYYMMDD/segmentmembership.json.gz` (gzip of JSON lines,
    compressed on every core), `YYYYMMDD/segmentmembership.json.gz.md5` (what `md5sum` writes, 1.6 #4) and the
    zero-length `YYYYMMDD/YYYYMMDD.done`, published last."""
    key, lotame_settings = step.partition_key, step.settings
    folder = spec.folder(key)
    local = reset_folder(step.files_dir)
    writer = PartWriter(local, lambda n: f".part{n:03d}.json.gz", gzip_level=lotame_settings.gzip_level,
                        max_bytes=min(lotame_settings.split_bytes, spec.MAX_GZIP_BYTES))
    with step.warehouse.connect(attach_warehouse=False) as con:
        sql = (f"SELECT {record_line_sql(lotame_settings.segments_as_strings)} AS line "
               f"FROM read_parquet({sql_literal(str(staged))})")
        parts = write_lines(con, sql, writer)
    files = []
    for number, part in enumerate(parts, start=1):  # each data file, then its .md5 (1.2)
        name = spec.part_file(number, len(parts))
        data_path = part.path.rename(local / name)
        md5_path = local / f"{name}.md5"
        md5_path.write_text(f"{part.md5}  {name}\n")  # what `md5sum` writes (1.6 #4)
        files += [OutgoingFile.of_part(replace(part, path=data_path), f"{folder}/{name}",
                                       gzip_level=lotame_settings.gzip_level),
                  OutgoingFile(md5_path, f"{folder}/{name}.md5", md5=file_md5(md5_path), bytes=md5_path.stat().st_size,
                               checksum_of=f"{folder}/{name}")]
    done_path = local / spec.done_file(key)
    done_path.write_bytes(b"")
    files.append(OutgoingFile(done_path, f"{folder}/{spec.done_file(key)}", md5=file_md5(done_path), bytes=0))
    return Files(files, manifest={"mode": _plan(step.warehouse, key)["mode"]},
                 metadata={"data_files": dg.MetadataValue.int(len(parts)),
                           "uncompressed_bytes": dg.MetadataValue.int(sum(p.raw_bytes for p in parts))})


def check_files(step: Step, files: list, info: dict) -> dg.AssetCheckResult:
    """Re-reads the bundle: gzip JSON lines, one valid object per line, userid unique, row count and removals
    as staged, the .md5 file holds the data file's real MD5, the .done is empty, under 5 GB."""
    key, warehouse = step.partition_key, step.warehouse
    *pairs, done = files
    data_files = pairs[0::2]
    problems = []
    for data, md5_file in zip(pairs[0::2], pairs[1::2]):
        name = data.name.split("/")[-1]
        real_md5 = file_md5(data.path)
        if md5_file.name != data.name + ".md5" or md5_file.path.read_text() != f"{real_md5}  {name}\n":
            problems.append(f"{md5_file.name} does not hold '{real_md5}  {name}'")
        if data.path.stat().st_size >= spec.MAX_GZIP_BYTES:
            problems.append(f"{data.name} is not under 5 GB gzipped")
    if done.path.stat().st_size or done.name.split("/")[-1] != spec.done_file(key):
        problems.append(f"{done.name} must be the empty {spec.done_file(key)}, published last")
    listed = "[" + ", ".join(sql_literal(str(f.path)) for f in data_files) + "]"
    with warehouse.connect(attach_warehouse=False) as con:
        # DuckDB's gzip JSON reader takes a 32 MB buffer a thread: fewer threads under a small limit
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        fit = buckets.memory_limit_bytes(con) // JSON_THREAD_BYTES
        con.execute(f"SET threads = {max(1, min(int(threads), fit))}")
        try:
            rows, distinct, no_segments, removed = con.execute(
                "SELECT count(*), count(DISTINCT userid), count_if(segments IS NULL), "
                f"coalesce(sum(json_array_length(remove)), 0) FROM read_json("
                f"{listed}, format = 'newline_delimited', compression = 'gzip', "
                "columns = {userid: 'VARCHAR', segments: 'JSON', remove: 'JSON'})").fetchone()
        except Exception as exc:  # a line that is not one JSON object
            rows, distinct, no_segments, removed = -1, -1, -1, -1
            problems.append(f"the data files are not valid gzip JSON lines: {str(exc).splitlines()[0][:200]}")
        staged, staged_removed = con.execute(
            "SELECT count(*), coalesce(sum(len(remove)), 0) FROM read_parquet("
            f"{sql_literal(str(_paths(warehouse, key)['records']))})").fetchone()
    if removed >= 0 and removed != staged_removed:  # removals clear what Lotame holds (R11, R12)
        problems.append(f"the data files name {removed:,} segments in 'remove', the checked records "
                        f"{staged_removed:,}")
    if rows >= 0 and rows != staged:
        problems.append(f"the data files hold {rows:,} lines, the checked records {staged:,}")
    if rows >= 0 and distinct != rows:
        problems.append(f"the data files repeat {rows - distinct:,} userids")
    if no_segments and no_segments > 0:
        problems.append(f"{no_segments:,} lines lack 'segments'")
    real_md5 = data_files[0].md5
    return dg.AssetCheckResult(passed=not problems, description=with_next_step("; ".join(problems), FILES_NEXT)
                               if problems else f"bundle for {spec.folder(key)} matches the spec ({rows:,} records)",
                               metadata={"rows_read_back": rows, "md5": real_md5})


def deliver(step: Step, files: list, info: dict, redeliver: bool) -> tuple:
    """Publishes the bundle in order (data, .md5, then .done), only onto the state it was computed against,
    and only after every earlier day."""
    key, warehouse = step.partition_key, step.warehouse
    paths, plan, book = _paths(warehouse, key), _plan(warehouse, key), step.ledger
    bundle = state.bundle_id([(f.name, f.md5) for f in files])
    # one delivery of the chain at a time: the order and the base are checked, then the files sent
    with chain.delivering(book, VENDOR, DELIVERABLE, step.context.run_id, step.settings.chain_wait_seconds):
        history = _history(book)
        current = history[-1] if history else None
        resend = current is not None and current.partition == key and not redeliver
        if not resend:  # a re-run of the last day is the ledger's to skip (same bytes) or refuse
            refuse_old_day(history, key)
            chain.check_order(book, VENDOR, DELIVERABLE, key, _last(history))
            check_base(key, plan, current)
        state.keep(key, bundle, info["mode"], paths["held"], paths["records"], plan["base"])
        outcome = deliver_partition(step.context, deliverable=SEGMENTMEMBERSHIP, files=files,
                                    destination=step.destination, ledger=book, redeliver=redeliver)
    return outcome, {"mode": dg.MetadataValue.text(info["mode"]),
                     "computed_against": dg.MetadataValue.text(plan["base"] or "nothing")}


def check_base(key: str, plan: dict, current: state.Delivered | None) -> None:
    """R12: send a file only onto the state it was computed against (what Lotame last received)."""
    what = f"lotame/segmentmembership {key}: refused"
    if current is not None and current.partition == key:  # only reached with redeliver=True
        raise dg.Failure(f"{what}: Lotame already received and applied the file for {key}; a different file "
                         f"for it would be computed against the state before it and leave stale segments. "
                         f"The next day's file carries every correction.", allow_retries=False)
    if (current.position if current else None) != plan["base_position"]:
        raise dg.Failure(f"{what}: this {plan['mode']} file was computed against the file for "
                         f"{plan['base'] or 'nothing'}, but Lotame has since received "
                         f"{current.partition if current else 'nothing'}; sending it would leave Lotame in a "
                         f"wrong state. Re-run {key} to compute it against what Lotame holds now.",
                         allow_retries=False)


SEGMENTMEMBERSHIP = Deliverable(
    vendor=VENDOR, name=DELIVERABLE, source="lotame_segment_memberships", models=(spec.SegmentMembership,),
    staged="segment_memberships", deadline=12,
    schedule=Schedule(6, description="Daily at 06:00 UTC for the previous UTC day's folder (Lotame polls daily; "
                                     "the day's folder is ready early in the UTC morning)."),
    probe_name=lambda token: f"_preflight-{token}.probe",
    probe_why="Lotame imports only a YYYYMMDD/ folder once its YYYYMMDD.done marker exists (docs/lotame.md, "
              "'Done marker'); the probe lies outside any date folder and no marker ever names it.")

CHAIN = Chain(
    deliverable=SEGMENTMEMBERSHIP, rows_asset="segment_memberships", files_asset="segmentmembership_files",
    sources=("lotame_users",), stage=stage, schema=membership_schema, rows_checks=(consistency_check,),
    write=write_files, check_files=check_files, deliver=deliver, files_kinds=frozenset({"json"}),
    delivery_kinds=frozenset({"s3", "gcs", "sftp"}),
    descriptions={
        "rows": f"One record per user ID with its segments for the day ({DOC}; the vendor's 'Sending Behaviors'), "
                "computed against what Lotame holds: the replay of every file it received, in the ledger's order "
                "(R11, R12). Comprehensive: every live segment, and IDs that left every segment cleared. Delta: "
                "segments added and removed since. Forced comprehensive on the first delivery and when the last "
                "comprehensive file is 30+ days old. Days deliver in partition order (a chain in the ledger); a day "
                "older than one already received is refused. Users without consent or with an unsupported ID type "
                "are excluded and counted; IPv6 addresses are dropped from `ips` and counted.",
        "spec": "The pandera model `SegmentMembership` (vendors/lotame/spec.py): unique userid, ID format, supported "
                "idtype, IPv4-only ips, epoch-second timestamps, consent; every record adds or removes something.",
        "files": "The three files of the day (docs/lotame.md): `YYYYMMDD/segmentmembership.json.gz` (gzip of JSON "
                 "lines, compressed on every core), `YYYYMMDD/segmentmembership.json.gz.md5` (what `md5sum` writes, "
                 "1.6 #4) and the zero-length `YYYYMMDD/YYYYMMDD.done`, to be published last.",
        "files_check": "Re-reads the bundle: gzip JSON lines, one valid object per line, userid unique, row count "
                       "and removals as staged, the .md5 file holds the data file's real MD5, the .done is empty, "
                       "under 5 GB.",
        "delivery": "Publishes the bundle to `lotame_destination` (S3, GCS or SFTP; local outbox by default) in "
                    "order: data, .md5, then .done, so Lotame never imports a half-written day (docs/lotame.md). "
                    "Refuses a file computed against anything but what Lotame last received, and a day while an "
                    "earlier one is undelivered."})
