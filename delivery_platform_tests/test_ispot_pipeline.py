"""iSpot conversions through Dagster: exact bytes, splitting, bad input, and uploads to the API double."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from hypothesis import given, settings, strategies as st

from delivery_platform.alerts.sensors import AlertLog, deadline_alerts
from delivery_platform.alerts.sinks import AlertSinks

from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform_tests.ispot_api_double import ISpotApiServer
from delivery_platform_tests.warehouses import event, events_warehouse

DAY = "2026-11-19"


def run(partition=DAY, resources=None, raise_on_error=False):
    defs = build_defs("local")
    job = defs.resolve_job_def("ispot_daily_delivery")
    config = {"resources": {"ispot_settings": {"config": resources}}} if resources else None
    return job.execute_in_process(partition_key=partition, instance=dg.DagsterInstance.ephemeral(),
                                  raise_on_error=raise_on_error, run_config=config)


def checks(result):
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


@pytest.fixture
def tiny(tmp_path, data_dir, monkeypatch):
    """Point the pipeline at a warehouse of hand-written events."""
    def make(rows):
        path = events_warehouse(tmp_path / "events.duckdb", rows)
        monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
        return path
    return make


def test_golden_bytes_of_a_small_day(tiny, data_dir):
    tiny([
        event("2026-11-19 17:30:56"),
        event("2026-11-19 00:00:00", ip="10.1.2.3", site=" TC-1234-2 ", platform="APP", kind="signup", custom=None,
              ua='Dalvik/2.1.0 (Linux; U; "quoted")'),
        event("2026-11-19 23:59:59", ip="2001:db8::1"),  # IPv6: filtered and counted
        event("2026-11-20 00:00:00"),  # next day: not in this file
        event("2026-11-18 23:59:59"),  # previous day: not in this file
    ])
    result = run()
    assert result.success
    produced = (data_dir / "outbox" / "ispot" / "conversions_20261119_001.csv").read_bytes()
    # rows in the order of their key (loaded_at, event_id): the order top-up ranges are cut in
    assert produced == (
        b'ip,datetime,siteid,app,type,customdata,useragent\n'
        b'"10.1.2.3","2026-11-19 00:00:00","TC-1234-2","app","signup","",'
        b'"Dalvik/2.1.0 (Linux; U; ""quoted"")"\n'
        b'"66.87.152.32","2026-11-19 17:30:56","TC-1234-1","web","purchase","customer_new,channel_paid-search",'
        b'"Mozilla/5.0 (Macintosh; Intel) AppleWebKit/537.36"\n')
    staged = result.asset_materializations_for_node("ispot__conversions")[0].metadata
    assert staged["rows"].value == 2 and staged["filtered_ipv6"].value == 1
    assert checks(result)["minimum_size"].passed is False  # a warning, the run still succeeds


def test_onboarding_mode_adds_passthru(tiny, data_dir):
    tiny([event("2026-11-19 17:30:56")])
    assert run(resources={"onboarding": True}).success
    lines = (data_dir / "outbox" / "ispot" / "conversions_20261119_001.csv").read_text().splitlines()
    assert lines[0] == "ip,datetime,siteid,app,type,customdata,passthru,useragent"
    assert lines[1].split('","')[6] == "1"


def test_a_tiny_split_limit_gives_parts_with_a_header_each_and_no_split_row(tiny, data_dir):
    tiny([event(f"2026-11-19 10:{m:02d}:00", ip=f"10.0.0.{m}") for m in range(40)])
    assert run(resources={"split_bytes": 700}).success
    parts = sorted((data_dir / "outbox" / "ispot").glob("conversions_20261119_*.csv"))
    assert len(parts) > 3
    rows = []
    for part in parts:
        data = part.read_bytes()
        assert len(data) <= 700
        lines = data.decode().split("\n")
        assert lines[0] == "ip,datetime,siteid,app,type,customdata,useragent" and lines[-1] == ""
        rows += lines[1:-1]
    assert len(rows) == 40 and all(r.startswith('"10.0.0.') and r.endswith('"') for r in rows)
    assert [p.name for p in parts][:2] == ["conversions_20261119_001.csv", "conversions_20261119_002.csv"]


@pytest.mark.parametrize("bad,rule,column", [
    (event("2026-11-19 10:00:00", ip="256.1.1.1"), "is_ipv4", "ip"),
    (event("2026-11-19 10:00:00", site="TC-9999-1"), "isin", "siteid"),
    (event("2026-11-19 10:00:00", site="\ufeffTC-1234-1"), "str_matches", "siteid"),
    (event("2026-11-19 10:00:00", platform="tv"), "isin", "app"),
    (event("2026-11-19 10:00:00", kind="Achat été"), "is_ascii", "type"),
    (event("2026-11-19 10:00:00", ua="   "), "not_blank", "useragent"),
    (event("2026-11-19 10:00:00", custom="=cmd|' /C calc'!A0"), "no_formula_prefix", "customdata"),
])
def test_bad_rows_fail_the_spec_check_and_nothing_is_delivered(tiny, data_dir, bad, rule, column, request):
    if rule == "no_formula_prefix":
        request.node.add_marker(pytest.mark.fault("warehouse-rows", "formula injection (=cmd|...) in iSpot customdata",
                                                  "the blocking spec check fails naming the column; nothing delivered"))
    tiny([event("2026-11-19 09:00:00"), bad])
    result = run()
    assert not result.success
    spec = checks(result)["spec"]
    assert spec.passed is False
    failures = spec.metadata["sample_rows"].value
    failed = [f for f in failures if f["column"] == column and f["rule"].startswith(rule)]
    # the sample names the failing row by its warehouse event_id (the second event written above)
    assert failed and failed[0]["count"] == 1 and failed[0]["samples"][0]["index"] == 2
    assert not (data_dir / "outbox" / "ispot").exists()
    assert Ledger().history("ispot") == []


def test_an_empty_day_delivers_nothing_and_is_recorded_delivered_empty(tiny, data_dir, tmp_path):
    # genuinely empty: the loads have passed the day (an event of the next day has landed)
    tiny([event("2026-11-18 10:00:00"), event("2026-11-20 01:00:00")])
    result = run()
    assert result.success
    files = result.asset_materializations_for_node("ispot__conversion_files")[0].metadata
    assert files["file_count"].value == 0
    assert not list((data_dir / "outbox").rglob("*.csv"))
    ledger = Ledger()
    assert ledger.partition_state("ispot", "conversions", DAY) == "complete"
    assert ledger.empty_reason("ispot", "conversions", DAY).startswith("nothing to send")
    delivery = result.asset_materializations_for_node("ispot__conversions_delivery")[0].metadata
    assert delivery["delivery_action"].value.startswith("delivered-empty") and delivery["rows"].value == 0
    # so the missed-deadline alert does not call the day missed (it reads the ledger's partition state)
    sinks = AlertSinks(webhook_url=None)
    after_deadline = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.timezone.utc)
    missed = deadline_alerts({("ispot", "conversions"): 14}, ledger, AlertLog(tmp_path / "a.sqlite"), sinks,
                             after_deadline)
    assert [a.partition for a in missed] == ["2026-11-18"]  # the day before has no ledger record: missed


def test_end_to_end_upload_through_the_api_and_no_second_upload(data_dir, monkeypatch):
    with ISpotApiServer() as api:
        monkeypatch.setenv("ISPOT_API_BASE_URL", api.url)
        monkeypatch.setenv("ISPOT_CLIENT_ID", api.state.client_id)
        monkeypatch.setenv("ISPOT_CLIENT_SECRET", api.state.client_secret)
        monkeypatch.setenv("ISPOT_MIN_UPLOAD_BYTES", "1000")  # the small test day passes a small minimum
        first = run(partition="2026-11-15")
        assert first.success
        assert list(api.state.received) == ["conversions_20261115_001.csv"]
        body = api.state.received["conversions_20261115_001.csv"].body
        assert body.startswith(b"ip,datetime,siteid,app,type,customdata,useragent\n\"")
        uploads = api.state.upload_requests
        again = run(partition="2026-11-15")
        assert again.success and api.state.upload_requests == uploads  # nothing uploaded twice
        meta = again.asset_materializations_for_node("ispot__conversions_delivery")[0].metadata
        assert meta["delivery_action"].value.startswith("nothing new") and meta["target"].value == "iSpot API"
        assert api.state.token_requests == 1  # the token file is shared by both runs
        logs = "\n".join(str(e) for e in first.all_events + again.all_events)
        assert api.state.client_secret not in logs
        assert not any(token in logs for token in api.state.tokens)


COLUMNS7 = ("ip", "datetime", "siteid", "app", "type", "customdata", "useragent")


@pytest.mark.parametrize("line,good", [
    ('"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","","Mozilla"\n', True),
    ('"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","say ""hi"", twice","Moz,illa"\n', True),
    ('"1.2.3.4","","","","","",""\n', True),
    ('1.2.3.4,"2026-11-19 08:00:00","TC-1-1","web","purchase","","Mozilla"\n', False),  # a value unquoted
    ('"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","Mozilla"\n', False),  # a value missing
    ('"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","say "hi"","Mozilla"\n', False),  # lone quotes
    ('"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","","Mozilla" \n', False),  # after the quote
    ('"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","","Moz\nilla"\n', False),  # a line break inside
    ('"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","","Mozilla"', False),  # no line end
])
def test_the_all_quoted_line_pattern(line, good):
    """What one line of an iSpot file must be: seven double-quoted values and one line end."""
    import duckdb

    from delivery_platform.formats.lines import all_quoted_line_pattern

    pattern = all_quoted_line_pattern(len(COLUMNS7))
    assert duckdb.sql("SELECT regexp_full_match($1, $2)", params=[line, pattern]).fetchall()[0][0] is good


_values = st.one_of(st.none(), st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
                                        max_size=12) | st.sampled_from(['"', '""', ',', '","', ' "x" ', '\r']))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(*[_values] * len(COLUMNS7)), min_size=1, max_size=20))
def test_the_rendered_lines_are_quoted_right_for_any_value(rows):
    """Why the write pass need not re-parse every line: for any values without a line break, the line SQL
    renders lines that match the all-quoted pattern, that the write pass's line count accepts, and that a
    CSV reader reads back as the values (NULL as empty)."""
    import csv
    import io

    import duckdb

    from delivery_platform.formats.lines import all_quoted_line_pattern, csv_line_sql
    from delivery_platform.formats.parts import misbroken_lines

    con = duckdb.connect()
    con.execute("CREATE TABLE t (" + ", ".join(f'"{c}" VARCHAR' for c in COLUMNS7) + ")")
    con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(COLUMNS7))})", rows)
    pattern = all_quoted_line_pattern(len(COLUMNS7))
    lines = con.sql(f"SELECT {csv_line_sql(COLUMNS7, quoting='all')} AS line, "
                    "regexp_full_match(line, $pattern) AS ok FROM t", params={"pattern": pattern}).arrow().read_all()
    assert all(lines.column("ok").to_pylist())
    assert misbroken_lines(lines.column("line").combine_chunks()) == (0, None)
    text = "".join(lines.column("line").to_pylist())
    assert list(csv.reader(io.StringIO(text, newline=""))) == [[v or "" for v in r] for r in rows]


def test_the_write_pass_checks_every_line_and_the_file_check_reads_its_record(tmp_path):
    """A value with a line break is caught as the part is written; the files check names the file, the count and
    the line. A file changed on disk after it was written, or with a BOM, fails too."""
    import pyarrow as pa

    from delivery_platform.delivery import OutgoingFile
    from delivery_platform.vendors.ispot.assets import CheckedPart, file_problems

    header = (",".join(COLUMNS7) + "\n").encode()
    good = '"5.6.7.8","2026-11-19 09:00:00","TC-1-2","app","signup","","UA"\n'
    broken = '"1.2.3.4","2026-11-19 08:00:00","TC-1-1","web","purchase","","Moz\nilla"\n'
    parts, written = [], {}
    for number, lines in ((1, [good, good]), (2, [good, broken, good])):
        writer = CheckedPart(tmp_path, f"conversions_20261119_00{number}.csv", header)
        writer.write(pa.array(lines[:1]))
        writer.write(pa.array(lines[1:]))  # the count adds up over batches
        done = writer.finish()
        written[done.name] = writer.seen()
        parts.append(OutgoingFile.of_part(done, done.name))
    info = {"columns": list(COLUMNS7), "written": written, "held": None}
    problems, rows = file_problems(parts, info, staged_rows=5)
    assert rows == 5 and problems == [
        f"conversions_20261119_002.csv: 1 data lines do not hold exactly one line end, at their end (a value with a "
        f"line break), e.g. {broken!r}"]
    assert file_problems(parts[:1], info, staged_rows=2) == ([], 2)

    first = parts[0].path
    first.write_bytes(b"\xef\xbb\xbf" + first.read_bytes())
    problems, _ = file_problems(parts[:1], info, staged_rows=2)
    assert any("bytes on disk" in p for p in problems) and any("BOM" in p for p in problems)
    assert file_problems(parts[:1], {**info, "written": {}}, staged_rows=2)[0][-2:] == [
        "conversions_20261119_001.csv: no record of its lines from the write pass (written by an older version?): "
        "re-materialize the files", "the files hold 0 rows, the checked data 2"]


def _materialize(*names: str):
    """Run only the named iSpot assets (with their checks), as a user selecting them in the UI would."""
    job = build_defs("local").resolve_job_def("ispot_daily_delivery")
    return job.execute_in_process(partition_key=DAY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                  asset_selection=[dg.AssetKey(["ispot", n]) for n in names])


def _step_errors(result) -> str:
    return " ".join(str(e.event_specific_data.error.message) for e in result.all_events if e.is_step_failure)


@pytest.mark.parametrize("change", ["added", "changed", "removed"])
def test_rows_that_change_after_their_check_are_not_written(tiny, data_dir, change):
    """The rows are read where they lie, twice (spec check, write pass): the check's fingerprint of them must
    match what the write pass reads, or nothing is written."""
    import duckdb

    path = tiny([event("2026-11-19 09:00:00"), event("2026-11-19 10:00:00", ip="10.0.0.2")])
    checked = _materialize("conversions")
    assert checked.success and checks(checked)["spec"].passed
    with duckdb.connect(str(path)) as con:  # a loader at work between the two steps
        if change == "added":  # loaded before the run's watermark: inside the checked selection
            con.execute("INSERT INTO ispot_conversion_events (event_id, client_ip, event_ts, loaded_at, site_id, "
                        "platform, event_type, user_agent) VALUES (3, '10.0.0.3', TIMESTAMP '2026-11-19 11:00:00', "
                        "TIMESTAMP '2026-11-19 11:00:00', 'TC-1234-1', 'web', 'purchase', 'Mozilla/5.0')")
        elif change == "changed":  # same count, one value different
            con.execute("UPDATE ispot_conversion_events SET client_ip = '10.9.9.9' WHERE event_id = 2")
        else:
            con.execute("DELETE FROM ispot_conversion_events WHERE event_id = 1")
    written = _materialize("conversion_files", "conversions_delivery")
    assert not written.success
    error = _step_errors(written)
    assert "changed between the spec check and the write pass" in error and "new rows" in error
    read = {"added": "read 3)", "changed": "read as many with other values)", "removed": "read 1)"}[change]
    assert f"the check saw 2 rows, the write pass {read}" in error and "Nothing was written" in error
    files = data_dir / "staging" / "ispot" / "conversions" / DAY / "files"
    assert not any(files.glob("*.csv")) and not (files / "files.json").exists()
    assert not (data_dir / "outbox" / "ispot").exists() and Ledger().history("ispot") == []
    # checked again, the rows as they are now go out
    again = run()
    assert again.success
    sent = b"".join(p.read_bytes() for p in sorted((data_dir / "outbox" / "ispot").glob("*.csv")))
    assert (b"10.0.0.3" in sent) == (change == "added") and (b"10.9.9.9" in sent) == (change == "changed")


def test_files_are_not_written_from_rows_that_failed_or_skipped_their_check(tiny, data_dir):
    """Materializing the files alone (the UI allows it) does not run the rows' blocking check: the write
    refuses rows whose last check failed, and rows staged since without a check."""
    path = tiny([event("2026-11-19 09:00:00"), event("2026-11-19 10:00:00", ip="256.1.1.1")])
    failed = _materialize("conversions")
    assert not failed.success and checks(failed)["spec"].passed is False
    alone = _materialize("conversion_files")
    assert not alone.success
    assert "have not passed their spec check since they were staged" in _step_errors(alone)
    assert not any((data_dir / "staging" / "ispot" / "conversions" / DAY / "files").glob("*.csv"))
    # the bad row mended and the rows checked; then staged again with the check left out
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE ispot_conversion_events SET client_ip = '10.0.0.2' WHERE event_id = 2")
    assert _materialize("conversions").success
    defs = build_defs("local")
    unchecked = dg.materialize(defs.assets, selection=dg.AssetSelection.assets(["ispot", "conversions"]).without_checks(),
                               resources=defs.resources, partition_key=DAY, instance=dg.DagsterInstance.ephemeral())
    assert unchecked.success and not unchecked.get_asset_check_evaluations()
    alone = _materialize("conversion_files")
    assert not alone.success
    assert "have not passed their spec check since they were staged" in _step_errors(alone)
