"""Preflight probes against the real local servers: each kind passes when things are right and fails,
with its remedy, when they are not (expired key, wrong host key, denied write, token 401, empty
warehouse day, a missing secret); a failed preflight alerts once however often it is launched."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from delivery_platform.alerts import AlertSinks, process_run
from delivery_platform.alerts.sensors import AlertLog
from delivery_platform.definitions import build_defs
from delivery_platform.destinations import destination_from_env
from delivery_platform.vendors.ispot.uploader import ispot_api_from_env
from delivery_platform.operations import delivery_keys, preflight, probes
from delivery_platform.vendors import deliverable, deliverables, vendor
from delivery_platform.warehouse.resource import WarehouseResource
from delivery_platform_tests.http_doubles import Recorder
from delivery_platform_tests.ispot_api_double import ISpotApiServer
from delivery_platform_tests.servers import AZURITE_ACCOUNT, AZURITE_KEY
from delivery_platform_tests.warehouses import event, events_warehouse, table_warehouse

DAY = dt.date(2026, 11, 20)  # yesterday by the suite's pinned clock
DELIVERABLES = deliverables()
BY_KEY = {d.delivery_key: d for d in DELIVERABLES}
(LOTAME,) = vendor("lotame").deliverables
CUSTOMERS = deliverable("optimove", "customers")


def _set(monkeypatch, env: dict) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def _write_probe(vendor_deliverable, tmp_path):
    resource = destination_from_env(vendor_deliverable.vendor)
    checked, resolved = probes.credentials(resource)
    assert checked.passed, checked.text()
    return probes.write_probe(resolved, vendor_deliverable, tmp_path)


# --- every deliverable is covered; schedules run an hour early -----------------------------------
def test_every_delivery_asset_has_preflight_drift_and_a_schedule_an_hour_early():
    defs = build_defs("local")
    assert set(delivery_keys(defs)) == set(BY_KEY)  # a new deliverable needs its entry
    check_keys = {key for checks in defs.asset_checks for key in checks.check_keys}
    assert {dg.AssetCheckKey(key, "drift") for key in BY_KEY} <= check_keys
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["ispot_preflight_schedule"].cron_schedule == "0 11 * * *"  # iSpot's run is at 12:00
    assert schedules["lotame_preflight_schedule"].cron_schedule == "0 5 * * *"
    for name in {d.vendor for d in DELIVERABLES}:
        assert defs.resolve_job_def(f"{name}_preflight").partitions_def is None  # launchable as is


# --- write / stat / delete on every store -------------------------------------------------------
def test_write_probe_on_s3_leaves_nothing_and_never_a_name_lotame_imports(
    data_dir, s3_server, monkeypatch, tmp_path
):
    env = s3_server.env("lotame")
    _set(monkeypatch, env)
    result = _write_probe(LOTAME, tmp_path)
    assert result.passed, result.text()
    name = result.metadata["probe_object"].split("/", 3)[-1]
    assert not name[:8].isdigit() and not name.endswith(".done")  # not in a YYYYMMDD folder, no marker
    listing = s3_server.client().list_objects_v2(Bucket=env["DELIVERY_LOTAME_S3_BUCKET"])
    assert listing.get("KeyCount", 0) == 0


def test_write_probe_on_gcs(data_dir, gcs_server, monkeypatch, tmp_path):
    env = gcs_server.env("lotame")
    _set(monkeypatch, env)
    result = _write_probe(LOTAME, tmp_path)
    assert result.passed, result.text()
    assert list(gcs_server.client().list_blobs(env["DELIVERY_LOTAME_GCS_BUCKET"])) == []


def test_write_probe_on_azurite_three_folders_deep_for_optimove(
    data_dir, azurite_server, monkeypatch, tmp_path
):
    env = azurite_server.env("optimove")
    _set(monkeypatch, env)
    result = _write_probe(CUSTOMERS, tmp_path)
    assert result.passed, result.text()
    assert result.metadata["probe_object"].count("/") >= 3 + 4  # scheme, account, container + 3 folders
    container = azurite_server.service().get_container_client(env["DELIVERY_OPTIMOVE_AZURE_CONTAINER"])
    assert list(container.list_blobs()) == []


def test_denied_write_fails_with_the_remedy(data_dir, azurite_server, monkeypatch, tmp_path):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    env = azurite_server.env("optimove")
    container = env["DELIVERY_OPTIMOVE_AZURE_CONTAINER"]
    read_only = generate_container_sas(
        AZURITE_ACCOUNT,
        container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
    )
    env.pop("DELIVERY_OPTIMOVE_AZURE_ACCOUNT_KEY")
    monkeypatch.delenv("DELIVERY_OPTIMOVE_AZURE_ACCOUNT_KEY", raising=False)
    _set(monkeypatch, {**env, "DELIVERY_OPTIMOVE_AZURE_SAS_TOKEN": read_only})
    result = _write_probe(CUSTOMERS, tmp_path)  # the credentials (a listing) pass: reading is allowed
    assert not result.passed
    assert result.detail.startswith("write of the empty probe object")
    assert "write and delete rights" in result.remedy
    assert read_only not in result.text()


# --- SFTP: host key and write ----------------------------------------------------------------------
def test_sftp_host_key_matches_the_pin_and_the_write_probe_passes(
    data_dir, sftp_server, monkeypatch, tmp_path
):
    _set(monkeypatch, sftp_server.env("lotame"))
    resource = destination_from_env("lotame")
    assert probes.sftp_host_key(resource).passed
    result = _write_probe(LOTAME, tmp_path)
    assert result.passed, result.text()
    assert not any(p.name.startswith("_preflight") for p in sftp_server.root.rglob("*"))


def test_a_wrong_host_key_fails(data_dir, sftp_server, monkeypatch):
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    _set(monkeypatch, sftp_server.env("lotame", DELIVERY_LOTAME_SFTP_HOST_KEY=f"{other[0]} {other[1]}"))
    result = probes.sftp_host_key(destination_from_env("lotame"))
    assert not result.passed and not result.warn_only
    assert "not the pinned" in result.detail and "confirm the new key with the vendor" in result.remedy
    assert result.metadata["seen_fingerprint"] != result.metadata["pinned_fingerprints"][0]


def test_no_pinned_host_key_is_a_warning_naming_the_key_to_pin(data_dir, sftp_server, monkeypatch):
    env = sftp_server.env("lotame")
    env.pop("DELIVERY_LOTAME_SFTP_HOST_KEY")
    monkeypatch.delenv("DELIVERY_LOTAME_SFTP_HOST_KEY", raising=False)
    _set(monkeypatch, env)
    result = probes.sftp_host_key(destination_from_env("lotame"))
    assert not result.passed and result.warn_only
    assert sftp_server.host_key.split()[1] in result.remedy


def test_a_missing_secret_fails_the_credentials_probe_by_name(data_dir, sftp_server, monkeypatch):
    env = sftp_server.env("lotame")
    _set(monkeypatch, env)
    resource = destination_from_env("lotame")  # the password becomes an EnvVar, read when the run starts
    monkeypatch.delenv("DELIVERY_LOTAME_SFTP_PASSWORD")
    result, resolved = probes.credentials(resource)
    assert not result.passed and resolved is None
    assert "DELIVERY_LOTAME_SFTP_PASSWORD is not set" in result.detail
    assert env["DELIVERY_LOTAME_SFTP_PASSWORD"] not in result.text()


# --- iSpot token ---------------------------------------------------------------------------------
def test_ispot_token_answers_and_a_401_fails(data_dir, monkeypatch):
    with ISpotApiServer() as api:
        _set(
            monkeypatch,
            {
                "ISPOT_API_BASE_URL": api.url,
                "ISPOT_CLIENT_ID": api.state.client_id,
                "ISPOT_CLIENT_SECRET": api.state.client_secret,
            },
        )
        assert probes.ispot_token(ispot_api_from_env()).passed
        assert api.state.token_requests == 1
        monkeypatch.setenv("ISPOT_CLIENT_SECRET", "W" * 40)
        result = probes.ispot_token(ispot_api_from_env())
    assert not result.passed and result.metadata["status"] == 401
    assert "ISPOT_CLIENT_SECRET" in result.remedy and "W" * 40 not in result.text()


# --- PGP -------------------------------------------------------------------------------------------
def _gpg_key(name: str, expire: str = "0", faked: str | None = None) -> tuple[str, str]:
    """(public, secret) ASCII-armoured ed25519/cv25519 keys, made with gpg in a throwaway home."""
    home = tempfile.mkdtemp(prefix="gk", dir="/tmp")
    base = ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    base += ["--faked-system-time", faked] if faked else []
    try:
        subprocess.run(
            base + ["--quick-gen-key", f"{name} <{name}@example.com>", "ed25519", "sign,cert", expire],
            check=True,
            capture_output=True,
        )
        fpr = next(
            line.split(":")[9]
            for line in subprocess.run(
                ["gpg", "--homedir", home, "--with-colons", "--list-keys"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()
            if line.startswith("fpr:")
        )
        subprocess.run(
            base + ["--quick-add-key", fpr, "cv25519", "encr", expire], check=True, capture_output=True
        )
        public = subprocess.run(
            ["gpg", "--homedir", home, "--armor", "--export", fpr], capture_output=True, text=True, check=True
        ).stdout
        secret = subprocess.run(
            base + ["--armor", "--export-secret-keys", fpr], capture_output=True, text=True, check=True
        ).stdout
        return public, secret
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True, check=False
        )


def test_pgp_keys_encrypt_and_sign_and_an_expired_key_fails(tmp_path):
    vendor_pub, _ = _gpg_key("idomoo")
    _, ours = _gpg_key("acme")
    (tmp_path / "idomoo.asc").write_text(vendor_pub)
    (tmp_path / "ours.asc").write_text(ours)
    good = probes.pgp_keys(str(tmp_path / "idomoo.asc"), str(tmp_path / "ours.asc"), "")
    assert good.passed, good.text()
    assert "encrypts" in good.detail and "signs" in good.detail

    old_pub, _ = _gpg_key("idomoo-old", expire="1d", faked="20200101T000000")
    (tmp_path / "old.asc").write_text(old_pub)
    expired = probes.pgp_keys(str(tmp_path / "old.asc"))
    assert not expired.passed
    assert "expired on 2020-01-02" in expired.detail and "renewed public key" in expired.remedy

    missing = probes.pgp_keys(str(tmp_path / "nowhere.asc"))
    assert not missing.passed and "does not exist" in missing.detail


# --- the warehouse has the day's data --------------------------------------------------------------
def test_warehouse_day_passes_on_the_seeded_day_and_fails_on_an_empty_one(data_dir, tmp_path, monkeypatch):
    ispot = BY_KEY[dg.AssetKey(["ispot", "conversions_delivery"])]
    seeded = probes.warehouse_day(WarehouseResource(), ispot, DAY)
    assert seeded.passed and seeded.metadata["rows"] > 0
    only_the_day_before = events_warehouse(tmp_path / "w.duckdb", [event("2026-11-19 10:00:00")])
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(only_the_day_before))
    empty = probes.warehouse_day(WarehouseResource(), ispot, DAY)
    assert not empty.passed and empty.metadata["rows"] == 0
    assert "0 rows for 2026-11-20" in empty.detail and "load of ispot_conversion_events" in empty.remedy
    stale = probes.warehouse_day(WarehouseResource(), ispot, dt.date(2026, 11, 19), slack_hours=1)
    assert not stale.passed and "partly loaded" in stale.detail  # loaded up to 10:00 of that day only


# --- the job: results as checks, one alert however often it runs ---------------------------------
def test_the_preflight_job_reports_each_probe_and_alerts_once(data_dir, sftp_server, monkeypatch, tmp_path):
    _set(monkeypatch, sftp_server.env("lotame"))
    # the table is there and loaded, with nothing in it
    empty = table_warehouse(tmp_path / "w.duckdb", {"lotame_segment_memberships": []})
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(empty))
    with Recorder() as hook:
        defs = build_defs("local")
        job = defs.resolve_job_def("lotame_preflight")
        instance = dg.DagsterInstance.ephemeral()
        sinks = AlertSinks(webhook_url=hook.url + "/hook")
        runs = [job.execute_in_process(instance=instance, resources={"alert_sinks": sinks}) for _ in range(2)]
        # the check-alert sensor leaves preflight checks to the preflight: no second alert for them
        assert process_run(instance, runs[0].run_id, sinks, AlertLog()) == []
    evaluations = {e.check_name: e for e in runs[0].get_asset_check_evaluations()}
    assert set(evaluations) == {
        "preflight_credentials",
        "preflight_sftp_host_key",
        "preflight_write_probe",
        "preflight_warehouse_day",
    }
    assert all(
        evaluations[n].passed
        for n in ("preflight_credentials", "preflight_sftp_host_key", "preflight_write_probe")
    )
    failed = evaluations["preflight_warehouse_day"]
    assert not failed.passed and "Remedy:" in failed.description
    assert failed.metadata["remedy"].value.startswith("check that the load")
    assert all(r.success for r in runs)  # a failed probe is a failed check, not a crashed run
    assert len(hook.requests) == 1  # the second launch did not alert again
    alert = json.loads(hook.requests[0][2])
    assert alert["kind"] == "preflight_failed" and alert["partition"] == "2026-11-20"
    assert "warehouse_day" in alert["title"] and sftp_server.password not in hook.requests[0][2].decode()
    keys = [k for k in _sent_keys(AlertLog().path) if k.startswith("preflight:")]
    assert keys == ["preflight:lotame:segmentmembership:2026-11-20:warehouse_day"]
    con = sqlite3.connect(AlertLog().path)
    state = con.execute("SELECT failing FROM check_state WHERE subject LIKE 'preflight/lotame/%'").fetchall()
    con.close()
    assert state == [(1,)]  # open on the status page until a preflight of the day passes


def _sent_keys(path: Path) -> list[str]:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT key FROM alerts_sent ORDER BY key")]
    finally:
        con.close()


def test_the_ispot_preflight_against_the_api_double(data_dir, monkeypatch):
    with ISpotApiServer() as api:
        _set(
            monkeypatch,
            {
                "ISPOT_API_BASE_URL": api.url,
                "ISPOT_CLIENT_ID": api.state.client_id,
                "ISPOT_CLIENT_SECRET": api.state.client_secret,
            },
        )
        results = preflight.run_probes(
            vendor("ispot"), BY_KEY[dg.AssetKey(["ispot", "conversions_delivery"])], DAY, WarehouseResource()
        )
    by_name = {r.probe: r for r in results}
    assert [r.probe for r in results] == ["credentials", "ispot_token", "write_probe", "warehouse_day"]
    assert all(r.passed for r in results), [r.text() for r in results]
    assert by_name["write_probe"].metadata == {"skipped": True} and "iSpot" in by_name["write_probe"].detail


@pytest.mark.parametrize("name", ["digital_audience", "idomoo"])
def test_vendors_without_an_ignored_name_skip_the_write_probe_and_say_why(name, data_dir, tmp_path):
    d = vendor(name).deliverables[0]
    result = probes.write_probe(None, d, tmp_path)
    assert result.passed and result.metadata == {"skipped": True}
    assert result.detail.startswith("skipped:") and "document names no" in result.detail


def test_the_idomoo_preflight_over_sftp_with_pgp(data_dir, sftp_server, monkeypatch, tmp_path):
    env = sftp_server.env("idomoo")
    _set(monkeypatch, env)
    public, _ = _gpg_key("idomoo")
    (tmp_path / "idomoo.asc").write_text(public)
    monkeypatch.setenv("IDOMOO_PGP_PUBLIC_KEY_FILE", str(tmp_path / "idomoo.asc"))
    idomoo = deliverable("idomoo", "data_file")
    without_uploads = {r.probe: r for r in preflight.run_probes(vendor("idomoo"), idomoo, DAY, WarehouseResource())}
    assert (
        not without_uploads["credentials"].passed
        and "Uploads does not exist" in without_uploads["credentials"].detail
    )
    (sftp_server.root / env["DELIVERY_IDOMOO_PREFIX"] / "Uploads").mkdir()
    results = preflight.run_probes(vendor("idomoo"), idomoo, DAY, WarehouseResource())
    assert [r.probe for r in results] == [
        "credentials",
        "sftp_host_key",
        "pgp_keys",
        "write_probe",
        "warehouse_day",
    ]
    assert all(r.passed for r in results), [r.text() for r in results]
