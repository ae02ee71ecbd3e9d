"""Alerts for failed checks, failed runs, recoveries and missed deadlines: once each, to a real SMTP
server (aiosmtpd), a webhook and a Slack API double on 127.0.0.1, never with a secret or raw PII."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from delivery_platform.alerts import AlertSinks, deadline_alerts, process_run
from delivery_platform.alerts.sensors import AlertLog
from delivery_platform.vendors import DEADLINES
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform_tests.http_doubles import Recorder
from delivery_platform_tests.warehouses import event, events_warehouse

SLACK_TOKEN = "xoxb-CANARY-slack-token-0000"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"


@pytest.fixture
def sinks():
    inbox = Inbox()
    from delivery_platform_tests.servers import _free_port

    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    with Recorder() as webhook, Recorder() as slack:
        yield AlertSinks(slack_token=SLACK_TOKEN, slack_channel="#deliveries", slack_base_url=slack.url + "/api/",
                         smtp_host="127.0.0.1", smtp_port=port, email_to="oncall@example.com",
                         webhook_url=webhook.url + "/hook", ui_url="http://dagster.example"), inbox, webhook, slack
    controller.stop()


def run_ispot(partition="2026-11-19"):
    job = build_defs("local").resolve_job_def("ispot_daily_delivery")
    return job.execute_in_process(partition_key=partition, instance=INSTANCE, raise_on_error=False)


INSTANCE = None


def test_failed_check_run_failure_and_recovery_alert_once_each(data_dir, tmp_path, monkeypatch, sinks):
    global INSTANCE
    sink, inbox, webhook, slack = sinks
    INSTANCE = dg.DagsterInstance.ephemeral()
    bad = events_warehouse(tmp_path / "bad.duckdb", [event("2026-11-19 10:00:00"),
                                                     event("2026-11-19 11:00:00", site="TC-9999-1", ua="john@example.com")])
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(bad))
    failed = run_ispot()
    assert not failed.success
    log = AlertLog(tmp_path / "alerts.sqlite")
    first = process_run(INSTANCE, failed.run_id, sink, log)
    kinds = sorted(a.kind for a in first)
    assert kinds == ["check_failed", "run_failed"]
    check_alert = next(a for a in first if a.kind == "check_failed")
    assert (check_alert.vendor, check_alert.partition, check_alert.check, check_alert.failure_count) == \
        ("ispot", "2026-11-19", "spec", 1)
    assert check_alert.link == f"http://dagster.example/runs/{failed.run_id}"
    # the daemon restarts and evaluates the same run again: nothing is sent twice
    assert process_run(INSTANCE, failed.run_id, sink, log) == []
    assert len(inbox.messages) == 2 and len(webhook.requests) == 2 and len(slack.slack_texts()) == 2
    payload = json.loads(webhook.requests[0][2])
    assert payload["vendor"] == "ispot" and payload["partition"] == "2026-11-19"
    assert "TC-9999-1" in json.dumps([json.loads(r[2]) for r in webhook.requests])  # sample rows are in the alert
    everything = "\n".join(inbox.messages + slack.slack_texts() + [r[2].decode() for r in webhook.requests])
    assert "john@example.com" not in everything and SLACK_TOKEN not in everything
    # the data is fixed: the next run passes and the recovery is announced once
    good = events_warehouse(tmp_path / "good.duckdb", [event("2026-11-19 10:00:00")])
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(good))
    fixed = run_ispot()
    assert fixed.success
    recovered = process_run(INSTANCE, fixed.run_id, sink, log)
    assert [a.kind for a in recovered if a.kind == "recovered"] == ["recovered"]
    assert any(a.kind == "check_failed" and a.check == "minimum_size" for a in recovered)  # WARN checks alert too
    assert process_run(INSTANCE, fixed.run_id, sink, log) == []


def test_the_run_status_sensor_itself_sends_alerts(data_dir, tmp_path, monkeypatch, sinks):
    sink, inbox, webhook, slack = sinks
    global INSTANCE
    INSTANCE = dg.DagsterInstance.ephemeral()
    bad = events_warehouse(tmp_path / "bad.duckdb", [event("2026-11-19 10:00:00", ip="999.1.1.1")])
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(bad))
    failed = run_ispot()
    sensor = next(s for s in build_defs("local").sensors if s.name == "alerts_on_failures")
    context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=INSTANCE,
                                                 dagster_run=failed.dagster_run,
                                                 dagster_event=failed.get_run_failure_event(),
                                                 resources={"alert_sinks": sink})
    sensor(context)
    assert len(webhook.requests) == 2 and any("is_ipv4" in m or "ip" in m for m in inbox.messages)


def test_missed_deadlines_alert_once(data_dir, tmp_path, sinks):
    sink, inbox, webhook, slack = sinks
    log = AlertLog(tmp_path / "alerts.sqlite")
    ledger = Ledger()
    now = dt.datetime(2026, 11, 21, 15, 0, tzinfo=dt.timezone.utc)
    first = deadline_alerts(DEADLINES, ledger, log, sink, now)
    assert ("ispot", "2026-11-20") in {(a.vendor, a.partition) for a in first}
    assert deadline_alerts(DEADLINES, ledger, log, sink, now + dt.timedelta(minutes=15)) == []
    early = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.timezone.utc)  # before any deadline for the 21st
    assert all(a.partition != "2026-11-21" for a in deadline_alerts(DEADLINES, ledger, log, sink, early))


def test_a_run_launched_from_the_asset_graph_names_its_vendor_not_the_asset_job(
        data_dir, tmp_path, monkeypatch, sinks):
    """The UI's asset graph and its backfills run the hidden `__ASSET_JOB`, untagged: the alert still says
    which vendor failed (from the run's pools and asset keys) and what ran."""
    sink, inbox, webhook, slack = sinks
    instance = dg.DagsterInstance.ephemeral()
    bad = events_warehouse(tmp_path / "bad.duckdb", [event("2026-11-19 10:00:00", ip="999.1.1.1")])
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(bad))
    job = build_defs("local").resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(["ispot", n]) for n in ("conversions", "conversion_files", "conversions_delivery")]
    result = job.execute_in_process(partition_key="2026-11-19", instance=instance, asset_selection=keys,
                                    raise_on_error=False)
    assert not result.success and result.dagster_run.job_name == "__ASSET_JOB"
    assert "vendor" not in result.dagster_run.tags  # as the UI launches it
    alerts = process_run(instance, result.run_id, sink, AlertLog(tmp_path / "alerts.sqlite"))
    failed = next(a for a in alerts if a.kind == "run_failed")
    assert failed.vendor == "ispot", failed
    assert "__ASSET_JOB" not in failed.text() and "ispot/conversions" in failed.title
    assert json.loads(webhook.requests[-1][2])["vendor"] == "ispot"


