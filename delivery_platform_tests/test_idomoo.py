"""Idomoo: SFTP uploads, the Downloads sensor, PURL ingestion, PGP and Windows-1252, hostile PURL files."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.destinations import destination_from_env
from delivery_platform.destinations.base import FileInfo
from delivery_platform.formats.delimited import EncodingProblem, write_delimited
from delivery_platform.ledger import Ledger
from delivery_platform.simulators.idomoo import simulate
from delivery_platform.vendors.idomoo import downloads_sensor, purl_every_row_came_back, purl_files, \
    purl_links_are_https, purl_results
from delivery_platform.vendors.idomoo.assets import settings_from_env
from delivery_platform.vendors.idomoo.downloads import ready_purls

DAY = "2026-11-15"


def run(partition=DAY, settings=None, instance=None):
    job = build_defs("local").resolve_job_def("idomoo_daily_delivery")
    config = {"resources": {"idomoo_settings": {"config": settings}}} if settings else None
    return job.execute_in_process(partition_key=partition, instance=instance or dg.DagsterInstance.ephemeral(),
                                  raise_on_error=False, run_config=config)


def uploaded(data_dir):
    return sorted((data_dir / "outbox" / "idomoo" / "Uploads").iterdir())


def test_upload_names_encoding_and_a_rerun_that_sends_nothing_new(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    first = run(instance=instance)
    assert first.success
    [path] = uploaded(data_dir)
    # uploaded late (the suite's clock is 2026-11-21 09:00): the name carries the real upload time
    assert path.name == "acme_welcome_20261121_090000_01.csv"
    text = path.read_bytes()
    assert text.startswith(b"RecipientID,FirstName,LastName,Email,Language,OfferCode,City,Points\n")
    again = run(instance=instance)
    assert again.success and uploaded(data_dir) == [path]
    meta = again.asset_materializations_for_node("idomoo__data_file_delivery")[0].metadata
    assert meta["delivery_action"].value.startswith("skipped")


def test_two_days_built_in_the_same_second_get_different_names_and_both_deliver(data_dir):
    """A backfill runs two days at once: both build their file in the same second (the suite's clock is pinned),
    before either uploads. The second takes the next NN instead of the name the first reserved."""
    defs = build_defs("local")
    job = defs.resolve_job_def("idomoo_daily_delivery")
    instance = dg.DagsterInstance.ephemeral()
    built = [dg.AssetKey(["idomoo", "recipients"]), dg.AssetKey(["idomoo", "data_file"])]
    for day in ("2026-11-19", DAY):
        assert job.execute_in_process(partition_key=day, instance=instance, asset_selection=built).success
    names = [run(partition=day, instance=instance) for day in ("2026-11-19", DAY)]
    assert all(r.success for r in names)
    assert [p.name for p in uploaded(data_dir)] == ["acme_welcome_20261121_090000_01.csv",
                                                    "acme_welcome_20261121_090000_02.csv"]


def recipients_warehouse(path, n):
    from delivery_platform_tests.warehouses import table_warehouse

    rows = [{"recipient_id": f"R{i:04d}", "send_date": DAY, "first_name": "Zoë", "last_name": "Bakker",
             "email": f"r{i}@example.com", "language": "nl", "offer_code": "WELCOME5", "city": "Utrecht",
             "points_balance": 100 + i} for i in range(n)]
    return table_warehouse(path, {"idomoo_recipients": rows})


@pytest.mark.fault("warehouse-rows", "formula injection (=HYPERLINK(...)) in an Idomoo storyboard parameter",
                   "the blocking spec check fails naming the column; nothing uploaded")
def test_a_formula_in_a_recipient_field_is_refused(data_dir, tmp_path, monkeypatch):
    import duckdb as db

    path = recipients_warehouse(tmp_path / "r.duckdb", 5)
    with db.connect(str(path)) as con:
        con.execute("UPDATE idomoo_recipients SET city = '=HYPERLINK(\"http://evil.example\")' WHERE recipient_id = 'R0003'")
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    result = run()
    assert not result.success
    spec = next(c for c in result.get_asset_check_evaluations() if c.check_name == "spec")
    failed = [f for f in spec.metadata["sample_rows"].value if f["rule"].startswith("no_formula_prefix")]
    assert [f["column"] for f in failed] == ["City"] and failed[0]["count"] == 1
    uploads = data_dir / "outbox" / "idomoo" / "Uploads"
    assert not uploads.exists() or uploaded(data_dir) == []


@pytest.mark.parametrize("available,ok", [(25, True), (12, False)])
def test_end_to_end_test_mode_sends_exactly_20_rows(data_dir, tmp_path, monkeypatch, available, ok):
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(recipients_warehouse(tmp_path / "r.duckdb", available)))
    result = run(settings={"e2e_test": True})
    assert result.success is ok
    if ok:
        [path] = uploaded(data_dir)
        assert len(path.read_text().splitlines()) == 21
    else:
        spec = next(c for c in result.get_asset_check_evaluations() if c.check_name == "spec")
        assert "12 rows, outside the allowed 20..20" in spec.description


def test_windows_1252_round_trip_and_a_clear_error_for_characters_it_cannot_hold(tmp_path):
    path = tmp_path / "f.csv"
    write_delimited(path, ["Name", "City"], [["Björn", "Reykjavík"], ["Zoë", "Kraków"]], delimiter=";", encoding="windows-1252")
    assert path.read_bytes().decode("cp1252").splitlines() == ["Name;City", "Björn;Reykjavík", "Zoë;Kraków"]
    with pytest.raises(EncodingProblem, match=r"row 2, column 'City': character 'Ł' \(U\+0141\)"):
        write_delimited(tmp_path / "g.csv", ["Name", "City"], [["Björn", "Reykjavík"], ["Zoë", "Łódź"]],
                        encoding="windows-1252")
    write_delimited(tmp_path / "h.csv", ["Name"], [["Björn"], ["Zoë"]], encoding="windows-1252", delimiter="tab")
    assert (tmp_path / "h.csv").read_bytes() == "Name\nBjörn\nZoë\n".encode("cp1252")
    assert not (tmp_path / "g.csv").exists()


def test_a_warehouse_name_outside_windows_1252_fails_the_run_naming_row_and_column(data_dir):
    result = run(settings={"encoding": "windows-1252"})
    if result.success:  # the day happens to hold only Windows-1252 names: the file must decode as such
        [path] = uploaded(data_dir)
        path.read_bytes().decode("cp1252")
    else:
        failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
        assert "row " in failure and "column " in failure and "Windows-1252" in failure or "windows-1252" in failure
        assert not (data_dir / "outbox" / "idomoo").exists()


@pytest.fixture(scope="module")
def pgp_keys():
    import gnupg

    home = tempfile.mkdtemp(prefix="gpgt", dir="/tmp")
    gpg = gnupg.GPG(gnupghome=home)
    key = gpg.gen_key(gpg.gen_key_input(name_email="idomoo@example.com", passphrase="pw", key_type="RSA", key_length=2048,
                                        no_protection=False))
    yield gpg, str(key), gpg.export_keys(str(key)), home
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True)


def test_pgp_round_trip(data_dir, pgp_keys, tmp_path):
    gpg, fingerprint, public, _ = pgp_keys
    key_file = tmp_path / "idomoo.asc"
    key_file.write_text(public)
    result = run(settings={"pgp_public_key_file": str(key_file)})
    assert result.success
    [path] = uploaded(data_dir)
    assert path.suffix == ".gpg" and not path.read_bytes().startswith(b"RecipientID")
    decrypted = gpg.decrypt(path.read_bytes(), passphrase="pw")
    assert decrypted.ok and str(decrypted).startswith("RecipientID,FirstName")


def test_upload_to_sftp_is_atomic_and_names_are_never_reused(data_dir, monkeypatch, sftp_server):
    env = sftp_server.env("idomoo")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    instance = dg.DagsterInstance.ephemeral()
    assert run(instance=instance).success
    with destination_from_env("idomoo").process_config_and_initialize().get() as account:
        names = [f.name for f in account.list()]
    assert len(names) == 1 and names[0].startswith("Uploads/acme_welcome_")
    assert not any(".part-" in p.name for p in (Path(sftp_server.root) / env["DELIVERY_IDOMOO_PREFIX"]).rglob("*"))
    # a second partition can never reuse a name already uploaded
    name = names[0]
    ledger = Ledger()
    assert [d.partition_key for d in ledger.find_name("idomoo", name)] == [DAY]


def account_listing(n_old: int, t0: float) -> list[FileInfo]:
    files = []
    for i in range(n_old):
        files.append(FileInfo(f"Downloads/PURL_old_{i:05d}.csv", 100, t0 - 10_000 + i))
        files.append(FileInfo(f"Downloads/PURL_old_{i:05d}.csv.flg", 0, t0 - 10_000 + i))
    return files


def test_the_sensor_cursor_skips_files_seen_fast_and_waits_for_flags():
    t0 = time.time()
    listing = account_listing(5_000, t0)
    first, cursor = ready_purls(listing, "Downloads", {})
    assert len(first) == 5_000
    listing += [FileInfo("Downloads/PURL_new.csv", 10, t0 + 1)]  # no flag yet: ignored
    started = time.perf_counter()
    again, cursor = ready_purls(listing, "Downloads", cursor)
    assert again == [] and time.perf_counter() - started < 1.0
    listing += [FileInfo("Downloads/PURL_new.csv.flg", 0, t0 + 2)]
    ready, cursor = ready_purls(listing, "Downloads", cursor)
    assert [f.name for f in ready] == ["Downloads/PURL_new.csv"]
    assert ready_purls(listing, "Downloads", cursor)[0] == []  # exactly once


def test_sensor_runs_ingest_purls_once_across_restarts_with_checks(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    assert run(instance=instance).success
    settings = settings_from_env()
    simulate(data_dir / "outbox" / "idomoo", settings)
    defs = build_defs("local")
    destination = defs.resources["idomoo_destination"]
    result = downloads_sensor(dg.build_sensor_context(instance=instance), destination, settings)
    assert len(result.run_requests) == 1
    restarted = downloads_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor), destination, settings)
    assert restarted.run_requests == []
    request = result.run_requests[0]
    instance.add_dynamic_partitions(purl_files.name, [request.partition_key])
    run_result = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back],
                                partition_key=request.partition_key, instance=instance, tags=request.tags,
                                resources={"idomoo_destination": destination, "idomoo_settings": settings,
                                           "ledger": defs.resources["ledger"], "warehouse": defs.resources["warehouse"]})
    assert run_result.success
    assert all(c.passed for c in run_result.get_asset_check_evaluations())


def _purl_env(data_dir, content: bytes, name="PURL_acme_welcome_20261115_000000_01.csv"):
    instance = dg.DagsterInstance.ephemeral()
    assert run(instance=instance).success
    [upload] = uploaded(data_dir)
    name = "PURL_" + upload.name if name is None or name.endswith(".csv") and "zip" not in name else name
    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    (downloads / name).write_bytes(content)
    (downloads / (name + ".flg")).write_bytes(b"")
    defs = build_defs("local")
    resources = {"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": settings_from_env(),
                 "ledger": defs.resources["ledger"], "warehouse": defs.resources["warehouse"]}
    instance.add_dynamic_partitions(purl_files.name, [name])
    result = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back], partition_key=name,
                            instance=instance, resources=resources, raise_on_error=False)
    return upload, name, result


def _good_purl(upload: Path) -> list[str]:
    lines = upload.read_text().splitlines()
    out = [lines[0] + ",thumbnail_1,landingPage"]
    for line in lines[1:]:
        key = line.split(",")[0]
        out.append(f"{line},https://t.example/{key}.jpg,https://lp.example/{key}")
    return out


def hostile(case: str, upload: Path) -> bytes:
    good = _good_purl(upload)
    if case == "missing rows":
        return "\n".join(good[:-2]).encode() + b"\n"
    if case == "extra rows":
        return "\n".join(good + [good[-1].replace(good[-1].split(",")[0], "RX", 1)]).encode() + b"\n"
    if case == "non-https link":
        return "\n".join([good[0]] + [g.replace("https://lp", "http://lp") for g in good[1:]]).encode() + b"\n"
    if case == "truncated file":
        data = "\n".join(good).encode()
        return data[: len(data) - 30]
    if case == "wrong delimiter":
        return "\n".join(g.replace(",", ";") for g in good).encode()
    if case == "BOM":
        return b"\xef\xbb\xbf" + "\n".join(good).encode() + b"\n"
    if case == "empty file":
        return b""
    if case == "Windows-1252 bytes in a UTF-8 file":
        return ("\n".join(good) + "\n").encode().replace(b"https://lp.example/", b"https://lp.example/caf\xe9/", 1)
    if case == "UTF-16 file":
        return ("\n".join(good) + "\n").encode("utf-16")
    if case == "mixed line endings":
        return "".join(g + ("\r\n" if i % 2 else "\n") for i, g in enumerate(good)).encode()
    if case == "huge field (5 MB)":
        return ("\n".join(good[:2]) + "?" + "a" * (5 << 20) + "\n" + "\n".join(good[2:]) + "\n").encode()
    raise AssertionError(case)


FAILED_CHECK = {"missing rows": "every_row_came_back", "extra rows": "every_row_came_back",
                "non-https link": "links_are_https"}
FAILED_RUN = {"truncated file": "Expected Number of Columns", "wrong delimiter": "wrong delimiter",
              "empty file": "the file is empty", "Windows-1252 bytes in a UTF-8 file": "not valid utf-8",
              "UTF-16 file": "not valid utf-8", "huge field (5 MB)": "Maximum line size of 2000000 bytes exceeded"}


@pytest.mark.parametrize("case", ["missing rows", "extra rows", "non-https link", "truncated file", "wrong delimiter",
                                  "BOM", "empty file", "Windows-1252 bytes in a UTF-8 file", "UTF-16 file",
                                  "mixed line endings", "huge field (5 MB)"])
def test_hostile_purl_files(data_dir, case, request):
    outcome = ("a failed check naming the rows" if case in FAILED_CHECK else
               "the run fails clearly; file kept in quarantine" if case in FAILED_RUN else "documented sanitisation")
    request.node.add_marker(pytest.mark.fault("idomoo-purl", case, outcome + "; nothing received is lost"))
    upload, _, _ = _purl_env(data_dir, b"placeholder")  # to learn the upload's name
    name = "PURL_" + upload.name
    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    (downloads / name).write_bytes(hostile(case, upload))
    defs = build_defs("local")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(purl_files.name, [name])
    resources = {"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": settings_from_env(),
                 "ledger": defs.resources["ledger"], "warehouse": defs.resources["warehouse"]}
    result = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back], partition_key=name,
                            instance=instance, resources=resources, raise_on_error=False)
    kept = data_dir / "received" / "idomoo" / name
    assert kept.read_bytes() == hostile(case, upload)  # our copy of what arrived
    assert (downloads / name).exists()  # never deleted at the source
    if case in FAILED_RUN:
        assert not result.success
        message = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
        assert name in message and FAILED_RUN[case] in message, message
        assert (data_dir / "quarantine" / "idomoo" / name).read_bytes() == hostile(case, upload)
        assert not (data_dir / "returns" / "idomoo_purls" / f"{name}.parquet").exists()
    elif case in FAILED_CHECK:
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks[FAILED_CHECK[case]].passed is False
    else:
        assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
        stored = data_dir / "returns" / "idomoo_purls" / f"{name}.parquet"
        count = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{stored}')").fetchone()[0]
        assert count == len(_good_purl(upload)) - 1  # every row came back intact


@pytest.mark.fault("idomoo-purl", "the same PURL file name sent again with different bytes",
                   "each version ingested in its own run; both versions kept under data/received")
def test_a_purl_file_sent_again_keeps_both_versions(data_dir):
    import hashlib

    upload, _, _ = _purl_env(data_dir, b"placeholder")
    name = "PURL_" + upload.name
    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    good = _good_purl(upload)
    first_bytes = ("\n".join(good[:-1]) + "\n").encode()  # Idomoo first sent one row short
    second_bytes = ("\n".join(good) + "\n").encode()
    defs = build_defs("local")
    resources = {"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": settings_from_env(),
                 "ledger": defs.resources["ledger"], "warehouse": defs.resources["warehouse"]}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(purl_files.name, [name])
    outcomes = []
    for data in (first_bytes, second_bytes):
        (downloads / name).write_bytes(data)
        result = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back], partition_key=name,
                                instance=instance, resources=resources, raise_on_error=False)
        outcomes.append({c.check_name: c.passed for c in result.get_asset_check_evaluations()}["every_row_came_back"])
    assert outcomes == [False, True]  # the short first version failed its check; the full one passed
    received = data_dir / "received" / "idomoo"
    assert (received / name).read_bytes() == second_bytes
    assert (received / f"{name}~{hashlib.md5(first_bytes).hexdigest()[:12]}").read_bytes() == first_bytes


ZIP_CASES = {"path traversal member": "escape", "absolute path member": "escape", "zip bomb": "zip bomb",
             "two members with the same name": "exactly one file, holds 2", "truncated zip": "not a zip file",
             "corrupt compressed data": "the zip is damaged"}


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the duplicate member is the point
@pytest.mark.parametrize("case", list(ZIP_CASES))
def test_hostile_purl_zips(data_dir, case, request):
    request.node.add_marker(pytest.mark.fault("idomoo-purl", case, "refused before extraction, naming the file; file kept in quarantine"))
    upload, _, _ = _purl_env(data_dir, b"placeholder")
    name = "PURL_" + upload.name.replace(".csv", ".zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        if case == "path traversal member":
            zf.writestr("../../etc/evil.csv", "\n".join(_good_purl(upload)))
        elif case == "absolute path member":
            zf.writestr("/etc/evil.csv", "\n".join(_good_purl(upload)))
        elif case == "two members with the same name":
            zf.writestr("PURL.csv", "\n".join(_good_purl(upload)))
            zf.writestr("PURL.csv", "\n".join(_good_purl(upload)[:2]))
        else:
            zf.writestr("PURL.csv", b"0" * (50 << 20) if case == "zip bomb" else "\n".join(_good_purl(upload)))
    data = buffer.getvalue()[: len(buffer.getvalue()) // 2] if case == "truncated zip" else buffer.getvalue()
    if case == "corrupt compressed data":  # the index is intact; bytes inside the deflate stream are not
        start = data.index(b"PURL.csv") + len(b"PURL.csv") + 10
        data = data[:start] + bytes(b ^ 0x5A for b in data[start:start + 40]) + data[start + 40:]
    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    (downloads / name).write_bytes(data)
    defs = build_defs("local")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(purl_files.name, [name])
    result = dg.materialize([purl_results], partition_key=name, instance=instance, raise_on_error=False,
                            resources={"idomoo_destination": defs.resources["idomoo_destination"],
                                       "idomoo_settings": settings_from_env()})
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert name in message and ZIP_CASES[case] in message, message
    assert (data_dir / "quarantine" / "idomoo" / name).read_bytes() == data
    assert not Path("/etc/evil.csv").exists()


@pytest.mark.fault("sftp", "a symlink in the vendor's Downloads folder", "listed as nothing: never followed")
def test_symlinks_on_the_sftp_account_are_not_followed(data_dir, sftp_server, monkeypatch):
    env = sftp_server.env("idomoo")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    downloads = Path(sftp_server.root) / env["DELIVERY_IDOMOO_PREFIX"] / "Downloads"
    downloads.mkdir(parents=True)
    (downloads / "PURL_x.csv").symlink_to("/etc/passwd")
    (downloads / "PURL_x.csv.flg").write_text("")
    with destination_from_env("idomoo").process_config_and_initialize().get() as account:
        names = [f.name for f in account.list("Downloads/")]
    assert names == ["Downloads/PURL_x.csv.flg"]  # the link is not a file of the account
    assert ready_purls([FileInfo(n, 0, 1.0) for n in names], "Downloads", {})[0] == []


@pytest.mark.fault("idomoo-purl", "daemon killed mid-tick (cursor not saved)", "the next tick asks for the same run keys: Dagster runs each once")
def test_a_tick_repeated_from_the_old_cursor_requests_the_same_runs(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    assert run(instance=instance).success
    settings = settings_from_env()
    simulate(data_dir / "outbox" / "idomoo", settings)
    destination = build_defs("local").resources["idomoo_destination"]
    first = downloads_sensor(dg.build_sensor_context(instance=instance), destination, settings)
    again = downloads_sensor(dg.build_sensor_context(instance=instance), destination, settings)  # cursor lost
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in again.run_requests] != []


def test_error_files_from_idomoo_are_kept_and_surfaced(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    assert run(instance=instance).success
    [upload] = uploaded(data_dir)
    keys = [line.split(",")[0] for line in upload.read_text().splitlines()[1:3]]
    settings = settings_from_env()
    simulate(data_dir / "outbox" / "idomoo", settings, fail_keys=tuple(keys))
    name = "PURL_" + upload.name
    defs = build_defs("local")
    instance.add_dynamic_partitions(purl_files.name, [name])
    result = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back], partition_key=name,
                            instance=instance, raise_on_error=False,
                            resources={"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": settings,
                                       "ledger": defs.resources["ledger"], "warehouse": defs.resources["warehouse"]})
    assert result.success
    meta = result.asset_materializations_for_node("idomoo__purl_results")[0].metadata
    assert meta["error_rows"].value == 2
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "every_row_came_back")
    assert check.passed is False and "2 rows in Idomoo's error file" in check.description
    assert keys[0] in str(check.metadata["error_rows"].value)


def test_encrypted_purl_files_are_decrypted_with_our_key(data_dir, pgp_keys, tmp_path):
    gpg, fingerprint, public, home = pgp_keys
    instance = dg.DagsterInstance.ephemeral()
    assert run(instance=instance).success
    [upload] = uploaded(data_dir)
    settings = settings_from_env()
    simulate(data_dir / "outbox" / "idomoo", settings)
    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    plain = downloads / ("PURL_" + upload.name)
    encrypted = plain.with_suffix(".gpg")
    encrypted.write_bytes(gpg.encrypt(plain.read_bytes(), fingerprint, always_trust=True, armor=False).data)
    private = tmp_path / "ours.asc"
    private.write_text(gpg.export_keys(fingerprint, secret=True, passphrase="pw"))
    from delivery_platform.vendors.idomoo.assets import IdomooSettings

    ours = IdomooSettings(pgp_private_key_file=str(private), pgp_passphrase="pw")
    defs = build_defs("local")
    instance.add_dynamic_partitions(purl_files.name, [encrypted.name])
    result = dg.materialize([purl_results], partition_key=encrypted.name, instance=instance, raise_on_error=False,
                            resources={"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": ours})
    assert result.success
    assert result.asset_materializations_for_node("idomoo__purl_results")[0].metadata["rows"].value == \
        len(plain.read_text().splitlines()) - 1


def test_a_flag_without_its_purl_raises_one_alert(data_dir, tmp_path):
    from delivery_platform.alerts import AlertSinks
    from delivery_platform_tests.http_doubles import Recorder

    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    downloads.mkdir(parents=True)
    flag = downloads / "PURL_lost.csv.flg"
    flag.write_text("")
    old = time.time() - 3600
    os.utime(flag, (old, old))
    destination = build_defs("local").resources["idomoo_destination"]
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url + "/hook")
        instance = dg.DagsterInstance.ephemeral()
        for _ in range(2):  # two ticks: one alert
            downloads_sensor(dg.build_sensor_context(instance=instance), destination, settings_from_env(), sinks)
        assert len(hook.requests) == 1 and b"PURL_lost.csv.flg" in hook.requests[0][2]


def test_a_batch_is_uploaded_on_its_send_date_and_named_by_its_upload_time(data_dir):
    from delivery_platform.core import clock

    instance = dg.DagsterInstance.ephemeral()
    with clock.pinned("2026-11-15T05:00:07Z"):
        assert run("2026-11-15", instance=instance).success
        early = run("2026-11-16", instance=instance)  # tomorrow's batch is not sent today
    assert [p.name for p in uploaded(data_dir)] == ["acme_welcome_20261115_050007_01.csv"]
    assert not early.success
    # held by the readiness check on the recipients (a send date in the future)
    held = next(c for c in early.get_asset_check_evaluations() if c.check_name == "warehouse_has_the_day")
    assert held.passed is False and "2026-11-16 is in the future" in held.description
    # the daily schedule asks for today's send date, not yesterday's
    schedule = build_defs("local").resolve_schedule_def("idomoo_daily_schedule")
    import datetime as dt

    with dg.instance_for_test() as temp:
        tick = schedule.evaluate_tick(dg.build_schedule_context(
            instance=temp, scheduled_execution_time=dt.datetime(2026, 11, 21, 5, tzinfo=dt.timezone.utc)))
    assert [r.partition_key for r in tick.run_requests] == ["2026-11-21"]


def test_send_dates_built_in_the_same_second_never_share_a_name(data_dir):
    """A backfill builds several send dates within one second: the name carries that second, so each
    later one takes the next NN rather than repeat a name Idomoo already received."""
    from delivery_platform.core import clock

    instance = dg.DagsterInstance.ephemeral()
    with clock.pinned("2026-11-20T05:00:07Z"):
        results = [run(day, instance=instance) for day in ("2026-11-17", "2026-11-18", "2026-11-19")]
    assert all(r.success for r in results)
    names = [p.name for p in uploaded(data_dir)]
    assert sorted(names) == [f"acme_welcome_20261120_050007_0{n}.csv" for n in (1, 2, 3)]
    assert {d.partition_key for d in Ledger().history("idomoo", "data_file", status="delivered")} == {
        "2026-11-17", "2026-11-18", "2026-11-19"}


def test_the_data_file_is_signed_with_our_key_and_encrypted_to_idomoos(data_dir, pgp_keys, tmp_path):
    import gnupg

    _, _, idomoo_public, idomoo_home = pgp_keys
    ours_home = tempfile.mkdtemp(prefix="gpgo", dir="/tmp")
    try:
        ours = gnupg.GPG(gnupghome=ours_home)
        our_key = str(ours.gen_key(ours.gen_key_input(name_email="crm@acme.example", passphrase="ours-pw",
                                                      key_type="RSA", key_length=1024)))  # fast
        (tmp_path / "idomoo.asc").write_text(idomoo_public)
        (tmp_path / "ours.asc").write_text(ours.export_keys(our_key, secret=True, passphrase="ours-pw"))
        result = run(settings={"pgp_public_key_file": str(tmp_path / "idomoo.asc"),
                               "pgp_private_key_file": str(tmp_path / "ours.asc"),
                               "pgp_passphrase": "ours-pw"})
        assert result.success
        [path] = uploaded(data_dir)
        # Idomoo's side: its secret key decrypts, and our public key verifies the signature
        idomoo = gnupg.GPG(gnupghome=idomoo_home)
        idomoo.import_keys(ours.export_keys(our_key))
        decrypted = idomoo.decrypt(path.read_bytes(), passphrase="pw", always_trust=True)
        assert decrypted.ok and str(decrypted).startswith("RecipientID,FirstName")
        assert decrypted.valid and decrypted.fingerprint == our_key, decrypted.status
    finally:
        subprocess.run(["gpgconf", "--homedir", ours_home, "--kill", "gpg-agent"], capture_output=True)


@pytest.mark.fault("idomoo-purl", "a PURL whose flag is older than anything seen before (sftp put -p, vendor "
                   "clock behind, late re-send)",
                   "taken in: the cursor is what was seen, not a time watermark")
def test_a_purl_with_an_old_timestamp_is_still_taken_in():
    t0 = 1_800_000_000.0
    listing = [FileInfo("Downloads/PURL_b.csv", 10, t0), FileInfo("Downloads/PURL_b.csv.flg", 0, t0)]
    ready, cursor = ready_purls(listing, "Downloads", {})
    assert [r.name for r in ready] == ["Downloads/PURL_b.csv"]
    # a re-sent older batch keeps its original times: a day older than anything seen
    listing += [FileInfo("Downloads/PURL_a.csv", 12, t0 - 86_400),
                FileInfo("Downloads/PURL_a.csv.flg", 0, t0 - 86_400)]
    ready, cursor = ready_purls(listing, "Downloads", cursor)
    assert [r.name for r in ready] == ["Downloads/PURL_a.csv"]
    assert ready_purls(listing, "Downloads", cursor)[0] == []  # and only once
    # the same name again with other bytes but an older time is a new version: taken in again
    listing[2] = FileInfo("Downloads/PURL_a.csv", 14, t0 - 90_000)
    listing[3] = FileInfo("Downloads/PURL_a.csv.flg", 0, t0 - 90_000)
    assert [r.name for r in ready_purls(listing, "Downloads", cursor)[0]] == ["Downloads/PURL_a.csv"]


@pytest.mark.fault("idomoo-purl", "same-named PURL files in two sub-folders of Downloads",
                   "keyed by full path: two partitions, two stored tables, each run checks its own rows")
def test_same_named_purl_files_in_two_sub_folders_never_mix(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    assert run(instance=instance).success
    [upload] = uploaded(data_dir)
    good = _good_purl(upload)
    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    for folder, rows in (("a", good), ("b", good[:3])):  # b's copy is short: its check must fail, a's pass
        (downloads / folder).mkdir(parents=True)
        (downloads / folder / f"PURL_{upload.name}").write_text("\n".join(rows) + "\n")
        (downloads / folder / f"PURL_{upload.name}.flg").write_text("")
    settings = settings_from_env()
    defs = build_defs("local")
    destination = defs.resources["idomoo_destination"]
    tick = downloads_sensor(dg.build_sensor_context(instance=instance), destination, settings)
    keys = sorted(r.partition_key for r in tick.run_requests)
    assert keys == [f"a~PURL_{upload.name}", f"b~PURL_{upload.name}"]
    instance.add_dynamic_partitions(purl_files.name, keys)
    resources = {"idomoo_destination": destination, "idomoo_settings": settings,
                 "ledger": defs.resources["ledger"], "warehouse": defs.resources["warehouse"]}
    outcome = {}
    for request in sorted(tick.run_requests, key=lambda r: r.partition_key):
        result = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back],
                                instance=instance, partition_key=request.partition_key, tags=request.tags,
                                resources=resources)
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        outcome[request.partition_key[0]] = checks["every_row_came_back"]
    assert outcome == {"a": True, "b": False}
    stored = data_dir / "returns" / "idomoo_purls"
    counts = {k[0]: duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{stored / k}.parquet')")
              .fetchone()[0] for k in keys}
    assert counts == {"a": len(good) - 1, "b": 2}


def test_flags_off_a_purl_is_complete_when_unchanged_across_two_ticks():
    t0 = 1_800_000_000.0
    growing = [FileInfo("Downloads/PURL_x.csv", 100, t0)]
    ready, cursor = ready_purls(growing, "Downloads", {}, flags=False, now=t0)
    assert ready == []  # first sight: not yet known to be complete
    growing = [FileInfo("Downloads/PURL_x.csv", 250, t0 + 5)]  # still being written between ticks
    ready, cursor = ready_purls(growing, "Downloads", cursor, flags=False, now=t0 + 120)
    assert ready == []
    ready, cursor = ready_purls(growing, "Downloads", cursor, flags=False, now=t0 + 240)
    assert [(r.name, r.file.size) for r in ready] == [("Downloads/PURL_x.csv", 250)]
    assert ready_purls(growing, "Downloads", cursor, flags=False, now=t0 + 360)[0] == []
    # error files and flags are not PURL files
    others = [FileInfo("Downloads/ERROR_x.csv", 5, t0), FileInfo("Downloads/PURL_x.csv.flg", 0, t0)]
    _, c = ready_purls(others, "Downloads", {}, flags=False, now=t0)
    assert ready_purls(others, "Downloads", c, flags=False, now=t0 + 1)[0] == []


def test_flags_on_the_flag_decides_even_for_a_stable_file():
    t0 = 1_800_000_000.0
    listing = [FileInfo("Downloads/PURL_x.csv", 100, t0)]
    cursor = {}
    for tick in range(3):  # stable, but no flag: never taken in with flags on
        ready, cursor = ready_purls(listing, "Downloads", cursor, flags=True, now=t0 + tick)
        assert ready == []
    listing.append(FileInfo("Downloads/PURL_x.flg", 0, t0 + 10))  # the PURL_x.flg spelling
    assert [r.name for r in ready_purls(listing, "Downloads", cursor, flags=True, now=t0 + 20)[0]] == \
        ["Downloads/PURL_x.csv"]
    # a flag older than the PURL (the PURL is being rewritten) does not complete it
    rewritten = [FileInfo("Downloads/PURL_y.csv", 100, t0 + 50), FileInfo("Downloads/PURL_y.csv.flg", 0, t0)]
    assert ready_purls(rewritten, "Downloads", {}, flags=True, now=t0 + 60)[0] == []


@pytest.mark.parametrize("flags", [True, False])
def test_a_purl_that_never_completes_raises_one_alert_and_a_growing_file_is_not_taken_half_written(
        data_dir, flags):
    from delivery_platform.alerts import AlertSinks
    from delivery_platform.core import clock
    from delivery_platform_tests.http_doubles import Recorder

    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    downloads.mkdir(parents=True)
    purl = downloads / "PURL_stuck.csv"
    settings = settings_from_env().model_copy(update={"flags": flags, "orphan_flag_minutes": 30})
    destination = build_defs("local").resources["idomoo_destination"]
    instance, cursor, requested = dg.DagsterInstance.ephemeral(), None, []
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url + "/hook")
        for minute in range(0, 80, 10):  # the file grows on every tick (flags off) / never gets a flag (on)
            with purl.open("a") as handle:
                handle.write(f"row {minute}\n")
            os.utime(purl, (1_800_000_000 + minute, 1_800_000_000 + minute))
            at = dt.datetime(2026, 11, 21, 10, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minute)
            with clock.pinned(at):
                context = dg.build_sensor_context(instance=instance, cursor=cursor)
                result = downloads_sensor(context, destination, settings, sinks)
            cursor = result.cursor
            requested += result.run_requests
        assert requested == []  # never taken in half-written
        assert len(hook.requests) == 1 and b"PURL_stuck.csv never completed" in hook.requests[0][2]


def test_a_purl_not_back_in_time_raises_one_alert_naming_the_data_file(data_dir):
    from delivery_platform.alerts import AlertSinks
    from delivery_platform.core import clock
    from delivery_platform_tests.http_doubles import Recorder

    instance = dg.DagsterInstance.ephemeral()
    with clock.pinned("2026-11-15T05:00:00Z"):
        assert run("2026-11-15", instance=instance).success
    [upload] = uploaded(data_dir)
    settings = settings_from_env().model_copy(update={"purl_return_hours": 6})
    destination = build_defs("local").resources["idomoo_destination"]
    cursor = None
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url + "/hook")
        for at in ("2026-11-15T10:00Z", "2026-11-15T11:30Z", "2026-11-15T12:00Z"):
            with clock.pinned(at):
                context = dg.build_sensor_context(instance=instance, cursor=cursor)
                cursor = downloads_sensor(context, destination, settings, sinks).cursor
        assert len(hook.requests) == 1 and upload.name.encode() in hook.requests[0][2]
        # another upload whose PURL came back in time is never chased
        simulate(data_dir / "outbox" / "idomoo", settings)
        with clock.pinned("2026-11-16T12:00Z"):
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            downloads_sensor(context, destination, settings, sinks)
        assert len(hook.requests) == 1


@pytest.mark.fault("idomoo-purl", "a newer version of a PURL file is refused (truncated)",
                   "the older version's stored rows stay; both versions kept; nothing mixed")
def test_a_refused_newer_version_never_replaces_or_mixes_with_the_stored_rows(data_dir):
    upload, name, first = _purl_env(data_dir, b"placeholder")
    good = ("\n".join(_good_purl(upload)) + "\n").encode()
    downloads = data_dir / "outbox" / "idomoo" / "Downloads"
    defs = build_defs("local")
    resources = {"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": settings_from_env(),
                 "ledger": defs.resources["ledger"], "warehouse": defs.resources["warehouse"]}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(purl_files.name, [name])
    outcomes = []
    cut = hostile("truncated file", upload)
    for data in (good, cut):  # then Idomoo re-sends it cut short
        (downloads / name).write_bytes(data)
        outcomes.append(dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back],
                                       partition_key=name, instance=instance, resources=resources,
                                       raise_on_error=False).success)
    assert outcomes == [True, False]
    stored = data_dir / "returns" / "idomoo_purls" / f"{name}.parquet"
    count = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{stored}')").fetchone()[0]
    assert count == len(_good_purl(upload)) - 1  # the accepted version's rows, whole
    assert (data_dir / "quarantine" / "idomoo" / name).read_bytes() == cut


def test_each_storyboards_purl_file_is_read_with_its_own_columns(data_dir):
    """Two storyboards share the Downloads folder: a PURL file is read, checked and reconciled with
    the columns of the storyboard whose data file it answers (its name carries the project)."""
    from delivery_platform import simulators
    from delivery_platform.demo import run_daily

    defs, instance = build_defs("local"), dg.DagsterInstance.ephemeral()
    outcome = run_daily(defs, instance, "idomoo", DAY)
    assert outcome["success"]
    lines = simulators.answer("idomoo", defs, instance, outcome, DAY)
    purls = [line for line in lines if line.startswith("PURL ")]
    assert len(purls) == 2 and any("renewal" in line for line in purls), lines
    assert all("ingested" in line and "FAILED" not in line for line in purls), lines
