"""Lotame bundles: exact bytes, comprehensive/delta sequences against the ledger, S3/GCS/SFTP delivery."""

from __future__ import annotations

import gzip
import hashlib
import json

import dagster as dg
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.destinations import destination_from_env
from delivery_platform.ledger import Ledger
from delivery_platform_tests.warehouses import table_warehouse

UUID = "1e441dc0-9c5a-4357-a8f5-74a58143c83a"


def run(partition, settings=None, instance=None):
    job = build_defs("local").resolve_job_def("lotame_daily_delivery")
    config = {"resources": {"lotame_settings": {"config": settings}}} if settings else None
    return job.execute_in_process(partition_key=partition, instance=instance or dg.DagsterInstance.ephemeral(),
                                  raise_on_error=False, run_config=config)


def checks(result):
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def meta(result, node):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def lotame_warehouse(path, users, memberships):
    return table_warehouse(path, {"lotame_users": users, "lotame_segment_memberships": memberships})


def user(userid, idtype="PANO", consent=True, tcf=None, country="us", ip="66.87.152.32"):
    return {"userid": userid, "idtype": idtype, "consent": consent, "tcfconsent": tcf, "country": country,
            "last_ip": ip, "last_ip_seen_at": "2026-11-18 10:00:00"}


def member(userid, segment, start="2026-11-01", end=None, seen="2026-11-18 12:00:00"):
    return {"userid": userid, "segment": segment, "valid_from": start, "valid_to": end, "last_seen_at": seen}


@pytest.fixture
def tiny(tmp_path, data_dir, monkeypatch):
    def make(users, memberships):
        path = lotame_warehouse(tmp_path / "lotame.duckdb", users, memberships)
        monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    return make


def test_golden_bundle_of_a_small_day(tiny, data_dir):
    tiny([user(UUID, idtype="idfa", country="GB"), user("u000000002", tcf="CPXXXX.YAAA", consent=None, ip="2001:db8::1"),
          user("u000000003", idtype="FOOID"), user("u000000004", consent=False)],
         [member(UUID, "seg_travel_lux"), member(UUID, "seg_gamers"), member("u000000002", "seg_parents"),
          member("u000000003", "seg_parents"), member("u000000004", "seg_parents"),
          member("u000000002", "seg_old", end="2026-11-10")])
    result = run("2026-11-19")
    assert result.success
    folder = data_dir / "outbox" / "lotame" / "20261119"
    assert sorted(p.name for p in folder.iterdir()) == ["20261119.done", "segmentmembership.json.gz",
                                                       "segmentmembership.json.gz.md5"]
    data = (folder / "segmentmembership.json.gz").read_bytes()
    assert gzip.decompress(data) == (
        b'{"userid":"1e441dc0-9c5a-4357-a8f5-74a58143c83a","idtype":"IDFA","segments":[{"name":"seg_gamers",'
        b'"timestamp":1795003200},{"name":"seg_travel_lux","timestamp":1795003200}],"ips":[{"ip":"66.87.152.32",'
        b'"timestamps":["1794996000"]}],"country":"GB","consent":true}\n'
        b'{"userid":"u000000002","idtype":"PANO","segments":[{"name":"seg_parents","timestamp":1795003200}],'
        b'"country":"US","tcfconsent":"CPXXXX.YAAA"}\n')
    assert (folder / "segmentmembership.json.gz.md5").read_text() == \
        f"{hashlib.md5(data).hexdigest()}  segmentmembership.json.gz\n"
    assert (folder / "20261119.done").read_bytes() == b""
    staged = meta(result, "lotame__segment_memberships")
    assert (staged["excluded_unsupported_idtype"], staged["excluded_no_consent"], staged["ipv6_dropped_from_ips"]) == (1, 1, 1)
    delivered = sorted(Ledger().delivered("lotame", "segmentmembership", "2026-11-19"), key=lambda d: d.id)
    assert [d.file_name for d in delivered][-1] == "20261119/20261119.done"  # the marker last


def test_segments_as_strings(tiny, data_dir):
    tiny([user("u1")], [member("u1", "a"), member("u1", "b")])
    assert run("2026-11-19", {"segments_as_strings": True}).success
    line = gzip.decompress((data_dir / "outbox/lotame/20261119/segmentmembership.json.gz").read_bytes())
    assert json.loads(line)["segments"] == ["a", "b"]