def test_run_vendor_for_every_launch_path():
    from delivery_platform.alerts.sensors import run_label, run_vendor

    def run(job="__ASSET_JOB", tags=None, keys=(), checks=()):
        return dg.DagsterRun(job_name=job, run_id="r", tags=tags or {}, asset_selection=frozenset(
            dg.AssetKey(k.split("/")) for k in keys) or None, asset_check_selection=frozenset(
            dg.AssetCheckKey(dg.AssetKey(k.split("/")), n) for k, n in checks) or None)

    # jobs, schedules and sensors tag their runs
    assert run_vendor(run("lotame_daily_delivery", {"vendor": "lotame"})) == "lotame"
    assert run_vendor(run(keys=["optimove/customers", "optimove/customers_files"])) == "optimove"
    assert run_vendor(run(keys=["lotame/segment_memberships", "ispot/conversions"])) == "ispot+lotame"
    assert run_vendor(run(checks=[("ispot/conversions", "spec")])) == "ispot"  # a check re-run from the UI
    assert run_vendor(run(keys=["status/idomoo"])) == "idomoo"
    assert run_vendor(run("vendor_status", keys=[])) == "vendor_status"
    assert run_vendor(run()) == "platform"
    backfill = run(keys=["ispot/conversions"], tags={"dagster/asset_partition_range_start": "2026-11-17",
                                                     "dagster/asset_partition_range_end": "2026-11-19"})
    assert run_label(backfill) == ("ispot/conversions", "2026-11-17..2026-11-19")
    assert run_label(run("ispot_daily_delivery", {"dagster/partition": "2026-11-19"})) == \
        ("ispot_daily_delivery", "2026-11-19")
