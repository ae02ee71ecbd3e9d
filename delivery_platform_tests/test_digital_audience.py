"""digitalAudience: hashing known answers, no raw PII in files, update files over days, the match export."""

from __future__ import annotations

import gzip

import dagster as dg
import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery_platform.definitions import build_defs
from delivery_platform.vendors.digital_audience import reference as ref
from delivery_platform.vendors.digital_audience.assets import raw_pii_in_file
from delivery_platform.vendors.digital_audience.matches import (inbox_resource, match_export, match_export_sensor,
                                                               match_files)
from delivery_platform.vendors.digital_audience.normalise import email_sql, phone_sql, sha256_upper_sql


def test_the_documented_example_email_hash():
    # dA's docs: sha256("john.sam@mail.com") = A7DF77A9...ADBA, upper-case hex (DIGEST 4.3)
    assert ref.sha256_upper(ref.normal_email("  John.Sam@Mail.com ")) == \
        "A7DF77A9DB89B44110C704B680A24978579A3069B419DB95CBDA84541094ADBA"


@pytest.mark.parametrize("raw,country,expected", [
    ("+31 6 14123456", "NL", "31614123456"), ("06-14123456", "NL", "31614123456"), ("0031 6 14123456", "NL", "31614123456"),
    ("(06) 14123456", "NL", "31614123456"), ("+31 (0)6 14123456", "NL", "31614123456"), ("070-1234567", "SE", "46701234567"),
    ("0049-151-12345678", "DE", "4915112345678"), ("12", "NL", None), ("call me", "NL", None),
])
def test_phone_normalisation_known_answers_in_python_and_sql(raw, country, expected):
    assert ref.normal_phone(raw, country) == expected
    got = duckdb.connect().execute(f"SELECT {phone_sql('p', 'c')} FROM (SELECT ?::VARCHAR p, ?::VARCHAR c)",
                                   [raw, country]).fetchone()[0]
    assert got == expected


emails = st.builds(lambda a, b, c, pad: f"{pad}{a}@{b}.{c}{pad}", st.from_regex(r"[A-Za-z][A-Za-z0-9._]{0,12}", fullmatch=True),
                   st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True), st.sampled_from(["com", "NL", "se"]),
                   st.sampled_from(["", " ", "  "]))
phones = st.builds(lambda p, n: p + n, st.sampled_from(["+31 6 ", "06-", "0031 6", "(06) ", "+31 (0)6 "]),
                   st.from_regex(r"[0-9]{8}", fullmatch=True))


@settings(max_examples=40, deadline=None)
@given(email=emails, phone=phones)
def test_sql_hashing_agrees_with_the_reference(email, phone):
    got = duckdb.connect().execute(
        f"SELECT {sha256_upper_sql(email_sql('e'))}, {sha256_upper_sql(phone_sql('p', 'c'))} "
        "FROM (SELECT ?::VARCHAR e, ?::VARCHAR p, 'NL' c)", [email, phone]).fetchone()
    assert got == (ref.sha256_upper(ref.normal_email(email)), ref.sha256_upper(ref.normal_phone(phone, "NL")))


def run(partition, instance):
    job = build_defs("local").resolve_job_def("digital_audience_daily_delivery")
    return job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)


@pytest.mark.fault("warehouse-rows", "formula injection (=cmd|...) in a digitalAudience postal code",
                   "the blocking spec check fails naming the column; nothing delivered")
def test_a_formula_in_an_address_field_is_refused(data_dir, small_warehouse, tmp_path, monkeypatch):
    import shutil

    path = tmp_path / "w.duckdb"
    shutil.copyfile(small_warehouse, path)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE crm_contacts SET postal_code = '=cmd|'' /C calc''!A0' WHERE postal_code IS NOT NULL")
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    result = run("2026-11-15", dg.DagsterInstance.ephemeral())
    assert not result.success
    spec = next(c for c in result.get_asset_check_evaluations() if c.check_name == "spec")
    failed = [f for f in spec.metadata["sample_rows"].value if f["rule"].startswith("no_formula_prefix")]
    assert [f["column"] for f in failed] == ["postal code"]
    assert not (data_dir / "outbox" / "digital_audience").exists()