def test_delta_sequence_with_removals_and_the_forced_comprehensive(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    settings = {"mode": "delta", "full_refresh_days": 3}
    modes, removed = [], 0
    for day in ("2026-11-12", "2026-11-13", "2026-11-14", "2026-11-15", "2026-11-16"):
        result = run(day, settings, instance)
        assert result.success, day
        assert checks(result)["consistent_with_deliveries"].passed
        staged = meta(result, "lotame__segment_memberships")
        modes.append(staged["mode"])
        removed += staged["segments_removed"]
    assert modes == ["comprehensive", "delta", "delta", "comprehensive", "delta"]
    assert removed > 0
    lines = gzip.decompress((data_dir / "outbox/lotame/20261113/segmentmembership.json.gz").read_bytes()).splitlines()
    records = [json.loads(line) for line in lines]
    assert any("remove" in r for r in records) and all(set(r) >= {"userid", "idtype", "segments"} for r in records)


def test_delta_is_computed_against_what_was_delivered_not_yesterdays_source(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    assert run("2026-11-12", {"mode": "delta"}, instance).success
    # 2026-11-13 is never delivered: the delta for the 14th must cover both days of change
    result = run("2026-11-14", {"mode": "delta"}, instance)
    assert result.success and meta(result, "lotame__segment_memberships")["previous_delivery"] == "2026-11-12"
    assert checks(result)["consistent_with_deliveries"].passed


@pytest.mark.parametrize("bad,expect", [
    ("duplicate", "field_uniqueness"), ("userid", "str_matches"),
])
def test_bad_ids_fail_the_spec_and_nothing_is_delivered(tiny, data_dir, bad, expect):
    users = [user("u1"), user("u1")] if bad == "duplicate" else [user("john@example.com")]
    tiny(users, [member(u["userid"], "a") for u in users[:1]])
    result = run("2026-11-19")
    assert not result.success
    spec = checks(result)["spec"]
    assert not spec.passed and expect in spec.metadata["failed_rules"].value
    assert not (data_dir / "outbox").exists()


@pytest.mark.parametrize("store", ["s3_server", "gcs_server", "sftp_server"])
def test_the_bundle_lands_on_each_store_with_the_marker_last(data_dir, monkeypatch, request, store):
    server = request.getfixturevalue(store)
    for key, value in server.env("lotame").items():
        monkeypatch.setenv(key, value)
    result = run("2026-11-18")
    assert result.success
    with destination_from_env("lotame").process_config_and_initialize().get() as dest:
        names = [f.name for f in dest.list("20261118/")]
        assert names == ["20261118/20261118.done", "20261118/segmentmembership.json.gz",
                         "20261118/segmentmembership.json.gz.md5"]
        with dest.open("20261118/segmentmembership.json.gz") as s:
            data = s.read()
        with dest.open("20261118/segmentmembership.json.gz.md5") as s:
            assert s.read().decode().split()[0] == hashlib.md5(data).hexdigest()
    order = [d.file_name for d in sorted(Ledger().delivered("lotame", "segmentmembership", "2026-11-18"), key=lambda d: d.id)]
    assert order[-1].endswith(".done")


@pytest.mark.fault("s3", "upload fails mid-bundle (a conflicting .md5 already at the destination)",
                   "no .done published; the ledger records the failure; a retry sends only what is missing")
def test_a_failed_upload_leaves_no_marker_and_a_retry_completes(data_dir, monkeypatch, s3_server, tmp_path):
    env = s3_server.env("lotame")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = s3_server.client()
    client.put_object(Bucket=env["DELIVERY_LOTAME_S3_BUCKET"], Key="20261118/segmentmembership.json.gz.md5", Body=b"x")
    instance = dg.DagsterInstance.ephemeral()
    first = run("2026-11-18", instance=instance)
    assert not first.success
    with destination_from_env("lotame").process_config_and_initialize().get() as dest:
        assert not dest.exists("20261118/20261118.done")
    statuses = {d.file_name: d.status for d in Ledger().attempts("lotame", "segmentmembership", "2026-11-18")}
    assert statuses["20261118/segmentmembership.json.gz"] == "delivered"
    assert statuses["20261118/segmentmembership.json.gz.md5"] == "failed"
    client.delete_object(Bucket=env["DELIVERY_LOTAME_S3_BUCKET"], Key="20261118/segmentmembership.json.gz.md5")
    second = run("2026-11-18", instance=instance)
    assert second.success
    attempts = Ledger().attempts("lotame", "segmentmembership", "2026-11-18")
    assert sum(1 for d in attempts if d.file_name.endswith(".json.gz")) == 1  # data not sent twice
    with destination_from_env("lotame").process_config_and_initialize().get() as dest:
        assert dest.exists("20261118/20261118.done")


def test_a_large_day_is_split_into_numbered_files_each_with_its_md5(data_dir):
    result = run("2026-11-18", {"split_bytes": 3000, "gzip_level": 1})
    assert result.success
    folder = data_dir / "outbox" / "lotame" / "20261118"
    names = sorted(p.name for p in folder.iterdir())
    data = [n for n in names if n.endswith(".json.gz")]
    assert len(data) > 2 and data[0] == "segmentmembership.001.json.gz" and "segmentmembership.json.gz" not in names
    records = []
    for name in data:
        blob = (folder / name).read_bytes()
        assert (folder / f"{name}.md5").read_text() == f"{hashlib.md5(blob).hexdigest()}  {name}\n"
        records += gzip.decompress(blob).splitlines()
    ids = [json.loads(r)["userid"] for r in records]
    assert len(ids) == len(set(ids)) == meta(result, "lotame__segment_memberships")["rows"]
    order = [d.file_name for d in sorted(Ledger().delivered("lotame", "segmentmembership", "2026-11-18"), key=lambda d: d.id)]
    assert order[-1] == "20261118/20261118.done" and len(order) == 2 * len(data) + 1


def test_bytes_that_lose_the_removals_are_blocked(data_dir, monkeypatch):
    """The removals clear what Lotame holds (R11, R12): a writer bug that drops `remove` from the
    lines must stop the day before anything is sent."""
    from delivery_platform.vendors.lotame import assets

    instance = dg.DagsterInstance.ephemeral()
    assert run("2026-11-12", {"mode": "delta"}, instance).success
    original = assets.record_line_sql
    monkeypatch.setattr(assets, "record_line_sql",
                        lambda as_strings: original(as_strings).replace("\"remove\"", "\"dropped\""))
    result = run("2026-11-13", {"mode": "delta"}, instance)
    assert not result.success
    check = checks(result)["files_match_spec"]
    assert not check.passed and "segments in 'remove'" in check.description
    assert not (data_dir / "outbox" / "lotame" / "20261113").exists()
