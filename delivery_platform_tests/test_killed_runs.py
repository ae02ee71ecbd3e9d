"""A run process killed with SIGKILL in the middle of a delivery: what the vendor sees, what the
ledger says, the alert raised, and the retry that completes it."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pytest

from delivery_platform.alerts import AlertSinks, deadline_alerts
from delivery_platform.alerts.sensors import AlertLog
from delivery_platform.vendors import DEADLINES
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform_tests.fixtures import wait_for
from delivery_platform_tests.fault_proxy import FaultProxy
from delivery_platform_tests.http_doubles import Recorder

DAY, FOLDER = "2026-11-18", "20261118/"
RUN_LOTAME = textwrap.dedent(f"""
    import dagster as dg
    from delivery_platform.definitions import build_defs
    job = build_defs("local").resolve_job_def("lotame_daily_delivery")
    job.execute_in_process(partition_key={DAY!r}, instance=dg.DagsterInstance.ephemeral())
""")


@pytest.mark.fault("ledger", "run process killed (SIGKILL) mid-delivery of the Lotame bundle on S3",
                   "no .md5 or .done at the vendor; ledger shows the transfer in flight; a deadline alert; the retry "
                   "takes over the dead run's claim and sends only the missing files")
def test_a_run_killed_mid_delivery_is_visible_alerted_and_completed_by_the_retry(data_dir, s3_server, monkeypatch,
                                                                                  ledger_backend):
    proxy = FaultProxy(s3_server.endpoint)
    env = s3_server.env("lotame", DELIVERY_LOTAME_S3_ENDPOINT_URL=proxy.url)
    bucket = env["DELIVERY_LOTAME_S3_BUCKET"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ledger = Ledger()
    proxy.hang_paths.append(".md5")  # the second file's upload never gets an answer
    child = subprocess.Popen([sys.executable, "-c", RUN_LOTAME], env=dict(os.environ),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(d.file_name.endswith(".md5") and d.status == "publishing"
                             for d in ledger.attempts("lotame", "segmentmembership", DAY)), what="the .md5 upload")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        proxy.close()

    # what the vendor sees: the data file, but neither its .md5 nor the .done marker
    listing = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(o["Key"] for o in listing) == [FOLDER + "segmentmembership.json.gz"]
    # what the ledger says: the transfer of the .md5 is in flight, the partition is not complete
    status = {d.file_name: d.status for d in ledger.attempts("lotame", "segmentmembership", DAY)}
    assert status == {FOLDER + "segmentmembership.json.gz": "delivered", FOLDER + "segmentmembership.json.gz.md5": "publishing"}
    assert ledger.partition_state("lotame", "segmentmembership", DAY) == "delivering"

    # the alert: past Lotame's deadline the partition is reported as not delivered, once
    with Recorder() as webhook:
        sinks = AlertSinks(webhook_url=webhook.url + "/hook")
        log = AlertLog(data_dir / "alerts.sqlite")
        late = dt.datetime(2026, 11, 19, 13, 0, tzinfo=dt.timezone.utc)
        alerts = [a for a in deadline_alerts(DEADLINES, ledger, log, sinks, late) if a.vendor == "lotame"]
        assert [a.kind for a in alerts if a.partition == DAY] == ["deadline_missed"]
        sent = [json.loads(r[2]) for r in webhook.requests]
        assert [p["detail"] for p in sent if p["vendor"] == "lotame" and p["partition"] == DAY] == [
            "delivery began but did not finish: some files are missing at the vendor"]
        assert deadline_alerts(DEADLINES, ledger, log, sinks, late + dt.timedelta(minutes=15)) == []  # once

    # the retry (a new run, as Dagster's run retry would start) takes over the dead run's claim
    for key, value in s3_server.env("lotame", DELIVERY_LOTAME_S3_BUCKET=bucket).items():
        monkeypatch.setenv(key, value)
    retry = build_defs("local").resolve_job_def("lotame_daily_delivery").execute_in_process(
        partition_key=DAY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert retry.success
    attempts = ledger.attempts("lotame", "segmentmembership", DAY)
    data = [d for d in attempts if d.file_name.endswith(".json.gz")]
    assert [d.status for d in data] == ["delivered"]  # the data file was not sent twice
    md5 = [d for d in attempts if d.file_name.endswith(".md5")]
    assert [d.status for d in md5] == ["failed", "delivered"]
    assert md5[0].error.startswith("abandoned: run") and "process is gone" in md5[0].error
    listing = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(o["Key"] for o in listing) == [FOLDER + "20261118.done", FOLDER + "segmentmembership.json.gz",
                                                FOLDER + "segmentmembership.json.gz.md5"]
    assert ledger.partition_state("lotame", "segmentmembership", DAY) == "complete"
    fresh_log = AlertLog(data_dir / "alerts-after.sqlite")
    assert not [a for a in deadline_alerts(DEADLINES, ledger, fresh_log, AlertSinks(), late)
                if a.vendor == "lotame" and a.partition == DAY]


def _purl(keys: list[str]) -> bytes:
    """A PURL file in the default storyboard's columns plus the two Idomoo adds."""
    rows = ["RecipientID,FirstName,LastName,Email,Language,OfferCode,City,Points,thumbnail_1,landingPage"] + [
        f"{k},Ann,Lee,{k}@example.com,en,OFF10,Leeds,12,https://t.example/{k}.jpg,https://lp.example/{k}" for k in keys]
    return ("\n".join(rows) + "\n").encode()