def test_onboarding_then_updates_against_what_was_delivered_and_no_raw_pii(data_dir, small_warehouse):
    instance = dg.DagsterInstance.ephemeral()
    produced = {}
    for day in ("2026-11-14", "2026-11-15", "2026-11-16"):
        result = run(day, instance)
        assert result.success, day
        meta = result.asset_materializations_for_node("digital_audience__crm_records")[0].metadata
        produced[day] = (meta["mode"].value, meta["rows"].value, meta["opt_outs"].value)
    assert produced["2026-11-14"][0] == "onboarding" and produced["2026-11-15"][0] == "update"
    assert sum(v[2] for v in produced.values()) > 0  # opt-outs happened (counted, not sent: R6)
    outbox = data_dir / "outbox" / "digital_audience"
    con = duckdb.connect(str(small_warehouse), read_only=True)
    # every contact opted in by the end of the 15th and not out is in the onboarding or the update of the 15th
    expected = {r[0] for r in con.execute(
        "SELECT contact_id FROM crm_contacts WHERE opted_in_at < TIMESTAMP '2026-11-16' AND (opted_out_at IS NULL OR "
        "opted_out_at >= TIMESTAMP '2026-11-16') AND coalesce(email_raw, phone_raw, postal_code, aaid, idfa) IS NOT NULL"
    ).fetchall()}
    sent = set()
    for name in ("acme_crm_20261114.csv", "acme_crm_update_20261115.csv"):
        sent |= {line.split(",")[-1] for line in (outbox / name).read_text().splitlines()[1:]}
    assert not list(outbox.glob("*optout*"))  # never in the onboarding location
    # opt-outs stay at dA until a location for them is configured: what we sent covers the eligible
    assert expected <= sent
    raw = [r[0].strip().lower() for r in con.execute("SELECT email_raw FROM crm_contacts WHERE email_raw IS NOT NULL").fetchall()]
    for path in outbox.iterdir():
        text = path.read_text().lower()
        assert not raw_pii_in_file(path) and not any(e.replace(" ", "") in text for e in raw[:500])
        assert all(line.endswith(b"\r") or line == b"" for line in path.read_bytes().split(b"\n"))


def test_raw_pii_in_a_file_is_found():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.csv"
        path.write_text("email_sha256,custom\r\n" + "A" * 64 + ",john@example.com\r\n,+31 6 1412 3456\r\n")
        assert raw_pii_in_file(path) == ["line 2", "line 3"]


def ingest(instance, resources, *, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    # EnvVar secrets resolve when a resource is initialised, as the daemon does for a sensor
    result = match_export_sensor(context, resources["digital_audience_returns"].process_config_and_initialize())
    keys = [r.partition_key for r in result.run_requests]
    instance.add_dynamic_partitions(match_files.name, keys)
    runs = [dg.materialize([match_export], partition_key=r.partition_key, instance=instance, resources=resources,
                           tags=r.tags, raise_on_error=False) for r in result.run_requests]
    return result, runs


@pytest.mark.parametrize("store", ["local", "sftp_server", "s3_server"])
def test_match_exports_are_taken_in_once_across_sensor_restarts(data_dir, monkeypatch, request, store):
    if store != "local":
        for key, value in request.getfixturevalue(store).env("digital_audience_returns").items():
            monkeypatch.setenv(key, value)
    resources = {"digital_audience_returns": inbox_resource()}
    from delivery_platform.vendors.digital_audience.matches import open_inbox

    src = data_dir / "m1.csv"
    src.write_text("cookie_id,crm_id,matched_at\r\nck-1,CRM00000001,2026-11-16 02:00:00\r\nck-2,CRM00000002,\r\n")
    with open_inbox(resources["digital_audience_returns"].process_config_and_initialize()) as inbox:
        inbox.publish(src, "acme_matches_20261115.csv")
    instance = dg.DagsterInstance.ephemeral()
    first, runs = ingest(instance, resources)
    assert [r.success for r in runs] == [True]
    # a restarted daemon evaluates again with the saved cursor: nothing new is requested
    again, _ = ingest(instance, resources, cursor=first.cursor)
    assert again.run_requests == []
    stored = data_dir / "returns" / "da_matches" / "acme_matches_20261115.csv.parquet"
    rows = duckdb.connect().execute(f"SELECT cookie_id, crm_id FROM read_parquet('{stored}') ORDER BY 1").fetchall()
    assert rows == [("ck-1", "CRM00000001"), ("ck-2", "CRM00000002")]
    assert (data_dir / "received" / "digital_audience" / "acme_matches_20261115.csv").exists()


@pytest.mark.fault("da-match-export", "the same file name sent again with different bytes",
                   "a second run for the new version; both versions kept; the stored rows are the newest")
def test_a_file_sent_again_under_the_same_name_keeps_both_versions(data_dir):
    import hashlib
    import os

    resources = {"digital_audience_returns": inbox_resource()}
    inbox = data_dir / "inbox" / "digital_audience"
    inbox.mkdir(parents=True)
    first_bytes = b"cookie_id,crm_id,matched_at\r\nck-1,CRM00000001,\r\n"
    second_bytes = b"cookie_id,crm_id,matched_at\r\nck-1,CRM00000001,\r\nck-2,CRM00000002,\r\n"
    (inbox / "acme_matches_20261115.csv").write_bytes(first_bytes)
    instance = dg.DagsterInstance.ephemeral()
    first, runs = ingest(instance, resources)
    assert [r.success for r in runs] == [True]
    (inbox / "acme_matches_20261115.csv").write_bytes(second_bytes)
    later = os.stat(inbox / "acme_matches_20261115.csv").st_mtime + 60
    os.utime(inbox / "acme_matches_20261115.csv", (later, later))
    second, runs = ingest(instance, resources, cursor=first.cursor)
    assert [r.success for r in runs] == [True]  # the new version got its own run
    assert first.run_requests[0].run_key != second.run_requests[0].run_key
    received = data_dir / "received" / "digital_audience"
    aside = received / f"acme_matches_20261115.csv~{hashlib.md5(first_bytes).hexdigest()[:12]}"
    assert (received / "acme_matches_20261115.csv").read_bytes() == second_bytes
    assert aside.read_bytes() == first_bytes  # the first version was not overwritten
    stored = data_dir / "returns" / "da_matches" / "acme_matches_20261115.csv.parquet"
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{stored}')").fetchone()[0] == 2


BAD = {
    "ragged row": "cookie_id,crm_id,matched_at\r\nck-1,CRM1\r\n",
    "wrong delimiter": "cookie_id;crm_id;matched_at\r\nck-1;CRM1;2026-11-16\r\n",
    "empty file": "",
    "duplicate pair": "cookie_id,crm_id,matched_at\r\nck-1,CRM1,\r\nck-1,CRM1,\r\n",
    "formula injection in cookie id": "cookie_id,crm_id,matched_at\r\n=cmd|' /C calc'!A0,CRM1,\r\n",
    "T in the date": "cookie_id,crm_id,matched_at\r\nck-1,CRM1,2026-11-16T02:00:00Z\r\n",
    "Windows-1252 bytes (not UTF-8)": b"cookie_id,crm_id,matched_at\r\nck-caf\xe9,CRM1,\r\n",
    "UTF-16 file": "cookie_id,crm_id,matched_at\r\nck-1,CRM1,\r\n".encode("utf-16"),
    "huge field (5 MB cookie id)": "cookie_id,crm_id,matched_at\r\n" + "c" * (5 << 20) + ",CRM1,\r\n",
    "truncated gzip": gzip.compress(("cookie_id,crm_id,matched_at\r\n" + "ck-1,CRM1,\r\n" * 5000).encode())[:400],
}
# what each failure must say besides the file's name
WHY = {"ragged row": "Expected Number of Columns", "wrong delimiter": "", "empty file": "the file is empty",
       "duplicate pair": "unique", "formula injection in cookie id": "cookie_id", "T in the date": "matched_at",
       "Windows-1252 bytes (not UTF-8)": "unicode", "UTF-16 file": "", "truncated gzip": "",
       "huge field (5 MB cookie id)": "Maximum line size of 2000000 bytes exceeded"}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_exports_fail_clearly_and_are_kept(data_dir, case, request):
    request.node.add_marker(pytest.mark.fault("da-match-export", case, "run fails naming the file and rule; file kept in quarantine; nothing stored"))
    resources = {"digital_audience_returns": inbox_resource()}
    inbox = data_dir / "inbox" / "digital_audience"
    inbox.mkdir(parents=True)
    name = "bad.csv.gz" if case == "truncated gzip" else "bad.csv"
    raw = BAD[case] if isinstance(BAD[case], bytes) else BAD[case].encode()
    (inbox / name).write_bytes(raw)
    instance = dg.DagsterInstance.ephemeral()
    _, runs = ingest(instance, resources)
    assert [r.success for r in runs] == [False]
    failure = next(e for e in runs[0].all_events if e.is_step_failure).event_specific_data.error.message
    assert name in failure and WHY[case].lower() in failure.lower(), failure
    assert len(failure) < 5000  # a 5 MB field is not pasted into the error
    assert (data_dir / "quarantine" / "digital_audience" / name).read_bytes() == raw
    assert (inbox / name).exists()  # never deleted
    assert not (data_dir / "returns" / "da_matches").exists()


@pytest.mark.fault("da-match-export", "mixed line endings (CRLF and LF)",
                   "documented sanitisation: read alike; every row stored without a stray CR")
def test_mixed_line_endings_are_read_alike(data_dir):
    inbox = data_dir / "inbox" / "digital_audience"
    inbox.mkdir(parents=True)
    (inbox / "mixed.csv").write_bytes(b"cookie_id,crm_id,matched_at\r\nck-1,CRM1,\nck-2,CRM2,2026-11-16\r\nck-3,CRM3,\n")
    _, runs = ingest(dg.DagsterInstance.ephemeral(), {"digital_audience_returns": inbox_resource()})
    assert [r.success for r in runs] == [True]
    stored = data_dir / "returns" / "da_matches" / "mixed.csv.parquet"
    rows = duckdb.connect().execute(f"SELECT * FROM read_parquet('{stored}') ORDER BY 1").fetchall()
    assert rows == [("ck-1", "CRM1", None), ("ck-2", "CRM2", "2026-11-16"), ("ck-3", "CRM3", None)]


@pytest.mark.fault("da-match-export", "names that escape the folder or collide ('../x.csv', 'a/b.csv' vs 'a_b.csv')",
                   "an escaping name is never taken in and is logged; colliding names get distinct partitions")
def test_escaping_and_colliding_names_on_the_s3_inbox(data_dir, s3_server, monkeypatch):
    from delivery_platform.vendors.digital_audience.matches import partition_key_for

    env = s3_server.env("digital_audience_returns")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    body = b"cookie_id,crm_id,matched_at\r\nck-1,CRM1,\r\n"
    for name in ("../evil.csv", "a/b.csv", "a_b.csv"):
        s3_server.client().put_object(Bucket=env["DELIVERY_DIGITAL_AUDIENCE_RETURNS_S3_BUCKET"], Key=name, Body=body)
    instance = dg.DagsterInstance.ephemeral()
    result, runs = ingest(instance, {"digital_audience_returns": inbox_resource()})
    assert sorted(r.partition_key for r in result.run_requests) == ["a_b.csv", "a~b.csv"]
    assert all(r.success for r in runs)
    assert partition_key_for("../evil.csv") is None and partition_key_for("/abs.csv") is None
    assert not list((data_dir / "received" / "digital_audience").glob("*evil*"))


def test_cookie_sync_pixel_url_is_the_documents_with_encoded_values():
    from delivery_platform.vendors.digital_audience.pixel import cookie_sync_url

    # the document's own example, with its placeholders as values, comes back verbatim (R7)
    assert cookie_sync_url("NAMEOFTHEPARTNER", "DMPCOOKIEID", site="NAMEORIDOFTHESITE") == (
        "https://target.digitalaudience.io/bakery/sync/dmpsyncendpoint"
        "?site=NAMEORIDOFTHESITE&partner=NAMEOFTHEPARTNER&cookieid=DMPCOOKIEID&read=false")
    assert cookie_sync_url("p 42", "ck/1?&=x", site="shop.example/nl") == (
        "https://target.digitalaudience.io/bakery/sync/dmpsyncendpoint"
        "?site=shop.example%2Fnl&partner=p%2042&cookieid=ck%2F1%3F%26%3Dx&read=false")
    assert cookie_sync_url("acme", "c1") == ("https://target.digitalaudience.io/bakery/sync/dmpsyncendpoint"
                                              "?partner=acme&cookieid=c1&read=false")
    with pytest.raises(ValueError):
        cookie_sync_url("", "x")


def test_gzip_option_and_match_rate(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    job = build_defs("local").resolve_job_def("digital_audience_daily_delivery")
    result = job.execute_in_process(partition_key="2026-11-15", instance=instance, raise_on_error=False,
                                    run_config={"resources": {"digital_audience_settings": {"config": {"gzip": True}}}})
    assert result.success
    import gzip

    path = data_dir / "outbox" / "digital_audience" / "acme_crm_20261115.csv.gz"
    assert gzip.decompress(path.read_bytes()).startswith(b"email_sha256,phone_sha256,postal code")
    from delivery_platform.simulators.digital_audience import simulate_match_export

    simulate_match_export("2026-11-15")
    resources = {"digital_audience_returns": inbox_resource()}
    _, runs = ingest(instance, resources)
    meta = runs[0].asset_materializations_for_node("digital_audience__match_export")[0].metadata
    assert 0 < meta["match_rate"].value <= 1 and meta["matched_records"].value > 0


@pytest.mark.fault("da-match-export", "columns in another order in the header; a required name missing",
                   "read by name (R8); a missing name is refused, named and quarantined")
def test_the_match_export_is_read_by_header_name(data_dir):
    inbox = data_dir / "inbox" / "digital_audience"
    inbox.mkdir(parents=True)
    (inbox / "swapped.csv").write_bytes(b"matched_at,crm_id,cookie_id\r\n"
                                        b"2026-11-16,CRM1,ck-1\r\n,CRM2,ck-2\r\n")
    (inbox / "nameless.csv").write_bytes(b"cookie,crm_id,matched_at\r\nck-1,CRM1,\r\n")
    _, runs = ingest(dg.DagsterInstance.ephemeral(), {"digital_audience_returns": inbox_resource()})
    by_file = {r.dagster_run.tags["source_file"]: r for r in runs}
    assert by_file["swapped.csv"].success
    stored = data_dir / "returns" / "da_matches" / "swapped.csv.parquet"
    rows = duckdb.connect().execute(f"SELECT * FROM read_parquet('{stored}') ORDER BY 1").fetchall()
    assert rows == [("ck-1", "CRM1", "2026-11-16"), ("ck-2", "CRM2", None)]
    failed = by_file["nameless.csv"]
    assert not failed.success
    message = next(e for e in failed.all_events if e.is_step_failure).event_specific_data.error.message
    assert "nameless.csv" in message and "lacks the required column(s) ['cookie_id']" in message, message
    assert (data_dir / "quarantine" / "digital_audience" / "nameless.csv").exists()


def test_other_files_in_the_inbox_are_logged_once_not_silently_ignored(data_dir, capfd):
    inbox = data_dir / "inbox" / "digital_audience"
    inbox.mkdir(parents=True)
    (inbox / "acme_matches_20261115.zip").write_bytes(b"PK")
    instance = dg.DagsterInstance.ephemeral()
    first, runs = ingest(instance, {"digital_audience_returns": inbox_resource()})
    assert runs == [] and "not taking in 'acme_matches_20261115.zip'" in capfd.readouterr().err
    ingest(instance, {"digital_audience_returns": inbox_resource()}, cursor=first.cursor)
    assert "acme_matches_20261115.zip" not in capfd.readouterr().err  # said once per version, not every tick


def test_a_missing_nightly_match_export_alerts_once_a_day_after_the_hour(data_dir, monkeypatch):
    from delivery_platform.alerts import AlertSinks
    from delivery_platform.core import clock
    from delivery_platform_tests.http_doubles import Recorder

    monkeypatch.setenv("DA_MATCH_EXPORT_DEADLINE_HOUR", "8")
    instance = dg.DagsterInstance.ephemeral()
    assert run("2026-11-19", instance).success  # records at dA: an export is now promised every night
    inbox = data_dir / "inbox" / "digital_audience"
    inbox.mkdir(parents=True, exist_ok=True)
    resource = inbox_resource().process_config_and_initialize()
    with Recorder() as hook:
        sinks, cursor = AlertSinks(webhook_url=hook.url + "/hook"), None

        def tick(at):
            nonlocal cursor
            with clock.pinned(at):
                context = dg.build_sensor_context(instance=instance, cursor=cursor)
                result = match_export_sensor(context, resource, sinks)
            cursor = result.cursor
            return len(hook.requests)

        assert tick("2026-11-21T07:55Z") == 0  # before the hour: nothing yet
        assert tick("2026-11-21T08:05Z") == 1  # none arrived: one alert
        assert tick("2026-11-21T09:05Z") == 1 and tick("2026-11-21T23:00Z") == 1  # once that day
        (inbox / "acme_matches_20261121.csv").write_text("cookie_id,crm_id,matched_at\r\nck-1,CRM1,\r\n")
        assert tick("2026-11-22T02:00Z") == 1  # tonight's arrived
        assert tick("2026-11-22T09:00Z") == 1  # so no alert that day
        assert tick("2026-11-23T08:30Z") == 2  # the next night's did not
        assert b"has not arrived by 08:00 UTC" in hook.requests[-1][2]


@pytest.mark.fault("warehouse-rows", "contacts opt out between deliveries",
                   "never in an onboarding/update file; WARN check and alert name the count; sent only to "
                   "the "
                   "configured opt-out location")
def test_opt_outs_are_counted_alerted_and_sent_only_to_their_own_location(data_dir, monkeypatch):
    from delivery_platform.alerts import AlertSinks, process_run
    from delivery_platform.alerts.sensors import AlertLog
    from delivery_platform_tests.http_doubles import Recorder

    instance = dg.DagsterInstance.ephemeral()
    days = ("2026-11-14", "2026-11-16", "2026-11-18")  # the small warehouse has opt-outs on the 16th and 18th
    assert run(days[0], instance).success
    # first without an opt-out location: counted and reported, not sent
    second = run(days[1], instance)
    check = next(c for c in second.get_asset_check_evaluations() if c.check_name == "opt_outs")
    count = check.metadata["opt_outs"].value
    assert count > 0 and check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert f"{count:,} contact(s) opted out" in check.description and "NOT sent anywhere" in check.description
    with Recorder() as hook:
        alerts = process_run(instance, second.run_id, AlertSinks(webhook_url=hook.url + "/h"), AlertLog())
        assert [a.check for a in alerts] == ["opt_outs"] and len(hook.requests) == 1
        assert f"{count:,} contact(s) opted out" in hook.requests[0][2].decode()
    # then with a location and format: the opt-outs go there, and only there
    monkeypatch.setenv("DELIVERY_DIGITAL_AUDIENCE_OPTOUT_DESTINATION", "local")
    monkeypatch.setenv("DELIVERY_DIGITAL_AUDIENCE_OPTOUT_FORMAT", "custom,email_sha256")
    third = run(days[2], instance)
    assert third.success
    opted = next(c for c in third.get_asset_check_evaluations() if c.check_name == "opt_outs")
    checked = next(c for c in third.get_asset_check_evaluations() if c.check_name == "files_match_spec")
    assert checked.passed and checked.metadata["files_checked"].value == 2  # the opt-out file is checked too
    [optout_file] = (data_dir / "outbox" / "digital_audience_optout").iterdir()
    assert optout_file.name == "acme_crm_optout_20261118.csv" and optout_file.name in opted.description
    lines = optout_file.read_bytes().split(b"\r\n")
    assert lines[0] == b"custom,email_sha256"
    assert len([x for x in lines[1:] if x]) == opted.metadata["opt_outs"].value
    sent_ids = set()
    for path in (data_dir / "outbox" / "digital_audience").iterdir():
        sent_ids |= {line.split(",")[-1] for line in path.read_text().splitlines()[1:]}
    assert not list((data_dir / "outbox" / "digital_audience").glob("*optout*"))
    assert not {line.split(b",")[0].decode() for line in lines[1:] if line} & {
        line.split(",")[-1] for line in (data_dir / "outbox" / "digital_audience" /
                                         "acme_crm_update_20261118.csv").read_text().splitlines()[1:]}


def test_an_opt_out_location_without_a_format_fails_naming_the_variable(data_dir, monkeypatch):
    monkeypatch.setenv("DELIVERY_DIGITAL_AUDIENCE_OPTOUT_DESTINATION", "local")
    result = run("2026-11-15", dg.DagsterInstance.ephemeral())
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "DELIVERY_DIGITAL_AUDIENCE_OPTOUT_FORMAT is not set" in message
    assert not (data_dir / "outbox" / "digital_audience").exists()