@pytest.mark.slow
@pytest.mark.fault("idomoo-purl", "the real dagster-daemon killed (SIGKILL) mid-sensor-tick, then restarted",
                   "the restarted daemon runs each PURL file exactly once; nothing received is lost")
def test_the_daemon_killed_mid_tick_runs_each_purl_once_after_restart(data_dir, sftp_server, tmp_path, monkeypatch):
    from delivery_platform_tests.fault_proxy import TcpFaultProxy

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proxy = TcpFaultProxy(sftp_server.port)
    env = sftp_server.env("idomoo", DELIVERY_IDOMOO_SFTP_PORT=str(proxy.port))
    downloads = sftp_server.root / env["DELIVERY_IDOMOO_PREFIX"] / "Downloads"
    downloads.mkdir(parents=True)
    names = [f"PURL_acme_demo_20261118_0600{i:02d}_01.csv" for i in range(3)]
    for i, name in enumerate(names):
        (downloads / name).write_bytes(_purl([f"r{i}a", f"r{i}b"]))
        (downloads / (name + ".flg")).write_bytes(b"")
    env.update(DAGSTER_HOME=str(home), IDOMOO_SENSOR_INTERVAL_SECONDS="1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bin_dir = os.path.dirname(sys.executable)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([os.path.join(bin_dir, "dagster"), "sensor", "start", "idomoo_downloads_sensor", "-w",
                    "workspace.yaml"], cwd=root, env=dict(os.environ), check=True, capture_output=True, timeout=120)

    def daemon(log_name):
        return subprocess.Popen([os.path.join(bin_dir, "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=root,
                                env=dict(os.environ), stdout=open(tmp_path / log_name, "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    instance = dg.DagsterInstance.get()
    proxy.stall(60)  # the first tick's SFTP session stops answering: the tick is in progress, not finished
    first = daemon("daemon-1.log")
    try:
        wait_for(lambda: proxy.fired, timeout=120, what="the first tick to reach the SFTP server")
        time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert instance.get_runs() == []  # killed before the tick could request anything

        second = daemon("daemon-2.log")
        try:
            def finished():
                runs = instance.get_runs()
                done = [r for r in runs if r.is_finished]
                return runs if len(done) >= len(names) else None
            wait_for(finished, timeout=240, what="three PURL runs to finish")
            time.sleep(4)  # several more ticks over the same folder
            runs = instance.get_runs()
        finally:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        proxy.close()
    log = (tmp_path / "daemon-2.log").read_text()[-3000:]
    assert sorted(r.tags.get("dagster/partition") for r in runs) == sorted(names), log
    failures = [e.dagster_event.event_specific_data.error.message for r in runs
                for e in instance.all_logs(r.run_id) if e.dagster_event and e.dagster_event.is_step_failure]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), failures
    for name in names:  # nothing received is lost: our copy and the vendor's file are both there
        assert (data_dir / "received" / "idomoo" / name).read_bytes() == (downloads / name).read_bytes()
